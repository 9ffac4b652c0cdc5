"""fetch retries what is temporary, fails clearly on the rest, and follows pages into one file.

Cases:
- 503 then 200 succeeds after backoff; 429 waits Retry-After (seconds, HTTP date, 2 s default).
- 5xx for ever -> Unavailable after max_retries, carrying Retry-After; too long a Retry-After
  ends at once; 4xx -> InvalidInput with the status and at most 2048 bytes of body.
- POST is not retried once sent (503), but is retried when the connection was refused.
- A download broken mid-body is retried and the partial bytes are discarded.
- gzip Content-Encoding is decoded.
- Pagination: Link rel="next" (relative and absolute), JSON top-level nextLink, nextLink ignored
  for non-JSON, a repeated next URL stops, a page cap stops, credentials stay on the first origin.
- request(): returns any status; retries idempotent calls when asked; stream=True reads lazily;
  unusable URLs are InvalidInput.
- RetryPolicy.from_env reads CLIENT_MAX_RETRIES, CLIENT_BASE_BACKOFF, CLIENT_MAX_BACKOFF.
"""

from __future__ import annotations

import email.utils
import gzip
import io
import json
import time
from typing import Any

import pytest
from loopback_http import Reply, Route, Seen, closed_port, serve

from functions.clients import endpoint as endpoint_module
from functions.clients.endpoint import Endpoint, FetchResult, RetryPolicy, fetch, request
from functions.errors import InvalidInput, Unavailable
from functions.models.crs import API


