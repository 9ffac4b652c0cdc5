"""The database handler killed (SIGKILL) in the middle of a multi-part upload loses and duplicates nothing.

Set-up: the scraper Service's env sets FINOPS_UPLOAD_BATCH_ROWS=2000 (20k FOCUS rows -> 10 parts) and
FINOPS_UPLOAD_RETRIES=0, the Triggers retry=0, so the interrupted cycle fails at once instead of
being healed by retries (those are covered by the idempotent-part tests).
Cases, in order:
- the first cycle (cr.applied) stores export v1 exactly;
- the API publishes v2 (a restated period, some rows gone); `finops run` starts, and as soon as the
  first part is in staging the dbhandler process (pid from stack.json) and its gunicorn worker get
  SIGKILL, as a container kill would (a worker outliving its master finishes its requests, its SQL
  listener being its own, and the run would then succeed): the chain fails
  with the scraper's 503 and the event is dead-lettered;
- the supervisor restarts the dbhandler (new pid, answers); the table still holds v1 exactly: no part
  of the interrupted run leaked in;
- the next `finops run` makes the table equal v2: row count and sums per provider/currency/period to
  the cent, nothing lost, nothing duplicated.
"""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import threading
from decimal import Decimal
from pathlib import Path

import pytest
from e2e_stack import GROUPS, E2EStack, Finops, csv_totals, database_docs, db_totals, esc, secret, wait_until

from functions.demo.demo_apis import DemoCostApi
from functions.demo.focus_rows import restate

pytestmark = pytest.mark.slow
ROWS, BATCH = 20_000, 2_000
REF, TABLE = "ExporterScraperConfig/finops/kill-e2e", "kill_e2e"


def assert_equal_to_source(stack: E2EStack, csv_path: Path) -> None:
    for group in GROUPS:
        source, stored = csv_totals(csv_path, group), db_totals(stack, TABLE, group)
        assert stored.same_to_the_cent(source), f"per {group}: stored {stored.rows} rows {stored.by} != source {source}"


def staged_rows(stack: E2EStack) -> int:
    try:
        return int(stack.sql(f"SELECT count(*) FROM {TABLE}__finops_staging")[0][0])
    except Exception:  # noqa: BLE001 - the handler may be mid-restart while we poll
        return 0


def kill_with_descendants(pid: int) -> None:
    """SIGKILL a process and every descendant (functions-framework's gunicorn master and its worker)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    doomed, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        doomed += frontier
    for victim in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def test_killed_dbhandler_mid_upload_loses_and_duplicates_nothing(make_stack, tmp_path: Path) -> None:
    stack: E2EStack = make_stack(service_env={"scraper": {"FINOPS_UPLOAD_BATCH_ROWS": str(BATCH),
                                                          "FINOPS_UPLOAD_RETRIES": "0"}}, retry=0)
    with DemoCostApi(ROWS, seed=4, data_dir=tmp_path / "api") as api:
        v1 = api.csv_path
        stack.apply(secret("kill-e2e-api", {"server-url": api.url, "token": api.token}), *database_docs(),
                    esc("kill-e2e", "/focus/export.csv", "kill-e2e-api", TABLE))
        assert_equal_to_source(stack, v1)

        rows = list(csv.DictReader(v1.open(newline="", encoding="utf-8")))
        period = min(r["BillingPeriodStart"][:7] for r in rows)
        api.publish(restate((r for i, r in enumerate(rows) if i % 11), period, Decimal("0.9")))
        v2 = api.csv_path
        assert v2 != v1

        old_pid = stack.pid("dbhandler")
        outcome: list[Finops] = []
        runner = threading.Thread(target=lambda: outcome.append(stack.run(REF)))
        runner.start()
        wait_until(lambda: staged_rows(stack) > 0, timeout=60, poll=0.01, what="the first part in staging")
        kill_with_descendants(old_pid)
        runner.join(timeout=120)
        assert outcome, "finops run did not return"
        failed = outcome[0]
        assert failed.rc == 1, failed.text
        assert "-> scraper: HTTP 503" in failed.out and "FAILED" in failed.out, failed.out
        assert any('"scraper-export-completed"' in line for line in stack.deadletters())

        wait_until(lambda: stack.pid("dbhandler") != old_pid and stack.alive("dbhandler"), timeout=30,
                   what="the supervisor to restart the dbhandler")
        assert_equal_to_source(stack, v1)  # the interrupted run left nothing behind

        again = stack.run(REF)
        assert again.rc == 0, again.text
        assert_equal_to_source(stack, v2)
        assert stack.sql(f"SELECT count(*) FROM {TABLE}")[0][0] == len(rows) - len(rows[::11])
