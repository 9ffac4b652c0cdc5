"""POST CloudEvents (already encoded, binary mode) to a sink: the Broker, from K_SINK.

A function's HTTP reply can carry only one event; the aicost function may raise several budget
alerts at once, so it posts them here. Retried on connection errors, 5xx and 429; after the retries
the caller gets Unavailable (and answers 503, so the triggering request is redelivered).
A token goes with each event (functions.clients.callers.outbound_headers): the local broker's ingress
requires the caller token; a Knative Broker with OIDC on, the OIDC token its SinkBinding mounts.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from functions.clients.callers import outbound_headers
from functions.errors import InvalidInput, Unavailable


def post_event(url: str, headers: Mapping[str, str], body: bytes, retries: int = 3, timeout: float = 10.0) -> None:
    """Deliver one event; 2xx is success, 4xx final (InvalidInput), anything else retried."""
    last = ""
    sent = {**dict(headers), **outbound_headers(sink=True)}
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(2.0, 0.2 * 2 ** (attempt - 1)))
        try:
            resp = httpx.post(url, headers=sent, content=body, timeout=timeout)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if resp.status_code < 300:
            return
        if resp.status_code >= 500 or resp.status_code == 429:
            last = f"HTTP {resp.status_code}"
            continue
        raise InvalidInput(f"event sink {url} refused the event: HTTP {resp.status_code}: {resp.text[:500]}")
    raise Unavailable(f"event sink {url} unreachable after {retries + 1} attempts: {last}")
