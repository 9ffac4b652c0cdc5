"""Every SQL statement our code sends in CrateDB mode is parsed by CrateDB's own grammar.

No CrateDB server runs here, so CrateDB mode's SQL is produced for real and checked by
cratedb-sqlparse (CrateDB's ANTLR grammar): a real database handler (embedded engine) runs on
127.0.0.1 with `FINOPS_DB_PLAIN_CRATEDB=true`, in its own process and in this one, so every
`Database` ignores the embedded banner and every caller takes its CrateDB path (statements one by
one, `bulk_args`, no payloads by reference). This file is also the functions-framework source of
that handler (target `recording_dbhandler`): the real dbhandler, which appends every statement
reaching its SQL protocol (the public `/_sql` and its own loopback listeners) to a log, whichever
process sent it (the handler itself, this test, notebook processes). Statements are captured, never listed by hand, so new tables and statements are
covered as soon as a flow sends them. `pytest -rP` (or `-s`) shows every statement, by flow.

Cases (one test per flow; each parses every distinct statement the flow sent, lists them, names
any statement CrateDB would not parse, checks the flow's expected statement kinds and a floor on
their number, and that no embedded extension was used):
- uploads: multi-part cost (JSON and Arrow parts, a new label column, refused rows, a retried
  final), resource and generic runs (source/run/part/final, an empty final part), and legacy
  Krateo uploads without source of each type;
- focus ingest: a FocusConfig applied, changed and deleted;
- aicost ingest: a batch crossing a budget (an alert whose sink fails is released, then fired),
  a redelivery, and the metrics scrape's reads;
- the database snapshot store: write, overwrite, read, a missing key;
- the optimizer: day-2 (usage through the `cyclic` notebook) and day-1 admissions, carbon read
  from the forecast and, without one, from history;
- notebooks: every shipped crds/examples/notebook-*.yaml stored, listed, run with its `# Run:`
  parameters and deleted through the notebooks function.
Plus: uploads really go as `bulk_args`; the parser really refuses broken statements, hand-written
and captured ones broken on purpose (so the checks cannot pass vacuously).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
import yaml
from aicost_server import event
from cratedb_sqlparse import ParsingException, sqlparse
from dbhandler_server import start_function, stop_process

from functions import events
from functions.clients import kube
from functions.clients.db import Database
from functions.clients.kube import LocalReader
from functions.clients.policy import EmbeddedOpa
from functions.codecs import records
from functions.events import CR_APPLIED, CR_DELETED
from functions.local.crstore import CrStore
from functions.local.supervisor import free_port
from functions.settings.aicost import AICostSettings
from functions.settings.focus import FocusSettings
from functions.settings.notebooks import NotebookSettings
from functions.settings.optimizer import OptimizerSettings
from functions.stages import aicost_ingest, aicost_metrics, focus_ingest, notebooks
from functions.stages.optimizer import admission as optimizer_admission
from functions.stages.optimizer.deps import Deps as OptimizerDeps
from functions.storage import aicost_store
from functions.storage.carbon_series import SqlCarbonData
from functions.storage.snapshots import DatabaseSnapshotStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "crds" / "examples"
LOG_ENV = "FINOPS_TEST_SQL_LOG"
PLAIN_ENV = "FINOPS_DB_PLAIN_CRATEDB"
USER, PASSWORD = "finops", "s3cret"
VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
SRC = "ExporterScraperConfig/finops/azure"
JAN, FEB = "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"

# ------------------------------------------------------------------ the recording handler (server side)

_log_lock = threading.Lock()


def recording_dbhandler(request: Any) -> Any:
    """functions-framework target: the real dbhandler; each statement reaching its SQL protocol is logged
    after its answer: the public `/_sql` and the handler's own loopback listeners (its uploads and its
    notebooks' SQL go there, not through the request pool) all answer through `sqlapi.handle_sql`."""
    from functions.stages.dbhandler import router

    _record_sql_protocol()
    return router.handle(request)


_recording: list[bool] = []


