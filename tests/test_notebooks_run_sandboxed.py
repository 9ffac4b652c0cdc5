"""Notebooks run in a limited, clean subprocess with the caller's credentials, through the real handler.

Cases:
- an infinite loop is killed at FINOPS_NOTEBOOK_TIMEOUT with a clear 504, a child it started dies
  with it, and the handler keeps answering;
- a notebook allocating too much memory is stopped (422 naming the memory limit), one spinning past
  FINOPS_NOTEBOOK_CPU_SECONDS too (422 naming the setting);
- a notebook printing more than FINOPS_NOTEBOOK_MAX_OUTPUT_MB is stopped there, long before its
  timeout (422 naming the setting); one writing a file over FINOPS_NOTEBOOK_MAX_FILE_MB gets 422 too;
- a notebook writing many files under the per-file limit (or deleting them while it keeps them
  open) is stopped at FINOPS_NOTEBOOK_MAX_DISK_MB for the work directory as a whole, and one whose
  children together hold more than FINOPS_NOTEBOOK_MEMORY_MB (each under it) is stopped too (422
  naming each setting), long before the timeout, its children dead;
- a notebook finds none of the handler's settings or secrets (another user's password, a canary
  variable) in its environment (os.environ and /proc/self/environ), command line or working
  directory; the caller's password is not on /proc/self/cmdline (`-` there, the default), yet
  `sys.argv[4]`, `functions.notebooks_api.connect()` and the preamble's `password` carry it; the run
  fd is closed before the notebook's code runs (no pipe or memfd among its fds);
- unauthenticated, wrongly authenticated and unknown-user calls are refused (401) even right after
  a correct call, on every /compute route, and a correct call works again afterwards;
- notebooks_api.params() keeps values containing `=` whole; Krateo-style argv parsing still works;
- the temporary directory (code and working dir) is removed after a success, a failure and a timeout;
- a run answers 503 with Retry-After when the notebook could not reach the database (exit 75), and
  503 without running any notebook code when its fence cannot be built.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dbhandler_server import DbHandler, start_dbhandler

from functions import errors
from functions.settings.notebooks import NotebookRunSettings
from functions.stages.dbhandler import notebook_store, sandbox

CANARY = "canary-9f3b1c"
ADMIN_PASSWORD = "adm1n-only-secret"
USERS = {"finops": "s3cret", "admin": ADMIN_PASSWORD}
LIMITS = {"FINOPS_NOTEBOOK_TIMEOUT": "2", "FINOPS_NOTEBOOK_MEMORY_MB": "300", "FINOPS_NOTEBOOK_MAX_FILE_MB": "1",
          "FINOPS_NOTEBOOK_MAX_OUTPUT_MB": "1", "FINOPS_NOTEBOOK_MAX_DISK_MB": "4",
          "FINOPS_HANDLER_CANARY": CANARY}

SNOOP = """import json, os
from functions import notebooks_api
found = {"environ": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd(), "files": [],
         "proc_environ": open("/proc/self/environ", "rb").read().decode(errors="replace"),
         "cmdline": open("/proc/self/cmdline", "rb").read().decode(errors="replace")}
for root, dirs, files in os.walk("."):
    for f in files:
        found["files"].append(open(os.path.join(root, f), errors="replace").read())
cur = notebooks_api.connect().cursor()
cur.execute("SELECT 1")
found["api_query"] = cur.fetchall()
found["preamble_password"] = password
found["api_password"] = notebooks_api.credentials().password
found["pipes"] = []
for n in os.listdir("/proc/self/fd"):
    if n in ("0", "1", "2"):  # stdout is the launcher's pipe
        continue
    try:
        if "pipe:" in os.readlink(f"/proc/self/fd/{n}") or "memfd:" in os.readlink(f"/proc/self/fd/{n}"):
            found["pipes"].append(n)
    except OSError:  # the listing's own descriptor
        pass
