"""Optimizer: the compositions' mutating admission webhook, Krateo's GET /optimize, and the periodic day-2 ping.

Trigger:     POST an AdmissionReview v1 (the API server, MutatingWebhookConfiguration, CREATE and
             UPDATE of compositions); GET /optimize (Krateo's moving-window microservice contract);
             a PingSource tick naming composition kinds (periodic day-2: the label trick).
Input:       the composition in the review; usage series through the database handler's `cyclic`
             notebook (Basic auth with the composition's handler credentials, exact resource match);
             carbon intensity forecasts (else history) from the carbon tables.
Output:      day-2 (UPDATE): `/spec/optimization` = the JSON *string* of Krateo's per-resource objects
             `{resourceid, metricname, unit, optimization{from,to,resourceDelta}}`; day-1 (CREATE):
             placement annotations (functions/models/optimizer.py says where). Both only when the OPA
             policy (policies/optimizer.rego) decides so; it also clamps and filters.
Side effects: none on the admission path (sideEffects: None): windows are cached in memory. The ping
             patches the `optimization` label of each listed composition (cluster only). Events
             io.finops.optimization.computed / .skipped go to K_SINK in the background.
Idempotency: an admission is a pure function of the object, the data and the policy; a repeated
             review gets the same patch (cached windows), a repeated ping only bumps a label again.
Outbound:    GET /optimize calls only the hosts of FINOPS_OUTBOUND_ALLOW (default the cluster's Services)
             and the configured handler; every call passes the link-local guard (functions.clients.outbound).
Never blocks: every failure, malformed review and timeout (FINOPS_OPTIMIZER_BUDGET_S, under the
             webhook's timeoutSeconds) answers `allowed: true` without a patch (so a usage read that fails
             never overwrites the previous spec.optimization), with the reason in the
             logs, the answer's warnings and an event. A computation cut short keeps running and fills
             the cache, so the next UPDATE of the same composition is answered from it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from pydantic import ValidationError

from functions import events
from functions.algorithms import carbon_placement, moving_window
from functions.clients import endpoint as endpoint_client
from functions.clients import kube
from functions.clients.db import Database
from functions.clients.kube import ResourceReader
from functions.clients.outbound import DEFAULT as GUARD_ONLY
from functions.clients.outbound import OutboundPolicy
from functions.clients.policy import PolicyEngine
from functions.codecs import json_limits
from functions.errors import FieldError, FinopsError, InvalidInput, Unauthorized, Unavailable
from functions.logs import get_logger
from functions.models import optimizer as model
from functions.storage import tables

log = get_logger("optimizer")

PING_PARALLEL = 8  # compositions labelled at once by the day-2 ping
EVENT_BACKLOG = 256  # events waiting for a slow sink before new ones are dropped (logged)
PREFERRED_METRIC = "Percentage CPU"  # GET /optimize answers one object: Krateo's metric when present


class ObjectReader(Protocol):
    """Any namespaced object of the cluster (compositions, Azure VMs); None when absent or unsupported."""

    def get_resource(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...


class CarbonData(Protocol):
    """Carbon intensity per region on an hourly grid: [(time, gCO2/kWh)], oldest first."""

    def forecast(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]: ...

    def history(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]: ...


@dataclass
class WindowCache:
    """Computed windows per (handler URL, credentials, table, resource, mode), reused for `ttl` seconds; bounded."""

    ttl: float
    max_entries: int = 50_000
    _items: dict[tuple[str, ...], tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)
    _running: dict[tuple[str, ...], Future[list[dict[str, Any]]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, ...]) -> list[dict[str, Any]] | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def get_or_compute(self, key: tuple[str, ...], compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The cached value, else one computation per key at a time: concurrent callers wait for it."""
        cached = self.get(key)
        if cached is not None:
            return cached
        with self._lock:
            running = self._running.get(key)
            leader = running is None
            if running is None:
                running = self._running[key] = Future()
        if not leader:
            return running.result()
        try:
            items = compute()
        except BaseException as exc:
            running.set_exception(exc)
            raise
        else:
            self.put(key, items)
            running.set_result(items)
            return items
        finally:
            with self._lock:
                self._running.pop(key, None)

    def put(self, key: tuple[str, ...], items: list[dict[str, Any]]) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.max_entries:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v[0] >= now}
                if len(self._items) >= self.max_entries:
                    self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, items)


