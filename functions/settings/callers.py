"""Settings of caller authentication and of the request body limit, shared by every function.

How they are used (the shared token, Knative Eventing OIDC tokens, TokenReview) is
functions.clients.callers; the limits each target reads before any setting are here, because the
settings' own documentation (FINOPS_MAX_BODY_BYTES) lists them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from functions.settings import KnativeService, _EnvSettings

Mode = Literal["auto", "token", "oidc", "open"]
AUDIENCE_PREFIX = "finops-functions/"

# The largest request body each target reads, before any setting: sized for what its callers send,
# with margin (measured): dbhandler: an /upload part of 50,000 FOCUS rows as Arrow is 13 MB, Krateo
# JSON records at 20,000 per request 37 MB, an aicost batch as CrateDB bulk_args (20,000 rows) 19 MB;
# aicost: 20,000 events (FINOPS_AICOST_MAX_BATCH) are 8 MB; CR events (notebooks, focus_ingest) and
# AdmissionReviews carry one Kubernetes object (etcd caps one near 1.5 MiB); ticks and pings are tiny.
BODY_LIMITS: dict[str, int] = {
    "dbhandler": 128 << 20, "aicost": 32 << 20, "notebooks": 8 << 20, "focus_ingest": 8 << 20,
    "optimizer": 8 << 20, "exporter": 1 << 20, "scraper": 1 << 20, "aicost_metrics": 64 << 10,
    "inference_runner": 8 << 20,
}


def _limits_text() -> str:
    return ", ".join(f"{t} {n >> 20} MiB" if n >= 1 << 20 else f"{t} {n >> 10} KiB" for t, n in BODY_LIMITS.items())


class CallerSettings(_EnvSettings):
    """Caller authentication and the request body limit of every function (read once per process)."""

    mode: Mode = Field(default="auto", alias="FINOPS_AUTH", description="Who may call the functions: `auto` (the shared token, plus Knative Eventing OIDC tokens where a Kubernetes API is reachable), `token`, `oidc`, or `open` (anyone: Krateo's behaviour, only behind a NetworkPolicy). Probes (`GET /`, `/healthz`) are always open.")
    token_file: str = Field(default="", alias="FINOPS_AUTH_TOKEN_FILE", description="File holding the shared caller token (a mounted Secret; re-read when it changes). The local stack writes `<state>/auth/token` from the Secret finops/finops-auth-token.")
    send_token_file: str = Field(default="", alias="FINOPS_AUTH_SEND_TOKEN_FILE", description="Token file this process sends as `Bearer` when it posts events to K_SINK (the Broker); empty = the OIDC token Knative's SinkBinding mounts at /oidc/token where OIDC is on, else the shared token.")
    audience: str = Field(default="", alias="FINOPS_AUTH_AUDIENCE", description="OIDC audience this function accepts; empty = `finops-functions/<K_SERVICE>` (what the Triggers' `subscriber.audience` name).")
    oidc_subjects: str = Field(default="", alias="FINOPS_AUTH_OIDC_SUBJECTS", description="Comma-separated prefixes of the OIDC identities accepted (`system:serviceaccount:<ns>:`); empty = the service accounts of this Pod's namespace; `*` = any identity the API server authenticates.")
    kubeconfig: str = Field(default="", alias="FINOPS_AUTH_KUBECONFIG", description="kubeconfig of the API server that verifies OIDC tokens (TokenReview); empty = the in-cluster service account.")
    cache_s: float = Field(default=30.0, ge=0, alias="FINOPS_AUTH_CACHE_SECONDS", description="Seconds a TokenReview verdict is reused (never beyond the token's expiry).")
    max_body_bytes: int | None = Field(default=None, ge=1, alias="FINOPS_MAX_BODY_BYTES", description=f"Largest request body this function reads (413 beyond it, refused before it is read); empty = per function: {_limits_text()}.")
    service: KnativeService = Field(default="", description="Knative service name (the default OIDC audience).")

    def body_limit(self, target: str) -> int:
        return self.max_body_bytes or BODY_LIMITS.get(target, 1 << 20)

    def own_audience(self) -> str:
        return self.audience or AUDIENCE_PREFIX + (self.service or "function")
