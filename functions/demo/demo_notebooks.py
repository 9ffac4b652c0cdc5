"""The demo's notebook step: the cost-breakdown sample notebook stored and run through `/compute`.

Exactly what Krateo's uploader and a caller do: `POST /compute/<name>/upload?overwrite=true` with the
Notebook CR's inline code (idempotent, so it does not matter whether the notebooks function already
stored it from the applied CR), then `POST /compute/<name>` with JSON parameters and
`Accept: application/json`. The notebook's per-currency totals must equal the showback's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from functions.errors import InvalidInput, Unavailable

SAMPLE = "notebook-cost-breakdown.yaml"


def run_cost_breakdown(examples: Path, db: Mapping[str, Any], cost_table: str,
                       billed: Mapping[str, float], progress: Callable[[str], None]) -> str:
    """Upload and run the sample; the rendered answer (text) for stdout. Raises FinopsError on any failure."""
    import httpx

    path = examples / SAMPLE
    if not path.is_file():
        progress(f"no {SAMPLE} in {examples}: notebook step skipped")
        return ""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    name, code = str(doc["metadata"]["name"]), str(doc["spec"]["inline"])
    params = {"table": cost_table, "by": "tag:team,period"}
    try:
        with httpx.Client(base_url=str(db["url"]), auth=(str(db["user"]), str(db["password"])), timeout=180) as client:
            stored = client.post(f"/compute/{name}/upload", params={"overwrite": "true"}, content=code.encode())
            if stored.status_code != 200 or stored.json().get("result") is not True:
                raise InvalidInput(f"upload of notebook {name}: HTTP {stored.status_code} {stored.text[:300]}")
            answer = client.post(f"/compute/{name}", json=params, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise Unavailable(f"notebook {name}: {exc}") from exc
    if answer.status_code != 200:
        raise InvalidInput(f"POST /compute/{name}: HTTP {answer.status_code} {answer.text[:1000]}")
    result = answer.json()
    totals = {t["currency"]: float(t["billedcost"]) for t in result["totals"]}
    if totals.keys() != billed.keys() or any(abs(totals[c] - billed[c]) > 0.005 for c in billed):
        raise InvalidInput(f"notebook {name} totals {totals} != showback {dict(billed)}")
    progress(f"notebook {name}: POST /compute/{name} {params} -> {len(result['rows'])} rows; totals match the showback")
    return render(name, result)


def render(name: str, result: Mapping[str, Any], top: int = 12) -> str:
    """A short table of the notebook's answer: the biggest groups per currency."""
    dims = [str(d) for d in result["by"]]
    title = f"Cost by {', '.join(dims)} (notebook {name}, POST /compute/{name})"
    lines = [title, "-" * len(title), "  " + "".join(f"{d:<16}" for d in dims) + f"{'Cur':<5}{'Billed':>16}{'Effective':>16}{'Rows':>8}"]
    currencies = sorted({str(r["currency"]) for r in result["rows"]})
    for currency in currencies:  # the biggest groups of each currency (never mixed)
        rows = sorted((r for r in result["rows"] if r["currency"] == currency), key=lambda r: -float(r["billedcost"]))
        for r in rows[:top // len(currencies)]:
            keys = "".join(f"{str(r[d])[:15]:<16}" for d in dims)
            lines.append(f"  {keys}{currency:<5}{float(r['billedcost']):>16,.2f}{float(r['effectivecost']):>16,.2f}{r['rows']:>8}")
        if len(rows) > top // len(currencies):
            lines.append(f"  ... {len(rows) - top // len(currencies)} more {currency} groups")
    return "\n".join(lines)

