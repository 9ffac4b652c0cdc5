"""A resource's moving windows (one per metric) from the database handler's usage notebook, cached:
what the day-2 admission and GET /optimize both answer with."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from functions.algorithms import moving_window
from functions.clients import endpoint as endpoint_client
from functions.clients.outbound import DEFAULT as GUARD_ONLY
from functions.clients.outbound import OutboundPolicy
from functions.errors import FieldError, InvalidInput, Unauthorized, Unavailable
from functions.logs import get_logger
from functions.stages.optimizer.deps import Deps

log = get_logger("optimizer")


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
