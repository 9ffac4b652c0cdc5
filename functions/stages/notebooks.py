"""Notebooks: a Notebook CR change becomes the database handler's stored notebook (Krateo's
finops-database-handler-uploader).

Trigger:     `io.finops.cr.applied` / `io.finops.cr.deleted` with extension kind=Notebook, data = the CR.
Input:       the CR (re-read on apply: a late event uploads the newest code; one for a CR that is gone
             does nothing), the code (`spec.inline`, or the body of `spec.api` fetched through its
             endpoint Secret), the DatabaseConfig whose user authenticates the calls.
Output:      the handler's `/compute` store equals the CR: observe with GET /compute/list and
             /compute/<name>/info, then POST /compute/<name>/upload (create) or ?overwrite=true
             (change); DELETE /compute/<name> on delete. The answer carries status conditions.
Idempotency: level-based: the stored code is compared first, so a repeated event changes nothing.
             A create re-checks the stored code (a concurrent create could have won) and overwrites
             when it differs. Names are global, as in Krateo: a delete keeps the notebook when a
             Notebook of the same name still exists in another namespace, and stores that one's code.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson
from pydantic import ValidationError

from functions.clients import endpoint as endpoint_client
from functions.clients import kube
from functions.clients.kube import ResourceReader
from functions.errors import FieldError, FinopsError, InvalidInput, Unavailable, field_errors
from functions.events import CR_APPLIED, CR_DELETED
from functions.logs import get_logger
from functions.models.notebooks import Notebook, ReconcileFailed, conditions
from functions.models.refs import ConfigRef
from functions.settings.notebooks import NotebookSettings

__all__ = ["handle"]
"""This stage's public names (a test guards them): its handle() and what main and the tools call beside it."""

log = get_logger("notebooks")
JSON = "application/json"


@dataclass(frozen=True)
class NotebookReconciled:
    """created, updated, unchanged, deleted, kept or skipped; for which notebook name."""

    action: str
    resource: str
    notebook: str
    message: str = ""

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"result": self.action, "resource": self.resource, "notebook": self.notebook,
                               "message": self.message}
        if self.action != "deleted":
            out["status"] = {"conditions": conditions(True, "ReconcileSuccess", self.message)}
        return out


def handle(event_type: str, subject: str | None, data: Any, reader: ResourceReader, settings: NotebookSettings) -> NotebookReconciled:
    """One CR event; every FinopsError comes back as ReconcileFailed carrying the CR's conditions."""
    ref = ConfigRef.from_event(subject, data)
    try:
        if ref.kind != Notebook.KIND:
            raise InvalidInput(f"notebooks handles Notebook, not {ref.kind}", [FieldError("kind", "expected Notebook")])
        if event_type == CR_APPLIED:
            return _applied(ref, reader, settings)
        if event_type == CR_DELETED:
            return _deleted(ref, reader, settings)
        raise InvalidInput(f"notebooks takes {CR_APPLIED} or {CR_DELETED}", [FieldError("type", f"got {event_type!r}")])
    except ReconcileFailed:
        raise
    except FinopsError as exc:
        raise ReconcileFailed(exc, str(ref)) from exc


def _applied(ref: ConfigRef, reader: ResourceReader, settings: NotebookSettings) -> NotebookReconciled:
    current = reader.get(ref.kind, ref.namespace, ref.name)
    if current is None:
        return NotebookReconciled("skipped", str(ref), ref.name, "the CR is gone: its delete event handles it")
    try:
        nb = Notebook.model_validate(current)
    except ValidationError as exc:
        raise InvalidInput(f"{ref} is invalid", field_errors(exc)) from exc
    code = resolve_code(nb, reader, settings.max_code_bytes)
    return sync(Handler.from_settings(reader, settings), str(ref), nb.metadata.name, code)


def _deleted(ref: ConfigRef, reader: ResourceReader, settings: NotebookSettings) -> NotebookReconciled:
    handler = Handler.from_settings(reader, settings)
    for other in reader.list(Notebook.KIND):
        meta = other.get("metadata") or {}
        if meta.get("name") == ref.name:
            survivor = ConfigRef(Notebook.KIND, str(meta.get("namespace") or "default"), ref.name)
            nb = Notebook.model_validate(other)
            code = resolve_code(nb, reader, settings.max_code_bytes)
            sync(handler, str(survivor), ref.name, code)
            return NotebookReconciled("kept", str(ref), ref.name, f"{survivor} has the same name: its code stays stored")
    handler.delete(ref.name)
    log.info("notebook deleted", extra={"resource": str(ref), "notebook": ref.name})
    return NotebookReconciled("deleted", str(ref), ref.name, "deleted from the database handler")