def _record_sql_protocol() -> None:
    """Wrap `sqlapi.handle_sql` once, in the handler's process only (this module is imported by tests too)."""
    from functions.storage import sqlapi

    with _log_lock:
        if _recording:
            return
        answer_sql = sqlapi.handle_sql

        def recorded(body: bytes, *args: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
            status, answer = answer_sql(body, *args, **kwargs)
            _record(body, kwargs.get("content_encoding"), status)
            return status, answer

        sqlapi.handle_sql = recorded  # type: ignore[assignment]
        _recording.append(True)


def _record(body: bytes, encoding: str | None, status: int) -> None:
    """One JSON line per statement: its text, how it came (args, bulk_args or the `stmts` extension), the status."""
    raw = gzip.decompress(body) if (encoding or "").lower() == "gzip" else body
    try:
        obj = json.loads(raw)
    except ValueError:
        obj = {"stmt": raw.decode("utf-8", "replace")}
    items = [(s.get("stmt"), "stmts") for s in obj.get("stmts") or []] if "stmts" in obj else \
        [(obj.get("stmt"), "bulk_args" if "bulk_args" in obj else "args")]
    lines = "".join(json.dumps({"stmt": stmt, "via": via, "status": status}) + "\n" for stmt, via in items)
    with _log_lock, open(os.environ[LOG_ENV], "a", encoding="utf-8") as fh:
        fh.write(lines)


# ------------------------------------------------------------------ grammar checks


def parse_error(stmt: str) -> str | None:
    """Why CrateDB's grammar refuses `stmt` (None: it parses, as exactly one statement)."""
    try:
        parsed = sqlparse(stmt, raise_exception=True)
    except ParsingException as exc:
        return str(exc.error_message)
    except AttributeError:  # cratedb-sqlparse's raising listener trips over errors reported without a context
        found = [s.exception for s in sqlparse(stmt) if s.exception is not None]
        return str(found[0]) if found else "refused by CrateDB's grammar"
    if len(parsed) != 1:
        return f"{len(parsed)} statements where one was sent"
    return None


def kind(stmt: str) -> str:
    """A coarse statement kind (what a flow is expected to send), from the statement's text."""
    text = " ".join(stmt.split()).upper()
    head = " ".join(text.split()[:2])
    if text.startswith("INSERT"):
        source = "SELECT" if re.search(r"\)\s*SELECT\b", text) else "VALUES"
        conflict = re.search(r"ON CONFLICT(?: \([^)]*\))? DO (NOTHING|UPDATE)", text)
        return f"INSERT {source}" + (f" ON CONFLICT DO {conflict.group(1)}" if conflict else "")
    if text.startswith("DELETE") and re.search(r"\bIN \(SELECT\b", text):
        return "DELETE IN (SELECT)"
    if text.startswith("SELECT") and "INFORMATION_SCHEMA." in text:
        return "SELECT information_schema"
    return head if head.split()[0] in ("CREATE", "ALTER", "REFRESH") else text.split()[0]


# ------------------------------------------------------------------ the stack


@dataclass
class Sent:
    """One statement as it reached /_sql."""

    stmt: str
    via: str
    status: int


@dataclass
class Stack:
    """The recording handler, the local CR store its flows read, and the statement log."""

    url: str
    state: Path
    log: Path

    def auth(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}

    def upload(self, body: list[dict[str, Any]] | bytes, params: dict[str, str]) -> dict[str, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        ctype = "application/vnd.apache.arrow.stream" if isinstance(body, bytes) else "application/json"
        resp = httpx.post(f"{self.url}/upload", params=params, content=data, timeout=60,
                          headers={"Content-Type": ctype, **self.auth()})
        assert resp.status_code == 200, resp.text
        answer: dict[str, Any] = resp.json()
        return answer

    def database(self) -> Database:
        return Database(self.url, USER, PASSWORD)

    def sent_since(self, offset: int) -> list[Sent]:
        with self.log.open("rb") as fh:
            fh.seek(offset)
            return [Sent(**json.loads(line)) for line in fh.read().decode().splitlines() if line.strip()]

    def offset(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0


@pytest.fixture(scope="module", name="stack")
def stack_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("cratedb-mode")
    log, state, port = tmp / "sql.jsonl", tmp / "state", free_port()
    log.touch()
    env = {"FINOPS_DB_MODE": "embedded", "FINOPS_DB_PATH": str(tmp / "db" / "finops.duckdb"),
           "FINOPS_DB_USERS": json.dumps({"crate": "", USER: PASSWORD}), PLAIN_ENV: "true", LOG_ENV: str(log)}
    docs = list(yaml.safe_load_all((EXAMPLES / "databaseconfig.yaml").read_text()))
    for doc in docs:
        if doc["kind"] == "Secret":
            doc["stringData"]["password"] = PASSWORD
    CrStore(state).apply(docs)  # the DatabaseConfig every flow authenticates with
    process = start_function("recording_dbhandler", port, env, tmp / "dbhandler.log", source=Path(__file__))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(PLAIN_ENV, "true")  # this process's clients (focus ingest, aicost, snapshots, optimizer) too
            yield Stack(f"http://127.0.0.1:{port}", state, log)
    finally:
        stop_process(process)


FlowRun = Callable[[Stack], None]


def check_flow(stack: Stack, name: str, run: FlowRun, expected: set[str], at_least: int,
               setup: FlowRun | None = None) -> None:
    """Run the flow, then parse every distinct statement it sent; fail naming each one CrateDB refuses."""
    if setup is not None:
        setup(stack)
    start = stack.offset()
    run(stack)
    sent = stack.sent_since(start)
    distinct = sorted({s.stmt for s in sent})
    print(f"\n{name}: {len(sent)} statements sent, {len(distinct)} distinct:")
    for stmt in distinct:
        print(f"  [{kind(stmt)}] {stmt}")
    refused = {stmt: err for stmt in distinct if (err := parse_error(stmt)) is not None}
    assert not refused, f"{name}: CrateDB's grammar refuses {len(refused)} statement(s):\n" + "\n".join(
        f"- {stmt}\n    {err}" for stmt, err in refused.items())
    extension = sorted({s.stmt for s in sent if s.via == "stmts" or "finops_payload" in s.stmt})
    assert not extension, f"{name}: embedded extensions used in CrateDB mode: {extension}"
    kinds = {kind(s) for s in distinct}
    assert expected <= kinds, f"{name}: expected statement kinds {sorted(expected - kinds)} were never sent (got {sorted(kinds)})"
    assert len(distinct) >= at_least, f"{name}: only {len(distinct)} distinct statements, expected at least {at_least}"
    failed = sorted({s.stmt for s in sent if s.status >= 500})
    assert not failed, f"{name}: the engine failed on {failed}"


# ------------------------------------------------------------------ flows


def cost(resource: str, period: str, billed: str, category: str = "Usage", **extra: str) -> dict[str, Any]:
    labels = {"ResourceId": resource, "ResourceName": resource, "BillingPeriodStart": period,
              "BillingPeriodEnd": period, "ChargePeriodStart": period, "ChargePeriodEnd": period,
              "SkuPriceId": "sku", "BilledCost": billed, "ChargeCategory": category, "BillingCurrency": "EUR",
              "ServiceName": "Virtual Machines", "Tags": json.dumps({"team": "platform", "env": "prod"})}
    value = float(billed) if re.fullmatch(r"-?[0-9.]+", billed) else 0.0
    return {"labels": labels | extra, "value": value, "timestamp": 1700000000}


def usage(rid: str, points: int = 8, start: datetime = datetime(2026, 10, 1, tzinfo=UTC)) -> list[dict[str, Any]]:
    out = []
    for i in range(points):
        t = start + timedelta(minutes=15 * i)
        level = 70.0 if 8 <= t.hour < 18 else 20.0
        out.append({"labels": {"ResourceId": rid, "metricName": "Percentage CPU", "timestamp": t.strftime("%Y-%m-%dT%H:%M:%SZ"),
                               "average": str(level + i % 3), "unit": "Percent"}, "value": level, "timestamp": 1700000000})
    return out


def generic(cluster: str, value: float) -> dict[str, Any]:
    return {"labels": {"cluster": cluster, "namespace": "default"}, "value": value, "timestamp": 1700000000000}


def arrow(recs: list[dict[str, Any]]) -> bytes:
    table: pa.Table = records.from_json(recs)[0]
    return b"".join(records.write_ipc(table.to_batches()))


def send_run(stack: Stack, table: str, type_: str, run: str, parts: list[list[dict[str, Any]] | bytes]) -> list[dict[str, Any]]:
    answers = []
    for n, part in enumerate(parts):
        params = {"table": table, "type": type_, "source": SRC, "run": run, "part": str(n)}
        if n == len(parts) - 1:
            params["final"] = "true"
        answers.append(stack.upload(part, params))
    return answers


def run_uploads(stack: Stack) -> None:
    bad = [cost("bad", JAN, "not-a-number"), {"labels": {"ResourceId": "no-period", "BilledCost": "1"}, "value": 1}]
    parts: list[list[dict[str, Any]] | bytes] = [
        [cost("a", JAN, "1.00"), cost("b", JAN, "2.00", x_custom_label="new column"), *bad],
        arrow([cost("c", FEB, "3.00"), cost("a", JAN, "-0.50", "Credit")]),
        [cost("d", FEB, "4.00")],
    ]
    answers = send_run(stack, "cm_cost", "cost", "run-1", parts)
    assert answers[0]["records_rejected"] == 2 and answers[-1]["committed"] is True, answers
    again = stack.upload(parts[-1], {"table": "cm_cost", "type": "cost", "source": SRC, "run": "run-1", "part": "2", "final": "true"})
    assert again["committed"] is True
    send_run(stack, "cm_cost", "cost", "run-2", [[cost("a", JAN, "1.50")]])  # restates January
    send_run(stack, "cm_res", "resource", "run-r", [usage(VM, 4), arrow(usage(VM, 8))])
    send_run(stack, "cm_generic", "generic", "run-g", [[generic("c1", 1.0), generic("c2", 2.0)], []])
    for table, type_, recs in (("cm_legacy", "cost", [cost("l", JAN, "7.00"), cost("l", JAN, "7.00")]),
                               ("cm_legacy_res", "resource", usage(VM, 3)),
                               ("cm_legacy_generic", "generic", [generic("c9", 9.0)])):
        answer = stack.upload(recs, {"table": table, "type": type_})
        assert answer["records_processed"] == len(recs) and answer["committed"] is True, answer
        stack.upload(recs, {"table": table, "type": type_})  # Krateo's scraper sends the same rows again
    findings = [{"rule": "FOCUS-ChargeCategory-allowed-values", "column": "ChargeCategory", "severity": "error",
                 "count": 1, "examples": [{"row": 3, "value": "Refund"}], "message": "not allowed", "version": "1.0"}]
    resp = httpx.post(f"{stack.url}/upload/findings", params={"table": "cm_cost", "source": "ESC/cm/cost", "run": "f1"},
                      content=json.dumps(findings).encode(), headers={"Content-Type": "application/json", **stack.auth()})
    assert resp.status_code == 200 and resp.json() == {"findings": 1}, resp.text  # the scraper's findings report
    db = stack.database()
    try:
        assert db.execute("SELECT count(*) AS n FROM cm_cost").rows == [[3]]  # a 1.50 (January restated), c, d
        assert db.execute("SELECT count(*) AS n FROM cm_legacy").rows == [[2]]
    finally:
        db.close()


def focus_config(billed: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "focusconfig.yaml").read_text())
    doc["spec"]["focusSpec"]["billedCost"] = billed
    doc["spec"]["scraperConfig"]["tableName"] = "cm_focus"
    return doc


def run_focus_ingest(stack: Stack) -> None:
    store, reader = CrStore(stack.state), LocalReader(stack.state)
    settings, databases = FocusSettings(db_url=stack.url), dict[tuple[str, str, str], Database]()
    ns, name = "finops", "support-contract-2024-01"
    subject = f"FocusConfig/{ns}/{name}"
    for billed in ("1250.00", "1300.00"):  # applied, then changed
        store.apply([focus_config(billed)])
        outcome = focus_ingest.handle(CR_APPLIED, subject, reader.get("FocusConfig", ns, name), reader, settings, databases)
        assert outcome.action == "stored", outcome
    gone = reader.get("FocusConfig", ns, name)
    store.delete("FocusConfig", ns, name)
    assert focus_ingest.handle(CR_DELETED, subject, gone, reader, settings, databases).action == "deleted"
    for db in databases.values():
        db.close()


def run_aicost(stack: Stack) -> None:
    CrStore(stack.state).apply([yaml.safe_load((EXAMPLES / "aicostbudget.yaml").read_text())])
    reader, cache = LocalReader(stack.state), dict[tuple[str, str, str], Database]()
    settings = AICostSettings(db_url=stack.url, table="cm_ai_costs", alerts_table="cm_ai_alerts")
    db = aicost_ingest.database(settings, reader, cache)
    today = datetime.now(UTC).strftime("%Y-%m-%dT%H:00:00Z")
    batch = [event({"team": "ml-platform", "project": "chat", "source": "llm-api", "cost": {"amount": "300", "currency": "USD"}},
                   id=f"cm-{i}", time=today) for i in range(2)]
    batch.append(event({"team": "ml-platform", "project": "train", "source": "gpu-job",
                        "gpu": {"gpu_type": "A100-80GB", "count": 2, "duration_seconds": 3600}}, id="cm-gpu", time=today))
    body, headers = json.dumps(batch).encode(), {"Content-Type": "application/cloudevents-batch+json"}

    def sink_down(alert: events.Event) -> None:
        raise RuntimeError("the broker is down")

    with pytest.raises(RuntimeError):
        aicost_ingest.handle(aicost_ingest.decode(headers, body)[0], db, reader, settings, sink_down)
    fired: list[events.Event] = []
    outcome = aicost_ingest.handle(aicost_ingest.decode(headers, body)[0], db, reader, settings, fired.append)
    assert outcome.accepted == 3 and len(fired) == 3, outcome.body()  # 50 %, 80 % and 100 % of the $500 day
    assert len(aicost_store.fired_alerts(db, settings.alerts_table)) == 3
    assert b"ai_finops_cost_dollars_total" in aicost_metrics.handle(db, reader, settings)[1]
    for each in cache.values():
        each.close()


def run_snapshots(stack: Stack) -> None:
    db = stack.database()
    try:
        store = DatabaseSnapshotStore(db)
        for n in (3, 5):  # a first snapshot, then its replacement (the head is swapped)
            batch = pa.record_batch({"name": pa.array([f"m{i}" for i in range(n)]), "value": pa.array([float(i) for i in range(n)])})
            assert store.write("finops/azure", [batch], {"finops.metric": "cost"}).rows == n
        read = store.read("finops/azure")
        assert read is not None and sum(b.num_rows for b in read) == 5
        assert store.read_ipc("finops/never-exported") is None
    finally:
        db.close()


def composition(annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure",
            "metadata": {"name": "vm-composition", "namespace": "demo", "annotations": annotations},
            "spec": {"global": {"tableName": "cm_opt"},
                     "metricExporter": {"scraperDatabaseConfigRef": {"name": "finops-db", "namespace": "finops"}}}}


def review(operation: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": {"uid": f"u-{operation}", "operation": operation, "namespace": "demo",
                                   "name": "vm-composition", "object": obj}}).encode()


