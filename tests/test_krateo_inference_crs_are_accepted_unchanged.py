"""Krateo's InferenceConfig and InferenceRun (ai.krateo.io/v1) are ours, field for field.

Krateo's own CRs (krateoplatformops/kserve-controller testdata/, vendored unchanged in
tests/data/krateo-kserve/) validate with our models AND against the openAPIV3Schema of our generated
CRDs, with no field the API server would prune. Cases:
- every document of the five files: model, CRD schema, nothing pruned; a model round trip keeps the
  spec (free storage providers, the custom `s3` one included) and `parameters` absent vs {} apart;
- the CRDs say what Krateo's say (api/v1/inferenceconfig_types.go, inferencerun_types.go, crds/*.yaml):
  group, plural, namespaced, status subresource, no short names; spec required sets; the
  autoDeletePolicy enum; the schedule pattern verbatim; storage maps of free objects; contract bytes;
- refused by both the model and the CRD: a missing required field, an unknown autoDeletePolicy, a
  timeoutSeconds given as text, a non-string parameter, a schedule the pattern does not take;
  the model alone also refuses a `krateo` provider that is not {api: ...} (the runner reads it);
- a status as Krateo's controller writes it (conditions, base64 contract, jobStatus) validates, the
  contract decoded to its bytes and written back as the same base64; text that is not base64 is refused;
- the examples (crds/examples/inference*.yaml) are our forecaster's config and a scheduled run.
"""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import ValidationError

from functions.models import crdgen
from functions.models.inference import SCHEDULE_PATTERN, InferenceConfig, InferenceRun
from functions.models.registry import all_kinds

ROOT = Path(__file__).resolve().parent.parent
KRATEO = ROOT / "tests" / "data" / "krateo-kserve" / "testdata"
FILES = ["testdata-triton.yaml", "testdata-sklearn.yaml", "testdata-custom.yaml", "testdata-iris-autodelete.yaml",
         "testdata-iris-schedule.yaml"]
# krateoplatformops/kserve-controller api/v1/inferencerun_types.go, the kubebuilder Pattern marker
KRATEO_SCHEDULE_PATTERN = r"(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((((\d+,)+\d+|(\d+(\/|-)\d+)|\d+|\*) ?){5,7})"


def _documents() -> list[Any]:
    out = []
    for name in FILES:
        for i, doc in enumerate(d for d in yaml.safe_load_all((KRATEO / name).read_text(encoding="utf-8")) if d):
            out.append(pytest.param(doc, id=f"{name}#{i + 1}-{doc['kind']}"))
    return out


