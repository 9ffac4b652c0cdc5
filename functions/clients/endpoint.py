"""HTTP access to external data sources, configured by a Krateo endpoint Secret (krateoplatformops/plumbing).

Krateo-compatible: Secret keys, auth precedence, URL joining, header parsing, `X-Krateo-TraceId`,
`<var>` substitution. Deliberate differences from Krateo's Go client (plumbing v0.9.4):
- AWS SigV4 is signed by httpx-auth's `AWS4Auth` with the real canonical query string (Krateo signs
  an empty one, so its paths with `?query` never verify) and only host, content-type and x-amz-*
  headers (Krateo signs every header and truncates values at a second `:`).
- `substitute` never loops: a token whose value brings it back is left as is (Krateo spins forever).
- A custom CA is added to the system roots even without client certificates (Krateo ignores it
  then); nothing that verified before stops verifying. A Secret value that already is PEM (not
  base64 of PEM) is accepted as is.
- Non-idempotent verbs (POST, PATCH) are retried only when the connection failed before anything was
  sent; once sent they are never retried, whatever the answer (Krateo: POST never retried).
  Retry-After is honoured up to `RetryPolicy.max_retry_after`; longer waits end in `Unavailable`
  carrying it, so the caller (Knative) retries later. No QPS/burst limiter (one call per cycle).
- Pagination (Krateo has none): `Link: <...>; rel="next"` and a top-level JSON `nextLink`; next pages
  use the same verb, payload and headers.
- Credentials go only to the origin the Secret's server-url names: a next page or a redirect to another
  origin carries neither the Secret's credentials nor a header whose name looks like one (Authorization,
  API keys, cookies, tokens, x-amz-*); `request()` refuses a URL outside its endpoint's origin. Redirects
  are followed (at most 20). A URL with `user:password@` is refused (credentials belong in the Secret).
- Every request and every hop passes an outbound policy (functions.clients.outbound): by default any
  host except link-local and cloud metadata addresses (169.254.169.254 and kin), which are refused
  whether named, resolved to or redirected to.
- `<var>` substitution never reads this process's own settings: an all-uppercase value naming a
  `FINOPS_*` or `K_*` variable substitutes "" (otherwise a CR could send our database password to its API).
- Bounded: a timeout on every connect and read; `fetch` takes an optional cap on the bytes received
  (after HTTP content decoding: a gzip Content-Encoding bomb stops at the cap) and an overall deadline.
No httpx exception escapes: network trouble, 5xx and 429 -> Unavailable; other 4xx, TLS
verification failures and bad configuration -> InvalidInput.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import BinaryIO, Literal

import httpx
import orjson
from httpx_auth import AWS4Auth

from functions.clients._transport import ERROR_BODY_BYTES as ERROR_BODY_BYTES
from functions.clients._transport import Hop
from functions.clients._transport import RetryPolicy as RetryPolicy
from functions.clients._transport import build_client as _client
from functions.clients._transport import same_origin as _same_origin
from functions.clients._transport import send as _send
from functions.clients._transport import transport_error as _transport_error
from functions.clients._transport import without_credentials as _without_credentials
from functions.clients.outbound import DEFAULT as DEFAULT_POLICY
from functions.clients.outbound import OutboundPolicy
from functions.codecs._streams import ByteBudget
from functions.errors import FieldError, InvalidInput, Unavailable
from functions.logs import get_logger
from functions.models.crs import API

log = get_logger("clients.endpoint")

IN_CLUSTER_URL = "https://kubernetes.default.svc"
SA_TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
MAX_PAGES = 10_000
MAX_JSON_PAGE_BYTES = 256 * 1024 * 1024  # a larger JSON page is not inspected for `nextLink`
_SUBSTITUTION_PASSES = 16
_TRUE = frozenset({"true", "1", "yes", "on"})
_AUTH_CONFLICT = "only one of username/password, bearer token and AWS must be set"
_TOKEN = re.compile(r"<(.*?)>")  # Krateo's leftmost non-greedy match, no newlines
_OWN_ENV = ("FINOPS_", "K_")  # our settings and secrets: never substituted into a URL, path or payload
_BOM = b"\xef\xbb\xbf"

AuthMode = Literal["bearer", "basic", "aws"]


@dataclass(frozen=True)
class Endpoint:
    """Where and how to call: the decoded content of an endpoint Secret (plumbing's keys)."""

    server_url: str
    token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_data: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    insecure: bool = False
    proxy_url: str | None = None
    aws_access_key: str | None = None
    aws_secret_key: str | None = None
    aws_region: str | None = None
    aws_service: str | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        if not self.server_url:
            raise InvalidInput("endpoint: missed required attribute server-url", _field("server-url", "required"))
        if len([m for m in (self.token, self.password, self.aws_enabled) if m]) > 1:
            raise InvalidInput(_AUTH_CONFLICT, _field("data", _AUTH_CONFLICT))
        if bool(self.client_cert) != bool(self.client_key):
            msg = "client-certificate-data and client-key-data must both be set"
            raise InvalidInput(msg, _field("client-certificate-data", msg))

    @property
    def aws_enabled(self) -> bool:
        return bool(self.aws_access_key and self.aws_secret_key and self.aws_region)

    @property
    def auth_mode(self) -> AuthMode | None:
        """The credential this endpoint adds by itself (an explicit Authorization header beats it)."""
        if self.token:
            return "bearer"
        if self.password:
            return "basic"
        return "aws" if self.aws_enabled else None

    @classmethod
    def from_secret(cls, data: Mapping[str, str]) -> Endpoint:
        """From a Secret's decoded data (functions.models.k8s.secret_data); InvalidInput names the bad key."""

        def text(key: str) -> str | None:
            value = (data.get(key) or "").strip()
            return value or None

        return cls(
            server_url=text("server-url") or "",
            token=text("token"),
            username=data.get("username") or None,
            password=data.get("password") or None,
            ca_data=_pem(data, "certificate-authority-data"),
            client_cert=_pem(data, "client-certificate-data"),
            client_key=_pem(data, "client-key-data"),
            insecure=(text("insecure") or "").lower() in _TRUE,
            proxy_url=text("proxy-url"),
            aws_access_key=text("aws-access-key"),
            aws_secret_key=text("aws-secret-key"),
            aws_region=text("aws-region"),
            aws_service=text("aws-service"),
            debug=(text("debug") or "").lower() in _TRUE,
        )

    @classmethod
    def in_cluster(cls, token_path: str = SA_TOKEN_PATH) -> Endpoint:
        """No endpointRef: the API server with the pod's service-account token, TLS unverified (Krateo's default)."""
        try:
            with open(token_path, encoding="utf-8") as fh:
                token = fh.read().strip()
        except OSError as exc:
            raise InvalidInput(f"no endpointRef and no service-account token at {token_path}: {exc}") from exc
        return cls(server_url=IN_CLUSTER_URL, token=token or None, insecure=True)


def _field(loc: str, msg: str) -> list[FieldError]:
    return [FieldError(loc, msg)]


def _pem(data: Mapping[str, str], key: str) -> bytes | None:
    """`*-data` keys hold base64 of PEM (double encoded in Secret.data); plain PEM is accepted too."""
    value = (data.get(key) or "").strip()
    if not value:
        return None
    if value.startswith("-----BEGIN"):
        return value.encode()
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"endpoint: {key} is not base64-encoded PEM", _field(key, "not base64")) from exc