found["file"] = __file__
print(json.dumps(found))
"""


@pytest.fixture(scope="module", name="server")
def server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    handler = start_dbhandler(tmp_path_factory.mktemp("sandbox"), env=LIMITS, users=USERS)
    try:
        yield handler
    finally:
        handler.stop()


def post(server: DbHandler, path: str, body: bytes | None = None, auth: dict[str, str] | None = None,
         params: dict[str, str] | None = None) -> httpx.Response:
    content = body if body is not None else json.dumps(params or {}).encode()
    return httpx.post(f"{server.url}{path}", content=content, headers=server.auth() if auth is None else auth, timeout=60)


def put(server: DbHandler, name: str, code: str) -> None:
    assert post(server, f"/compute/{name}/upload?overwrite=true", code.encode()).json() == {"result": True}


def running_with(marker: str) -> list[int]:
    """Live processes (zombies aside) whose command line holds `marker`: pids inside a notebook's PID
    namespace are not the host's, so children are found by a unique argument instead."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        if marker.encode() in cmdline and "State:\tZ" not in state:
            found.append(int(entry))
    return found


def test_infinite_loop_is_killed_at_the_timeout_with_its_children(server: DbHandler) -> None:
    marker = f"{300 + random.random():.9f}"
    put(server, "loop", f"import subprocess, os\nchild = subprocess.Popen(['sleep', '{marker}'])\n"
                        "eprint('dir', os.getcwd(), flush=True)\nwhile True:\n    pass\n")
    started = time.monotonic()
    answer = post(server, "/compute/loop")
    elapsed = time.monotonic() - started
    assert answer.status_code == 504 and 2 <= elapsed < 10
    body = answer.json()
    assert body["error"] == "notebook 'loop' timed out after 2 s and was killed"
    workdir = body["stderr"].split()[1]
    assert running_with(marker) == []  # dead before the answer was sent
    assert not Path(workdir).exists()
    put(server, "after-loop", "print('still here')\n")
    assert post(server, "/compute/after-loop").text == "still here"


def test_memory_hog_is_stopped(server: DbHandler) -> None:
    put(server, "hog", "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n")
    answer = post(server, "/compute/hog")
    assert answer.status_code == 422
    assert "ran out of memory (limit 300 MiB)" in answer.json()["error"]


def test_huge_output_is_stopped_at_the_output_limit(server: DbHandler) -> None:
    put(server, "chatty", "line = 'x' * 1023\nwhile True:\n    print(line)\n")
    started = time.monotonic()
    answer = post(server, "/compute/chatty")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == ("notebook 'chatty' wrote more than 1 MiB of output (FINOPS_NOTEBOOK_MAX_OUTPUT_MB) "
                                      "and was stopped")
    assert time.monotonic() - started < 2  # stopped at the cap, not at the 2 s timeout


def test_output_just_under_the_limit_is_answered_whole(server: DbHandler) -> None:
    put(server, "big-answer", "import sys\nsys.stdout.write('\\n' + 'y' * (1024 * 1024 - 3) + '\\n\\n')\n")
    answer = post(server, "/compute/big-answer")
    assert answer.status_code == 200 and answer.content == b"y" * (1024 * 1024 - 3)


def test_cpu_hog_is_stopped_at_the_cpu_limit(server: DbHandler) -> None:
    settings = NotebookRunSettings(FINOPS_NOTEBOOK_CPU_SECONDS=1, FINOPS_NOTEBOOK_TIMEOUT=20)
    creds = sandbox.DbCredentials(f"http://127.0.0.1:{server.notebook_sql_port}", "finops", "s3cret")
    result = sandbox.run("spin", "while True:\n    pass\n", creds, {}, settings)
    answer = refusal(lambda: notebook_store.outcome("spin", result, "", settings))
    assert answer.status == 422, (result, answer.body)
    assert answer.body["error"] == "notebook 'spin' used more than 1 s of CPU (FINOPS_NOTEBOOK_CPU_SECONDS)"
    assert result.seconds < 10 and not result.timed_out


