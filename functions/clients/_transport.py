"""Low-level HTTP transport for functions.clients.endpoint (private: import from endpoint).

TLS/mTLS context building, the retry policy (backoff, Retry-After) and the send loop with its
error mapping. The rules are documented in functions.clients.endpoint's module docstring.
"""

from __future__ import annotations

import email.utils
import os
import random
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from functions.errors import FieldError, InvalidInput, Unavailable
from functions.logs import get_logger
from functions.models.durations import parse_go_duration

log = get_logger("clients.endpoint")  # same logger as before the split: log records are unchanged

ERROR_BODY_BYTES = 2048
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


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
    """A client with the endpoint's TLS and proxy; redirects followed (as Go does), no overall deadline."""
    verify = ssl_context(config)
    proxy = config.proxy_url if config else None
    try:
        return httpx.Client(
            verify=verify,
            proxy=proxy,
            follow_redirects=True,
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
    if isinstance(exc, httpx.TooManyRedirects):
        return InvalidInput(f"{method} {url}: too many redirects")
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
    build: Callable[[], httpx.Request],
    retry: RetryPolicy | None,
    consume: Callable[[httpx.Response], Any] | None = None,
    reset: Callable[[], None] | None = None,
) -> httpx.Response:
    """Send with retries. With `consume` (fetch), non-2xx raise and the 2xx body is consumed inside the
    retry loop; without it the streamed response is returned whatever its status."""
    attempt = 0
    while True:
        request = _build(build)
        method, url = request.method, str(request.url)
        sent = False
        try:
            response = client.send(request, stream=True)
            sent = True
            delay = _after_response(response, method, url, retry, attempt, consume)
            if delay is None:
                return response
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            delay = _after_error(exc, method, url, retry, attempt, sent)
        if reset is not None:
            reset()
        if retry is not None:
            retry.sleep(delay)
        attempt += 1


def _build(build: Callable[[], httpx.Request]) -> httpx.Request:
    try:
        return build()
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
    log.warning("retrying", extra={"method": method, "url": url, "status": status, "delay": delay})
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
    log.warning("retrying", extra={"method": method, "url": url, "error": str(error), "delay": delay})
    return delay


def _maybe_sent(exc: Exception) -> bool:
    """Whether the server may have seen the request: only connect failures prove it did not."""
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.ProxyError)
