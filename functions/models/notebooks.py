"""Notebook (`finops.krateo.io/v1`, Krateo's finops-database-handler-uploader CRD): Python code stored in the database handler.

`spec.type` is `inline` (the code is `spec.inline`) or `api` (the code is the body of `spec.api`,
called through its endpoint Secret), any case, as Krateo's pattern allows. The notebook's name in
the handler is `metadata.name`; like Krateo, the namespace is not part of it.
Also here: the Krateo-style status conditions our CR-driven functions answer with (focus ingest,
notebooks), so the bridge can write them into the CR's status as they are.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from functions.errors import FinopsError
from functions.models.crs import API, ConditionedStatus, _Resource
from functions.models.k8s import CamelModel

NotebookType = Annotated[
    Literal["inline", "api"],
    WithJsonSchema({"type": "string", "pattern": "^([iI][nN][lL][iI][nN][eE]|[aA][pP][iI])$"}),
]
"""Stored lower-case; the CRD takes any case (Krateo's pattern), so no enum there."""


class NotebookSpec(CamelModel):
    type: NotebookType = Field(
        description="Where the code comes from: inline (spec.inline) or api (spec.api); any case.",
    )
    inline: str | None = Field(default=None, description="The notebook's Python source (type inline).")
    api: API | None = Field(default=None, description="Where to GET the source (type api): path, verb, headers, payload, endpointRef Secret.")

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @model_validator(mode="after")
    def _source_given(self) -> NotebookSpec:
        if self.type == "inline" and self.inline is None:
            raise ValueError("type inline needs spec.inline (the code)")
        if self.type == "api" and self.api is None:
            raise ValueError("type api needs spec.api (where to fetch the code)")
        return self


class Notebook(_Resource):
    KIND: ClassVar[str] = "Notebook"
    PLURAL: ClassVar[str] = "notebooks"
    kind: Literal["Notebook"] = Field(default="Notebook", description="Kind.")
    spec: NotebookSpec = Field(description="The notebook's code, inline or fetched from an API.")
    status: ConditionedStatus | None = Field(default=None, description="Observed state.")


NOTEBOOK_KINDS: dict[str, type[_Resource]] = {Notebook.KIND: Notebook}


# ---- status conditions (shared by the CR-driven functions) -------------------------------------


def conditions(ok: bool, reason: str, message: str, now: datetime | None = None) -> list[dict[str, str]]:
    """Krateo-style Ready and Synced conditions (provider-runtime's ConditionedStatus) for one reconcile's outcome."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = "True" if ok else "False"
    ready_reason = "Available" if ok else "Unavailable"
    return [
        {"type": "Ready", "status": status, "lastTransitionTime": stamp, "reason": ready_reason, "message": message},
        {"type": "Synced", "status": status, "lastTransitionTime": stamp, "reason": reason, "message": message},
    ]


class ReconcileFailed(FinopsError):
    """A failure that also carries the CR status the bridge should write (answered as its cause)."""

    def __init__(self, cause: FinopsError, ref: str) -> None:
        super().__init__(cause.message, list(cause.errors), cause.details)
        self.cause = cause
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in cause.errors)
        self.conditions = conditions(False, "ReconcileError", f"{cause.message}{' (' + detail + ')' if detail else ''}")
        self.ref = ref

    def body(self) -> dict[str, Any]:
        return super().body() | {"resource": self.ref, "status": {"conditions": self.conditions}}

    def answer_as(self) -> FinopsError:
        return self.cause