def test_big_file_is_stopped_at_the_file_limit(server: DbHandler) -> None:
    put(server, "big-file", "with open('out.bin', 'wb') as fh:\n    fh.write(b'z' * 2 * 1024 * 1024)\n")
    answer = post(server, "/compute/big-file")
    assert answer.status_code == 422 and "wrote more than 1 MiB to a file" in answer.json()["error"]


FILL_DISK = {
    "named": "import itertools, time\nfor i in itertools.count():\n"
             "    open(f'part-{i}.bin', 'wb').write(b'd' * (512 * 1024))\n    time.sleep(0.005)\n",
    "unlinked": "import itertools, os, time\nkept = []\nfor i in itertools.count():\n"
                "    fh = open(f'gone-{i}.bin', 'wb')\n    fh.write(b'd' * (512 * 1024))\n    fh.flush()\n"
                "    os.unlink(f'gone-{i}.bin')\n    kept.append(fh)\n    time.sleep(0.005)\n",
}


@pytest.mark.parametrize("kind", sorted(FILL_DISK))
def test_many_small_files_are_stopped_at_the_disk_limit(server: DbHandler, kind: str) -> None:
    put(server, f"fill-{kind}", FILL_DISK[kind])
    started = time.monotonic()
    answer = post(server, f"/compute/fill-{kind}")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == (f"notebook 'fill-{kind}' held more than 4 MiB in its work directory "
                                      "(FINOPS_NOTEBOOK_MAX_DISK_MB) and was stopped")
    assert time.monotonic() - started < 2  # at the cap, not at the 2 s timeout


def test_children_holding_too_much_memory_together_are_stopped(server: DbHandler) -> None:
    marker = f"{300 + random.random():.9f}"
    put(server, "herd", f"""import os, subprocess, time
subprocess.Popen(['sleep', '{marker}'])
for _ in range(5):
    if os.fork() == 0:
        held = b'm' * (80 * 1024 * 1024)  # written: resident, each well under the 300 MiB per process
        time.sleep(30)
        os._exit(0)
time.sleep(30)
""")
    started = time.monotonic()
    answer = post(server, "/compute/herd")
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == ("notebook 'herd''s processes together held more than 300 MiB of memory "
                                      "(FINOPS_NOTEBOOK_MEMORY_MB) and it was stopped")
    assert time.monotonic() - started < 2 and running_with(marker) == []


def test_notebook_sees_no_handler_settings_or_secrets(server: DbHandler) -> None:
    put(server, "snoop", SNOOP)
    answer = post(server, "/compute/snoop")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert not [k for k in found["environ"] if k.startswith(("FINOPS_", "PORT", "K_"))]
    everything = json.dumps({k: found[k] for k in ("environ", "proc_environ", "argv", "cmdline", "files", "cwd")})
    for secret in (CANARY, ADMIN_PASSWORD, "FINOPS_DB_USERS", "FINOPS_DB_PATH", str(server.db_path)):
        assert secret not in everything
    assert "s3cret" not in found["cmdline"] and found["cmdline"].split("\0")[7] == "-"  # not on the command line
    assert found["argv"][4] == "s3cret"  # but where Krateo's notebooks read it
    assert found["files"] == [] and found["cwd"].endswith("/work")
    assert found["api_query"] == [[1]]
    assert found["preamble_password"] == found["api_password"] == "s3cret"
    assert found["pipes"] == []  # the credentials pipe was read and closed before the notebook's code
    assert not Path(found["file"]).exists() and not Path(found["cwd"]).exists()


def test_argv_password_on_the_command_line_only_when_asked(tmp_path: Path) -> None:
    handler = start_dbhandler(tmp_path, env={"FINOPS_NOTEBOOK_ARGV_PASSWORD": "true"}, users=USERS)
    try:
        put(handler, "old-style", "print(sys.argv[4], open('/proc/self/cmdline').read().split('\\0')[7])\n")
        assert post(handler, "/compute/old-style").text == "s3cret s3cret"
    finally:
        handler.stop()


