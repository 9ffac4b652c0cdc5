"""Who may call a function, and the token this process sends when it calls one.

Every endpoint that writes anything or reads cost data checks its caller (functions/main.py): an
`Authorization: Bearer <token>` header that is either

- the shared token of the local stack or a cluster without OIDC: the content of the file named by
  FINOPS_AUTH_TOKEN_FILE (a Secret mounted as a file, re-read when it changes, so a rotated Secret
  applies without a restart), compared in constant time; or
- a Knative Eventing OIDC sender token (feature `authentication-oidc`): a Kubernetes service-account
  JWT whose audience is this function's (FINOPS_AUTH_AUDIENCE, default `finops-functions/<K_SERVICE>`,
  what the Triggers' `subscriber.audience` name), verified by the API server with a TokenReview and
  cached briefly. Only tokens that name our audience and are not expired are sent to the API server
  (an attacker's junk costs no API call), and the identity must be a service account of this
  function's namespace (FINOPS_AUTH_OIDC_SUBJECTS to change).

FINOPS_AUTH decides: `auto` (default: the shared token, plus OIDC where a Kubernetes API is
reachable), `token`, `oidc`, or `open` (Krateo's behaviour: anyone; only behind a network policy).
With nothing configured every call is refused with a 401 naming what is missing, and the start-up
log says so loudly: authenticated by default means a forgotten Secret locks the door, not opens it.

The token file is a setting rather than an environment variable on purpose: a function's environment
is readable by its child processes (the database handler's notebooks) and by anyone who can read the
Pod spec; a mounted Secret file is neither.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from functions.errors import Unauthorized, Unavailable
from functions.logs import get_logger
from functions.settings.callers import CallerSettings

log = get_logger("callers")
BEARER = 'Bearer realm="finops"'
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Caller:
    """Who a request came from: `how` (token, oidc, open) and a name for the logs."""

    how: str
    name: str


@dataclass(frozen=True)
class Review:
    """A TokenReview's verdict: authenticated, for which audiences, as whom."""

    authenticated: bool
    audiences: tuple[str, ...]
    username: str


Reviewer = Callable[[str, str], Review]
"""(token, audience) -> the API server's verdict; raises Unavailable when the API cannot answer."""


# ---------------------------------------------------------------- reading tokens


class TokenFile:
    """A token kept in a file, re-read only when the file changes (inode, size or mtime)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._value = ""
        self._lock = threading.Lock()

    def read(self) -> str:
        """The token, stripped; "" when the file is unset, missing or empty."""
        if not self.path:
            return ""
        try:
            st = os.stat(self.path)
        except OSError:
            return ""
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._value = Path(self.path).read_text(encoding="utf-8").strip()
                except (OSError, UnicodeDecodeError):
                    self._value = ""
                self._stamp = stamp
            return self._value


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header; None when it is not Basic or not decodable."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, password = decoded.partition(":")
    return user, password


def basic_password(header: str | None) -> str | None:
    """The password of an `Authorization: Basic` header (None when it is not Basic or not decodable)."""
    creds = basic_credentials(header)
    return None if creds is None else creds[1]


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The (unverified) payload of a JWT, or None when the token is not one: a cheap pre-check only."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    return payload if isinstance(payload, dict) else None


def _audiences(claims: Mapping[str, Any]) -> tuple[str, ...]:
    aud = claims.get("aud")
    if isinstance(aud, str):
        return (aud,)
    return tuple(a for a in aud if isinstance(a, str)) if isinstance(aud, list) else ()


# ---------------------------------------------------------------- OIDC (TokenReview)


def kubernetes_reviewer(kubeconfig: str = "", timeout: float = 5.0) -> Reviewer:
    """A Reviewer backed by the API server's TokenReview (in-cluster config, or a kubeconfig file)."""
    state: dict[str, Any] = {}
    lock = threading.Lock()

    def api() -> Any:
        with lock:
            if "api" not in state:
                from kubernetes import client
                from kubernetes import config as kube_config

                config: Any = kube_config  # untyped package
                api_client = config.new_client_from_config(kubeconfig) if kubeconfig else None
                if api_client is None:
                    cfg = client.Configuration()
                    config.load_incluster_config(client_configuration=cfg)
                    api_client = client.ApiClient(cfg)
                state["api"] = client.AuthenticationV1Api(api_client)
            return state["api"]

    def review(token: str, audience: str) -> Review:
        from kubernetes import client

        body = client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=[audience]))
        try:
            status = api().create_token_review(body, _request_timeout=timeout).status
        except Exception as exc:  # noqa: BLE001 - API down, RBAC missing, bad config: a retryable answer
            raise Unavailable(f"cannot verify the OIDC token: the Kubernetes API's TokenReview failed ({type(exc).__name__})") from exc
        user = getattr(status, "user", None)
        return Review(bool(getattr(status, "authenticated", False)), tuple(getattr(status, "audiences", None) or ()),
                      str(getattr(user, "username", "") or ""))

    return review


def _in_cluster() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and SA_NAMESPACE_FILE.exists()


def _own_namespace() -> str:
    try:
        return SA_NAMESPACE_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


# ---------------------------------------------------------------- the gate


