"""Low-level HTTP transport for functions.clients.endpoint (private: import from endpoint).

TLS/mTLS context building, the retry policy (backoff, Retry-After) and the send loop with its
error mapping and redirects. The rules are documented in functions.clients.endpoint's module docstring.

Redirects are followed here, not by httpx: httpx drops only `Authorization` on a cross-origin redirect,
while a CR's headers may carry other credentials (API keys, cookies), and every hop must pass the
outbound guard (a redirect to the cloud metadata address is refused like a URL naming it).
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from functions.clients.outbound import DEFAULT as DEFAULT_POLICY
from functions.clients.outbound import OutboundPolicy
from functions.errors import FieldError, InvalidInput, Unavailable
from functions.logs import get_logger
from functions.models.durations import parse_go_duration

log = get_logger("clients.endpoint")  # same logger as before the split: log records are unchanged

ERROR_BODY_BYTES = 2048
MAX_REDIRECTS = 20
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Header names that carry credentials (Authorization, API keys, cookies, tokens, AWS signatures):
# they stay on the origin they were configured for.
_CREDENTIAL_HEADER = re.compile(r"auth|key|token|secret|passw|session|cookie|signature|credential|^x-amz-", re.IGNORECASE)


@dataclass(frozen=True)
class Hop:
    """One request of a call: a page's first request, or a redirect. `credentials`: whether the
    endpoint's credentials and credential-like headers may ride along (only on their own origin);
    `body`: whether the payload goes too (a 303, or a 301/302 after POST, turns the call into a GET)."""

    method: str
    url: str
    credentials: bool = True
    body: bool = True


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port; an http -> https upgrade of the same host counts (as in httpx)."""
    port_a, port_b = a.port or _DEFAULT_PORTS.get(a.scheme), b.port or _DEFAULT_PORTS.get(b.scheme)
    if a.host.lower() != b.host.lower():
        return False
    if a.scheme == b.scheme:
        return port_a == port_b
    return a.scheme == "http" and b.scheme == "https" and port_a == 80 and port_b == 443


