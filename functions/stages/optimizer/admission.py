"""The compositions' mutating admission webhook: AdmissionReview in, AdmissionReview out, always allowed.

Trigger:     POST an AdmissionReview v1 (the API server, MutatingWebhookConfiguration, CREATE and
             UPDATE of compositions).
Input:       the composition in the review; usage series through the database handler's `cyclic`
             notebook (Basic auth with the composition's handler credentials, exact resource match);
             carbon intensity forecasts (else history) from the carbon tables.
Output:      day-2 (UPDATE): `/spec/optimization` = the JSON *string* of Krateo's per-resource objects
             `{resourceid, metricname, unit, optimization{from,to,resourceDelta}}`; day-1 (CREATE):
             placement annotations (functions/models/optimizer.py says where). Both only when the OPA
             policy (policies/optimizer.rego) decides so; it also clamps and filters.
Side effects: none (sideEffects: None): windows are cached in memory. Events
             io.finops.optimization.computed / .skipped go to K_SINK in the background.
Idempotency: a pure function of the object, the data and the policy; a repeated review gets the same
             patch (cached windows).
Never blocks: every failure, malformed review and timeout (FINOPS_OPTIMIZER_BUDGET_S, under the
             webhook's timeoutSeconds) answers `allowed: true` without a patch (so a usage read that fails
             never overwrites the previous spec.optimization), with the reason in the
             logs, the answer's warnings and an event. A computation cut short keeps running and fills
             the cache, so the next UPDATE of the same composition is answered from it.
"""

from __future__ import annotations

import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from functions import events
from functions.codecs import json_limits
from functions.errors import FinopsError, InvalidInput
from functions.logs import get_logger
from functions.models import optimizer as model
from functions.stages.optimizer.deps import Deps
from functions.stages.optimizer.placement import place
from functions.stages.optimizer.rightsizing import rightsizing

__all__ = ["fail_open", "handle"]

log = get_logger("optimizer")


@dataclass(frozen=True)
class _Decision:
    """One admission's outcome: the patch (maybe empty) and why."""

    patch: list[dict[str, Any]]
    reasons: list[str]
    data: dict[str, Any]


def handle(body: bytes, deps: Deps) -> dict[str, Any]:
    """AdmissionReview in, AdmissionReview out; always allowed, within the budget, whatever happens."""
    started = time.monotonic()
    try:
        raw = json_limits.loads(body)
    except orjson.JSONDecodeError as exc:
        return _skip("admission.k8s.io/v1", "", "", "", f"malformed AdmissionReview: not JSON ({exc})", deps)
    except InvalidInput as exc:
        return _skip("admission.k8s.io/v1", "", "", "", f"malformed AdmissionReview: {exc.message}", deps)
    api, uid = model.request_uid(raw)
    try:
        parsed = model.AdmissionReview.model_validate(raw)
    except ValidationError as exc:
        fields = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
        return _skip(api, uid, "", "", f"malformed AdmissionReview ({fields})", deps)
    req = parsed.request
    subject = _subject(req)
    quiet = deps if not req.dry_run else None  # a dry run (kubectl diff) announces nothing
    try:
        policy_input = _policy_input(req)
        early = _screen(req, policy_input, deps)  # inline: the policy's cheap `applies`, no I/O
        if early is not None:
            return _answered(api, uid, subject, req.operation, early, started, quiet)
        future = deps.pool.submit(_decide, req, policy_input, deps)
        try:
            decision = future.result(timeout=max(0.0, deps.settings.budget_s - (time.monotonic() - started)))
        except FutureTimeout:
            future.cancel()  # still queued: never runs; already running: finishes and fills the cache
            return _skip(api, uid, subject, req.operation,
                         f"no decision within {deps.settings.budget_s:g} s; allowed unchanged (the windows land with a later update)", quiet)
    except FinopsError as exc:
        return _skip(api, uid, subject, req.operation, exc.message, quiet)
    except Exception as exc:  # noqa: BLE001 - an admission never fails: fail open, say why
        log.exception("optimizer failed", extra={"subject": subject, "uid": uid})
        return _skip(api, uid, subject, req.operation, f"internal error ({type(exc).__name__}; the optimizer's log has the details)", quiet)
    return _answered(api, uid, subject, req.operation, decision, started, quiet)


def fail_open(body: bytes, reason: str) -> dict[str, Any]:
    """An allowed answer echoing whatever uid the body carries, when the optimizer cannot even start."""
    try:
        raw = json_limits.loads(body)
    except (orjson.JSONDecodeError, InvalidInput):
        raw = None
    api, uid = model.request_uid(raw)
    return _skip(api, uid, "", "", reason, None)