def carbon_rows(hours: range, at: datetime) -> list[list[Any]]:
    return [[region, (at + timedelta(hours=h)).isoformat(), level if region == "westeurope" or not 4 <= h % 24 < 8 else 40.0]
            for h in hours for region, level in (("westeurope", 300.0), ("northeurope", 250.0))]


def setup_optimizer(stack: Stack) -> None:
    cyclic = yaml.safe_load((EXAMPLES / "notebook-cyclic.yaml").read_text())["spec"]["inline"]
    resp = httpx.post(f"{stack.url}/compute/cyclic/upload?overwrite=true", content=cyclic.encode(), headers=stack.auth())
    assert resp.json() == {"result": True}, resp.text
    stack.upload(usage(VM, 3 * 96, datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3)),
                 {"table": "cm_opt_res", "type": "resource", "source": SRC, "run": "run-opt", "part": "0", "final": "true"})
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    db = stack.database()
    try:
        for table, hours, at in (("cm_carbon_forecast", range(-1, 48), now), ("cm_carbon_history", range(0, 14 * 24), now - timedelta(days=14))):
            db.execute(f'CREATE TABLE IF NOT EXISTS {table} (region TEXT, "timestamp" TIMESTAMP, intensity DOUBLE)')
            db.executemany(f'INSERT INTO {table} (region, "timestamp", intensity) VALUES (?, ?, ?)', carbon_rows(hours, at))
            db.execute(f"REFRESH TABLE {table}")
    finally:
        db.close()
    data = {"server-url": stack.url, "username": USER, "password": PASSWORD}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "finops-db-endpoint", "namespace": "finops"},
              "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
    kube.write_json(kube.resource_path(stack.state, "Secret", "finops", "finops-db-endpoint"), secret)


