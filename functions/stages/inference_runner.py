"""Inference runner: an InferenceRun's Contract, run in this function (krateoplatformops/kserve-controller's
controller and its runners/krateo-ttm/main.go in one, without a Job).

Trigger:     `io.finops.cr.applied` for an InferenceRun without spec.schedule (a one-shot run), or the
             ping of a scheduled run's PingSource (`dev.knative.sources.ping`, data {kind, namespace,
             name}). `io.finops.cr.deleted` does nothing: there is no Job to remove, the rows stay.
Input:       the InferenceRun (re-read: a late event runs the newest spec; one for a run that is gone
             does nothing), its InferenceConfig, the endpoint Secrets its `krateo` providers name.
Output:      the Contract (functions.codecs.inference_contract) in `status.contract`, base64 as Krateo
             writes its []byte; then the steps, named by the exit codes of Krateo's runner: contract (2)
             -> input (3) -> infer (4) -> output (5). The outcome goes into the run's status and into the
             reply, io.finops.inference.completed or io.finops.inference.failed. Status: the runner's own
             condition `Succeeded` (as Knative's and Tekton's runs have): Unknown (Running) while it runs,
             True (Succeeded), or False with the failed step as reason (ContractFailed, InputFailed,
             InferFailed, OutputFailed) and its message; plus `status.lastRun`. Ready and Synced are the
             bridge's (is the CR valid, are its events and PingSources delivered): the runner never
             writes them. Each writer replaces only its own condition types, merged into the conditions
             read just before its patch (a merge patch replaces the whole list).
Side effects: input: `<verb> <server-url>/<path>` of spec.storage.input.krateo.api with the endpoint
             Secret's credentials, body = the run's parameters (JSON object of strings, as Krateo:
             the provider's `payload` is not sent), answer
             `{"result": [[number or null, ...], ...]}` (B series of L points; null = a missing point,
             sent to the model as null: the forecaster reads it as a gap or front padding; a member
             `series`, if any, goes to the output notebook as JSON text). infer: POST to kserve.modelUrl
             (`http://` put in front when it has no http:// or https:// scheme, in any case; the outbound
             guard refuses link-local and metadata addresses unless FINOPS_OUTBOUND_ALLOW_LINK_LOCAL
             lists the host, as for the exporter), KServe Open Inference Protocol v2:
             `{"inputs": [{"name": modelInputName, "shape": [B, L, 1], "datatype": "FP32", "data": ...}]}`,
             predictions = outputs[0].data. output: spec.storage.output.krateo.api, body = `{job_uid:
             <run uid>, pod_uid: <run id>, predictions: "<JSON text of the numbers>", ...parameters,
             run_id: <run id>, model_name: <kserve.modelName, else modelUrl>, series: "<JSON text of
             the input's series member>" (when it has one)}`.
Idempotency: every trigger is an execution with a key: the run's metadata.generation for a one-shot
             run, the tick's event id for a scheduled one. `status.lastRun` records the key, the run's
             uid and generation and the outcome: a key that Succeeded is never run again (a
             redelivered event, the bridge's resume after a restart: an empty 2xx). A key Running is not
             started twice: the event is refused with 503 and Retry-After (Unavailable), so the broker
             keeps it and delivers it again, instead of consuming it while the process that runs it may
             have died. Staleness rule: a Running record whose startedAt is older than the run's time
             limit (spec.timeoutSeconds capped by FINOPS_INFERENCE_RUN_TIMEOUT_S) plus 60 s is dead (no
             request outlives that limit: the runner stops itself there, Knative's request timeout is
             above it), and the next delivery runs the key again. The inference-runner Triggers retry
             long enough (knative/base/30-triggers.yaml) to reach that point with the default limits.
Known limit: `status.lastRun` holds one key. A late redelivery of tick N that arrives after tick N+1
             ran finds N+1's key there and runs tick N again (a second set of rows under N's run id);
             the broker delivers late only after a failure, within its retry window.

The output contract (what an output notebook may rely on): `run_id` (= `pod_uid`) names the
execution; it is derived from the run's uid and the execution key, so a retried output step and a
redelivered execution send the same id. That is all this runner guarantees: the predictions of a
re-run are the model's answer to the input read again, which may have changed meanwhile. Replacing
the rows of (job_uid, run_id) atomically (delete them and insert the new ones in one transaction) is
what an output notebook must do with that id to hold exactly one set per execution; the
forecastoutput example in crds/examples replaces them (upsert by key, then the leftovers deleted:
idempotent, not one transaction). `run_id`, `model_name` and `series` are written after the
parameters (a parameter of those names cannot change them); job_uid, pod_uid and predictions can be overridden by parameters, as in Krateo. The
tritonoutput example in crds/examples keys its rows on (jobuid, poduid, prediction, counter) with
ON CONFLICT DO NOTHING (this project's example, not Krateo's stock notebook): the same execution
sent twice with the same predictions stores its rows once, but a re-run whose input changed adds
rows with the new predictions next to the old ones.

Krateo's faults, fixed here:
- a one-shot run re-ran by itself: a finished Job with a TTL was garbage-collected and the next poll
  created it again. Here a one-shot run runs once per generation (change the spec to run it again).
- a failed Job was deleted and re-created at every poll, forever. Here each step is tried at most
  FINOPS_INFERENCE_MAX_ATTEMPTS times when the failure is one a retry can cure (network, 5xx, 429,
  timeouts), waiting FINOPS_INFERENCE_BACKOFF_S, doubled each time, at most FINOPS_INFERENCE_MAX_BACKOFF_S;
  a refusal (4xx, bad data) is not retried. Then the run is Failed (status, event) and stays so until
  an event for it comes again: the bridge's retry once a missing InferenceConfig or Secret exists,
  `finops apply` of a changed run, a new annotation in a cluster.
- empty input (`{"result": []}`, `[[]]`, no `result`) crashed the runner (a Go panic): here it fails
  the input step, saying so. Ragged rows, non-numbers and a row of nulls only fail it too.
- a retried Job had a new pod_uid, so its rows could not be told from another run's: here the run id
  is stable across retries and redeliveries (above).
- the providers were read when used: a config whose output is not `krateo` ran the model and failed
  at the end (exit 5). Here the contract step checks both providers, modelUrl and modelInputName first.
- spec.timeoutSeconds is the run's time limit, as Krateo's activeDeadlineSeconds (also capped by
  FINOPS_INFERENCE_RUN_TIMEOUT_S, below the Knative request timeout).
Differences that are not faults: spec.image, spec.credentialsRef and spec.autoDeletePolicy are
accepted and do nothing (there is no Job nor image: this function is the runner); notebook calls get
`Accept: application/json` and `Content-Type: application/json` unless the config's headers set them
(Krateo's client refuses a non-JSON answer with 406); predictions are kept as the model sent them
(Krateo cast them to float32); nested `data` in the model's answer is flattened row-major; a model
answering no predictions fails the infer step (Krateo stored nothing and succeeded).
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from functions.clients import endpoint as endpoint_client
from functions.clients import kube
from functions.clients.kube import ResourceReader, StatusWriter
from functions.clients.outbound import OutboundPolicy
from functions.codecs import inference_contract as ic
from functions.errors import (
    FieldError,
    FinopsError,
    InvalidInput,
    Refused,
    TimedOut,
    Unavailable,
    field_errors,
)
from functions.events import CR_APPLIED, CR_DELETED, INFERENCE_COMPLETED, INFERENCE_FAILED, PING
from functions.logs import get_logger
from functions.models.crs import API
from functions.models.inference import RunCondition
from functions.models.k8s import now_rfc3339
from functions.models.refs import ConfigRef
from functions.settings.inference import InferenceRunnerSettings

__all__ = ["handle"]
"""This stage's public names (a test guards them): its handle()."""

