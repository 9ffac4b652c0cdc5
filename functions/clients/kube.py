"""Read CRs and Secrets: from the local CR store's files, or from the Kubernetes API in a cluster.

Functions never care where they run: they get a ResourceReader (`reader_from_env`) and ask it for
`get(kind, namespace, name)`, `get_secret(namespace, name)` or `list(kind, namespace)`. Missing objects
are None (or []); an unreachable API server is Unavailable (retried), never a kubernetes exception.

Functions also report the outcome of a cycle in the CR's status (`StatusWriter`, `status_writer_from_env`,
`write_outcome`): the status subresource in a cluster, the CR's file locally. A status write never
bumps the generation nor emits io.finops.cr.applied, as with the API server's status subresource.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from functions.errors import FieldError, InvalidInput, Misconfigured, Unavailable
from functions.models import names, paths
from functions.models.k8s import conditions as krateo_conditions
from functions.models.k8s import degraded_condition, now_rfc3339
from functions.models.registry import KindInfo, all_kinds

if TYPE_CHECKING:
    from functions.clients.endpoint import Endpoint

SECRET = "Secret"
TIMEOUT = (5.0, 30.0)
"""(connect, read) seconds of every Kubernetes API call: without one the client waits forever on a stuck API server."""


class ResourceReader(Protocol):
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]: ...


def store_root(state_dir: Path | str) -> Path:
    """<state>/resources: the local CR store's one root (every path below is checked to stay in it)."""
    return Path(state_dir) / "resources"


def resource_path(state_dir: Path | str, kind: str, namespace: str, name: str) -> Path:
    """<state>/resources/<Kind>/<namespace>/<name>.json: the one layout both the store and readers use.

    The names come from CRs, events and the command line: they must follow Kubernetes' rules (an
    InvalidInput naming the field otherwise), and the resolved path must stay inside the store
    (a symlink in the store pointing out is refused, never followed). A name whose file name would pass
    255 bytes is stored under a shortened, hashed file name (the body keeps the real name).
    """
    errors = [FieldError(loc, problem) for loc, problem in (
        ("kind", names.kind_problem(kind)), ("metadata.namespace", names.label_problem(namespace)),
        ("metadata.name", names.subdomain_problem(name))) if problem]
    if errors:
        detail = "; ".join(f"{e.loc} {e.msg}" for e in errors)
        raise InvalidInput(f"not a valid object reference: {detail}", errors)
    return paths.inside(store_root(state_dir), kind, namespace, paths.file_name(name, ".json"), field="metadata.name")


FILE_MODE, DIR_MODE = 0o600, 0o700
"""The local store holds Secrets (database and API passwords): readable by its owner only."""


def private_dirs(root: Path, leaf: Path) -> None:
    """Create root .. leaf as 0700 directories; existing ones with wider modes are narrowed."""
    base, target = Path(os.path.realpath(root)), Path(os.path.realpath(leaf))
    chain = [base]
    if target.is_relative_to(base):
        for part in target.relative_to(base).parts:
            chain.append(chain[-1] / part)
    else:
        chain.append(target)
    base.parent.mkdir(parents=True, exist_ok=True)
    for directory in chain:
        directory.mkdir(mode=DIR_MODE, exist_ok=True)
        if directory.stat().st_mode & 0o777 != DIR_MODE:
            directory.chmod(DIR_MODE)


def make_private(root: Path) -> None:
    """Narrow every directory under `root` to 0700 and every file to 0600 (what an older version
    wrote 0644/0755). Symlinks are skipped, never followed; best effort (another user's files stay)."""
    if not root.is_dir() or root.is_symlink():
        return
    for directory, _dirs, files in os.walk(root):  # symlinked directories are not entered
        here = Path(directory)
        for entry, mode in [(here, DIR_MODE), *((here / f, FILE_MODE) for f in files)]:
            with contextlib.suppress(OSError):
                st = entry.lstat()
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o777 != mode:
                    entry.chmod(mode)


PARTIAL_STALE_S = 600.0
"""A store write takes milliseconds under the store lock: a partial file this old is a killed writer's."""


def remove_stale_partials(root: Path, now: float | None = None) -> list[Path]:
    """Remove the `.tmp-*.partial` files writers killed mid-`write_json` left (best effort)."""
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    removed = []
    for path in root.rglob(".tmp-*.partial"):
        with contextlib.suppress(OSError):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > PARTIAL_STALE_S:
                path.unlink()
                removed.append(path)
    return removed


