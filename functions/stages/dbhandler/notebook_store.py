"""`/compute`: Krateo's notebook store and execution (krateoplatformops/finops-database-handler,
main.py and internal/compute/), made safe.

| request | answer |
|---|---|
| GET `/compute/list` | 200 `[["name"], ...]`, `[]` without a notebook table |
| GET `/compute/fence` | 200: what the notebook fence builds on this kernel, what is missing, whether runs are refused |
| GET `/compute/<n>/info` | 200 `{"notebook", "code"}`; 404 `{"notebook", "code": "", "error"}` |
| GET anything else under `/compute` | 400 `{"error": "URL composition incorrect"}` |
| POST `/compute/<n>/upload[?overwrite=true]` | 200 `{"result": true}` (insert if absent; exactly `overwrite=true` upserts); `{"result": false}` for an empty body; 400 for code that is not valid Python or UTF-8 |
| DELETE `/compute/<n>` | 200 `{"result": "deleted"}`, also for unknown names and without a table; 500 `{"result": "error"}` on a SQL error |
| POST `/compute/<n>` | JSON object of string parameters -> 200 stdout (newlines stripped at both ends; JSON content type when Accept includes application/json, else text/plain); 404 unknown notebook; 422 notebook failed or hit a limit (stderr in the body); 504 timed out; 503 database unreachable, too many runs, or the fence cannot be built (FINOPS_NOTEBOOK_FENCE=required) |
| other methods/shapes | 405 `{"error": "URL composition or methods are incorrect"}` |
| no/wrong Basic auth | 401, checked on every call with that call's credentials |

Differences from Krateo (each a fix, listed in docs/notebooks.md): failed notebooks are not 200; names and
SQL are parameters, never interpolated; `\\"` in stored code is not rewritten; the run uses the
CALLER's credentials, not a cached first connection's; timeouts, limits, a kernel fence and clean-up
(stages/dbhandler/sandbox.py, fence.py).
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
from collections.abc import Callable, Mapping
from functools import lru_cache

import orjson

from functions.clients.db import Database, DatabaseError
from functions.errors import (
    FieldError,
    FinopsError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    TimedOut,
    Unavailable,
    Unprocessable,
)
from functions.logs import get_logger
from functions.settings.database import DbHandlerSettings
from functions.settings.notebooks import NotebookRunSettings
from functions.stages.dbhandler import sandbox
from functions.stages.dbhandler.response import JSON, Response, header

log = get_logger("dbhandler.compute")

TABLE = "notebook_table"
DDL = f"CREATE TABLE IF NOT EXISTS {TABLE} (notebook_name STRING PRIMARY KEY, data TEXT)"
URL_INCORRECT = "URL composition incorrect"
URL_METHOD_INCORRECT = "URL composition or methods are incorrect"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,252}")  # always fullmatch: `$` would let a trailing newline through
TEXT = "text/plain; charset=utf-8"
_MEMORY_SIGNALS = {-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS}

Opener = Callable[[str | None], tuple[Database, str, str]]
"""Verifies a request's Authorization header: (connection, user, password) of THIS caller, or raises Unauthorized."""


@lru_cache(maxsize=1)
def notebook_settings() -> NotebookRunSettings:
    """Read once per process (FINOPS_NOTEBOOK_*)."""
    return NotebookRunSettings.from_env()


def handle(method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes,
           settings: DbHandlerSettings, open_db: Opener) -> Response:
    """One `/compute...` request: authenticate first (like Krateo), then route by method and shape."""
    db, user, password = open_db(header(headers, "Authorization"))
    try:
        parts = path.strip("/").split("/")[1:]
        method = "GET" if method == "HEAD" else method
        if method == "GET":
            if parts == ["list"]:
                return Response(200, list_notebooks(db))
            if parts == ["fence"]:
                return Response(200, fence_plan(settings).report())
            if len(parts) == 2 and parts[1] == "info":
                return info(db, _name(parts[0]))
            raise InvalidInput(URL_INCORRECT)
        if method == "POST" and len(parts) == 2 and parts[1] == "upload":
            return store(db, _name(parts[0]), body, query.get("overwrite") == "true")
        if method == "POST" and len(parts) == 1 and parts[0]:
            params = _params(body)
            code = load(db, _name(parts[0]))
            db.close()  # not held during the run
            plan = fence_plan(settings)
            if plan.refused:
                raise refused(plan)
            creds = sandbox.DbCredentials(settings.notebook_sql_url(), user, password)
            return run(parts[0], code, creds, params, header(headers, "Accept") or "", notebook_settings(), plan)
        if method == "DELETE" and len(parts) == 1 and parts[0]:
            return delete(db, _name(parts[0]))
        raise MethodNotAllowed(URL_METHOD_INCORRECT)
    finally:
        db.close()