def run_optimizer(stack: Stack) -> None:
    policy, db = EmbeddedOpa(ROOT / "policies"), stack.database()
    try:
        for forecast in ("cm_carbon_forecast", "cm_no_forecast"):  # the forecast, then history when there is none
            deps = OptimizerDeps(settings=OptimizerSettings(budget_s=30.0), reader=LocalReader(stack.state), policy=policy,
                                 carbon=SqlCarbonData(db, forecast, "cm_carbon_history"))
            day2 = optimizer_admission.handle(review("UPDATE", composition({"finops.krateo.io/resource-ids": VM})), deps)
            assert "patch" in day2["response"], day2["response"].get("warnings")
            day1 = optimizer_admission.handle(review("CREATE", composition({
                "finops.krateo.io/allowed-regions": "westeurope,northeurope", "finops.krateo.io/duration": "2h",
                "finops.krateo.io/deadline": "24h"})), deps)
            assert "patch" in day1["response"], day1["response"].get("warnings")
    finally:
        db.close()


NOTEBOOKS = sorted(EXAMPLES.glob("notebook-*.yaml"))
RUN_LINE = re.compile(r"^#.*?POST /compute/(?P<name>[A-Za-z0-9_.-]+) (?P<params>\{[^{}\n]*\})", re.MULTILINE)
"""How each shipped notebook says it is run (its header comment): the parameters the test runs it with."""


