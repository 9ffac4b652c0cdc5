"""`/compute` answers like Krateo's database handler (krateoplatformops/finops-database-handler, main.py
and internal/compute/), through the real handler.

Cases:
- store: `notebook_table(notebook_name, data)` is readable with SQL; upload answers JSON
  `{"result": true}`; without overwrite an existing notebook is kept; exactly `overwrite=true`
  replaces (`True`, `1`, `yes` do not); an empty body answers `{"result": false}` and stores nothing;
- list `[]` without a table, `[["a"], ["b"]]` after uploads; info 200 `{"notebook", "code"}`, 404
  with `"code": ""` for an unknown name;
- delete answers 200 `{"result": "deleted"}`, also for unknown names and without a table;
- run: argv host, port (the notebooks' SQL listener), user, password, then `k=v` in the caller's order (values with `=` whole);
  stdout with newlines stripped at both ends; JSON content type when Accept is or includes
  application/json, text/plain otherwise; an empty body means no parameters;
- shapes: GET elsewhere under /compute -> 400 `URL composition incorrect`; other methods and
  shapes -> 405 `URL composition or methods are incorrect`; missing or non-Basic auth -> 401 on
  every route;
- base64-encoded user and password are accepted (Krateo's handler decodes each part when it can);
- the uploader's sequence (krateoplatformops/finops-database-handler-uploader): list, create, info,
  update with overwrite, delete;
- our deviations: a failed notebook is 422 with its stderr (Krateo: 200 with stderr); non-string
  parameters, invalid names and code that does not compile are 400 naming the problem; an unknown
  notebook run is 404.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from dbhandler_server import DbHandler, dbhandler_fixture, start_dbhandler  # noqa: F401 - the `dbhandler` fixture

ECHO = """import json
print()
print(json.dumps({"argv": sys.argv[1:], "names": [host, port, username, password]}))
print()
"""


@pytest.fixture(scope="module", name="server")
def server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    """One handler for the cases that do not need an empty database (notebook names are unique per case)."""
    handler = start_dbhandler(tmp_path_factory.mktemp("compute"))
    try:
        yield handler
    finally:
        handler.stop()


def call(server: DbHandler, method: str, path: str, *, auth: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
    headers = {**(server.auth() if auth is None else auth), **kw.pop("headers", {})}
    return httpx.request(method, f"{server.url}{path}", headers=headers, timeout=60, **kw)


def upload(server: DbHandler, name: str, code: str, query: str = "") -> httpx.Response:
    return call(server, "POST", f"/compute/{name}/upload{query}", content=code.encode())


# ------------------------------------------------------------------------------ 38 the store


def test_upload_stores_code_in_notebook_table(server: DbHandler) -> None:
    answer = upload(server, "store-a", "print('a')\n")
    assert (answer.status_code, answer.json()) == (200, {"result": True})
    assert answer.headers["content-type"].startswith("application/json")
    rows = server.sql("SELECT notebook_name, data FROM notebook_table WHERE notebook_name = ?", ["store-a"])
    assert rows == [["store-a", "print('a')\n"]]


@pytest.mark.parametrize(
    ("query", "replaced"),
    [
        pytest.param("", False, id="no-overwrite-keeps"),
        pytest.param("?overwrite=false", False, id="overwrite-false-keeps"),
        pytest.param("?overwrite=True", False, id="capital-True-keeps-like-krateo"),
        pytest.param("?overwrite=1", False, id="one-keeps"),
        pytest.param("?overwrite=true", True, id="overwrite-true-replaces"),
    ],
)
def test_overwrite_only_with_exactly_true(server: DbHandler, query: str, replaced: bool, request: pytest.FixtureRequest) -> None:
    name = request.node.callspec.id
    assert upload(server, name, "print(1)\n").json() == {"result": True}
    answer = upload(server, name, "print(2)\n", query)
    assert (answer.status_code, answer.json()) == (200, {"result": True})
    code = call(server, "GET", f"/compute/{name}/info").json()["code"]
    assert code == ("print(2)\n" if replaced else "print(1)\n")


def test_empty_upload_answers_false_and_stores_nothing(server: DbHandler) -> None:
    answer = upload(server, "empty-one", "")
    assert answer.status_code == 200 and answer.json()["result"] is False
    assert call(server, "GET", "/compute/empty-one/info").status_code == 404


# ------------------------------------------------------------------------------ 39 list and info


def test_list_is_empty_without_a_table_then_lists_names(dbhandler: DbHandler) -> None:
    answer = call(dbhandler, "GET", "/compute/list")
    assert (answer.status_code, answer.json()) == (200, [])
    assert answer.headers["content-type"].startswith("application/json")
    upload(dbhandler, "b", "print(1)\n")
    upload(dbhandler, "a", "print(2)\n")
    assert call(dbhandler, "GET", "/compute/list").json() == [["a"], ["b"]]


def test_info_returns_code_or_404_with_empty_code(server: DbHandler) -> None:
    upload(server, "info-x", "x = 1\n")
    answer = call(server, "GET", "/compute/info-x/info")
    assert (answer.status_code, answer.json()) == (200, {"notebook": "info-x", "code": "x = 1\n"})
    missing = call(server, "GET", "/compute/nope/info")
    assert missing.status_code == 404
    assert {k: missing.json()[k] for k in ("notebook", "code")} == {"notebook": "nope", "code": ""}


# ------------------------------------------------------------------------------ 40 delete


def test_delete_answers_deleted_even_without_table_or_name(dbhandler: DbHandler) -> None:
    for _ in range(2):  # no table yet, then a table without the name
        answer = call(dbhandler, "DELETE", "/compute/ghost")
        assert (answer.status_code, answer.json()) == (200, {"result": "deleted"})
        upload(dbhandler, "other", "print(1)\n")
    upload(dbhandler, "gone", "print(1)\n")
    assert call(dbhandler, "DELETE", "/compute/gone").json() == {"result": "deleted"}
    assert call(dbhandler, "GET", "/compute/list").json() == [["other"]]


def test_delete_answers_error_500_when_the_sql_fails(dbhandler: DbHandler) -> None:
    """Checklist 40's other half: a notebook table the DELETE cannot run against is a 500 {"result": "error"}."""
    dbhandler.sql("CREATE TABLE notebook_table (data TEXT)")  # no notebook_name column: the DELETE fails
    answer = call(dbhandler, "DELETE", "/compute/anything")
    assert answer.status_code == 500
    assert answer.json()["result"] == "error" and "notebook_name" in answer.json()["error"].lower()