# ---------------------------------------------------------------------------------- the store


def list_notebooks(db: Database) -> list[list[str]]:
    if not db.table_exists(TABLE):
        return []
    return [[str(r[0])] for r in db.execute(f"SELECT notebook_name FROM {TABLE} ORDER BY notebook_name").rows]


def load(db: Database, name: str) -> str:
    """The stored code; NotFound (404) when there is no such notebook."""
    code = _code(db, name)
    if code is None:
        raise NotFound(f"no notebook named {name!r} (upload it with POST /compute/{name}/upload)")
    return code


def _code(db: Database, name: str) -> str | None:
    if not db.table_exists(TABLE):
        return None
    rows = db.execute(f"SELECT data FROM {TABLE} WHERE notebook_name = ?", [name]).rows
    return str(rows[0][0]) if rows else None


def info(db: Database, name: str) -> Response:
    code = _code(db, name)
    if code is None:
        raise NotFound(f"no notebook named {name!r}", details={"notebook": name, "code": ""})
    return Response(200, {"notebook": name, "code": code})


def store(db: Database, name: str, body: bytes, overwrite: bool) -> Response:
    """Insert if absent, or upsert with overwrite; `{"result": false}` for an empty body (Krateo)."""
    if not body:
        return Response(200, {"result": False, "error": "empty notebook code: nothing stored"})
    code = _source(body, name)
    db.execute(DDL)
    conflict = "DO UPDATE SET data = excluded.data" if overwrite else "DO NOTHING"
    db.execute(f"INSERT INTO {TABLE} (notebook_name, data) VALUES (?, ?) ON CONFLICT (notebook_name) {conflict}", [name, code])
    db.execute(f"REFRESH TABLE {TABLE}")  # CrateDB: visible to the next list at once
    log.info("notebook stored", extra={"notebook": name, "overwrite": overwrite, "bytes": len(body)})
    return Response(200, {"result": True})