def write_json(path: Path, obj: Mapping[str, Any], root: Path | None = None) -> None:
    """Replace one object's file atomically (readers never see half a file), mode 0600 in 0700
    directories from `root` (default: the file's own directory) down, so a rewrite also fixes the
    mode of a file an older version left world-readable."""
    private_dirs(root if root is not None else path.parent, path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), FILE_MODE)
            fh.write(json.dumps(obj, indent=2, sort_keys=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def store_lock(state_dir: Path | str) -> Iterator[None]:
    """One writer at a time across processes (the CLI, the stack and the functions all write the store)."""
    root = store_root(state_dir)
    private_dirs(root, root)
    with (root / ".lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class LocalReader:
    """The local CR store's files (written by functions.local.crstore)."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.root = store_root(state_dir)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return _read_json(resource_path(self.state_dir, kind, namespace, name))

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get(SECRET, namespace, name)

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind (in one namespace); files that resolve outside the store are skipped."""
        problem = names.kind_problem(kind) or (names.label_problem(namespace) if namespace else None)
        if problem:
            loc = "kind" if names.kind_problem(kind) else "metadata.namespace"
            raise InvalidInput(f"not a valid object reference: {loc} {problem}", [FieldError(loc, problem)])
        base = self.root / kind
        if not base.is_dir():
            return []
        root = Path(os.path.realpath(self.root))
        out = []
        for path in sorted(base.glob(f"{namespace}/*.json" if namespace else "*/*.json")):
            real = Path(os.path.realpath(path))
            if real.is_relative_to(root):
                out.append(_read_json(real))
        return [o for o in out if o is not None]


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise Unavailable(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else None


class KubeApiReader:
    """The Kubernetes API (in-cluster config, else ~/.kube/config; `host` for a test API server)."""

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._api: Any = None

    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client
            from kubernetes import config as kube_config

            config: Any = kube_config  # untyped package
            if self._host:
                cfg = client.Configuration()
                cfg.host = self._host
                self._api = client.ApiClient(cfg)
            else:
                try:
                    config.load_incluster_config()
                except config.ConfigException:
                    config.load_kube_config()
                self._api = client.ApiClient()
        return self._api

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if kind == SECRET:
            return self.get_secret(namespace, name)
        info = _kind(kind)
        return self._call(lambda c: c.CustomObjectsApi(self._client()).get_namespaced_custom_object(
            info.group, info.version, namespace, info.plural, name, _request_timeout=TIMEOUT), f"{kind}/{namespace}/{name}")

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        def read(c: Any) -> Any:
            api = self._client()
            return api.sanitize_for_serialization(c.CoreV1Api(api).read_namespaced_secret(name, namespace, _request_timeout=TIMEOUT))

        return self._call(read, f"Secret/{namespace}/{name}")

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        info = _kind(kind)

        def read(c: Any) -> Any:
            api = c.CustomObjectsApi(self._client())
            if namespace:
                return api.list_namespaced_custom_object(info.group, info.version, namespace, info.plural,
                                                        _request_timeout=TIMEOUT)
            return api.list_cluster_custom_object(info.group, info.version, info.plural, _request_timeout=TIMEOUT)

        result = self._call(read, f"{kind} list")
        return list((result or {}).get("items", []))

    def _call(self, fn: Any, what: str, verb: str = "read") -> dict[str, Any] | None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            out = fn(client)
        except ApiException as exc:
            if exc.status == 404:
                return None
            if exc.status in (401, 403):
                raise Unavailable(f"Kubernetes API refused to {verb} {what}: HTTP {exc.status} (check RBAC)") from exc
            raise Unavailable(f"Kubernetes API error {verb}ing {what}: HTTP {exc.status}") from exc
        except (HTTPError, OSError) as exc:
            raise Unavailable(f"Kubernetes API unreachable {verb}ing {what}: {exc}") from exc
        return dict(out) if isinstance(out, Mapping) else None


class StatusWriter(Protocol):
    def set_conditions(self, kind: str, namespace: str, name: str, conditions: list[dict[str, Any]],
                       extra: dict[str, Any] | None = None) -> None: ...


class LocalStatusWriter:
    """The local CR store: status merged into the CR's file under the store's lock; nothing else changes."""

    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)

    def set_conditions(self, kind: str, namespace: str, name: str, conditions: list[dict[str, Any]],
                       extra: dict[str, Any] | None = None) -> None:
        """`status.conditions` replaced, `extra`'s keys set in status; a CR gone meanwhile is ignored."""
        path = resource_path(self.state_dir, kind, namespace, name)
        with store_lock(self.state_dir):
            body = _read_json(path)
            if body is None:
                return
            body["status"] = {**(body.get("status") or {}), **(extra or {}), "conditions": list(conditions)}
            write_json(path, body, store_root(self.state_dir))


class KubeStatusWriter:
    """The status subresource, by a JSON merge patch (404: the CR is gone, ignored; API down: Unavailable)."""

    def __init__(self, reader: KubeApiReader | None = None) -> None:
        self.reader = reader or KubeApiReader()

    def set_conditions(self, kind: str, namespace: str, name: str, conditions: list[dict[str, Any]],
                       extra: dict[str, Any] | None = None) -> None:
        info = _kind(kind)
        patch = {"status": {**(extra or {}), "conditions": list(conditions)}}
        self.reader._call(lambda c: c.CustomObjectsApi(self.reader._client()).patch_namespaced_custom_object_status(
            info.group, info.version, namespace, info.plural, name, patch,
            _content_type="application/merge-patch+json", _request_timeout=TIMEOUT), f"{kind}/{namespace}/{name} status", verb="patch")


def write_outcome(reader: ResourceReader, writer: StatusWriter, kind: str, namespace: str, name: str, ok: bool,
                  message: str, extra: dict[str, Any] | None = None, rejected: str | None = None,
                  owns_degraded: bool = True) -> None:
    """Ready/Synced after a cycle: True (Available / ReconcileSuccess) or False (ReconcileError), and
    after a good cycle Degraded (True with `rejected` as its message when rows were kept out).

    The CR is read first so lastTransitionTime moves only when a condition flips; a CR gone is ignored.
    A failed cycle, or one that does not own Degraded (`owns_degraded` False: an export whose rows
    the scrape counts), leaves the last Degraded condition as it was.
    """
    body = reader.get(kind, namespace, name)
    if body is None:
        return
    old = (body.get("status") or {}).get("conditions")
    now = now_rfc3339()
    if ok:
        conds = krateo_conditions(old, True, "Available", True, "ReconcileSuccess", message, now)
        if owns_degraded:
            conds = [c for c in conds if c.get("type") != "Degraded"] + [degraded_condition(old, rejected, now)]
    else:  # the last Degraded condition is kept as it was: nothing was counted
        conds = krateo_conditions(old, False, "ReconcileError", False, "ReconcileError", message, now)
    writer.set_conditions(kind, namespace, name, conds, extra)


def _kind(kind: str) -> KindInfo:
    info = all_kinds().get(kind)
    if info is None:
        raise InvalidInput(f"unknown kind {kind!r}", [FieldError("kind", f"supported: {', '.join(all_kinds())}")])
    return info


def reader_from_env(environ: Mapping[str, str] | None = None) -> ResourceReader:
    """FINOPS_KUBE=local (default) reads FINOPS_STATE_DIR's store; FINOPS_KUBE=cluster reads the API."""
    env = os.environ if environ is None else environ
    if env.get("FINOPS_KUBE", "local") == "cluster":
        return KubeApiReader(env.get("FINOPS_KUBE_HOST") or None)
    return LocalReader(env.get("FINOPS_STATE_DIR") or ".state")


def status_writer_from_env(environ: Mapping[str, str] | None = None) -> StatusWriter:
    """The writer matching `reader_from_env`: FINOPS_KUBE=cluster patches the API, else the local files."""
    env = os.environ if environ is None else environ
    if env.get("FINOPS_KUBE", "local") == "cluster":
        return KubeStatusWriter(KubeApiReader(env.get("FINOPS_KUBE_HOST") or None))
    return LocalStatusWriter(env.get("FINOPS_STATE_DIR") or ".state")


def database_credentials(reader: ResourceReader, namespace: str, name: str, loc: str) -> tuple[str, str]:
    """(user, password) from a DatabaseConfig and its password Secret, re-read on every call (as Krateo).

    InvalidInput names `loc` (where the reference came from) and what is missing.
    """
    from pydantic import ValidationError

    from functions.errors import field_errors
    from functions.models.crs import DatabaseConfig
    from functions.models.k8s import secret_data

    body = reader.get(DatabaseConfig.KIND, namespace, name)
    if body is None:
        raise InvalidInput(f"DatabaseConfig {namespace}/{name} not found", [FieldError(loc, "not found")])
    try:
        dbc = DatabaseConfig.model_validate(body)
    except ValidationError as exc:
        raise InvalidInput(f"DatabaseConfig {namespace}/{name} is invalid", field_errors(exc)) from exc
    sel = dbc.spec.password_secret_ref
    secret = reader.get_secret(sel.namespace, sel.name)
    try:
        data = secret_data(secret) if secret is not None else {}
    except ValueError as exc:
        raise InvalidInput(str(exc), [FieldError(f"{loc}.passwordSecretRef", str(exc))]) from exc
    if sel.key not in data:
        raise InvalidInput(f"password Secret {sel.namespace}/{sel.name} key {sel.key!r} not found",
                           [FieldError(f"{loc}.passwordSecretRef", "not found")])
    return dbc.spec.username, data[sel.key]


def configured_database_credentials(reader: ResourceReader, reference: str, variable: str) -> tuple[str, str]:
    """database_credentials of the DatabaseConfig a setting names (`<namespace>/<name>`): one that is
    missing or incomplete is the deployment's error (Misconfigured naming the variable), not the request's."""
    namespace, _, name = reference.partition("/")
    try:
        return database_credentials(reader, namespace, name, variable)
    except InvalidInput as exc:
        raise Misconfigured(f"this function's settings are invalid: {exc}", [FieldError(variable, exc.message)]) from exc


class KubeObjects:
    """Any namespaced custom object by apiVersion and plural (compositions, Azure VMs): the optimizer's
    view of the cluster, outside the finops kinds the readers know. Errors as in KubeApiReader."""

    def __init__(self, reader: KubeApiReader | None = None) -> None:
        self._reader = reader or KubeApiReader()

    def get_resource(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        group, version = _group_version(api_version)
        return self._reader._call(lambda c: c.CustomObjectsApi(self._reader._client()).get_namespaced_custom_object(
            group, version, namespace, plural, name, _request_timeout=TIMEOUT), f"{plural}/{namespace}/{name}")

    def list_resources(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        group, version = _group_version(api_version)

        def read(c: Any) -> Any:
            api = c.CustomObjectsApi(self._reader._client())
            if namespace:
                return api.list_namespaced_custom_object(group, version, namespace, plural, _request_timeout=TIMEOUT)
            return api.list_cluster_custom_object(group, version, plural, _request_timeout=TIMEOUT)

        result = self._reader._call(read, f"{plural} list", "list")
        return list((result or {}).get("items", []))

    def set_label(self, api_version: str, plural: str, namespace: str, name: str, key: str, value: str) -> None:
        """A merge patch of one label (Krateo's `kubectl label --overwrite`)."""
        group, version = _group_version(api_version)
        body = {"metadata": {"labels": {key: value}}}
        self._reader._call(lambda c: c.CustomObjectsApi(self._reader._client()).patch_namespaced_custom_object(
            group, version, namespace, plural, name, body, _request_timeout=TIMEOUT), f"{plural}/{namespace}/{name}", "patch")


def _group_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    if not group or not version:
        raise InvalidInput(f"not a group/version: {api_version!r}", [FieldError("apiVersion", "expected <group>/<version>")])
    return group, version


def endpoint_from_secret(reader: ResourceReader, namespace: str, name: str, loc: str,
                         defaults: Mapping[str, str] | None = None) -> Endpoint:
    """The Endpoint a Krateo endpoint Secret describes (server-url, credentials, TLS), re-read on every call.

    `loc` names where the reference came from in the InvalidInput for a missing or undecodable Secret;
    `defaults` fills keys the Secret lacks (e.g. a server-url the deployment knows).
    """
    from functions.clients.endpoint import Endpoint
    from functions.models.k8s import secret_data

    secret = reader.get_secret(namespace, name)
    if secret is None:
        raise InvalidInput(f"endpoint Secret {namespace}/{name} not found", [FieldError(loc, "Secret not found")])
    try:
        data = secret_data(secret)
    except ValueError as exc:
        raise InvalidInput(str(exc), [FieldError(loc, str(exc))]) from exc
    return Endpoint.from_secret({**data, **{k: v for k, v in (defaults or {}).items() if not data.get(k)}})