# ------------------------------------------------------------------------------ 41 run


def test_run_passes_krateo_argv_and_strips_newlines(server: DbHandler) -> None:
    upload(server, "echo", ECHO)
    answer = call(server, "POST", "/compute/echo", json={"b": "2", "a": "x=y=z", "c": ""})
    assert answer.status_code == 200
    assert not answer.text.startswith("\n") and not answer.text.endswith("\n")
    got = answer.json()
    port = str(server.notebook_sql_port)  # the notebooks' own SQL listener, never the handler's request port
    assert port != str(server.port)
    assert got["argv"] == ["127.0.0.1", port, "finops", "s3cret", "b=2", "a=x=y=z", "c="]
    assert got["names"] == ["127.0.0.1", port, "finops", "s3cret"]


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        pytest.param("application/json", "application/json", id="exact-json"),
        pytest.param("text/plain, application/json;q=0.9", "application/json", id="json-among-others"),
        pytest.param("*/*", "text/plain", id="any"),
        pytest.param(None, "text/plain", id="none"),
    ],
)
def test_run_content_type_follows_accept(server: DbHandler, accept: str | None, content_type: str) -> None:
    upload(server, "jsonout", 'print(\'{"ok": true}\')\n')
    answer = call(server, "POST", "/compute/jsonout", headers={"Accept": accept} if accept else {})
    assert answer.status_code == 200 and answer.text == '{"ok": true}'
    assert answer.headers["content-type"].startswith(content_type)


def test_run_with_empty_body_has_no_parameters(server: DbHandler) -> None:
    upload(server, "noparams", "print(len(sys.argv))\n")
    assert call(server, "POST", "/compute/noparams").text == "5"


def test_failed_notebook_is_422_with_its_stderr(server: DbHandler) -> None:
    upload(server, "fails", "eprint('about to fail')\nraise ValueError('boom')\n")
    answer = call(server, "POST", "/compute/fails", json={})
    assert answer.status_code == 422
    body = answer.json()
    assert body["exit_code"] == 1 and "about to fail" in body["stderr"]
    assert "fails.py\", line 2" in body["stderr"] and "ValueError: boom" in body["stderr"]


