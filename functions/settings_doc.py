"""The README's table of every function's environment variables, generated from the settings models.

A module of its own (outside the layers) because it gathers settings from models and stages alike:
`python -m functions.settings_doc` prints the table; a test keeps the README in step with it.
"""

from __future__ import annotations

from functions.settings import CollectionSettings, DatabaseClientSettings, _EnvSettings


def all_settings() -> dict[str, type[_EnvSettings]]:
    """Every function's settings model, by function (imported here, late: they import this module)."""
    from functions.clients.callers import CallerSettings
    from functions.models.aicost import AICostSettings
    from functions.models.focus import FocusSettings
    from functions.models.notebooks import NotebookSettings as NotebookCrSettings
    from functions.models.optimizer import OptimizerSettings
    from functions.stages.dbhandler.sandbox import NotebookSettings as NotebookRunSettings

    return {
        "exporter, scraper": CollectionSettings,
        "focus_ingest": FocusSettings,
        "notebooks (Notebook CRs)": NotebookCrSettings,
        "dbhandler (notebook runs)": NotebookRunSettings,
        "aicost, aicost_metrics": AICostSettings,
        "optimizer": OptimizerSettings,
        "every database client": DatabaseClientSettings,
        "every function (callers, request size)": CallerSettings,
    }


def markdown_table() -> str:
    """The README's environment table, generated from the models."""
    lines = ["| function | variable | default | meaning |", "|---|---|---|---|"]
    for function, model in all_settings().items():
        for f in model.model_fields.values():
            if f.alias:
                default = "" if f.default_factory is not None else f.default
                lines.append(f"| {function} | `{f.alias}` | `{default}` | {f.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
