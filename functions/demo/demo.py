"""`finops demo`: the whole pipeline on a laptop, from sample APIs to a showback report, in one command.

Steps (each prints one progress line on stderr; the first that fails names itself and exits 1):
1. demo APIs on 127.0.0.1: a FOCUS cost export (bearer token), Azure Monitor metrics (basic auth)
   and a Prometheus text endpoint;
2. a state directory (a temporary one unless --state names another) holding the endpoint Secrets
   `finops/demo-cost-api`, `finops/demo-usage-api`, `finops/demo-metrics` and the CRs of
   crds/examples/, applied before the stack starts so the stack reads the examples' database password;
3. the local stack (broker + one process per function, `functions.local.supervisor.Stack`);
4. one cycle per ExporterScraperConfig and ScraperConfig with `finops run` semantics: the CR's
   PingSource tick goes through the broker synchronously (the whole delivery chain), no schedules;
5. 3,000 seeded AI cost events (functions.demo.aicost_producer: GPU jobs, LLM calls, bursts) sent
   batched to the stack's aicost function; one scrape of aicost-metrics must sum to the database;
6. the showback report on stdout (`functions.demo.showback`, AI spend by team/project/source beside
   cloud spend), then everything stops; `--serve`
   keeps it all running (scheduler included) until Ctrl-C.
7. the cost-breakdown sample notebook (crds/examples/notebook-cost-breakdown.yaml) stored and run
   through the handler's /compute, its per-currency totals checked against the showback, its table printed.

The functions' JSON logs go to <state>/logs/demo.log so the terminal shows only the demo's lines.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from functions.errors import FinopsError

DEMO_NAMESPACE = "finops"
AI_EVENTS = 3000
DEFAULT_STATE = Path(".state")
_HERE = Path(__file__).resolve().parent.parent


def auth_headers(info: dict[str, Any]) -> dict[str, str]:
    """The stack's caller token as a header (every function and the broker require it)."""
    from functions.local.supervisor import auth_headers as headers

    return headers(info)


class DemoFailed(Exception):
    """A step failed: `step` names it, the message says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step


@dataclass
class Options:
    state: Path | None = None
    serve: bool = False
    rows: int = 2000
    seed: int = 0
    examples: Path = field(default_factory=lambda: _default_dir("crds") / "examples")
    knative: Path = field(default_factory=lambda: _default_dir("knative/base"))
    eventsources: Path = field(default_factory=lambda: _default_dir("eventsources"))
    verbose: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        """Tolerant of a minimal parser: every attribute is optional; the CLI's default ./.state means 'temporary'."""
        state = getattr(args, "state", None)
        out = cls(state=Path(state) if state and Path(state) != DEFAULT_STATE else None,
                  serve=bool(getattr(args, "serve", False)), verbose=bool(getattr(args, "verbose", False)))
        for name in ("rows", "seed"):
            if getattr(args, name, None) is not None:
                setattr(out, name, int(getattr(args, name)))
        for name in ("examples", "knative", "eventsources"):
            if getattr(args, name, None):
                setattr(out, name, Path(getattr(args, name)))
        return out


def _default_dir(name: str) -> Path:
    cwd = Path.cwd() / name
    return cwd if cwd.is_dir() else _HERE.parent / name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's own options, for the CLI to add to its `demo` sub-command."""
    parser.add_argument("--rows", type=int, default=2000, help="FOCUS rows served by the demo cost API")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated cost data")
    parser.add_argument("--examples", type=Path, default=None, help="folder of example CRs (crds/examples)")
    parser.add_argument("--verbose", "-v", action="store_true", help="show the functions' logs on stderr")


