"""A reference to one CR (`<Kind>/<namespace>/<name>`), read from whatever event names it.

Every ConfigRef is checked when it is made (kind, namespace and name by Kubernetes' rules,
functions.models.names): the names come from events and URLs anyone may send, and become file
paths and status writes, so a ref naming `/some/dir`, `../../x` or a 300-character name is refused as
InvalidInput (a 400 naming the field) before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from functions.errors import FieldError, InvalidInput
from functions.models.names import kind_problem, label_problem, subdomain_problem


@dataclass(frozen=True)
class ConfigRef:
    kind: str
    namespace: str
    name: str

    def __post_init__(self) -> None:
        errors = [FieldError(loc, problem) for loc, problem in (
            ("kind", kind_problem(self.kind)), ("namespace", label_problem(self.namespace)),
            ("name", subdomain_problem(self.name))) if problem]
        if errors:
            detail = "; ".join(f"{e.loc} {e.msg}" for e in errors)
            raise InvalidInput(f"not a valid config reference: {detail}", errors)

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, text: str, default_kind: str = "", default_namespace: str = "default") -> ConfigRef:
        """`Kind/ns/name`, `Kind/name` or `ns/name` (with default_kind).

        Empty parts are errors, not skipped: `//etc/x` is not `etc/x`."""
        if not isinstance(text, str):
            raise InvalidInput("not a config reference", [FieldError("config", "expected a Kind/namespace/name string")])
        parts = text.strip().split("/")
        if len(parts) == 3:
            return cls(*parts)
        if len(parts) == 2 and default_kind:
            return cls(default_kind, parts[0], parts[1])
        if len(parts) == 2:
            return cls(parts[0], default_namespace, parts[1])
        shown = text if len(text) <= 80 else f"{text[:80]}… ({len(text)} characters)"
        raise InvalidInput(f"not a config reference: {shown!r}", [FieldError("config", "expected Kind/namespace/name")])

    @classmethod
    def from_event(cls, subject: str | None, data: Any) -> ConfigRef:
        """PingSource data {kind, namespace, name}; CR events carry the CR (or a subject); others {config}."""
        if isinstance(data, dict):
            if isinstance(data.get("config"), str):
                return cls.parse(data["config"])
            if {"kind", "name"} <= data.keys() and isinstance(data.get("name"), str):
                return cls(_text(data["kind"], "kind"), _text(data.get("namespace") or "default", "namespace"), data["name"])
            meta = data.get("metadata")
            if isinstance(meta, dict) and "kind" in data and meta.get("name"):
                return cls(_text(data["kind"], "kind"), _text(meta.get("namespace") or "default", "metadata.namespace"),
                           _text(meta["name"], "metadata.name"))
        if subject:
            return cls.parse(subject)
        raise InvalidInput("the event names no config", [FieldError("data", "expected {kind, namespace, name}, {config} or a CR")])


def _text(value: Any, loc: str) -> str:
    """A name from an event must be a string: `str()` of a list or number would make up a name."""
    if not isinstance(value, str):
        raise InvalidInput(f"not a valid config reference: {loc} must be a string",
                           [FieldError(loc, f"must be a string, got {type(value).__name__}")])
    return value
