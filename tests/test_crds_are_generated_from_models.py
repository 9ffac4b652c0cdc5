"""CRDs and JSON Schemas are generated from the pydantic models, and the samples validate.

Cases:
- crds/ and schemas/ equal what `python -m functions.models.crdgen crds` would write (drift check);
- `--check` exits 1 and names the file when one differs;
- the generated schemas are structural: no $ref, anyOf, const, or additionalProperties: false;
- status keeps unknown fields, DatabaseConfig has the short name dbconf and no status subresource;
- metricType accepts any case, like Krateo;
- every sample CR in crds/examples/ validates against its model (Secrets are v1 with decodable data).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions.models import crdgen
from functions.models.k8s import secret_data
from functions.models.registry import all_kinds

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))


def _walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    out = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append((path, k, v))
            out.extend(_walk(v, f"{path}.{k}"))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_walk(v, f"{path}[{i}]"))
    return out


def test_generated_files_match_the_models() -> None:
    files = crdgen.render(ROOT / "crds", ROOT / "schemas")
    assert crdgen.changed(files) == []
    assert len(files) == 2 * len(all_kinds()) + 1  # + schemas/aicost-event.json (an event payload, not a CR)


def test_check_names_a_file_that_differs(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "crds", tmp_path / "crds")
    shutil.copytree(ROOT / "schemas", tmp_path / "schemas")
    ok = subprocess.run([sys.executable, "-m", "functions.models.crdgen", "--check", "crds"], cwd=tmp_path,
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    target = tmp_path / "crds" / "finops.krateo.io_scraperconfigs.yaml"
    target.write_text(target.read_text() + "# edited by hand\n")
    bad = subprocess.run([sys.executable, "-m", "functions.models.crdgen", "--check", "crds"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert "finops.krateo.io_scraperconfigs.yaml" in bad.stderr


@pytest.mark.parametrize("kind", list(all_kinds()), ids=str)
def test_schemas_are_structural(kind: str) -> None:
    crd = crdgen.crd(all_kinds()[kind])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, key, value in _walk(schema):
        assert key not in ("$ref", "$defs", "anyOf", "const", "title"), f"{key} at {path}"
        if key == "additionalProperties":
            assert isinstance(value, dict), f"additionalProperties: {value} at {path}"
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert "spec" in schema["required"]


def test_status_and_names_follow_krateo() -> None:
    kinds = all_kinds()
    esc = crdgen.crd(kinds["ExporterScraperConfig"])
    version = esc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert version["schema"]["openAPIV3Schema"]["properties"]["status"]["x-kubernetes-preserve-unknown-fields"]
    dbconf = crdgen.crd(kinds["DatabaseConfig"])
    assert dbconf["spec"]["names"]["shortNames"] == ["dbconf"]
    assert "subresources" not in dbconf["spec"]["versions"][0]
    assert dbconf["metadata"]["name"] == "databaseconfigs.finops.krateo.io"


@pytest.mark.parametrize("value,ok", [("cost", True), ("Cost", True), ("RESOURCE", True), ("generic", True),
                                      ("", True), ("costs", False), ("cost|x", False)], ids=repr)
def test_metric_type_accepts_any_case(value: str, ok: bool) -> None:
    crd = crdgen.crd(all_kinds()["ScraperConfig"])
    pattern = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["metricType"]["pattern"]
    assert bool(re.search(pattern, value)) is ok


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs
    for doc in docs:
        if doc["kind"] == "Secret":
            assert doc["apiVersion"] == "v1"
            assert secret_data(doc)
            continue
        all_kinds()[doc["kind"]].model.model_validate(doc)


def test_examples_cover_every_kind() -> None:
    kinds = {d["kind"] for p in EXAMPLES for d in yaml.safe_load_all(p.read_text()) if d}
    assert set(all_kinds()) <= kinds
