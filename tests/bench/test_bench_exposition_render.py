"""Rendering FOCUS samples (45 labels) as exposition text: ours vs prometheus-client.

Baseline = `Gauge(...).labels(...).set()` for every row + `generate_latest` (what a stock exporter
does); ours = `exposition.render` of the same sample table, stream fully consumed. ratio =
baseline / ours, must be >= 1. Results in .bench/exposition_render.json.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from functions.codecs import exposition
from tests.bench._exposition_bench import ROWS, best_of, focus_samples, report


def test_render_is_faster_than_prometheus_client() -> None:
    batch, rows = focus_samples(ROWS)
    names = list(rows[0])

    def ours() -> int:
        return sum(len(c) for c in exposition.render([batch]))

    def baseline() -> int:
        registry = CollectorRegistry()
        gauge = Gauge("billed_cost", "", names, registry=registry)
        for row, value in zip(rows, batch.column("__value__").to_pylist(), strict=True):
            gauge.labels(**row).set(value)
        return len(generate_latest(registry))

    assert ours() > 0 and baseline() > 0
    result = report("exposition_render", ROWS, best_of(ours), best_of(baseline, 1))
    assert result["ratio"] >= 1.0
