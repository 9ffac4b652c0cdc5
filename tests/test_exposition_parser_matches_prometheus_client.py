"""Our exposition codec gives the samples prometheus-client gives, on real expositions.

Cases:
- prometheus-client's own `generate_latest` of Gauges, Counters, Histograms, Summaries, with tricky
  label values (backslash, quote, newline, unicode, empty) and special values (NaN, +Inf, -Inf, tiny,
  huge): every sample (name, labels, value incl. NaN) equal to `text_string_to_metric_families`.
- the exposition our `render` makes of FOCUS-shaped samples (45 labels): equal, and equal to the input.
- hand-written text with comments, blank lines, timestamps, odd spacing, a trailing comma: equal.
- chunking: any split of the bytes gives the same samples.
- render -> parse (ours) and render -> prometheus-client both give back the input samples exactly
  (null label = absent, "" kept), and `render` writes HELP/TYPE once per family, sorted labels.
- the one documented naming difference: a `# TYPE x counter` family whose samples lack `_total`.
- malformed lines are InvalidInput naming the line, where prometheus-client raises too.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from functions.codecs import exposition
from functions.errors import InvalidInput
from tests.focus_data import focus_rows

Sample = tuple[str, tuple[tuple[str, str], ...], Any]

TRICKY = ["plain", "", "back\\slash", 'quo"te', "new\nline", "ünïcödé ✓ 日本", "\\n literal", 'end\\', "a,b}={c"]


def _key(value: float) -> Any:
    return "NaN" if math.isnan(value) else float(value)


def theirs(text: str) -> list[Sample]:
    return [
        (s.name, tuple(sorted(s.labels.items())), _key(s.value))
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def ours(chunks: list[bytes]) -> list[Sample]:
    out: list[Sample] = []
    for batch in exposition.parse(chunks):
        labels = [n for n in batch.schema.names if n not in ("__name__", "__value__")]
        for row in batch.to_pylist():
            pairs = tuple(sorted((n, row[n]) for n in labels if row[n] is not None))
            out.append((row["__name__"], pairs, _key(row["__value__"])))
    return out


def client_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    gauge = Gauge("g_tricky", "help with \\ and \n newline", ["a", "b"], registry=registry)
    for i, value in enumerate(TRICKY):
        gauge.labels(value, TRICKY[-1 - i]).set([1.5, -0.0, 1e-300, 1e300, 123456789.0, 7][i % 6])
    special = Gauge("g_special", "", ["kind"], registry=registry)
    for kind, value in (("nan", math.nan), ("inf", math.inf), ("ninf", -math.inf), ("big", 2.0**60)):
        special.labels(kind).set(value)
    Gauge("g_nolabels", "", registry=registry).set(3)
    counter = Counter("requests", "reqs", ["code"], registry=registry)
    counter.labels("200").inc(10)
    counter.labels("").inc(0.25)
    hist = Histogram("latency_seconds", "lat", ["route"], buckets=(0.1, 1, 10), registry=registry)
    for route in ("/a", 'q"uote'):
        for v in (0.05, 0.5, 5, 50):
            hist.labels(route).observe(v)
    summary = Summary("sizes", "", ["x"], registry=registry)
    summary.labels("ü").observe(3.5)
    return registry


def focus_batch(n: int) -> pa.RecordBatch:
    rows = list(focus_rows(n))
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    columns = {k: v for k, v in columns.items() if not k.startswith("x_")}
    table: dict[str, Any] = {"__name__": ["billed_cost"] * n, "__value__": [float(r["BilledCost"]) for r in rows]}
    table.update(columns)
    return pa.RecordBatch.from_pydict(table)


HAND_WRITTEN = """\
# a free comment, then HELP/TYPE of a family
# HELP temp Temperature\\nin \\\\ kelvin
# TYPE temp gauge
temp{room="a b",floor="1"} 21.5 1700000000000
temp{floor="2" , room = "c" ,} NaN
temp{room="",floor="3"}   +Inf
  temp{room="d",floor="4"} -Inf\t1700000000000