log = get_logger("inference_runner")
KIND, CONFIG_KIND = "InferenceRun", "InferenceConfig"
STEPS = {"contract": 2, "input": 3, "infer": 4, "output": 5}
"""Each step's exit code in Krateo's runner (runners/krateo-ttm/main.go)."""
PROVIDER = "krateo"
JSON = "application/json"
STALE_MARGIN_S = 60.0
"""A Running record older than the run's time limit plus this is dead (module doc)."""
CONDITION = "Succeeded"
"""The runner's own condition type (Ready and Synced are the bridge's)."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class RunReply:
    """The reply event of one execution: type, subject (`InferenceRun/<ns>/<name>`) and data."""

    type: str
    subject: str
    data: dict[str, Any]


@dataclass(frozen=True)
class _Execution:
    """One trigger of one run: its key, its stable id, its time limit."""

    ref: ConfigRef
    uid: str
    generation: int | None
    key: str
    trigger: str
    id: str
    budget_s: float
    started_at: str
    deadline: float = field(compare=False)

    def status(self, outcome: str, job_name: str | None, tries: int | None, **more: Any) -> dict[str, Any]:
        """status.lastRun and status.attempts (functions.models.inference.LastRun): every key written
        each time, so a merge patch keeps nothing of an older run."""
        last = {"runId": self.id, "key": self.key, "trigger": self.trigger, "uid": self.uid, "generation": self.generation,
                "jobName": job_name, "outcome": outcome, "step": None, "exitCode": None, "predictions": None,
                "startedAt": self.started_at, "finishedAt": None, "message": None}
        return {"lastRun": last | more, "attempts": tries}

    def event_data(self, **more: Any) -> dict[str, Any]:
        return {"run": str(self.ref), "uid": self.uid, "generation": self.generation, "runId": self.id,
                "trigger": self.trigger} | more


class _StepFailed(Exception):
    """A step that failed for good: which, why, after how many tries, and whether a retry could have helped."""

    def __init__(self, step: str, error: FinopsError, attempts: int = 1, retryable: bool = False,
                 raw: bytes | None = None) -> None:
        super().__init__(error.message)
        self.step, self.error, self.attempts, self.retryable = step, error, attempts, retryable
        self.raw = raw  # the Contract, when it was built before the step failed


@dataclass(frozen=True)
class _Plan:
    """What the contract step found: the Contract and the APIs of its two krateo providers."""

    contract: ic.Contract
    input_api: API
    output_api: API


def handle(event_type: str, subject: str | None, data: Any, event_id: str, reader: ResourceReader,
           writer: StatusWriter, settings: InferenceRunnerSettings) -> RunReply | None:
    """One event for an InferenceRun; None when there is nothing to do (module doc)."""
    ref = ConfigRef.from_event(subject, data)
    if ref.kind != KIND:
        raise InvalidInput(f"inference_runner runs InferenceRun, not {ref.kind}", [FieldError("kind", "expected InferenceRun")])
    if event_type == CR_DELETED:
        return None
    if event_type not in (CR_APPLIED, PING):
        raise InvalidInput(f"inference_runner takes {CR_APPLIED} or {PING}", [FieldError("type", f"got {event_type!r}")])
    run = reader.get(KIND, ref.namespace, ref.name)
    if run is None:
        log.info("run gone, nothing to do", extra={"run": str(ref)})
        return None
    spec = _member(run, "spec")
    if spec.get("schedule") and event_type == CR_APPLIED:
        _record_contract(ref, run, reader, writer)  # a scheduled run runs on its ticks only, as Krateo's CronJob
        return None
    execution = _execution(ref, run, event_type, event_id, settings)
    if _already(run, execution):
        return None
    return _run(run, execution, reader, writer, settings)


# ---- the execution and its key --------------------------------------------------------------------


def _execution(ref: ConfigRef, run: Mapping[str, Any], event_type: str, event_id: str,
               settings: InferenceRunnerSettings) -> _Execution:
    meta = _member(run, "metadata")
    spec = _member(run, "spec")
    uid = str(meta.get("uid") or "")
    raw_generation = meta.get("generation")
    generation = raw_generation if isinstance(raw_generation, int) and not isinstance(raw_generation, bool) else None
    if spec.get("schedule") and event_type == PING:
        key = f"tick:{event_id}"
    elif generation:
        key = f"generation:{generation}"
    else:  # a store without generations: the spec itself says when it changed
        key = "spec:" + hashlib.sha256(_canonical(spec).encode()).hexdigest()[:16]
    run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"finops-inference:{uid or ref}:{key}"))
    timeout = spec.get("timeoutSeconds")
    budget = min(settings.run_timeout_s, float(timeout)) if isinstance(timeout, int) and timeout > 0 else settings.run_timeout_s
    return _Execution(ref, uid, generation, key, event_type, run_id, budget, now_rfc3339(), time.monotonic() + budget)


def _canonical(value: Mapping[str, Any]) -> str:
    try:
        return ic.go_json(value)
    except ValueError:
        return repr(value)


def _already(run: Mapping[str, Any], ex: _Execution) -> bool:
    """True: this execution succeeded before (nothing to do). Running and not yet stale: Unavailable,
    so the broker keeps the event and tries again (its process may have died: module doc)."""
    status = _member(run, "status")
    last = _member(status, "lastRun")
    if last.get("key") != ex.key or last.get("uid", ex.uid) != ex.uid:
        return False
    if last.get("outcome") == "Succeeded":
        log.info("run already succeeded, not run again", extra={"run": str(ex.ref), "key": ex.key, "runId": ex.id})
        return True
    left = ex.budget_s + STALE_MARGIN_S - _age_s(last.get("startedAt"))
    if last.get("outcome") == "Running" and left > 0:
        raise Unavailable(f"{ex.ref} {ex.key} is running since {last.get('startedAt')}: not started twice; taken as "
                          f"dead {left:.0f} s from now (the run's time limit of {ex.budget_s:g} s + {STALE_MARGIN_S:g} s)",
                          max(1, min(int(left) + 1, 600)))
    return False


def _age_s(stamp: Any) -> float:
    try:
        started = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - started).total_seconds()


# ---- one execution --------------------------------------------------------------------------------


def _run(run: Mapping[str, Any], ex: _Execution, reader: ResourceReader, writer: StatusWriter,
         settings: InferenceRunnerSettings) -> RunReply:
    raw: bytes | None = None
    tries: dict[str, int] = {}  # step -> tries so far
    try:
        raw, plan = _contract(ex.ref, run, reader)
        _write(reader, writer, ex.ref, ("Unknown", "Running", f"running {ex.key} (run {ex.id})"),
               {"contract": _b64(raw)} | ex.status("Running", plan.contract.job_name, 0))
        log.info("run started", extra={"run": str(ex.ref), "key": ex.key, "runId": ex.id, "jobName": plan.contract.job_name})
        read = _tried("input", lambda: _input(plan, ex, reader, settings), tries, ex, settings)
        matrix = read.matrix
        predictions = _tried("infer", lambda: _infer(plan.contract, matrix, ex, settings), tries, ex, settings)
        _tried("output", lambda: _output(plan, ex, predictions, read.series, reader, settings), tries, ex, settings)
    except _StepFailed as failed:
        return _failed(ex, raw or failed.raw, failed, max(1, sum(tries.values())), reader, writer)
    except FinopsError:  # the API server down before the run started (503, redelivered), a bad setting
        raise
    except Exception:  # a fault of ours: the status says where, the error table answers 500 (redelivered)
        _failed(ex, raw, _StepFailed(list(tries)[-1] if tries else "contract", FinopsError(
            "internal error: see the runner's logs")), max(1, sum(tries.values())), reader, writer)
        raise
    return _succeeded(ex, raw, plan, matrix, predictions, tries, reader, writer)


def _succeeded(ex: _Execution, raw: bytes, plan: _Plan, matrix: list[list[float | None]], predictions: list[float],
               tries: dict[str, int], reader: ResourceReader, writer: StatusWriter) -> RunReply:
    now = now_rfc3339()
    message = (f"stored {len(predictions)} predictions of {plan.contract.kserve.model_name or plan.contract.kserve.model_url} "
               f"at {now} (run {ex.id})")
    last = ex.status("Succeeded", plan.contract.job_name, sum(tries.values()), exitCode=0,
                     predictions=len(predictions), finishedAt=now, message=message)
    _record(reader, writer, ex, ("True", "Succeeded", message), {"contract": _b64(raw)} | last)
    data = ex.event_data(jobName=plan.contract.job_name, predictions=len(predictions),
                         inputShape=[len(matrix), len(matrix[0]), 1], attempts=dict(tries), startedAt=ex.started_at,
                         finishedAt=now)
    log.info("run succeeded", extra=data)
    return RunReply(INFERENCE_COMPLETED, str(ex.ref), data)


def _failed(ex: _Execution, raw: bytes | None, failed: _StepFailed, total: int, reader: ResourceReader,
            writer: StatusWriter) -> RunReply:
    now = now_rfc3339()
    code = STEPS[failed.step]
    tries = f" after {failed.attempts} tries" if failed.attempts > 1 else ""
    message = f"{failed.step} step failed (Krateo exit code {code}){tries}: {failed.error.message}"[:2000]
    reason = failed.step.capitalize() + "Failed"
    name = ic.parse(raw).job_name if raw is not None else None
    extra = ex.status("Failed", name, total, step=failed.step, exitCode=code, finishedAt=now, message=message)
    if raw is not None:
        extra["contract"] = _b64(raw)
    errors = [e.to_dict() for e in failed.error.errors]
    log.warning("run failed", extra={"run": str(ex.ref), "runId": ex.id, "step": failed.step, "error": failed.error.message,
                                     "errors": errors, "attempts": failed.attempts})
    _record(reader, writer, ex, ("False", reason, message), extra)
    return RunReply(INFERENCE_FAILED, str(ex.ref), ex.event_data(
        step=failed.step, exitCode=code, error=failed.error.message, errors=errors, attempts=failed.attempts,
        retryable=failed.retryable))


def _record(reader: ResourceReader, writer: StatusWriter, ex: _Execution, succeeded: tuple[str, str, str],
            extra: dict[str, Any]) -> None:
    """The outcome into the run's status, best effort: the work is done and the reply says how it went.
    A status left Running is dead after the run's time limit plus 60 s, and the next delivery of the
    event runs the key again under the same run id; the output is sent again with that id (whether the
    rows are then replaced or added depends on the output notebook: module doc)."""
    try:
        _write(reader, writer, ex.ref, succeeded, extra)
    except FinopsError as exc:
        log.warning("outcome not written into the run's status", extra={"run": str(ex.ref), "runId": ex.id, "error": exc.message})


def _write(reader: ResourceReader, writer: StatusWriter, ref: ConfigRef, succeeded: tuple[str, str, str] | None,
           extra: dict[str, Any]) -> None:
    """`extra` and the `Succeeded` condition (status, reason, message; None: left as it is) into the
    run's status. The conditions are read again just before the patch and only `Succeeded` is replaced,
    so the bridge's Ready and Synced (and anything else) written meanwhile stay; a run gone is ignored."""
    fresh = reader.get(KIND, ref.namespace, ref.name)
    if fresh is None:
        return
    old = _conditions(fresh)
    if succeeded is not None:
        status, reason, message = succeeded
        before = next((c for c in old if c.get("type") == CONDITION), {})
        now = now_rfc3339()
        since = str(before.get("lastTransitionTime") or now) if before.get("status") == status else now
        cond = RunCondition.model_validate({"type": CONDITION, "status": status, "lastTransitionTime": since,
                                         "reason": reason, "message": message})
        old = [c for c in old if c.get("type") != CONDITION] + [cond.model_dump(by_alias=True)]
    writer.set_conditions(KIND, ref.namespace, ref.name, old, extra)


