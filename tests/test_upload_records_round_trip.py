"""Upload records survive JSON <-> Arrow <-> IPC unchanged; bad records are reported, not fatal.

Cases:
- Krateo JSON -> table -> JSON gives the same records (absent labels stay absent, "" stays "").
- table -> IPC stream bytes (chunked) -> batches -> JSON: same records; schema types normalised.
- a non-list is InvalidInput("Data must be a list of records").
- per-item errors (not an object, labels not an object, bad label value, bad value, reserved label)
  carry the record index; the good records are kept.
- numbers as label values become their text; null label = absent.
- garbage or truncated IPC bytes, and mistyped columns, are InvalidInput.
- samples_to_records drops __name__ and stamps one int64 timestamp; split re-chunks to <= max_rows.
- render -> parse -> samples_to_records -> IPC -> JSON gives Krateo's scraper records.
"""

from __future__ import annotations

import io
import math

import pyarrow as pa
import pytest

from functions.codecs import exposition, records
from functions.errors import InvalidInput

KRATEO = [
    {"labels": {"BilledCost": "27000", "ResourceId": "0000", "Tags": "k1:v1;k2:v2", "RegionId": ""},
     "value": 27000.0, "timestamp": 1733400000},
    {"labels": {"ResourceId": "0001", "Extra": "ü\n\"x\""}, "value": 0.5, "timestamp": 1733400000},
    {"labels": {}, "value": 1.0, "timestamp": 1733400001},
]


def test_json_to_table_and_back_is_unchanged() -> None:
    table, errors = records.from_json(KRATEO)
    assert errors == []
    assert table.schema.field("__value__").type == pa.float64()
    assert table.schema.field("__timestamp__").type == pa.int64()
    assert table.column("RegionId").to_pylist() == ["", None, None]
    assert records.to_json(table) == KRATEO


def test_ipc_stream_round_trip_keeps_records_and_types() -> None:
    table, _ = records.from_json(KRATEO)
    chunks = list(records.write_ipc(table.to_batches(max_chunksize=1)))
    assert len(chunks) >= 3
    data = b"".join(chunks)
    for source in (data, io.BytesIO(data)):
        batches = list(records.read_ipc(source))
        assert records.to_json(pa.Table.from_batches(batches)) == KRATEO


def test_ipc_writer_aligns_later_batches_to_the_first_schema() -> None:
    first = pa.record_batch({"a": ["1"], "b": ["2"], "__value__": [1.0]})
    second = pa.record_batch({"b": ["3"], "__value__": [2.0]})
    batches = list(records.read_ipc(b"".join(records.write_ipc([first, second]))))
    assert pa.Table.from_batches(batches).to_pylist() == [
        {"a": "1", "b": "2", "__value__": 1.0}, {"a": None, "b": "3", "__value__": 2.0}]


def test_ipc_reader_normalises_dictionary_and_integer_columns() -> None:
    batch = pa.record_batch({
        "a": pa.array(["x", "y"]).dictionary_encode(), "__value__": pa.array([1, 2], pa.int32()),
        "__timestamp__": pa.array([5, 6], pa.int32())})
    (out,) = records.read_ipc(b"".join(records.write_ipc([batch])))
    assert out.schema == pa.schema([("a", pa.string()), ("__value__", pa.float64()), ("__timestamp__", pa.int64())])


def test_a_non_list_is_refused_with_krateos_message() -> None:
    with pytest.raises(InvalidInput, match="^Data must be a list of records$"):
        records.from_json({"labels": {}})


@pytest.mark.parametrize(
    "item,loc",
    [
        ("nope", "1"),
        ({"labels": ["a"]}, "1.labels"),
        ({"labels": {"a": {"x": 1}}}, "1.labels.a"),
        ({"labels": {"a": True}}, "1.labels.a"),
        ({"labels": {"__value__": "1"}}, "1.labels.__value__"),
        ({"labels": {}, "value": "abc"}, "1.value"),
        ({"labels": {}, "value": [1]}, "1.value"),
        ({"labels": {}, "timestamp": "soon"}, "1.timestamp"),
    ],
    ids=["not-object", "labels-list", "label-object", "label-bool", "reserved", "value-text", "value-list",
         "timestamp-text"],
)
def test_bad_records_are_reported_by_index_and_good_ones_kept(item: object, loc: str) -> None:
    table, errors = records.from_json([KRATEO[0], item, KRATEO[1]])
    assert [e.loc for e in errors] == [loc]
    assert records.to_json(table) == [KRATEO[0], KRATEO[1]]


def test_numbers_become_label_text_and_null_labels_are_absent() -> None:
    table, errors = records.from_json([{"labels": {"n": 3, "f": 2.5, "i": 4.0, "z": None}, "value": 1}])
    assert errors == []
    assert records.to_json(table) == [
        {"labels": {"n": "3", "f": "2.5", "i": "4"}, "value": 1.0, "timestamp": None}]


def test_missing_value_and_timestamp_are_null() -> None:
    table, _ = records.from_json([{"labels": {"a": "b"}}])
    assert table.column("__value__").null_count == 1
    assert table.column("__timestamp__").null_count == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"not arrow at all", b"".join(records.write_ipc([pa.record_batch({"a": ["x"] * 100})]))[:-40]],
    ids=["empty", "garbage", "truncated"],
)
def test_unreadable_ipc_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput, match="Arrow IPC"):
        list(records.read_ipc(data))


def test_mistyped_ipc_columns_are_invalid_input() -> None:
    batch = pa.record_batch({"a": [1], "__value__": ["x"]})
    with pytest.raises(InvalidInput) as err:
        list(records.read_ipc(b"".join(records.write_ipc([batch]))))
    assert sorted(e.loc for e in err.value.errors) == ["__value__", "a"]


def test_samples_to_records_drops_name_and_stamps_time() -> None:
    batch = pa.record_batch({"__name__": ["m", "m"], "__value__": [1.0, 2.0], "a": ["x", None]})
    out = records.samples_to_records(batch, 1733400000)
    assert out.schema.names == ["__value__", "a", "__timestamp__"]
    assert out.schema.field("__timestamp__").type == pa.int64()
    assert out.column("__timestamp__").to_pylist() == [1733400000] * 2


def test_split_rechunks_to_at_most_max_rows() -> None:
    small = pa.record_batch({"a": [str(i) for i in range(7)]})
    other = pa.record_batch({"b": ["z"] * 5})
    out = list(records.split([small, small, other], 3))
    assert [b.num_rows for b in out] == [3, 3, 3, 3, 2, 3, 2]
    assert sum((b.column(0).to_pylist() for b in out[:5]), []) == small.column(0).to_pylist() * 2


def test_exposition_to_upload_records_gives_krateos_scraper_records() -> None:
    text = b'# HELP billed_cost \n# TYPE billed_cost gauge\nbilled_cost{BilledCost="27000",RegionId=""} 27000\n'
    batches = [records.samples_to_records(b, 1733400000) for b in exposition.parse([text])]
    back = pa.Table.from_batches(records.read_ipc(b"".join(records.write_ipc(batches))))
    assert records.to_json(back) == [
        {"labels": {"BilledCost": "27000", "RegionId": ""}, "value": 27000.0, "timestamp": 1733400000}]
    assert not math.isnan(back.column("__value__")[0].as_py())