DEFAULT_RETRY = RetryPolicy()


@dataclass
class FetchResult:
    """What `fetch` wrote to dest: one (offset, length, content_type) per page, in order."""

    content_type: str
    url: str
    status: int
    pages: list[tuple[int, int, str]]
    bytes: int


def substitute(text: str, variables: Mapping[str, str], environ: Mapping[str, str]) -> str:
    """Replace `<name>` tokens (Krateo's exporter rule): variables[name]; an all-uppercase value names an env var.

    Each distinct token is resolved once; a token that comes back (a value containing it) is left as
    is, and at most _SUBSTITUTION_PASSES passes run, so this always terminates.
    """
    done: set[str] = set()
    for _ in range(_SUBSTITUTION_PASSES):
        todo = [m.group(0) for m in _TOKEN.finditer(text) if m.group(0) not in done]
        if not todo:
            return text
        for token in dict.fromkeys(todo):
            done.add(token)
            text = text.replace(token, _resolve(token[1:-1], variables, environ))
    if _TOKEN.search(text):
        log.warning("variable substitution stopped: tokens remain", extra={"text": text})
    return text


def _resolve(name: str, variables: Mapping[str, str], environ: Mapping[str, str]) -> str:
    if name not in variables:
        log.warning("variable not in additionalVariables; using an empty string", extra={"variable": name})
    value = variables.get(name, "")
    if value == value.upper():
        if value.startswith(_OWN_ENV):
            log.warning("variable names one of this process's own settings; using an empty string",
                        extra={"variable": name, "env": value})
            return ""
        if value and value not in environ:
            log.warning("environment variable not set; using an empty string", extra={"variable": name, "env": value})
        value = environ.get(value, "")
    if f"<{name}>" in value:
        log.warning("variable refers to itself; left unexpanded", extra={"variable": name})
    return value