def _tried(step: str, call: Callable[[], _T], tries: dict[str, int], ex: _Execution,
           settings: InferenceRunnerSettings) -> _T:
    """One step, tried again after a failure a retry can cure, with exponential backoff (module doc)."""
    for attempt in range(1, settings.max_attempts + 1):
        tries[step] = attempt
        try:
            return call()
        except (InvalidInput, Refused, TimedOut) as exc:  # refusals, and the run's own time limit
            raise _StepFailed(step, exc, attempt) from exc
        except Unavailable as exc:
            wait = min(settings.backoff_s * 2 ** (attempt - 1), settings.max_backoff_s)
            if time.monotonic() + wait >= ex.deadline:
                late = Unavailable(f"{exc.message} (and the run's time limit of {ex.budget_s:g} s leaves no time to try "
                                   "again: spec.timeoutSeconds, FINOPS_INFERENCE_RUN_TIMEOUT_S)", exc.retry_after)
                raise _StepFailed(step, late, attempt, retryable=True) from exc
            if attempt == settings.max_attempts:
                raise _StepFailed(step, exc, attempt, retryable=True) from exc
            log.warning("step failed, trying again", extra={"run": str(ex.ref), "step": step, "attempt": attempt,
                                                            "wait_s": wait, "error": exc.message})
            time.sleep(wait)
        except FinopsError as exc:
            raise _StepFailed(step, exc, attempt) from exc
    raise AssertionError("unreachable: max_attempts >= 1")


