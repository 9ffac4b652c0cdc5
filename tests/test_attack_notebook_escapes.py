"""A notebook cannot leave its run: each escape is a real notebook through the real `/compute` endpoint.

Reproduced before the fence (the issue): a notebook read the database file and the handler's
environment (every user's password), wrote anywhere the handler's user could, forked without
limit, called every other service, left a `setsid` child alive after the timeout, and showed the
password in `ps`. Now, through a real handler on 127.0.0.1 with the default FINOPS_NOTEBOOK_FENCE
(`required`):
- the DuckDB file and its directory, /proc/<handler pid>/environ, another run's directory and
  /tmp are unreadable, and the handler cannot be signalled;
- writes outside the work directory (package directory, /tmp, its own code) are refused;
- TCP reaches only the run's SQL listener: a real listener on another 127.0.0.1 port and the
  handler's public port are refused, as are bind/listen; UDP, unix and netlink sockets are refused
  and a real UDP server receives nothing;
- a fork bomb gets EAGAIN at FINOPS_NOTEBOOK_MAX_PROCESSES and the handler keeps answering;
- where nothing else keeps signals in (the handler's uid, no PID namespace, Landlock ABI < 6: Linux
  6.7-6.11 with our manifests; simulated through a plan with those capabilities), seccomp refuses
  signals to anything but the notebook process itself: a real `sleep` of the test's survives kill,
  kill(-1), F_SETOWN and pidfd_send_signal, while the notebook can still signal itself;
- a `setsid` + double-fork daemon is dead when the answer arrives, also where seccomp and PID
  namespaces are missing (the subreaper alone, through sandbox.run with such a plan);
- the caller's password is on no process's command line while the run is going on;
- a 200 KiB parameter arrives whole (no "Argument list too long");
- a notebook name with a newline is a 400, not a lookup;
- what each kernel situation leaves missing, and that `required` then refuses with a 503 naming it.
On a kernel without the fence (no Landlock, no seccomp) the HTTP cases skip with the reason the
handler reports at GET /compute/fence.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbhandler_server import DbHandler, start_dbhandler

from functions import errors
from functions.clients.db import connect
from functions.errors import InvalidInput
from functions.settings.database import DbHandlerSettings
from functions.settings.notebooks import NotebookRunSettings
from functions.stages.dbhandler import notebook_store, sandbox

PASSWORD = f"tenant-pw-{random.randrange(10**9)}"
USERS = {"finops": "s3cret", "tenant": PASSWORD, "admin": "adm1n-only-secret"}
ENV = {"FINOPS_NOTEBOOK_TIMEOUT": "8", "FINOPS_NOTEBOOK_MAX_PROCESSES": "16"}


@pytest.fixture(scope="module", name="server")
def server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    handler = start_dbhandler(tmp_path_factory.mktemp("escapes"), env=ENV, users=USERS)
    try:
        report = httpx.get(f"{handler.url}/compute/fence", headers=handler.auth(), timeout=60).json()
        if report["runs"] != "allowed":
            pytest.skip(f"this kernel cannot build the notebook fence: {report['missing']}")
        yield handler
    finally:
        handler.stop()


def run(server: DbHandler, code: str, params: dict[str, str] | None = None, user: str = "finops") -> Any:
    """Store and run `code`; its stdout as JSON (the run must succeed: escapes are caught inside)."""
    name = f"nb-{random.randrange(10**9)}"
    auth = server.auth(user, USERS[user])
    stored = httpx.post(f"{server.url}/compute/{name}/upload", content=code.encode(), headers=auth, timeout=30)
    assert stored.json() == {"result": True}
    answer = httpx.post(f"{server.url}/compute/{name}", json=params or {}, headers=auth, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()


TRY = """import json, os, socket
from functions.notebooks_api import params
p = params()
results = {}
def attempt(label, fn):
    try:
        fn()
        results[label] = "ALLOWED"
    except OSError as exc:
        results[label] = type(exc).__name__
