"""Krateo's forecasting CRs (`ai.krateo.io/v1`): InferenceConfig (what to run) and InferenceRun (one run,
once or on a schedule). The single source of truth for crds/ and schemas/.

Field names, required sets, the autoDeletePolicy enum and the schedule pattern are those of
krateoplatformops/kserve-controller (api/v1/inferenceconfig_types.go, inferencerun_types.go,
storagemap_types.go and its crds/*.yaml), so Krateo's own CRs validate unchanged
(tests/data/krateo-kserve/). Storage providers (`spec.storage.input` / `.output`: provider label ->
provider object) stay free objects in the CRD, as in Krateo's: only the runner that understands a label
reads it. The one our runner reads, `krateo` (an HTTP call through an endpoint Secret, usually a
database-handler notebook: `KrateoStorage`), must have Krateo's shape: the model says so at apply time,
where Krateo's runner failed (exit 3) at run time; the bridge checks its endpoint Secret exists.

Schedules: the model takes what Krateo's pattern takes (5 to 7 cron fields or a descriptor); what a
PingSource can run is decided by functions.models.cron (6 and 7 fields are refused there, with the
reason in the CR's status). Status: Krateo's fields (conditions, `contract` as base64 bytes,
`jobStatus`) plus the runner's `lastRun` and `attempts`; unknown status fields are kept.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, ValidationError, WithJsonSchema, field_validator

from functions.models.crs import API, ConditionedStatus, _Resource
from functions.models.k8s import CamelModel, Condition, ObjectRef

GROUP = "ai.krateo.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
PING_TARGET = "inference"
"""The `finopstarget` of a scheduled run's PingSource ticks (the Trigger to the inference-runner Service filters on it)."""
KRATEO_STORAGE = "krateo"
"""The one storage provider label Krateo's runners know (internal/helpers/storage/storageinterface.go)."""

SCHEDULE_PATTERN = r"(@(annually|yearly|monthly|weekly|daily|midnight|hourly))|((((\d+,)+\d+|(\d+(\/|-)\d+)|\d+|\*) ?){5,7})"
"""Krateo's pattern, verbatim (unanchored: the API server and pydantic both search for it)."""

AutoDeletePolicy = Literal["None", "DeleteOnSuccess", "DeleteOnCompletion"]


def _b64decode(value: Any) -> Any:
    """Text is base64 (the API's form of a []byte); bytes are the contract itself."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError("must be base64 (the API's form of bytes)") from exc
    return value


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


Contract = Annotated[
    bytes, BeforeValidator(_b64decode), PlainSerializer(_b64encode, return_type=str),
    WithJsonSchema({"type": "string", "format": "byte",
                    "description": "The contract JSON, base64 in the API (a Go []byte)."}),
]


class KServeSpec(CamelModel):
    model_name: str | None = Field(default=None, description="Model name; informational, copied into the contract.")
    model_url: str | None = Field(default=None, description="Full Open Inference Protocol v2 infer URL, scheme optional (http:// when none), e.g. forecaster.finops.svc.cluster.local/v2/models/forecaster/infer (our forecaster as knative/base/27-forecaster.yaml deploys it). The runner needs it.")
    model_version: str | None = Field(default=None, description="Protocol version, v2 in Krateo's examples; copied into the contract, not used to call the model.")
    model_input_name: str | None = Field(default=None, description="Name of the v2 input tensor (past_values for TTM, input-0 for sklearn iris).")


class StorageSpec(CamelModel):
    input: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Where the runner reads its input: provider label -> provider object. `krateo`, the label the runner reads, must be {api: {path, verb, headers, payload, endpointRef}}; other labels are passed through to the contract untouched.")
    output: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Where the runner writes the predictions: provider label -> provider object, as input.")

    @field_validator("input", "output")
    @classmethod
    def _krateo_shape(cls, providers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Free objects, except `krateo`, the label our runner reads: Krateo's shape or a clear error now
        (Krateo's runner would exit 3 on it at run time). The map itself is kept as written."""
        if KRATEO_STORAGE in providers:
            try:
                KrateoStorage.model_validate(providers[KRATEO_STORAGE])
            except ValidationError as exc:
                detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
                raise ValueError(f"{KRATEO_STORAGE} must be {{api: {{path, verb, headers, payload, endpointRef}}}} ({detail})") from None
        return providers

    def krateo(self, side: Literal["input", "output"]) -> KrateoStorage | None:
        """The `krateo` provider of one side, parsed (its shape was checked on validation); None without one."""
        provider = getattr(self, side).get(KRATEO_STORAGE)
        return None if provider is None else KrateoStorage.model_validate(provider)