# ---- the contract step ----------------------------------------------------------------------------


def _contract(ref: ConfigRef, run: Mapping[str, Any], reader: ResourceReader) -> tuple[bytes, _Plan]:
    """Build the Contract as the controller does, read it back as a runner does, check it can run."""
    try:
        config = reader.get(CONFIG_KIND, *_config_ref(ref, run))
        if config is None:
            namespace, name = _config_ref(ref, run)
            raise InvalidInput(f"InferenceConfig {namespace}/{name} not found", [FieldError("spec.configRef", "not found")])
        raw = ic.render(ic.build(run, config))
    except InvalidInput as exc:
        raise _StepFailed("contract", exc) from exc
    try:
        return raw, _plan(ic.parse(raw), run)
    except InvalidInput as exc:
        raise _StepFailed("contract", exc, raw=raw) from exc


def _config_ref(ref: ConfigRef, run: Mapping[str, Any]) -> tuple[str, str]:
    spec = _member(run, "spec")
    target = spec.get("configRef")
    if not isinstance(target, dict) or not isinstance(target.get("name"), str) or not target["name"]:
        raise InvalidInput("spec.configRef {name, namespace} is required", [FieldError("spec.configRef", "required")])
    namespace = target.get("namespace") or ref.namespace
    checked = ConfigRef(CONFIG_KIND, namespace if isinstance(namespace, str) else "", target["name"])
    return checked.namespace, checked.name


