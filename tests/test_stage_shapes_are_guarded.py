"""Every stage reads the same, and stays so.

Cases: each stage module's `__all__` is exactly the names below (a change to a stage's public
surface is a decision, made here), every name in it exists and the entry point is `handle`;
`functions.main.TARGETS` is exactly the functions-framework targets main defines, and each one is
a thin target whose body calls the gate (`gate.serve`), so none answers without the gate.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from functions import main

EXPORTS = {
    "functions.stages.exporter": ["handle", "load_config", "serve"],
    "functions.stages.scraper": ["handle", "load_plan"],
    "functions.stages.aicost_ingest": ["database", "decode", "focus_row", "handle", "sink_publisher"],
    "functions.stages.aicost_metrics": ["BURN_METRIC", "COST_METRIC", "EVENTS_METRIC", "handle"],
    "functions.stages.focus_ingest": ["handle", "row"],
    "functions.stages.notebooks": ["handle"],
    "functions.stages.inference_runner": ["handle"],
    "functions.stages.forecaster": ["flags", "forecast", "server"],  # the submodules need the forecast extra
    "functions.stages.dbhandler.router": ["check_credentials", "current_settings", "dispatch", "engine", "handle"],
    "functions.stages.optimizer": ["admission", "label", "optimize"],
    "functions.stages.optimizer.admission": ["fail_open", "handle"],
    "functions.stages.optimizer.label": ["handle"],
    "functions.stages.optimizer.optimize": ["handle"],
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_each_stage_exports_exactly_its_names(name: str) -> None:
    module = importlib.import_module(name)
    assert sorted(module.__all__) == EXPORTS[name], f"{name}.__all__ changed: update EXPORTS if that was meant"
    for export in module.__all__:
        assert hasattr(module, export) or importlib.util.find_spec(f"{name}.{export}"), f"{name}.{export} missing"
    if "handle" in module.__all__:
        assert inspect.isfunction(module.handle)


def test_every_stage_module_is_listed() -> None:
    stages = Path(main.__file__).parent / "stages"
    entry = {f"functions.stages.{p.stem}" for p in stages.glob("*.py") if p.stem != "__init__"}
    assert entry <= set(EXPORTS), f"stage modules without a guarded __all__: {sorted(entry - set(EXPORTS))}"


def test_targets_are_exactly_mains_functions_framework_targets() -> None:
    tree = ast.parse(Path(main.__file__).read_text())
    decorated = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)
                 and any(ast.unparse(d) == "functions_framework.http" for d in n.decorator_list)]
    assert sorted(decorated) == sorted(main.TARGETS) and len(set(main.TARGETS)) == len(main.TARGETS)
    for name in decorated:
        body = ast.unparse(next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name))
        assert "gate.serve(request, " + repr(name) in body.replace('"', "'"), f"{name} does not pass the gate"
