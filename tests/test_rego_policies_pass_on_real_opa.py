"""The optimizer's Rego policy on a real OPA engine: its own Rego tests, and the decisions Python gets.

Cases:
- every `test_*` rule of policies/*_test.rego passes on the embedded OPA Go engine (one case per
  rule, so a failing Rego test is named);
- decisions through `EmbeddedOpa.decide` with the shipped data.json: a listed kind on UPDATE keeps
  Krateo-shaped items, clamps a deep cut to -80 with a reason, drops tiny deltas; an unlisted kind,
  an opted-out object and DELETE do not apply; CREATE placement outside the allowed regions is
  refused; with edited data: the global regions list and a wildcard kind;
- failures are ours: a missing/empty/broken policy dir, a missing opa_bindings package, an
  unreachable or misbehaving OPA server -> Unavailable with a clear message;
- `engine_from_env` picks the server by FINOPS_OPA_URL, else one cached embedded engine per dir;
- one engine shared by threads gives every thread the right answer, and so does a pool of engines;
- the cheap `applies` query agrees with the decision's `applies` (embedded, and at the server's
  `/v1/data/finops/optimizer/applies`);
- against a real OPA server only when FINOPS_TEST_OPA_URL is set (no opa binary here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from loopback_http import Reply, Seen, closed_port, serve

from functions.clients import policy
from functions.clients.policy import EmbeddedOpa, OpaServer, engine_from_env
from functions.errors import Unavailable

POLICIES = Path(__file__).resolve().parents[1] / "policies"
VM = {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure",
      "metadata": {"name": "vm1", "namespace": "demo", "labels": {}, "annotations": {}}}
GREEN = {"region": "swedencentral", "start": "2025-06-01T02:00:00Z", "mean_intensity": 40.5,
         "baseline_intensity": 310.0, "source": "electricitymaps", "message": "run in swedencentral from 02:00"}


def _test_rules() -> list[str]:
    names = []
    for path in sorted(POLICIES.glob("*_test.rego")):
        text = path.read_text(encoding="utf-8")
        package = re.search(r"^package\s+([\w.]+)", text, re.MULTILINE)
        assert package, path
        names += [f"{package.group(1)}.{r}" for r in dict.fromkeys(re.findall(r"^(test_\w+)\b", text, re.MULTILINE))]
    return names


RULES = _test_rules()


def item(rid: str, delta: float, metric: str = "Percentage CPU") -> dict[str, Any]:
    return {"resourceid": rid, "metricname": metric, "unit": "Percent",
            "optimization": {"from": "19:00", "to": "7:00", "resourceDelta": delta}}


def request(op: str, obj: dict[str, Any] = VM, items: list[Any] | None = None,
            placement: dict[str, Any] | None = None, allowed: list[str] | None = None) -> dict[str, Any]:
    return {"operation": op, "object": obj,
            "proposals": {"rightsizing": items or [], "placement": placement, "allowed_regions": allowed or []}}


def with_metadata(**metadata: Any) -> dict[str, Any]:
    return {**VM, "metadata": {**VM["metadata"], **metadata}}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def opa() -> EmbeddedOpa:
    return EmbeddedOpa(POLICIES)


@pytest.fixture(scope="module")
def rego_results(opa: EmbeddedOpa) -> dict[str, bool]:
    return opa.run_tests()


def edited_policies(tmp_path: Path, **config: Any) -> Path:
    """A copy of policies/ whose data.json has `config` merged into finops.config."""
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    data = json.loads((root / "data.json").read_text(encoding="utf-8"))
    data["finops"]["config"].update(config)
    (root / "data.json").write_text(json.dumps(data), encoding="utf-8")
    return root


# ------------------------------------------------------------------ the Rego tests


def test_the_rego_tests_were_found(rego_results: dict[str, bool]) -> None:
    assert len(RULES) >= 20
    assert set(rego_results) == set(RULES)


@pytest.mark.parametrize("rule", RULES)
def test_rego_rule_passes(rego_results: dict[str, bool], rule: str) -> None:
    assert rego_results[rule], f"data.{rule} is not true on the embedded OPA engine"


def test_a_failing_rego_test_is_reported_as_failed(tmp_path: Path) -> None:
    root = tmp_path / "policies"
    shutil.copytree(POLICIES, root)
    (root / "broken_test.rego").write_text(
        "package finops.broken_test\n\nimport data.finops.optimizer\n\n"
        "test_false if false\n\ntest_undefined if optimizer.nothing_here\n\n"
        'test_error if to_number("x") == 1\n\ntest_true if true\n',
        encoding="utf-8")
    results = EmbeddedOpa(root).run_tests()
    assert {k: v for k, v in results.items() if k.startswith("finops.broken_test.")} == {
        "finops.broken_test.test_false": False, "finops.broken_test.test_undefined": False,
        "finops.broken_test.test_error": False, "finops.broken_test.test_true": True}


def test_test_files_are_not_loaded_for_decisions(opa: EmbeddedOpa) -> None:
    # the tests' package is not part of the decision engine
    assert opa.decide(request("UPDATE"))["applies"] is True
    with pytest.raises(Exception, match="undefined"):
        opa._engine.eval_document("finops.optimizer_test.cfg")


# ------------------------------------------------------------------ decisions


def test_listed_kind_on_update_keeps_clamps_and_drops(opa: EmbeddedOpa) -> None:
    answer = opa.decide(request("UPDATE", items=[item("vm-b", -95), item("vm-a", -40), item("vm-c", 3),
                                                 item("vm-a", -2, "Available Memory Bytes")]))
    assert answer["applies"] is True
    decision = answer["decision"]
    assert decision["mutate"] is True and decision["placement"] is None
    assert decision["rightsizing"] == [item("vm-a", -40), item("vm-b", -80)]
    assert decision["reasons"] == [
        "vm-a Available Memory Bytes: resourceDelta -2 dropped (|resourceDelta| < min_abs_delta 5)",
        "vm-b Percentage CPU: resourceDelta -95 clamped to -80 (max_reduction_percent 80)",
        "vm-c Percentage CPU: resourceDelta 3 dropped (|resourceDelta| < min_abs_delta 5)",
    ]


def test_update_with_nothing_left_still_writes_an_empty_list(opa: EmbeddedOpa) -> None:
    decision = opa.decide(request("UPDATE", items=[item("vm-a", 1)]))["decision"]
    assert decision["mutate"] is True and decision["rightsizing"] == []


def test_the_older_krateo_kind_is_listed_too(opa: EmbeddedOpa) -> None:
    obj = {**VM, "apiVersion": "composition.krateo.io/v0-1-4", "kind": "FinopsExamplePricingVmAzure"}
    assert opa.decide(request("PING", obj, [item("a", -40)]))["decision"]["rightsizing"] == [item("a", -40)]


def test_unlisted_kind_does_not_apply(opa: EmbeddedOpa) -> None:
    answer = opa.decide(request("UPDATE", {**VM, "kind": "VmAws"}, [item("a", -40)]))
    assert answer == {"applies": False, "decision": {
        "mutate": False, "rightsizing": None, "placement": None,
        "reasons": ["composition.krateo.io/v1-0-0 VmAws is not listed in finops.config.compositions"]}}


def test_opted_out_object_does_not_apply(opa: EmbeddedOpa) -> None:
    obj = with_metadata(labels={"finops.krateo.io/optimize": "false"})
    answer = opa.decide(request("UPDATE", obj, [item("a", -40)]))
    assert answer["applies"] is False and answer["decision"]["mutate"] is False
    assert answer["decision"]["reasons"] == ['opted out: label finops.krateo.io/optimize is "false"']
    obj = with_metadata(labels={"finops.krateo.io/optimize": "true"})
    assert opa.decide(request("UPDATE", obj, [item("a", -40)]))["applies"] is True


def test_delete_does_not_apply(opa: EmbeddedOpa) -> None:
    answer = opa.decide(request("DELETE", items=[item("a", -40)]))
    assert answer["applies"] is False and answer["decision"]["mutate"] is False


def test_create_placement_inside_allowed_regions_is_kept(opa: EmbeddedOpa) -> None:
    decision = opa.decide(request("CREATE", placement=GREEN, allowed=["westeurope", "swedencentral"]))["decision"]
    assert decision == {"mutate": True, "rightsizing": None, "placement": GREEN, "reasons": []}


def test_create_placement_outside_allowed_regions_is_refused(opa: EmbeddedOpa) -> None:
    decision = opa.decide(request("CREATE", placement=GREEN, allowed=["westeurope"]))["decision"]
    assert decision["mutate"] is False and decision["placement"] is None
    assert decision["reasons"] == [
        """placement in swedencentral refused: not among the composition's allowed regions ["westeurope"]"""]


