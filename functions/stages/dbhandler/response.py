"""The database handler's one response type (every route answers with it; errors become one through
functions.errors.answer, the one error table) and its one way to read a request header."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

JSON = "application/json"


@dataclass
class Response:
    """A framework-free answer: status, body (bytes as is, anything else JSON-encoded), headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = JSON

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body)


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A request header by name, any case (WSGI dicts and plain dicts alike)."""
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value
