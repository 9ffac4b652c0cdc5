"""Bad input reaching the exporter function fails the cycle clearly and keeps everything stored before.

Cases (each after a good cycle of the same config; the exporter answers 200 with the reply event
io.finops.export.failed, which the `finops run` chain output shows (exit 1) and which must name the
problem; nothing is dead-lettered (the tick was fine); the CR's status (`finops get -o json`) says
Ready=False / ReconcileError with the same words, and Ready=True again after the next good cycle (each
flip's lastTransitionTime never earlier than the last); the exporter process is still the same one and
answers; the cost/usage table keeps its row count and sums; GET /metrics/<ns>/<name> still serves the
last good snapshot byte for byte):
- ragged CSV (a row with one field too many)              -> names the row and the field counts
- CSV without a BilledCost column                         -> names BilledCost
- `text/plain` content type                               -> names the content type
- an unknown content type                                 -> names the content type
- CSV headers with spaces and '-'                         -> names the invalid label names
- Azure Monitor JSON whose metric is named with '/'       -> names the invalid metric name
A scrape whose DatabaseConfig does not exist answers 200 with io.finops.scrape.failed and Ready=False.
And label sets changing between cycles just work: a column added to the CSV becomes a new column of
the table on the next cycle; a column removed leaves it NULL in the replaced rows.

One stack for the module (each case has its own config and table) to keep the runtime down.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_stack import E2EStack, database_docs, esc, secret, start_stack
from loopback_http import Reply, Seen, serve

from functions.demo.demo_apis import metrics_document
from functions.demo.focus_rows import focus_csv_text

pytestmark = pytest.mark.slow
CSV = {"Content-Type": "text/csv; charset=utf-8"}
JSON = {"Content-Type": "application/json"}
RESOURCE_ID = "/subscriptions/s-1/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-1"
GOOD_CSV = focus_csv_text(120, seed=5)


def azure(metric: str) -> bytes:
    doc = metrics_document(RESOURCE_ID, ["Percentage CPU"], datetime(2026, 9, 1, tzinfo=UTC),
                           datetime(2026, 9, 1, 12, tzinfo=UTC), 60)
    doc["value"][0]["name"] = {"value": metric, "localizedValue": metric}
    return json.dumps(doc).encode()


def ragged(text: str) -> str:
    lines = text.splitlines()
    lines[7] += ",one-too-many"
    return "\n".join(lines) + "\n"


def rewrite(text: str, add: dict[str, str] | None = None, drop: str | None = None) -> str:
    rows = list(csv.DictReader(io.StringIO(text)))
    out = io.StringIO()
    fields = [f for f in rows[0] if f != drop] + list(add or {})
    writer = csv.DictWriter(out, fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for i, row in enumerate(rows):
        writer.writerow({**row, **{k: f"{v}-{i % 3}" for k, v in (add or {}).items()}})
    return out.getvalue()


class Source:
    """A loopback origin whose answer per path the test swaps between cycles."""

    def __init__(self) -> None:
        self.replies: dict[str, Reply] = {}

    def __call__(self, seen: Seen) -> Reply:
        return self.replies.get(seen.path.split("?")[0], Reply(404, b"no such path"))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[E2EStack, Source]]:
    source = Source()
    with serve(source) as origin:
        stack = start_stack(Path(tmp_path_factory.mktemp("bad-input")))
        try:
            stack.apply(secret("bad-input-src", {"server-url": origin.url}), *database_docs())
            yield stack, source
        finally:
            stack.stop()


def config(stack: E2EStack, name: str, metric_type: str) -> tuple[str, str]:
    """Apply an ExporterScraperConfig reading /<name> (its table is named after it); (ref, table)."""
    table = name.replace("-", "_")
    stack.apply(esc(name, f"/{name}", "bad-input-src", table, metric_type=metric_type))
    return f"ExporterScraperConfig/finops/{name}", table


def snapshot(stack: E2EStack, name: str) -> bytes:
    resp = httpx.get(f"{stack.url('exporter')}/metrics/finops/{name}", headers=stack.auth(), timeout=30)
    assert resp.status_code == 200 and resp.headers.get("x-finops-snapshot") == "present", resp.text[:300]
    return resp.content


def ready(stack: E2EStack, ref: str) -> dict[str, Any]:
    """The CR's Ready condition, read with `finops get -o json` like a user would."""
    got = stack.finops("get", ref, "-o", "json")
    assert got.rc == 0, got.text
    conditions = {c["type"]: c for c in json.loads(got.out).get("status", {}).get("conditions", [])}
    assert conditions["Synced"]["status"] == conditions["Ready"]["status"], conditions
    return dict(conditions["Ready"])


def stored(stack: E2EStack, table: str, metric_type: str) -> list[Any]:
    value = "billedcost" if metric_type == "cost" else "average"
    return stack.sql(f"SELECT count(*), sum({value}), min({value}), max({value}) FROM {table}")[0]