@pytest.mark.parametrize("path", ["/compute/authed", "/compute/authed/upload", "/compute/list"])
def test_bad_credentials_are_refused_even_after_a_good_call(server: DbHandler, path: str) -> None:
    put(server, "authed", "print('ran')\n")
    assert post(server, "/compute/authed").text == "ran"
    method = "GET" if path.endswith("/list") else "POST"
    for auth in ({}, server.auth("finops", "wrong"), server.auth("nobody", "s3cret"), server.auth("admin", "s3cret")):
        answer = httpx.request(method, f"{server.url}{path}", content=b"print('x')\n", headers=auth, timeout=30)
        assert answer.status_code == 401, (auth, answer.text)
    assert post(server, "/compute/authed").text == "ran"
    assert httpx.get(f"{server.url}/compute/authed/info", headers=server.auth()).json()["code"] == "print('ran')\n"


def test_params_keep_equals_signs_and_argv_parsing_still_works(server: DbHandler) -> None:
    put(server, "params", "import json\nfrom functions.notebooks_api import params\n"
                          "old = dict(a.split('=', 1) for a in sys.argv[5:])\n"
                          "print(json.dumps([params(), old]))\n")
    sent = {"filter": "a=b==c", "empty": "", "url": "https://x/?q=1&r=2"}
    answer = post(server, "/compute/params", params=sent)
    assert answer.json() == [sent, sent]


def test_temp_dir_is_removed_after_a_failure(server: DbHandler) -> None:
    put(server, "fail-files", "import os\nopen('left.txt', 'w').write('x')\nos.mkdir('sub')\nos.chmod('sub', 0)\n"
                              "eprint(os.getcwd())\nraise SystemExit(3)\n")
    answer = post(server, "/compute/fail-files")
    assert answer.status_code == 422 and answer.json()["exit_code"] == 3
    workdir = Path(answer.json()["stderr"].strip())
    assert workdir.name == "work" and not workdir.parent.exists()


def test_database_unreachable_is_503_with_retry_after() -> None:
    result = sandbox.RunResult(sandbox.EXIT_DB_UNAVAILABLE, b"", "error while connecting to database: refused", False, 0.1)
    answer = refusal(lambda: notebook_store.outcome("n", result, "", NotebookRunSettings()))
    assert (answer.status, answer.headers) == (503, {"Retry-After": "5"})
    assert "could not reach the database" in answer.body["error"]


def test_a_fence_that_cannot_be_built_is_503_and_runs_nothing(server: DbHandler) -> None:
    real = NotebookRunSettings()
    plan = sandbox.fence_plan(real)
    broken = NotebookRunSettings(FINOPS_NOTEBOOK_PYTHON="/nonexistent/python3")  # exec fails inside the fence
    creds = sandbox.DbCredentials(f"http://127.0.0.1:{server.notebook_sql_port}", "finops", "s3cret")
    result = sandbox.run("never", "print('ran')\n", creds, {}, broken, plan)
    assert result.fence_error.startswith("FileNotFoundError") and result.stdout == b""
    answer = refusal(lambda: notebook_store.outcome("never", result, "", broken))
    assert answer.status == 503 and "its fence could not be built" in answer.body["error"]
    assert "FileNotFoundError" not in json.dumps(answer.body)


def test_runner_and_handler_agree_on_exit_codes_and_pipe_name() -> None:
    from functions import notebooks_api

    assert (notebooks_api.EXIT_DB_UNAVAILABLE, notebooks_api.EXIT_MEMORY, notebooks_api.CREDENTIALS_FD_ENV) == (
        sandbox.EXIT_DB_UNAVAILABLE, sandbox.EXIT_MEMORY, sandbox.CREDENTIALS_FD_ENV)
    assert "FINOPS_NOTEBOOK_CREDENTIALS_FD" not in os.environ


def refusal(run: Callable[[], object]) -> errors.Answer:
    """The answer of a run that failed: outcome() raises the error, the error table answers it."""
    with pytest.raises(errors.FinopsError) as caught:
        run()
    return errors.answer(caught.value)