def sync(handler: Handler, resource: str, name: str, code: str) -> NotebookReconciled:
    """Make the handler's notebook `name` hold `code` (Krateo's observe/create/update)."""
    if name not in handler.names():
        handler.upload(name, code, overwrite=False)
        if handler.code(name) == code:
            log.info("notebook created", extra={"resource": resource, "notebook": name})
            return NotebookReconciled("created", resource, name, "uploaded to the database handler")
    elif handler.code(name) == code:
        return NotebookReconciled("unchanged", resource, name, "the stored code is current")
    handler.upload(name, code, overwrite=True)
    log.info("notebook updated", extra={"resource": resource, "notebook": name})
    return NotebookReconciled("updated", resource, name, "overwritten in the database handler")


def resolve_code(nb: Notebook, reader: ResourceReader, max_bytes: int) -> str:
    """spec.inline, or the body of spec.api (any 2xx, verbatim, first page), as non-empty UTF-8 text."""
    code = _raw_code(nb, reader, max_bytes)
    if not code.strip():
        loc = "spec.inline" if nb.spec.type == "inline" else "spec.api"
        raise InvalidInput("the notebook's code is empty", [FieldError(loc, "empty code: the handler would store nothing")])
    return code


def _raw_code(nb: Notebook, reader: ResourceReader, max_bytes: int) -> str:
    if nb.spec.type == "inline":
        code = nb.spec.inline or ""
        if len(code.encode()) > max_bytes:
            raise InvalidInput("spec.inline is too large", [FieldError("spec.inline", f"more than {max_bytes} bytes")])
        return code
    api = nb.spec.api
    assert api is not None  # the model requires it for type api
    secret_ref = api.endpoint_ref
    ep = (kube.endpoint_from_secret(reader, secret_ref.namespace, secret_ref.name, "spec.api.endpointRef") if secret_ref
          else endpoint_client.Endpoint.in_cluster())
    with tempfile.TemporaryFile() as tmp:
        got = endpoint_client.fetch(api, ep, {}, dest=tmp)
        offset, length, _ = got.pages[0]
        if length > max_bytes:
            raise InvalidInput("the notebook fetched from spec.api is too large", [FieldError("spec.api", f"more than {max_bytes} bytes")])
        tmp.seek(offset)
        body = tmp.read(length)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput("the notebook fetched from spec.api is not UTF-8 text", [FieldError("spec.api", str(exc))]) from exc


@dataclass(frozen=True)
class Handler:
    """The database handler's /compute API, called like Krateo's uploader (Basic auth, JSON answers)."""

    url: str
    endpoint: endpoint_client.Endpoint
    source: str

    @classmethod
    def from_settings(cls, reader: ResourceReader, settings: NotebookSettings) -> Handler:
        user, password = kube.configured_database_credentials(reader, settings.database_config,
                                                              "FINOPS_NOTEBOOKS_DATABASE_CONFIG")
        ep = endpoint_client.Endpoint(server_url=settings.dbhandler_url, username=user, password=password)
        return cls(settings.dbhandler_url.rstrip("/"), ep, settings.database_config)

    def names(self) -> set[str]:
        """GET /compute/list: `[["name"], ...]` (Krateo's shape); plain strings accepted too."""
        answer = self._call("GET", "/compute/list")
        items = answer if isinstance(answer, list) else []
        return {str(i[0]) if isinstance(i, list) and i else str(i) for i in items}

    def code(self, name: str) -> str | None:
        """GET /compute/<name>/info -> its code; None when the handler has no such notebook (404)."""
        answer = self._call("GET", f"/compute/{_seg(name)}/info", absent_ok=True)
        if not isinstance(answer, dict):
            return None
        code = answer.get("code")
        return code if isinstance(code, str) else None

    def upload(self, name: str, code: str, *, overwrite: bool) -> None:
        path = f"/compute/{_seg(name)}/upload" + ("?overwrite=true" if overwrite else "")
        answer = self._call("POST", path, body=code.encode("utf-8"))
        if isinstance(answer, dict) and answer.get("result") is False:
            raise InvalidInput(f"the database handler did not store notebook {name!r}", [FieldError("spec", str(answer))])

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/compute/{_seg(name)}")

    def _call(self, method: str, path: str, body: bytes | None = None, absent_ok: bool = False) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = "text/x-python; charset=utf-8"
        resp = endpoint_client.request(method, self.url + path, endpoint=self.endpoint, headers=headers, content=body)
        status = resp.status_code
        if 200 <= status < 300:
            try:
                return orjson.loads(resp.content) if resp.content else None
            except orjson.JSONDecodeError:
                return resp.text
        if status == 404 and absent_ok:
            return None
        where = f"{method} {path} -> {status}: {resp.text[:500]}"
        if status in (401, 403):
            raise InvalidInput(f"the database handler refused the credentials of DatabaseConfig {self.source}: {where}",
                               [FieldError("FINOPS_NOTEBOOKS_DATABASE_CONFIG", "credentials refused")])
        if status >= 500 or status in (404, 408, 409, 429):
            retry_after = resp.headers.get("retry-after", "")
            raise Unavailable(f"database handler: {where}", int(retry_after) if retry_after.isdigit() else 5)
        raise InvalidInput(f"database handler refused the call: {where}", [FieldError("status", str(status))])


def _seg(name: str) -> str:
    return quote(name, safe="")
