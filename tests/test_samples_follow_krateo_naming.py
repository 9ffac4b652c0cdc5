"""Samples follow Krateo's naming (krateoplatformops/finops-prometheus-exporter: metric names, labels,
Tags rewrite, x_ columns) and the contract's sample table.

Cases: cost -> billed_cost valued by BilledCost (any case), x_ columns kept (Krateo dropped them),
value column kept as a label, Tags rewritten (JSON and k=v forms), `__row__` numbers the source rows;
rows without a usable value are kept with a null value and counted, never dropped (FOCUS number
rules: NULL literals, currency text, overflow, inf and NaN have no value); resource -> per-row names from
column 1, value column 3, stable sort by name; generic -> metricName and valueColumnIndex; invalid
metric and label names listed all at once; out-of-range valueColumnIndex; missing generic block;
schema metadata.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from functions.codecs.samples import SampleStats, to_samples
from functions.codecs.sources import read_payload
from functions.errors import InvalidInput
from functions.models.crs import Generic

DATA = Path(__file__).parent / "data"


def samples(body: bytes, mt: str, generic: Generic | None = None, ct: str = "text/csv",
            stats: SampleStats | None = None, **kw: object) -> pa.Table:
    batches = read_payload(body, ct, "/x", mt, **kw)  # type: ignore[arg-type]
    out = list(to_samples(batches, mt, generic, "ExporterScraperConfig/ns/esc", stats=stats))
    return pa.Table.from_batches(out)


def test_focus_cost_rows_become_billed_cost_samples_with_x_columns() -> None:
    stats = SampleStats()
    t = samples((DATA / "focus-1.0-sample.csv").read_bytes(), "cost", stats=stats)
    assert t.num_rows == 20 and stats.rows == 20 and stats.rejected == 0
    assert set(t.column("__name__").to_pylist()) == {"billed_cost"}
    assert t.column_names[:4] == ["__name__", "__value__", "__row__", "AvailabilityZone"]
    assert t.column("__row__").to_pylist() == list(range(1, 21))
    body = b"BilledCost,x_ServiceCode,x_Cost Center\n1,AmazonEC2,42\n"
    kept = SampleStats()
    t2 = samples(body, "cost", stats=kept)
    assert t2.column("x_ServiceCode").to_pylist() == ["AmazonEC2"] and "x_Cost Center" not in t2.column_names
    assert kept.skipped_columns == ["x_Cost Center"]
    row = t.to_pylist()[0]
    assert row["__value__"] == float(row["BilledCost"])
    assert ":" in row["Tags"] and "{" not in row["Tags"] and '"' not in row["Tags"]
    meta = t.schema.metadata
    assert meta[b"finops.metric_type"] == b"cost" and meta[b"finops.config"] == b"ExporterScraperConfig/ns/esc"
    assert meta[b"finops.rows"] == b"20" and meta[b"finops.created"].endswith(b"Z")


@pytest.mark.parametrize(
    ("tags", "expected"),
    [('{"env": "prod","org": "x"}', "env: prod;org: x"), ("k=v;k2=v2", "k:v;k2:v2"), ("", "")],
    ids=["json", "k=v", "empty"],
)
def test_tags_columns_are_rewritten(tags: str, expected: str) -> None:
    body = ("billedcost,ResourceTags\n" + '1,"' + tags.replace('"', '""') + '"\n').encode()
    assert samples(body, "cost").column("ResourceTags").to_pylist() == [expected]


def test_rows_without_a_usable_value_are_kept_and_counted() -> None:
    values = ["1.5", "abc", "", "1e400", "+Inf", "NaN", " 2", "-3e2", ".5", "NULL", "null", '"$10,000.00 "']
    body = ("BilledCost,id\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values))).encode()
    stats = SampleStats()
    t = samples(body, "cost", stats=stats)
    assert t.column("id").to_pylist() == [str(i) for i in range(len(values))]
    assert t.column("__value__").to_pylist() == [1.5, None, None, None, None, None, 2.0, -300.0, 0.5, None, None, None]
    assert t.column("BilledCost").to_pylist()[-1] == "$10,000.00 "  # the raw text travels on for the rejects
    assert (stats.rows, stats.rejected) == (12, 8)
    assert [(r["row"], r["value"]) for r in stats.reasons] == [(2, "abc"), (3, ""), (4, "1e400"), (5, "+Inf"), (6, "NaN")]
    assert "'abc' is not a number" in stats.reasons[0]["msg"] and "required" in stats.reasons[1]["msg"]


def test_resource_names_come_from_column_1_and_families_are_contiguous() -> None:
    page = (DATA / "azure-monitor-metrics.json").read_bytes()
    t = samples(page, "resource", ct="application/json", additional_variables={"ResourceId": "vm1"})
    assert t.column("__name__").to_pylist() == ["available_memory_bytes"] + ["percentage_cpu"] * 3
    assert t.column("__value__").to_pylist() == [1073741824.0, 4.5175, 27000.0, 0.0]
    assert t.column_names[2:] == ["__row__", "ResourceId", "metricName", "timestamp", "average", "unit"]


def test_generic_uses_metric_name_and_value_column_index() -> None:
    t = samples((DATA / "prometheus-vector.json").read_bytes(), "generic", Generic(metricName="cpu", valueColumnIndex=6),
                ct="application/json")
    assert t.column("__name__").to_pylist() == ["cpu", "cpu"]
    assert t.column("__value__").to_pylist() == [12.5, 3.0]
    assert "value" in t.column_names  # the value column is a label too


@pytest.mark.parametrize(
    ("body", "mt", "generic", "bad"),
    [
        (b"BilledCost,bad-name,ok,2x,__x\n1,a,b,c,d\n", "cost", None, ["bad-name", "2x", "__x"]),
        (b"a,metricName,c,v\nr,Disk Read/sec,u,1\nr,ok name,u,2\n", "resource", None, ["disk_read/sec"]),
        (b"a,b\nx,1\n", "generic", Generic(metricName="my.metric", valueColumnIndex=1), ["my.metric"]),
        (b"a,a,v\nx,y,1\n", "generic", Generic(metricName="m", valueColumnIndex=2), ["a"]),
    ],
    ids=["cost-labels", "resource-metric", "generic-metric", "duplicate-label"],
)
def test_invalid_names_are_listed_not_crashed_on(body: bytes, mt: str, generic: Generic | None, bad: list[str]) -> None:
    with pytest.raises(InvalidInput) as err:
        samples(body, mt, generic)
    assert [e.loc for e in err.value.errors] == bad
    for name in bad:
        assert repr(name) in err.value.message


@pytest.mark.parametrize("index", [2, 99])
def test_out_of_range_value_column_index_is_invalid(index: int) -> None:
    with pytest.raises(InvalidInput, match=f"valueColumnIndex {index} is out of range"):
        samples(b"a,b\nx,1\n", "generic", Generic(metricName="m", valueColumnIndex=index))


def test_generic_without_its_block_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="generic"):
        samples(b"a,b\nx,1\n", "generic", None)
