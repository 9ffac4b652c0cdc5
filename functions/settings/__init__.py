"""Typed settings of every function, read from the environment once and passed down as arguments.

One home for all of them, one module per function family (collection, database, aicost, focus,
notebooks, optimizer, callers), so a variable is declared once and the table of every function's
variables (functions.settings.doc) is generated from the same models. This package imports none of
the layers above it: models, clients, storage and stages all read their settings from here.

Variables several functions read are declared here once, as field groups the models inherit:
`DbHandlerClient` (FINOPS_DBHANDLER_URL), `CrSource` (FINOPS_STATE_DIR, FINOPS_KUBE), `EventSource`
(K_SERVICE) and `EventSink` (K_SINK). A model that gives a shared variable another default or meaning
redeclares the field with the same annotated type (`DbHandlerUrl`, `KnativeService`), which carries
the variable's name, so the name is still written once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, Field, ValidationError

from functions.errors import FieldError, Misconfigured


class _EnvSettings(BaseModel):
    """Fields map to upper-case env vars named in each field's `alias`."""

    model_config = {"populate_by_name": True, "frozen": True}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        return cls._validated(cls._env_values(os.environ if environ is None else environ))

    @classmethod
    def _env_values(cls, env: Mapping[str, str]) -> dict[str, object]:
        """Each field's variable as set, by field name; an empty variable counts as unset (the default applies)."""
        return {name: env[f.alias] for name, f in cls.model_fields.items() if f.alias and env.get(f.alias)}

    @classmethod
    def _validated(cls, values: Mapping[str, object], variables: Mapping[str, str] | None = None) -> Self:
        """The model, or Misconfigured naming each bad value's variable (`variables` overrides a field's alias)."""
        try:
            return cls.model_validate(values)
        except ValidationError as exc:  # a deployment error, answered the same way by every function
            aliases = {name: f.alias for name, f in cls.model_fields.items() if f.alias} | dict(variables or {})
            raise Misconfigured.from_validation(cls.__name__, exc, aliases) from exc

    @classmethod
    def _misconfigured(cls, variable: str, problem: str) -> Misconfigured:
        """A bad value found outside validation (a file that cannot be read, two settings that clash)."""
        return Misconfigured(f"this function's settings are invalid ({cls.__name__}): fix the deployment's environment",
                             [FieldError(variable, problem)])


DbHandlerUrl = Annotated[str, Field(alias="FINOPS_DBHANDLER_URL")]
"""The database handler's base URL, as a field type: a model redeclaring it keeps the variable's name."""

KnativeService = Annotated[str, Field(alias="K_SERVICE")]
"""The Knative service name Knative sets in every function's environment."""


class DbHandlerClient(_EnvSettings):
    """A function that calls the database handler."""

    dbhandler_url: DbHandlerUrl = Field(default="http://dbhandler.finops.svc.cluster.local", description="Base URL of the database-handler function (`/upload`, `/compute`, the embedded engine's `/_sql`).")


class CrSource(_EnvSettings):
    """A function that reads CRs and Secrets: from the local CR store or the Kubernetes API."""

    state_dir: Path = Field(default=Path(".state"), alias="FINOPS_STATE_DIR", description="Local state directory: the CR store and Secrets when FINOPS_KUBE=local, and the exporter's snapshot files.")
    kube: Literal["local", "cluster"] = Field(default="local", alias="FINOPS_KUBE", description="Where CRs and Secrets are read: the local CR store (under FINOPS_STATE_DIR) or the Kubernetes API.")


class EventSource(_EnvSettings):
    """A function that emits CloudEvents: their `source` names the function."""

    source_service: KnativeService = Field(default="", description="Knative service name (event source attribute).")


class EventSink(_EnvSettings):
    """A function that POSTs the CloudEvents it emits to a sink."""

    sink: str = Field(default="", alias="K_SINK", description="Where the function POSTs its CloudEvents (the Broker; set by the SinkBinding): aicost's budget alerts, the optimizer's io.finops.optimization.* events. Empty = none are sent (alerts are still recorded, the optimizer only logs).")
