"""The one list of CR model registries: crdgen, the CR store and the Kubernetes reader all read it.

Later issues add their `<NAME>_KINDS` dicts to MODEL_REGISTRIES (as `module:attribute` strings, so
this module imports nothing heavy and cannot form an import cycle).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

MODEL_REGISTRIES: tuple[str, ...] = ("functions.models.crs:COLLECTION_KINDS", "functions.models.aicost:AICOST_KINDS",
                                   "functions.models.focus:FOCUS_KINDS", "functions.models.notebooks:NOTEBOOK_KINDS",
                                   "functions.models.inference:INFERENCE_KINDS",)

_SHORT_NAMES: dict[str, tuple[str, ...]] = {"DatabaseConfig": ("dbconf",)}
"""Krateo's short names (its DatabaseConfig CRD declares `dbconf`); a model may also declare a SHORT_NAMES ClassVar."""


@dataclass(frozen=True)
class KindInfo:
    """Everything the API server needs to know about one kind, read from its model."""

    kind: str
    group: str
    version: str
    plural: str
    model: type[BaseModel]
    short_names: tuple[str, ...] = ()

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def has_status(self) -> bool:
        return "status" in self.model.model_fields


def _info(kind: str, model: Any) -> KindInfo:
    api_version = str(model.model_fields["api_version"].default)
    group, _, version = api_version.partition("/")
    shorts = tuple(getattr(model, "SHORT_NAMES", ()) or _SHORT_NAMES.get(kind, ()))
    return KindInfo(kind, group, version, str(model.PLURAL), model, shorts)


@lru_cache(maxsize=1)
def all_kinds() -> dict[str, KindInfo]:
    """Every CR kind of every registry, by kind name."""
    out: dict[str, KindInfo] = {}
    for entry in MODEL_REGISTRIES:
        module, _, attr = entry.partition(":")
        for kind, model in getattr(importlib.import_module(module), attr).items():
            out[kind] = _info(kind, model)
    return out


def resolve_kind(name: str) -> KindInfo | None:
    """A kind by name, plural, singular or short name, case-insensitive (like kubectl)."""
    low = name.strip().lower()
    for info in all_kinds().values():
        if low in (info.kind.lower(), info.plural, info.singular, *info.short_names):
            return info
    return None