@dataclass
class Deps:
    """What the optimizer needs, built once per process (main.py) or per test."""

    settings: model.OptimizerSettings
    reader: ResourceReader
    policy: PolicyEngine
    objects: ObjectReader | None = None
    carbon: CarbonData | None = None
    publish: Callable[[events.Event], None] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    cache: WindowCache = field(default_factory=lambda: WindowCache(900.0))
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="optimizer"))
    event_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="optimizer-events"))
    event_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(EVENT_BACKLOG))


@dataclass(frozen=True)
class Decision:
    """One admission's outcome: the patch (maybe empty) and why."""

    patch: list[dict[str, Any]]
    reasons: list[str]
    data: dict[str, Any]


# ---- admission -------------------------------------------------------------------------------------


def review(body: bytes, deps: Deps) -> dict[str, Any]:
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


def _answered(api: str, uid: str, subject: str, operation: str, decision: Decision, started: float,
              deps: Deps | None) -> dict[str, Any]:
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    what = "optimization patched" if decision.patch else "optimization not patched"
    log.info(what, extra={"subject": subject, "uid": uid, "operation": operation, "ms": elapsed_ms,
                          "reasons": decision.reasons})
    if decision.patch and deps is not None:
        _emit(deps, events.OPTIMIZATION_COMPUTED, subject, {"operation": operation, **decision.data, "reasons": decision.reasons})
    return model.admission_response(api, uid, decision.patch, decision.reasons)