def test_global_regions_list_refuses_other_regions(tmp_path: Path) -> None:
    opa = EmbeddedOpa(edited_policies(tmp_path, regions=["westeurope"]))
    refused = opa.decide(request("CREATE", placement=GREEN, allowed=["swedencentral"]))["decision"]
    assert refused["placement"] is None and refused["mutate"] is False
    assert refused["reasons"] == ['placement in swedencentral refused: not in finops.config.regions ["westeurope"]']
    kept = opa.decide(request("CREATE", placement={**GREEN, "region": "westeurope"}, allowed=["westeurope"]))
    assert kept["decision"]["placement"]["region"] == "westeurope"


def test_wildcard_kind_matches_every_kind_of_its_api_version(tmp_path: Path) -> None:
    opa = EmbeddedOpa(edited_policies(tmp_path, compositions=[{"apiVersion": "composition.krateo.io/v1-0-0", "kind": "*"}]))
    assert opa.decide(request("UPDATE", {**VM, "kind": "Anything"}))["applies"] is True
    assert opa.decide(request("UPDATE", {**VM, "apiVersion": "composition.krateo.io/v0-1-4"}))["applies"] is False


def test_thresholds_come_from_data_json(tmp_path: Path) -> None:
    opa = EmbeddedOpa(edited_policies(tmp_path, max_reduction_percent=50, min_abs_delta=10))
    decision = opa.decide(request("UPDATE", items=[item("a", -70), item("b", 8)]))["decision"]
    assert decision["rightsizing"] == [item("a", -50)]
    assert len(decision["reasons"]) == 2