class Sleeps(list[float]):
    """An injected sleep that records instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _policy(sleeps: Sleeps, retries: int = 3) -> RetryPolicy:
    return RetryPolicy(max_retries=retries, base=0.01, max=0.05, sleep=sleeps)


def _fetch(url: str, retry: RetryPolicy, path: str = "/d", **kw: Any) -> tuple[bytes, FetchResult]:
    dest = io.BytesIO()
    result = fetch(API(path=path, **kw), Endpoint(server_url=url), {}, dest=dest, retry=retry, environ={})
    return dest.getvalue(), result


OK = Reply(200, b"a,b\n1,2\n", {"Content-Type": "text/csv"})


# --- retries ----------------------------------------------------------------------------------


def test_503_is_retried_with_bounded_backoff() -> None:
    sleeps = Sleeps()
    with serve([Reply(503), Reply(503), OK]) as srv:
        body, result = _fetch(srv.url, _policy(sleeps))
    assert body == OK.body and result.status == 200 and len(srv.seen) == 3
    assert len(sleeps) == 2 and all(0.005 <= s <= 0.05 for s in sleeps)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [
        ("1", 1.0, 1.0),
        ("http-date+30", 25.0, 31.0),  # computed when the test runs, not at collection
        (None, 2.0, 2.0),
    ],
    ids=["seconds", "http-date", "default-2s"],
)
def test_429_waits_retry_after(retry_after: str | None, low: float, high: float) -> None:
    sleeps = Sleeps()
    if retry_after == "http-date+30":
        retry_after = email.utils.formatdate(time.time() + 30, usegmt=True)
    headers = {"Retry-After": retry_after} if retry_after else {}
    with serve([Reply(429, b"slow down", headers), OK]) as srv:
        body, _ = _fetch(srv.url, _policy(sleeps))
    assert body == OK.body and len(sleeps) == 1 and low <= sleeps[0] <= high


def test_persistent_5xx_ends_in_unavailable_with_retry_after() -> None:
    sleeps = Sleeps()
    reply = Reply(503, b"maintenance", {"Retry-After": "7"})
    with serve(reply) as srv, pytest.raises(Unavailable, match="503: maintenance") as info:
        _fetch(srv.url, _policy(sleeps, retries=2))
    assert len(srv.seen) == 3 and sleeps == [7.0, 7.0] and info.value.retry_after == 7


def test_too_long_retry_after_is_not_waited_here() -> None:
    sleeps = Sleeps()
    with serve(Reply(429, b"", {"Retry-After": "120"})) as srv, pytest.raises(Unavailable) as info:
        _fetch(srv.url, _policy(sleeps))
    assert len(srv.seen) == 1 and sleeps == [] and info.value.retry_after == 120


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_is_invalid_input_with_status_and_truncated_body(status: int) -> None:
    sleeps = Sleeps()
    with serve(Reply(status, b"x" * 5000)) as srv, pytest.raises(InvalidInput) as info:
        _fetch(srv.url, _policy(sleeps))
    assert len(srv.seen) == 1 and sleeps == []
    assert f"-> {status}: " in info.value.message and info.value.message.count("x") == 2048


def test_post_is_not_retried_once_sent() -> None:
    sleeps = Sleeps()
    with serve([Reply(503), OK]) as srv, pytest.raises(Unavailable):
        _fetch(srv.url, _policy(sleeps), verb="POST", payload="{}")
    assert len(srv.seen) == 1 and sleeps == []


@pytest.mark.parametrize("verb", ["GET", "POST"])
def test_connection_refused_is_retried_then_unavailable(verb: str) -> None:
    sleeps = Sleeps()
    with pytest.raises(Unavailable, match="ConnectError"):
        _fetch(f"http://127.0.0.1:{closed_port()}", _policy(sleeps, retries=2), verb=verb)
    assert len(sleeps) == 2


def test_broken_download_is_retried_and_partial_bytes_discarded() -> None:
    sleeps = Sleeps()
    full = b"0123456789" * 100
    with serve([Reply(200, full, truncate=True), Reply(200, full)]) as srv:
        body, result = _fetch(srv.url, _policy(sleeps))
    assert body == full and result.pages == [(0, len(full), "")] and len(srv.seen) == 2


def test_gzip_content_encoding_is_decoded() -> None:
    data = b"BilledCost,ResourceId\n" + b"1.5,vm-1\n" * 1000
    reply = Reply(200, gzip.compress(data), {"Content-Type": "text/csv", "Content-Encoding": "gzip"})
    with serve(reply) as srv:
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == data and result.bytes == len(data) and result.content_type == "text/csv"


# --- pagination -------------------------------------------------------------------------------


def _pages(routes: dict[str, Reply]) -> Route:
    def route(seen: Seen) -> Reply:
        return routes.get(seen.path, Reply(404, b"no such page"))

    return route


def test_link_header_pages_are_appended() -> None:
    routes: dict[str, Reply] = {}
    with serve(_pages(routes)) as srv:
        routes["/d"] = Reply(200, b"p1\n", {"Content-Type": "text/csv", "Link": '</d?page=2>; rel="next"'})
        routes["/d?page=2"] = Reply(200, b"page2\n", {"Content-Type": "text/csv", "Link": f'<{srv.url}/last>; rel="next", </d>; rel="first"'})
        routes["/last"] = Reply(200, b"end", {"Content-Type": "text/plain"})
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == b"p1\npage2\nend"
    assert result.pages == [(0, 3, "text/csv"), (3, 6, "text/csv"), (9, 3, "text/plain")]
    assert (result.url, result.content_type, result.bytes) == (srv.url + "/d", "text/csv", 12)


def test_json_next_link_pages_are_appended() -> None:
    routes: dict[str, Reply] = {}
    with serve(_pages(routes)) as srv:
        p1 = json.dumps({"value": [{"a": 1}], "nextLink": f"{srv.url}/d?$skiptoken=abc"}).encode()
        p2 = json.dumps({"value": [{"a": 2}], "nextLink": None}).encode()
        routes["/d"] = Reply(200, p1, {"Content-Type": "application/json; charset=utf-8"})
        routes["/d?$skiptoken=abc"] = Reply(200, p2, {"Content-Type": "application/json"})
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == p1 + p2
    assert [json.loads(body[o : o + n])["value"][0]["a"] for o, n, _ in result.pages] == [1, 2]


def test_next_link_in_a_non_json_body_is_ignored() -> None:
    text = b'{"nextLink": "/other"}'
    with serve(Reply(200, text, {"Content-Type": "text/plain"})) as srv:
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == text and len(result.pages) == 1 and len(srv.seen) == 1


def test_a_repeated_next_url_stops() -> None:
    routes: dict[str, Reply] = {}
    with serve(_pages(routes)) as srv:
        routes["/d"] = Reply(200, b"1", {"Link": "</e>; rel=next"})
        routes["/e"] = Reply(200, b"2", {"Link": "</d>; rel=next"})
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == b"12" and len(result.pages) == 2


def test_page_cap_stops_endless_pagination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endpoint_module, "MAX_PAGES", 3)

    def route(seen: Seen) -> Reply:
        n = int(seen.path.rsplit("=", 1)[-1]) if "=" in seen.path else 0
        return Reply(200, b"x", {"Link": f"</d?n={n + 1}>; rel=\"next\""})

    with serve(route) as srv:
        body, result = _fetch(srv.url, _policy(Sleeps()))
    assert body == b"xxx" and len(result.pages) == 3


def test_credentials_do_not_follow_a_next_page_to_another_origin() -> None:
    with serve(Reply(200, b'{"value": []}', {"Content-Type": "application/json"})) as other:
        first = json.dumps({"nextLink": other.url + "/p2"}).encode()
        with serve(Reply(200, first, {"Content-Type": "application/json"})) as srv:
            dest = io.BytesIO()
            api = API(path="/d", headers=["X-Keep: yes"])
            fetch(api, Endpoint(server_url=srv.url, token="secret"), {}, dest=dest, retry=_policy(Sleeps()), environ={})
    assert srv.seen[0].headers["authorization"] == "Bearer secret"
    assert "authorization" not in other.seen[0].headers and other.seen[0].headers["x-keep"] == "yes"


# --- request() ----------------------------------------------------------------------------------


def test_request_returns_any_status_and_retries_when_asked() -> None:
    sleeps = Sleeps()
    with serve([Reply(503), Reply(404, b"gone")]) as srv:
        resp = request("GET", srv.url + "/x", retry=_policy(sleeps))
        assert (resp.status_code, resp.content, len(sleeps)) == (404, b"gone", 1)
        resp = request("GET", srv.url + "/x")
        assert resp.status_code == 404


def test_request_stream_reads_lazily_and_closes() -> None:
    data = b"line\n" * 10_000
    with serve(Reply(200, data)) as srv:
        resp = request("GET", srv.url + "/metrics", stream=True)
        try:
            got = b"".join(resp.iter_bytes())
        finally:
            resp.close()
    assert got == data


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "http://[::1/"], ids=["unsupported-scheme", "malformed"])
def test_unusable_server_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput):
        _fetch(url, _policy(Sleeps()))


def test_request_network_error_is_unavailable() -> None:
    with pytest.raises(Unavailable):
        request("GET", f"http://127.0.0.1:{closed_port()}/")
    with pytest.raises(InvalidInput):
        request("GET", "ftp://127.0.0.1/")


def test_retry_policy_reads_krateos_environment_knobs() -> None:
    policy = RetryPolicy.from_env({"CLIENT_MAX_RETRIES": "2", "CLIENT_BASE_BACKOFF": "250ms", "CLIENT_MAX_BACKOFF": "1m"})
    assert (policy.max_retries, policy.base, policy.max) == (2, 0.25, 60.0)
    assert RetryPolicy.from_env({}) == RetryPolicy()
    assert all(0.125 <= policy.backoff(0) <= 0.25 for _ in range(50)) and policy.backoff(20) <= 60.0
    with pytest.raises(InvalidInput, match="CLIENT_"):
        RetryPolicy.from_env({"CLIENT_BASE_BACKOFF": "soon"})