def fail_open(body: bytes, reason: str) -> dict[str, Any]:
    """An allowed answer echoing whatever uid the body carries, when the optimizer cannot even start."""
    try:
        raw = json_limits.loads(body)
    except (orjson.JSONDecodeError, InvalidInput):
        raw = None
    api, uid = model.request_uid(raw)
    return _skip(api, uid, "", "", reason, None)


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
    sink is so slow that EVENT_BACKLOG events already wait)."""
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


def _screen(req: model.AdmissionRequest, policy_input: dict[str, Any], deps: Deps) -> Decision | None:
    """The answer when there is nothing to compute (no object, another operation, the policy does not
    apply); None when the optimizer must look at data."""
    if req.object is None or req.operation not in ("CREATE", "UPDATE"):
        return Decision([], [f"nothing to optimize on {req.operation}"], {})
    if deps.policy.applies(policy_input):
        return None
    reasons = (deps.policy.decide(policy_input).get("decision") or {}).get("reasons")  # only on this rare path
    return Decision([], list(reasons or ["not a composition this optimizer handles"]), {})


def _decide(req: model.AdmissionRequest, policy_input: dict[str, Any], deps: Deps) -> Decision:
    obj = req.object or {}
    notes: list[str] = []
    if req.operation == "UPDATE":
        items, notes = rightsizing(obj, deps)
        if items is None:
            return Decision([], notes, {})
        policy_input["proposals"]["rightsizing"] = items
    else:
        try:
            wanted = model.placement_request(obj, deps.now())
        except ValueError as exc:
            return Decision([], [str(exc)], {})
        if wanted is None:
            return Decision([], [f"no placement asked (annotation {model.ALLOWED_REGIONS})"], {})
        placement = place(wanted, deps)
        policy_input["proposals"]["placement"] = placement
        policy_input["proposals"]["allowed_regions"] = wanted.allowed_regions
    decision = deps.policy.decide(policy_input).get("decision") or {}
    reasons = notes + [str(r) for r in decision.get("reasons") or []]
    if not decision.get("mutate"):
        return Decision([], reasons or ["the policy decided not to mutate"], {})
    if req.operation == "UPDATE":
        chosen = list(decision.get("rightsizing") or [])
        text = orjson.dumps(chosen).decode("utf-8")
        return Decision(model.add_op(obj, ["spec", "optimization"], text), reasons, {"rightsizing": chosen})
    chosen_place = decision.get("placement")
    if not isinstance(chosen_place, dict):
        return Decision([], reasons or ["the policy refused the placement"], {})
    values = {model.PLACEMENT_REGION: str(chosen_place["region"]), model.PLACEMENT_START: str(chosen_place["start"]),
              model.PLACEMENT_MESSAGE: str(chosen_place.get("message", ""))}
    return Decision(model.annotation_ops(obj, values), reasons, {"placement": chosen_place})


# ---- day-2: moving-window rightsizing ---------------------------------------------------------------


def rightsizing(obj: dict[str, Any], deps: Deps) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """Krateo's per-resource windows for a composition, and a note for each resource without data.

    None (nothing to write, spec.optimization kept) when the composition names no resource yet or a
    managed VM cannot be resolved: writing what is left would erase the windows of the others.
    """
    ids, notes = resource_ids(obj, deps)
    if notes:
        return None, notes + ["spec.optimization kept as it is until every managed VM resolves"]
    if not ids:
        return None, ["no resources to right-size (annotation finops.krateo.io/resource-ids or status.managed)"]
    source = model.usage_source(obj)
    endpoint = _handler_endpoint(source, deps)
    items: list[dict[str, Any]] = []
    failed: list[str] = []
    for rid in ids:
        try:
            found = windows(endpoint, source.table, rid, deps)
        except FinopsError as exc:
            failed.append(f"{rid}: {exc.message}")
            continue
        if not found:
            notes.append(f"{rid}: no usage data in {source.table}")
        items.extend(found)
    if failed:  # Krateo would write what it got (even "[]"): a passing outage would erase good windows
        raise Unavailable(f"usage not readable, spec.optimization kept as it is: {'; '.join(failed)}")
    return items, notes


def resource_ids(obj: dict[str, Any], deps: Deps) -> tuple[list[str], list[str]]:
    """The annotation's ids, else the managed VMs' `status.id` (read from the API, as Krateo's policy does)."""
    listed = model.annotations_of(obj).get(model.RESOURCE_IDS)
    if listed is not None:
        return model.split_ids(listed), []
    ids: list[str] = []
    notes: list[str] = []
    for vm in model.managed_vms(obj):
        body = deps.objects.get_resource(vm["apiVersion"], vm["resource"], vm["namespace"], vm["name"]) if deps.objects else None
        rid = ((body or {}).get("status") or {}).get("id")
        if isinstance(rid, str) and rid:
            ids.append(rid)
        else:
            notes.append(f"virtualmachines {vm['namespace']}/{vm['name']}: no status.id")
    return list(dict.fromkeys(ids)), notes


def _handler_endpoint(source: model.UsageSource, deps: Deps) -> endpoint_client.Endpoint:
    """The composition's `<db-config>-endpoint` Secret: server-url, username, password (Krateo's keys)."""
    return kube.endpoint_from_secret(deps.reader, source.secret_namespace, source.secret_name,
                                     "spec.metricExporter.scraperDatabaseConfigRef",
                                     {"server-url": deps.settings.dbhandler_url} if deps.settings.dbhandler_url else None)


def windows(endpoint: endpoint_client.Endpoint, table: str, resource_id: str, deps: Deps,
            authorization: str | None = None, policy: OutboundPolicy = GUARD_ONLY) -> list[dict[str, Any]]:
    """One resource's windows (one per metric), from the cache or the handler's usage notebook."""
    mode = deps.settings.mode
    # every credential is part of the key (hashed): a caller never gets windows its credentials could not read
    who = authorization if authorization is not None else repr(endpoint)
    key = (endpoint.server_url, hashlib.sha256(who.encode()).hexdigest(), table, resource_id, mode)
    return deps.cache.get_or_compute(key, lambda: _compute_windows(endpoint, table, resource_id, deps, authorization, policy))


def _compute_windows(endpoint: endpoint_client.Endpoint, table: str, resource_id: str, deps: Deps,
                     authorization: str | None, policy: OutboundPolicy) -> list[dict[str, Any]]:
    mode = deps.settings.mode
    payload = usage(endpoint, table, resource_id, deps.settings.usage_notebook, authorization, policy)
    try:
        series = moving_window.parse_cyclic(payload)
    except ValueError as exc:
        raise Unavailable(f"usage notebook {deps.settings.usage_notebook!r} answered an unexpected shape: {exc}") from exc
    return [moving_window.optimize(rid, metric, unit, samples, mode)
            for rid, metric, unit, samples in series if rid == resource_id and samples]


def usage(endpoint: endpoint_client.Endpoint, table: str, resource_id: str, notebook: str,
          authorization: str | None = None, policy: OutboundPolicy = GUARD_ONLY) -> Any:
    """POST <handler>/compute/<notebook> {table_name, resource_name}, as Krateo's microservice does;
    `policy` says where the call (and any redirect) may go."""
    base = endpoint.server_url.rstrip("/")
    url = (base if base.endswith("/compute") else base + "/compute") + f"/{notebook}"
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    body = orjson.dumps({"table_name": table, "resource_name": resource_id})
    resp = endpoint_client.request("POST", url, endpoint=None if authorization else endpoint, headers=headers,
                                   content=body, timeout=10.0, policy=policy)
    if resp.status_code in (401, 403):
        raise Unauthorized(f"the database handler refused the credentials ({resp.status_code})")
    # The upstream's own text goes to the log, never into the answer: a caller names the URL, so an
    # echo would read any allowed Service's replies through the optimizer.
    if resp.status_code != 200:
        log.warning("usage notebook call failed", extra={"url": url, "status": resp.status_code, "reply": resp.text[:300]})
    if resp.status_code == 422:
        raise InvalidInput(f"usage notebook {notebook!r} failed (HTTP 422; the optimizer's log has its error)",
                           [FieldError("table_name", "the usage notebook failed")])
    if resp.status_code == 404:
        raise InvalidInput(f"the database handler has no notebook {notebook!r} (apply crds/examples/notebook-cyclic.yaml)",
                           [FieldError("FINOPS_OPTIMIZER_USAGE_NOTEBOOK", "not found")])
    if resp.status_code != 200:
        raise Unavailable(f"usage notebook {notebook!r}: HTTP {resp.status_code}")
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError as exc:
        log.warning("usage notebook answered non-JSON", extra={"url": url, "reply": resp.text[:200]})
        raise Unavailable(f"usage notebook {notebook!r} answered non-JSON") from exc


def optimize_endpoint(args: Mapping[str, str], authorization: str | None, deps: Deps) -> dict[str, Any]:
    """Krateo's GET /optimize?resource_name=&table_name=&dbhandler_url=: one object for one resource.

    The caller's Basic credentials are forwarded to the handler (Krateo's contract), and only to a
    handler the allow-list names (request_policy): anything else is 403 before any call. No data -> the
    contract with empty from/to and resourceDelta 0 (Krateo's legacy code failed on an empty series).
    """
    missing = [k for k in ("resource_name", "table_name", "dbhandler_url") if not args.get(k)]
    if missing:
        raise InvalidInput("missing query parameters", [FieldError(k, "required") for k in missing])
    policy = request_policy(deps.settings)
    url = policy.check(args["dbhandler_url"], "dbhandler_url")
    if url.query or url.fragment:
        raise InvalidInput("dbhandler_url must be the handler's base URL, without a query or fragment",
                           [FieldError("dbhandler_url", "query or fragment not allowed")])
    if not authorization:
        raise InvalidInput("Authorization (Basic, the database handler's credentials) is required",
                           [FieldError("Authorization", "missing")])
    endpoint = endpoint_client.Endpoint(server_url=str(url))
    rid, table = args["resource_name"], args["table_name"]
    items = windows(endpoint, table, rid, deps, authorization, policy)
    for item in items:
        if item["metricname"] == PREFERRED_METRIC:
            return item
    if items:
        return items[0]
    return moving_window.optimize(rid, PREFERRED_METRIC, "Percent", [], deps.settings.mode)


def request_policy(settings: model.OptimizerSettings) -> OutboundPolicy:
    """Where a URL named by a request may point: FINOPS_OUTBOUND_ALLOW and the configured handler."""
    return OutboundPolicy.for_requests(settings.outbound_allow, [settings.dbhandler_url])


# ---- periodic day-2: Krateo's label trick, driven by a PingSource ---------------------------------------


class CompositionLabeller(Protocol):
    def list_resources(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def set_label(self, api_version: str, plural: str, namespace: str, name: str, key: str, value: str) -> None: ...


def ping(data: Any, labeller: CompositionLabeller | None, now: datetime) -> dict[str, Any]:
    """Set `optimization=<epoch seconds>` on every composition of the listed kinds: each becomes an UPDATE
    admission, which this webhook answers (Krateo's CronJob per composition, as one PingSource).

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
    with ThreadPoolExecutor(PING_PARALLEL, thread_name_prefix="optimizer-ping") as pool:
        labelled = list(pool.map(label, targets))
    log.info("compositions labelled for day-2", extra={"labelled": len(labelled), "value": stamp})
    return {"result": "labelled", "labelled": len(labelled), "compositions": labelled, "value": stamp}


# ---- day-1: carbon-aware placement ------------------------------------------------------------------


def place(wanted: model.PlacementRequest, deps: Deps) -> dict[str, Any]:
    """Region and start with the lowest forecast intensity; history (seasonal naive) when no fresh
    forecast covers the window; the first allowed region, now, when there is no data at all."""
    now = deps.now()
    regions = wanted.allowed_regions
    tried: list[str] = []
    if deps.carbon is not None:
        try:
            series = deps.carbon.forecast(regions, now - timedelta(hours=1), wanted.deadline)
            chosen = carbon_placement.choose(series, regions, wanted.duration, now, wanted.deadline, source="forecast")
            if chosen is not None:
                return _placement_dict(chosen)
            tried.append("no forecast covers the window")
            history = deps.carbon.history(regions, now - timedelta(days=7), now)
            horizon = wanted.deadline - now
            naive = {r: carbon_placement.seasonal_naive_forecast(h, now, horizon) for r, h in history.items() if h}
            chosen = carbon_placement.choose(naive, regions, wanted.duration, now, wanted.deadline, source="history")
            if chosen is not None:
                return _placement_dict(chosen)
            tried.append("no history either")
        except FinopsError as exc:
            tried.append(exc.message)
    else:
        tried.append("no carbon data configured (FINOPS_CARBON_DB_URL)")
    message = f"default placement: first allowed region, start now ({'; '.join(tried)})"
    return {"region": regions[0], "start": _rfc3339(now), "mean_intensity": None, "baseline_intensity": None,
            "source": "default", "message": message}


def _placement_dict(p: carbon_placement.Placement) -> dict[str, Any]:
    return {"region": p.region, "start": _rfc3339(p.start), "mean_intensity": round(p.mean_intensity, 3),
            "baseline_intensity": round(p.baseline_intensity, 3), "source": p.source, "message": p.message}


def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SqlCarbonData:
    """Carbon tables through the `crate` client (CrateDB, or the handler's embedded /_sql).

    Both tables: `region STRING, "timestamp" TIMESTAMP, intensity DOUBLE`; a missing table is no data.
    """

    def __init__(self, db: Database, forecast_table: str, history_table: str) -> None:
        self._db = db
        self._forecast, self._history = tables.valid_table_name(forecast_table), tables.valid_table_name(history_table)

    def forecast(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]:
        return self._read(self._forecast, regions, start, end)

    def history(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]:
        return self._read(self._history, regions, start, end)

    def _read(self, table: str, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]:
        if not regions or not self._db.table_exists(table):
            return {}
        marks = ", ".join("?" for _ in regions)
        result = self._db.execute(
            f'SELECT region, "timestamp", intensity FROM "{table}" WHERE region IN ({marks}) '
            f'AND "timestamp" >= ? AND "timestamp" < ? ORDER BY region, "timestamp"',
            [*regions, _rfc3339(start), _rfc3339(end)])
        out: dict[str, list[tuple[datetime, float]]] = {}
        for region, ts, value in result.rows:
            if value is not None:
                out.setdefault(str(region), []).append((datetime.fromtimestamp(ts / 1000, UTC), float(value)))
        return out