def test_one_engine_shared_by_threads(opa: EmbeddedOpa) -> None:
    def one(i: int) -> bool:
        answer = opa.decide(request("UPDATE", items=[item(f"vm-{i}", -(10 + i % 70))]))
        return bool(answer["decision"]["rightsizing"] == [item(f"vm-{i}", -(10 + i % 70))])

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(one, range(400)))


def test_input_that_is_not_json_is_invalid(opa: EmbeddedOpa) -> None:
    from functions.errors import InvalidInput

    with pytest.raises(InvalidInput, match="not JSON"):
        opa.decide({"operation": "UPDATE", "object": object()})


# ------------------------------------------------------------------ failures are Unavailable


def test_missing_policy_dir_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match=r"does not exist \(set FINOPS_POLICY_DIR\)"):
        EmbeddedOpa(tmp_path / "nowhere")


def test_policy_dir_without_rego_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "data.json").write_text("{}", encoding="utf-8")
    with pytest.raises(Unavailable, match="holds no \\*.rego policy"):
        EmbeddedOpa(tmp_path)


def test_rego_that_does_not_parse_is_unavailable(tmp_path: Path) -> None:
    root = edited_policies(tmp_path)
    (root / "extra.rego").write_text("package finops.extra\n\nallow if {\n", encoding="utf-8")
    with pytest.raises(Unavailable, match=r"OPA policies in .* do not load: .*extra\.rego"):
        EmbeddedOpa(root)