def _source(body: bytes, name: str) -> str:
    """UTF-8 Python source that compiles (a syntax error is reported now, not at the first run)."""
    try:
        code = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("notebook code must be UTF-8", [FieldError("body", str(exc))]) from exc
    try:
        compile(code, f"{name}.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f"line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else "body"
        msg = exc.msg if isinstance(exc, SyntaxError) else str(exc)
        raise InvalidInput("notebook code is not valid Python", [FieldError(where, msg)]) from exc
    return code


def delete(db: Database, name: str) -> Response:
    """Idempotent: unknown names and a missing table are 'deleted' too; a SQL failure is 500."""
    try:
        if db.table_exists(TABLE):
            db.execute(f"DELETE FROM {TABLE} WHERE notebook_name = ?", [name])
            db.execute(f"REFRESH TABLE {TABLE}")
    except DatabaseError as exc:
        log.error("notebook delete failed", extra={"notebook": name, "error": exc.message})
        raise FinopsError(exc.message, details={"result": "error"}) from exc
    log.info("notebook deleted", extra={"notebook": name})
    return Response(200, {"result": "deleted"})


# --------------------------------------------------------------------------------------- runs


def fence_plan(settings: DbHandlerSettings) -> sandbox.FencePlan:
    """This process's fence (probed once), checked to hide the database file and other runs' directories."""
    hidden = [tempfile.gettempdir()]
    if settings.embedded and settings.db_path != ":memory:":
        hidden.append(os.path.dirname(os.path.abspath(settings.db_path)))
    return sandbox.fence_plan(notebook_settings(), tuple(hidden))


def refused(plan: sandbox.FencePlan) -> Unavailable:
    """503: the fence cannot be built here; a deployment condition, named, with the switch that decides."""
    return Unavailable("notebooks are refused: this kernel or container cannot build the notebook fence "
                       "(FINOPS_NOTEBOOK_FENCE=required; `warn` runs them with what there is)",
                       details={"missing": list(plan.missing)})


def run(name: str, code: str, creds: sandbox.DbCredentials, params: dict[str, str], accept: str,
        limits: NotebookRunSettings, plan: sandbox.FencePlan | None = None) -> Response:
    plan = plan or sandbox.fence_plan(limits)
    if plan.missing and plan.mode == "warn":
        log.warning("notebook runs without a complete fence", extra={"notebook": name, "missing": list(plan.missing)})
    result = sandbox.run(name, code, creds, params, limits, plan)
    if result.fence_error:
        log.error("notebook fence failed", extra={"notebook": name, "error": result.fence_error})
    status = 500  # unless it answers: an unexpected exception is a 500
    try:
        answer = outcome(name, result, accept, limits)
        status = answer.status
        return answer
    except FinopsError as exc:
        status = exc.status
        raise
    finally:
        log.info("notebook run", extra={"notebook": name, "user": creds.username, "params": sorted(params),
                                        "exit_code": result.exit_code, "timed_out": result.timed_out,
                                        "seconds": round(result.seconds, 3), "status": status,
                                        "output_bytes": len(result.stdout)})


def outcome(name: str, result: sandbox.RunResult, accept: str, limits: NotebookRunSettings) -> Response:
    """The answer for a finished run (pure): its output, or raises the error that says why there is none."""
    stderr = result.stderr.strip("\n")
    if result.fence_error:
        raise Unavailable(f"notebook {name!r} did not run: its fence could not be built (the reason is in "
                          "the handler's log, `notebook fence failed`)")
    if result.timed_out:
        raise _failed(TimedOut, f"notebook {name!r} timed out after {limits.timeout_s:g} s and was killed", result, stderr)
    if result.stopped == "output":
        raise _failed(Unprocessable, f"notebook {name!r} wrote more than {limits.max_output_mb} MiB of output "
                            "(FINOPS_NOTEBOOK_MAX_OUTPUT_MB) and was stopped", result, stderr)
    if result.stopped == "disk":
        raise _failed(Unprocessable, f"notebook {name!r} held more than {limits.max_disk_mb} MiB in its work directory "
                            "(FINOPS_NOTEBOOK_MAX_DISK_MB) and was stopped", result, stderr)
    if result.stopped == "memory":
        raise _failed(Unprocessable, f"notebook {name!r}'s processes together held more than {limits.memory_mb} MiB of memory "
                            "(FINOPS_NOTEBOOK_MEMORY_MB) and it was stopped", result, stderr)
    code = result.exit_code
    if code == 0:
        return Response(200, result.stdout, content_type=JSON if wants_json(accept) else TEXT)
    if code == sandbox.EXIT_DB_UNAVAILABLE:
        raise _failed(Unavailable, f"notebook {name!r} could not reach the database", result, stderr)
    if code == -signal.SIGXCPU or (code == -signal.SIGKILL and result.cpu_s >= limits.cpu_s):
        raise _failed(Unprocessable, f"notebook {name!r} used more than {limits.cpu_s} s of CPU (FINOPS_NOTEBOOK_CPU_SECONDS)", result, stderr)
    if code == sandbox.EXIT_MEMORY or code in _MEMORY_SIGNALS or "MemoryError" in stderr[-2000:]:
        raise _failed(Unprocessable, f"notebook {name!r} ran out of memory (limit {limits.memory_mb} MiB) or crashed", result, stderr)
    if "[Errno 27]" in stderr or code == -signal.SIGXFSZ:
        raise _failed(Unprocessable, f"notebook {name!r} wrote more than {limits.max_file_mb} MiB to a file", result, stderr)
    raise _failed(Unprocessable, f"notebook {name!r} failed with exit code {code}", result, stderr)


def _failed(kind: type[FinopsError], message: str, result: sandbox.RunResult, stderr: str) -> FinopsError:
    """A failed run's error: its message, exit code and stderr in the body."""
    return kind(message, details={"exit_code": result.exit_code, "stderr": stderr})


def wants_json(accept: str) -> bool:
    """Whether any media range of Accept is application/json (Krateo: only the exact header value)."""
    return any(part.split(";")[0].strip().lower() == JSON for part in accept.split(","))


def _params(body: bytes) -> dict[str, str]:
    """The run's parameters: a JSON object of strings (empty body = none); every bad entry listed."""
    if not body.strip():
        return {}
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("parameters must be a JSON object of strings", [FieldError("body", str(exc))]) from exc
    if not isinstance(obj, dict):
        raise InvalidInput("parameters must be a JSON object of strings", [FieldError("body", f"got {type(obj).__name__}")])
    errors = [FieldError(str(k), f"value must be a string, got {type(v).__name__}") for k, v in obj.items() if not isinstance(v, str)]
    errors += [FieldError(str(k), "name must be non-empty and contain no '='") for k in obj if not k or "=" in k]
    errors += [FieldError(str(k), "NUL characters cannot be passed as arguments")
               for k, v in obj.items() if "\0" in k or (isinstance(v, str) and "\0" in v)]
    if errors:
        raise InvalidInput("parameters must be a JSON object of strings", errors)
    return obj


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise InvalidInput("bad notebook name", [FieldError("name", f"{name!r}: 1-253 letters, digits, '_', '.', '-', starting with a letter or digit")])
    return name
