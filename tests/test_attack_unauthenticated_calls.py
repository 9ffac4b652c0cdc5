"""Every function refuses callers without credentials, through real functions-framework servers.

Set-up (module): every target of functions/main.py TARGETS on 127.0.0.1 (functions-framework), the
local CR store with the DatabaseConfig finops/finops-db, the database handler as main.py serves it
(users `finops` with a password and Krateo's passwordless `crate`), and the shared caller token of
tests/dbhandler_server.py. What an attacker holds: nothing, a made-up token, or the database user's
credentials (what a Krateo DatabaseConfig hands to every scraper and notebook).

Cases:
- every endpoint that writes or reads cost data, on every target, answers no credentials and wrong
  ones (a made-up bearer, the database user's Basic credentials) with a 401 JSON answer and
  `WWW-Authenticate: Bearer`, and answers the shared token past the gate; the table covers TARGETS;
- the refusal comes before the body is read: a request head announcing 200 MB is answered 401 at once;
- the probes `GET /` and `/healthz` stay open on every target;
- the database handler (Basic per request, its own users): an empty password (Krateo's `crate`) is
  refused, a wrong one too, the real one is served; wrong credentials are refused before the body;
- the optimizer: GET /optimize needs Basic credentials (forwarded to the handler) and gets nothing
  without them; a plain-HTTP AdmissionReview and the day-2 ping need the token, also when the request
  claims TLS with X-Forwarded-Proto/-Ssl (only a TLS socket counts);
- the issue's reproduction: a forged AI cost event sent first with a real event's id is refused
  unauthenticated and nothing is stored; sent with the token (a buggy producer), the real $5,000 event
  that follows is answered 422 `conflict` naming the id, never `accepted`, alone and in a batch (200,
  the other events accepted, the conflict listed); the same event again stays an idempotent duplicate;
- a rotated token (the Secret's file replaced, as the kubelet does) applies without a restart: the old
  one is refused, the new one accepted;
- the local stack's token: a random one in the Secret finops/finops-auth-token on first use, written
  0600 to <state>/auth/token, rewritten when the Secret changes (what the supervisor does every second);
- nothing configured (FINOPS_AUTH=auto, no token file, no Kubernetes API): everything but the probes
  is refused, the 401 names what is missing, and the log says so at start; FINOPS_AUTH=open (Krateo's
  open mode, the explicit switch) lets an anonymous caller in;
- the manifests: every Trigger's `subscriber.audience` is the audience its function accepts by
  default (`finops-functions/<Service>`), and knative/base mounts the token Secret into every
  function Service but the database handler, with FINOPS_AUTH left at `auto`;
- OIDC: a service-account token for the function's audience, verified by a real API server's
  TokenReview, is accepted; one for another audience and a garbage JWT are refused (runs only when
  FINOPS_TEST_KUBECONFIG names a cluster).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aicost_server import DB_DOCS, write_crs
from dbhandler_server import AUTH, USERS, start_function, stop_process

from functions import events
from functions.local.supervisor import free_port
from functions.main import TARGETS

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "functions" / "main.py"
SERVICE = {t: t.replace("_", "-") for t in TARGETS}  # K_SERVICE, as in knative/
BASIC = {"Authorization": "Basic " + base64.b64encode(b"finops:" + USERS["finops"].encode()).decode()}
EMPTY = {"Authorization": "Basic " + base64.b64encode(b"crate:").decode()}
WRONG: dict[str, dict[str, str]] = {"made-up bearer": {"Authorization": "Bearer not-the-token"},
                                    "database credentials": BASIC}
USAGE = {"team": "research", "project": "llm", "source": "llm-api",
         "llm": {"provider": "openai", "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 10}}


@dataclass
class Stack:
    urls: dict[str, str]
    tmp: Path

    def sql(self, stmt: str) -> list[list[Any]]:
        from crate import client

        conn = client.connect(self.urls["dbhandler"], username="finops", password=USERS["finops"])
        try:
            cursor = conn.cursor()
            cursor.execute(stmt)
            return [list(r) for r in cursor.fetchall()]
        finally:
            conn.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("unauthenticated")
    state = tmp / "state"
    write_crs(state, DB_DOCS)
    ports = {t: free_port() for t in TARGETS}
    urls = {t: f"http://127.0.0.1:{p}" for t, p in ports.items()}
    common = {"FINOPS_STATE_DIR": str(state), "FINOPS_KUBE": "local", "FINOPS_DBHANDLER_URL": urls["dbhandler"],
              "FINOPS_EXPORTER_URL": urls["exporter"], "FINOPS_DB_MODE": "embedded",
              "FINOPS_DB_PATH": str(tmp / "db" / "finops.duckdb"), "FINOPS_DB_USERS": json.dumps(USERS),
              "FINOPS_DB_SQL_PORT": str(free_port()), "FINOPS_DB_NOTEBOOK_SQL_PORT": str(free_port()),
              "FINOPS_OPTIMIZER_ADMISSION": "true"}

    def start(target: str) -> Any:
        env = {**common, "K_SERVICE": SERVICE[target]}
        return start_function(target, ports[target], env, tmp / f"{target}.log", MAIN)

    with ThreadPoolExecutor(len(TARGETS)) as pool:
        futures = [pool.submit(start, t) for t in TARGETS]
    procs = [f.result() for f in futures if f.exception() is None]
    try:
        errors = [f.exception() for f in futures if f.exception() is not None]
        assert not errors, errors
        yield Stack(urls, tmp)
    finally:
        for proc in procs:
            stop_process(proc)


def _event(type_: str, data: Any, subject: str | None = None, **ext: str) -> tuple[dict[str, str], bytes]:
    return events.to_binary(events.new(type_, "/attacker", data, subject=subject, **ext))


def _cr_applied(kind: str) -> tuple[dict[str, str], bytes]:
    cr = {"apiVersion": "finops.krateo.io/v1", "kind": kind, "metadata": {"name": "x", "namespace": "finops"}, "spec": {}}
    return _event(events.CR_APPLIED, cr, f"{kind}/finops/x", kind=kind)


def _review() -> tuple[dict[str, str], bytes]:
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "operation": "DELETE", "object": None}}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


Request = Callable[[], tuple[str, str, dict[str, str], bytes]]
"""() -> (method, path, headers, body) of one call."""

# (target, what) -> the call. Every endpoint that writes anything or reads cost data.
CALLS: dict[tuple[str, str], Request] = {
    ("exporter", "POST / (export cycle)"): lambda: ("POST", "/", *_event(events.PING, {"kind": "ExporterScraperConfig", "namespace": "finops", "name": "x"})),
    ("exporter", "GET /metrics/<ns>/<name> (the cost snapshot)"): lambda: ("GET", "/metrics/finops/x", {}, b""),
    ("scraper", "POST / (scrape and upload)"): lambda: ("POST", "/", *_event(events.PING, {"kind": "ScraperConfig", "namespace": "finops", "name": "x"})),
    ("aicost", "POST / (store AI cost events)"): lambda: ("POST", "/", *_event(events.AICOST_USAGE, USAGE)),
    ("aicost_metrics", "GET /metrics (cost totals)"): lambda: ("GET", "/metrics", {}, b""),
    ("focus_ingest", "POST / (write a FOCUS row)"): lambda: ("POST", "/", *_cr_applied("FocusConfig")),
    ("notebooks", "POST / (upload a notebook)"): lambda: ("POST", "/", *_cr_applied("Notebook")),
    ("inference_runner", "POST / (run an InferenceRun)"): lambda: ("POST", "/", *_cr_applied("InferenceRun")),
    ("optimizer", "POST / (day-2 ping: label compositions)"): lambda: ("POST", "/", *_event(events.PING, {"compositions": []}, finopstarget="optimizer")),
    ("optimizer", "POST / (AdmissionReview over plain HTTP)"): lambda: ("POST", "/", *_review()),
    ("optimizer", "POST / (AdmissionReview over plain HTTP claiming TLS by X-Forwarded-*)"): lambda: (
        "POST", "/", {**_review()[0], "X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on",
                      "X-Forwarded-Protocol": "ssl"}, _review()[1]),
}
# The database handler's callers are database users (Basic): its own walk is below.
BASIC_ONLY = {"dbhandler"}


def _call(stack: Stack, target: str, request: Request, auth: dict[str, str]) -> httpx.Response:
    method, path, headers, body = request()
    return httpx.request(method, stack.urls[target] + path, headers={**headers, **auth}, content=body or None, timeout=60)


def test_the_walk_covers_every_target() -> None:
    assert {t for t, _ in CALLS} | BASIC_ONLY == set(TARGETS)


@pytest.mark.parametrize("key", list(CALLS), ids=lambda k: f"{k[0]}: {k[1]}")
def test_no_or_wrong_credentials_are_refused_and_the_token_gets_in(stack: Stack, key: tuple[str, str]) -> None:
    target, _what = key
    for name, auth in {"none": {}, **WRONG}.items():
        refused = _call(stack, target, CALLS[key], auth)
        assert refused.status_code == 401, (name, refused.text)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer"), name
        assert refused.headers["content-type"].startswith("application/json")
        assert "Bearer" in refused.json()["error"], refused.text
    allowed = _call(stack, target, CALLS[key], AUTH)
    assert allowed.status_code != 401, allowed.text
    assert allowed.status_code < 500, allowed.text


def _head_only(url: str, method: str, path: str, headers: dict[str, str]) -> tuple[float, bytes]:
    """Send a request head announcing 200 MB and no body; (seconds to the answer, the answer)."""
    host, port = url.removeprefix("http://").split(":")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {200 << 20}\r\n{head}\r\n".encode())
        data = b""
        while not data.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return time.monotonic() - began, data


@pytest.mark.parametrize("key", list(CALLS), ids=lambda k: f"{k[0]}: {k[1]}")
def test_the_refusal_comes_before_the_body(stack: Stack, key: tuple[str, str]) -> None:
    method, path, headers, _body = CALLS[key]()
    seconds, answer = _head_only(stack.urls[key[0]], method, path, headers)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert seconds < 5  # had it waited for the 200 MB, the read would have timed out


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("path", ["/", "/healthz"])
def test_probes_stay_open(stack: Stack, target: str, path: str) -> None:
    answer = httpx.get(stack.urls[target] + path, timeout=30)
    if target == "dbhandler" and path == "/healthz":
        assert answer.status_code == 404 and answer.json()  # the handler routes itself; GET / is its banner
    else:
        assert answer.status_code == 200, answer.text


def test_the_database_handler_refuses_empty_and_wrong_passwords(stack: Stack) -> None:
    url = stack.urls["dbhandler"]
    stmt = json.dumps({"stmt": "SELECT 1"}).encode()
    wrong = {"Authorization": "Basic " + base64.b64encode(b"finops:wrong").decode()}
    for path, body in (("/_sql", stmt), ("/upload?table=t&run=r", b"[]"), ("/compute/list", b"")):
        method = "GET" if path == "/compute/list" else "POST"
        for name, auth in (("none", {}), ("empty password", EMPTY), ("wrong password", wrong),
                           ("made-up bearer", WRONG["made-up bearer"])):
            answer = httpx.request(method, url + path, headers={"Content-Type": "application/json", **auth},
                                   content=body or None, timeout=30)
            assert answer.status_code == 401, (path, name, answer.text)
            assert answer.headers["WWW-Authenticate"].startswith("Basic"), (path, name)
        empty = httpx.request(method, url + path, headers=EMPTY, content=body or None, timeout=30)
        assert "empty database password" in empty.text, empty.text
    served = httpx.post(url + "/_sql", headers={"Content-Type": "application/json", **BASIC}, content=stmt, timeout=30)
    assert served.status_code == 200 and served.json()["rows"] == [[1]], served.text


@pytest.mark.parametrize("path", ["/upload?table=t&run=r", "/_sql", "/compute/nb/upload"])
def test_the_database_handler_refuses_wrong_credentials_before_the_body(stack: Stack, path: str) -> None:
    wrong = {"Authorization": "Basic " + base64.b64encode(b"finops:wrong").decode(), "Content-Type": "application/json"}
    seconds, answer = _head_only(stack.urls["dbhandler"], "POST", path, wrong)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert seconds < 5  # had it read the 200 MB announced, the read would have timed out


def test_get_optimize_needs_basic_credentials(stack: Stack) -> None:
    params = {"resource_name": "vm", "table_name": "finops_res", "dbhandler_url": stack.urls["dbhandler"] + "/compute"}
    for auth in ({}, AUTH, WRONG["made-up bearer"]):  # the caller token is not a database credential
        answer = httpx.get(stack.urls["optimizer"] + "/optimize", params=params, headers=auth, timeout=30)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic"), answer.text
        assert "optimization" not in answer.text
    wrong = {"Authorization": "Basic " + base64.b64encode(b"finops:wrong").decode()}
    refused = httpx.get(stack.urls["optimizer"] + "/optimize", params=params, headers=wrong, timeout=30)
    assert 400 <= refused.status_code < 500 and "credentials" in refused.text, refused.text  # the handler refused them


def _aicost(stack: Stack, items: list[dict[str, Any]], auth: dict[str, str]) -> httpx.Response:
    return httpx.post(stack.urls["aicost"], content=json.dumps(items).encode(), timeout=60,
                      headers={"Content-Type": "application/cloudevents-batch+json", **auth})


def _usage(event_id: str, usd: str) -> dict[str, Any]:
    data = {"team": "finance", "project": "forecast", "source": "invoice", "cost": {"amount": usd, "currency": "USD"}}
    return {"specversion": "1.0", "type": events.AICOST_USAGE, "source": "/billing", "id": event_id,
            "time": "2025-03-10T12:00:00Z", "datacontenttype": "application/json", "data": data}


def test_a_forged_event_cannot_take_a_real_events_id(stack: Stack) -> None:
    real_id = f"invoice-{uuid.uuid4()}"
    forged, real = _usage(real_id, "0.01"), _usage(real_id, "5000")
    assert _aicost(stack, [forged], {}).status_code == 401  # the attacker of the issue: no credentials
    assert _aicost(stack, [forged], WRONG["database credentials"]).status_code == 401
    stored = lambda: stack.sql(f"SELECT x_cost_usd_exact FROM ai_costs WHERE x_eventid = '{real_id}'")  # noqa: E731
    first = _aicost(stack, [real], AUTH)
    assert first.status_code == 200 and first.json()["accepted"] == 1, first.text
    assert stored() == [["5000"]]  # the forgery stored nothing: the real event is the one kept

    # A sender holding the token but reusing an id (a buggy producer): a conflict, never `accepted`.
    other_id = f"invoice-{uuid.uuid4()}"
    assert _aicost(stack, [_usage(other_id, "0.01")], AUTH).json()["accepted"] == 1
    alone = _aicost(stack, [_usage(other_id, "5000")], AUTH)
    assert alone.status_code == 422 and alone.json()["error"].startswith("conflict"), alone.text
    assert other_id in alone.text and "conflict" in alone.json()["errors"][0]["msg"]
    fresh = _usage(f"invoice-{uuid.uuid4()}", "12.50")
    mixed = _aicost(stack, [fresh, _usage(other_id, "5000")], AUTH)
    assert mixed.status_code == 200, mixed.text
    body = mixed.json()
    assert (body["accepted"], body["conflicted"]) == (1, 1), body
    assert body["conflicts"][0]["index"] == 1 and body["conflicts"][0]["id"] == other_id
    assert stack.sql(f"SELECT x_cost_usd_exact FROM ai_costs WHERE x_eventid = '{other_id}'") == [["0.01"]]
    again = _aicost(stack, [fresh], AUTH).json()  # the same event again: an idempotent duplicate
    assert (again["accepted"], again["duplicates"], again["conflicted"]) == (1, 1, 0), again


def _start_alone(tmp: Path, target: str, env: dict[str, str]) -> tuple[str, Any, Path]:
    port, log = free_port(), tmp / f"{target}-{uuid.uuid4().hex[:6]}.log"
    env = {"FINOPS_STATE_DIR": str(tmp / "state"), "FINOPS_KUBE": "local", **env}
    return f"http://127.0.0.1:{port}", start_function(target, port, env, log, MAIN), log


def test_nothing_configured_refuses_everything_and_says_what_is_missing(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    env = {"FINOPS_AUTH": "auto", "FINOPS_AUTH_TOKEN_FILE": str(missing), "KUBERNETES_SERVICE_HOST": ""}
    url, proc, log = _start_alone(tmp_path, "exporter", env)
    try:
        assert httpx.get(url + "/", timeout=30).status_code == 200  # probes stay open
        for auth in ({}, AUTH):
            answer = httpx.get(url + "/metrics/finops/x", headers=auth, timeout=30)
            assert answer.status_code == 401, answer.text
            assert "FINOPS_AUTH_TOKEN_FILE" in answer.json()["error"] and "FINOPS_AUTH=open" in answer.json()["error"]
        assert "NO CALLER CAN BE ACCEPTED" in log.read_text()
    finally:
        stop_process(proc)


def test_a_rotated_token_applies_without_a_restart(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first-token\n")
    url, proc, _log = _start_alone(tmp_path, "exporter", {"FINOPS_AUTH_TOKEN_FILE": str(token)})
    try:
        def status(value: str) -> int:
            return httpx.get(url + "/metrics/finops/x", headers={"Authorization": f"Bearer {value}"}, timeout=30).status_code

        assert status("first-token") == 200
        fresh = tmp_path / "token.new"
        fresh.write_text("second-token\n")
        os.replace(fresh, token)
        assert (status("first-token"), status("second-token")) == (401, 200)
    finally:
        stop_process(proc)


def test_the_local_stack_keeps_its_token_in_a_secret_and_a_private_file(tmp_path: Path) -> None:
    from functions.local.crstore import CrStore
    from functions.local.supervisor import AUTH_SECRET, auth_headers, auth_token_file, ensure_auth_token

    first = ensure_auth_token(tmp_path)
    path = auth_token_file(tmp_path)
    assert len(first) >= 32 and path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert ensure_auth_token(tmp_path) == first  # kept across `up`s
    CrStore(tmp_path).apply([{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": AUTH_SECRET, "namespace": "finops"},
                              "stringData": {"token": "rotated-by-the-user"}}])
    assert ensure_auth_token(tmp_path) == "rotated-by-the-user" == path.read_text().strip()
    assert auth_headers({"auth": {"tokenFile": str(path)}}) == {"Authorization": "Bearer rotated-by-the-user"}


def test_the_open_switch_lets_anyone_in(tmp_path: Path) -> None:
    url, proc, log = _start_alone(tmp_path, "exporter", {"FINOPS_AUTH": "open"})
    try:
        answer = httpx.get(url + "/metrics/finops/x", timeout=30)
        assert answer.status_code == 200 and answer.headers["X-Finops-Snapshot"] == "none"
        assert "FINOPS_AUTH=open" in log.read_text()
    finally:
        stop_process(proc)


def test_the_manifests_wire_the_audience_and_the_token() -> None:
    import shutil
    import subprocess

    import yaml

    from functions.local.broker import load_manifests
    from functions.settings.callers import CallerSettings

    docs = load_manifests(ROOT / "knative" / "base")
    triggers = [d for d in docs if d.get("kind") == "Trigger"]
    assert len(triggers) >= 10
    for trigger in triggers:
        subscriber = trigger["spec"]["subscriber"]
        service = subscriber["ref"]["name"]
        assert subscriber["audience"] == CallerSettings.from_env({"K_SERVICE": service}).own_audience(), trigger["metadata"]
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered")
    rendered = subprocess.run([kubectl, "kustomize", str(ROOT / "knative" / "base")], capture_output=True, text=True,
                              timeout=120, check=True).stdout
    for svc in (d for d in yaml.safe_load_all(rendered) if d and d.get("kind") == "Service" and "serving" in d["apiVersion"]):
        spec = svc["spec"]["template"]["spec"]
        env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
        if "FUNCTION_TARGET" not in env:
            continue
        assert "FINOPS_AUTH" not in env, svc["metadata"]["name"]  # the default: auto
        mounted = svc["metadata"]["name"] != "dbhandler"
        assert (env.get("FINOPS_AUTH_TOKEN_FILE") == "/var/run/secrets/finops/auth/token") is mounted
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        assert ("finops-auth-token" in volumes) is mounted
        if mounted:
            assert volumes["finops-auth-token"]["secret"] == {"secretName": "finops-auth-token", "optional": True,
                                                               "items": [{"key": "token", "path": "token"}]}


KUBECONFIG = os.environ.get("FINOPS_TEST_KUBECONFIG", "")


@pytest.mark.skipif(not KUBECONFIG, reason="FINOPS_TEST_KUBECONFIG is not set: no Kubernetes API server here to "
                                           "verify OIDC tokens with a TokenReview (the shared token is tested above)")
def test_oidc_tokens_are_verified_by_the_api_server(tmp_path: Path) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(KUBECONFIG)
    core = client.CoreV1Api(api)
    namespace = f"finops-oidc-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sender")))

        def token(audience: str) -> str:
            spec = client.V1TokenRequestSpec(audiences=[audience], expiration_seconds=600)
            got = core.create_namespaced_service_account_token("sender", namespace, client.AuthenticationV1TokenRequest(spec=spec))
            return str(got.status.token)

        audience = "finops-functions/exporter"
        env = {"FINOPS_AUTH": "oidc", "FINOPS_AUTH_KUBECONFIG": KUBECONFIG, "K_SERVICE": "exporter",
               "FINOPS_AUTH_OIDC_SUBJECTS": f"system:serviceaccount:{namespace}:"}
        url, proc, _log = _start_alone(tmp_path, "exporter", env)
        try:
            good = httpx.get(url + "/metrics/finops/x", headers={"Authorization": f"Bearer {token(audience)}"}, timeout=30)
            assert good.status_code == 200, good.text
            for bad in (token("finops-functions/scraper"), "e30.e30.c2ln"):
                refused = httpx.get(url + "/metrics/finops/x", headers={"Authorization": f"Bearer {bad}"}, timeout=30)
                assert refused.status_code == 401, refused.text
        finally:
            stop_process(proc)
    finally:
        core.delete_namespace(namespace)