def test_data_json_that_does_not_parse_is_unavailable(tmp_path: Path) -> None:
    root = edited_policies(tmp_path)
    (root / "data.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(Unavailable, match="cannot be read"):
        EmbeddedOpa(root)


def test_policy_without_the_package_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "other.rego").write_text("package other\n\nx := 1\n", encoding="utf-8")
    with pytest.raises(Unavailable, match="is package finops.optimizer loaded"):
        EmbeddedOpa(tmp_path).decide(request("UPDATE"))


def test_missing_bindings_are_unavailable_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opa_bindings", None)  # makes `import opa_bindings` raise ImportError
    with pytest.raises(Unavailable, match=r"pip install --ignore-requires-python 'opa-golib-python-bindings"):
        EmbeddedOpa(POLICIES)


def test_policy_dir_resolution_names_where_it_looked(tmp_path: Path) -> None:
    assert policy.resolve_policy_dir({}) == POLICIES  # the source checkout
    assert policy.resolve_policy_dir({"FINOPS_POLICY_DIR": str(POLICIES)}) == POLICIES
    assert policy.policy_dir_candidates({})[-1] == Path("/app/policies")  # the image (Containerfile)
    with pytest.raises(Unavailable, match=f"looked in: {re.escape(str(tmp_path))}"):
        policy.resolve_policy_dir({"FINOPS_POLICY_DIR": str(tmp_path)})