def _schema(kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the CRD file we ship (crds/), not a fresh render: what a cluster gets."""
    info = all_kinds()[kind]
    crd = yaml.safe_load((ROOT / "crds" / f"{info.group}_{info.plural}.yaml").read_text(encoding="utf-8"))
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _schema_errors(doc: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(_schema(str(doc["kind"])))
    return [f"{'.'.join(str(p) for p in e.path)}: {e.message}" for e in validator.iter_errors(doc)]


def _pruned(schema: dict[str, Any], data: Any, path: str = "") -> list[str]:
    """Paths the structural schema does not declare: the API server would drop them silently."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(data, dict) and "properties" in schema:
        for key, value in data.items():
            where = f"{path}.{key}" if path else key
            if key in schema["properties"]:
                out += _pruned(schema["properties"][key], value, where)
            elif path or key not in ("apiVersion", "kind", "metadata"):
                out.append(where)
    elif isinstance(data, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in data.items():
            out += _pruned(schema["additionalProperties"], value, f"{path}.{key}")
    elif isinstance(data, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(data):
            out += _pruned(schema["items"], item, f"{path}[{i}]")
    return out


def test_the_vendored_files_hold_only_inference_crs() -> None:
    kinds = [d["kind"] for name in FILES for d in yaml.safe_load_all((KRATEO / name).read_text(encoding="utf-8")) if d]
    assert kinds == ["InferenceConfig", "InferenceRun"] * len(FILES)


@pytest.mark.parametrize("doc", _documents())
def test_krateo_crs_validate_with_the_models_and_the_crds(doc: dict[str, Any]) -> None:
    model = all_kinds()[doc["kind"]].model.model_validate(doc)
    assert _schema_errors(doc) == []
    assert _pruned(_schema(doc["kind"]), doc) == []
    dumped = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    for key, value in doc["spec"].items():  # every field as written (the model adds only defaults)
        assert dumped["spec"][key] == value, key
    assert dumped["metadata"]["name"] == doc["metadata"]["name"]


def test_a_custom_storage_provider_is_kept_as_written() -> None:
    config = next(d for d in yaml.safe_load_all((KRATEO / "testdata-custom.yaml").read_text()) if d["kind"] == "InferenceConfig")
    model = InferenceConfig.model_validate(config)
    assert model.spec.storage.output == {"custom": {"s3": {"endpointRef": {"name": "finops-database-handler-endpoint",
                                                                          "namespace": "kserve-controller-system"},
                                                          "moreCustom": "data"}}}
    assert model.spec.storage.krateo("output") is None
    krateo = model.spec.storage.krateo("input")
    assert krateo is not None and (krateo.api.path, krateo.api.verb) == ("/compute/tritoninput", "POST")
    assert krateo.api.endpoint_ref is not None and krateo.api.endpoint_ref.name == "finops-database-handler-endpoint"


def test_parameters_absent_and_empty_stay_apart() -> None:
    run = next(d for d in yaml.safe_load_all((KRATEO / "testdata-sklearn.yaml").read_text()) if d["kind"] == "InferenceRun")
    without = copy.deepcopy(run)
    del without["spec"]["parameters"]
    empty = copy.deepcopy(run)
    empty["spec"]["parameters"] = {}
    assert "parameters" not in InferenceRun.model_validate(without).model_dump(by_alias=True, exclude_none=True)["spec"]
    assert InferenceRun.model_validate(empty).model_dump(by_alias=True, exclude_none=True)["spec"]["parameters"] == {}


def test_the_crds_say_what_krateos_say() -> None:
    kinds = all_kinds()
    config, run = crdgen.crd(kinds["InferenceConfig"]), crdgen.crd(kinds["InferenceRun"])
    for crd, plural in ((config, "inferenceconfigs"), (run, "inferenceruns")):
        assert crd["metadata"]["name"] == f"{plural}.ai.krateo.io"
        assert crd["spec"]["group"] == "ai.krateo.io" and crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["plural"] == plural and "shortNames" not in crd["spec"]["names"]  # Krateo has none
        (version,) = crd["spec"]["versions"]
        assert version["name"] == "v1" and version["subresources"] == {"status": {}}
    config_spec = _schema("InferenceConfig")["properties"]["spec"]
    assert set(config_spec["required"]) == {"autoDeletePolicy", "image", "storage"}
    assert config_spec["properties"]["autoDeletePolicy"]["enum"] == ["None", "DeleteOnSuccess", "DeleteOnCompletion"]
    assert "required" not in config_spec["properties"]["kserve"]
    assert set(config_spec["properties"]["credentialsRef"]["required"]) == {"name", "namespace"}
    for side in ("input", "output"):
        storage = config_spec["properties"]["storage"]["properties"][side]
        assert storage["additionalProperties"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    run_spec = _schema("InferenceRun")["properties"]["spec"]
    assert set(run_spec["required"]) == {"configRef", "timeoutSeconds"}
    assert set(run_spec["properties"]["configRef"]["required"]) == {"name", "namespace"}
    assert run_spec["properties"]["schedule"]["pattern"] == KRATEO_SCHEDULE_PATTERN == SCHEDULE_PATTERN
    assert run_spec["properties"]["timeoutSeconds"]["type"] == "integer"
    assert run_spec["properties"]["parameters"]["additionalProperties"] == {"type": "string"}
    status = _schema("InferenceRun")["properties"]["status"]["properties"]
    assert status["contract"]["format"] == "byte"
    assert {"kind", "apiVersion", "namespace", "name", "uid"} <= set(status["jobStatus"]["properties"])


def _krateo(name: str, kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in yaml.safe_load_all((KRATEO / name).read_text()) if d["kind"] == kind))


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    node = doc
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


_DELETE = object()
REFUSED = [
    pytest.param("InferenceConfig", "spec.autoDeletePolicy", _DELETE, id="config-without-autoDeletePolicy"),
    pytest.param("InferenceConfig", "spec.image", _DELETE, id="config-without-image"),
    pytest.param("InferenceConfig", "spec.storage", _DELETE, id="config-without-storage"),
    pytest.param("InferenceConfig", "spec.autoDeletePolicy", "Always", id="unknown-autoDeletePolicy"),
    pytest.param("InferenceConfig", "spec.storage.input.krateo", "text", id="provider-not-an-object"),
    pytest.param("InferenceRun", "spec.configRef", _DELETE, id="run-without-configRef"),
    pytest.param("InferenceRun", "spec.timeoutSeconds", _DELETE, id="run-without-timeoutSeconds"),
    pytest.param("InferenceRun", "spec.timeoutSeconds", "3600", id="timeout-as-text"),
    pytest.param("InferenceRun", "spec.parameters.input_data_length", 512, id="parameter-not-a-string"),
    pytest.param("InferenceRun", "spec.schedule", "every hour", id="schedule-not-cron"),
]


@pytest.mark.parametrize(("kind", "path", "value"), REFUSED)
def test_the_model_and_the_crd_refuse_the_same_mistakes(kind: str, path: str, value: Any) -> None:
    doc = _set(_krateo("testdata-triton.yaml", kind), path, value)
    with pytest.raises(ValidationError) as caught:
        all_kinds()[kind].model.model_validate(doc)
    assert any(".".join(str(p) for p in e["loc"]).startswith(path.rsplit(".", 1)[0]) for e in caught.value.errors())
    assert _schema_errors(doc), f"the CRD would accept {path}={value!r}"


@pytest.mark.parametrize("schedule", ["1 * * * *", "*/15 * * * *", "0 0 1,15 * *", "@hourly", "@annually",
                                      "0 0 * * * *", "0 0 1 1 * 2030"], ids=str)
def test_every_schedule_krateos_pattern_takes_is_a_valid_cr(schedule: str) -> None:
    doc = _set(_krateo("testdata-iris-schedule.yaml", "InferenceRun"), "spec.schedule", schedule)
    assert InferenceRun.model_validate(doc).spec.schedule == schedule
    assert _schema_errors(doc) == []


@pytest.mark.parametrize("provider", [{"api": {"path": "/x", "colour": "blue"}}, {"endpointRef": {"name": "a"}},
                                      {"api": {"endpointRef": {"name": "Not_A_Name", "namespace": "ns"}}}], ids=str)
def test_a_krateo_provider_must_have_krateos_shape(provider: dict[str, Any]) -> None:
    doc = _set(_krateo("testdata-triton.yaml", "InferenceConfig"), "spec.storage.output.krateo", provider)
    with pytest.raises(ValidationError) as caught:
        InferenceConfig.model_validate(doc)
    (error,) = caught.value.errors()
    assert error["loc"] == ("spec", "storage", "output") and "krateo must be {api:" in error["msg"]


def test_a_status_as_krateos_controller_writes_it_validates() -> None:
    contract = json.dumps({"jobId": "5be07ada-1", "jobName": "inf-testdata-custom-5be07ada", "kserve": {}},
                          separators=(",", ":")).encode()
    doc = _krateo("testdata-custom.yaml", "InferenceRun")
    doc["status"] = {
        "conditions": [{"type": "Ready", "status": "True", "reason": "Available",
                        "lastTransitionTime": "2026-02-01T10:00:00Z"}],
        "contract": base64.b64encode(contract).decode(),
        "jobStatus": {"kind": "Job", "apiVersion": "batch/v1", "namespace": "kserve-test",
                      "name": "inf-testdata-custom-5be07ada", "uid": "0f0e"},
    }
    run = InferenceRun.model_validate(doc)
    assert run.status is not None and run.status.contract == contract
    assert run.status.job_status is not None and run.status.job_status.kind == "Job"
    assert run.model_dump(mode="json", by_alias=True, exclude_none=True)["status"]["contract"] == doc["status"]["contract"]
    assert _schema_errors(doc) == []
    doc["status"]["contract"] = "{not base64}"
    with pytest.raises(ValidationError, match="base64"):
        InferenceRun.model_validate(doc)


def test_the_examples_configure_our_forecaster_and_schedule_a_run() -> None:
    examples = ROOT / "crds" / "examples"
    config = InferenceConfig.model_validate(yaml.safe_load((examples / "inferenceconfig-forecaster.yaml").read_text()))
    run = InferenceRun.model_validate(yaml.safe_load((examples / "inferencerun-forecaster-daily.yaml").read_text()))
    assert run.spec.config_ref.name == config.metadata.name and run.spec.config_ref.namespace == config.metadata.namespace
    assert run.spec.schedule and config.spec.kserve.model_url and config.spec.kserve.model_input_name == "past_values"
    assert config.spec.storage.krateo("input") is not None and config.spec.storage.krateo("output") is not None
    assert run.spec.parameters is not None and all(isinstance(v, str) for v in run.spec.parameters.values())
