"""Running one notebook: a fenced, limited, short-lived process tree that sees nothing of the handler.

Per run: a fresh temporary directory (`code/<name>.py`, `lib/functions` -> the package, and an
empty `work/` that is the working directory, HOME and TMPDIR) removed afterwards; a scrubbed
environment (PATH, LANG, HOME, TMPDIR, PYTHONPATH and the run fd's number: none of the handler's
FINOPS_* settings); the caller's credentials and the run's parameters through an inherited memfd
(read once by functions.notebooks_api and closed; nothing secret or large on a command line: argv
shows `-` for the password, and parameters of any size never meet the kernel's argv limit).

The process tree and its fence are stages/dbhandler/fence.py: the launcher applies the wall-clock
timeout, caps stdout (FINOPS_NOTEBOOK_MAX_OUTPUT_MB: the run is stopped there, so output is held
once, never more than the cap), the work directory's total (FINOPS_NOTEBOOK_MAX_DISK_MB) and the
memory of all the run's processes together (FINOPS_NOTEBOOK_MEMORY_MB), and leaves no descendant alive; the notebook process builds
Landlock, seccomp, a PID namespace, a uid of its own and rlimits on itself before exec. What this
kernel offers is probed once per process (`fence_plan`); FINOPS_NOTEBOOK_FENCE decides what a
missing part means: `required` (default) refuses runs with 503 naming it, `warn` runs with what
there is and logs a warning per run, `off` builds no kernel fence (trusted notebooks only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from functions.errors import Unavailable
from functions.logs import get_logger
from functions.settings.notebooks import NotebookRunSettings
from functions.stages.dbhandler import fence

log = get_logger("dbhandler.sandbox")

RUNNER = "from functions.notebooks_api import _main; _main()"
CREDENTIALS_FD_ENV = "FINOPS_NOTEBOOK_CREDENTIALS_FD"  # functions.notebooks_api reads the same name
EXIT_DB_UNAVAILABLE = 75
EXIT_MEMORY = 86
EXIT_FENCE = fence.EXIT_FENCE
STDERR_TAIL = 64 * 1024
GRACE_S = 10.0  # the launcher enforces the timeout; the handler kills it only if it overstays by this much
_MIB = 1024 * 1024
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # functions/


@dataclass(frozen=True)
class RunResult:
    """How a run ended: exit code (negative = killed by that signal), outputs, whether it timed out.

    `stdout` is the run's output without leading and trailing newlines (Krateo strips them), read
    once as bytes; `stopped` names a limit that ended the run ("output", "disk", "memory"); `fence_error` says why the
    fence could not be built (no notebook code ran then); `cpu_s` is the notebook process's CPU time.
    """

    exit_code: int
    stdout: bytes
    stderr: str
    timed_out: bool
    seconds: float
    stopped: str = ""
    fence_error: str = ""
    cpu_s: float = 0.0  # CPU seconds the notebook process used


@dataclass(frozen=True)
class DbCredentials:
    url: str
    username: str
    password: str


# ------------------------------------------------------------------------------ the fence plan


@dataclass(frozen=True)
class Capabilities:
    """What this kernel and process can build (fence.probe_main, each mechanism tried in a child)."""

    landlock_abi: int = 0
    landlock_error: str = ""
    seccomp: bool = False
    seccomp_error: str = ""
    pid_namespace: bool = False
    pid_namespace_error: str = ""
    root: bool = False
    uid_drop: bool = False
    uid_drop_error: str = ""
    read_search: bool = False  # the handler holds CAP_DAC_READ_SEARCH (kept across the uid drop)
    prefixes: list[str] = field(default_factory=list)  # the notebook interpreter's sys.prefix & co


@dataclass(frozen=True)
class FencePlan:
    """What this handler will build around notebooks, and what it cannot (with the kernel's reasons)."""

    mode: str
    caps: Capabilities
    missing: tuple[str, ...]  # guarantees that do not hold here: `required` refuses runs
    notes: tuple[str, ...]  # weaker spots that remain even with a complete fence
    read_exec: tuple[str, ...]
    read: tuple[str, ...]

    @property
    def refused(self) -> bool:
        return self.mode == "required" and bool(self.missing)

    @property
    def landlock(self) -> bool:
        return self.mode != "off" and self.caps.landlock_abi > 0

    @property
    def seccomp(self) -> bool:
        return self.mode != "off" and self.caps.seccomp

    @property
    def pid_namespace(self) -> bool:
        return self.mode != "off" and self.caps.pid_namespace

    @property
    def uid_drop(self) -> bool:
        return self.mode != "off" and self.caps.uid_drop

    @property
    def signal_filter(self) -> bool:
        """Seccomp keeps signals in: nothing else does here (same uid, no PID namespace, no Landlock signal scope)."""
        return self.seccomp and not signals_scoped(self.caps)

    def signals(self) -> str:
        """What keeps a notebook from signalling the handler's processes ("" = nothing)."""
        if self.mode == "off":
            return ""
        if self.caps.pid_namespace:
            return "pid namespace"
        if self.caps.uid_drop:
            return "own uid"
        if self.caps.landlock_abi >= 6:
            return "landlock"
        return "seccomp" if self.caps.seccomp else ""

    def report(self) -> dict[str, Any]:
        """GET /compute/fence: what holds, what is missing, and whether runs are refused."""
        abi = self.caps.landlock_abi if self.landlock else 0
        return {
            "mode": self.mode, "runs": "refused" if self.refused else "allowed", "missing": list(self.missing),
            "notes": list(self.notes),
            "built": {"landlock_abi": abi, "filesystem": abi >= 1, "tcp_rules": abi >= 4, "scopes": abi >= 6,
                      "seccomp": self.seccomp, "pid_namespace": self.pid_namespace, "signals": self.signals(),
                      "own_uid": self.uid_drop, "subreaper": True, "rlimits": True},
        }


def fence_plan(settings: NotebookRunSettings, hidden: tuple[str, ...] = ()) -> FencePlan:
    """The plan for these settings; `hidden` are paths notebooks must never read (database, runs' temp root)."""
    return _plan(settings.fence, settings.interpreter, hidden)


@lru_cache(maxsize=16)
def _plan(mode: str, python: str, hidden: tuple[str, ...]) -> FencePlan:
    plan = plan_for(mode, capabilities(python), python, hidden)
    level = log.error if plan.refused else log.warning if plan.missing else log.info
    level("notebook fence", extra={**plan.report(), "landlock_error": plan.caps.landlock_error,
                                   "seccomp_error": plan.caps.seccomp_error,
                                   "pid_namespace_error": plan.caps.pid_namespace_error})
    return plan


def signals_scoped(caps: Capabilities) -> bool:
    """Signals to the handler are impossible without seccomp's help: another uid, PID namespace or Landlock scope."""
    return caps.uid_drop or caps.pid_namespace or caps.landlock_abi >= 6


def plan_for(mode: str, caps: Capabilities, python: str, hidden: tuple[str, ...] = ()) -> FencePlan:
    """What holds with these kernel capabilities (pure): the missing guarantees, each with its reason."""
    read_exec, read = fence.system_paths([*caps.prefixes, os.path.dirname(os.path.realpath(python))])
    missing: list[str] = []
    if caps.landlock_abi < 1:
        missing.append(f"filesystem: no Landlock ({caps.landlock_error})")
    elif caps.landlock_abi < 4:
        missing.append(f"network: Landlock ABI {caps.landlock_abi} has no TCP rules (Linux >= 6.7 needed)")
    if not caps.seccomp:
        missing.append(f"network and processes: no seccomp filter, so UDP, unix and raw sockets, io_uring and "
                       f"setsid stay open ({caps.seccomp_error})")
    if caps.root and not caps.uid_drop:
        missing.append(f"processes: a root handler cannot give notebooks a uid of their own, and the process limit "
                       f"does not apply to root ({caps.uid_drop_error})")
    for path in hidden:
        root = fence.beneath(path, [*read_exec, *read, str(PACKAGE_DIR)])
        if root is not None:
            missing.append(f"filesystem: {path} lies under {root}, which notebooks may read")
    notes: list[str] = ["network: Landlock rules name ports, not addresses: the database port is open on every host"]
    if not signals_scoped(caps):
        if caps.seccomp:
            notes.append(f"signals: Landlock ABI {caps.landlock_abi} has no signal scope (Linux >= 6.12): seccomp lets "
                         "a notebook signal only its own process, not its children by pid")
        else:
            missing.append("signals: a notebook runs as the handler's uid and could kill it (no Landlock signal scope, "
                           "no PID namespace, no seccomp)")
    if mode == "off":
        missing = ["everything: FINOPS_NOTEBOOK_FENCE=off builds no kernel fence"]
    return FencePlan(mode, caps, tuple(missing), tuple(notes), tuple(read_exec), tuple(read))


@lru_cache(maxsize=4)
def capabilities(python: str) -> Capabilities:
    """What the kernel offers, probed once per interpreter in a fresh process (each mechanism tried in a child)."""
    try:
        out = subprocess.run(  # noqa: S603 - our own module, no shell
            [sys.executable, "-s", "-P", "-c", "from functions.stages.dbhandler.fence import probe_main; probe_main()", python],
            capture_output=True, env=_launcher_env(), timeout=60, check=True)
        return Capabilities(**json.loads(out.stdout))
    except (OSError, subprocess.SubprocessError, ValueError, TypeError) as exc:
        detail = exc.stderr.decode(errors="replace")[-500:] if isinstance(exc, subprocess.CalledProcessError) else str(exc)
        log.error("notebook fence probe failed", extra={"error": detail})
        return Capabilities(landlock_error=f"the probe failed: {detail}", seccomp_error="the probe failed",
                                  root=os.geteuid() == 0, uid_drop_error="the probe failed")


# ------------------------------------------------------------------------------------ one run


def host_port(url: str) -> tuple[str, str]:
    """Krateo's argv host and port from a database URL."""
    parts = urlsplit(url)
    return parts.hostname or "", str(parts.port or (443 if parts.scheme == "https" else 80))


def argv_for(path: str, creds: DbCredentials, settings: NotebookRunSettings) -> list[str]:
    """[python, -c, runner, file, host, port, user, password|-]: Krateo's argv; parameters come through the fd."""
    host, port = host_port(creds.url)
    password = creds.password if settings.argv_password else "-"
    return [settings.interpreter, "-c", RUNNER, path, host, port, creds.username, password]


def scrubbed_env(work: Path, lib: Path, fd: int) -> dict[str, str]:
    """The notebook's whole environment: nothing of the handler's settings or secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "HOME": str(work),
        "TMPDIR": str(work),
        "PYTHONPATH": str(lib),
        "PYTHONDONTWRITEBYTECODE": "1",  # the package is read-only to notebooks
        CREDENTIALS_FD_ENV: str(fd),
    }


def _launcher_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8",
            "PYTHONPATH": str(PACKAGE_DIR.parent), "PYTHONDONTWRITEBYTECODE": "1"}


def pinned_addresses(url: str) -> dict[str, list[str]]:
    """{host: [addresses]} for a database host name, resolved here: notebooks have no DNS (no UDP)."""
    host, port = host_port(url)
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return {}
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except OSError:
        return {}  # the notebook's connect fails: exit 75, answered 503 like any unreachable database
    return {host: sorted({str(info[4][0]) for info in infos})}


class _Slots:
    """At most `max_running` notebooks at once in this process, each in a numbered slot (its uid when root)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[int] = set()

    @contextlib.contextmanager
    def hold(self, size: int, wait_s: float = 10.0) -> Iterator[int]:
        deadline = time.monotonic() + wait_s
        with self._cond:
            while (slot := next((i for i in range(size) if i not in self._busy), None)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Unavailable(f"{size} notebooks are already running; try again shortly", retry_after=5)
                self._cond.wait(remaining)
            self._busy.add(slot)
        try:
            yield slot
        finally:
            with self._cond:
                self._busy.discard(slot)
                self._cond.notify()


SLOTS = _Slots()


def run(name: str, code: str, creds: DbCredentials, params: Mapping[str, str], settings: NotebookRunSettings,
        plan: FencePlan | None = None) -> RunResult:
    """Run `code` as notebook `name` inside `plan`'s fence; the temporary directory is always removed."""
    plan = plan or fence_plan(settings)
    with SLOTS.hold(settings.max_running) as slot:
        uid = fence.NOTEBOOK_UID_BASE + slot if plan.uid_drop else None
        root = Path(tempfile.mkdtemp(prefix="finops-notebook-"))
        try:
            path, lib, work = _layout(root, name, code, uid)
            return _spawn(path, lib, work, creds, params, settings, plan, uid)
        finally:
            remove_tree(root)


def _layout(root: Path, name: str, code: str, uid: int | None) -> tuple[Path, Path, Path]:
    """code/<name>.py and lib/functions (read-only to the notebook), work/ (its own; owned by its uid)."""
    os.chmod(root, 0o711)
    (root / "code").mkdir(mode=0o755)
    path = root / "code" / f"{name}.py"
    path.write_text(code, encoding="utf-8")
    lib = root / "lib"
    lib.mkdir(mode=0o755)
    (lib / "functions").symlink_to(PACKAGE_DIR, target_is_directory=True)  # the package, and nothing beside it
    work = root / "work"
    work.mkdir(mode=0o700)
    if uid is not None:
        os.chown(work, uid, uid)
    return path, lib, work


def _payload(creds: DbCredentials, params: Mapping[str, str]) -> int:
    """A memfd holding the run's credentials and parameters, positioned at its start (no size limit, never blocks)."""
    fd = os.memfd_create("finops-notebook-run")
    body = json.dumps({"url": creds.url, "username": creds.username, "password": creds.password,
                       "params": [[k, v] for k, v in params.items()], "resolve": pinned_addresses(creds.url)}).encode()
    view = memoryview(body)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


@dataclass(frozen=True)
class Landlock:
    """One run's Landlock rules (fence.landlock_restrict): paths by the rights they get, the TCP ports it may reach."""

    abi: int
    read_exec: list[str]
    read: list[str]
    read_write: list[str]
    devices: list[str]
    tcp_ports: list[int]


@dataclass(frozen=True)
class Limits:
    memory: int  # bytes of address space
    file_size: int  # bytes, any file the notebook writes
    cpu_s: int  # CPU seconds per process
    processes: int  # tasks (threads included)
    timeout_s: float
    max_output: int  # bytes of stdout kept; the run is stopped beyond
    max_disk: int  # bytes the work directory may hold, all files together; the run is stopped beyond
    max_memory: int  # bytes all the run's processes may hold together; the run is stopped beyond


@dataclass(frozen=True)
class LaunchSpec:
    """Everything the launcher builds (fence.Spec), JSON on its argv: no secrets, those come through the run fd."""

    argv: list[str]
    env: dict[str, str]
    work: str
    status_fd: int
    limits: Limits
    landlock: Landlock | None
    seccomp: str  # the BPF program, hex; "" = none
    pid_namespace: bool
    uid: int | None  # root handlers: the notebook's own uid
    keep_read_search: bool

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@lru_cache(maxsize=2)
def seccomp_program(signals: bool = False) -> str:
    """The notebook seccomp filter as BPF (hex), compiled once per process: runs load it without libseccomp.

    `signals`: with the rules that allow signals only to the notebook process itself (its pid bound per run).
    """
    return fence.seccomp_program(signals).hex()


def spec_for(path: Path, lib: Path, work: Path, creds: DbCredentials, payload_fd: int, status_fd: int,
             settings: NotebookRunSettings, plan: FencePlan, uid: int | None) -> LaunchSpec:
    """What the launcher builds for this run (pure apart from the paths it names and the cached BPF)."""
    landlock = None
    if plan.landlock:
        landlock = Landlock(
            abi=plan.caps.landlock_abi, read_exec=list(plan.read_exec),
            read=[*plan.read, str(PACKAGE_DIR), str(path.parent), str(lib), "/proc/self"],
            read_write=[str(work)], devices=["/dev/null"], tcp_ports=[int(host_port(creds.url)[1])])
    limits = Limits(memory=settings.memory_mb * _MIB, file_size=settings.max_file_mb * _MIB, cpu_s=settings.cpu_s,
                    processes=settings.max_processes, timeout_s=settings.timeout_s,
                    max_output=settings.max_output_mb * _MIB, max_disk=settings.max_disk_mb * _MIB,
                    max_memory=settings.memory_mb * _MIB)
    return LaunchSpec(argv=argv_for(str(path), creds, settings), env=scrubbed_env(work, lib, payload_fd), work=str(work),
                      status_fd=status_fd, limits=limits, landlock=landlock,
                      seccomp=seccomp_program(plan.signal_filter) if plan.seccomp else "", pid_namespace=plan.pid_namespace, uid=uid,
                      keep_read_search=uid is not None and landlock is not None and plan.caps.read_search)


def _spawn(path: Path, lib: Path, work: Path, creds: DbCredentials, params: Mapping[str, str],
           settings: NotebookRunSettings, plan: FencePlan, uid: int | None) -> RunResult:
    payload_fd = _payload(creds, params)
    status_r, status_w = os.pipe()
    try:
        spec = spec_for(path, lib, work, creds, payload_fd, status_w, settings, plan, uid)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            started = time.monotonic()
            try:
                proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
                    [sys.executable, "-S", "-P", "-c", fence.LAUNCHER, spec.to_json()], stdin=subprocess.DEVNULL,
                    stdout=out, stderr=err, cwd=work, env=_launcher_env(), pass_fds=(payload_fd, status_w),
                    start_new_session=True)
            finally:
                os.close(payload_fd)
                os.close(status_w)
                status_w = -1
            overstayed = not _wait(proc, settings.timeout_s + GRACE_S)
            reports = _reports(status_r)
            final = next((r for r in reversed(reports) if "reason" in r), None)
            if overstayed or final is None:  # the launcher was killed or hung: its notebook's group too
                _kill_group(next((int(r["pid"]) for r in reports if "pid" in r), 0))
            seconds = time.monotonic() - started
            stderr = _read(err, STDERR_TAIL)
            problem = next((str(r["fence_error"]) for r in reports if "fence_error" in r), "")
            if problem:
                return RunResult(EXIT_FENCE, b"", stderr, False, seconds, fence_error=problem)
            if final is None:
                why = "" if overstayed else f"the notebook launcher ended without a report (exit code {proc.returncode})"
                return RunResult(proc.returncode, b"", stderr, overstayed, seconds, fence_error=why)
            code = -int(final["signal"]) if "signal" in final else int(final.get("exit", 0))
            stopped = str(final["reason"]) if final["reason"] in ("output", "disk", "memory") else ""
            stdout = _stripped(out) if code == 0 and not stopped else b""
            return RunResult(code, stdout, stderr, final["reason"] == "timeout", seconds, stopped=stopped,
                             cpu_s=float(final.get("cpu_s", 0.0)))
    finally:
        os.close(status_r)
        if status_w >= 0:
            os.close(status_w)


def _wait(proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait for the launcher; True when it ended by itself. Either way its group is killed, then it is reaped.

    Waited for through a pidfd WITHOUT reaping, so its pid (the group id) cannot be reused before the kill.
    """
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:  # no pidfd (Linux < 5.3): reap, then kill what may be left of the group
        try:
            proc.wait(timeout_s)
            return True
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
            return False
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout_s)
    finally:
        os.close(pidfd)
    _kill_group(proc.pid)
    proc.wait()
    return bool(ready)


def _reports(fd: int) -> list[dict[str, Any]]:
    """The launcher's JSON lines (it has ended: what it wrote is in the pipe; never blocks)."""
    os.set_blocking(fd, False)
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    found = []
    for line in b"".join(chunks).splitlines():
        with contextlib.suppress(ValueError):
            item = json.loads(line)
            if isinstance(item, dict):
                found.append(item)
    return found


def _kill_group(pgid: int) -> None:
    if pgid > 1:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)


def _stripped(fh: IO[bytes]) -> bytes:
    """The whole output without newlines at both ends, read once (no copy for the strip)."""
    size = fh.seek(0, os.SEEK_END)
    start, end = 0, size
    while start < end:
        fh.seek(start)
        head = fh.read(min(4096, end - start))
        skip = len(head) - len(head.lstrip(b"\n"))
        start += skip
        if skip < len(head):
            break
    while end > start:
        fh.seek(max(start, end - 4096))
        tail = fh.read(end - max(start, end - 4096))
        skip = len(tail) - len(tail.rstrip(b"\n"))
        end -= skip
        if skip < len(tail):
            break
    fh.seek(start)
    return fh.read(end - start)


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
