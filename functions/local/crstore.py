"""The local CR store: `finops apply/get/delete` on files, emitting the events the kopf bridge would.

Layout (shared with functions.clients.kube.LocalReader): <state>/resources/<Kind>/<namespace>/<name>.json.
CRs are validated with their pydantic models before anything is written (every bad field named);
Secrets (v1) are stored as given. Names and namespaces follow Kubernetes' rules (DNS-1123, checked by
the models and by `resource_path`, which also keeps every path inside the store); files are written
0600 in 0700 directories, since Secrets hold passwords. Like the API server, the store assigns uid, generation (bumped when
spec changes) and creationTimestamp; like the bridge, it derives the PingSources a CR needs
(functions.models.pingsources) and stores them as kind PingSource for the local scheduler, deleting
them with their owner. An apply that changes nothing emits nothing, like a watch. A schedule no
PingSource takes (an InferenceRun's 6- or 7-field cron) is refused at apply, naming `spec.schedule` and
why: the store has no status of its own to say it in later, where the bridge writes it in the CR's status.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from functions import events
from functions.clients.kube import (
    SECRET,
    LocalReader,
    make_private,
    remove_stale_partials,
    resource_path,
    store_lock,
    store_root,
    write_json,
)
from functions.errors import FieldError, InvalidInput, NotFound, field_errors
from functions.models.k8s import secret_data
from functions.models.names import cut, label_problem, subdomain_problem
from functions.models.pingsources import pingsources_for
from functions.models.registry import all_kinds, resolve_kind

PINGSOURCE = "PingSource"
Objects = list[dict[str, Any]]
SOURCE = "/finops/local/crstore"


@dataclass
class Change:
    """What one document did: created, configured, unchanged or deleted, and the events to publish."""

    kind: str
    namespace: str
    name: str
    action: str
    events: list[events.Event] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.kind.lower()}/{self.name} ({self.namespace}) {self.action}"


class _KubeYamlLoader(yaml.SafeLoader):
    """YAML as the API server reads it: timestamps stay strings (kubectl sends them as text)."""


_KubeYamlLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(path: Path | str) -> list[dict[str, Any]]:
    """Every non-empty document of a YAML (or JSON) file; InvalidInput when it is not one."""
    try:
        text = sys.stdin.read() if str(path) == "-" else Path(path).read_text(encoding="utf-8")
        docs = [d for d in yaml.load_all(text, Loader=_KubeYamlLoader) if d is not None]  # noqa: S506 - a SafeLoader
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path} is not valid YAML: {exc}") from exc
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise InvalidInput(f"{path}: document {i + 1} is not a mapping")
    return docs


def kind_name(text: str) -> str:
    """The canonical kind for a name the user typed (kind, plural, short name; any case)."""
    if text.strip().lower() in ("secret", "secrets"):
        return SECRET
    if text.strip().lower() in ("pingsource", "pingsources"):
        return PINGSOURCE
    info = resolve_kind(text)
    if info is None:
        raise InvalidInput(f"unknown kind {text!r}; supported kinds: {', '.join(supported_kinds())}")
    return info.kind


def supported_kinds() -> list[str]:
    return [*all_kinds(), SECRET]


class CrStore:
    def __init__(self, state_dir: Path | str) -> None:
        self.state_dir = Path(state_dir)
        self.reader = LocalReader(self.state_dir)
        make_private(store_root(self.state_dir))  # a store an older version wrote world-readable
        remove_stale_partials(store_root(self.state_dir))

    # -- reads -------------------------------------------------------------------------------------
    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.reader.get(kind_name(kind), namespace, name)

    def list(self, kind: str | None = None, namespace: str | None = None) -> Objects:
        kinds = [kind_name(kind)] if kind else [*all_kinds(), SECRET]
        return [obj for k in kinds for obj in self.reader.list(k, namespace)]

    def pingsources(self) -> Objects:
        """The PingSources derived from the stored CRs (what the bridge would have created)."""
        return self.reader.list(PINGSOURCE)

    # -- writes ------------------------------------------------------------------------------------
    def apply(self, docs: Objects) -> builtins.list[Change]:
        """Validate every document first (nothing is written if one is bad), then store them."""
        checked = [self._check(i, doc, len(docs)) for i, doc in enumerate(docs)]
        with self._lock():
            return [self._store(kind, doc) for kind, doc in checked]

    def delete(self, kind: str, namespace: str, name: str) -> Change:
        canonical = kind_name(kind)
        path = resource_path(self.state_dir, canonical, namespace, name)
        with self._lock():
            old = self.reader.get(canonical, namespace, name)
            if old is None:
                raise NotFound(f"{canonical} {namespace}/{name} not found")
            path.unlink()
            self._sync_pingsources(canonical, namespace, name, [])
        change = Change(canonical, namespace, name, "deleted")
        if canonical != SECRET:
            change.events.append(_cr_event(events.CR_DELETED, canonical, old))
        return change

    def _check(self, index: int, doc: dict[str, Any], total: int) -> tuple[str, dict[str, Any]]:
        where = f"document {index + 1}" if total > 1 else "document"
        kind = str(doc.get("kind") or "")
        raw_meta = doc.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        label = f"{cut(kind or '?')} {cut(str(meta.get('namespace', 'default')))}/{cut(str(meta.get('name', '?')))} ({where})"
        if kind == SECRET:
            return SECRET, _check_secret(doc, label)
        info = all_kinds().get(kind)
        if info is None:
            raise InvalidInput(
                f"{label}: unknown kind {kind!r}; supported kinds: {', '.join(supported_kinds())}",
                [FieldError("kind", "unsupported kind")])
        try:
            info.model.model_validate(doc)
        except ValidationError as exc:
            errors = field_errors(exc)
            detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors)
            raise InvalidInput(f"{label} is invalid: {detail}", errors) from exc
        try:
            pingsources_for(doc)
        except ValueError as exc:  # a schedule no PingSource takes (ScheduleRefused names its field)
            loc = str(getattr(exc, "loc", "spec"))
            raise InvalidInput(f"{label} is invalid: {loc}: {exc}", [FieldError(loc, str(exc))]) from exc
        return kind, doc

    def _store(self, kind: str, doc: dict[str, Any]) -> Change:
        meta = dict(doc.get("metadata") or {})
        namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
        old = self.reader.get(kind, namespace, name)
        new = _with_server_fields(doc, old)
        if old is not None and _comparable(old) == _comparable(new):
            return Change(kind, namespace, name, "unchanged")
        _write_json(resource_path(self.state_dir, kind, namespace, name), new, store_root(self.state_dir))
        change = Change(kind, namespace, name, "configured" if old else "created")
        if kind != SECRET:
            self._sync_pingsources(kind, namespace, name, pingsources_for(new))
            change.events.append(_cr_event(events.CR_APPLIED, kind, new))
        return change

    def _sync_pingsources(self, kind: str, namespace: str, name: str, wanted: Objects) -> None:
        """Keep exactly `wanted` among the PingSources owned by this CR (garbage collection)."""
        keep = {p["metadata"]["name"] for p in wanted}
        for ps in self.reader.list(PINGSOURCE, namespace):
            ps_meta = ps.get("metadata", {})
            owners = ps_meta.get("ownerReferences", [])
            owned = any(o.get("kind") == kind and o.get("name") == name for o in owners)
            if owned and ps_meta.get("name") not in keep:
                resource_path(self.state_dir, PINGSOURCE, namespace, ps_meta["name"]).unlink(missing_ok=True)
        for ps in wanted:
            _write_json(resource_path(self.state_dir, PINGSOURCE, namespace, ps["metadata"]["name"]), ps,
                        store_root(self.state_dir))

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One writer at a time (the CLI, the running stack and the functions' status writes)."""
        with store_lock(self.state_dir):
            yield


