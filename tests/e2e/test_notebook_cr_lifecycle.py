"""Notebook CRs are created, updated and deleted in the database handler, as Krateo's uploader does.

The notebooks function observes with GET /compute/list and /compute/<name>/info, uploads with
POST /compute/<name>/upload (create) or ?overwrite=true (change) and calls DELETE /compute/<name>,
all with Basic auth as the DatabaseConfig's user. The test reads the handler's store the same way.

Cases (one stack for the module):
- inline: `finops apply` -> stored within one event delivery; an update -> overwritten; `finops delete`
  -> gone from the list;
- api (type `Api`, any case): the code is fetched through the endpoint Secret (bearer token sent),
  stored verbatim; a re-apply after the remote code changed stores the new code;
- bridge-shaped events posted to the function directly: created, then `unchanged` when repeated;
- names are global (namespace ignored, as in Krateo): deleting one of two same-named Notebooks keeps
  the notebook, holding the survivor's code;
- failures answer with Ready=False conditions: a missing endpoint Secret (400, the field named) and
  empty code (400); no dead letters for the good cases.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_stack import NAMESPACE, E2EStack, secret, start_stack, wait_until
from loopback_http import Reply, Seen, serve

from functions.local.crstore import CrStore

pytestmark = pytest.mark.slow
CODE_V1 = 'print("hello, v1")\n'
CODE_V2 = 'import sys\nprint("hello, " + " ".join(sys.argv[5:]))  # v2, with "quotes", commas\n'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    s = start_stack(tmp_path_factory.mktemp("notebooks"))
    yield s
    s.stop()


def notebook(name: str, namespace: str = NAMESPACE, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "Notebook",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _auth(stack: E2EStack) -> dict[str, str]:
    db = stack.info()["db"]
    token = base64.b64encode(f"{db['user']}:{db['password']}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Accept": "application/json"}


def stored(stack: E2EStack, name: str) -> str | None:
    """The handler's code for `name` (None when /compute/list lacks it), read like Krateo's uploader."""
    base = stack.url("dbhandler")
    listed = httpx.get(f"{base}/compute/list", headers=_auth(stack), timeout=30)
    assert listed.status_code == 200, listed.text
    if [name] not in listed.json():
        return None
    info = httpx.get(f"{base}/compute/{name}/info", headers=_auth(stack), timeout=30)
    assert info.status_code == 200, info.text
    code = info.json()["code"]
    return str(code)


def test_inline_notebook_create_update_delete(stack: E2EStack) -> None:
    stack.apply(notebook("nb-inline", type="inline", inline=CODE_V1))
    wait_until(lambda: stored(stack, "nb-inline") == CODE_V1, timeout=30, what="the notebook upload")
    stack.apply(notebook("nb-inline", type="INLINE", inline=CODE_V2))
    wait_until(lambda: stored(stack, "nb-inline") == CODE_V2, timeout=30, what="the overwrite")
    result = stack.finops("delete", f"Notebook/{NAMESPACE}/nb-inline")
    assert result.rc == 0, result.text
    wait_until(lambda: stored(stack, "nb-inline") is None, timeout=30, what="the delete")
    assert stack.deadletters() == []


def test_api_notebook_is_fetched_through_the_endpoint_secret(stack: E2EStack) -> None:
    body = {"code": CODE_V1}

    def route(seen: Seen) -> Reply:
        ok = seen.path == "/notebooks/query.py" and seen.headers.get("authorization") == "Bearer nb-token"
        return Reply(200, body["code"].encode(), {"Content-Type": "text/plain"}) if ok else Reply(403, b"no")

    with serve(route) as origin:
        stack.apply(secret("nb-source", {"server-url": origin.url, "token": "nb-token"}))
        api = {"path": "/notebooks/query.py", "endpointRef": {"name": "nb-source", "namespace": NAMESPACE}}
        stack.apply(notebook("nb-api", type="Api", api=api))
        wait_until(lambda: stored(stack, "nb-api") == CODE_V1, timeout=30, what="the fetched notebook")
        body["code"] = CODE_V2
        stack.apply(notebook("nb-api", type="Api", api=api) | {"metadata": {
            "name": "nb-api", "namespace": NAMESPACE, "annotations": {"finops/refresh": "1"}}})
        wait_until(lambda: stored(stack, "nb-api") == CODE_V2, timeout=30, what="the refreshed notebook")
    assert stack.deadletters() == []



def test_bridge_events_and_global_names(stack: E2EStack) -> None:
    store = CrStore(stack.state)
    [first] = store.apply([notebook("nb-shared", "team-a", type="inline", inline=CODE_V1)])
    assert first.events[0].extensions["kind"] == "Notebook"
    answers = [stack.post_event("notebooks", first.events[0]).json()["result"] for _ in range(2)]
    assert answers == ["created", "unchanged"]
    assert stored(stack, "nb-shared") == CODE_V1

    [second] = store.apply([notebook("nb-shared", "team-b", type="inline", inline=CODE_V2)])
    assert stack.post_event("notebooks", second.events[0]).json()["result"] == "updated"
    gone = store.delete("Notebook", "team-b", "nb-shared")
    answer = stack.post_event("notebooks", gone.events[0]).json()
    assert answer["result"] == "kept", answer
    assert stored(stack, "nb-shared") == CODE_V1  # team-a's notebook is what remains

    last = store.delete("Notebook", "team-a", "nb-shared")
    assert stack.post_event("notebooks", last.events[0]).json()["result"] == "deleted"
    assert stored(stack, "nb-shared") is None


@pytest.mark.parametrize(("spec", "loc"), [
    ({"type": "api", "api": {"path": "/x.py", "endpointRef": {"name": "missing", "namespace": NAMESPACE}}},
     "spec.api.endpointRef"),
    ({"type": "inline", "inline": "   \n"}, "spec.inline"),
], ids=["missing-endpoint-secret", "empty-code"])
def test_failures_carry_conditions(stack: E2EStack, spec: dict[str, Any], loc: str) -> None:
    [change] = CrStore(stack.state).apply([notebook("nb-broken", **spec)])
    resp = stack.post_event("notebooks", change.events[0])
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert loc in {e["loc"] for e in answer["errors"]}
    ready = answer["status"]["conditions"][0]
    assert (ready["type"], ready["status"]) == ("Ready", "False")
    assert stored(stack, "nb-broken") is None
