"""A reference to one CR (`<Kind>/<namespace>/<name>`), read from whatever event names it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.errors import FieldError, InvalidInput


@dataclass(frozen=True)
class ConfigRef:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str, default_kind: str = "", default_namespace: str = "default") -> ConfigRef:
        """`Kind/ns/name`, `Kind/name` or `ns/name` (with default_kind)."""
        parts = [p for p in text.strip().split("/") if p]
        if len(parts) == 3:
            return cls(*parts)
        if len(parts) == 2 and default_kind:
            return cls(default_kind, parts[0], parts[1])
        if len(parts) == 2:
            return cls(parts[0], default_namespace, parts[1])
        raise InvalidInput(f"not a config reference: {text!r}", [FieldError("config", "expected Kind/namespace/name")])

    @classmethod
    def from_event(cls, subject: str | None, data: Any) -> ConfigRef:
        """PingSource data {kind, namespace, name}; CR events carry the CR (or a subject); others {config}."""
        if isinstance(data, dict):
            if isinstance(data.get("config"), str):
                return cls.parse(data["config"])
            if {"kind", "name"} <= data.keys() and isinstance(data.get("name"), str):
                return cls(str(data["kind"]), str(data.get("namespace") or "default"), data["name"])
            meta = data.get("metadata")
            if isinstance(meta, dict) and "kind" in data and meta.get("name"):
                return cls(str(data["kind"]), str(meta.get("namespace") or "default"), str(meta["name"]))
        if subject:
            return cls.parse(subject)
        raise InvalidInput("the event names no config", [FieldError("data", "expected {kind, namespace, name}, {config} or a CR")])