class _Progress:
    """Progress lines on the terminal's stderr, even while fd 2 goes to the log file."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        self.stream.write(f"[demo {time.monotonic() - self.started:6.1f}s] {message}\n")
        self.stream.flush()


@contextlib.contextmanager
def _logs_to(path: Path | None) -> Iterator[IO[str]]:
    """Point fd 2 (ours and the children's) at `path`; yields a stream on the original stderr."""
    sys.stderr.flush()
    if path is None:
        yield sys.stderr
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(2)
    terminal = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    with path.open("ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            terminal.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of `finops demo`: 0 when every step worked, 1 (with the failed step named) otherwise."""
    opts = Options.from_args(args)
    temp = None if opts.state else tempfile.mkdtemp(prefix="finops-demo-")
    state = (opts.state or Path(str(temp))).resolve()
    log_path = None if opts.verbose else state / "logs" / "demo.log"
    try:
        with _logs_to(log_path) as terminal:
            progress = _Progress(terminal)
            try:
                _Demo(opts, state, progress).run()
                return 0
            except DemoFailed as exc:
                progress(f"FAILED at step {exc}")
                if log_path is not None:
                    progress(f"functions' logs: {log_path}" + ("" if temp is None else " (kept)"))
                    temp = None  # keep the logs for the user
                return 1
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


class _Demo:
    def __init__(self, opts: Options, state: Path, progress: _Progress) -> None:
        self.opts, self.state, self.progress = opts, state, progress
        self.cleanups: list[Any] = []

    def run(self) -> None:
        try:
            self._run()
        finally:
            for stop in reversed(self.cleanups):
                with contextlib.suppress(Exception):
                    stop()

    def _run(self) -> None:
        from functions.demo import showback

        apis = self._start_apis()
        docs = self._apply(apis)
        stack, info = self._start_stack()
        if not self.opts.serve and stack.scheduler is not None:
            stack.scheduler.stop()  # `finops run` semantics only: no tick may interleave with the report
        configs = [d for d in docs if d.get("kind") in ("ExporterScraperConfig", "ScraperConfig")]
        for doc in configs:
            self._cycle(stack, doc)
        ai_table = self._ai_events(info)
        db = self._database(info)
        cost_table, usage_table = _tables(docs)
        self.progress(f"showback from {cost_table}" + (f" and {usage_table}" if usage_table else "")
                      + (f" and {ai_table}" if ai_table else ""))
        report = showback.summary(db, cost_table=cost_table, resource_table=usage_table, ai_table=ai_table)
        if ai_table and sum(a.events for a in report.ai) != AI_EVENTS:
            raise DemoFailed("AI cost events", f"{sum(a.events for a in report.ai)} stored, {AI_EVENTS} sent")
        self._ai_metrics(info, report)
        if not report.totals:
            raise DemoFailed("showback", "; ".join(report.problems) or f"table {cost_table} holds no cost rows")
        mismatch = reconcile(apis["cost"].csv_path, report)
        if mismatch:
            raise DemoFailed("reconcile with the source", mismatch)
        ledger_line = reconcile_ledger(db, _cost_source(docs), apis["cost"].csv_path)
        if ledger_line.startswith("MISMATCH"):
            raise DemoFailed("reconcile with the ledger", ledger_line)
        self.progress("reconciled: rows and BilledCost per currency match the cost API's export to the cent")
        self.progress(ledger_line)
        sys.stdout.write(showback.render(report) + "\n")
        sys.stdout.flush()
        self._notebook(info, cost_table, report)
        self._optimize(info, docs, usage_table)
        if self.opts.serve:
            self._serve(stack, info, apis)
        self.progress("done; stopping the stack")

    # -- steps -----------------------------------------------------------------------------------
    def _start_apis(self) -> dict[str, Any]:
        from functions.demo.demo_apis import DemoCostApi, DemoUsageApi, PrometheusTextApi

        self.progress(f"starting demo APIs ({self.opts.rows} FOCUS rows, seed {self.opts.seed})")
        try:
            cost = DemoCostApi(self.opts.rows, seed=self.opts.seed, data_dir=self.state / "demo-data").start()
            self.cleanups.append(cost.stop)
            usage = DemoUsageApi().start()
            self.cleanups.append(usage.stop)
            metrics = PrometheusTextApi().start()
            self.cleanups.append(metrics.stop)
        except OSError as exc:
            raise DemoFailed("demo APIs", str(exc)) from exc
        self.progress(f"cost API {cost.url}/focus/export.csv, usage API {usage.url}, metrics {metrics.url}/metrics")
        return {"cost": cost, "usage": usage, "metrics": metrics}

    def _apply(self, apis: dict[str, Any]) -> list[dict[str, Any]]:
        from functions.local.crstore import CrStore, load_documents

        examples = sorted(self.opts.examples.glob("*.yaml")) if self.opts.examples.is_dir() else []
        if not examples:
            raise DemoFailed("apply examples", f"no *.yaml in {self.opts.examples}")
        try:
            docs = [doc for path in examples for doc in load_documents(path)]
            changes = CrStore(self.state).apply(demo_secrets(apis) + docs)
        except FinopsError as exc:
            raise DemoFailed("apply examples", exc.message) from exc
        self.progress(f"applied {len(changes)} objects from {len(examples)} files in {self.opts.examples} "
                      f"(state {self.state})")
        return docs

    def _start_stack(self) -> tuple[Any, dict[str, Any]]:
        from functions.local.supervisor import Stack

        self.progress("starting the local stack (broker + functions)")
        stack = Stack(self.state, self.opts.knative, self.opts.eventsources)
        self.cleanups.append(stack.stop)
        try:
            info = stack.start()
        except (RuntimeError, OSError, FinopsError) as exc:
            raise DemoFailed("start stack", str(exc)) from exc
        names = ", ".join(f"{n} {s['url']}" for n, s in info.get("services", {}).items())
        self.progress(f"stack ready: broker {info.get('broker')}; {names}")
        return stack, info

    def _cycle(self, stack: Any, doc: dict[str, Any]) -> None:
        from functions.local.scheduler import ping_event
        from functions.models.pingsources import pingsources_for

        meta = doc.get("metadata", {})
        ref = f"{doc['kind']}/{meta.get('namespace', 'default')}/{meta.get('name')}"
        started = time.monotonic()
        for ps in pingsources_for(doc):
            results = stack.broker.publish(ping_event(ps), wait=True)
            problem = cycle_problem(doc["kind"], results, doc.get("spec"))
            if problem:
                raise DemoFailed(f"finops run {ref}", problem)
        self.progress(f"finops run {ref}: ok in {time.monotonic() - started:.1f}s")

    def _ai_events(self, info: dict[str, Any]) -> str | None:
        """Send the seeded AI cost stream (GPU jobs, LLM calls, bursts) to the stack's aicost function, batched."""
        from functions.demo.aicost_producer import Generator, Sender, SendReport

        service = info.get("services", {}).get("aicost")
        if service is None:
            return None
        start = datetime.now(UTC) - timedelta(hours=1)
        items = Generator(seed=self.opts.seed, burst_chance=0.01).batch(AI_EVENTS, start, timedelta(hours=1) / AI_EVENTS)
        report, sender = SendReport(), Sender(service["url"], batch=500, headers=auth_headers(info))
        try:
            sender.send(items, report)
        finally:
            sender.close()
        if report.accepted != AI_EVENTS:
            raise DemoFailed("AI cost events", report.text())
        self.progress(f"AI cost events: {report.text()}")
        return "ai_costs"

    def _ai_metrics(self, info: dict[str, Any], report: Any) -> None:
        """Scrape aicost-metrics once: its counter sums to the database's AI total."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        service = info.get("services", {}).get("aicost-metrics")
        if service is None or not report.ai:
            return
        try:
            text = httpx.get(service["url"] + "/metrics", headers=auth_headers(info), timeout=30).raise_for_status().text
        except httpx.HTTPError as exc:
            raise DemoFailed("AI cost metrics", str(exc)) from exc
        scraped = sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                      if s.name == "ai_finops_cost_dollars_total")
        stored = sum(a.usd for a in report.ai)
        if abs(scraped - stored) > 0.005:
            raise DemoFailed("AI cost metrics", f"ai_finops_cost_dollars_total sums to {scraped}, the database to {stored}")
        self.progress(f"metrics {service['url']}/metrics: ai_finops_cost_dollars_total sums to ${scraped:,.2f} "
                      "(= the database)")

    def _notebook(self, info: dict[str, Any], cost_table: str, report: Any) -> None:
        """The cost-breakdown sample notebook stored and run through the handler's /compute; its table on stdout."""
        from functions.demo.demo_notebooks import run_cost_breakdown

        billed = {t.currency: t.billed for t in report.totals}
        try:
            text = run_cost_breakdown(self.opts.examples, info.get("db", {}), cost_table, billed, self.progress)
        except FinopsError as exc:
            raise DemoFailed("notebook", exc.message) from exc
        if text:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def _optimize(self, info: dict[str, Any], docs: list[dict[str, Any]], usage_table: str | None) -> None:
        """The optimizer webhook asked about a composition of the demo VM (day-2) and a new job (day-1)."""
        from functions.demo import demo_optimizer

        service = info.get("services", {}).get("optimizer")
        resource_id = _demo_resource_id(docs)
        if service is None or not usage_table or not resource_id:
            return
        try:
            text = demo_optimizer.run(self.opts.examples, info.get("db", {}), service["url"], self.state, usage_table,
                                      resource_id, self.progress, auth_headers(info))
        except FinopsError as exc:
            raise DemoFailed("optimizer", exc.message) from exc
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def _database(self, info: dict[str, Any]) -> Any:
        from functions.clients.db import connect

        db_info = info.get("db", {})
        try:
            db = connect(db_info["url"], db_info["user"], db_info["password"])
        except (KeyError, FinopsError) as exc:
            raise DemoFailed("connect to the database", str(exc)) from exc
        self.cleanups.append(db.close)
        return db

    def _serve(self, stack: Any, info: dict[str, Any], apis: dict[str, Any]) -> None:
        self.progress(f"serving until Ctrl-C: broker {info.get('broker')}, database {info.get('db', {}).get('url')} "
                      f"(user {info.get('db', {}).get('user')}), cost API {apis['cost'].url}, "
                      f"usage API {apis['usage'].url}; state {self.state}")
        previous = signal.signal(signal.SIGTERM, lambda *_: stack._stop.set())
        try:
            stack.run_until_stopped()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)


def demo_secrets(apis: dict[str, Any]) -> list[dict[str, Any]]:
    """The endpoint Secrets the examples reference, pointing at the running demo APIs."""
    def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": DEMO_NAMESPACE}, "stringData": data}

    cost, usage, metrics = apis["cost"], apis["usage"], apis["metrics"]
    return [
        secret("demo-cost-api", {"server-url": cost.url, "token": cost.token}),
        secret("demo-usage-api", {"server-url": usage.url, "username": usage.username, "password": usage.password}),
        secret("demo-metrics", {"server-url": metrics.url}),
    ]


def cycle_problem(kind: str, results: list[Any], spec: Any = None) -> str:
    """Why a synchronous cycle failed ('' when it worked): a failed delivery, or a chain that stopped early.

    An ExporterScraperConfig expects an export only with an exporterConfig and an upload only with a
    scraperConfig (either half is optional); without `spec` both are expected.
    """
    if not results:
        return "no Trigger matched the tick (is knative/base/30-triggers.yaml complete?)"
    failed = [r for r in results if not r.ok]
    if failed:
        r = failed[0]
        return f"{r.trigger} -> {r.subscriber} answered HTTP {r.status} after {r.attempts} attempt(s): {r.error}"
    halves = spec if isinstance(spec, dict) else {"exporterConfig": {}, "scraperConfig": {}}
    exports = kind == "ExporterScraperConfig" and halves.get("exporterConfig") is not None
    uploads = kind != "ExporterScraperConfig" or halves.get("scraperConfig") is not None
    if exports and not any(r.reply_type == "io.finops.export.completed" for r in results):
        return "the exporter finished without a snapshot (no io.finops.export.completed)"
    if uploads and not any(r.reply_type == "io.finops.upload.completed" for r in results):
        return "the scraper uploaded nothing (no io.finops.upload.completed)"
    return ""


def reconcile(csv_path: Path, report: Any) -> str:
    """'' when the stored totals equal the source export's (rows, and BilledCost to the cent, per currency)."""
    import csv
    from decimal import Decimal

    source: dict[str, tuple[int, Decimal]] = {}
    with csv_path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            n, total = source.get(row["BillingCurrency"], (0, Decimal(0)))
            source[row["BillingCurrency"]] = (n + 1, total + Decimal(row["BilledCost"] or "0"))
    stored = {t.currency: (t.rows, t.billed) for t in report.totals}
    same = stored.keys() == source.keys() and all(
        stored[c][0] == n and abs(Decimal(repr(stored[c][1])) - total) < Decimal("0.005")
        for c, (n, total) in source.items())
    if not same:
        return f"stored (rows, billed) per currency {stored} != source {source}"
    return ""


def reconcile_ledger(db: Any, source: str, csv_path: Path) -> str:
    """The ledger of the cost config's latest run against the source export: received = the export's
    rows and BilledCost per currency, and received = stored + rejected. A line for people, starting
    with MISMATCH when any of it does not hold."""
    import csv
    from decimal import Decimal

    from functions.storage import ledger

    last = ledger.last_run(db, source)
    if last is None:
        return f"MISMATCH: no ledger entry for {source}"
    table, run = last
    summary = ledger.run_summary(db, table, run)
    per: dict[str, list[Decimal]] = {}
    for r in summary:
        got = per.setdefault(str(r["currency"]), [Decimal(0)] * 6)
        for i, k in enumerate(("rows_received", "rows_stored", "rows_rejected", "billedcost_received",
                               "billedcost_stored", "billedcost_rejected")):
            got[i] += Decimal(repr(r[k] or 0))
    source_totals: dict[str, list[Decimal]] = {}
    with csv_path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            t = source_totals.setdefault(row["BillingCurrency"], [Decimal(0), Decimal(0)])
            t[0] += 1
            t[1] += Decimal(row["BilledCost"] or "0")
    cent = Decimal("0.005")
    for cur, (rows, cost) in source_totals.items():
        rr, rs, rj, cr, cs, cj = per.get(cur, [Decimal(0)] * 6)
        if rr != rows or abs(cr - cost) > cent or rr != rs + rj or abs(cr - cs - cj) > cent:
            return (f"MISMATCH: {cur}: source {rows} rows {cost}; ledger received {rr} ({cr}), stored {rs} ({cs}), "
                    f"rejected {rj} ({cj})")
    parts = ", ".join(f"{cur} {int(v[0])} rows = {int(v[1])} stored + {int(v[2])} rejected, BilledCost {v[3]:.2f}"
                      for cur, v in sorted(per.items()))
    return f"ledger of run {run[:12]}… ({table}): {parts}"


def _cost_source(docs: list[dict[str, Any]]) -> str:
    """The finops_source of the example cost ExporterScraperConfig (its ledger key)."""
    for doc in docs:
        spec = doc.get("spec") or {}
        if doc.get("kind") == "ExporterScraperConfig" and spec.get("scraperConfig") and str(
                (spec.get("exporterConfig") or {}).get("metricType") or "cost").lower() == "cost":
            meta = doc.get("metadata") or {}
            return f"ExporterScraperConfig/{meta.get('namespace')}/{meta.get('name')}"
    raise DemoFailed("showback", "no example ExporterScraperConfig with metricType cost")


def _demo_resource_id(docs: list[dict[str, Any]]) -> str:
    """The VM whose usage the resource config collects (its ResourceId variable)."""
    for doc in docs:
        exporter = (doc.get("spec") or {}).get("exporterConfig") or {}
        if doc.get("kind") == "ExporterScraperConfig" and str(exporter.get("metricType", "")).lower() == "resource":
            return str((exporter.get("additionalVariables") or {}).get("ResourceId", ""))
    return ""


def _tables(docs: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The cost and resource tables the example ExporterScraperConfigs write."""
    cost, usage = "", None
    for doc in docs:
        if doc.get("kind") != "ExporterScraperConfig":
            continue
        spec = doc.get("spec") or {}
        scraper = spec.get("scraperConfig")
        if not scraper:
            continue  # exporter-only: served on /metrics, stored nowhere
        kind = str((spec.get("exporterConfig") or scraper).get("metricType") or "cost").lower()
        table = str(scraper.get("tableName") or "")
        if kind == "cost" and not cost:
            cost = table
        elif kind == "resource" and usage is None:
            usage = table
    if not cost:
        raise DemoFailed("showback", "no example ExporterScraperConfig with metricType cost")
    return cost, usage


def main(argv: list[str] | None = None) -> int:
    """`python -m functions.demo.demo` (the same as `finops demo`)."""
    parser = argparse.ArgumentParser(prog="finops demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--state", type=Path, default=None, help="state directory (default: a temporary one)")
    parser.add_argument("--serve", action="store_true", help="keep everything running until Ctrl-C")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
