"""Deeply nested JSON (`[[[[…]]]]`) is a 400 naming the depth and the limit wherever we parse JSON, never a 500.

Cases:
- the check (functions.codecs.json_limits): its depth equals a reference parse's on real payloads
  (the repository's sample files, a CloudEvent, an AdmissionReview) and on strings full of brackets,
  escaped quotes and backslashes; MAX_DEPTH passes, one more is refused naming both numbers; 100,000
  levels are measured without recursion;
- the decoders: CloudEvents in binary and structured mode (data or data_base64) and batches; source
  payloads (generic JSON, a FocusConfig list, Azure Monitor) at 100,000 levels (where orjson gives up)
  and at 1,000 (which orjson parses but the stdlib would not print back); the optimizer's
  AdmissionReview (allowed, no patch, the warning naming the depth); a Tags cell nested 100,000 deep
  is read as plain `k: v` text by the handler, not parsed;
- the real functions (functions-framework on 127.0.0.1): exporter, scraper, aicost (single and batch),
  focus-ingest, notebooks and the optimizer's ping answer a 400 JSON naming the depth to a body nested
  100,000 deep, in binary and in structured mode; the database handler's /upload answers 400 to
  records nested beyond orjson's own limit (1,024) and to nested records or label values below it,
  and ignores a nested member it does not read (the handler needs no extra check), and stores a FOCUS
  row whose Tags cell is nested 100,000 deep.
"""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from dbhandler_server import AUTH, DbHandler, start_dbhandler, start_function, stop_process

from functions import events
from functions.clients import kube
from functions.clients.policy import EmbeddedOpa
from functions.codecs import json_limits
from functions.codecs.sources import read_payload
from functions.errors import InvalidInput
from functions.local.supervisor import free_port
from functions.settings.optimizer import OptimizerSettings
from functions.stages import aicost_ingest
from functions.stages.dbhandler.columns import parse_tags
from functions.stages.optimizer import admission as optimizer_admission
from functions.stages.optimizer.deps import Deps as OptimizerDeps

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "functions" / "main.py"
DEEP = b"[" * 100_000 + b"]" * 100_000
LIMIT = json_limits.MAX_DEPTH
NAMED = f"JSON nested 10000[01] levels deep; the limit is {LIMIT}"  # 100,001 inside a structured envelope
TARGETS = ("exporter", "scraper", "aicost", "focus_ingest", "notebooks", "optimizer")


def nested(levels: int, inner: bytes = b"1") -> bytes:
    return b'{"a":' * levels + inner + b"}" * levels


def reference_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


def sample_documents() -> list[bytes]:
    files = sorted(p for p in (ROOT / "tests" / "data").rglob("*.json") if p.stat().st_size < 5 << 20)
    docs = [p.read_bytes() for p in files]
    headers, body = events.to_structured(events.new(events.CR_APPLIED, "/t", {"kind": "FocusConfig", "spec": {"x": [[1]]}}))
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "operation": "UPDATE",
              "object": {"metadata": {"annotations": {"a": "[{\"]]]\\\\\": 1}]"}}, "spec": {"x": [{"y": [[]]}]}}}}
    return [*docs, body, json.dumps(review).encode()]


# ---- the check ------------------------------------------------------------------------------------


def test_the_depth_is_that_of_a_real_parse() -> None:
    documents = sample_documents()
    assert len(documents) > 2
    for doc in documents:
        assert json_limits.depth(doc) == reference_depth(json.loads(doc))


@pytest.mark.parametrize("text", [
    r'{"a": "[[[[{{{{", "b": ["]]]]"]}',
    r'["\"[[[", "\\", ["\\\"", {"k\"[": "\\\\"}]]',
    r'[["a\\\\\"b", "\u005b\u005b"], {"": [[], {}]}]',
    '{"emoji \U0001f600": ["\\ud83d\\ude00", [[["deep"]]]]}',
], ids=["brackets-in-strings", "escaped-quotes", "escaped-backslashes", "unicode"])
def test_brackets_inside_strings_do_not_count(text: str) -> None:
    assert json_limits.depth(text) == reference_depth(json.loads(text))


def test_the_limit_is_named_and_one_level_below_passes() -> None:
    assert json_limits.loads(nested(LIMIT)) is not None
    with pytest.raises(InvalidInput) as info:
        json_limits.loads(nested(LIMIT + 1))
    assert info.value.status == 400 and info.value.message == f"JSON nested {LIMIT + 1} levels deep; the limit is {LIMIT}"
    assert json_limits.depth(DEEP) == 100_000 and sys.getrecursionlimit() < 100_000


# ---- the decoders -----------------------------------------------------------------------------------


BINARY = {"ce-specversion": "1.0", "ce-type": events.CR_APPLIED, "ce-source": "/t", "ce-id": "1", "content-type": "application/json"}


def structured(data: bytes, key: str = "data") -> bytes:
    value = base64.b64encode(data) if key == "data_base64" else data
    quote = b'"' if key == "data_base64" else b""
    return (b'{"specversion": "1.0", "type": "io.finops.cr.applied", "source": "/t", "id": "1", "' + key.encode()
            + b'": ' + quote + value + quote + b"}")