def parse_headers(lines: list[str]) -> dict[str, str]:
    """`Name: value` entries split at the first `:`; malformed skipped, values trimmed, later wins."""
    out: dict[str, tuple[str, str]] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if sep and name:
            out[name.lower()] = (name, value.strip())
    return dict(out.values())


def join_url(server_url: str, path: str) -> str:
    """server-url without trailing `/` + `/` + path without leading `/` (plumbing's rule)."""
    return server_url.rstrip("/") + "/" + path.lstrip("/")


def _auth(endpoint: Endpoint | None, headers: dict[str, str]) -> httpx.Auth | None:
    """Adds bearer/basic to `headers` or returns AWS4Auth; an explicit Authorization header wins."""
    if endpoint is None or any(k.lower() == "authorization" for k in headers):
        return None
    mode = endpoint.auth_mode
    if mode == "bearer":
        headers["Authorization"] = f"Bearer {endpoint.token}"
    elif mode == "basic":
        pair = f"{endpoint.username or ''}:{endpoint.password or ''}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    elif mode == "aws":
        return AWS4Auth(
            access_id=endpoint.aws_access_key or "",
            secret_key=endpoint.aws_secret_key or "",
            region=endpoint.aws_region or "",
            service=endpoint.aws_service or "",
        )
    return None


def _next_url(response: httpx.Response, dest: BinaryIO, offset: int, length: int) -> str | None:
    """The next page: a `Link: rel="next"`, else a top-level `nextLink` in a JSON page."""
    link = response.links.get("next", {}).get("url")
    if link:
        return _join(response.url, link)
    if "json" not in response.headers.get("content-type", "").lower() or length > MAX_JSON_PAGE_BYTES:
        return None
    try:
        dest.seek(offset)
        doc = orjson.loads(dest.read(length).removeprefix(_BOM))
        dest.seek(offset + length)
    except (OSError, ValueError) as exc:
        log.warning("could not look for nextLink in the page", extra={"error": str(exc)})
        dest.seek(offset + length)
        return None
    value = doc.get("nextLink") if isinstance(doc, dict) else None
    return _join(response.url, value) if isinstance(value, str) and value else None


def _join(base: httpx.URL, link: str) -> str | None:
    try:
        return str(base.join(link))
    except httpx.InvalidURL:
        log.warning("unusable next-page link; stopping", extra={"link": link})
        return None


