"""Source payloads parse like Krateo's exporter (krateoplatformops/finops-prometheus-exporter: its
Content-Type dispatch, payload-to-CSV conversion per metric type and CSV reader rules).

Cases: content-type dispatch (csv, json, octet-stream by path, binary/octet-stream .gz, Parquet,
gzip by magic bytes); BOM trimmed at both ends; FOCUS CSV kept as strings (quoted commas, Tags
JSON); ragged CSV row rejects the whole payload with its row number; missing BilledCost; empty CSV;
unsupported content types; FocusConfig list -> 50 columns with Krateo's conversions (values with
commas, quotes and newlines survive); Azure Monitor over several pages; Prometheus vector and
matrix with sanitised labels; non-success Prometheus falls back to generic JSON; generic JSON
table (first member, sorted header, Go formatting, empty array, no array -> error); bad JSON.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from focus_data import COLUMNS

from functions.codecs.focusconfig_json import FOCUS_COLUMNS, quantity_text
from functions.codecs.sources import read_payload
from functions.errors import InvalidInput

DATA = Path(__file__).parent / "data"
SAMPLE = (DATA / "focus-1.0-sample.csv").read_bytes()


def table(body: bytes | io.BytesIO, ct: str, path: str = "/x", mt: str = "cost", **kw: object) -> pa.Table:
    batches = list(read_payload(body, ct, path, mt, **kw))  # type: ignore[arg-type]
    return pa.Table.from_batches(batches) if batches else pa.table({})


def _parquet() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"BilledCost": [1.5, 2.0], "Tags": ['{"a":"b"}', None]}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("body", "ct", "path"),
    [
        pytest.param(SAMPLE, "text/csv; charset=utf-8", "/x", id="text-csv"),
        pytest.param(SAMPLE, "application/octet-stream", "/export.csv", id="octet-path-csv"),
        pytest.param(SAMPLE, "application/octet-stream", "/blob", id="octet-default-csv"),
        pytest.param(gzip.compress(SAMPLE), "binary/octet-stream", "/b/export.csv.gz", id="s3-gz"),
        pytest.param((DATA / "focus-1.0-sample.csv.gz").read_bytes(), "text/csv", "/x", id="gzip-by-magic"),
        pytest.param((DATA / "focus-1.0-sample-bom.csv").read_bytes(), "text/csv", "/x", id="bom-start"),
        pytest.param(SAMPLE + b"\xef\xbb\xbf", "TEXT/CSV", "/x", id="bom-end"),
        pytest.param(io.BytesIO(SAMPLE), "text/csv", "/x", id="file-object"),
    ],
)
def test_focus_csv_is_read_as_strings(body: bytes, ct: str, path: str) -> None:
    t = table(body, ct, path)
    assert t.column_names == list(COLUMNS)
    assert t.num_rows == 20
    assert all(f.type == pa.string() for f in t.schema)
    assert {"Microsoft", "AWS", "Google Cloud"} <= set(t.column("ProviderName").to_pylist())
    assert t.column("BillingAccountName")[0].as_py() == "Contoso Microsoft Billing Account, EMEA"
    assert json.loads(t.column("Tags")[0].as_py())["team"]
    assert t.column("ChargeClass")[0].as_py() == ""


@pytest.mark.parametrize(
    ("ct", "path"),
    [
        pytest.param("application/vnd.apache.parquet", "/x", id="content-type"),
        pytest.param("application/octet-stream", "/x.parquet", id="path"),
        pytest.param("binary/octet-stream", "/x", id="magic"),
    ],
)
def test_parquet_is_read_as_strings(ct: str, path: str) -> None:
    t = table(_parquet(), ct, path)
    assert t.to_pylist() == [{"BilledCost": "1.5", "Tags": '{"a":"b"}'}, {"BilledCost": "2", "Tags": ""}]


def test_ragged_row_rejects_the_whole_payload_with_its_row_number() -> None:
    body = b"a,BilledCost\n1,2\n3,4,5\n6,7\n"
    with pytest.raises(InvalidInput, match="row 3 has 3 fields but the header has 2") as err:
        list(read_payload(body, "text/csv", "/x", "cost"))
    assert err.value.errors[0].loc == "row 3"


@pytest.mark.parametrize("body", [b"a,b\n1,2\n", b"a\n"], ids=["no-billedcost", "header-only"])
def test_cost_csv_without_billed_cost_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="BilledCost"):
        list(read_payload(body, "text/csv", "/x", "cost"))


def test_billed_cost_matches_ignoring_case_and_header_only_gives_no_rows() -> None:
    t = table(b"BILLEDCOST,x\n", "text/csv")
    assert t.column_names == ["BILLEDCOST", "x"] and t.num_rows == 0


@pytest.mark.parametrize("body", [b"", b"\xef\xbb\xbf"], ids=["empty", "bom-only"])
def test_empty_csv_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInput, match="empty"):
        list(read_payload(body, "text/csv", "/x", "generic"))


@pytest.mark.parametrize(
    "ct", ["text/plain", "application/problem+json", "application/x-gzip", "", "text/html"]
)
def test_unsupported_content_type_is_invalid_input_naming_it(ct: str) -> None:
    with pytest.raises(InvalidInput, match="unsupported content type") as err:
        read_payload(SAMPLE, ct, "/x.csv", "cost")
    assert repr(ct) in err.value.message


def test_focusconfig_list_becomes_50_columns_with_krateo_conversions() -> None:
    t = table((DATA / "focusconfig-list.json").read_bytes(), "application/json")
    assert t.column_names == list(FOCUS_COLUMNS) and len(FOCUS_COLUMNS) == 50
    first, second = t.to_pylist()
    assert first["BilledCost"] == "27000"
    assert first["BillingPeriodStart"] == "2023-12-31T22:00:00Z"
    assert first["ChargeDescription"] == '1 "Dell" XYZ, rack\nserver'
    assert first["CommitmentDiscountId"] == "cd-1"
    assert (first["ContractedCost"], first["EffectiveCost"], first["ListUnitPrice"]) == ("1500", "0.1", "0.1")
    assert first["ConsumedQuantity"] == "3"
    assert first["Tags"] == "testkey1=testvalue;testkey2=testvalue"
    assert first["SkuPriceDetails"] == "cores=64;ram=512Gi"
    assert second["ChargePeriodStart"] == ""  # absent stays NULL (Krateo: 0001-01-01T00:00:00Z)
    assert (second["BilledCost"], second["ListCost"], second["Tags"]) == ("12", "", "")  # Krateo: ListCost "0"


@pytest.mark.parametrize(("q", "text"), [("27000.0", "27000"), (1e3, "1000"), ("2Ki", "2048"), ("5e3", "5000"), ("", ""), ("NULL", ""), (None, "")])
def test_quantities_are_plain_decimals(q: object, text: str) -> None:
    assert quantity_text(q) == text


def test_bad_focusconfig_fields_keep_their_text_for_the_rejects() -> None:
    from functions.codecs import focusconfig_json

    doc = {"items": [{"spec": {"focusSpec": {"billedCost": "lots", "chargePeriodEnd": "yesterday"}}},
                     {"spec": {"focusSpec": {"billedCost": "2"}}}]}
    t = table(json.dumps(doc).encode(), "application/json")
    assert t.column("BilledCost").to_pylist() == ["lots", "2"] and t.column("ChargePeriodEnd").to_pylist() == ["yesterday", ""]
    problems: list[Any] = []
    focusconfig_json.to_batch([doc], problems)
    assert {e.loc for e in problems} == {"items[0].spec.focusSpec.billedCost", "items[0].spec.focusSpec.chargePeriodEnd"}


def test_cost_json_that_is_not_a_list_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="Kubernetes list"):
        table(b'{"kind": "Status"}', "application/json")


def test_azure_monitor_rows_across_pages() -> None:
    page = (DATA / "azure-monitor-metrics.json").read_bytes()
    t = table(page + b"\n" + page, "application/json", mt="resource", additional_variables={"ResourceId": "/subs/vm1"})
    assert t.column_names == ["ResourceId", "metricName", "timestamp", "average", "unit"]
    rows = [list(r.values()) for r in t.to_pylist()]
    assert len(rows) == 8
    assert rows[:4] == [
        ["/subs/vm1", "Percentage CPU", "2024-01-01T00:00:00Z", "4.5175", "Percent"],
        ["/subs/vm1", "Percentage CPU", "2024-01-01T01:00:00Z", "27000", "Percent"],
        ["/subs/vm1", "Percentage CPU", "2024-01-01T02:00:00Z", "0", "Percent"],
        ["/subs/vm1", "Available Memory Bytes", "2024-01-01T00:00:00Z", "1073741824", "Bytes"],
    ]


def test_prometheus_vector_gets_sorted_sanitised_label_columns() -> None:
    t = table((DATA / "prometheus-vector.json").read_bytes(), "application/json", mt="generic")
    # raw names sorted: __name__, _id_, container, k8s.io/app, namespace, pod
    assert t.column_names == ["metric_name", "id", "container", "k8s_io_app", "namespace", "pod", "value", "timestamp"]
    assert t.to_pylist()[1] == {
        "metric_name": "container_cpu_usage_seconds_total", "id": "x", "container": "db", "k8s_io_app": "",
        "namespace": "shop", "pod": "", "value": "3", "timestamp": "2024-05-29T16:26:40.123Z"}


def test_prometheus_matrix_gives_one_row_per_sample() -> None:
    t = table((DATA / "prometheus-matrix.json").read_bytes(), "application/json", mt="generic")
    assert t.column("value").to_pylist() == ["1", "0", "1"]
    assert t.column("timestamp").to_pylist() == [
        "2024-05-29T16:26:40Z", "2024-05-29T16:26:55.5Z", "2024-05-29T16:27:10Z"]


@pytest.mark.parametrize(
    "doc",
    [
        {"status": "error", "data": {"result": []}, "rows": [{"a": 1}]},
        {"status": "success", "data": {"resultType": "vector", "result": []}, "rows": [{"a": 1}]},
        {"status": "success", "data": {"resultType": "scalar", "result": [1, "2"]}, "rows": [{"a": 1}]},
    ],
    ids=["error", "empty", "scalar"],
)
def test_non_usable_prometheus_answers_fall_back_to_generic_json(doc: object) -> None:
    assert table(json.dumps(doc).encode(), "application/json", mt="generic").to_pylist() == [{"a": "1"}]


def test_generic_json_uses_first_array_of_objects_and_go_formatting() -> None:
    t = table((DATA / "generic-table.json").read_bytes(), "application/json", mt="generic")
    assert t.column_names == ["active", "cost", "hours", "labels", "region", "service"]
    assert t.to_pylist() == [
        {"active": "true", "cost": "0.34", "hours": "10", "labels": '{"team":"a"}', "region": "", "service": "api, public"},
        {"active": "", "cost": "1.234567e+06", "hours": "", "labels": "", "region": "eu", "service": "batch"},
    ]


@pytest.mark.parametrize("body", [b"[]", b'{"value": []}', b'[1, "x"]'], ids=["array", "member", "no-objects"])
def test_generic_json_without_rows_gives_no_batches(body: bytes) -> None:
    assert list(read_payload(body, "application/json", "/x", "generic")) == []


@pytest.mark.parametrize("body", [b'{"a": 1, "b": {"c": []}}', b'"text"', b"{not json"], ids=["no-array", "scalar", "bad-json"])
def test_generic_json_without_an_array_of_objects_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        list(read_payload(body, "application/json", "/x", "generic"))