class KrateoStorage(CamelModel):
    """Krateo's `krateo` storage provider (kserve-controller internal/helpers/storage/providers/krateo.go):
    one HTTP call (finops-data-types' API) through an endpoint Secret."""

    api: API = Field(description="The call: path, verb, headers, payload, endpointRef (the Secret with server-url and credentials).")


class InferenceConfigSpec(CamelModel):
    kserve: KServeSpec = Field(default_factory=KServeSpec, description="The model to call (KServe, Open Inference Protocol v2).")
    auto_delete_policy: AutoDeletePolicy = Field(description="Krateo's cleanup of a finished run's Job (any value but None: the Job is removed 300 s after it ends). Accepted for compatibility and does nothing here: there is no Job to clean up (the runner is a function); the run and its status stay until it is deleted.")
    storage: StorageSpec = Field(description="Input and output storage providers (provider label -> free object).")
    image: str = Field(description="The runner image Krateo's controller starts a Job with; kept for compatibility (our runner is a function, no image is pulled).")
    credentials_ref: ObjectRef | None = Field(default=None, description="Image pull Secret of the runner image (Krateo uses its name; the namespace is ignored).")


class _AIResource(_Resource):
    api_version: str = Field(default=API_VERSION, description=API_VERSION)


class InferenceConfig(_AIResource):
    """What to run: the model, where the input comes from and where the predictions go."""

    KIND: ClassVar[str] = "InferenceConfig"
    PLURAL: ClassVar[str] = "inferenceconfigs"
    kind: Literal["InferenceConfig"] = Field(default="InferenceConfig", description="Kind.")
    spec: InferenceConfigSpec = Field(description="Model, storage providers, runner image and cleanup policy.")
    status: ConditionedStatus | None = Field(default=None, description="Observed state.")


class InferenceRunSpec(CamelModel):
    config_ref: ObjectRef = Field(description="The InferenceConfig to run.")
    timeout_seconds: int = Field(strict=True, description="Time limit of one run in seconds, as Krateo's Job activeDeadlineSeconds; 0 means none of its own. FINOPS_INFERENCE_RUN_TIMEOUT_S caps it (the smaller wins) and is the limit when it is 0.")
    parameters: dict[str, str] | None = Field(default=None, description="Passed verbatim in the contract and to the input and output calls (strings only); absent and {} differ in the contract, as in Krateo's (a Go *map).")
    schedule: str | None = Field(default=None, pattern=SCHEDULE_PATTERN, description="Cron schedule (5 fields, or @hourly, @daily, @weekly, @monthly, @yearly, @annually, @midnight) for repeated runs, in UTC; without it the run happens once. 6 and 7 fields pass this pattern (Krateo's) but are refused by the bridge: a PingSource takes 5.")


class ObjectReference(CamelModel):
    """Kubernetes' core/v1 ObjectReference (what Krateo's controller writes into jobStatus)."""

    kind: str | None = Field(default=None, description="Kind of the referent.")
    api_version: str | None = Field(default=None, description="API version of the referent.")
    namespace: str | None = Field(default=None, description="Namespace of the referent.")
    name: str | None = Field(default=None, description="Name of the referent.")
    uid: str | None = Field(default=None, description="UID of the referent.")
    resource_version: str | None = Field(default=None, description="Specific resourceVersion the reference is made to, if any.")
    field_path: str | None = Field(default=None, description="A field of the referent, if the reference is to a part of it.")