CASES = [
    pytest.param("cost", Reply(200, ragged(GOOD_CSV).encode(), CSV), ["row 8", "fields"], id="ragged-csv"),
    pytest.param("cost", Reply(200, GOOD_CSV.replace("BilledCost", "Billed_Cost", 1).encode(), CSV), ["BilledCost"],
                 id="csv-without-billedcost"),
    pytest.param("cost", Reply(200, GOOD_CSV.encode(), {"Content-Type": "text/plain"}), ["text/plain"],
                 id="text-plain-content-type"),
    pytest.param("cost", Reply(200, GOOD_CSV.encode(), {"Content-Type": "application/x-finops-unknown"}),
                 ["application/x-finops-unknown"], id="unknown-content-type"),
    pytest.param("cost", Reply(200, GOOD_CSV.replace("ChargeClass", "Charge Class", 1)
                               .replace("RegionName", "Region-Name", 1).encode(), CSV),
                 ["Charge Class", "Region-Name"], id="csv-headers-with-space-and-dash"),
    pytest.param("resource", Reply(200, azure("Disk Read/Write Bytes"), JSON), ["invalid metric name", "/"],
                 id="azure-metric-named-with-slash"),
]


@pytest.mark.parametrize(("metric_type", "bad", "named"), CASES)
def test_bad_input_fails_clearly_and_keeps_earlier_data(env: tuple[E2EStack, Source], request: pytest.FixtureRequest,
                                                        metric_type: str, bad: Reply, named: list[str]) -> None:
    stack, source = env
    name = "bad-" + request.node.callspec.id
    good = Reply(200, GOOD_CSV.encode(), CSV) if metric_type == "cost" else Reply(200, azure("Percentage CPU"), JSON)
    source.replies[f"/{name}"] = good
    ref, table = config(stack, name, metric_type)
    ok = stack.run(ref)
    assert ok.rc == 0, ok.text
    before, served = stored(stack, table, metric_type), snapshot(stack, name)
    assert before[0] > 0
    pid, dead = stack.pid("exporter"), len(stack.deadletters())
    good_ready = ready(stack, ref)
    assert good_ready["status"] == "True" and good_ready["message"].startswith("uploaded"), good_ready

    source.replies[f"/{name}"] = bad
    failed = stack.run(ref)
    assert failed.rc == 1, failed.text
    line = next(x for x in failed.out.splitlines() if "-> exporter:" in x)
    assert "HTTP 200" in line and "-> reply io.finops.export.failed: " in line, failed.out
    said = line.split("-> reply io.finops.export.failed: ", 1)[1]
    bad_ready = ready(stack, ref)
    assert bad_ready["status"] == "False" and bad_ready["reason"] == "ReconcileError", bad_ready
    for word in named:
        assert word in said, failed.out
        assert word in bad_ready["message"], bad_ready
    assert "-> scraper:" not in failed.out  # no upload follows a failed export
    assert len(stack.deadletters()) == dead  # a failed cycle is not a failed delivery

    assert stack.pid("exporter") == pid and stack.alive("exporter")
    assert stored(stack, table, metric_type) == before
    assert snapshot(stack, name) == served
    source.replies[f"/{name}"] = good
    assert stack.run(ref).rc == 0  # and the next good cycle works
    assert stored(stack, table, metric_type) == before
    again = ready(stack, ref)
    assert again["status"] == "True" and again["reason"] == "Available", again
    assert good_ready["lastTransitionTime"] <= bad_ready["lastTransitionTime"] <= again["lastTransitionTime"]


def test_label_sets_changing_between_cycles_just_work(env: tuple[E2EStack, Source]) -> None:
    stack, source = env
    name = "label-sets"
    ref, table = config(stack, name, "cost")
    rows = GOOD_CSV.count("\n") - 1

    source.replies[f"/{name}"] = Reply(200, GOOD_CSV.encode(), CSV)
    assert stack.run(ref).rc == 0
    source.replies[f"/{name}"] = Reply(200, rewrite(GOOD_CSV, add={"CapacityReservationId": "cr"}).encode(), CSV)
    added = stack.run(ref)
    assert added.rc == 0, added.text
    assert b'capacityreservationid="cr-1"' in snapshot(stack, name).replace(b"CapacityReservationId", b"capacityreservationid")
    assert stack.sql(f"SELECT count(*), count(capacityreservationid) FROM {table}")[0] == [rows, rows]

    source.replies[f"/{name}"] = Reply(200, rewrite(GOOD_CSV, drop="AvailabilityZone").encode(), CSV)
    dropped = stack.run(ref)
    assert dropped.rc == 0, dropped.text
    assert stack.sql(f"SELECT count(*), count(capacityreservationid), count(availabilityzone) FROM {table}")[0] == [
        rows, 0, 0]


def test_a_scrape_without_its_database_config_fails_the_cycle_in_status(env: tuple[E2EStack, Source]) -> None:
    stack, source = env
    name = "no-db-config"
    source.replies[f"/{name}"] = Reply(200, GOOD_CSV.encode(), CSV)
    doc = esc(name, f"/{name}", "bad-input-src", "no_db_config")
    doc["spec"]["scraperConfig"]["scraperDatabaseConfigRef"] = {"name": "missing-db", "namespace": "finops"}
    stack.apply(doc)
    ref = f"ExporterScraperConfig/finops/{name}"
    failed = stack.run(ref)
    assert failed.rc == 1, failed.text
    line = next(x for x in failed.out.splitlines() if "-> scraper:" in x)
    assert "HTTP 200" in line and "-> reply io.finops.scrape.failed: DatabaseConfig finops/missing-db not found" in line
    state = ready(stack, ref)
    assert state["status"] == "False" and "missing-db" in state["message"], state
