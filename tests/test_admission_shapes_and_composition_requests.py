"""The optimizer's pure wire shapes: AdmissionReview answers, JSONPatch ops, what a composition asks for.

Cases:
- the answer echoes apiVersion and uid, is always allowed, carries a base64 JSONPatch only when there
  is one, shortens Azure ids in warnings and caps them;
- the uid is recovered from bodies too broken to parse (so even those answers are accepted);
- `add_op` adds `{}` for each missing parent (Krateo's helper) and escapes `/` and `~`; annotations are
  created when the object has none, set one by one otherwise; every patch applies (jsonpatch, RFC 6902)
  and yields the intended object;
- Krateo's defaults for the usage source (`finops-database-handler-endpoint`, `krateo-system`,
  `finops_res`) and the composition's own values;
- placement requests: defaults, RFC 3339 or relative deadlines, and a ValueError naming the bad
  annotation; no allowed-regions annotation = nothing asked;
- managed VMs are the `virtualmachines` entries only.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonpatch
import pytest

from functions.models import optimizer as m

NOW = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)


def test_the_answer_is_allowed_echoes_the_uid_and_encodes_the_patch() -> None:
    ops = [{"op": "add", "path": "/spec/optimization", "value": "[]"}]
    answer = m.admission_response("admission.k8s.io/v1beta1", "abc", ops, ["/subscriptions/s/rg/x/virtualMachines/vm7: slow" + "!" * 200])
    assert answer["apiVersion"] == "admission.k8s.io/v1beta1" and answer["kind"] == "AdmissionReview"
    response = answer["response"]
    assert response["uid"] == "abc" and response["allowed"] is True and response["patchType"] == "JSONPatch"
    assert json.loads(base64.b64decode(response["patch"])) == ops
    assert response["warnings"][0].startswith("vm7: slow") and len(response["warnings"][0]) == 120
    bare = m.admission_response("admission.k8s.io/v1", "u", None, None)["response"]
    assert bare == {"uid": "u", "allowed": True}


@pytest.mark.parametrize(("body", "expected"), [
    ({"apiVersion": "admission.k8s.io/v1beta1", "request": {"uid": "x"}}, ("admission.k8s.io/v1beta1", "x")),
    ({"apiVersion": "nonsense", "request": {"uid": 7}}, ("admission.k8s.io/v1", "")),
    ([1, 2], ("admission.k8s.io/v1", "")),
    (None, ("admission.k8s.io/v1", "")),
], ids=["v1beta1", "bad-types", "array", "none"])
def test_the_uid_is_recovered_from_broken_bodies(body: Any, expected: tuple[str, str]) -> None:
    assert m.request_uid(body) == expected


def test_add_op_creates_missing_parents_and_the_patch_applies() -> None:
    obj: dict[str, Any] = {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure", "metadata": {"name": "c"}}
    ops = m.add_op(obj, ["spec", "optimization"], "[]")
    assert ops == [{"op": "add", "path": "/spec", "value": {}}, {"op": "add", "path": "/spec/optimization", "value": "[]"}]
    assert jsonpatch.apply_patch(obj, ops)["spec"] == {"optimization": "[]"}
    with_spec = {**obj, "spec": {"size": "S"}}
    ops = m.add_op(with_spec, ["spec", "optimization"], "[1]")
    assert ops == [{"op": "add", "path": "/spec/optimization", "value": "[1]"}]
    assert jsonpatch.apply_patch(with_spec, ops)["spec"] == {"size": "S", "optimization": "[1]"}


def test_annotations_are_created_or_set_one_by_one() -> None:
    values = {m.PLACEMENT_REGION: "northeurope", m.PLACEMENT_START: "2026-11-23T16:00:00Z"}
    bare: dict[str, Any] = {"metadata": {"name": "c"}}
    ops = m.annotation_ops(bare, values)
    assert ops == [{"op": "add", "path": "/metadata/annotations", "value": dict(sorted(values.items()))}]
    assert jsonpatch.apply_patch(bare, ops)["metadata"]["annotations"] == values
    annotated = {"metadata": {"name": "c", "annotations": {"keep": "me", m.PLACEMENT_REGION: "old"}}}
    ops = m.annotation_ops(annotated, values)
    assert [op["path"] for op in ops] == ["/metadata/annotations/finops.krateo.io~1placement-region",
                                          "/metadata/annotations/finops.krateo.io~1placement-start"]
    assert jsonpatch.apply_patch(annotated, ops)["metadata"]["annotations"] == {"keep": "me", **values}


def test_the_usage_source_follows_krateo_defaults_and_the_composition() -> None:
    assert m.usage_source({}) == m.UsageSource(secret_namespace="krateo-system", secret_name="finops-database-handler-endpoint",
                                               table="finops_res")
    obj = {"spec": {"global": {"tableName": "azuretoolkit"},
                    "metricExporter": {"scraperDatabaseConfigRef": {"name": "db", "namespace": "finops"}}}}
    assert m.usage_source(obj) == m.UsageSource(secret_namespace="finops", secret_name="db-endpoint", table="azuretoolkit_res")


def _asking(**annotations: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {f"finops.krateo.io/{k}": v for k, v in annotations.items()}}}


def test_placement_requests_read_defaults_and_both_deadline_forms() -> None:
    assert m.placement_request({"metadata": {}}, NOW) is None
    asked = m.placement_request(_asking(**{"allowed-regions": "westeurope, northeurope"}), NOW)
    assert asked is not None and asked.allowed_regions == ["westeurope", "northeurope"]
    assert asked.duration == timedelta(hours=1) and asked.deadline == NOW + timedelta(hours=24)
    asked = m.placement_request(_asking(**{"allowed-regions": "a", "duration": "90m", "deadline": "2026-11-24T06:00:00Z"}), NOW)
    assert asked is not None and asked.duration == timedelta(minutes=90)
    assert asked.deadline == datetime(2026, 11, 24, 6, tzinfo=UTC)


@pytest.mark.parametrize(("annotations", "named"), [
    ({"allowed-regions": " , "}, "allowed-regions"),
    ({"allowed-regions": "a", "duration": "soon"}, "duration"),
    ({"allowed-regions": "a", "duration": "0s"}, "duration"),
    ({"allowed-regions": "a", "deadline": "tomorrow"}, "deadline"),
], ids=["no-region", "bad-duration", "zero-duration", "bad-deadline"])
def test_a_bad_placement_request_names_its_annotation(annotations: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=f"finops.krateo.io/{named}"):
        m.placement_request(_asking(**annotations), NOW)


def test_managed_vms_are_the_virtualmachines_entries() -> None:
    obj = {"metadata": {"namespace": "demo"}, "status": {"managed": [
        {"apiVersion": "compute.azure.com/v1api20220301", "resource": "virtualmachines", "name": "vm1"},
        {"apiVersion": "network.azure.com/v1", "resource": "networkinterfaces", "name": "nic"},
        {"resource": "virtualmachines"}, "junk"]}}
    assert m.managed_vms(obj) == [{"apiVersion": "compute.azure.com/v1api20220301", "resource": "virtualmachines",
                                   "name": "vm1", "namespace": "demo"}]