def setup_notebooks(stack: Stack) -> None:
    send_run(stack, "demo_cost", "cost", "run-nb", [[cost("a", JAN, "1.00"), cost("b", FEB, "2.00", Tags="{}")]])
    send_run(stack, "demo_res", "resource", "run-nb", [usage(VM, 16)])
    db = stack.database()
    try:
        db.execute("CREATE TABLE IF NOT EXISTS features (a DOUBLE, b DOUBLE)")
        db.executemany("INSERT INTO features (a, b) VALUES (?, ?)", [[1.0, 2.0], [3.0, None]])
        db.execute("REFRESH TABLE features")
    finally:
        db.close()


def run_notebooks(stack: Stack) -> None:
    store, reader = CrStore(stack.state), LocalReader(stack.state)
    settings = NotebookSettings(dbhandler_url=stack.url, database_config="finops/finops-db")
    for path in NOTEBOOKS:
        text = path.read_text()
        cr, call = yaml.safe_load(text), RUN_LINE.search(text)
        assert call is not None, f"{path.name} has no '# ... POST /compute/<name> {{...}}' comment to run it by"
        ns, name = cr["metadata"]["namespace"], cr["metadata"]["name"]
        assert call["name"] == name, path.name
        store.apply([cr])
        subject = f"Notebook/{ns}/{name}"
        stored = notebooks.handle(CR_APPLIED, subject, reader.get("Notebook", ns, name), reader, settings)
        assert stored.action in ("created", "updated", "unchanged"), stored  # the optimizer stored `cyclic` already
        params = {k: VM if re.fullmatch(r"<[^>]*>", str(v)) else v for k, v in json.loads(call["params"]).items()}
        resp = httpx.post(f"{stack.url}/compute/{name}", json=params, timeout=60,
                          headers={**stack.auth(), "Accept": "application/json"})
        assert resp.status_code == 200, f"{name}: {resp.status_code} {resp.text}"
        info = httpx.get(f"{stack.url}/compute/{name}/info", headers=stack.auth())
        assert info.json()["code"] == cr["spec"]["inline"]
        gone = reader.get("Notebook", ns, name)
        store.delete("Notebook", ns, name)
        assert notebooks.handle(CR_DELETED, subject, gone, reader, settings).action == "deleted"
    assert httpx.get(f"{stack.url}/compute/list", headers=stack.auth()).json() == []