def without_credentials(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers a request to another origin may carry."""
    return {k: v for k, v in headers.items() if not _CREDENTIAL_HEADER.search(k)}


class TransportConfig(Protocol):
    """What the transport reads from an endpoint (functions.clients.endpoint.Endpoint satisfies it)."""

    @property
    def ca_data(self) -> bytes | None: ...

    @property
    def client_cert(self) -> bytes | None: ...

    @property
    def client_key(self) -> bytes | None: ...

    @property
    def insecure(self) -> bool: ...

    @property
    def proxy_url(self) -> str | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """Transport-level retries: exponential backoff with 50-100 % jitter; `sleep` is injectable for tests."""

    max_retries: int = 5
    base: float = 0.5
    max: float = 10.0
    default_retry_after: float = 2.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based)."""
        delay = min(self.max, self.base * (2.0**attempt))
        return delay * random.uniform(0.5, 1.0)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RetryPolicy:
        """Krateo's knobs: CLIENT_MAX_RETRIES, CLIENT_BASE_BACKOFF and CLIENT_MAX_BACKOFF (Go durations)."""
        try:
            return cls(
                max_retries=int(environ.get("CLIENT_MAX_RETRIES", "5")),
                base=parse_go_duration(environ.get("CLIENT_BASE_BACKOFF", "500ms")),
                max=parse_go_duration(environ.get("CLIENT_MAX_BACKOFF", "10s")),
            )
        except ValueError as exc:
            raise InvalidInput(f"bad CLIENT_* retry setting: {exc}") from exc


def ssl_context(config: TransportConfig | None) -> ssl.SSLContext:
    ctx = httpx.create_ssl_context()
    if config is None:
        return ctx
    try:
        if config.ca_data:
            ctx.load_verify_locations(cadata=config.ca_data.decode("utf-8"))
        if config.client_cert and config.client_key:
            _load_client_cert(ctx, config.client_cert, config.client_key)
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput(f"endpoint: bad certificate data: {exc}") from exc
    if config.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _load_client_cert(ctx: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """ssl loads certificates only from files: private 0600 files in a 0700 directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="finops-tls-") as tmp:
        paths = []
        for name, blob in (("client.crt", cert), ("client.key", key)):
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            paths.append(path)
        ctx.load_cert_chain(certfile=paths[0], keyfile=paths[1])


def build_client(config: TransportConfig | None, timeout: float) -> httpx.Client:
    """A client with the endpoint's TLS and proxy and a timeout on every connect, read and write;
    redirects are followed by `send` (as Go does, with credentials kept on their origin)."""
    verify = ssl_context(config)
    proxy = config.proxy_url if config else None
    try:
        return httpx.Client(
            verify=verify,
            proxy=proxy,
            follow_redirects=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 30.0)),
        )
    except (ValueError, ImportError, httpx.InvalidURL) as exc:
        raise InvalidInput(f"endpoint: bad proxy-url {proxy!r}: {exc}") from exc


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def transport_error(method: str, url: str, exc: Exception) -> InvalidInput | Unavailable:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return InvalidInput(f"{method} {url}: TLS verification failed: {cause}")
        reason = str(getattr(cause, "reason", "") or "") if isinstance(cause, ssl.SSLError) else ""
        if "CERTIFICATE" in reason or "UNKNOWN_CA" in reason:  # the server refused our client certificate
            return InvalidInput(f"{method} {url}: TLS client certificate refused: {cause}")
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError | httpx.InvalidURL | httpx.DecodingError):
        return InvalidInput(f"{method} {url}: {exc}")
    return Unavailable(f"{method} {url}: {type(exc).__name__}: {exc}")


def status_error(method: str, url: str, response: httpx.Response) -> InvalidInput | Unavailable:
    body = b""
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= ERROR_BODY_BYTES:
                break
    except httpx.HTTPError:
        pass
    text = body[:ERROR_BODY_BYTES].decode("utf-8", "replace")
    msg = f"{method} {url} -> {response.status_code}: {text}"
    status = response.status_code
    if status == 429 or status >= 500:
        wait = retry_after(response)
        return Unavailable(msg, retry_after=max(1, round(wait)) if wait is not None else 5)
    return InvalidInput(msg, [FieldError("status", str(status))])


def send(
    client: httpx.Client,
    build: Callable[[Hop], httpx.Request],
    first: Hop,
    retry: RetryPolicy | None,
    consume: Callable[[httpx.Response], Any] | None = None,
    reset: Callable[[], None] | None = None,
    policy: OutboundPolicy = DEFAULT_POLICY,
) -> httpx.Response:
    """Send `first` with retries, following redirects. With `consume` (fetch), non-2xx raise and the 2xx
    body is consumed inside the retry loop; without it the streamed response is returned whatever its
    status. A retry starts again from `first`."""
    attempt = 0
    while True:
        call = _Call(first)
        try:
            response = call.follow(client, build, policy)
            delay = _after_response(response, call.method, call.url, retry, attempt, consume)
            if delay is None:
                return response
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            delay = _after_error(exc, call.method, call.url, retry, attempt, call.sent)
        if reset is not None:
            reset()
        if retry is not None:
            retry.sleep(delay)
        attempt += 1


class _Call:
    """One attempt: the first request and its redirects; `sent` once any server answered."""

    def __init__(self, first: Hop) -> None:
        self.first, self.hop, self.sent = first, first, False
        self.method, self.url = first.method, first.url

    def follow(self, client: httpx.Client, build: Callable[[Hop], httpx.Request], policy: OutboundPolicy) -> httpx.Response:
        origin: httpx.URL | None = None
        for _ in range(MAX_REDIRECTS + 1):
            request = _build(build, self.hop)
            self.method, self.url = request.method, str(request.url)
            if origin is None:
                origin = request.url
            policy.check(request.url, f"{self.method} {self.url}")
            response = client.send(request, stream=True)
            self.sent = True
            target = _redirect(self.hop, request, response, origin)
            if target is None:
                return response
            response.close()
            self.hop = target
        raise InvalidInput(f"{self.first.method} {self.first.url}: more than {MAX_REDIRECTS} redirects")


def _redirect(hop: Hop, request: httpx.Request, response: httpx.Response, origin: httpx.URL) -> Hop | None:
    """The next hop of a redirect (credentials only back on `origin`); None when this is the answer."""
    location = response.headers.get("location")
    if response.status_code not in _REDIRECTS or not location:
        return None
    try:
        target = request.url.join(location)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"{request.method} {request.url}: unusable redirect to {location!r}: {exc}") from exc
    method, body = hop.method, hop.body
    if (response.status_code == 303 and method != "HEAD") or (response.status_code in (301, 302) and method == "POST"):
        method, body = "GET", False
    log.info("following a redirect", extra={"url": loggable(request.url), "status": response.status_code,
                                            "to": loggable(target)})
    return Hop(method, str(target.copy_with(fragment=None)), hop.credentials and same_origin(origin, target), body)


def _build(build: Callable[[Hop], httpx.Request], hop: Hop) -> httpx.Request:
    try:
        return build(hop)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError, ValueError) as exc:
        raise InvalidInput(f"cannot build the request: {exc}") from exc


def _exhausted(retry: RetryPolicy | None, attempt: int) -> bool:
    return attempt >= (retry.max_retries if retry else 0)


def _after_response(
    response: httpx.Response,
    method: str,
    url: str,
    retry: RetryPolicy | None,
    attempt: int,
    consume: Callable[[httpx.Response], Any] | None,
) -> float | None:
    """None: `response` is the answer to return; else it was closed and this is the delay before retrying.

    With `consume`, a 2xx body is consumed here and a final non-2xx raises its status_error."""
    status = response.status_code
    if 200 <= status < 300 and consume is not None:
        try:
            consume(response)
        finally:
            response.close()
        return None
    retryable = status == 429 or status >= 500
    wait = retry_after(response) if retryable else None
    if status == 429 and wait is None and retry:
        wait = retry.default_retry_after
    final = not retryable or method not in _IDEMPOTENT or _exhausted(retry, attempt)
    if retry and wait is not None and wait > retry.max_retry_after:
        final = True
    if final:
        if consume is None:
            return None
        try:
            raise status_error(method, url, response)
        finally:
            response.close()
    response.close()
    delay = wait if wait is not None else retry.backoff(attempt) if retry else 0.0
    log.warning("retrying", extra={"method": method, "url": loggable(url), "status": status, "delay": delay})
    return delay


def _after_error(
    exc: httpx.HTTPError | httpx.InvalidURL,
    method: str,
    url: str,
    retry: RetryPolicy | None,
    attempt: int,
    sent: bool,
) -> float:
    """The delay before retrying after a network error, or raise it mapped (transport_error)."""
    error = transport_error(method, url, exc)
    may_retry = method in _IDEMPOTENT or not (sent or _maybe_sent(exc))
    if isinstance(error, InvalidInput) or not may_retry or _exhausted(retry, attempt) or retry is None:
        raise error from exc
    delay = retry.backoff(attempt)
    log.warning("retrying", extra={"method": method, "url": loggable(url), "error": str(error), "delay": delay})
    return delay


def _maybe_sent(exc: Exception) -> bool:
    """Whether the server may have seen the request: only connect failures prove it did not."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)


def loggable(url: object) -> str:
    """A URL as logs may show it: scheme, host, port and path; never its query (presigned URLs carry
    signatures and tokens there) nor userinfo."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}"
