"""Krateo's GET /optimize?resource_name=&table_name=&dbhandler_url=: one resource's moving window.

Trigger:     GET /optimize (Krateo's moving-window microservice contract), with the database handler's
             Basic credentials.
Input:       the resource's usage series through the named handler's `cyclic` notebook.
Output:      one `{resourceid, metricname, unit, optimization{from,to,resourceDelta}}` object.
Side effects: none: windows are cached in memory (per credentials, so no caller reads another's).
Outbound:    only the hosts of FINOPS_OUTBOUND_ALLOW (default the cluster's Services) and the configured
             handler; every call passes the link-local guard (functions.clients.outbound).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from functions.algorithms import moving_window
from functions.clients import endpoint as endpoint_client
from functions.clients.outbound import OutboundPolicy
from functions.errors import FieldError, InvalidInput
from functions.settings.optimizer import OptimizerSettings
from functions.stages.optimizer.deps import Deps
from functions.stages.optimizer.windows import windows

__all__ = ["handle"]

PREFERRED_METRIC = "Percentage CPU"  # GET /optimize answers one object: Krateo's metric when present


def handle(args: Mapping[str, str], authorization: str | None, deps: Deps) -> dict[str, Any]:
    """One object for one resource.

    The caller's Basic credentials are forwarded to the handler (Krateo's contract), and only to a
    handler the allow-list names (_request_policy): anything else is 403 before any call. No data -> the
    contract with empty from/to and resourceDelta 0 (Krateo's legacy code failed on an empty series).
    """
    missing = [k for k in ("resource_name", "table_name", "dbhandler_url") if not args.get(k)]
    if missing:
        raise InvalidInput("missing query parameters", [FieldError(k, "required") for k in missing])
    policy = _request_policy(deps.settings)
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


def _request_policy(settings: OptimizerSettings) -> OutboundPolicy:
    """Where a URL named by a request may point: FINOPS_OUTBOUND_ALLOW and the configured handler."""
    return OutboundPolicy.for_requests(settings.outbound_allow, [settings.dbhandler_url])