"""


def handler_pids(server: DbHandler) -> list[int]:
    """The functions-framework process and its workers (the handler may serve from a child)."""
    pids = [server.process.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2:].split()[1]) == server.process.pid:
                pids.append(int(entry))
    return pids


def running_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes() and \
                        "State:\tZ" not in Path(f"/proc/{entry}/status").read_text():
                    found.append(int(entry))
            except OSError:
                continue
    return found


def test_the_fence_is_reported(server: DbHandler) -> None:
    report = httpx.get(f"{server.url}/compute/fence", headers=server.auth(), timeout=30).json()
    assert report["mode"] == "required" and report["missing"] == []
    assert report["built"]["filesystem"] and report["built"]["tcp_rules"] and report["built"]["seccomp"]
    assert httpx.get(f"{server.url}/compute/fence", timeout=30).status_code == 401


def test_database_environment_and_other_files_are_unreadable(server: DbHandler) -> None:
    pids = handler_pids(server)
    code = TRY + """db = p["db"]
attempt("db file", lambda: open(db, "rb").read(16))
attempt("db dir", lambda: os.listdir(os.path.dirname(db)))
for pid in p["pids"].split(","):
    attempt("environ " + pid, lambda: open(f"/proc/{pid}/environ", "rb").read())
    attempt("signal " + pid, lambda: os.kill(int(pid), 0))
attempt("tmp", lambda: os.listdir("/tmp"))
attempt("root", lambda: os.listdir("/"))
attempt("handler log", lambda: open(p["log"]).read())
attempt("own work dir", lambda: os.listdir("."))
attempt("own proc", lambda: open("/proc/self/status").read())
print(json.dumps(results))
"""
    got = run(server, code, {"db": str(server.db_path), "pids": ",".join(map(str, pids)), "log": str(server.log)})
    assert server.db_path.exists()
    assert got.pop("own work dir") == got.pop("own proc") == "ALLOWED"
    for pid in pids:  # not even visible: another PID namespace; else EPERM
        assert got.pop(f"signal {pid}") in ("PermissionError", "ProcessLookupError")
    assert set(got.values()) == {"PermissionError"}, got


def test_another_runs_directory_is_unreadable(server: DbHandler) -> None:
    before = set(Path(tempfile.gettempdir()).glob("finops-notebook-*"))
    slow = threading.Thread(target=run, args=(server, "import time\nopen('mine.txt', 'w').write('x')\ntime.sleep(3)\nprint(1)\n"))
    slow.start()
    try:
        deadline = time.monotonic() + 10
        while not (others := set(Path(tempfile.gettempdir()).glob("finops-notebook-*")) - before):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        other = others.pop()
        code = TRY + """o = p["other"]
attempt("list", lambda: os.listdir(o))
attempt("code", lambda: os.listdir(o + "/code"))
attempt("work", lambda: os.listdir(o + "/work"))
attempt("file", lambda: open(o + "/work/mine.txt").read())
print(json.dumps(results))
"""
        got = run(server, code, {"other": str(other)})
        assert set(got.values()) == {"PermissionError"}, got
    finally:
        slow.join()


def test_writes_outside_the_work_directory_are_refused(server: DbHandler) -> None:
    package = Path(notebook_store.__file__).resolve().parents[2]
    code = TRY + f"""attempt("package", lambda: open({str(package / "planted.py")!r}, "w").write("x"))
attempt("tmp", lambda: open("/tmp/planted-by-notebook", "w").write("x"))
attempt("own code", lambda: open(__file__, "a").write("x"))
attempt("db dir", lambda: open(os.path.join(os.path.dirname(p["db"]), "planted.duckdb"), "w"))
attempt("db file", lambda: open(p["db"], "r+b").write(b"x"))
attempt("work", lambda: open("ok.txt", "w").write("x"))
print(json.dumps(results))
"""
    got = run(server, code, {"db": str(server.db_path)})
    assert got.pop("work") == "ALLOWED"
    assert set(got.values()) == {"PermissionError"}, got
    assert not (package / "planted.py").exists() and not Path("/tmp/planted-by-notebook").exists()


def test_network_reaches_only_the_sql_listener(server: DbHandler) -> None:
    tcp = socket.create_server(("127.0.0.1", 0))
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    try:
        code = TRY + """from functions.notebooks_api import connect
