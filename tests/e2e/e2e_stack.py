"""End-to-end helpers: a real local stack (broker + one functions-framework process per function +
the embedded database behind the dbhandler) in a temporary state directory.

`make_stack(service_env=..., retry=..., backoff=...)` (fixture) starts `functions.local.supervisor.Stack`
from a copy of knative/ (so a test may set a Service's env or a Trigger's delivery, as an operator
would edit the manifests), with the examples' DatabaseConfig and password Secret applied first (as
`finops demo` does), the scheduler stopped (`finops run` semantics only: no tick interleaves with a
test) and the supervisor's restart loop running in a thread. Teardown stops everything.
The returned `E2EStack` drives it like a user: the real `finops` CLI as a subprocess, SQL through
the crate client.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from functions import events
from functions.local.crstore import CrStore, load_documents
from functions.local.supervisor import Stack, auth_headers, read_stack

REPO = Path(__file__).resolve().parents[2]
KNATIVE = REPO / "knative" / "base"
EVENTSOURCES = REPO / "eventsources"
EXAMPLES = REPO / "crds" / "examples"
NAMESPACE = "finops"
DB_REF = {"name": "finops-db", "namespace": NAMESPACE}


@dataclass
class Finops:
    """One `finops` command: exit status and output."""

    rc: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


@dataclass
class E2EStack:
    stack: Stack
    state: Path
    tmp: Path
    _thread: threading.Thread | None = None
    _n: int = field(default=0)

    # -- the user's tools ----------------------------------------------------------------------
    def finops(self, *args: str, timeout: float = 120) -> Finops:
        """`python -m functions.cli ARGS --state <state>` (the installed `finops` minus the wrapper)."""
        proc = subprocess.run([sys.executable, "-m", "functions.cli", *args, "--state", str(self.state)],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)
        return Finops(proc.returncode, proc.stdout, proc.stderr)

    def apply(self, *docs: Mapping[str, Any]) -> Finops:
        """`finops apply -f` of these documents (written to a YAML file like a user's).

        A created/changed ExporterScraperConfig publishes io.finops.cr.applied, which exports (and
        scrapes) at once in the background: wait for that chain to end, so it never interleaves
        with the test's own `finops run`.
        """
        self._n += 1
        path = self.tmp / f"apply-{self._n}.yaml"
        path.write_text(yaml.safe_dump_all([dict(d) for d in docs], sort_keys=False), encoding="utf-8")
        base = self.broker_stats()
        result = self.finops("apply", "-f", str(path))
        assert result.rc == 0, result.text
        chains = sum(1 for line in result.out.splitlines()
                     if line.startswith("exporterscraperconfig/") and not line.endswith("unchanged"))
        for _ in range(chains):
            wait_until(lambda b=base: self._chain_ended(b), timeout=120, what="the cr.applied chain to end")
            base = self.broker_stats()
        return result

    def broker_stats(self) -> dict[str, int]:
        assert self.stack.broker is not None
        return self.stack.broker.stats()

    def _chain_ended(self, base: dict[str, int]) -> bool:
        """exporter failed or replied io.finops.export.failed (no scrape follows), or both answered."""
        now = self.broker_stats()
        done = now["delivered"] + now["failed"] - base["delivered"] - base["failed"]
        ended = now["failed"] > base["failed"] or now["unrouted_replies"] > base["unrouted_replies"]
        return done >= 2 or (done >= 1 and ended)

    def run(self, ref: str) -> Finops:
        """`finops run KIND/NS/NAME`: the tick goes through the broker and the whole chain synchronously."""
        return self.finops("run", ref)

    def sql(self, stmt: str, args: list[Any] | None = None) -> list[list[Any]]:
        from functions.clients.db import connect

        db_info = self.info()["db"]
        db = connect(db_info["url"], db_info["user"], db_info["password"])
        try:
            return db.execute(stmt, args).rows
        finally:
            db.close()

    # -- the stack -----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return read_stack(self.state)

    def url(self, service: str) -> str:
        return str(self.info()["services"][service]["url"])

    def auth(self) -> dict[str, str]:
        """The stack's caller token as a header: every function and the broker require it."""
        return auth_headers(self.info())

    def post_event(self, service: str, event: events.Event) -> httpx.Response:
        """Deliver one CloudEvent (binary mode) straight to a function, as the bridge's Broker would."""
        headers, body = events.to_binary(event)
        return httpx.post(self.url(service), headers={**headers, **self.auth()}, content=body, timeout=60)

    def pid(self, service: str) -> int:
        return int(self.info()["services"][service]["pid"])

    def alive(self, service: str) -> bool:
        """The function answers GET / (functions-framework answers every path of an HTTP target)."""
        try:
            httpx.get(self.url(service) + "/", timeout=5)
        except httpx.HTTPError:
            return False
        return True

    def deadletters(self) -> list[str]:
        path = self.state / "deadletter.jsonl"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def stop(self) -> None:
        self.stack.stop()
        if self._thread is not None:
            self._thread.join(timeout=15)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, poll: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def knative_copy(dest: Path, service_env: Mapping[str, Mapping[str, str]] | None = None,
                 retry: int | None = None, backoff: str | None = None) -> Path:
    """knative/ with a Service's env extended and/or every Trigger's retry/backoffDelay changed."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(KNATIVE.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "Service" and doc["metadata"]["name"] in (service_env or {}):
                container = doc["spec"]["template"]["spec"]["containers"][0]
                extra = (service_env or {})[doc["metadata"]["name"]]
                container["env"] = [*container.get("env", []), *({"name": k, "value": v} for k, v in extra.items())]
            if doc.get("kind") == "Trigger":
                delivery = doc["spec"].setdefault("delivery", {})
                if retry is not None:
                    delivery["retry"] = retry
                if backoff is not None:
                    delivery["backoffDelay"] = backoff
        (dest / path.name).write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    return dest


def start_stack(tmp: Path, service_env: Mapping[str, Mapping[str, str]] | None = None,
                retry: int | None = None, backoff: str | None = "PT0.2S") -> E2EStack:
    """A ready stack in tmp/state; Trigger backoff shortened (0.2s) so retries don't dominate runtime."""
    state = tmp / "state"
    CrStore(state).apply(load_documents(EXAMPLES / "databaseconfig.yaml"))
    stack = Stack(state, knative_copy(tmp / "knative", service_env, retry, backoff), EVENTSOURCES)
    try:
        stack.start()
    except Exception:
        stack.stop()
        raise
    if stack.scheduler is not None:
        stack.scheduler.stop()
    thread = threading.Thread(target=stack.run_until_stopped, kwargs={"poll": 0.2}, name="e2e-supervisor",
                              daemon=True)
    thread.start()
    return E2EStack(stack, state.resolve(), tmp, thread)


# -- CR builders ---------------------------------------------------------------------------------

def secret(name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": NAMESPACE}, "stringData": dict(data)}


def database_docs() -> list[dict[str, Any]]:
    """crds/examples/databaseconfig.yaml: the DatabaseConfig and its password Secret."""
    return load_documents(EXAMPLES / "databaseconfig.yaml")


def esc(name: str, path: str, secret_name: str, table: str, metric_type: str = "cost",
        headers: list[str] | None = None, **exporter: Any) -> dict[str, Any]:
    """An ExporterScraperConfig shaped like crds/examples/exporterscraperconfig-focus-cost.yaml."""
    return {
        "apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "exporterConfig": {"api": {"path": path, "verb": "GET",
                                       "endpointRef": {"name": secret_name, "namespace": NAMESPACE},
                                       **({"headers": headers} if headers else {})},
                               "metricType": metric_type, "pollingInterval": "1h", **exporter},
            "scraperConfig": {"tableName": table, "pollingInterval": "1h", "scraperDatabaseConfigRef": DB_REF},
        },
    }


