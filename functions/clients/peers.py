"""HTTP calls between our own functions: read an exporter snapshot, upload parts to the database handler.

Upload parts are retried with backoff on connection errors, 5xx and 429 (a failed part is never
dropped); after the retries the caller gets Unavailable and the whole cycle is retried by Knative,
which is safe because parts and commits are idempotent.
"""

from __future__ import annotations

import base64
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import httpx
import orjson

from functions.errors import Conflict, FieldError, InvalidInput, Unauthorized, Unavailable
from functions.logs import get_logger

log = get_logger("clients.peers")


@dataclass(frozen=True)
class Download:
    content_type: str
    headers: Mapping[str, str]
    bytes: int


def download(url: str, dest: BinaryIO, accept: str, timeout: float = 300.0,
             headers: Mapping[str, str] | None = None) -> Download:
    """Stream a GET into dest (a file), so memory stays bounded whatever the size. `headers`: extra
    request headers (the caller token our exporter's GET /metrics requires)."""
    try:
        with httpx.stream("GET", url, headers={"Accept": accept, **dict(headers or {})}, timeout=timeout) as resp:
            if resp.status_code >= 500 or resp.status_code == 429:
                raise Unavailable(f"GET {url}: HTTP {resp.status_code}")
            if resp.status_code >= 400:
                raise InvalidInput(f"GET {url}: HTTP {resp.status_code}: {resp.read()[:2048]!r}")
            n = 0
            for chunk in resp.iter_bytes(1 << 20):
                dest.write(chunk)
                n += len(chunk)
            dest.flush()
            dest.seek(0)
            return Download(resp.headers.get("content-type", ""), dict(resp.headers), n)
    except httpx.HTTPError as exc:
        raise Unavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class UploadTarget:
    url: str
    username: str
    password: str

    def auth_header(self) -> str:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def upload_part(
    target: UploadTarget,
    params: Mapping[str, str],
    body: bytes,
    content_type: str,
    retries: int = 5,
    base_delay: float = 0.5,
    timeout: float = 600.0,
    client: httpx.Client | None = None,
    path: str = "/upload",
) -> dict[str, Any]:
    """POST one part to /upload; retried until accepted or out of retries (then Unavailable).

    `client`: one kept-alive client for every part of a run (no new connection per part).
    """
    url = target.url.rstrip("/") + path
    headers = {"Content-Type": content_type, "Authorization": target.auth_header()}
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(10.0, base_delay * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            log.warning("upload part retry", extra={"attempt": attempt, "delay": round(delay, 2), "reason": last, **params})
            time.sleep(delay)
        try:
            post = client.post if client is not None else httpx.post
            resp = post(url, params=dict(params), content=body, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        answer = _json(resp)
        if resp.status_code == 200:
            return answer
        if resp.status_code >= 500 or resp.status_code == 429:
            last = f"HTTP {resp.status_code}: {answer.get('error', '')}"
            continue
        _raise_final(resp.status_code, answer)
    raise Unavailable(f"upload to {url} failed after {retries + 1} attempts: {last}")


def _json(resp: httpx.Response) -> dict[str, Any]:
    try:
        value = orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return {"error": resp.text[:2048]}
    return value if isinstance(value, dict) else {"result": value}


def _raise_final(status: int, answer: dict[str, Any]) -> None:
    message = str(answer.get("error") or answer.get("message") or f"HTTP {status}")
    errors = [FieldError(str(e.get("loc", e.get("row", ""))), str(e.get("msg", ""))) for e in answer.get("errors", []) if isinstance(e, dict)]
    if status == 401:
        raise Unauthorized(f"database handler refused the credentials: {message}")
    if status == 409:
        raise Conflict(message, errors)
    raise InvalidInput(f"database handler refused the upload: {message}", errors)