# ------------------------------------------------------------------ tests

CRUD = {"CREATE TABLE", "SELECT", "DELETE", "REFRESH TABLE"}


@pytest.mark.parametrize(("name", "run", "expected", "at_least", "setup"), [
    pytest.param("uploads", run_uploads, CRUD | {"ALTER TABLE", "SELECT information_schema", "INSERT VALUES",
                                                 "INSERT SELECT", "DELETE IN (SELECT)", "UPDATE"}, 60, None, id="uploads"),
    pytest.param("focus ingest", run_focus_ingest, {"CREATE TABLE", "SELECT information_schema", "DELETE", "INSERT VALUES",
                                                    "REFRESH TABLE"}, 5, None, id="focus-ingest"),
    pytest.param("aicost ingest", run_aicost, CRUD | {"INSERT VALUES", "INSERT VALUES ON CONFLICT DO NOTHING",
                                                      "SELECT information_schema"}, 10, None, id="aicost"),
    pytest.param("snapshot store", run_snapshots, CRUD | {"INSERT VALUES", "INSERT VALUES ON CONFLICT DO UPDATE"}, 9,
                 None, id="snapshots"),
    pytest.param("optimizer", run_optimizer, {"SELECT", "SELECT information_schema"}, 5, setup_optimizer, id="optimizer"),
    pytest.param("notebooks", run_notebooks, CRUD | {"INSERT VALUES ON CONFLICT DO NOTHING"}, 14, setup_notebooks,
                 id="notebooks"),
])
def test_every_statement_of_the_flow_parses_under_cratedb_grammar(
    stack: Stack, name: str, run: FlowRun, expected: set[str], at_least: int, setup: FlowRun | None
) -> None:
    check_flow(stack, name, run, expected, at_least, setup)


