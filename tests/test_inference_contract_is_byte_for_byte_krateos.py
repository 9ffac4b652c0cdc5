"""The Contract is the bytes krateoplatformops/kserve-controller writes, and the job name its ComputeJobName.

Cases:
- Krateo's own example: testdata-triton.yaml with the run UID of its readme renders exactly the
  readme's contract (compacted), jobName `inf-example-inference-run-triton-5be07ada`;
- job names (internal/helpers/util.go, worked by hand): uppercase, symbol runs collapsed, leading
  and trailing symbols, non-ASCII bytes, an empty name, a name of symbols only, truncation to 53 with
  a trailing `-` trimmed, short, odd and empty UIDs, uppercase UIDs; always a valid 63-character name;
- omitempty: no jobId without a UID, kserve `{}` when empty, input/output left out without providers,
  parameters left out when absent and `{}` when empty; unknown provider labels pass through;
- Go's encoding: keys sorted bytewise at every level, HTML escaping, control characters (\\b and \\f
  short, as Go >= 1.22 writes them: kserve-controller builds with Go 1.25), U+2028/9, lone
  surrogates as U+FFFD, int64 vs float64, shortest floats in Go's plain and exponent forms;
- what Go cannot have converted (a number as modelUrl, a non-string parameter, NaN, a provider that
  is not an object, nesting past the limit) is InvalidInput naming each field;
- parse reads back what render wrote (round trip on every case) and refuses what is not a contract;
- differential: the same documents through Go's encoding/json (tests/data/go-contract/main.go,
  `go run`), byte for byte, on the examples and 300 generated values; skipped where `go` is absent.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from functions.codecs import inference_contract as ic
from functions.errors import InvalidInput

DATA = Path(__file__).resolve().parent / "data"
TRITON = DATA / "krateo-kserve" / "testdata" / "testdata-triton.yaml"
UID = "5be07ada-5fe0-4c9e-a8bc-aaae67d8d344"
README_CONTRACT = """{
   "jobId":"5be07ada-5fe0-4c9e-a8bc-aaae67d8d344",
   "jobName":"inf-example-inference-run-triton-5be07ada",
   "kserve":{
      "modelName":"sklearn-iris",
      "modelUrl":"kserve-krateo-ttm-predictor.kserve-test.svc.cluster.local/v2/models/granite-timeseries-ttm-r2/infer",
      "modelVersion":"v2",
      "modelInputName":"past_values"
   },
   "input":{"krateo":{"api":{"endpointRef":{"name":"finops-database-handler-endpoint","namespace":"kserve-controller-system"},
      "headers":["Accept: application/json","Content-Type: application/json"],"path":"/compute/tritoninput","verb":"POST"}}},
   "output":{"krateo":{"api":{"endpointRef":{"name":"finops-database-handler-endpoint","namespace":"kserve-controller-system"},
      "headers":["Accept: application/json","Content-Type: application/json"],"path":"/compute/tritonoutput","verb":"POST"}}},
   "parameters":{"input_data_length":"512","input_table_column_name":"average","input_table_name":"azuretoolkit",
      "key_name":"resourceid","key_value":"sample_vm","output_table_name":"kserve_controller_output_triton"}
}"""
"""The contract of kserve-controller's readme ("The Runner Contract"), in Go's key order."""


def triton() -> tuple[dict[str, Any], dict[str, Any]]:
    config, run = yaml.safe_load_all(TRITON.read_text())
    run["metadata"]["uid"] = UID
    run["spec"]["parameters"]["key_value"] = "sample_vm"  # the readme's example says sample_vm
    return run, config


def compact(text: str) -> bytes:
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False).encode()


def contract_of(run_spec: dict[str, Any] | None = None, kserve: dict[str, Any] | None = None,
                storage: dict[str, Any] | None = None, uid: str = "u-1", name: str = "r") -> bytes:
    run = {"metadata": {"name": name, "uid": uid}, "spec": run_spec or {}}
    config = {"spec": {"kserve": kserve or {}, "storage": storage or {}}}
    return ic.render(ic.build(run, config))


# ---- Krateo's example -----------------------------------------------------------------------------


def test_the_readme_contract_is_rendered_byte_for_byte() -> None:
    run, config = triton()
    contract = ic.build(run, config)
    assert contract.job_name == "inf-example-inference-run-triton-5be07ada"
    assert ic.render(contract) == compact(README_CONTRACT)
    assert ic.parse(ic.render(contract)) == contract


# ---- job names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "uid", "expected"), [
    pytest.param("example-inference-run-triton", UID, "inf-example-inference-run-triton-5be07ada", id="krateo-example"),
    pytest.param("My_Run.V2", "ABCDEF12-3456", "inf-my-run-v2-abcdef12", id="uppercase-and-symbols"),
    pytest.param("a--b__c", "12345678", "inf-a-b-c-12345678", id="symbol-runs-collapse"),
    pytest.param("-run-", "12345678", "inf-run-12345678", id="leading-and-trailing-symbols"),
    pytest.param("café", "12345678", "inf-caf-12345678", id="non-ascii-bytes-are-symbols"),
    pytest.param("", "12345678", "inf-12345678", id="empty-name"),
    pytest.param("___", "12345678", "inf-12345678", id="symbols-only"),
    pytest.param("a" * 80, "12345678", "inf-" + "a" * 49 + "-12345678", id="truncated-to-53"),
    pytest.param("a" * 48 + "-bcd", "12345678", "inf-" + "a" * 48 + "-12345678", id="truncation-trims-a-hyphen"),
    pytest.param("run", "12", "inf-run-12000000", id="short-uid-padded"),
    pytest.param("run", "--A-b_C--", "inf-run-abc00000", id="odd-uid-symbols-skipped"),
    pytest.param("run", "", "inf-run-00000000", id="empty-uid"),
    pytest.param("run", "é9", "inf-run-90000000", id="non-ascii-uid"),
])
def test_job_names_follow_compute_job_name(name: str, uid: str, expected: str) -> None:
    got = ic.job_name(ic.JOB_NAME_PREFIX, name, uid)
    assert got == expected
    assert len(got) <= 63 and got[0].isalnum() and got[-1].isalnum() and set(got) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_without_a_main_part_the_name_is_the_uid_part() -> None:
    assert ic.job_name("", "", "Zz-9") == "zz900000"
    assert ic.job_name("--", "..", "") == "00000000"


# ---- omitempty and pass-through -------------------------------------------------------------------


def test_empty_fields_are_left_out_as_omitempty_says() -> None:
    assert contract_of(uid="") == b'{"jobName":"inf-r-00000000","kserve":{}}'
    assert contract_of({"parameters": {}}, uid="") == b'{"jobName":"inf-r-00000000","kserve":{},"parameters":{}}'
    assert contract_of({"parameters": None}, {"modelUrl": "", "modelName": None}) == b'{"jobId":"u-1","jobName":"inf-r-u1000000","kserve":{}}'
    assert contract_of(storage={"input": {}, "output": None}) == b'{"jobId":"u-1","jobName":"inf-r-u1000000","kserve":{}}'


def test_unknown_providers_pass_through_unchanged_in_content() -> None:
    storage = {"input": {"krateo": {"api": {"verb": "POST", "path": "/p"}}},
               "output": {"custom": {"s3": {"moreCustom": "data", "endpointRef": {"name": "x", "namespace": "y"}}}, "b": None}}
    got = json.loads(contract_of(storage=storage))
    assert got["input"] == storage["input"] and got["output"] == storage["output"]
    assert contract_of(storage=storage).endswith(
        b'"output":{"b":null,"custom":{"s3":{"endpointRef":{"name":"x","namespace":"y"},"moreCustom":"data"}}}}')


# ---- Go's encoding --------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param({"b": 1, "B": 2, "a": {"z": 1, "y": [True, None]}, "é": 0, "_": 3},
                 '{"B":2,"_":3,"a":{"y":[true,null],"z":1},"b":1,"é":0}', id="keys-sorted-bytewise-at-every-level"),
    pytest.param("<a href='x'>&amp;</a>", '"\\u003ca href=\'x\'\\u003e\\u0026amp;\\u003c/a\\u003e"', id="html-escaped"),
    pytest.param("q\"b\\s/", '"q\\"b\\\\s/"', id="quote-backslash-slash"),
    pytest.param("\b\f\n\r\t\x00\x01\x1f\x7f", '"\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\x7f"', id="control-characters"),
    pytest.param("a\u2028b\u2029", '"a\\u2028b\\u2029"', id="line-separators"),
    pytest.param("x\ud800y\udc00", '"x\ufffdy\ufffd"', id="lone-surrogates-are-replacement-characters"),
    pytest.param("día 東京 😀", '"día 東京 😀"', id="unicode-as-utf8"),
    pytest.param([2**63 - 1, -(2**63), 2**63, 2**70, 12345678901234567890],
                 "[9223372036854775807,-9223372036854775808,9223372036854776000,1.1805916207174113e+21,12345678901234567000]",
                 id="int64-else-float64"),
    pytest.param([1.0, -0.0, 0.0, 0.1, 100.0, 1e20, 1e21, 123456789.125, 1e-6, 1e-7, 1.5e-7, 2.5e-10, 5e-324,
                  1.7976931348623157e308, -3.25],
                 "[1,-0,0,0.1,100,100000000000000000000,1e+21,123456789.125,0.000001,1e-7,1.5e-7,2.5e-10,5e-324,"
                 "1.7976931348623157e+308,-3.25]", id="floats-plain-and-exponent"),
])
def test_values_are_encoded_as_go_writes_them(value: Any, expected: str) -> None:
    assert ic.go_json(value) == expected


@pytest.mark.parametrize("bad", [math.nan, math.inf, 10**400, {"a": object()}], ids=["nan", "inf", "huge-int", "object"])
def test_what_go_cannot_encode_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        ic.go_json(bad)


def test_fields_go_could_not_convert_are_named_all_at_once() -> None:
    run = {"metadata": {"name": "r", "uid": 7}, "spec": {"parameters": {"a": 1, "b": "ok", "c": None}}}
    config = {"spec": {"kserve": {"modelUrl": 3}, "storage": {"input": {"krateo": {"x": math.nan}}, "output": "s3"}}}
    with pytest.raises(InvalidInput) as caught:
        ic.build(run, config)
    locs = {e.loc for e in caught.value.errors}
    assert locs == {"run.metadata.uid", "run.spec.parameters.a", "config.spec.kserve.modelUrl",
                    "config.spec.storage.input.krateo", "config.spec.storage.output"}
    deep: Any = "x"
    for _ in range(ic.MAX_DEPTH + 2):
        deep = [deep]
    with pytest.raises(InvalidInput, match="nested deeper"):
        contract_of(storage={"input": {"krateo": deep}})


def test_a_null_parameter_is_an_empty_string_as_go_converts_it() -> None:
    assert contract_of({"parameters": {"k": None}}).endswith(b'"parameters":{"k":""}}')


# ---- parse ----------------------------------------------------------------------------------------


def test_parse_reads_back_what_render_wrote_and_ignores_unknown_keys() -> None:
    run, config = triton()
    raw = ic.render(ic.build(run, config))
    assert ic.render(ic.parse(raw)) == raw
    extended = json.loads(raw) | {"future": {"field": 1}}
    assert ic.parse(json.dumps(extended)) == ic.parse(raw)


@pytest.mark.parametrize(("raw", "loc"), [
    (b"not json", "contract"), (b"[1]", "contract"), (b'{"kserve": []}', "kserve"),
    (b'{"kserve": {"modelUrl": 1}}', "kserve.modelUrl"), (b'{"parameters": {"a": 2}}', "parameters.a"),
    (b'{"input": {"krateo": 1.5}, "output": []}', "output"), (b'{"jobId": 5}', "jobId"),
], ids=["not-json", "not-an-object", "kserve-array", "model-url-number", "parameter-number", "output-array", "job-id-number"])
def test_parse_refuses_what_is_not_a_contract(raw: bytes, loc: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        ic.parse(raw)
    assert loc in {e.loc for e in caught.value.errors}


# ---- differential against Go ----------------------------------------------------------------------


GO = shutil.which("go")
needs_go = pytest.mark.skipif(GO is None, reason="the Go toolchain is not installed (apt-get install golang-go): "
                                               "the Go encoder itself is the reference of this comparison")


def go_answers(cases: list[dict[str, Any]], tmp_path: Path) -> list[str]:
    env = {"HOME": str(tmp_path), "GOCACHE": str(tmp_path / "gocache"), "GOPATH": str(tmp_path / "gopath"),
           "GO111MODULE": "off", "PATH": str(Path(str(GO)).parent), "CGO_ENABLED": "0"}
    text = "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases)
    done = subprocess.run([str(GO), "run", str(DATA / "go-contract" / "main.go")], input=text.encode(), env=env,
                          capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode().splitlines()


def random_value(rng: random.Random, depth: int = 0) -> Any:
    pick = rng.randrange(9 if depth < 4 else 6)
    # no \b nor \f: Go before 1.22 (Debian 12 has 1.19) writes \u0008 and \u000c, the Go 1.25 that
    # kserve-controller builds with writes \b and \f (checked in test_values_are_encoded_as_go_writes_them)
    texts = ["", "a", "Zz", "<>&", "\u2028", "é", "東", "😀", "\x01", "\n\t\r", "\"\\", "key", "K", "_", "~"]
    if pick == 0:
        return None
    if pick == 1:
        return rng.random() < 0.5
    if pick == 2:
        return rng.choice([0, 1, -1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64 + 7, 10**25])
    if pick == 3:
        exp = rng.randint(-320, 300)
        return rng.choice([-1, 1]) * rng.random() * 10.0**exp
    if pick == 4:
        return rng.choice([0.5, 1e-6, 9.999999e-7, 1e21, 9.99999999999999e20, 123.456, 1e-7, 0.1 + 0.2, 100.0])
    if pick == 5:
        return "".join(rng.choice(texts) for _ in range(rng.randrange(4)))
    if pick == 6:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {"".join(rng.choice(texts) for _ in range(rng.randrange(1, 3))): random_value(rng, depth + 1)
            for _ in range(rng.randrange(5))}


@needs_go
def test_go_writes_the_same_bytes(tmp_path: Path) -> None:
    rng = random.Random(20)
    values = [random_value(rng) for _ in range(300)]
    run, config = triton()
    custom = yaml.safe_load_all((DATA / "krateo-kserve" / "testdata" / "testdata-custom.yaml").read_text())
    custom_config, custom_run = custom
    custom_run["metadata"]["uid"] = "0f0e-ABCD"
    contracts = [(run, config), (custom_run, custom_config),
                 ({"metadata": {"name": "x", "uid": "u"}, "spec": {"parameters": {}}}, {"spec": {}}),
                 ({"metadata": {"name": "x"}, "spec": {}}, {"spec": {"storage": {"input": {"b": values[:20], "a": values[20]}}}})]
    cases = [{"value": v} for v in values]
    cases += [{"run": r, "config": c, "jobName": ic.build(r, c).job_name} for r, c in contracts]
    # both read the same JSON text, as both would read it from the API server
    ours = [ic.go_json(json.loads(json.dumps(v))) for v in values]
    ours += [ic.render(ic.build(json.loads(json.dumps(r)), json.loads(json.dumps(c)))).decode() for r, c in contracts]
    theirs = go_answers(cases, tmp_path)
    assert len(theirs) == len(cases)
    mismatches = [(case, mine, go) for case, mine, go in zip(cases, ours, theirs, strict=True) if mine != go]
    assert not mismatches, mismatches[:3]