def test_opa_server_unreachable_is_unavailable() -> None:
    server = OpaServer(f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(Unavailable, match="ConnectError"):
        server.decide(request("UPDATE"))
    server.close()


@pytest.mark.parametrize(("reply", "message"), [
    (Reply(500, b'{"code": "internal_error"}'), "HTTP 500: {\"code\": \"internal_error\"}"),
    (Reply(400, b'{"code": "invalid_parameter"}'), "HTTP 400"),
    (Reply(200, b"<html>"), "not JSON"),
    (Reply(200, b"{}"), "is package finops.optimizer loaded"),
])
def test_opa_server_trouble_is_unavailable(reply: Reply, message: str) -> None:
    with serve(reply) as origin:
        server = OpaServer(origin.url)
        with pytest.raises(Unavailable, match=re.escape(message)):
            server.decide(request("UPDATE"))
        server.close()


def test_opa_server_slow_is_unavailable() -> None:
    with socket.socket() as listening:  # accepts connections (the backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(4)
        server = OpaServer(f"http://127.0.0.1:{listening.getsockname()[1]}", timeout=0.2)
        with pytest.raises(Unavailable, match="Timeout"):
            server.decide(request("UPDATE"))
        server.close()


def test_opa_server_posts_the_input_to_the_data_api(opa: EmbeddedOpa) -> None:
    """A loopback 'OPA' answering like the Data API (`{"result": document}`) from the embedded engine."""

    def data_api(seen: Seen) -> Reply:
        body = json.loads(seen.body)
        return Reply(200, json.dumps({"result": opa.decide(body["input"])}).encode(),
                     {"Content-Type": "application/json"})

    the_input = request("UPDATE", items=[item("a", -95)])
    with serve(data_api) as origin:
        server = OpaServer(origin.url + "/")
        assert server.decide(the_input) == opa.decide(the_input)
        server.close()
    assert origin.seen[0].method == "POST" and origin.seen[0].path == "/v1/data/finops/optimizer"
    assert json.loads(origin.seen[0].body) == {"input": the_input}


def test_opa_server_document_without_decision_does_not_mutate() -> None:
    with serve(Reply(200, b'{"result": {"applies": false}}')) as origin:
        answer = OpaServer(origin.url).decide(request("UPDATE"))
    assert answer == {"applies": False, "decision": {"mutate": False, "rightsizing": None, "placement": None,
                                                     "reasons": ["the optimizer does not apply"]}}


def test_engine_from_env_picks_the_server_or_one_embedded_engine_per_dir(tmp_path: Path) -> None:
    assert isinstance(engine_from_env({"FINOPS_OPA_URL": "http://opa.example:8181"}), OpaServer)
    first = engine_from_env({})
    assert isinstance(first, EmbeddedOpa) and first.policy_dir == POLICIES.resolve()
    assert engine_from_env({"FINOPS_POLICY_DIR": str(POLICIES)}) is first
    other = engine_from_env({"FINOPS_POLICY_DIR": str(edited_policies(tmp_path))})
    assert other is not first


# ------------------------------------------------------------------ a real OPA server


@pytest.mark.skipif(not os.environ.get("FINOPS_TEST_OPA_URL"),
                    reason="FINOPS_TEST_OPA_URL not set (no opa binary here): e.g. `opa run --server` and its URL")
def test_a_real_opa_server_decides_like_the_embedded_engine(opa: EmbeddedOpa) -> None:
    url = os.environ["FINOPS_TEST_OPA_URL"].rstrip("/")
    data = json.loads((POLICIES / "data.json").read_text(encoding="utf-8"))
    with httpx.Client(timeout=10) as client:
        put = client.put(f"{url}/v1/policies/finops-optimizer", content=(POLICIES / "optimizer.rego").read_bytes(),
                         headers={"Content-Type": "text/plain"})
        assert put.status_code == 200, put.text
        put = client.put(f"{url}/v1/data/finops/config", json=data["finops"]["config"])
        assert put.status_code == 204, put.text
    server = OpaServer(url, timeout=5)
    for case in (request("UPDATE", items=[item("b", -95), item("a", -40), item("c", 3)]),
                 request("UPDATE", {**VM, "kind": "VmAws"}),
                 request("CREATE", placement=GREEN, allowed=["westeurope"]),
                 request("CREATE", placement=GREEN, allowed=["swedencentral"])):
        assert server.decide(case) == opa.decide(case)
    server.close()


@pytest.mark.parametrize("the_input", [
    request("UPDATE", items=[item("a", -40)]),
    request("CREATE"),
    request("DELETE"),
    {**request("UPDATE"), "object": {**VM, "kind": "Other"}},
    {**request("UPDATE"), "object": {**VM, "metadata": {**VM["metadata"], "labels": {"finops.krateo.io/optimize": "false"}}}},
], ids=["update", "create", "delete", "unlisted", "opted-out"])
def test_the_cheap_applies_query_agrees_with_the_decision(opa: EmbeddedOpa, the_input: dict[str, Any]) -> None:
    assert opa.applies(the_input) is opa.decide(the_input)["applies"]


def test_opa_server_asks_applies_at_its_own_path(opa: EmbeddedOpa) -> None:
    def data_api(seen: Seen) -> Reply:
        body = json.loads(seen.body)
        return Reply(200, json.dumps({"result": opa.applies(body["input"])}).encode(), {"Content-Type": "application/json"})

    with serve(data_api) as origin:
        server = OpaServer(origin.url)
        assert server.applies(request("UPDATE")) is True
        assert server.applies({**request("UPDATE"), "object": {**VM, "kind": "Other"}}) is False
        server.close()
    assert [s.path for s in origin.seen] == ["/v1/data/finops/optimizer/applies"] * 2


def test_several_engines_evaluate_concurrently_and_agree(opa: EmbeddedOpa) -> None:
    the_input = request("UPDATE", items=[item(f"vm{i}", -10 - i) for i in range(10)])
    expected = opa.decide(the_input)
    pooled = EmbeddedOpa(POLICIES, engines=3)
    try:
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: pooled.decide(the_input), range(60)))
        assert all(a == expected for a in answers)
    finally:
        pooled.close()