@pytest.mark.parametrize(
    ("body", "locs"),
    [
        pytest.param(b'{"a": 1, "b": "ok", "c": null}', {"a", "c"}, id="non-strings"),
        pytest.param(b'["a"]', {"body"}, id="not-an-object"),
        pytest.param(b"{nope", {"body"}, id="not-json"),
        pytest.param(b'{"k=v": "x", "": "y"}', {"k=v", ""}, id="bad-keys"),
    ],
)
def test_bad_parameters_are_400_naming_each(server: DbHandler, body: bytes, locs: set[str]) -> None:
    upload(server, "params", "print(1)\n")
    answer = call(server, "POST", "/compute/params", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert {e["loc"] for e in answer.json()["errors"]} == locs


def test_unknown_notebook_run_is_404(server: DbHandler) -> None:
    answer = call(server, "POST", "/compute/never-uploaded", json={})
    assert answer.status_code == 404 and "never-uploaded" in answer.json()["error"]


def test_code_that_does_not_compile_is_refused(server: DbHandler) -> None:
    answer = upload(server, "syntax", "def f(:\n    pass\n")
    assert answer.status_code == 400 and answer.json()["errors"][0]["loc"] == "line 1"
    assert call(server, "GET", "/compute/syntax/info").status_code == 404


@pytest.mark.parametrize("name", ["a b", "-lead", "x" * 254, "semi;colon", "quo'te"])
def test_bad_names_are_400(server: DbHandler, name: str) -> None:
    answer = upload(server, name, "print(1)\n")
    assert answer.status_code == 400 and answer.json()["errors"][0]["loc"] == "name"


# ------------------------------------------------------------------------------ 42 shapes and auth


@pytest.mark.parametrize("path", ["/compute", "/compute/x", "/compute/x/y", "/compute/x/info/z", "/compute/list/x"])
def test_other_gets_are_400_url_composition_incorrect(server: DbHandler, path: str) -> None:
    answer = call(server, "GET", path)
    assert (answer.status_code, answer.json()) == (400, {"error": "URL composition incorrect"})


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/compute", id="post-root"),
        pytest.param("POST", "/compute/x/y", id="post-two-parts"),
        pytest.param("POST", "/compute/x/upload/z", id="post-three-parts"),
        pytest.param("DELETE", "/compute/x/y", id="delete-two-parts"),
        pytest.param("DELETE", "/compute", id="delete-root"),
        pytest.param("PUT", "/compute/x", id="put"),
        pytest.param("PATCH", "/compute/x/upload", id="patch"),
    ],
)
def test_other_methods_and_shapes_are_405(server: DbHandler, method: str, path: str) -> None:
    answer = call(server, method, path)
    assert (answer.status_code, answer.json()) == (405, {"error": "URL composition or methods are incorrect"})


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/compute/list"), ("GET", "/compute/a/info"), ("GET", "/compute/x/y/z"), ("POST", "/compute/a"),
     ("POST", "/compute/a/upload"), ("DELETE", "/compute/a"), ("PUT", "/compute/a")],
)
@pytest.mark.parametrize("auth", [{}, {"Authorization": "Bearer abc"}], ids=["missing", "bearer"])
def test_missing_or_non_basic_auth_is_401(server: DbHandler, method: str, path: str, auth: dict[str, str]) -> None:
    answer = call(server, method, path, auth=auth, content=b"print(1)")
    assert answer.status_code == 401
    assert answer.json() == {"error": "authorization header is missing or not type basic"}


def test_base64_encoded_credentials_are_accepted(server: DbHandler) -> None:
    user, password = (base64.b64encode(v.encode()).decode() for v in ("finops", "s3cret"))
    upload(server, "b64", "print(username)\n")
    answer = call(server, "POST", "/compute/b64", auth=server.auth(user, password))
    assert (answer.status_code, answer.text) == (200, "finops")


def test_uploader_sequence_create_update_delete(server: DbHandler) -> None:
    """What Krateo's uploader (finops-database-handler-uploader) and our Notebook function do."""
    assert ["seq"] not in call(server, "GET", "/compute/list").json()
    assert upload(server, "seq", "print('v1')\n").json() == {"result": True}
    assert ["seq"] in call(server, "GET", "/compute/list").json()
    assert call(server, "GET", "/compute/seq/info").json()["code"] == "print('v1')\n"
    assert upload(server, "seq", "print('v2')\n", "?overwrite=true").json() == {"result": True}
    assert call(server, "POST", "/compute/seq").text == "v2"
    assert call(server, "DELETE", "/compute/seq").json() == {"result": "deleted"}
    assert ["seq"] not in call(server, "GET", "/compute/list").json()