def _answered(api: str, uid: str, subject: str, operation: str, decision: _Decision, started: float,
              deps: Deps | None) -> dict[str, Any]:
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    what = "optimization patched" if decision.patch else "optimization not patched"
    log.info(what, extra={"subject": subject, "uid": uid, "operation": operation, "ms": elapsed_ms,
                          "reasons": decision.reasons})
    if decision.patch and deps is not None:
        _emit(deps, events.OPTIMIZATION_COMPUTED, subject, {"operation": operation, **decision.data, "reasons": decision.reasons})
    return model.admission_response(api, uid, decision.patch, decision.reasons)


def _subject(req: model.AdmissionRequest) -> str:
    obj = req.object or {}
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = (meta or {}).get("name") or req.name
    return f"{obj.get('kind') or req.kind.kind}/{req.namespace or (meta or {}).get('namespace', '')}/{name}"


def _skip(api: str, uid: str, subject: str, operation: str, reason: str, deps: Deps | None) -> dict[str, Any]:
    log.warning("admission allowed without optimization", extra={"uid": uid, "subject": subject, "reason": reason})
    if deps is not None:
        _emit(deps, events.OPTIMIZATION_SKIPPED, subject or "unknown", {"operation": operation, "uid": uid, "reason": reason})
    return model.admission_response(api, uid, None, [f"finops optimizer: {reason}"])


def _emit(deps: Deps, type_: str, subject: str, data: dict[str, Any]) -> None:
    """Best effort, in the background: an event never delays or fails an admission (dropped when the
    sink is so slow that deps.EVENT_BACKLOG events already wait)."""
    publish = deps.publish
    if publish is None:
        return
    event = events.new(type_, f"/finops/{deps.settings.source_service or 'optimizer'}", data, subject=subject)

    def send() -> None:
        try:
            publish(event)
        except Exception as exc:  # noqa: BLE001 - logged, never raised into the admission
            log.warning("optimization event not delivered", extra={"type": type_, "error": str(exc)})
        finally:
            deps.event_slots.release()

    if not deps.event_slots.acquire(blocking=False):
        log.warning("optimization event dropped: the sink is behind", extra={"type": type_, "subject": subject})
        return
    deps.event_pool.submit(send)


def _policy_input(req: model.AdmissionRequest) -> dict[str, Any]:
    obj = req.object or {}
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    return {
        "operation": req.operation,
        "object": {"apiVersion": obj.get("apiVersion", ""), "kind": obj.get("kind", ""),
                   "metadata": {k: (meta or {}).get(k) for k in ("name", "namespace", "labels", "annotations")}},
        "proposals": {"rightsizing": [], "placement": None, "allowed_regions": []},
    }


def _screen(req: model.AdmissionRequest, policy_input: dict[str, Any], deps: Deps) -> _Decision | None:
    """The answer when there is nothing to compute (no object, another operation, the policy does not
    apply); None when the optimizer must look at data."""
    if req.object is None or req.operation not in ("CREATE", "UPDATE"):
        return _Decision([], [f"nothing to optimize on {req.operation}"], {})
    if deps.policy.applies(policy_input):
        return None
    reasons = (deps.policy.decide(policy_input).get("decision") or {}).get("reasons")  # only on this rare path
    return _Decision([], list(reasons or ["not a composition this optimizer handles"]), {})


def _decide(req: model.AdmissionRequest, policy_input: dict[str, Any], deps: Deps) -> _Decision:
    obj = req.object or {}
    notes: list[str] = []
    if req.operation == "UPDATE":
        items, notes = rightsizing(obj, deps)
        if items is None:
            return _Decision([], notes, {})
        policy_input["proposals"]["rightsizing"] = items
    else:
        try:
            wanted = model.placement_request(obj, deps.now())
        except ValueError as exc:
            return _Decision([], [str(exc)], {})
        if wanted is None:
            return _Decision([], [f"no placement asked (annotation {model.ALLOWED_REGIONS})"], {})
        placement = place(wanted, deps)
        policy_input["proposals"]["placement"] = placement
        policy_input["proposals"]["allowed_regions"] = wanted.allowed_regions
    decision = deps.policy.decide(policy_input).get("decision") or {}
    reasons = notes + [str(r) for r in decision.get("reasons") or []]
    if not decision.get("mutate"):
        return _Decision([], reasons or ["the policy decided not to mutate"], {})
    if req.operation == "UPDATE":
        chosen = list(decision.get("rightsizing") or [])
        text = orjson.dumps(chosen).decode("utf-8")
        return _Decision(model.add_op(obj, ["spec", "optimization"], text), reasons, {"rightsizing": chosen})
    chosen_place = decision.get("placement")
    if not isinstance(chosen_place, dict):
        return _Decision([], reasons or ["the policy refused the placement"], {})
    values = {model.PLACEMENT_REGION: str(chosen_place["region"]), model.PLACEMENT_START: str(chosen_place["start"]),
              model.PLACEMENT_MESSAGE: str(chosen_place.get("message", ""))}
    return _Decision(model.annotation_ops(obj, values), reasons, {"placement": chosen_place})