@pytest.mark.parametrize(("headers", "body"), [
    pytest.param(BINARY, DEEP, id="binary"),
    pytest.param({"content-type": "application/cloudevents+json"}, structured(DEEP), id="structured"),
    pytest.param({"content-type": "application/cloudevents+json"}, structured(DEEP, "data_base64"), id="structured-base64"),
])
def test_cloudevents_nested_too_deep_are_refused(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(InvalidInput, match=NAMED):
        events.from_http(headers, body)


def test_batches_nested_too_deep_are_refused() -> None:
    with pytest.raises(InvalidInput, match=NAMED):
        events.from_batch(DEEP)
    with pytest.raises(InvalidInput, match=NAMED):
        aicost_ingest.decode({"Content-Type": "application/cloudevents-batch+json"}, DEEP)


@pytest.mark.parametrize(("metric_type", "inner"), [
    pytest.param("generic", b'[{"a": %s}]', id="generic-json"),
    pytest.param("cost", b'{"items": [{"spec": {"focusSpec": {"tags": %s}}}]}', id="focusconfig-list"),
    pytest.param("resource", b'{"value": [{"timeseries": %s}]}', id="azure-monitor"),
])
@pytest.mark.parametrize("levels", [100_000, 1000])
def test_source_payloads_nested_too_deep_are_refused(metric_type: str, inner: bytes, levels: int) -> None:
    body = inner % (b"[" * levels + b"]" * levels)
    with pytest.raises(InvalidInput, match=f"the limit is {LIMIT}"):
        list(read_payload(body, "application/json", "/x", metric_type))


def test_an_admission_review_nested_too_deep_is_allowed_unchanged(tmp_path: Path) -> None:
    deps = OptimizerDeps(settings=OptimizerSettings(), reader=kube.LocalReader(tmp_path),
                         policy=EmbeddedOpa(ROOT / "policies"))
    answer = optimizer_admission.handle(b'{"apiVersion": "admission.k8s.io/v1", "request": ' + DEEP + b"}", deps)
    assert answer["response"]["allowed"] is True and "patch" not in answer["response"]
    assert re.search(NAMED, answer["response"]["warnings"][0])


def test_a_tags_cell_nested_too_deep_is_read_as_text() -> None:
    text = '{"team": ' + "[" * 100_000 + "]" * 100_000 + "}"
    tags = parse_tags(text)
    assert tags is not None and list(tags) == ['{"team"']  # Krateo's `k: v` rule, not a JSON parse
    assert parse_tags('{"team": "a", "env": ["x"]}') == {"team": "a", "env": '["x"]'}


# ---- the real functions -----------------------------------------------------------------------------


@pytest.fixture(scope="module", name="functions_up")
def functions_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp = tmp_path_factory.mktemp("nesting")
    env = {"FINOPS_STATE_DIR": str(tmp / "state"), "FINOPS_KUBE": "local"}
    with ThreadPoolExecutor(len(TARGETS)) as pool:  # started and stopped side by side: 2 cores, 6 processes
        ports = {t: free_port() for t in TARGETS}
        started = {t: pool.submit(start_function, t, ports[t], env, tmp / f"{t}.log", MAIN) for t in TARGETS}
        try:
            for future in started.values():
                future.result()
            yield {t: f"http://127.0.0.1:{ports[t]}" for t in TARGETS}
        finally:
            running = [f.result() for f in started.values() if f.exception() is None]
            list(pool.map(stop_process, running))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_every_function_answers_400_naming_the_depth(functions_up: dict[str, str], target: str, mode: str) -> None:
    headers = BINARY if mode == "binary" else {"content-type": "application/cloudevents+json"}
    body = DEEP if mode == "binary" else structured(DEEP)
    answer = httpx.post(functions_up[target] + "/", headers={**headers, **AUTH}, content=body, timeout=30)
    assert answer.status_code == 400, answer.text[:500]
    assert answer.headers["content-type"] == "application/json" and re.fullmatch(NAMED, answer.json()["error"])


def test_an_aicost_batch_nested_too_deep_answers_400(functions_up: dict[str, str]) -> None:
    answer = httpx.post(functions_up["aicost"] + "/", headers={"content-type": "application/cloudevents-batch+json", **AUTH},
                        content=DEEP, timeout=30)
    assert answer.status_code == 400 and re.fullmatch(NAMED, answer.json()["error"])


@pytest.fixture(scope="module", name="handler")
def handler_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbHandler]:
    server = start_dbhandler(tmp_path_factory.mktemp("nesting-handler"))
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize(("body", "status"), [
    pytest.param(DEEP, 400, id="100000-levels"),
    pytest.param(b"[" * 1000 + b"]" * 1000, 400, id="1000-levels-of-lists"),
    pytest.param(b'[{"labels": {"a": ' + nested(1000) + b'}, "value": 1}]', 400, id="1000-levels-in-a-label"),
    pytest.param(b'[{"labels": {"a": "b"}, "value": 1, "extra": ' + nested(1000) + b"}]", 200, id="1000-levels-ignored"),
])
def test_the_handler_answers_nested_upload_records_without_a_5xx(handler: DbHandler, body: bytes, status: int) -> None:
    answer = handler.upload(body, {"table": "nested", "type": "generic"})
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/json")


def test_the_handler_stores_a_row_whose_tags_are_nested_too_deep(handler: DbHandler) -> None:
    labels = {"ResourceId": "r1", "ResourceName": "r1", "BilledCost": "1.5", "EffectiveCost": "1.5", "BillingCurrency": "USD",
              "ServiceName": "Compute", "ProviderName": "P", "ChargeCategory": "Usage",
              "BillingPeriodStart": "2024-01-01T00:00:00Z", "BillingPeriodEnd": "2024-02-01T00:00:00Z",
              "ChargePeriodStart": "2024-01-01T00:00:00Z", "ChargePeriodEnd": "2024-01-02T00:00:00Z",
              "SkuPriceId": "sku", "Tags": '{"team": ' + "[" * 100_000 + "]" * 100_000 + "}"}
    answer = handler.upload([{"labels": labels, "value": 1.5, "timestamp": 1700000000}], {"table": "nested_costs", "type": "cost"})
    assert answer.status_code == 200, answer.text[:500]
