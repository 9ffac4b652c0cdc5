"""Evaluations per second of the optimizer's policy on the embedded OPA engine (EmbeddedOpa.decide).

One typical UPDATE input: a listed VmAzure composition with 10 rightsizing proposals (one clamped,
one dropped). `ours` = EmbeddedOpa.decide (input to JSON, the Go engine's evaluation of
data.finops.optimizer.{applies,decision}, the answer back from JSON). `baseline` = the same input
dict round-tripped through json.dumps/json.loads in the same run: the floor any out-of-process
engine pays just for moving the input. ratio = ours_s / baseline_s (how many JSON round-trips one
decision costs). Env: FINOPS_BENCH_POLICY_EVALS (default 2000). Writes .bench/policy_decide.json.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from functions.clients.policy import EmbeddedOpa

EVALS = int(os.environ.get("FINOPS_BENCH_POLICY_EVALS", "2000"))
REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / ".bench"


def typical_input() -> dict[str, Any]:
    deltas = [-95, -69, -40, -35, -20, -12, 3, 10, 25, 40]  # one beyond -80, one below min_abs_delta
    items = [{"resourceid": f"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm{i}",
              "metricname": "Percentage CPU" if i % 2 else "Available Memory Bytes",
              "unit": "Percent" if i % 2 else "Bytes",
              "optimization": {"from": f"{(18 + i) % 24}:00", "to": f"{(6 + i) % 24}:00", "resourceDelta": d}}
             for i, d in enumerate(deltas)]
    return {"operation": "UPDATE",
            "object": {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure",
                       "metadata": {"name": "vm-demo", "namespace": "demo-system",
                                    "labels": {"app.kubernetes.io/name": "vm-demo"},
                                    "annotations": {"krateo.io/release-name": "vm-demo"}}},
            "proposals": {"rightsizing": items, "placement": None, "allowed_regions": ["westeurope", "northeurope"]}}


def best_of(fn: Callable[[], object], n: int, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - started)
    return best


def test_policy_decide_rate() -> None:
    opa = EmbeddedOpa(REPO / "policies")
    the_input = typical_input()
    decision = opa.decide(the_input)["decision"]
    assert decision["mutate"] is True and len(decision["rightsizing"]) == 9 and len(decision["reasons"]) == 2

    ours_s = best_of(lambda: opa.decide(the_input), EVALS)
    baseline_s = best_of(lambda: json.loads(json.dumps(the_input)), EVALS)
    result = {"name": "policy_decide", "evals": EVALS, "items": 10,
              "ours_s": round(ours_s, 4), "baseline_s": round(baseline_s, 4),
              "ours_evals_per_s": round(EVALS / ours_s), "baseline_evals_per_s": round(EVALS / baseline_s),
              "ours_us_per_eval": round(ours_s / EVALS * 1e6, 1), "ratio": round(ours_s / baseline_s, 1)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "policy_decide.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    assert result["ours_evals_per_s"] > 50  # an admission webhook must answer well inside its 10 s timeout
