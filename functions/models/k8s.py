"""Kubernetes building blocks shared by every CR model: metadata, references, conditions, Secrets."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from functions.models.names import Namespace, ObjectName


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields refused (named in the error)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ObjectMeta(BaseModel):
    """The part of metadata we read; everything else is kept as-is. Name and namespace follow
    Kubernetes' DNS-1123 rules, checked here too: they become file names and labels."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    name: ObjectName = Field(description="Object name (an RFC 1123 subdomain).")
    namespace: Namespace = Field(default="default", description="Object namespace (an RFC 1123 label).")
    uid: str | None = Field(default=None, description="Unique id assigned by the API server.")
    generation: int | None = Field(default=None, description="Spec generation.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations.")


class ObjectRef(CamelModel):
    name: ObjectName = Field(description="Name of the referenced object.")
    namespace: Namespace = Field(description="Namespace of the referenced object.")


class SecretKeySelector(CamelModel):
    name: ObjectName = Field(description="Secret name.")
    namespace: Namespace = Field(description="Secret namespace.")
    key: str = Field(description="Key inside the Secret's data.")


class Condition(CamelModel):
    type: Literal["Ready", "Synced", "Degraded"] = Field(
        description="Condition type (Krateo style); Degraded=True (RowsRejected) when the last cycle rejected rows.")
    status: Literal["True", "False", "Unknown"] = Field(description="Condition status.")
    last_transition_time: str = Field(description="RFC3339 time of the last change.")
    reason: str = Field(description="CamelCase reason: Available, Unavailable, Creating, Deleting, ReconcileSuccess, ReconcileError, RowsRejected, AllRowsStored.")
    message: str | None = Field(default=None, description="Human-readable detail.")


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions(old: list[Mapping[str, Any]] | None, ready: bool, ready_reason: str, synced: bool,
               synced_reason: str, message: str, now: str) -> list[dict[str, Any]]:
    """Ready and Synced (Krateo style), keeping lastTransitionTime when a condition's status did not change.

    Shared by the bridge (CR validity) and the functions (outcome of a cycle), so both flip the same way.
    """
    previous = {str(c.get("type")): c for c in old or [] if isinstance(c, Mapping)}
    out = []
    for type_, ok, reason in (("Ready", ready, ready_reason), ("Synced", synced, synced_reason)):
        status = "True" if ok else "False"
        before = previous.get(type_, {})
        since = str(before.get("lastTransitionTime") or now) if before.get("status") == status else now
        cond = Condition.model_validate({"type": type_, "status": status, "lastTransitionTime": since,
                                         "reason": reason, "message": message})
        out.append(cond.model_dump(by_alias=True))
    # Conditions of other types (Degraded, written by the cycle that counted rows) are not ours to drop.
    out += [dict(c) for t, c in previous.items() if t not in ("Ready", "Synced")]
    return out


def degraded_condition(old: list[Mapping[str, Any]] | None, rejected: str | None, now: str) -> dict[str, Any]:
    """`Degraded`: True (RowsRejected, the counts and first reasons in the message) when the last cycle
    kept some rows out, False (AllRowsStored) otherwise. Ready stays True either way: the cycle worked."""
    previous = {str(c.get("type")): c for c in old or [] if isinstance(c, Mapping)}.get("Degraded", {})
    status = "True" if rejected else "False"
    since = str(previous.get("lastTransitionTime") or now) if previous.get("status") == status else now
    cond = Condition.model_validate({
        "type": "Degraded", "status": status, "lastTransitionTime": since,
        "reason": "RowsRejected" if rejected else "AllRowsStored", "message": rejected or "every row received was stored"})
    return cond.model_dump(by_alias=True)


def rejected_summary(rejected: int, received: int, reasons: Sequence[Mapping[str, Any]], limit: int = 3) -> str | None:
    """One line for people: how many rows of how many were kept out, and the first reasons (row,
    column, value, why); None when nothing was rejected."""
    if not rejected:
        return None
    first = "; ".join(f"row {r.get('row')}: {r.get('msg')}" for r in list(reasons)[:limit])
    more = f" (first: {first})" if first else ""
    return f"{rejected} of {received} rows rejected{more}"


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    """A Secret's values as text: `data` base64-decoded, `stringData` overlaid (as the API server does)."""
    out: dict[str, str] = {}
    for key, value in (secret.get("data") or {}).items():
        try:
            out[key] = base64.b64decode(str(value), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"Secret data[{key!r}] is not base64-encoded UTF-8") from exc
    for key, value in (secret.get("stringData") or {}).items():
        out[key] = str(value)
    return out
