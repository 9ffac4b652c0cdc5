"""Parsing FOCUS-shaped exposition text (45 labels): ours vs prometheus-client's parser.

The same text (our render of ROWS FOCUS samples) is parsed by `exposition.parse` (batches fully
built) and by `text_string_to_metric_families` (every sample materialised). ratio = baseline / ours,
must be >= 1. Results in .bench/exposition_parse.json.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from functions.codecs import exposition
from tests.bench._exposition_bench import ROWS, best_of, focus_samples, report


def test_parse_is_faster_than_prometheus_client() -> None:
    batch, _ = focus_samples(ROWS)
    data = b"".join(exposition.render([batch]))
    text = data.decode()
    chunks = [data[i : i + (1 << 16)] for i in range(0, len(data), 1 << 16)]

    def ours() -> int:
        return sum(b.num_rows for b in exposition.parse(chunks))

    def baseline() -> int:
        return sum(len(f.samples) for f in text_string_to_metric_families(text))

    assert ours() == ROWS
    result = report("exposition_parse", ROWS, best_of(ours), best_of(baseline, 1))
    assert result["ratio"] >= 1.0
