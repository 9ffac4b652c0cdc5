"""Periodic day-2: label every composition of the listed kinds, so each gets its UPDATE admission.

Trigger:     a PingSource tick (eventsources/20-optimizer-day2-pingsource.yaml) naming composition kinds.
Input:       the compositions of those kinds, listed through the Kubernetes API.
Output:      how many compositions were labelled, and which (the reply event io.finops.optimization.labelled).
Side effects: patches the `optimization` label of each listed composition (cluster only); each patch
             is an UPDATE the admission webhook answers with fresh windows (Krateo's CronJob per
             composition, as one PingSource).
Idempotency: a repeated tick only bumps the label again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from functions.errors import FieldError, InvalidInput
from functions.logs import get_logger
from functions.models import optimizer as model
from functions.stages.optimizer.deps import CompositionLabeller

__all__ = ["handle"]

log = get_logger("optimizer")

PARALLEL = 8  # compositions labelled at once: each label change waits for its UPDATE admission


def handle(data: Any, labeller: CompositionLabeller | None, now: datetime) -> dict[str, Any]:
    """Set `optimization=<epoch seconds>` on every composition of the listed kinds.

    data: {"compositions": [{"apiVersion": "composition.krateo.io/v1-0-0", "resource": "vmazures",
    "namespace": optional}]}. Without the Kubernetes API (local stack) there is nothing to label.
    """
    kinds = data.get("compositions") if isinstance(data, dict) else None
    if not isinstance(kinds, list) or not kinds:
        raise InvalidInput("the ping must list compositions",
                           [FieldError("data.compositions", "expected [{apiVersion, resource, namespace?}]")])
    bad = [FieldError(f"data.compositions[{i}]", "needs apiVersion and resource")
           for i, k in enumerate(kinds) if not (isinstance(k, dict) and k.get("apiVersion") and k.get("resource"))]
    if bad:
        raise InvalidInput("the ping lists malformed compositions", bad)
    if labeller is None:
        return {"result": "nothing to do", "labelled": 0,
                "message": "periodic day-2 labels compositions through the Kubernetes API (FINOPS_KUBE=cluster)"}
    stamp = str(int(now.timestamp()))
    targets: list[tuple[str, str, str, str]] = []
    for kind in kinds:
        api, plural = str(kind["apiVersion"]), str(kind["resource"])
        for item in labeller.list_resources(api, plural, kind.get("namespace") or None):
            meta = item.get("metadata") or {}
            targets.append((api, plural, str(meta.get("namespace", "")), str(meta.get("name", ""))))

    def label(target: tuple[str, str, str, str]) -> str:
        api, plural, namespace, name = target
        labeller.set_label(api, plural, namespace, name, model.OPTIMIZATION_LABEL, stamp)
        return f"{plural}/{namespace}/{name}"

    # each label change waits for its UPDATE admission (up to the webhook's budget): a few at a time
    with ThreadPoolExecutor(PARALLEL, thread_name_prefix="optimizer-label") as pool:
        labelled = list(pool.map(label, targets))
    log.info("compositions labelled for day-2", extra={"labelled": len(labelled), "value": stamp})
    return {"result": "labelled", "labelled": len(labelled), "compositions": labelled, "value": stamp}
