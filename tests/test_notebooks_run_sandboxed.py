"""Notebooks run in a limited, clean subprocess with the caller's credentials, through the real handler.

Cases:
- an infinite loop is killed at FINOPS_NOTEBOOK_TIMEOUT with a clear 504, a child it started dies
  with it, and the handler keeps answering;
- a notebook allocating too much memory is stopped (422 naming the memory limit);
- a notebook writing more than FINOPS_NOTEBOOK_MAX_FILE_MB is stopped (422 naming the file limit);
- a notebook finds none of the handler's settings or secrets (another user's password, a canary
  variable) in its environment (os.environ and /proc/self/environ), arguments or working directory;
  with FINOPS_NOTEBOOK_ARGV_PASSWORD=false the caller's password is not on argv or
  /proc/self/cmdline, yet `functions.notebooks_api.connect()` and the preamble's `password` work;
  the credentials pipe is closed before the notebook's code runs (no pipe among its fds);
- unauthenticated, wrongly authenticated and unknown-user calls are refused (401) even right after
  a correct call, on every /compute route, and a correct call works again afterwards;
- notebooks_api.params() keeps values containing `=` whole; Krateo-style argv parsing still works;
- the temporary directory (code and working dir) is removed after a success, a failure and a timeout;
- a run answers 503 with Retry-After when the notebook could not reach the database (exit 75).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbhandler_server import DbHandler, start_dbhandler

from functions.stages.dbhandler import compute, sandbox

CANARY = "canary-9f3b1c"
ADMIN_PASSWORD = "adm1n-only-secret"
USERS = {"finops": "s3cret", "admin": ADMIN_PASSWORD}
LIMITS = {"FINOPS_NOTEBOOK_TIMEOUT": "2", "FINOPS_NOTEBOOK_MEMORY_MB": "300", "FINOPS_NOTEBOOK_MAX_FILE_MB": "1",
          "FINOPS_NOTEBOOK_ARGV_PASSWORD": "false", "FINOPS_HANDLER_CANARY": CANARY}

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
    try:
        if "pipe:" in os.readlink(f"/proc/self/fd/{n}"):
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


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in state


def test_infinite_loop_is_killed_at_the_timeout_with_its_children(server: DbHandler) -> None:
    put(server, "loop", "import subprocess, os\nchild = subprocess.Popen(['sleep', '300'])\n"
                        "eprint('child', child.pid, 'dir', os.getcwd(), flush=True)\nwhile True:\n    pass\n")
    started = time.monotonic()
    answer = post(server, "/compute/loop")
    elapsed = time.monotonic() - started
    assert answer.status_code == 504 and 2 <= elapsed < 10
    body = answer.json()
    assert body["error"] == "notebook 'loop' timed out after 2 s and was killed"
    words = body["stderr"].split()
    child, workdir = int(words[1]), words[3]
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert not Path(workdir).exists()
    put(server, "after-loop", "print('still here')\n")
    assert post(server, "/compute/after-loop").text == "still here"


def test_memory_hog_is_stopped(server: DbHandler) -> None:
    put(server, "hog", "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n")
    answer = post(server, "/compute/hog")
    assert answer.status_code == 422
    assert "ran out of memory (limit 300 MiB)" in answer.json()["error"]


def test_huge_output_is_stopped(server: DbHandler) -> None:
    put(server, "chatty", "line = 'x' * 1023\nfor _ in range(4096):\n    print(line)\n")
    answer = post(server, "/compute/chatty")
    assert answer.status_code == 422 and "more than 1 MiB" in answer.json()["error"]


def test_notebook_sees_no_handler_settings_or_secrets(server: DbHandler) -> None:
    put(server, "snoop", SNOOP)
    answer = post(server, "/compute/snoop")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert not [k for k in found["environ"] if k.startswith(("FINOPS_", "PORT", "K_"))]
    everything = json.dumps({k: found[k] for k in ("environ", "proc_environ", "argv", "cmdline", "files", "cwd")})
    for secret in (CANARY, ADMIN_PASSWORD, "FINOPS_DB_USERS", "FINOPS_DB_PATH", str(server.db_path)):
        assert secret not in everything
    assert "s3cret" not in found["cmdline"] and found["argv"][4] == "-"  # the caller's own password: not on argv
    assert found["files"] == [] and found["cwd"].endswith("/work")
    assert found["api_query"] == [[1]]
    assert found["preamble_password"] == found["api_password"] == "s3cret"
    assert found["pipes"] == []  # the credentials pipe was read and closed before the notebook's code
    assert not Path(found["file"]).exists() and not Path(found["cwd"]).exists()


def test_argv_password_is_kept_for_krateo_notebooks_by_default(tmp_path: Path) -> None:
    handler = start_dbhandler(tmp_path, users=USERS)
    try:
        put(handler, "old-style", "print(sys.argv[4])\n")
        assert post(handler, "/compute/old-style").text == "s3cret"
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
    result = sandbox.RunResult(sandbox.EXIT_DB_UNAVAILABLE, "", "error while connecting to database: refused", False, 0.1)
    answer = compute.outcome("n", result, "", sandbox.NotebookSettings())
    assert (answer.status, answer.headers) == (503, {"Retry-After": "5"})
    assert "could not reach the database" in answer.body["error"]


def test_runner_and_handler_agree_on_exit_codes_and_pipe_name() -> None:
    from functions import notebooks_api

    assert (notebooks_api.EXIT_DB_UNAVAILABLE, notebooks_api.EXIT_MEMORY, notebooks_api.CREDENTIALS_FD_ENV) == (
        sandbox.EXIT_DB_UNAVAILABLE, sandbox.EXIT_MEMORY, sandbox.CREDENTIALS_FD_ENV)
    assert "FINOPS_NOTEBOOK_CREDENTIALS_FD" not in os.environ