def test_uploads_use_bulk_args_in_cratedb_mode(stack: Stack) -> None:
    start = stack.offset()
    send_run(stack, "cm_bulk", "cost", "run-b", [[cost("a", JAN, "1.00")], arrow([cost("b", FEB, "2.00")])])
    bulk = {s.stmt for s in stack.sent_since(start) if s.via == "bulk_args"}
    assert any(s.startswith('INSERT INTO "cm_bulk__finops_staging"') for s in bulk), bulk


def test_a_captured_statement_once_broken_is_refused(stack: Stack) -> None:
    start = stack.offset()
    send_run(stack, "cm_broken", "resource", "run-x", [usage(VM, 2)])
    insert = next(s.stmt for s in stack.sent_since(start) if s.via == "bulk_args")
    assert parse_error(insert) is None
    for broken in (insert.replace(") VALUES (", " VALUES (", 1), insert + " garbage", insert.replace("INSERT INTO", "INSERT", 1)):
        assert parse_error(broken) is not None, f"accepted: {broken}"


@pytest.mark.parametrize("broken", [
    "SELEC 1",
    "SELECT * FROM t WHERE",
    "SELECT a FROM t garbage garbage",
    'INSERT INTO "t" ("a" VALUES (?)',
    "DELETE t WHERE a = ?",
    "CREATE TABLE IF NOT EXISTS t (a STRING,)",
    "SELECT 1; SELECT 2",
])
def test_the_grammar_really_refuses_broken_sql(broken: str) -> None:
    assert parse_error(broken) is not None, f"{broken!r} was accepted: the checks above would prove nothing"
    assert parse_error('SELECT tags[\'team\'] AS team, SUM(billedcost) FROM "t" WHERE "timestamp" >= ? GROUP BY tags[\'team\']') is None