# TYPE up untyped
up 1
up{job="x"} 0
weird_total{a="1"} 1e3
colon:name{b="}"} -0.5e-3
utf8_label{"my.label"="x",other="y \\\\n \\" } 1"} 2
# TYPE s summary
s{quantile="0.5"} 1
s_sum 2
s_count 3
"""


def generated_texts() -> Iterator[tuple[str, str]]:
    yield "prometheus-client registry", generate_latest(client_registry()).decode()
    yield "our render of FOCUS samples", b"".join(exposition.render([focus_batch(300)])).decode()
    yield "hand-written", HAND_WRITTEN


@pytest.mark.parametrize("label,text", list(generated_texts()), ids=lambda x: x if len(x) < 40 else "")
def test_every_sample_equals_prometheus_client(label: str, text: str) -> None:
    expected = theirs(text)
    assert expected, label
    assert ours([text.encode()]) == expected


@pytest.mark.parametrize("seed", [1, 2, 3], ids=["split-1", "split-2", "split-3"])
def test_any_chunking_gives_the_same_samples(seed: int) -> None:
    data = generate_latest(client_registry()) + HAND_WRITTEN.encode()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), 40))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    assert ours(chunks) == ours([data])


def sample_table_rows(batch: pa.RecordBatch) -> list[Sample]:
    labels = [n for n in batch.schema.names if n not in ("__name__", "__value__")]
    return [
        (r["__name__"], tuple(sorted((n, r[n]) for n in labels if r[n] is not None)), _key(r["__value__"]))
        for r in batch.to_pylist()
    ]


def test_render_round_trips_through_both_parsers() -> None:
    tricky = pa.RecordBatch.from_pydict({
        "__name__": ["a_metric"] * 4 + ["b_metric"] * 2,
        "__value__": [1.0, math.nan, math.inf, -2.5e-12, 27000.0, 0.1 + 0.2],
        "RegionId": ["", "eu", None, "x\\y", 'q"', "\n"],
        "Tags": ["team: a;env: b", None, "", "ü", "multi\nline\\n", "}{,="],
    })
    batches = [tricky, focus_batch(120)]
    expected = [s for b in batches for s in sample_table_rows(b)]
    text = b"".join(exposition.render(batches))
    assert ours([text]) == expected
    assert theirs(text.decode()) == expected


def test_render_writes_help_type_once_sorted_labels_and_empty_values() -> None:
    first = pa.RecordBatch.from_pydict(
        {"__name__": ["billed_cost"], "__value__": [27000.0], "b": ["2"], "RegionId": [""], "a": [None]}
    )
    second = pa.RecordBatch.from_pydict({"__name__": ["billed_cost", "other"], "__value__": [1.0, 2.0]})
    text = b"".join(exposition.render([first, second])).decode()
    assert text == (
        "# HELP billed_cost \n# TYPE billed_cost gauge\n"
        'billed_cost{RegionId="",b="2"} 27000.0\n'
        "billed_cost 1.0\n"
        "# HELP other \n# TYPE other gauge\n"
        "other 2.0\n"
    )


def test_render_streams_chunks_of_bounded_size() -> None:
    chunks = list(exposition.render([focus_batch(3000)] * 2))
    assert len(chunks) > 2
    assert all(64 * 1024 <= len(c) <= 3 * (1 << 19) for c in chunks[:-1])
    assert b"".join(chunks).count(b"# TYPE") == 1


def test_counter_sample_names_are_kept_as_written() -> None:
    text = "# TYPE hits counter\nhits 3\n"
    assert ours([text.encode()]) == [("hits", (), 3.0)]
    assert theirs(text) == [("hits_total", (), 3.0)]  # prometheus-client's OpenMetrics munging


@pytest.mark.parametrize(
    "text,line",
    [
        ('m{a="1"\n', 1),
        ("ok 1\nm{a=1} 2\n", 2),
        ('m{a="1",a="2"} 1\n', 1),
        ('m{__x="1"} 1\n', 1),
        ("m 1_000\n", 1),
        ("m abc\n", 1),
        ("# TYPE m\n", 1),
        ("ok 1\n\n# HELP 9bad x\n", 3),
        ('m{a="1" b="2"} 1\n', 1),
        ('m{a="1"b="2"} 1\n', 1),
        ('m{a="1",x,b="2"} 1\n', 1),
    ],
    ids=["unclosed", "unquoted-value", "duplicate", "reserved", "underscore", "not-a-number", "type-no-kind",
         "bad-help-name", "missing-comma", "glued-pairs", "junk-term"],
)
def test_malformed_lines_are_invalid_input_naming_the_line(text: str, line: int) -> None:
    with pytest.raises(ValueError):
        theirs(text)
    with pytest.raises(InvalidInput, match=f"line {line}:"):
        ours([text.encode()])