def _plan(contract: ic.Contract, run: Mapping[str, Any]) -> _Plan:
    errors: list[FieldError] = []
    if not contract.kserve.model_url:
        errors.append(FieldError("config.spec.kserve.modelUrl", "required: the model's v2 infer URL"))
    if not contract.kserve.model_input_name:
        errors.append(FieldError("config.spec.kserve.modelInputName", "required: the name of the v2 input tensor"))
    timeout = _member(run, "spec").get("timeoutSeconds")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
        errors.append(FieldError("run.spec.timeoutSeconds", "must be a whole number of seconds, 0 or more"))
    apis = [_krateo_api(providers, f"config.spec.storage.{side}", errors)
            for side, providers in (("input", contract.input), ("output", contract.output))]
    if errors or apis[0] is None or apis[1] is None:
        raise InvalidInput("the Contract cannot run: " + "; ".join(f"{e.loc} {e.msg}" for e in errors[:5]), errors)
    return _Plan(contract, apis[0], apis[1])


def _krateo_api(providers: Mapping[str, Any], loc: str, errors: list[FieldError]) -> API | None:
    """The `krateo` provider's {"api": ...}; another provider needs a runner that understands it."""
    if PROVIDER not in providers:
        others = ", ".join(sorted(providers)) or "none"
        errors.append(FieldError(loc, f"this runner reads the krateo provider only (found: {others})"))
        return None
    provider = providers[PROVIDER]
    raw = provider.get("api") if isinstance(provider, dict) else None
    if not isinstance(raw, dict):
        errors.append(FieldError(f"{loc}.krateo.api", "required: {endpointRef, path, verb, headers}"))
        return None
    try:
        api = API.model_validate(raw)
    except ValidationError as exc:
        errors += [FieldError(f"{loc}.krateo.api.{e.loc}", e.msg) for e in field_errors(exc)]
        return None
    if api.endpoint_ref is None:
        errors.append(FieldError(f"{loc}.krateo.api.endpointRef", "required: the endpoint Secret (server-url, credentials)"))
        return None
    return api


