"""Showback: who spends what, read back from the cost and usage tables with plain SQL.

Why here and this simple: it is the demo's proof that the pipeline stored usable data, and the SQL
(GROUP BY, SUM, COUNT, ORDER BY, LIMIT, `tags['team']`) runs unchanged on CrateDB and on the
embedded engine. Money is never summed across currencies: every cost line carries its currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from functions.errors import FinopsError
from functions.storage.tables import valid_table_name

UNTAGGED = "(untagged)"
TEAM_TAG = "team"


class _Sql(Protocol):
    """What showback needs of functions.clients.db.Database."""

    def execute(self, stmt: str, args: Sequence[Any] | None = None) -> Any: ...


@dataclass(frozen=True)
class CostLine:
    """Totals of one group in one currency."""

    key: tuple[str, ...]
    currency: str
    billed: float
    effective: float
    rows: int


@dataclass(frozen=True)
class UsageLine:
    resource_id: str
    metric: str
    unit: str
    average: float
    maximum: float
    points: int


@dataclass(frozen=True)
class AiLine:
    """AI cost events of one (team, project, source): USD (after FX) and events stored."""

    team: str
    project: str
    source: str
    usd: float
    events: int


@dataclass
class Showback:
    cost_table: str
    resource_table: str | None
    totals: list[CostLine] = field(default_factory=list)
    by_period: list[CostLine] = field(default_factory=list)
    by_provider: list[CostLine] = field(default_factory=list)
    by_service: list[CostLine] = field(default_factory=list)
    by_category: list[CostLine] = field(default_factory=list)
    by_team: list[CostLine] = field(default_factory=list)
    top_resources: list[CostLine] = field(default_factory=list)
    usage: list[UsageLine] = field(default_factory=list)
    ai_table: str | None = None
    ai: list[AiLine] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def untagged(self) -> dict[str, tuple[float, float]]:
        """Per currency: (untagged billed, share of the currency's billed total), share in 0..1."""
        totals = {t.currency: t.billed for t in self.totals}
        out: dict[str, tuple[float, float]] = {}
        for line in self.by_team:
            if line.key[0] == UNTAGGED:
                total = totals.get(line.currency) or 0.0
                out[line.currency] = (line.billed, line.billed / total if total else 0.0)
        for currency in totals:
            out.setdefault(currency, (0.0, 0.0))
        return out


def _cost_query(table: str, keys: Sequence[str], *, limit: int | None = None) -> str:
    select = "".join(f"{k} AS k{i}, " for i, k in enumerate(keys))
    group = "".join(f"{k}, " for k in keys)
    return (
        f"SELECT {select}billingcurrency AS currency, SUM(billedcost) AS billed, "
        f"SUM(effectivecost) AS effective, COUNT(*) AS n FROM {table} "
        f"GROUP BY {group}billingcurrency ORDER BY billed DESC"
        + (f" LIMIT {int(limit)}" if limit else "")
    )


def _cost_lines(db: _Sql, stmt: str, width: int) -> list[CostLine]:
    result = db.execute(stmt)
    lines = []
    for row in result.rows:
        key = tuple(_text(v) for v in row[:width])
        currency, billed, effective, n = row[width:width + 4]
        lines.append(CostLine(key, str(currency or ""), float(billed or 0.0), float(effective or 0.0), int(n or 0)))
    return lines


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 10**11:
        return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m")  # a timestamp (epoch ms)
    return str(value)


def summary(db: _Sql, *, cost_table: str = "demo_cost", resource_table: str | None = "demo_res",
            top: int = 10, ai_table: str | None = None) -> Showback:
    """Read the showback from the tables; a missing table or refused query becomes a `problems` line."""
    cost = valid_table_name(cost_table)
    res = valid_table_name(resource_table) if resource_table else None
    out = Showback(cost, res, ai_table=valid_table_name(ai_table) if ai_table else None)
    if out.ai_table:
        try:
            out.ai.extend(_ai_lines(db, out.ai_table))
        except FinopsError as exc:
            out.problems.append(f"AI costs: {exc}")
    queries: list[tuple[str, list[CostLine], list[str], int | None]] = [
        ("totals", out.totals, [], None),
        ("billing periods", out.by_period, ["billingperiodstart"], None),
        ("providers", out.by_provider, ["providername"], None),
        ("services", out.by_service, ["providername", "servicename"], None),
        ("charge categories", out.by_category, ["chargecategory"], None),
        ("top resources", out.top_resources, ["resourcename", "providername"], top),
    ]
    for label, target, keys, limit in queries:
        try:
            target.extend(_cost_lines(db, _cost_query(cost, keys, limit=limit), len(keys)))
        except FinopsError as exc:
            out.problems.append(f"{label}: {exc}")
            if label == "totals":
                return out  # the table is missing or unreadable: nothing else will work
    try:
        lines = _cost_lines(db, _cost_query(cost, [f"tags['{TEAM_TAG}']"]), 1)
    except FinopsError:
        lines = [CostLine(("",), t.currency, t.billed, t.effective, t.rows) for t in out.totals]  # no row has the tag
    out.by_team.extend(_merge_untagged(lines))
    if res:
        try:
            out.usage.extend(_usage_lines(db, res))
        except FinopsError as exc:
            out.problems.append(f"usage: {exc}")
    return out


def _merge_untagged(lines: list[CostLine]) -> list[CostLine]:
    """NULL and empty team tags are one group: `(untagged)`, per currency."""
    tagged = [line for line in lines if line.key[0]]
    merged: dict[str, CostLine] = {}
    for line in lines:
        if line.key[0]:
            continue
        old = merged.get(line.currency)
        merged[line.currency] = CostLine(
            (UNTAGGED,), line.currency, line.billed + (old.billed if old else 0.0),
            line.effective + (old.effective if old else 0.0), line.rows + (old.rows if old else 0))
    return sorted(tagged + list(merged.values()), key=lambda c: -c.billed)


def _ai_lines(db: _Sql, table: str) -> list[AiLine]:
    """AI spend (the aicost function's table: x_cost_usd is USD after FX) per team, project and source."""
    result = db.execute(
        f"SELECT x_team, x_project, x_source, SUM(x_cost_usd) AS usd, COUNT(*) AS n FROM {table} "
        "GROUP BY x_team, x_project, x_source ORDER BY usd DESC")
    return [AiLine(str(r[0] or ""), str(r[1] or ""), str(r[2] or ""), float(r[3] or 0.0), int(r[4] or 0))
            for r in result.rows]


def _ai_render(show: Showback) -> list[str]:
    """AI spend beside cloud spend: an overview line per kind, then team/project/source in USD."""
    out = ["Cloud and AI spend", "-" * 18, f"  {'Kind':<34}{'Cur':<4}{'Billed':>16}{'Rows':>9}"]
    out += [f"  {'cloud (' + show.cost_table + ')':<34}{t.currency:<4}{_money(t.billed):>16}{t.rows:>9,}" for t in show.totals]
    out.append(f"  {'AI/ML events (' + str(show.ai_table) + ')':<34}{'USD':<4}"
               f"{_money(sum(a.usd for a in show.ai)):>16}{sum(a.events for a in show.ai):>9,}")
    out.append("")
    for title, key in (("team", lambda a: (a.team,)), ("team/project/source", lambda a: (a.team, a.project, a.source))):
        groups: dict[tuple[str, ...], tuple[float, int]] = {}
        for a in show.ai:
            usd, n = groups.get(key(a), (0.0, 0))
            groups[key(a)] = (usd + a.usd, n + a.events)
        head = f"AI spend by {title} (USD)"
        out += [head, "-" * len(head), f"  {title.title():<52}{'USD':>16}{'Events':>9}"]
        out += [f"  {_short('/'.join(k), 52):<52}{_money(v[0]):>16}{v[1]:>9,}"
                for k, v in sorted(groups.items(), key=lambda kv: -kv[1][0])]
        out += ["  (no rows)"] if not groups else []
        out.append("")
    return out


def _usage_lines(db: _Sql, table: str) -> list[UsageLine]:
    result = db.execute(
        f"SELECT resourceid, metricname, unit, AVG(average) AS avg_value, MAX(average) AS max_value, "
        f"COUNT(*) AS n FROM {table} GROUP BY resourceid, metricname, unit ORDER BY resourceid, metricname")
    return [UsageLine(str(r[0] or ""), str(r[1] or ""), str(r[2] or ""), float(r[3] or 0.0), float(r[4] or 0.0),
                      int(r[5] or 0)) for r in result.rows]


# -- rendering --------------------------------------------------------------------------------------

def _money(v: float) -> str:
    return f"{v:,.2f}"


def _short(text: str, width: int) -> str:
    """Keep the tail of long ids (the resource name is at the end)."""
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _table(title: str, headers: Sequence[str], keys_width: Sequence[int], lines: Sequence[CostLine]) -> list[str]:
    head = "  ".join(h.ljust(w) for h, w in zip(headers, keys_width, strict=True))
    out = [title, "-" * len(title),
           f"  {head}  {'Cur':<4}{'Billed':>16}{'Effective':>16}{'Rows':>9}"]
    for line in lines:
        cells = "  ".join(_short(k or UNTAGGED, w).ljust(w) for k, w in zip(line.key, keys_width, strict=True))
        out.append(f"  {cells}  {line.currency:<4}{_money(line.billed):>16}{_money(line.effective):>16}{line.rows:>9,}")
    if not lines:
        out.append("  (no rows)")
    return out + [""]


def render(show: Showback) -> str:
    """A fixed-width text report: totals, breakdowns, untagged share, top resources, usage."""
    out = [f"FinOps showback — cost table {show.cost_table}"
           + (f", usage table {show.resource_table}" if show.resource_table else ""), "=" * 72, ""]
    out += ["Totals by currency", "-" * 18, f"  {'Cur':<4}{'Billed':>16}{'Effective':>16}{'Rows':>9}"]
    out += [f"  {t.currency:<4}{_money(t.billed):>16}{_money(t.effective):>16}{t.rows:>9,}" for t in show.totals]
    out += ["  (no rows)"] if not show.totals else []
    out.append("")
    out += _table("By billing period", ["Period"], [8], show.by_period)
    out += _table("By provider", ["Provider"], [14], show.by_provider)
    out += _table("By service", ["Provider", "Service"], [14, 34], show.by_service)
    out += _table("By charge category", ["Category"], [12], show.by_category)
    out += _table(f"By team (tags['{TEAM_TAG}'])", ["Team"], [12], show.by_team)
    out += ["Untagged share (no team tag)", "-" * 28]
    for currency, (billed, share) in sorted(show.untagged().items()):
        out.append(f"  {currency:<4}{_money(billed):>16}  {share * 100:5.1f}% of billed")
    out.append("")
    out += _table(f"Top {len(show.top_resources)} resources by billed cost", ["Resource", "Provider"], [40, 14],
                  show.top_resources)
    if show.resource_table:
        out += [f"Usage per resource ({show.resource_table})", "-" * 40,
                f"  {'Resource':<44}  {'Metric':<22}{'Unit':<10}{'Avg':>12}{'Max':>12}{'Points':>8}"]
        out += [f"  {_short(u.resource_id, 44):<44}  {_short(u.metric, 22):<22}{u.unit:<10}"
                f"{u.average:>12,.2f}{u.maximum:>12,.2f}{u.points:>8,}" for u in show.usage]
        out += ["  (no rows)"] if not show.usage else []
        out.append("")
    if show.ai_table:
        out += _ai_render(show)
    if show.problems:
        out += ["Problems", "-" * 8] + [f"  {p}" for p in show.problems] + [""]
    return "\n".join(out)
