"""A real aicost function on 127.0.0.1 beside a real database handler, for the AI cost tests.

`start_aicost(tmp_path, sink_url)` writes a local CR store (DatabaseConfig + password Secret, plus
any CRs given), starts the dbhandler (embedded engine, fresh DuckDB file) and the aicost target of
functions/main.py with functions-framework, and returns an AICost with helpers to send single and
batched CloudEvents and to query the tables.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbhandler_server import AUTH, USERS, DbHandler, start_dbhandler, start_function, stop_process

from functions.clients.kube import resource_path
from functions.local.supervisor import free_port

MAIN = Path(__file__).resolve().parent.parent / "functions" / "main.py"
USAGE = "io.finops.aicost.usage"


def write_crs(state_dir: Path, docs: Sequence[Mapping[str, Any]]) -> None:
    """Store CRs and Secrets where the LocalReader finds them."""
    for doc in docs:
        meta = doc["metadata"]
        path = resource_path(state_dir, doc["kind"], meta.get("namespace", "default"), meta["name"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc), encoding="utf-8")


DB_DOCS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-pw", "namespace": "finops"},
     "stringData": {"password": USERS["finops"]}},
    {"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig", "metadata": {"name": "finops-db", "namespace": "finops"},
     "spec": {"username": "finops", "passwordSecretRef": {"name": "db-pw", "namespace": "finops", "key": "password"}}},
]


def event(data: Mapping[str, Any], *, id: str | None = None, time: str = "2025-03-10T12:00:00Z",  # noqa: A002
          type: str = USAGE) -> dict[str, Any]:  # noqa: A002
    """A structured-mode CloudEvent as a dict (what a batch holds)."""
    return {"specversion": "1.0", "type": type, "source": "/tests", "id": id or str(uuid.uuid4()),
            "time": time, "datacontenttype": "application/json", "data": dict(data)}


@dataclass
class AICost:
    url: str
    db: DbHandler
    state_dir: Path
    process: subprocess.Popen[bytes]
    log: Path

    def send(self, events: Sequence[Mapping[str, Any]]) -> httpx.Response:
        """POST a batch (application/cloudevents-batch+json)."""
        return httpx.post(self.url, content=json.dumps(list(events)).encode(),
                          headers={"Content-Type": "application/cloudevents-batch+json", **AUTH}, timeout=60)

    def send_one(self, ev: Mapping[str, Any]) -> httpx.Response:
        """POST one event in binary mode (ce-* headers), as the Broker delivers it."""
        headers = {"ce-specversion": "1.0", "ce-type": ev["type"], "ce-source": ev["source"], "ce-id": ev["id"],
                   "ce-time": ev["time"], "Content-Type": "application/json", **AUTH}
        return httpx.post(self.url, content=json.dumps(ev["data"]).encode(), headers=headers, timeout=60)

    def totals(self) -> dict[tuple[str, str, str], tuple[float, int]]:
        rows = self.db.sql("SELECT x_team, x_project, x_source, SUM(x_cost_usd) AS usd, COUNT(*) AS n FROM ai_costs "
                           "GROUP BY x_team, x_project, x_source")
        return {(r[0], r[1], r[2]): (round(float(r[3]), 9), int(r[4])) for r in rows}

    def stop(self) -> None:
        stop_process(self.process)
        self.db.stop()


def start_aicost(tmp_path: Path, sink_url: str = "", crs: Sequence[Mapping[str, Any]] = ()) -> AICost:
    state = tmp_path / "state"
    write_crs(state, [*DB_DOCS, *crs])
    db = start_dbhandler(tmp_path)
    port = free_port()
    log = tmp_path / "aicost.log"
    env = {"FINOPS_STATE_DIR": str(state), "FINOPS_KUBE": "local",
           "FINOPS_DBHANDLER_URL": db.url, "K_SINK": sink_url, "K_SERVICE": "aicost"}
    try:
        process = start_function("aicost", port, env, log, MAIN)
    except RuntimeError:
        db.stop()
        raise
    return AICost(f"http://127.0.0.1:{port}", db, state, process, log)


@pytest.fixture(name="aicost")
def aicost_fixture(tmp_path: Path) -> Iterator[AICost]:
    """An aicost function without a sink and without budgets."""
    server = start_aicost(tmp_path)
    try:
        yield server
    finally:
        server.stop()