def _record_contract(ref: ConfigRef, run: Mapping[str, Any], reader: ResourceReader, writer: StatusWriter) -> None:
    """A scheduled run applied: its Contract in status.contract now (Krateo's Observe does so), best effort."""
    try:
        raw, _ = _contract(ref, run, reader)
    except _StepFailed as failed:
        log.info("scheduled run: contract not recorded", extra={"run": str(ref), "error": failed.error.message})
        return
    _write(reader, writer, ref, None, {"contract": _b64(raw)})


# ---- the input, infer and output steps ------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """The input notebook's answer: the B x L matrix (None = a missing point) and its `series`
    member, passed on to the output notebook as JSON text (None when the answer has none)."""

    matrix: list[list[float | None]]
    series: str | None


def _input(plan: _Plan, ex: _Execution, reader: ResourceReader, settings: InferenceRunnerSettings) -> _Input:
    api = plan.input_api
    body = ic.go_json(dict(plan.contract.parameters or {})).encode()
    answer = _call_api(api, "config.spec.storage.input.krateo.api.endpointRef", body, reader, ex, settings)
    return _matrix(answer, settings)


def _infer(contract: ic.Contract, matrix: list[list[float | None]], ex: _Execution,
           settings: InferenceRunnerSettings) -> list[float]:
    url = contract.kserve.model_url
    url = url if url.lower().startswith(("http://", "https://")) else "http://" + url
    tensor = {"name": contract.kserve.model_input_name, "shape": [len(matrix), len(matrix[0]), 1], "datatype": "FP32",
              "data": matrix}
    body = orjson.dumps({"inputs": [tensor]}, option=orjson.OPT_SORT_KEYS)
    answer = _call("POST", url, None, {"Content-Type": JSON, "Accept": JSON}, body, ex, settings)
    return _predictions(answer, settings)


def _output(plan: _Plan, ex: _Execution, predictions: list[float], series: str | None, reader: ResourceReader,
            settings: InferenceRunnerSettings) -> None:
    body = {"job_uid": plan.contract.job_id, "pod_uid": ex.id, "predictions": orjson.dumps(predictions).decode(),
            **dict(plan.contract.parameters or {}), "run_id": ex.id}
    body["model_name"] = plan.contract.kserve.model_name or plan.contract.kserve.model_url  # after the parameters: facts
    if series is not None:  # of this execution (the model called, what the input read), not what a run says
        body["series"] = series
    _call_api(plan.output_api, "config.spec.storage.output.krateo.api.endpointRef", ic.go_json(body).encode(), reader, ex,
              settings)


def _call_api(api: API, loc: str, body: bytes, reader: ResourceReader, ex: _Execution,
              settings: InferenceRunnerSettings) -> bytes:
    """A krateo provider's call: its endpoint Secret (re-read on every try), path, verb and headers."""
    secret = api.endpoint_ref
    assert secret is not None  # checked by the contract step
    endpoint = kube.endpoint_from_secret(reader, secret.namespace, secret.name, loc)
    headers = endpoint_client.parse_headers(list(api.headers))
    for name in ("Accept", "Content-Type"):
        if name.lower() not in {k.lower() for k in headers}:
            headers[name] = JSON
    return _call(api.verb or "GET", endpoint_client.join_url(endpoint.server_url, api.path), endpoint, headers, body, ex,
                 settings)