def _url(url: str) -> httpx.URL:
    try:
        return httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"invalid URL {url!r}: {exc}") from exc


def fetch(
    api: API,
    endpoint: Endpoint,
    variables: Mapping[str, str],
    *,
    dest: BinaryIO,
    retry: RetryPolicy = DEFAULT_RETRY,
    environ: Mapping[str, str] = os.environ,
    timeout: float = 120.0,
    policy: OutboundPolicy = DEFAULT_POLICY,
    budget: ByteBudget | None = None,
    deadline_s: float | None = None,
) -> FetchResult:
    """Call `api` on `endpoint` and stream every page's body into `dest` (a seekable, readable file).

    `<var>` tokens in the path and server-url are substituted first. Raises Unavailable (network,
    5xx, 429 after retries, `deadline_s` passed) or InvalidInput (other 4xx, bad configuration, the
    `budget` of received bytes exceeded, a URL the `policy` refuses).
    """
    endpoint = replace(endpoint, server_url=substitute(endpoint.server_url, variables, environ))
    origin = _url(endpoint.server_url)  # the Secret's credentials belong to this origin only
    first_url = join_url(endpoint.server_url, substitute(api.path, variables, environ))
    base_headers = parse_headers(list(api.headers))
    pages: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    statuses: list[int] = []
    url: str | None = first_url
    with _client(endpoint, timeout) as client:
        call = _Pages(client, (api.verb or "GET").upper(), api.payload.encode() if api.payload else None, base_headers,
                      endpoint, retry, policy, budget, deadline_s)
        while url is not None and len(pages) < MAX_PAGES:
            seen.add(url)
            call.check_deadline(url)
            response, offset, length = _fetch_page(call, url, _same_origin(origin, _url(url)), dest)
            pages.append((offset, length, response.headers.get("content-type", "")))
            statuses.append(response.status_code)
            url = _next_url(response, dest, offset, length)
            if url is not None and url in seen:
                log.warning("next page repeats an earlier one; stopping", extra={"url": url})
                url = None
        if url is not None:
            log.warning("page limit reached; stopping", extra={"pages": len(pages), "url": url})
    total = sum(length for _, length, _ in pages)
    return FetchResult(pages[0][2], first_url, statuses[0], pages, total)


class _Pages:
    """What every page of one fetch shares: the client, the request, the limits."""

    def __init__(self, client: httpx.Client, method: str, payload: bytes | None, headers: dict[str, str],
                 endpoint: Endpoint, retry: RetryPolicy, policy: OutboundPolicy, budget: ByteBudget | None,
                 deadline_s: float | None) -> None:
        self.client, self.method, self.payload, self.headers = client, method, payload, headers
        self.endpoint, self.retry, self.policy, self.budget = endpoint, retry, policy, budget
        self.deadline_s = deadline_s
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s

    def check_deadline(self, url: str) -> None:
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise Unavailable(f"{self.method} {url}: the API did not finish within {self.deadline_s:g} s")

    def take(self, n: int, url: str) -> None:
        if self.budget is not None:
            self.budget.take(n)
        self.check_deadline(url)


