"""Running one notebook: a limited, short-lived subprocess that sees nothing of the handler.

Per run: a fresh temporary directory (`code/<name>.py` plus an empty `work/` that is the working
directory, HOME and TMPDIR) removed afterwards; a scrubbed environment (PATH, LANG, HOME, TMPDIR,
PYTHONPATH and the credentials pipe's fd number, nothing else: none of the handler's FINOPS_*
settings); the caller's credentials through an inherited pipe (read once by
functions.notebooks_api and closed), and on argv only where Krateo compatibility wants them
(FINOPS_NOTEBOOK_ARGV_PASSWORD); rlimits set in the child before exec (address space, file size,
which also caps stdout and stderr since they go to files, no core dumps); a wall-clock timeout after
which the whole process group is killed. Stray children of a notebook are killed with its group when
it ends. Limits of this design (documented): the notebook runs as the handler's user, so absolute
paths the handler can read (and a child that leaves the process group) are not fenced off.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pydantic import Field

from functions.errors import Unavailable
from functions.settings import _EnvSettings

RUNNER = "from functions.notebooks_api import _main; _main()"
CREDENTIALS_FD_ENV = "FINOPS_NOTEBOOK_CREDENTIALS_FD"  # functions.notebooks_api reads the same name
EXIT_DB_UNAVAILABLE = 75
EXIT_MEMORY = 86
STDERR_TAIL = 64 * 1024
_MIB = 1024 * 1024


class NotebookSettings(_EnvSettings):
    """Limits of notebook runs (`POST /compute/<name>`)."""

    timeout_s: float = Field(default=120.0, gt=0, alias="FINOPS_NOTEBOOK_TIMEOUT", description="Seconds a notebook may run before its process group is killed (answer 504).")
    memory_mb: int = Field(default=1024, ge=64, alias="FINOPS_NOTEBOOK_MEMORY_MB", description="Address-space limit of a notebook process, MiB (RLIMIT_AS; answer 422 when hit).")
    max_file_mb: int = Field(default=256, ge=1, alias="FINOPS_NOTEBOOK_MAX_FILE_MB", description="Largest file a notebook may write, its stdout and stderr included, MiB (RLIMIT_FSIZE).")
    max_running: int = Field(default=4, ge=1, alias="FINOPS_NOTEBOOK_MAX_RUNNING", description="Notebooks running at once per handler process; more wait up to 10 s, then 503 + Retry-After.")
    argv_password: bool = Field(default=True, alias="FINOPS_NOTEBOOK_ARGV_PASSWORD", description="Put the caller's password on the notebook's argv (Krateo's convention, readable in /proc/<pid>/cmdline); false puts `-` there and notebooks read it through functions.notebooks_api.")
    python: str = Field(default="", alias="FINOPS_NOTEBOOK_PYTHON", description="Interpreter of notebooks (default: the handler's own, which has crate and functions.notebooks_api).")


@dataclass(frozen=True)
class RunResult:
    """How a run ended: exit code (negative = killed by that signal), outputs, whether it timed out."""

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool
    seconds: float


@dataclass(frozen=True)
class DbCredentials:
    url: str
    username: str
    password: str


def host_port(url: str) -> tuple[str, str]:
    """Krateo's argv host and port from a database URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "", str(parts.port or (443 if parts.scheme == "https" else 80))


def argv_for(path: str, creds: DbCredentials, params: Mapping[str, str], settings: NotebookSettings) -> list[str]:
    """[python, -c, runner, file, host, port, user, password|-, k=v ...] (parameters in the caller's order)."""
    host, port = host_port(creds.url)
    password = creds.password if settings.argv_password else "-"
    return [settings.python or sys.executable, "-c", RUNNER, path, host, port, creds.username, password,
            *(f"{k}={v}" for k, v in params.items())]


def scrubbed_env(work: Path, fd: int) -> dict[str, str]:
    """The notebook's whole environment: nothing of the handler's settings or secrets."""
    package_root = str(Path(__file__).resolve().parents[3])
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(work),
        "TMPDIR": str(work),
        "PYTHONPATH": package_root,
        CREDENTIALS_FD_ENV: str(fd),
    }


def _limiter(settings: NotebookSettings) -> Callable[[], None]:
    """preexec_fn: rlimits in the child (hard = soft, so the notebook cannot raise them again)."""
    memory = settings.memory_mb * _MIB
    fsize = settings.max_file_mb * _MIB

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return limit


class _Slots:
    """At most `max_running` notebooks at once in this process; the rest wait briefly, then 503."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sems: dict[int, threading.BoundedSemaphore] = {}

    @contextlib.contextmanager
    def hold(self, size: int, wait_s: float = 10.0) -> Iterator[None]:
        with self._lock:
            sem = self._sems.setdefault(size, threading.BoundedSemaphore(size))
        if not sem.acquire(timeout=wait_s):
            raise Unavailable(f"{size} notebooks are already running; try again shortly", retry_after=5)
        try:
            yield
        finally:
            sem.release()


SLOTS = _Slots()


def run(name: str, code: str, creds: DbCredentials, params: Mapping[str, str], settings: NotebookSettings) -> RunResult:
    """Run `code` as notebook `name` with the limits of `settings`; the temporary directory is always removed."""
    root = Path(tempfile.mkdtemp(prefix="finops-notebook-"))
    try:
        (root / "code").mkdir()
        work = root / "work"
        work.mkdir()
        path = root / "code" / f"{name}.py"
        path.write_text(code, encoding="utf-8")
        with SLOTS.hold(settings.max_running):
            return _spawn(str(path), work, creds, params, settings)
    finally:
        remove_tree(root)


def _spawn(path: str, work: Path, creds: DbCredentials, params: Mapping[str, str], settings: NotebookSettings) -> RunResult:
    read_fd, write_fd = os.pipe()
    secret = json.dumps({"url": creds.url, "username": creds.username, "password": creds.password}).encode()
    try:
        os.write(write_fd, secret)  # far below the pipe buffer: never blocks
    finally:
        os.close(write_fd)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        try:
            proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                argv_for(path, creds, params, settings), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=work, env=scrubbed_env(work, read_fd), pass_fds=(read_fd,), start_new_session=True,
                preexec_fn=_limiter(settings),  # noqa: PLW1509 - only setrlimit calls, no locks
            )
        finally:
            os.close(read_fd)
        timed_out = _wait(proc, settings.timeout_s)
        seconds = time.monotonic() - started
        return RunResult(proc.returncode, _read(out), _read(err, STDERR_TAIL), timed_out, seconds)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for the notebook, then kill its whole group: at the timeout, and stray children after a normal end.

    The leader is waited for through a pidfd WITHOUT reaping it, so its pid (the group id) cannot be
    reused by an unrelated process before the group is killed.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: reap first, no stray-children sweep
        try:
            proc.wait(timeout_s)
            return False
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return True
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
    finally:
        os.close(pidfd)
    _kill_group(proc.pid)
    proc.wait()
    return not ready


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _read(fh: IO[bytes], tail: int | None = None) -> str:
    size = fh.seek(0, os.SEEK_END)
    fh.seek(max(0, size - tail) if tail else 0)
    return fh.read().decode("utf-8", errors="replace")


def remove_tree(root: Path) -> None:
    """rmtree that also removes what a notebook made read-only."""
    def retry(func: Callable[..., object], path: str, _exc: object) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)

    shutil.rmtree(root, onerror=retry)
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