class LastRun(CamelModel):
    """The runner's record of the latest run, so a redelivered event or a resumed bridge never runs it
    twice. Written by the inference runner only; fields it adds beyond these are kept."""

    model_config = CamelModel.model_config | {"extra": "allow"}
    run_id: str | None = Field(default=None, description="Stable id of the execution, a UUID derived from the run's metadata.uid and its `key` (not from the id of the event that started it), so a redelivered event or a retried output step sends the same id; sent to the output notebook as run_id and pod_uid.")
    key: str | None = Field(default=None, description="The execution's run key: generation:<metadata.generation> for a one-shot run (spec:<hash of the spec> where the store keeps no generation), tick:<the ping's event id> for each tick of a scheduled one. A key that Succeeded for this uid is not run again; one Running is not started twice (the event is answered 503 with Retry-After, so the broker delivers it again) until it is older than the run's time limit plus 60 s: then its process is taken as dead and the key runs again. One key only: a late redelivery of an older tick runs that tick again.")
    uid: str | None = Field(default=None, description="metadata.uid of the run that ran: a run re-created under the same name is a new one, and a lastRun of another uid does not stop it.")
    trigger: str | None = Field(default=None, description="What started it: the CloudEvent type (io.finops.cr.applied or dev.knative.sources.ping).")
    job_name: str | None = Field(default=None, description="Krateo's job name for the run (inf-<run name>-<first 8 UID alphanumerics>), as in the contract.")
    generation: int | None = Field(default=None, description="metadata.generation of the spec that ran.")
    started_at: str | None = Field(default=None, description="RFC3339 time the run started.")
    finished_at: str | None = Field(default=None, description="RFC3339 time the run ended (none while running).")
    outcome: Literal["Running", "Succeeded", "Failed"] | None = Field(default=None, description="Running, Succeeded or Failed, like the Job states Krateo's controller reads.")
    step: str | None = Field(default=None, description="The step that failed: contract, input, infer or output.")
    exit_code: int | None = Field(default=None, description="Krateo runner's exit code meaning: 0 done, 2 contract or modelUrl, 3 input, 4 inference, 5 output.")
    message: str | None = Field(default=None, description="What happened, for people (the failing step and its reason).")
    predictions: int | None = Field(default=None, description="Number of predicted values handed to the output provider.")


class RunCondition(Condition):
    """A condition of an InferenceRun: the bridge's Ready and Synced, and the runner's Succeeded."""

    type: Literal["Ready", "Synced", "Degraded", "Succeeded"] = Field(  # type: ignore[assignment]
        description="Condition type: Ready and Synced (Krateo style, the bridge's), Succeeded (the inference runner's: Unknown while a run runs, True when it succeeded, False with the failed step as reason).")
    reason: str = Field(description="CamelCase reason: Available, Unavailable, ReconcileSuccess, ReconcileError (Ready, Synced); Running, Succeeded, ContractFailed, InputFailed, InferFailed, OutputFailed (Succeeded).")


class InferenceRunStatus(ConditionedStatus):
    """Krateo's fields (conditions, contract, jobStatus) plus the runner's bookkeeping (lastRun, attempts).
    The bridge writes Ready, Synced, observedGeneration and schedules; the runner its own condition
    Succeeded, contract, lastRun and attempts. Each replaces only its own condition types."""

    conditions: list[RunCondition] = Field(default_factory=list, description="Ready and Synced (the bridge's: the run is valid, its events and PingSources delivered) and Succeeded (the runner's, as Knative's and Tekton's runs: Unknown with reason Running while it runs, True with reason Succeeded, False with the failed step as reason, ContractFailed, InputFailed, InferFailed or OutputFailed, and its message).")  # type: ignore[assignment]

    contract: Contract | None = Field(default=None, description="The contract of the latest run (JSON: jobId, jobName, kserve, input, output, parameters), base64.")
    job_status: ObjectReference | None = Field(default=None, description="Krateo's reference to the run's Job; our runner runs in a function, not a Job, and leaves it unset.")
    last_run: LastRun | None = Field(default=None, description="The latest execution: its run key and run id, trigger, times, outcome, failing step and exit code, message.")
    attempts: int | None = Field(default=None, ge=0, description="Total tries of the latest execution, all its steps together (each step is tried up to FINOPS_INFERENCE_MAX_ATTEMPTS times when a retry can cure its failure); 0 while it runs. io.finops.inference.completed gives the tries per step.")


class InferenceRun(_AIResource):
    """One run of an InferenceConfig: once (cr.applied) or on `spec.schedule` (a PingSource owned by the run)."""

    KIND: ClassVar[str] = "InferenceRun"
    PLURAL: ClassVar[str] = "inferenceruns"
    kind: Literal["InferenceRun"] = Field(default="InferenceRun", description="Kind.")
    spec: InferenceRunSpec = Field(description="The config to run, its deadline, parameters and optional schedule.")
    status: InferenceRunStatus | None = Field(default=None, description="Observed state.")


INFERENCE_KINDS: dict[str, type[_Resource]] = {m.KIND: m for m in (InferenceConfig, InferenceRun)}
