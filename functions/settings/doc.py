"""The table of every function's environment variables, generated from the settings models.

functions.tooling.docgen writes it into docs/settings.md; `python -m functions.settings.doc` prints it.
"""

from __future__ import annotations

from pydantic.fields import FieldInfo

from functions.settings import _EnvSettings
from functions.settings.aicost import AICostSettings
from functions.settings.callers import CallerSettings
from functions.settings.collection import CollectionSettings
from functions.settings.database import DatabaseClientSettings, DbHandlerSettings
from functions.settings.focus import FocusSettings
from functions.settings.inference import InferenceRunnerSettings
from functions.settings.notebooks import NotebookRunSettings, NotebookSettings
from functions.settings.optimizer import OptimizerSettings


def all_settings() -> dict[str, type[_EnvSettings]]:
    """Every function's settings model, by function."""
    return {
        "exporter, scraper": CollectionSettings,
        "focus_ingest": FocusSettings,
        "notebooks (Notebook CRs)": NotebookSettings,
        "dbhandler": DbHandlerSettings,
        "dbhandler (notebook runs)": NotebookRunSettings,
        "aicost, aicost_metrics": AICostSettings,
        "optimizer": OptimizerSettings,
        "inference_runner": InferenceRunnerSettings,
        "every database client": DatabaseClientSettings,
        "every function (callers, request size)": CallerSettings,
    }


def _fields(model: type[_EnvSettings]) -> list[FieldInfo]:
    """The model's own fields first, then those of the shared groups it inherits (pydantic lists those first)."""
    own = model.__dict__.get("__annotations__", {})
    fields = model.model_fields
    return [fields[n] for n in fields if n in own] + [fields[n] for n in fields if n not in own]


def markdown_table() -> str:
    """The environment table, generated from the models."""
    lines = ["| function | variable | default | meaning |", "|---|---|---|---|"]
    for function, model in all_settings().items():
        for f in _fields(model):
            if f.alias:
                default = "" if f.default_factory is not None else f.default
                lines.append(f"| {function} | `{f.alias}` | `{default}` | {f.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