def _fetch_page(call: _Pages, url: str, own: bool, dest: BinaryIO) -> tuple[httpx.Response, int, int]:
    """One page (and its redirects) into `dest`; `own`: the page is on the Secret's origin."""
    offset = dest.tell()
    written = 0
    endpoint = call.endpoint

    def build(hop: Hop) -> httpx.Request:
        headers = dict(call.headers) if hop.credentials else _without_credentials(call.headers)
        headers["X-Krateo-TraceId"] = secrets.token_hex(8)
        auth = _auth(endpoint if hop.credentials else None, headers)
        request = call.client.build_request(hop.method, hop.url, headers=headers, content=call.payload if hop.body else None)
        if auth is not None:
            # AWS4Auth signs the final request (host, x-amz-*, content-type, real canonical query).
            request = next(auth.sync_auth_flow(request))
        _debug(endpoint, request)
        return request

    def consume(response: httpx.Response) -> None:
        nonlocal written
        for chunk in response.iter_bytes():  # decoded: a Content-Encoding bomb is counted as it expands
            call.take(len(chunk), url)
            dest.write(chunk)
            written += len(chunk)

    def reset() -> None:
        nonlocal written
        if call.budget is not None:
            call.budget.give_back(written)
        dest.seek(offset)
        dest.truncate()
        written = 0

    response = _send(call.client, build, Hop(call.method, url, own), call.retry, consume=consume, reset=reset,
                     policy=call.policy)
    if endpoint.debug:
        log.info("http response", extra={"url": url, "status": response.status_code, "bytes": written})
    return response, offset, written


def _debug(endpoint: Endpoint | None, request: httpx.Request) -> None:
    if endpoint is not None and endpoint.debug:
        headers = {k: ("<redacted>" if k.lower() == "authorization" else v) for k, v in request.headers.items()}
        log.info("http request", extra={"method": request.method, "url": str(request.url), "headers": headers})


class _ClosingStream(httpx.SyncByteStream):
    """Closes the per-call client with the response, and maps network errors while reading."""

    def __init__(self, inner: httpx.SyncByteStream, client: httpx.Client, where: str) -> None:
        self._inner, self._client, self._where = inner, client, where

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx.HTTPError as exc:
            raise Unavailable(f"{self._where}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._client.close()


def request(
    method: str,
    url: str,
    *,
    endpoint: Endpoint | None = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | str | None = None,
    timeout: float = 30.0,
    stream: bool = False,
    retry: RetryPolicy | None = None,
    policy: OutboundPolicy = DEFAULT_POLICY,
) -> httpx.Response:
    """One call to an absolute `url` with `endpoint`'s TLS, proxy and credentials (same rules as fetch).

    This is the client layer, so callers get an httpx.Response whatever its status (check it).
    stream=False: the body is read and the connection closed. stream=True: read with iter_bytes()
    and close() the response (network errors while reading raise Unavailable). `retry` (default
    none) retries idempotent verbs on network errors, 5xx and 429. A `url` outside the origin of
    `endpoint.server_url` is refused: the endpoint's credentials go nowhere else.
    """
    credentials = endpoint is not None and (endpoint.auth_mode is not None or endpoint.client_cert is not None)
    if credentials and endpoint is not None and not _same_origin(_url(endpoint.server_url), _url(url)):
        raise InvalidInput(f"{method.upper()} {url}: not on the origin of the endpoint's server-url; its credentials stay there",
                           [FieldError("url", "another origin than server-url")])
    base = dict(headers or {})
    data = content.encode() if isinstance(content, str) else content
    where = f"{method.upper()} {url}"
    client = _client(endpoint, timeout)

    def build(hop: Hop) -> httpx.Request:
        hdrs = dict(base) if hop.credentials else _without_credentials(base)
        hdrs.setdefault("X-Krateo-TraceId", secrets.token_hex(8))
        auth = _auth(endpoint if hop.credentials else None, hdrs)
        req = client.build_request(hop.method, hop.url, headers=hdrs, content=data if hop.body else None)
        req = next(auth.sync_auth_flow(req)) if auth is not None else req
        _debug(endpoint, req)
        return req

    try:
        response = _send(client, build, Hop(method.upper(), url), retry, policy=policy)
        if not stream:
            try:
                response.read()
            finally:
                response.close()
    except httpx.HTTPError as exc:
        client.close()
        raise _transport_error(method.upper(), url, exc) from exc
    except BaseException:
        client.close()
        raise
    if not stream:
        client.close()
        return response
    if isinstance(response.stream, httpx.SyncByteStream):
        response.stream = _ClosingStream(response.stream, client, where)
    return response