def _check_secret(doc: dict[str, Any], label: str) -> dict[str, Any]:
    errors: list[FieldError] = []
    if doc.get("apiVersion") != "v1":
        errors.append(FieldError("apiVersion", "a Secret must have apiVersion v1"))
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        errors.append(FieldError("metadata.name", "Field required"))
    else:
        problems = (("metadata.name", subdomain_problem(meta["name"])),
                    ("metadata.namespace", label_problem(meta.get("namespace", "default"))))
        errors += [FieldError(loc, problem) for loc, problem in problems if problem]
    try:
        secret_data(doc)
    except ValueError as exc:
        errors.append(FieldError("data", str(exc)))
    if errors:
        detail = "; ".join(f"{e.loc}: {e.msg}" for e in errors)
        raise InvalidInput(f"{label} is invalid: {detail}", errors)
    return doc


def _with_server_fields(doc: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """metadata.namespace/uid/generation/creationTimestamp, as the API server keeps them."""
    new = json.loads(json.dumps(doc))
    meta = new.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    old_meta = (old or {}).get("metadata", {})
    meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
    meta["creationTimestamp"] = old_meta.get("creationTimestamp") or _now()
    generation = int(old_meta.get("generation") or 0)
    if old is None or old.get("spec") != new.get("spec"):
        generation += 1
    meta["generation"] = generation
    if old is not None and "status" in old and "status" not in new:
        new["status"] = old["status"]  # status is a subresource: apply does not clear it
    return dict(new)


def _comparable(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k not in ("uid", "generation", "creationTimestamp")}
    return {**obj, "metadata": meta}


def _cr_event(type_: str, kind: str, cr: dict[str, Any]) -> events.Event:
    meta = cr.get("metadata", {})
    ns, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
    return events.new(type_, SOURCE, data=cr, subject=f"{kind}/{ns}/{name}",
                      kind=kind, crnamespace=ns, crname=name)


_write_json = write_json


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