def _call(method: str, url: str, endpoint: endpoint_client.Endpoint | None, headers: dict[str, str], body: bytes,
          ex: _Execution, settings: InferenceRunnerSettings) -> bytes:
    """One HTTP call within what is left of the run's time; 2xx -> the body (at most max_answer_bytes);
    429, 5xx and 408 -> Unavailable (tried again); any other status -> InvalidInput."""
    left = ex.deadline - time.monotonic()
    if left <= 0:
        raise TimedOut(f"the run passed its time limit of {ex.budget_s:g} s (spec.timeoutSeconds, "
                       "FINOPS_INFERENCE_RUN_TIMEOUT_S)")
    response = endpoint_client.request(method, url, endpoint=endpoint, headers=headers, content=body,
                                       timeout=min(settings.call_timeout_s, left), stream=True,
                                       policy=OutboundPolicy.guard_only(settings.outbound_allow_link_local))
    status = response.status_code
    try:
        content = _read(response.iter_bytes(), settings.max_answer_bytes, cut=not 200 <= status < 300)
    finally:
        response.close()
    if 200 <= status < 300:
        return content
    where = f"{method} {url} -> {status}: {content[:2000].decode('utf-8', 'replace')}"
    if status in (408, 429) or status >= 500:
        after = response.headers.get("retry-after", "")
        raise Unavailable(where, int(after) if after.isdigit() else 5)
    raise InvalidInput(where, [FieldError("status", str(status))])


