"""Outbound calls go only where configured; credentials stay on their origin; every call is bounded in time.

Cases:
- the allow-list (functions.clients.outbound) for URLs a request names, with its defaults (the
  cluster's Services and the configured handler): cluster Service names pass; another host, another
  port of the configured host, non-http(s) schemes, `user:password@` and malformed URLs are refused
  (403 for a host not listed, 400 for a malformed URL), the refusal naming the host and the setting;
  link-local and cloud metadata addresses are refused even under `*`, whether written as an IP literal,
  as IPv4-mapped IPv6, as fe80::, or as a number the resolver turns into 169.254.169.254
  (`2852039166`, `0xa9fea9fe`), unless the host is listed exactly;
- the real optimizer (functions-framework on 127.0.0.1) answers GET /optimize?dbhandler_url=<not
  listed> with a 403 JSON naming the host and FINOPS_OUTBOUND_ALLOW, and the server it names receives
  nothing; the configured handler is called with the caller's credentials; a handler redirecting
  to a host not listed is refused (403) and that host receives nothing;
- the endpoint client: a redirect to another origin carries neither the Secret's token nor a
  credential-like header of the CR (X-Api-Key) while ordinary headers travel; a same-origin redirect
  keeps them; a 303 after POST turns into a GET without the body; a redirect or a next-page link to
  169.254.169.254 is refused; a redirect loop stops at 20; `request()` refuses a URL outside its
  endpoint's origin before sending anything; an absolute URL as the CR's path still goes to the
  Secret's host; `<var>` naming one of our own FINOPS_* settings substitutes nothing;
- timeouts: a server that accepts and never answers fails the call within its timeout (Unavailable),
  and one that trickles a byte at a time is cut by fetch's overall deadline.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from dbhandler_server import start_function, stop_process
from loopback_http import Reply, Seen, Server, serve

from functions.clients import outbound
from functions.clients.endpoint import Endpoint, RetryPolicy, fetch, request
from functions.clients.outbound import OutboundPolicy
from functions.errors import InvalidInput, Unavailable
from functions.local.supervisor import free_port
from functions.models.crs import API

MAIN = Path(__file__).resolve().parents[1] / "functions" / "main.py"
NO_RETRY = RetryPolicy(max_retries=0)
HANDLER = "http://127.0.0.1:8088"


def refusal(policy: OutboundPolicy, url: str) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        policy.check(url, "dbhandler_url")
    return info.value


# ---- the allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    pytest.param("http://finops-database-handler.krateo-system.svc:8088/compute", id="krateo-default-handler"),
    pytest.param("http://dbhandler.finops.svc.cluster.local/compute", id="cluster-local-fqdn"),
    pytest.param(f"{HANDLER}/compute", id="the-configured-handler"),
])
def test_cluster_services_and_the_configured_handler_are_allowed(url: str) -> None:
    policy = OutboundPolicy.for_requests("", [HANDLER])
    assert str(policy.check(url, "dbhandler_url")) == url


@pytest.mark.parametrize(("url", "status", "named"), [
    pytest.param("http://attacker.example.com/compute", 403, "attacker.example.com:80", id="another-host"),
    pytest.param("http://127.0.0.1:9200/compute", 403, "127.0.0.1:9200", id="another-port-of-the-handler-host"),
    pytest.param("http://kubernetes.default:443/api", 403, "kubernetes.default:443", id="short-name-not-a-svc"),
    pytest.param("http://169.254.169.254/latest/meta-data/", 403, "169.254.169.254", id="metadata-literal"),
    pytest.param("file:///etc/passwd", 400, "scheme 'file'", id="file-scheme"),
    pytest.param("gopher://dbhandler.finops.svc:70/x", 400, "scheme 'gopher'", id="gopher-scheme"),
    pytest.param("http://finops:s3cret@dbhandler.finops.svc/compute", 400, "user:password@", id="userinfo"),
    pytest.param("http://[::1/compute", 400, "not a valid URL", id="malformed"),
])
def test_urls_outside_the_list_are_refused_naming_host_and_setting(url: str, status: int, named: str) -> None:
    error = refusal(OutboundPolicy.for_requests("", [HANDLER]), url)
    assert error.status == status and named in error.message
    if status == 403:
        assert outbound.ALLOW_SETTING in error.message


@pytest.mark.parametrize(("url", "address"), [
    pytest.param("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254", id="ipv4-literal"),
    pytest.param("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254", id="ipv4-mapped-ipv6"),
    pytest.param("http://[fe80::1]:8080/", "fe80::1", id="ipv6-link-local"),
    pytest.param("http://100.100.100.200/latest/meta-data/", "100.100.100.200", id="alibaba-metadata"),
    pytest.param("http://2852039166/latest/meta-data/", "2852039166 (169.254.169.254)", id="decimal-number"),
    pytest.param("http://0xa9fea9fe/latest/meta-data/", "0xa9fea9fe (169.254.169.254)", id="hex-number"),
])
def test_metadata_addresses_are_refused_even_when_every_host_is_allowed(url: str, address: str) -> None:
    error = refusal(OutboundPolicy.for_requests("*", []), url)
    assert error.status == 403 and address in error.message and "metadata" in error.message
    error = refusal(OutboundPolicy.guard_only(), url)  # every endpoint call, not only request-named URLs
    assert error.status == 403 and outbound.LINK_LOCAL_SETTING in error.message


def test_a_metadata_host_listed_exactly_is_allowed() -> None:
    assert OutboundPolicy.for_requests("169.254.169.254:80", []).check("http://169.254.169.254/x").host == "169.254.169.254"
    assert OutboundPolicy.guard_only("169.254.169.254").check("http://169.254.169.254/x").host == "169.254.169.254"
    assert refusal(OutboundPolicy.for_requests("169.254.*", []), "http://169.254.169.254/x").status == 403


def test_bad_allow_list_entries_name_the_setting() -> None:
    with pytest.raises(InvalidInput, match=outbound.ALLOW_SETTING):
        OutboundPolicy.for_requests("http://dbhandler/compute", [])
    with pytest.raises(InvalidInput, match=outbound.LINK_LOCAL_SETTING):
        OutboundPolicy.guard_only("host:port")


# ---- the real optimizer ---------------------------------------------------------------------------


@pytest.fixture(scope="module", name="optimizer")
def optimizer_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server]]:
    """(optimizer URL, the configured handler): a scripted loopback server (see route)."""
    tmp = tmp_path_factory.mktemp("optimizer")

    def route(seen: Seen) -> Reply:
        if seen.path.startswith("/redirecting/"):  # /redirecting/<port>/compute/cyclic -> that port of 127.0.0.1
            return Reply(307, b"", {"Location": f"http://127.0.0.1:{seen.path.split('/')[2]}/compute/cyclic"})
        return Reply(200, b"[]", {"Content-Type": "application/json"})

    with serve(route) as handler:
        port = free_port()
        env = {"FINOPS_STATE_DIR": str(tmp), "FINOPS_KUBE": "local",
               "FINOPS_DBHANDLER_URL": handler.url, "FINOPS_OUTBOUND_ALLOW": ""}
        process = start_function("optimizer", port, env, tmp / "optimizer.log", source=MAIN)
        try:
            yield f"http://127.0.0.1:{port}", handler
        finally:
            stop_process(process)


def _optimize(optimizer: str, dbhandler_url: str) -> httpx.Response:
    params = {"resource_name": "vm1", "table_name": "finops_res", "dbhandler_url": dbhandler_url}
    return httpx.get(f"{optimizer}/optimize", params=params, headers={"Authorization": "Basic Zmlub3BzOnMzY3JldA=="},
                     timeout=30)


def test_the_optimizer_calls_no_url_outside_the_list(optimizer: tuple[str, Server]) -> None:
    url, _ = optimizer
    with serve(Reply(200, b"[]", {"Content-Type": "application/json"})) as victim:
        answer = _optimize(url, f"{victim.url}/compute")
        assert answer.status_code == 403 and answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert f"127.0.0.1:{victim.port}" in body["error"] and "FINOPS_OUTBOUND_ALLOW" in body["error"]
        assert victim.seen == [], "nothing was sent to the host the request named"
    for bad, status in (("http://169.254.169.254/compute", 403), ("file:///etc/passwd", 400),
                        ("http://finops:pw@dbhandler.finops.svc/compute", 400), ("http://[::1/x", 400)):
        answer = _optimize(url, bad)
        assert answer.status_code == status and answer.json()["error"], (bad, answer.text)


def test_the_optimizer_calls_the_configured_handler_with_the_callers_credentials(optimizer: tuple[str, Server]) -> None:
    url, handler = optimizer
    answer = _optimize(url, f"{handler.url}/compute")
    assert answer.status_code == 200, answer.text
    assert answer.json()["resourceid"] == "vm1"
    call = next(s for s in handler.seen if s.path == "/compute/cyclic")
    assert call.headers["authorization"] == "Basic Zmlub3BzOnMzY3JldA=="
    assert json.loads(call.body) == {"table_name": "finops_res", "resource_name": "vm1"}


def test_a_redirect_from_the_handler_to_a_host_not_listed_is_refused(optimizer: tuple[str, Server]) -> None:
    url, handler = optimizer
    with serve(Reply(200, b"[]", {"Content-Type": "application/json"})) as victim:
        answer = _optimize(url, f"{handler.url}/redirecting/{victim.port}")
        assert answer.status_code == 403, answer.text
        assert f"127.0.0.1:{victim.port}" in answer.json()["error"] and "FINOPS_OUTBOUND_ALLOW" in answer.json()["error"]
        assert victim.seen == []


# ---- the endpoint client: redirects, origins, templates ---------------------------------------------


def test_a_redirect_to_another_origin_drops_the_secrets_credentials() -> None:
    with serve(Reply(200, b"a,b\n1,2\n", {"Content-Type": "text/csv"})) as other, \
            serve([Reply(302, b"", {"Location": f"{other.url}/elsewhere"})]) as srv:
        api = API(path="/d", headers=["X-Api-Key: k-123", "X-Keep: yes", "Cookie: s=1"])
        dest = io.BytesIO()
        fetch(api, Endpoint(server_url=srv.url, token="secret"), {}, dest=dest, retry=NO_RETRY, environ={})
    assert srv.seen[0].headers["authorization"] == "Bearer secret" and srv.seen[0].headers["x-api-key"] == "k-123"
    moved = other.seen[0].headers
    assert "authorization" not in moved and "x-api-key" not in moved and "cookie" not in moved
    assert moved["x-keep"] == "yes" and dest.getvalue() == b"a,b\n1,2\n"


def test_a_same_origin_redirect_keeps_the_credentials() -> None:
    def route(seen: Seen) -> Reply:
        if seen.path == "/d":
            return Reply(301, b"", {"Location": "/moved"})
        return Reply(200, b"ok", {"Content-Type": "text/csv"})

    with serve(route) as srv:
        fetch(API(path="/d"), Endpoint(server_url=srv.url, username="u", password="p"), {}, dest=io.BytesIO(),
              retry=NO_RETRY, environ={})
    assert [s.path for s in srv.seen] == ["/d", "/moved"]
    assert srv.seen[1].headers["authorization"] == srv.seen[0].headers["authorization"]


def test_a_303_after_post_is_followed_as_a_get_without_the_body() -> None:
    def route(seen: Seen) -> Reply:
        return Reply(303, b"", {"Location": "/result"}) if seen.method == "POST" else Reply(200, b"done")

    with serve(route) as srv:
        resp = request("POST", f"{srv.url}/run", content=b'{"q": 1}')
    assert resp.content == b"done"
    assert [(s.method, s.path, s.body) for s in srv.seen] == [("POST", "/run", b'{"q": 1}'), ("GET", "/result", b"")]


@pytest.mark.parametrize("how", ["redirect", "next-link"])
def test_a_hop_to_the_metadata_address_is_refused(how: str) -> None:
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    reply = (Reply(302, b"", {"Location": target}) if how == "redirect"
             else Reply(200, json.dumps({"value": [], "nextLink": target}).encode(), {"Content-Type": "application/json"}))
    with serve(reply) as srv, pytest.raises(InvalidInput) as info:
        fetch(API(path="/d"), Endpoint(server_url=srv.url, token="t"), {}, dest=io.BytesIO(), retry=NO_RETRY, environ={})
    assert info.value.status == 403 and "169.254.169.254" in info.value.message


def test_a_redirect_loop_stops() -> None:
    with serve(Reply(302, b"", {"Location": "/again"})) as srv, pytest.raises(InvalidInput, match="more than 20 redirects"):
        request("GET", f"{srv.url}/start")
    assert len(srv.seen) == 21


def test_request_refuses_a_url_outside_its_endpoints_origin() -> None:
    with serve(Reply(200, b"ok")) as srv, serve(Reply(200, b"ok")) as other:
        ep = Endpoint(server_url=srv.url, username="finops", password="s3cret")
        with pytest.raises(InvalidInput, match="credentials stay there"):
            request("POST", f"{other.url}/compute/cyclic", endpoint=ep, content=b"{}")
        assert request("POST", f"{srv.url}/compute/cyclic", endpoint=ep, content=b"{}").status_code == 200
    assert other.seen == [] and srv.seen[0].headers["authorization"].startswith("Basic ")


def test_an_absolute_url_as_the_crs_path_still_goes_to_the_secrets_host() -> None:
    with serve(Reply(200, b"x")) as srv, serve(Reply(200, b"y")) as other:
        fetch(API(path=f"{other.url}/steal"), Endpoint(server_url=srv.url, token="secret"), {}, dest=io.BytesIO(),
              retry=NO_RETRY, environ={})
    assert other.seen == [] and srv.seen[0].headers["authorization"] == "Bearer secret"


def test_a_variable_naming_our_own_settings_substitutes_nothing() -> None:
    environ = {"FINOPS_SNAPSHOT_DB_PASSWORD": "db-pass", "K_SINK": "http://broker", "TENANT": "acme"}
    variables = {"leak": "FINOPS_SNAPSHOT_DB_PASSWORD", "sink": "K_SINK", "tenant": "TENANT"}
    with serve(Reply(200, b"x")) as srv:
        fetch(API(path="/d?p=<leak>&s=<sink>&t=<tenant>"), Endpoint(server_url=srv.url), variables, dest=io.BytesIO(),
              retry=NO_RETRY, environ=environ)
    assert srv.seen[0].path == "/d?p=&s=&t=acme"


# ---- timeouts -------------------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_within_the_timeout() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable):
            fetch(API(path="/d"), Endpoint(server_url=f"http://127.0.0.1:{sock.getsockname()[1]}"), {}, dest=io.BytesIO(),
                  retry=NO_RETRY, environ={}, timeout=0.5)
        assert time.monotonic() - started < 5
    finally:
        sock.close()


def test_a_trickling_server_is_cut_by_the_overall_deadline() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\nContent-Length: 100000000\r\n\r\n")
            while not stop.is_set():  # one byte every 0.1 s: never idle long enough for the read timeout
                try:
                    conn.sendall(b"a")
                except OSError:
                    return
                time.sleep(0.1)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not finish within 1 s"):
            fetch(API(path="/d"), Endpoint(server_url=f"http://127.0.0.1:{sock.getsockname()[1]}"), {}, dest=io.BytesIO(),
                  retry=NO_RETRY, environ={}, timeout=5.0, deadline_s=1.0)
        assert time.monotonic() - started < 4
    finally:
        stop.set()
        sock.close()
        thread.join(5)