class Gate:
    """Checks one request's Authorization header against this process's settings (thread-safe)."""

    def __init__(self, settings: CallerSettings, reviewer: Reviewer | None = None, namespace: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.token = TokenFile(settings.token_file)
        self.audience = settings.own_audience()
        self.reviewer = reviewer
        prefixes = [p.strip() for p in settings.oidc_subjects.split(",") if p.strip()]
        if not prefixes:
            prefixes = [f"system:serviceaccount:{namespace}:" if namespace else "system:serviceaccount:"]
        self.subjects = tuple("" if p == "*" else p for p in prefixes)
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def oidc(self) -> bool:
        return self.reviewer is not None and self.settings.mode in ("auto", "oidc")

    @property
    def shared(self) -> bool:
        return self.settings.mode in ("auto", "token")

    def missing(self) -> str:
        """What is not configured, when no caller can ever be accepted; "" when one can."""
        if self.settings.mode == "open" or self.oidc or (self.shared and self.token.read()):
            return ""
        wanted = []
        if self.shared:
            where = self.settings.token_file
            wanted.append(f"the shared token file (FINOPS_AUTH_TOKEN_FILE{'=' + where + ' is missing or empty' if where else ' is not set'})")
        if self.settings.mode in ("auto", "oidc"):
            wanted.append("OIDC verification (no Kubernetes API here: FINOPS_AUTH_KUBECONFIG is not set and this is not a Pod)")
        return " and ".join(wanted)

    def describe(self) -> str:
        """One line for the start-up log: what this process accepts."""
        if self.settings.mode == "open":
            return "FINOPS_AUTH=open: every caller is accepted (Krateo's open mode)"
        parts = []
        if self.shared and self.token.read():
            parts.append(f"the shared token of {self.settings.token_file}")
        if self.oidc:
            parts.append(f"OIDC tokens for audience {self.audience!r} from {', '.join(s or 'anyone' for s in self.subjects)}")
        return "accepted callers: " + (" or ".join(parts) if parts else "NONE")

    def check(self, authorization: str | None) -> Caller:
        """The caller, or Unauthorized (401, `WWW-Authenticate: Bearer`) saying what was wrong or missing."""
        if self.settings.mode == "open":
            return Caller("open", "anyone")
        missing = self.missing()
        if missing:
            raise Unauthorized(f"this function accepts no caller: {missing} is configured for it; "
                               "configure one, or set FINOPS_AUTH=open to accept anyone", BEARER)
        token = bearer(authorization)
        if token is None:
            raise Unauthorized("authentication required: send `Authorization: Bearer <token>` "
                               f"({self._accepted()})", BEARER)
        shared = self.token.read() if self.shared else ""
        if shared and hmac.compare_digest(token.encode(), shared.encode()):
            return Caller("token", "shared token")
        if self.oidc:
            name = self._oidc(token)
            if name is not None:
                return Caller("oidc", name)
        raise Unauthorized(f"invalid token in `Authorization: Bearer` ({self._accepted()})",
                           BEARER + ', error="invalid_token"')

    def _accepted(self) -> str:
        what = []
        if self.shared and self.token.read():
            what.append("the shared token")
        if self.oidc:
            what.append(f"an OIDC token for audience {self.audience}")
        return "accepted: " + " or ".join(what)

    def _oidc(self, token: str) -> str | None:
        """The identity of a valid OIDC token for our audience, else None (verdicts cached)."""
        claims = jwt_claims(token)
        now = self.clock()
        if claims is None or self.audience not in _audiences(claims):
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        assert self.reviewer is not None
        review = self.reviewer(token, self.audience)
        name: str | None = review.username
        if not review.authenticated or self.audience not in review.audiences \
                or not any(review.username.startswith(p) for p in self.subjects):
            log.warning("OIDC token refused", extra={"username": review.username, "authenticated": review.authenticated,
                                                      "audiences": list(review.audiences)})
            name = None
        with self._lock:
            self._cache[key] = (min(now + self.settings.cache_s, float(exp)), name)
            self._cache.move_to_end(key)
            while len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return name


def gate_from_env(environ: Mapping[str, str] | None = None) -> Gate:
    """This process's gate: OIDC where a Kubernetes API is reachable; logs loudly what it accepts."""
    settings = CallerSettings.from_env(environ)
    reviewer = None
    if settings.mode in ("auto", "oidc") and (settings.kubeconfig or _in_cluster()):
        reviewer = kubernetes_reviewer(settings.kubeconfig)
    gate = Gate(settings, reviewer, _own_namespace())
    missing = gate.missing()
    if missing:
        log.error("NO CALLER CAN BE ACCEPTED: every request but the probes will be refused (401)",
                  extra={"missing": missing, "fix": "mount the token Secret at FINOPS_AUTH_TOKEN_FILE, enable OIDC, "
                                                    "or set FINOPS_AUTH=open"})
    elif settings.mode == "open":
        log.warning(gate.describe())
    else:
        log.info(gate.describe())
    return gate


# ---------------------------------------------------------------- what this process sends


_SEND: dict[str, TokenFile] = {}
_SEND_LOCK = threading.Lock()
SINKBINDING_OIDC_TOKEN = "/oidc/token"
"""Where Knative's SinkBinding mounts an OIDC token for its sink's audience (authentication-oidc on)."""


def outbound_headers(environ: Mapping[str, str] | None = None, *, sink: bool = False) -> dict[str, str]:
    """`Authorization: Bearer <token>` for this process's calls to our functions (`sink=False`: the
    shared token of FINOPS_AUTH_TOKEN_FILE) or to K_SINK, the Broker (`sink=True`: the file of
    FINOPS_AUTH_SEND_TOKEN_FILE, else the SinkBinding's OIDC token where Knative mounted one, else the
    shared token); {} without any. Files are re-read when they change (rotated Secrets, renewed tokens).
    """
    env = os.environ if environ is None else environ
    paths = [env.get("FINOPS_AUTH_SEND_TOKEN_FILE") or SINKBINDING_OIDC_TOKEN] if sink else []
    paths.append(env.get("FINOPS_AUTH_TOKEN_FILE") or "")
    for path in paths:
        if not path:
            continue
        with _SEND_LOCK:
            reader = _SEND.setdefault(path, TokenFile(path))
        token = reader.read()
        if token:
            return {"Authorization": f"Bearer {token}"}
    return {}
