"""The `finops` command: run the local stack and manage its CRs, schedules and database.

    finops up [--detach]                      broker + scheduler + one process per function
    finops down                               stop a running stack
    finops apply -f FILE [-f FILE ...]        store CRs/Secrets, publish io.finops.cr.applied
    finops get [KIND[/NS/NAME]] [-o json|yaml]
    finops delete KIND/NS/NAME | -f FILE
    finops run KIND/NAME | KIND/NS/NAME       fire the CR's PingSource now, print the delivery chain
    finops sql [--json] "SQL"                 query the embedded database through the crate client
    finops validate FILE | KIND/NS/NAME [--version V] [--json]   FOCUS findings; exit 1 on an error finding
    finops demo [--serve]
    finops events generate --rate N --duration S [--target URL] [--batch B] [--broker] [--seed K]
    finops forecast serve [--model-dir DIR] [--port P]   the forecaster's KServe v2 server (the forecast extra)

Every command takes --state DIR (default ./.state). User errors print one clear message and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from functions import events
from functions.errors import FinopsError
from functions.stages.forecaster import flags as forecaster_flags  # argparse only: no kserve, no numpy

_HERE = Path(__file__).resolve().parent


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


def _default_dir(name: str) -> Path:
    """./<name> when run from a checkout's root, else the folder beside the package."""
    cwd = Path.cwd() / name
    return cwd if cwd.is_dir() else _HERE.parent / name


def _stack(state: Path) -> dict[str, Any]:
    from functions.local.supervisor import running_stack

    stack = running_stack(state)
    if stack is None:
        raise UserError(f"no stack is running for state {state}: start it with `finops up --state {state}`")
    return stack


def _auth(stack: dict[str, Any]) -> dict[str, str]:
    """The running stack's caller token as a header (the broker and every function require it)."""
    from functions.local.supervisor import auth_headers

    return auth_headers(stack)


def _publish(broker_url: str, event: events.Event, wait: bool = False,
             auth: dict[str, str] | None = None) -> dict[str, Any]:
    """Post one event to the stack's broker, with the stack's caller token (`auth`)."""
    headers, body = events.to_binary(event)
    headers = {**headers, **(auth or {})}
    try:
        resp = httpx.post(broker_url + ("/?wait=true" if wait else "/"), headers=headers, content=body,
                          timeout=None if wait else 10)
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise UserError(f"the broker at {broker_url} did not take the event: {exc}") from exc
    return dict(resp.json())


def cmd_up(args: argparse.Namespace) -> int:
    from functions.local.supervisor import Stack, running_stack

    if (stack := running_stack(args.state)) is not None:
        raise UserError(f"a stack is already running for {args.state} (pid {stack['pid']}); `finops down` first")
    if args.detach:
        return _up_detached(args)
    stack_obj = Stack(args.state, args.knative, args.eventsources)
    try:
        info = stack_obj.start()
    except (RuntimeError, OSError) as exc:
        stack_obj.stop()
        raise UserError(f"the stack did not start: {exc}") from exc
    _print_urls(info)
    signal.signal(signal.SIGTERM, lambda *_: stack_obj._stop.set())
    try:
        stack_obj.run_until_stopped()
    except KeyboardInterrupt:
        pass
    finally:
        stack_obj.stop()
    return 0


def _up_detached(args: argparse.Namespace) -> int:
    from functions.local.supervisor import running_stack

    log_path = args.state / "logs" / "stack.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "functions.cli", "up", "--state", str(args.state),
           "--knative", str(args.knative), "--eventsources", str(args.eventsources)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        stack = running_stack(args.state)
        if stack is not None and stack.get("pid") == proc.pid:
            _print_urls(stack)
            print(f"logs: {log_path}")
            return 0
        if proc.poll() is not None:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise UserError("the stack did not start:\n" + "\n".join(tail))
        time.sleep(0.2)
    raise UserError(f"the stack did not become ready in 120s; see {log_path}")


def _print_urls(stack: dict[str, Any]) -> None:
    print(f"broker     {stack['broker']}")
    for name, svc in stack["services"].items():
        print(f"{name:<10} {svc['url']}  (target {svc['target']}, pid {svc['pid']})")
    print(f"database   {stack['db']['url']}  user {stack['db']['user']} (password in {stack['db']['secret']})")