attempt("other listener", lambda: socket.create_connection(("127.0.0.1", int(p["tcp"])), timeout=2))
attempt("handler's public port", lambda: socket.create_connection(("127.0.0.1", int(p["public"])), timeout=2))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"leak", ("127.0.0.1", int(p["udp"]))))
attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
attempt("raw", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
attempt("sctp", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132))
def serve():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
attempt("bind", serve)
attempt("listen", lambda: socket.socket().listen())
cur = connect().cursor()
cur.execute("SELECT 41 + 1")
results["sql"] = cur.fetchone()[0]
print(json.dumps(results))
"""
        got = run(server, code, {"tcp": str(tcp.getsockname()[1]), "udp": str(udp.getsockname()[1]),
                                 "public": str(server.port)})
        assert got.pop("sql") == 42
        assert set(got.values()) == {"PermissionError"}, got
        with pytest.raises(TimeoutError):
            udp.recvfrom(16)
    finally:
        tcp.close()
        udp.close()


def test_fork_bomb_gets_eagain_and_the_handler_keeps_answering(server: DbHandler) -> None:
    marker = f"{300 + random.random():.9f}"
    code = f"""import errno, json, os
forked, error = 0, None
while forked < 1000:
    try:
        pid = os.fork()
    except OSError as exc:
        error = errno.errorcode[exc.errno]
        break
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    forked += 1
print(json.dumps({{"forked": forked, "error": error}}))
"""
    got = run(server, code)
    assert got["error"] == "EAGAIN" and 8 <= got["forked"] < 16
    assert running_with(marker) == []
    assert run(server, "print(1)\n") == 1


DAEMON = """import json, os
marker = MARKER
r, w = os.pipe()
if os.fork() == 0:  # a child (a group leader may not setsid): new session, then a grandchild that lingers
    try:
        os.setsid()
        os.write(w, b"setsid")
    except OSError:
        os.write(w, b"refused")
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", marker])
    os._exit(0)
os.close(w)
print(json.dumps(os.read(r, 100).decode()))
"""


def test_a_daemonized_child_is_dead_when_the_answer_arrives(server: DbHandler) -> None:
    marker = f"{300 + random.random():.9f}"
    assert run(server, DAEMON.replace("MARKER", repr(marker))) == "refused"  # seccomp: no leaving the group
    assert running_with(marker) == []


def test_the_subreaper_alone_kills_a_daemon_that_left_the_group(server: DbHandler) -> None:
    """No seccomp and no PID namespace (a kernel or container without them, FINOPS_NOTEBOOK_FENCE=warn)."""
    settings = NotebookRunSettings(FINOPS_NOTEBOOK_FENCE="warn", FINOPS_NOTEBOOK_TIMEOUT=10)
    real = sandbox.capabilities(settings.interpreter)
    if real.landlock_abi < 1:
        pytest.skip(f"no Landlock here: {real.landlock_error}")
    weaker = dataclasses.replace(real, seccomp=False, pid_namespace=False, seccomp_error="left out by this test")
    plan = sandbox.plan_for("warn", weaker, settings.interpreter)
    marker = f"{300 + random.random():.9f}"
    creds = sandbox.DbCredentials(f"http://127.0.0.1:{server.notebook_sql_port}", "finops", "s3cret")
    result = sandbox.run("daemon", DAEMON.replace("MARKER", repr(marker)), creds, {}, settings, plan)
    assert result.exit_code == 0 and result.stdout == b'"setsid"', result
    assert running_with(marker) == []


def test_landlock_and_seccomp_alone_hold_without_an_own_uid_or_pid_namespace(server: DbHandler) -> None:
    """A Kubernetes node's case (non-root, no namespaces): the fence must not lean on the uid drop.

    Here the notebook even stays root, with every capability: Landlock and seccomp still hold."""
    settings = NotebookRunSettings(FINOPS_NOTEBOOK_TIMEOUT=10)
    real = sandbox.capabilities(settings.interpreter)
    if real.landlock_abi < 6 or not real.seccomp:
        pytest.skip(f"needs Landlock ABI >= 6 and seccomp here: {real.landlock_error or real.seccomp_error}")
    plan = sandbox.plan_for("warn", dataclasses.replace(real, uid_drop=False, pid_namespace=False), settings.interpreter)
    pid = handler_pids(server)[-1]
    code = TRY + f"""attempt("db file", lambda: open({str(server.db_path)!r}, "rb").read(16))
