"""What a notebook run by the database handler (`POST /compute/<name>`) may import.

    from functions.notebooks_api import params, connect, eprint, print_json

    p = params()                      # {"table": "focus", "filter": "a=b"}: key=value arguments, split at the FIRST '='
    with connect() as conn:           # a crate connection with the CALLER's credentials for this run
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM focus")
        print_json({"rows": cur.fetchone()[0]})

The handler starts notebooks with `python -c "from functions.notebooks_api import _main; _main()"
<file> <host> <port> <user> -`. `_main` reads the run's credentials and parameters from an inherited
fd (named by `FINOPS_NOTEBOOK_CREDENTIALS_FD`, read once and closed, so child processes never inherit
them) and rebuilds Krateo's argv in-process: `sys.argv` is `[file, host, port, user, password,
key=value, ...]` (Krateo's convention), so old notebooks that read `sys.argv[1:5]` and parse
`sys.argv[5:]` themselves keep working, while the process's real command line (`/proc/<pid>/cmdline`,
`ps`) shows `-` for the password and no parameters (parameters of any size: no argv limit). Then it
connects and runs the notebook file as `__main__` with Krateo's preamble names already defined:
`sys`, `client` (crate.client), `eprint`, `host`, `port`, `username`, `password`, `connection`,
`cursor`. Tracebacks point at the notebook's own lines (no injected lines). A notebook process has no
DNS (the fence allows no UDP): a database host name is resolved by the handler and pinned here.

Exit codes the handler reads: 0 ok; 75 the database could not be reached (answered 503, retried);
86 MemoryError (the memory limit); anything else a notebook failure.
This module imports only the standard library and `crate`: it runs in a fresh, limited process.
"""

from __future__ import annotations

import contextlib
import json
import os
import runpy
import socket
import sys
import traceback
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

CREDENTIALS_FD_ENV = "FINOPS_NOTEBOOK_CREDENTIALS_FD"
EXIT_DB_UNAVAILABLE = 75  # EX_TEMPFAIL
EXIT_MEMORY = 86
HIDDEN = "-"


@dataclass(frozen=True)
class Credentials:
    """Where the database is and who the caller is, for this run only."""

    url: str
    username: str
    password: str


_credentials: Credentials | None = None


def params(argv: list[str] | None = None) -> dict[str, str]:
    """The run's parameters: `key=value` arguments after host, port, user and password.

    Split at the first `=` (Krateo's notebooks split at every `=` and lose the rest of the value);
    an argument without `=` is a key with an empty value; a later duplicate key wins.
    """
    args = sys.argv[5:] if argv is None else argv
    out: dict[str, str] = {}
    for arg in args:
        key, _, value = arg.partition("=")
        out[key] = value
    return out


def credentials() -> Credentials:
    """This run's credentials: from the handler's pipe, else (a notebook run by hand) from argv 1-4."""
    if _credentials is not None:
        return _credentials
    if len(sys.argv) < 5:
        raise RuntimeError("no credentials: run notebooks through the database handler, or pass host port user password")
    host, port, user, password = sys.argv[1:5]
    if password == HIDDEN:
        raise RuntimeError("the password is hidden from argv and no credentials pipe was given")
    return Credentials(f"http://{host}:{port}", user, password)


def connect(**kwargs: Any) -> Any:
    """A new crate DB-API connection with this run's credentials (close it, or use `with`)."""
    from crate import client

    creds = credentials()
    return client.connect(creds.url, username=creds.username, password=creds.password, **kwargs)


def eprint(*args: Any, **kwargs: Any) -> None:
    """print() to stderr: shown in the handler's error answer when the notebook fails."""
    print(*args, file=sys.stderr, **kwargs)


def print_json(value: Any) -> None:
    """The notebook's answer as JSON on stdout (timestamps and other objects via str())."""
    print(json.dumps(value, default=str, separators=(",", ":")))


# ------------------------------------------------------------------------------- the runner


def _read_run() -> dict[str, Any] | None:
    """Read and close the run fd the handler passed (if any): credentials, parameters, pinned addresses."""
    fd_text = os.environ.pop(CREDENTIALS_FD_ENV, "")
    if not fd_text:
        return None
    fd = int(fd_text)
    chunks = []
    try:
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    data: dict[str, Any] = json.loads(b"".join(chunks))
    return data


def _pin(addresses: dict[str, list[str]]) -> None:
    """Resolve these host names to the handler's answer (notebooks cannot ask DNS themselves)."""
    if not addresses:
        return
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in addresses:
            return [info for address in addresses[name] for info in real(address, port, *args, **kwargs)]
        return real(host, port, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def _host_port(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", str(port)


def _preamble(path: str) -> dict[str, Any]:
    """The names Krateo's handler injects into every notebook (its preamble), connected now: a failure exits 75 (database unavailable)."""
    from crate import client

    creds = credentials()
    host, port = _host_port(creds.url)
    try:
        connection = client.connect(creds.url, username=creds.username, password=creds.password)
        cursor = connection.cursor()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "try later"
        eprint(f"error while connecting to database: {exc}")
        raise SystemExit(EXIT_DB_UNAVAILABLE) from exc
    return {"sys": sys, "client": client, "eprint": eprint, "host": host, "port": port,
            "username": creds.username, "password": creds.password,
            "connection": connection, "cursor": cursor, "__file__": path}


def _main() -> None:
    """Entry point of a notebook process: argv = ['-c', file, host, port, user, password or '-']."""
    global _credentials
    sys.argv = sys.argv[1:]
    path = sys.argv[0]
    run = _read_run()
    if run is not None:
        _credentials = Credentials(str(run["url"]), str(run["username"]), str(run["password"]))
        sys.argv[4:] = [_credentials.password]  # in this process only: the command line keeps `-`
        if "params" in run:
            sys.argv += [f"{k}={v}" for k, v in run["params"]]
        _pin(run.get("resolve") or {})
    names = _preamble(path)
    try:
        runpy.run_path(path, init_globals=names, run_name="__main__")
    except MemoryError:
        eprint("MemoryError: the notebook ran out of memory")
        os._exit(EXIT_MEMORY)  # no clean-up that could need memory
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # noqa: BLE001 - a notebook failure: its traceback, from its own frames
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != path:
            tb = tb.tb_next
        traceback.print_exception(type(exc), exc, tb or exc.__traceback__)
        raise SystemExit(1) from None
    finally:
        with contextlib.suppress(Exception):  # the notebook may have closed it already
            names["connection"].close()