def cmd_down(args: argparse.Namespace) -> int:
    from functions.local.supervisor import running_stack

    stack = running_stack(args.state)
    if stack is None:
        print(f"no stack running for {args.state}")
        return 0
    pid = int(stack["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            print(f"stopped (pid {pid})")
            return 0
        time.sleep(0.2)
    raise UserError(f"the stack (pid {pid}) did not stop within 30s")


def _store(args: argparse.Namespace) -> Any:
    from functions.local.crstore import CrStore

    return CrStore(args.state)


def _publish_changes(args: argparse.Namespace, changes: list[Any]) -> None:
    from functions.local.supervisor import running_stack

    stack = running_stack(args.state)
    for change in changes:
        print(change)
        for event in change.events:
            if stack is not None:
                _publish(stack["broker"], event, auth=_auth(stack))
    if stack is None and any(c.events for c in changes):
        print("(stack not running: stored only; no events published)")


def cmd_apply(args: argparse.Namespace) -> int:
    from functions.local.crstore import load_documents

    docs = [doc for path in args.filename for doc in load_documents(path)]
    if not docs:
        raise UserError("no objects to apply")
    _publish_changes(args, _store(args).apply(docs))
    return 0


def _parse_ref(text: str, namespace: str) -> tuple[str, str | None, str | None]:
    parts = [p for p in text.split("/") if p]
    if len(parts) == 1:
        return parts[0], None, None
    if len(parts) == 2:
        return parts[0], namespace, parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise UserError(f"expected KIND, KIND/NAME or KIND/NAMESPACE/NAME, got {text!r}")


def cmd_get(args: argparse.Namespace) -> int:
    store = _store(args)
    single = False
    if args.ref:
        kind, ns, name = _parse_ref(args.ref, args.namespace)
        if name is not None and ns is not None:
            single = True
            obj = store.get(kind, ns, name)
            if obj is None:
                raise UserError(f"{kind} {ns}/{name} not found")
            objs = [obj]
        else:
            objs = store.list(kind, args.namespace if args.namespace_given else None)
    else:
        objs = store.list(None, args.namespace if args.namespace_given else None)
    if args.output == "json":
        print(json.dumps(objs[0] if single else objs, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump_all(objs, sort_keys=False), end="")
    else:
        now = datetime.now(UTC)
        rows = [[o.get("kind", ""), o.get("metadata", {}).get("namespace", ""), o.get("metadata", {}).get("name", ""),
                 _age(o.get("metadata", {}).get("creationTimestamp"), now)] for o in objs]
        print(format_table(["KIND", "NAMESPACE", "NAME", "AGE"], rows) if rows else "no objects")
    return 0


def _age(stamp: Any, now: datetime) -> str:
    try:
        secs = int((now - datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)).total_seconds())
    except ValueError:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def cmd_delete(args: argparse.Namespace) -> int:
    from functions.local.crstore import load_documents

    store = _store(args)
    targets: list[tuple[str, str, str]] = []
    for path in args.filename or []:
        for doc in load_documents(path):
            meta = doc.get("metadata") or {}
            targets.append((str(doc.get("kind")), str(meta.get("namespace") or "default"), str(meta.get("name"))))
    if args.ref:
        kind, ns, name = _parse_ref(args.ref, args.namespace)
        if name is None or ns is None:
            raise UserError("delete needs KIND/NAMESPACE/NAME (or KIND/NAME with -n) or -f FILE")
        targets.append((kind, ns, name))
    if not targets:
        raise UserError("nothing to delete: give KIND/NAMESPACE/NAME or -f FILE")
    _publish_changes(args, [store.delete(*t) for t in targets])
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from functions.local.scheduler import ping_event
    from functions.models.pingsources import pingsources_for

    kind, ns, name = _parse_ref(args.ref, args.namespace)
    if name is None or ns is None:
        raise UserError("run needs KIND/NAME or KIND/NAMESPACE/NAME")
    cr = _store(args).get(kind, ns, name)
    if cr is None:
        raise UserError(f"{kind} {ns}/{name} not found: `finops apply -f` it first")
    pings = pingsources_for(cr)
    if not pings:
        raise UserError(f"{cr['kind']} has no schedule: nothing to run")
    stack = _stack(args.state)
    failed = rejected = 0
    for ps in pings:
        answer = _publish(stack["broker"], ping_event(ps), wait=True, auth=_auth(stack))
        print(f"{ps['metadata']['name']}: event {answer['event']['id']} ({answer['event']['type']})")
        for d in answer["deliveries"]:
            outcome = "ok" if d["ok"] else f"FAILED: {d['error']}"
            reply = f" -> reply {d['reply_type']}" if d.get("reply_type") else ""
            reply += f": {d['reply_error']}" if d.get("reply_error") else ""
            print(f"{'  ' * (d['depth'] + 1)}{d['trigger']} -> {d['subscriber']}: HTTP {d['status']} "
                  f"after {d['attempts']} attempt(s), {outcome}{reply}")
            rejected += _print_rejected(d)
        if not answer["deliveries"]:
            print("  no Trigger matched this event")
        failed += int(answer["failed"]) + (0 if answer["deliveries"] else 1)
        failed += sum(1 for d in answer["deliveries"] if d.get("reply_error") is not None)  # a failed cycle
    if rejected and not failed:
        print(f"rows were rejected: `finops rejects {kind}/{ns}/{name}` lists them with their reasons")
    return 1 if failed else (EXIT_REJECTED if rejected else 0)


EXIT_REJECTED = 3
"""`finops run`'s exit code when every delivery worked but rows were kept out (1 = a delivery or cycle failed)."""


def _print_rejected(delivery: dict[str, Any]) -> int:
    """The rejected count and first reasons of one delivery's reply; the count."""
    count = int(delivery.get("reply_rejected") or 0)
    if count:
        indent = "  " * (int(delivery["depth"]) + 2)
        print(f"{indent}REJECTED {count} of {delivery.get('reply_received') or '?'} rows")
        for r in delivery.get("reply_reasons") or []:
            value = f" value {r['value']!r}" if r.get("value") is not None else ""
            print(f"{indent}  row {r.get('row')} {r.get('loc')}:{value} {r.get('msg')}")
    return count


def cmd_sql(args: argparse.Namespace) -> int:
    stack = _stack(args.state)
    try:
        from functions.clients import db
    except ImportError as exc:
        raise UserError(f"the database client is not available: {exc}") from exc

    database = db.connect(stack["db"]["url"], stack["db"]["user"], stack["db"]["password"])
    try:
        result = database.execute(args.sql)
    finally:
        database.close()
    if args.json:
        print(json.dumps([dict(zip(result.cols, row, strict=False)) for row in result.rows], indent=2, default=str))
    elif result.cols:
        print(format_table(result.cols, result.rows))
        print(f"({len(result.rows)} row{'s' if len(result.rows) != 1 else ''})")
    else:
        print(f"OK, {result.rowcount} row(s) affected")
    return 0


def cmd_rejects(args: argparse.Namespace) -> int:
    """The rows a config's latest run kept out, with row, column, value and reason, and that run's
    ledger (received = stored + rejected, per billing period and currency)."""
    from functions.clients import db
    from functions.storage import ledger

    kind, ns, name = _parse_ref(args.ref, args.namespace)
    if name is None or ns is None:
        raise UserError("rejects needs KIND/NAME or KIND/NAMESPACE/NAME")
    cr = _store(args).get(kind, ns, name)
    source = _source_of(cr, kind, ns, name)
    stack = _stack(args.state)
    database = db.connect(stack["db"]["url"], stack["db"]["user"], stack["db"]["password"])
    try:
        last = ledger.last_run(database, source)
        table, run = last if last else (None, None)
        rows = ledger.rejects_of(database, source, None if args.all else run, limit=args.limit) if run or args.all else []
        summary = ledger.run_summary(database, table, run) if table and run else []
    finally:
        database.close()
    if args.json:
        print(json.dumps({"source": source, "run": run, "table": table, "rejects": rows, "ledger": summary},
                         indent=2, default=str))
        return 0
    print(f"{source}: latest run {run or '(none recorded)'}" + (f" into {table}" if table else ""))
    if summary:
        cols = ["period", "currency", "rows_received", "rows_stored", "rows_rejected", "billedcost_received",
                "billedcost_stored", "billedcost_rejected"]
        print(format_table(cols, [[_period(r["period"]) if c == "period" else _cents(r[c]) for c in cols] for r in summary]))
    if not rows:
        print("no rejected rows")
        return 0
    cols = ["finops_run", "row_number", "column_name", "value", "reason"] if args.all else ["row_number", "column_name", "value", "reason"]
    print(format_table(cols, [[r[c] for c in cols] for r in rows]))
    print(f"({len(rows)} rejected cell(s); raw rows: --json)")
    return 0


def _source_of(cr: dict[str, Any] | None, kind: str, ns: str, name: str) -> str:
    """The `finops_source` a CR's rows carry: KIND/NS/NAME, but FocusConfig/<uid> for a FocusConfig
    (its rows follow the CR's identity, so a re-created CR never inherits another's)."""
    if cr is not None and cr.get("kind") == "FocusConfig" and (cr.get("metadata") or {}).get("uid"):
        return f"FocusConfig/{cr['metadata']['uid']}"
    return f"{cr['kind'] if cr else kind}/{ns}/{name}"


def _period(ms: Any) -> str:
    return "NULL" if ms is None else datetime.fromtimestamp(int(ms) / 1000, UTC).strftime("%Y-%m-%d")


def _cents(value: Any) -> Any:
    return round(value, 2) if isinstance(value, float) else value


def cmd_validate(args: argparse.Namespace) -> int:
    """FOCUS findings of a local file, or the ones stored for a config's latest run; 1 if any error."""
    from functions.models.registry import resolve_kind

    target, parts = Path(args.target), [p for p in args.target.split("/") if p]
    if not target.exists() and len(parts) == 3 and (info := resolve_kind(parts[0])) is not None:
        return _validate_stored(args, f"{info.kind}/{parts[1]}/{parts[2]}")
    from functions.codecs import focus_conformance as conformance

    table = _read_focus_file(target)
    try:
        version = conformance.resolve_version(args.version, table.column_names)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    found = conformance.check(table, version)
    how = "given" if args.version else "detected from the columns"
    if args.json:
        print(json.dumps({"file": str(target), "version": version, "rows": table.num_rows,
                          "findings": [f.to_dict() for f in found]}, indent=2))
    else:
        _print_findings([[f.severity, f.rule, f.column, f.count, _examples(f.to_dict()["examples"]), f.message]
                         for f in found])
        errors = sum(f.severity == "error" for f in found)
        print(f"{target}: {table.num_rows} rows checked as FOCUS {version} ({how}): "
              f"{errors} error(s), {len(found) - errors} warning(s)")
    return 1 if conformance.has_errors(found) else 0


def _read_focus_file(path: Path) -> Any:
    """The file as one string table, through the exporter's own readers (CSV, gzip, Parquet, JSON).

    Read as a cost payload; one without BilledCost is read again as plain columns, so its missing
    column is a finding rather than a refusal.
    """
    import pyarrow as pa

    from functions.codecs.sources import read_payload
    from functions.errors import InvalidInput

    def read(metric_type: str) -> Any:
        with path.open("rb") as body:
            return pa.Table.from_batches(list(read_payload(body, "application/octet-stream", str(path), metric_type)))

    try:
        try:
            return read("cost")
        except InvalidInput as exc:
            if not any(e.loc == "BilledCost" for e in exc.errors) or path.suffix.lower() == ".json":
                raise
            return read("generic")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except InvalidInput as exc:
        raise UserError(f"cannot read {path}: {exc.message}") from exc


def _validate_stored(args: argparse.Namespace, source: str) -> int:
    """The findings table's rows for the latest run of finops_source = KIND/NS/NAME."""
    from functions.clients import db
    from functions.storage import ledger

    stack = _stack(args.state)
    database = db.connect(stack["db"]["url"], stack["db"]["user"], stack["db"]["password"])
    cols = "focus_version, severity, rule, column_name, row_count, examples, message, target_table, checked_at"
    try:
        # The latest committed run (the ledger's), not the latest run that had findings: a clean run
        # stores none, and must not leave the errors of an older one on show.
        last = ledger.last_run(database, source)
        run = last[1] if last else None
        rows = [] if run is None else database.execute(
            f"SELECT {cols} FROM finops_findings WHERE finops_source = ? AND finops_run = ? "
            "ORDER BY severity, rule, column_name", [source, run]).rows
    except db.DatabaseError as exc:
        if "RelationUnknown" not in exc.message:
            raise
        rows = []
    finally:
        database.close()
    if not rows:
        print(f"no findings recorded for {source}" + (f" (latest run {run})" if run else ""))
        return 0
    if args.json:
        keys = [c.strip() for c in cols.split(",")]
        out = [dict(zip(keys, r, strict=True)) | {"examples": _json_or_text(r[5])} for r in rows]
        print(json.dumps({"source": source, "run": run, "findings": out}, indent=2, default=str))
    else:
        _print_findings([[r[1], r[2], r[3], r[4], _examples(_json_or_text(r[5])), r[6]] for r in rows])
        print(f"{source}: run {run} (FOCUS {rows[0][0]}, table {rows[0][7]})")
    return 1 if any(r[1] == "error" for r in rows) else 0


def _print_findings(rows: list[list[Any]]) -> None:
    if rows:
        rows = sorted(rows, key=lambda r: r[0] != "error")  # errors first, each group in rule order
        print(format_table(["SEVERITY", "RULE", "COLUMN", "ROWS", "EXAMPLES", "MESSAGE"], rows))
    else:
        print("no findings")


def _json_or_text(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        return value


def _examples(examples: Any, width: int = 60) -> str:
    """`row 3: 'Refund', row 7: ''` (cut to `width`): where to look in the file."""
    if not isinstance(examples, list):
        return "" if examples is None else str(examples)[:width]
    text = ", ".join(f"row {e.get('row')}: {e.get('value')!r}" if isinstance(e, dict) else str(e) for e in examples)
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_events_generate(args: argparse.Namespace) -> int:
    """Simulated AI cost events to --target, else to the running stack's aicost (or its broker with --broker)."""
    from functions.clients.callers import outbound_headers

    try:
        from functions.demo import aicost_producer
    except ModuleNotFoundError as exc:
        _refuse_without_demo(exc, "finops events generate")
        raise
    env = {"FINOPS_AUTH_TOKEN_FILE": args.token_file} if args.token_file else None
    target, batch, auth = args.target, args.batch, outbound_headers(env)
    if target is None:
        stack = _stack(args.state)
        auth = _auth(stack)
        if args.broker:
            target, batch = stack["broker"], 1
        elif "aicost" in stack.get("services", {}):
            target = stack["services"]["aicost"]["url"]
        else:
            raise UserError("the running stack has no aicost service (knative/base/23-aicost.yaml); give --target URL")
    if args.rate <= 0 or args.duration <= 0 or batch < 1:
        raise UserError("--rate and --duration must be > 0 and --batch >= 1")
    report = aicost_producer.generate(target, args.rate, args.duration, batch=batch, seed=args.seed, headers=auth)
    print(report.text())
    return 0 if report.failed_requests == 0 else 1


def _refuse_without_demo(exc: ModuleNotFoundError, command: str) -> None:
    """A UserError when `exc` is the functions.demo package missing, as in the container image."""
    if exc.name == "functions.demo" or str(exc.name).startswith("functions.demo."):
        raise UserError(f"`{command}` needs the functions.demo package, which this installation leaves out "
                        "(the container image ships the runtime only): run it from a checkout") from exc


def cmd_forecast_serve(args: argparse.Namespace) -> int:
    """The forecaster's KServe model server, in the foreground: needs the `forecast` extra."""
    try:
        from functions.stages.forecaster import server
    except ModuleNotFoundError as exc:
        message = forecaster_flags.missing_extra(exc, "finops forecast serve")
        if message is None:
            raise
        raise UserError(message) from exc
    return server.serve(forecaster_flags.options(args))


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from functions.demo import demo
    except ModuleNotFoundError as exc:
        _refuse_without_demo(exc, "finops demo")
        raise
    return int(demo.run(args) or 0)


def format_table(cols: list[str], rows: list[list[Any]]) -> str:
    """Columns aligned on the widest cell; numbers right-aligned, None as NULL."""
    cells = [["NULL" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) or r[i] is None for r in rows) for i in range(len(cols))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))).rstrip()
    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finops", description="The finops-functions local stack and CR tools.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--state", type=Path, default=Path(".state"), help="state directory (default ./.state)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", parents=[common], help="start the local stack")
    up.add_argument("--detach", "-d", action="store_true", help="run in the background (logs in <state>/logs)")
    up.add_argument("--knative", type=Path, default=_default_dir("knative/base"), help="Knative manifests (Services, Triggers)")
    up.add_argument("--eventsources", type=Path, default=_default_dir("eventsources"), help="static PingSources")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", parents=[common], help="stop the local stack").set_defaults(func=cmd_down)

    ns = argparse.ArgumentParser(add_help=False)
    ns.add_argument("--namespace", "-n", default=None, help="namespace for KIND/NAME and lists")
    apply = sub.add_parser("apply", parents=[common], help="store CRs and Secrets from YAML files")
    apply.add_argument("-f", "--filename", action="append", required=True, help="YAML file ('-' for stdin)")
    apply.set_defaults(func=cmd_apply)
    get = sub.add_parser("get", parents=[common, ns], help="show stored CRs and Secrets")
    get.add_argument("ref", nargs="?", help="KIND, KIND/NAME or KIND/NAMESPACE/NAME")
    get.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    get.set_defaults(func=cmd_get)
    delete = sub.add_parser("delete", parents=[common, ns], help="delete CRs or Secrets")
    delete.add_argument("ref", nargs="?", help="KIND/NAMESPACE/NAME")
    delete.add_argument("-f", "--filename", action="append", help="delete the objects of a YAML file")
    delete.set_defaults(func=cmd_delete)
    run = sub.add_parser("run", parents=[common, ns], help="fire a CR's schedule now and wait for the chain")
    run.add_argument("ref", help="KIND/NAME or KIND/NAMESPACE/NAME")
    run.set_defaults(func=cmd_run)
    rej = sub.add_parser("rejects", parents=[common, ns], help="rows a config's latest run rejected, and its ledger")
    rej.add_argument("ref", help="KIND/NAME or KIND/NAMESPACE/NAME")
    rej.add_argument("--all", action="store_true", help="every retained run, not only the latest")
    rej.add_argument("--limit", type=int, default=1000, help="at most this many rejected cells (default 1000)")
    rej.add_argument("--json", action="store_true", help="JSON: rejects with their raw rows, and the ledger")
    rej.set_defaults(func=cmd_rejects)
    sql = sub.add_parser("sql", parents=[common], help="run SQL on the stack's database")
    sql.add_argument("--json", action="store_true", help="print rows as a JSON list of objects")
    sql.add_argument("sql", help="the SQL statement")
    sql.set_defaults(func=cmd_sql)
    validate = sub.add_parser("validate", parents=[common], help="FOCUS conformance findings of a file or a config's last run")
    validate.add_argument("target", help="a FOCUS CSV/Parquet file, or KIND/NAMESPACE/NAME for the findings stored by its uploads")
    validate.add_argument("--version", default=None, help="FOCUS version to check against: 1.0, 1.1, 1.2 or 1.3 (default: detected)")
    validate.add_argument("--json", action="store_true", help="print the findings as JSON")
    validate.set_defaults(func=cmd_validate)
    ev = sub.add_parser("events", help="AI cost events").add_subparsers(dest="events_command", required=True, metavar="ACTION")
    gen = ev.add_parser("generate", parents=[common], help="send simulated GPU-job and LLM-API cost events (bursts included)")
    gen.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    gen.add_argument("--duration", type=float, default=10.0, help="seconds to send for (default 10)")
    gen.add_argument("--target", default=None, help="URL of the aicost function (default: the running stack's)")
    gen.add_argument("--batch", type=int, default=100, help="events per application/cloudevents-batch+json request")
    gen.add_argument("--broker", action="store_true", help="one event per request through the stack's broker")
    gen.add_argument("--seed", type=int, default=None, help="seed: the same seed re-sends the same event ids (stored once; sent at other times they "
                     "are reported as conflicts) (default: fresh ids)")
    gen.add_argument("--token-file", default=None, help="file of the caller token sent with --target "
                     "(default: $FINOPS_AUTH_TOKEN_FILE; the running stack's own otherwise)")
    gen.set_defaults(func=cmd_events_generate)
    fc = sub.add_parser("forecast", help="the forecaster").add_subparsers(dest="forecast_command", required=True, metavar="ACTION")
    serve = fc.add_parser("serve", help="serve forecasts over KServe's v2 protocol (needs the forecast extra)")
    forecaster_flags.add_arguments(serve)
    serve.set_defaults(func=cmd_forecast_serve)
    demo = sub.add_parser("demo", parents=[common], help="run the whole pipeline on sample data")
    demo.add_argument("--serve", action="store_true", help="keep the stack running afterwards")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "namespace"):
        args.namespace_given = args.namespace is not None
        args.namespace = args.namespace or "default"
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(f"finops: error: {exc}", file=sys.stderr)
    except FinopsError as exc:
        print(f"finops: error: {exc.message}", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err.loc}: {err.msg}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