attempt("environ", lambda: open("/proc/{pid}/environ", "rb").read())
attempt("signal", lambda: os.kill({pid}, 0))
attempt("tcp", lambda: socket.create_connection(("127.0.0.1", {server.port}), timeout=2))
attempt("udp", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
results["uid"] = os.getuid()
print(json.dumps(results))
"""
    creds = sandbox.DbCredentials(f"http://127.0.0.1:{server.notebook_sql_port}", "finops", "s3cret")
    result = sandbox.run("as-root", code, creds, {}, settings, plan)
    assert result.exit_code == 0, result
    got = json.loads(result.stdout)
    assert got.pop("uid") == os.getuid()
    assert set(got.values()) == {"PermissionError"}, got


SIGNALS = TRY + """import fcntl, signal, subprocess, time
target = int(p["target"])
attempt("kill", lambda: os.kill(target, signal.SIGTERM))
attempt("kill -1", lambda: os.kill(-1, 0))
attempt("kill group 0", lambda: os.kill(0, 0))
attempt("killpg", lambda: os.killpg(target, signal.SIGTERM))
attempt("sigcont", lambda: os.kill(target, signal.SIGCONT))
def setown():
    r, w = os.pipe()
    fcntl.fcntl(r, fcntl.F_SETOWN, target)
attempt("F_SETOWN", setown)
def by_pidfd():
    fd = os.pidfd_open(target)
    signal.pidfd_send_signal(fd, signal.SIGTERM)
attempt("pidfd", by_pidfd)
child = subprocess.Popen(["sleep", "5"])
attempt("own child", child.kill)
attempt("itself", lambda: os.kill(os.getpid(), 0))
signal.signal(signal.SIGUSR1, lambda *_: results.__setitem__("handled", True))
attempt("raise", lambda: signal.raise_signal(signal.SIGUSR1))
print(json.dumps(results))
"""


def test_signals_reach_only_the_notebook_itself_without_landlock_scopes(server: DbHandler) -> None:
    """Linux 6.7-6.11 with our non-root manifests: Landlock ABI 4-5, the handler's uid, no PID namespace."""
    settings = NotebookRunSettings(FINOPS_NOTEBOOK_TIMEOUT=10)
    real = sandbox.capabilities(settings.interpreter)
    if real.landlock_abi < 5 or not real.seccomp:
        pytest.skip(f"needs Landlock ABI >= 5 and seccomp here: {real.landlock_error or real.seccomp_error}")
    kernel_6_7 = dataclasses.replace(real, landlock_abi=5, root=False, uid_drop=False, pid_namespace=False)
    plan = sandbox.plan_for("required", kernel_6_7, settings.interpreter)
    assert not plan.refused and plan.signal_filter and plan.report()["built"]["signals"] == "seccomp"
    target = subprocess.Popen(["sleep", "30"])  # stands for the handler: same uid as the notebook
    try:
        creds = sandbox.DbCredentials(f"http://127.0.0.1:{server.notebook_sql_port}", "finops", "s3cret")
        result = sandbox.run("signals", SIGNALS, creds, {"target": str(target.pid)}, settings, plan)
        assert result.exit_code == 0, result
        got = json.loads(result.stdout)
        assert target.poll() is None  # alive
        assert (got.pop("itself"), got.pop("raise"), got.pop("handled")) == ("ALLOWED", "ALLOWED", True)
        assert set(got.values()) == {"PermissionError"}, got
    finally:
        target.kill()
        target.wait()


def test_signals_without_any_fence_for_them_are_missing() -> None:
    caps = dataclasses.replace(KERNEL_6_1, landlock_abi=5, seccomp=False, seccomp_error="no libseccomp")
    plan = sandbox.plan_for("required", caps, "/usr/bin/python3")
    assert plan.refused and any(m.startswith("signals:") for m in plan.missing)
    assert sandbox.signals_scoped(dataclasses.replace(caps, landlock_abi=6))


def test_password_is_on_no_command_line_during_the_run(server: DbHandler) -> None:
    seen: list[str] = []
    done = threading.Event()

    def scan() -> None:
        while not done.is_set():
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        if PASSWORD.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                            seen.append(entry)
                    except OSError:
                        continue
            time.sleep(0.01)

    scanner = threading.Thread(target=scan)
    scanner.start()
    try:
        got = run(server, "import time, json\ntime.sleep(1)\nprint(json.dumps([password, sys.argv[4]]))\n", user="tenant")
    finally:
        done.set()
        scanner.join()
    assert got == [PASSWORD, PASSWORD] and seen == []


def test_a_200_kib_parameter_arrives_whole(server: DbHandler) -> None:
    big = "".join(random.choice("abcdefghij=") for _ in range(200 * 1024))
    code = ("import json, hashlib\nfrom functions.notebooks_api import params\n"
            "v = params()['big']\nprint(json.dumps([len(v), hashlib.sha256(v.encode()).hexdigest(), sys.argv[5] == 'big=' + v]))\n")
    import hashlib

    assert run(server, code, {"big": big}) == [len(big), hashlib.sha256(big.encode()).hexdigest(), True]


def test_a_name_with_a_newline_is_refused(server: DbHandler) -> None:
    settings = DbHandlerSettings(users=USERS)

    def open_db(_auth: str | None) -> tuple[Any, str, str]:
        return connect(server.url, "finops", "s3cret"), "finops", "s3cret"

    for method, path, body in (("POST", "/compute/ok\n", b"{}"), ("GET", "/compute/ok\n/info", b""),
                               ("POST", "/compute/ok\n/upload", b"print(1)\n"), ("DELETE", "/compute/ok\n", b"")):
        with pytest.raises(InvalidInput) as caught:
            notebook_store.handle(method, path, {}, {}, body, settings, open_db)
        assert caught.value.status == 400 and "bad notebook name" in str(caught.value)
    assert notebook_store.NAME.fullmatch("ok\n") is None and notebook_store.NAME.fullmatch("ok") is not None


KERNEL_6_1 = sandbox.Capabilities(landlock_abi=3, seccomp=True, prefixes=["/usr"])
FULL = sandbox.Capabilities(landlock_abi=7, seccomp=True, root=True, uid_drop=True, pid_namespace=True, prefixes=["/usr"])


@pytest.mark.parametrize(("caps", "hidden", "expected"), [
    (FULL, (), []),
    (dataclasses.replace(FULL, root=False, uid_drop=False, pid_namespace=False, landlock_abi=6), (), []),
    (KERNEL_6_1, (), ["network: Landlock ABI 3 has no TCP rules (Linux >= 6.7 needed)"]),
    (sandbox.Capabilities(landlock_error="the kernel has no Landlock (Linux >= 5.13 needed)", seccomp=True),
     (), ["filesystem: no Landlock (the kernel has no Landlock (Linux >= 5.13 needed))"]),
    (dataclasses.replace(FULL, seccomp=False, seccomp_error="RuntimeError: Unable to find libseccomp"), (),
     ["network and processes: no seccomp filter, so UDP, unix and raw sockets, io_uring and setsid stay open "
      "(RuntimeError: Unable to find libseccomp)"]),
    (dataclasses.replace(FULL, uid_drop=False, uid_drop_error="EPERM"), (),
     ["processes: a root handler cannot give notebooks a uid of their own, and the process limit does not apply "
      "to root (EPERM)"]),
    (FULL, ("/usr/local/state/db",), ["filesystem: /usr/local/state/db lies under /usr, which notebooks may read"]),
])
def test_what_each_kernel_leaves_missing(caps: sandbox.Capabilities, hidden: tuple[str, ...], expected: list[str]) -> None:
    plan = sandbox.plan_for("required", caps, "/usr/bin/python3", hidden)
    assert list(plan.missing) == expected
    assert plan.refused == bool(expected)
    if expected:
        answer = errors.answer(notebook_store.refused(plan))
        assert answer.status == 503 and answer.body["missing"] == expected
        assert "FINOPS_NOTEBOOK_FENCE" in answer.body["error"]
        assert not sandbox.plan_for("warn", caps, "/usr/bin/python3", hidden).refused


def test_signals_note_where_seccomp_alone_fences_them() -> None:
    plan = sandbox.plan_for("required", dataclasses.replace(KERNEL_6_1, landlock_abi=5), "/usr/bin/python3")
    assert any(n.startswith("signals:") for n in plan.notes) and not plan.refused and plan.signal_filter
    assert not sandbox.plan_for("required", dataclasses.replace(KERNEL_6_1, landlock_abi=6), "/usr/bin/python3").signal_filter
    assert json.dumps(plan.report())  # GET /compute/fence's body is JSON