def _read(chunks: Iterator[bytes], limit: int, cut: bool) -> bytes:
    """The body; past `limit` bytes refused, or (`cut`: an error's body, only quoted) cut off there."""
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > limit:
            if cut:
                break
            raise InvalidInput(f"the answer is larger than {limit} bytes (FINOPS_INFERENCE_MAX_ANSWER_BYTES)",
                               [FieldError("body", f"over {limit} bytes")])
    return bytes(out[:limit])


def _matrix(answer: bytes, settings: InferenceRunnerSettings) -> _Input:
    """`{"result": [[number or null, ...], ...], "series": ...}`: at least one row, every row as long,
    with at least one number; null is a missing point (JSON has no NaN), sent to the model as null,
    which the forecaster reads as a gap or front padding. `series` (any JSON) is passed on as text."""
    doc = _json(answer, "the input notebook")
    rows = doc.get("result") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise InvalidInput('the input notebook did not answer {"result": [[number, ...], ...]}',
                           [FieldError("result", f"got {answer[:200].decode('utf-8', 'replace')}")])
    if not rows or not rows[0]:
        raise InvalidInput("the input notebook returned no data (an empty result): nothing to forecast from",
                           [FieldError("result", "empty")])
    width = len(rows[0])
    errors = [FieldError(f"result[{i}]", f"has {len(r)} values, the first row {width}") for i, r in enumerate(rows) if len(r) != width]
    if len(rows) * width > settings.max_values:
        errors.append(FieldError("result", f"more than {settings.max_values} values (FINOPS_INFERENCE_MAX_VALUES)"))
    errors += _non_numbers((f"result[{i}][{j}]", v) for i, row in enumerate(rows) for j, v in enumerate(row)
                           if v is not None)
    errors += [FieldError(f"result[{i}]", "no observed value: every point is null")
               for i, row in enumerate(rows) if all(v is None for v in row)][:5]
    if errors:
        raise InvalidInput("the input notebook's result is not a B x L matrix of numbers", errors)
    series = doc.get("series")
    return _Input([[None if v is None else float(v) for v in row] for row in rows],
                  None if series is None else orjson.dumps(series).decode())


def _predictions(answer: bytes, settings: InferenceRunnerSettings) -> list[float]:
    """outputs[0].data, nested lists flattened row-major; at least one number."""
    doc = _json(answer, "the model")
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not outputs or not isinstance(outputs[0], dict):
        raise InvalidInput("the model's answer has no outputs (KServe v2: {\"outputs\": [{\"data\": [...]}]})",
                           [FieldError("outputs", "missing or empty")])
    data = outputs[0].get("data")
    flat = [] if data is None else list(_flatten(data))
    errors = _non_numbers((f"outputs[0].data[{i}]", v) for i, v in enumerate(flat))
    if not flat:
        errors.append(FieldError("outputs[0].data", "no predictions"))
    if len(flat) > settings.max_values:
        errors.append(FieldError("outputs[0].data", f"more than {settings.max_values} values (FINOPS_INFERENCE_MAX_VALUES)"))
    if errors:
        raise InvalidInput("the model's outputs[0].data is not a list of numbers", errors)
    return [float(v) for v in flat]


def _flatten(data: Any) -> Iterator[Any]:
    """Nested lists row-major (iteratively: any depth); anything else (a null too) is a cell, judged by the caller."""
    stack = [iter([data])]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            yield item
        else:
            stack.pop()


def _non_numbers(cells: Iterable[tuple[str, Any]], limit: int = 5) -> list[FieldError]:
    """The first cells that are not numbers (null, text, a boolean), by location."""
    bad = (FieldError(loc, f"not a number: {v!r}"[:80]) for loc, v in cells if isinstance(v, bool) or not isinstance(v, int | float))
    return list(islice(bad, limit))


def _json(answer: bytes, who: str) -> Any:
    try:
        return orjson.loads(answer)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"{who} did not answer JSON", [FieldError("body", f"{exc}: {answer[:200]!r}")]) from exc


def _member(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A member that must be an object ({} when absent or not one: the checks say what is wrong)."""
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def _conditions(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    status = _member(run, "status")
    return [dict(c) for c in status.get("conditions") or [] if isinstance(c, dict)]


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