# -- reconciliation with the source, to the cent -------------------------------------------------

CENT = Decimal("0.01")


@dataclass(frozen=True)
class Totals:
    """Rows and BilledCost per group, amounts as Decimal (exact for the source, 1e-4 for stored doubles)."""

    rows: int
    by: dict[tuple[str, ...], tuple[int, Decimal]]

    def same_to_the_cent(self, other: Totals) -> bool:
        return self.rows == other.rows and self.by.keys() == other.by.keys() and all(
            n == other.by[k][0] and abs(total - other.by[k][1]) < CENT / 2 for k, (n, total) in self.by.items())


GROUPS = {"provider": ("ProviderName",), "currency": ("BillingCurrency",),
          "period": ("BillingPeriodStart",), "category": ("ChargeCategory", "BillingCurrency")}


def _totals(rows: Iterable[tuple[tuple[str, ...], Decimal]]) -> Totals:
    by: dict[tuple[str, ...], tuple[int, Decimal]] = {}
    count = 0
    for key, amount in rows:
        n, total = by.get(key, (0, Decimal(0)))
        by[key] = (n + 1, total + amount)
        count += 1
    return Totals(count, by)


def csv_totals(path: Path, group: str) -> Totals:
    """What the source export says, read with the csv module and summed with Decimal."""
    cols = GROUPS[group]
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return _totals((tuple(period_of(r[c]) if c == "BillingPeriodStart" else r[c] for c in cols),
                    Decimal(r["BilledCost"] or "0")) for r in rows)


def db_totals(stack: E2EStack, table: str, group: str) -> Totals:
    """The stored rows, per row (a double per row, rounded to the source's 4 decimals), summed with Decimal."""
    cols = [c.lower() for c in GROUPS[group]]
    rows = stack.sql(f"SELECT {', '.join(cols)}, billedcost FROM {table}")
    return _totals((tuple(period_of(v) if c == "billingperiodstart" else str(v) for c, v in zip(cols, r, strict=False)),
                    Decimal(repr(r[-1] or 0.0)).quantize(Decimal("0.0001"))) for r in rows)


def period_of(value: Any) -> str:
    """YYYY-MM of a CSV timestamp or of the epoch milliseconds CrateDB's protocol returns."""
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m")
    return str(value)[:7]
