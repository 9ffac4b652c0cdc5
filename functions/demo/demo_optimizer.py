"""The demo's optimization step: the optimizer asked about a composition exactly as the API server asks.

Day-2: an UPDATE AdmissionReview for a VmAzure composition whose resource is the demo VM; the optimizer
reads its usage (the rows the Azure-usage config just stored) through the handler's `cyclic` notebook
and answers a JSONPatch that writes `spec.optimization`. Day-1: a CREATE asking for a 2-hour job in two
allowed regions; the optimizer picks region and start from a carbon forecast the demo writes into the
embedded database (a deterministic synthetic series: no real grid data is reachable here).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from functions.errors import InvalidInput, Unavailable

CYCLIC = "notebook-cyclic.yaml"
REGIONS = {"westeurope": (260.0, 40.0, 0), "northeurope": (210.0, 120.0, 3), "swedencentral": (45.0, 10.0, 6)}
ALLOWED = ["westeurope", "northeurope"]  # swedencentral is the cleanest but not allowed: the policy keeps it out


def carbon_intensity(region: str, at: datetime) -> float:
    """gCO2/kWh: a daily curve per region, each with its low at another hour; deterministic."""
    base, swing, shift = REGIONS[region]
    return round(base + swing * math.cos(2 * math.pi * ((at.hour + shift) % 24) / 24), 1)


def run(examples: Path, db: Mapping[str, Any], optimizer_url: str, state: Path, usage_table: str, resource_id: str,
        progress: Callable[[str], None], headers: Mapping[str, str] | None = None) -> str:
    """Both admissions; the text for stdout. FinopsError when the optimizer did not answer as it should.
    `headers`: the caller token (over plain HTTP the optimizer takes admissions only from callers with it)."""
    import httpx

    from functions.clients.db import connect
    from functions.local.crstore import CrStore

    if not usage_table.endswith("_res"):
        raise InvalidInput(f"the usage table {usage_table!r} must be <tableName>_res (Krateo's composition convention)")
    code = str(yaml.safe_load((examples / CYCLIC).read_text(encoding="utf-8"))["spec"]["inline"])
    url, user, password = str(db["url"]), str(db["user"]), str(db["password"])
    CrStore(state).apply([_endpoint_secret(url, user, password)])
    database = connect(url, user, password)
    try:
        _write_forecast(database)
    finally:
        database.close()
    try:
        with httpx.Client(timeout=60) as client:
            stored = client.post(f"{url}/compute/cyclic/upload", params={"overwrite": "true"}, content=code.encode(),
                                 auth=(user, password))
            if stored.status_code != 200:
                raise InvalidInput(f"upload of notebook cyclic: HTTP {stored.status_code} {stored.text[:300]}")
            update = _review(client, optimizer_url, "UPDATE", _composition(usage_table[:-4], {
                "finops.krateo.io/resource-ids": resource_id}), headers)
            create = _review(client, optimizer_url, "CREATE", _composition(usage_table[:-4], {
                "finops.krateo.io/allowed-regions": ",".join(ALLOWED), "finops.krateo.io/duration": "2h",
                "finops.krateo.io/deadline": "24h"}), headers)
    except httpx.HTTPError as exc:
        raise Unavailable(f"optimizer {optimizer_url}: {exc}") from exc
    windows = _patched(update, "/spec/optimization")
    if windows is None:
        raise InvalidInput(f"the day-2 review wrote no spec.optimization: {update['response'].get('warnings')}")
    items = json.loads(windows)
    if not any(i.get("resourceid") == resource_id for i in items):
        raise InvalidInput(f"no window for {resource_id} in spec.optimization: {windows}")
    region = _patched(create, "/metadata/annotations/finops.krateo.io~1placement-region")
    start = _patched(create, "/metadata/annotations/finops.krateo.io~1placement-start")
    message = _patched(create, "/metadata/annotations/finops.krateo.io~1placement-message")
    if region not in ALLOWED:
        raise InvalidInput(f"the day-1 review placed the job in {region!r}, not one of {ALLOWED}")
    progress(f"optimizer {optimizer_url}: UPDATE -> spec.optimization for {len(items)} resource(s); "
             f"CREATE -> placement {region} at {start}")
    lines = ["Optimization (the optimizer webhook, asked as the API server asks)",
             "------------------------------------------------------------------"]
    for item in items:
        opt = item["optimization"]
        lines.append(f"  day-2 {item['resourceid'].rsplit('/', 1)[-1]} {item['metricname']}: idle {opt['from']} -> {opt['to']} UTC, "
                     f"resourceDelta {opt['resourceDelta']} % (spec.optimization, a JSON string as Krateo's frontends read it)")
    lines.append(f"  day-1 2-hour job, allowed {', '.join(ALLOWED)}: {region} starting {start} ({message})")
    return "\n".join(lines)


def _endpoint_secret(url: str, user: str, password: str) -> dict[str, Any]:
    """Krateo's `<DatabaseConfig>-endpoint` Secret: where the optimizer finds the handler for finops/finops-db."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "finops-db-endpoint", "namespace": "finops"},
            "stringData": {"server-url": url, "username": user, "password": password}}


def _composition(table: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "composition.krateo.io/v1-0-0", "kind": "VmAzure",
            "metadata": {"name": "demo-vm", "namespace": "finops", "annotations": annotations},
            "spec": {"global": {"tableName": table},
                     "metricExporter": {"scraperDatabaseConfigRef": {"name": "finops-db", "namespace": "finops"}}}}


def _write_forecast(db: Any) -> None:
    """48 hourly points per region from the current hour, replacing the previous demo's."""
    db.execute('CREATE TABLE IF NOT EXISTS carbon_forecast (region TEXT, "timestamp" TIMESTAMP, intensity DOUBLE)')
    db.execute("DELETE FROM carbon_forecast WHERE region IN (?, ?, ?)", list(REGIONS))
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [[region, (now + timedelta(hours=h)).isoformat(), carbon_intensity(region, now + timedelta(hours=h))]
            for region in REGIONS for h in range(-1, 48)]
    db.executemany('INSERT INTO carbon_forecast (region, "timestamp", intensity) VALUES (?, ?, ?)', rows)


def _review(client: Any, url: str, operation: str, obj: dict[str, Any],
            headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    uid = f"demo-{operation.lower()}"
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": uid, "operation": operation, "namespace": "finops", "name": "demo-vm", "object": obj}}
    answer = client.post(url + "/", json=body, headers=dict(headers or {}))
    if answer.status_code != 200:
        raise InvalidInput(f"{operation} review: HTTP {answer.status_code} {answer.text[:300]}")
    review: dict[str, Any] = answer.json()
    if review.get("response", {}).get("uid") != uid or review["response"].get("allowed") is not True:
        raise InvalidInput(f"{operation} review: not an allowed answer for our uid: {answer.text[:300]}")
    return review


def _patched(review: dict[str, Any], path: str) -> Any:
    patch = review["response"].get("patch")
    ops = json.loads(base64.b64decode(patch)) if patch else []
    return next((op["value"] for op in ops if op["path"] == path), None)

