"""Settings of the inference runner (an InferenceRun's Contract: input notebook -> KServe v2 -> output notebook)."""

from __future__ import annotations

from pydantic import Field, model_validator

from functions.settings import _EnvSettings


class InferenceRunnerSettings(_EnvSettings):
    """How hard one run tries and how long it may take (Krateo retried a failed Job forever, once per poll)."""

    max_attempts: int = Field(default=3, ge=1, le=20, alias="FINOPS_INFERENCE_MAX_ATTEMPTS", description="Tries of each step of a run (input, infer, output) when it fails for a reason a retry can cure (network, 5xx, 429, a timeout); a refusal (4xx, bad data) is not retried. The run then fails, reported in its status and an io.finops.inference.failed event.")
    backoff_s: float = Field(default=1.0, ge=0, alias="FINOPS_INFERENCE_BACKOFF_S", description="Wait before the second try of a step, seconds; doubled for each further try.")
    max_backoff_s: float = Field(default=30.0, ge=0, alias="FINOPS_INFERENCE_MAX_BACKOFF_S", description="Longest wait between two tries of a step, seconds.")
    run_timeout_s: float = Field(default=540.0, gt=0, alias="FINOPS_INFERENCE_RUN_TIMEOUT_S", description="Longest a run may take, seconds, whatever its spec.timeoutSeconds says (the smaller wins): keep it below the Service's timeoutSeconds (600).")
    call_timeout_s: float = Field(default=120.0, gt=0, alias="FINOPS_INFERENCE_CALL_TIMEOUT_S", description="Read timeout of one call to a notebook or the model, seconds (within what is left of the run's time).")
    max_answer_bytes: int = Field(default=64 * 1024 * 1024, ge=1024, alias="FINOPS_INFERENCE_MAX_ANSWER_BYTES", description="Largest answer read from the input notebook or the model; a larger one fails its step.")
    outbound_allow_link_local: str = Field(default="", alias="FINOPS_OUTBOUND_ALLOW_LINK_LOCAL", description="host[:port] entries (exact, comma separated) that the runner's calls (notebooks, spec.kserve.modelUrl) may reach although they are, or resolve to, link-local or cloud metadata addresses; empty = none, as for the exporter.")
    max_values: int = Field(default=4_000_000, ge=1, alias="FINOPS_INFERENCE_MAX_VALUES", description="Most numbers a run sends to the model (batch x length) or stores as predictions.")

    @model_validator(mode="after")
    def _backoff_order(self) -> InferenceRunnerSettings:
        if self.max_backoff_s < self.backoff_s:
            raise ValueError("FINOPS_INFERENCE_MAX_BACKOFF_S must be at least FINOPS_INFERENCE_BACKOFF_S")
        return self
