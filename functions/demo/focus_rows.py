"""Deterministic, realistic FOCUS 1.0 billing rows for the demo, tests and benchmarks.

Why synthetic but realistic: the pipeline must cope with what real exports contain (several
providers, one account billed in EUR, commitment discounts where EffectiveCost != BilledCost,
negative credits, tax rows that share Krateo's 7-column key with the usage they tax, JSON Tags,
untagged resources, `x_` extension columns, quoted commas), and a seeded generator gives the same
bytes on every run so tests can compare sums exactly.

Amounts are integers in units of 1e-4 until they are formatted, so every amount has at most 4
decimals and sums compared with Decimal are exact to the cent.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import IO

FOCUS_1_0_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
    "BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
    "ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory",
    "CommitmentDiscountId", "CommitmentDiscountName", "CommitmentDiscountStatus",
    "CommitmentDiscountType", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
    "ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
    "PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName", "RegionId",
    "RegionName", "ResourceId", "ResourceName", "ResourceType", "ServiceCategory", "ServiceName",
    "SkuId", "SkuPriceId", "SubAccountId", "SubAccountName", "Tags",
)
X_COLUMNS: tuple[str, ...] = (
    "x_ServiceCode", "x_UsageType", "x_SkuDescription", "x_SkuDetails", "x_ResourceGroupName",
    "x_InvoiceSectionName", "x_BillingProfileId",
)
FOCUS_COLUMNS: tuple[str, ...] = FOCUS_1_0_COLUMNS + X_COLUMNS
KRATEO_KEY: tuple[str, ...] = (
    "ResourceId", "ResourceName", "BillingPeriodEnd", "BillingPeriodStart",
    "ChargePeriodEnd", "ChargePeriodStart", "SkuPriceId",
)
COST_COLUMNS: tuple[str, ...] = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
FIRST_PERIOD = (2026, 9)
TEAMS: tuple[str, ...] = ("payments", "search", "platform", "data", "ml")
_COSTCENTER = {"payments": "cc-42", "search": "cc-17", "platform": "cc-10", "data": "cc-23", "ml": "cc-31"}
_IX = {name: i for i, name in enumerate(FOCUS_COLUMNS)}
_SCALE = 10_000


@dataclass(frozen=True)
class _Account:
    billing_id: str
    billing_name: str
    currency: str
    sub_id: str
    sub_name: str
    tax_rate: int  # per-mille
    tax_label: str


@dataclass(frozen=True)
class _Service:
    name: str
    category: str
    resource_type: str
    code: str
    kind: str  # short name used in resource names
    skus: tuple[tuple[str, str, int], ...]  # (sku id, description, list unit price in 1e-4)
    unit: str
    size: tuple[int, int]  # pricing quantity per hour, 1e-4 units (low, high)
    commitment: bool


@dataclass(frozen=True)
class _Provider:
    name: str
    publisher: str
    issuer: str
    weight: float
    regions: tuple[tuple[str, str, str], ...]  # (id, name, availability zone suffix or "")
    accounts: tuple[_Account, ...]
    services: tuple[_Service, ...]
    negotiated: int  # negotiated discount, per-mille of list
    commit: tuple[str, str, str, str, int]  # (id, name, category, type, discount per-mille)


_HOURS = "Hours"
PROVIDERS: tuple[_Provider, ...] = (
    _Provider(
        "AWS", "Amazon Web Services, Inc.", "Amazon Web Services, Inc.", 0.45,
        (("us-east-1", "US East (N. Virginia)", "a"), ("eu-west-1", "Europe (Ireland)", "b"),
         ("us-west-2", "US West (Oregon)", "c")),
        (_Account("123456789012", "Acme Corp", "USD", "210987654321", "acme-prod", 80, "Sales tax"),
         _Account("123456789012", "Acme Corp", "USD", "345678901234", "acme-dev", 80, "Sales tax")),
        (_Service("Amazon Elastic Compute Cloud", "Compute", "Instance", "AmazonEC2", "ec2",
                  (("8D49XP354UEYTHGM", "m6i.large, Linux, on demand", 960),
                   ("B4JUK3U7ZRPBHBHB", "c6i.xlarge, Linux, on demand", 1700),
                   ("Q5KJ2TUD3F5QX6WN", "r6g.2xlarge, Linux, on demand", 4032)), _HOURS, (10_000, 10_000), True),
         _Service("Amazon Simple Storage Service", "Storage", "Bucket", "AmazonS3", "s3",
                  (("WP9ANXZGBYYSGJEA", "Standard storage, first 50 TB", 230),), "GB-Months", (2_000, 60_000), False),
         _Service("Amazon Relational Database Service", "Databases", "DB Instance", "AmazonRDS", "rds",
                  (("QHHDHW6YNPQYJWGT", "db.r6g.large, PostgreSQL, Multi-AZ", 4500),
                   ("ZK3RPYS8K6U6F3F9", "db.m6g.xlarge, MySQL, Single-AZ", 3140)), _HOURS, (10_000, 10_000), True)),
        50, ("arn:aws:savingsplans::123456789012:savingsplan/2f1c9e0a-7d4b-4c1e-9a51-0b6f3c2d1e8a",
             "Compute Savings Plan, 1 year, No Upfront", "Spend", "Savings Plan", 280),
    ),
    _Provider(
        "Microsoft", "Microsoft", "Microsoft", 0.35,
        (("westeurope", "West Europe", ""), ("northeurope", "North Europe", ""), ("eastus", "East US", "")),
        (_Account("8611537", "Acme Corp US", "USD", "6b1f0c2e-3d4a-4b5c-9d8e-7f6a5b4c3d2e", "acme-us-prod", 0, "Sales tax"),
         _Account("7723419", "Acme GmbH", "EUR", "0e9d8c7b-6a5f-4e3d-8c2b-1a0f9e8d7c6b", "acme-de-prod", 190, "VAT 19%")),
        (_Service("Virtual Machines", "Compute", "Virtual machine", "Microsoft.Compute", "vm",
                  (("DZH318Z0BQ4L", "D4s v5, Linux", 1920), ("DZH318Z0BPVK", "E8s v5, Linux", 5040)),
                  _HOURS, (10_000, 10_000), True),
         _Service("Storage", "Storage", "Storage account", "Microsoft.Storage", "st",
                  (("DZH318Z0BNVX", "Hot LRS, data stored", 184),), "GB-Months", (5_000, 90_000), False),
         _Service("SQL Database", "Databases", "SQL database", "Microsoft.Sql", "sqldb",
                  (("DZH318Z0BQPS", "General Purpose, Gen5, 2 vCores", 5044),), _HOURS, (10_000, 10_000), True)),
        0, ("/providers/Microsoft.Capacity/reservationOrders/4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8/reservations/"
            "9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d", "VM RI, D4s v5, West Europe, 1 year", "Usage", "Reservation", 350),
    ),
    _Provider(
        "Google Cloud", "Google Cloud", "Google LLC", 0.20,
        (("europe-west1", "Belgium", "b"), ("us-central1", "Iowa", "a"), ("europe-west4", "Netherlands", "c")),
        (_Account("01A2B3-C4D5E6-F7A8B9", "Acme GCP", "USD", "acme-analytics", "Acme Analytics", 0, "Sales tax"),
         _Account("01A2B3-C4D5E6-F7A8B9", "Acme GCP", "USD", "acme-search-prod", "Acme Search", 0, "Sales tax")),
        (_Service("Compute Engine", "Compute", "compute.googleapis.com/Instance", "6F81-5844-456A", "gce",
                  (("2E27-4F75-95CD", "N2 Instance Core running in Belgium", 350),
                   ("CF4E-A0C7-E3BF", "N2 Instance Ram running in Belgium", 47)), _HOURS, (20_000, 160_000), True),
         _Service("Cloud Storage", "Storage", "storage.googleapis.com/Bucket", "95FF-2EF5-5EA1", "gcs",
                  (("E5F0-6A5D-7BAD", "Standard Storage Belgium", 200),), "GB-Months", (1_000, 40_000), False),
         _Service("BigQuery", "Analytics", "bigquery.googleapis.com/Dataset", "24E6-581D-38E5", "bq",
                  (("3362-E469-6BEC", "Analysis (on-demand), per TiB", 62_500),), "Tebibytes", (1, 400), False)),
        0, ("projects/acme-analytics/regions/europe-west1/commitments/cud-n2-1yr",
            "N2 CUD, 1 year, europe-west1", "Usage", "Committed Use Discount", 370),
    ),
)


def fmt(v: int) -> str:
    """An amount in 1e-4 units as a decimal string with 4 decimals."""
    sign = "-" if v < 0 else ""
    v = -v if v < 0 else v
    return f"{sign}{v // _SCALE}.{v % _SCALE:04d}"


def _mul(a: int, b: int) -> int:
    """(a * b) in 1e-4 units, rounded half-up; a and b in 1e-4 units."""
    p = a * b
    return (p + _SCALE // 2) // _SCALE if p >= 0 else -((-p + _SCALE // 2) // _SCALE)


def _per_mille(v: int, pm: int) -> int:
    return (v * pm + 500) // 1000 if v >= 0 else -((-v * pm + 500) // 1000)


@dataclass
class _Resource:
    provider: _Provider
    account: _Account
    service: _Service
    sku: tuple[str, str, int]
    template: list[str]
    size: tuple[int, int]
    committed: bool


def _tags(rng: random.Random) -> tuple[str, str]:
    """(team or "", Tags JSON text): mostly fully tagged, some env-only, some untagged."""
    u = rng.random()
    if u < 0.12:
        return "", "{}"
    env = rng.choice(("prod", "prod", "staging", "dev"))
    if u < 0.20:
        return "", f'{{"env": "{env}"}}'
    team = rng.choice(TEAMS)
    return team, f'{{"team": "{team}", "env": "{env}", "costcenter": "{_COSTCENTER[team]}"}}'


def _resource_id(p: _Provider, a: _Account, s: _Service, region: str, zone: str, name: str, j: int, team: str) -> str:
    if p.name == "AWS":
        kind = {"ec2": f"instance/i-{j:017x}", "s3": name, "rds": f"db:{name}"}[s.kind]
        svc = {"ec2": "ec2", "s3": "s3", "rds": "rds"}[s.kind]
        return f"arn:aws:{svc}:{'' if svc == 's3' else region}:{'' if svc == 's3' else a.sub_id}:{kind}"
    if p.name == "Microsoft":
        rg = f"rg-{team or 'shared'}-{a.sub_name.rsplit('-', 1)[-1]}"
        path = {"vm": "Microsoft.Compute/virtualMachines", "st": "Microsoft.Storage/storageAccounts",
                "sqldb": "Microsoft.Sql/servers/sql-acme/databases"}[s.kind]
        return f"/subscriptions/{a.sub_id}/resourceGroups/{rg}/providers/{path}/{name}"
    where = f"zones/{region}-{zone}/instances" if s.kind == "gce" else ("buckets" if s.kind == "gcs" else "datasets")
    host = {"gce": "compute", "gcs": "storage", "bq": "bigquery"}[s.kind]
    return f"//{host}.googleapis.com/projects/{a.sub_id}/{where}/{name}"


def _make_resource(seed: int, j: int) -> _Resource:
    """Resource j of a seed: the same whatever n is, so growing n only adds resources."""
    rng = random.Random(f"focus:{seed}:{j}")
    p = rng.choices(PROVIDERS, weights=[x.weight for x in PROVIDERS])[0]
    a = p.accounts[1] if (p.name == "Microsoft" and rng.random() < 0.4) else p.accounts[rng.randrange(2)]
    s = rng.choice(p.services)
    sku = rng.choice(s.skus)
    region, region_name, zone = rng.choice(p.regions)
    team, tags = _tags(rng)
    name = f"{team or 'shared'}-{s.kind}-{j:04d}"
    if s.kind == "st":
        name = name.replace("-", "")[:24]
    rid = _resource_id(p, a, s, region, zone, name, j, team)
    size = (s.size[0], s.size[0]) if s.size[0] == s.size[1] else tuple(sorted(rng.sample(range(*s.size), 2)))
    row = [""] * len(FOCUS_COLUMNS)
    for col, val in (
        ("AvailabilityZone", f"{region}{zone}" if zone and s.kind in ("ec2", "rds") else (f"{region}-{zone}" if s.kind == "gce" else "")),
        ("BillingAccountId", a.billing_id), ("BillingAccountName", a.billing_name),
        ("BillingCurrency", a.currency), ("InvoiceIssuerName", p.issuer), ("ProviderName", p.name),
        ("PublisherName", p.publisher), ("RegionId", region), ("RegionName", region_name),
        ("ResourceId", rid), ("ResourceName", name), ("ResourceType", s.resource_type),
        ("ServiceCategory", s.category), ("ServiceName", s.name), ("SkuId", sku[0]),
        ("SkuPriceId", f"{sku[0]}.{a.billing_id[-4:]}.{region}"), ("SubAccountId", a.sub_id),
        ("SubAccountName", a.sub_name), ("Tags", tags), ("x_ServiceCode", s.code),
        ("x_UsageType", f"{region}:{s.kind}:{s.unit}"), ("x_SkuDescription", sku[1]),
        ("x_SkuDetails", f'{{"Region": "{region}", "Sku": "{sku[0]}", "Meter": "{sku[1]}"}}'),
        ("x_ResourceGroupName", rid.split("/resourceGroups/")[1].split("/")[0] if "/resourceGroups/" in rid else ""),
        ("x_InvoiceSectionName", f"{a.billing_name} / {a.sub_name}"),
        ("x_BillingProfileId", f"{p.name[:3].upper()}-{a.billing_id}-{a.currency}"),
    ):
        row[_IX[col]] = val
    return _Resource(p, a, s, sku, row, (size[0], size[1]), s.commitment and rng.random() < 0.3)


class _Calendar:
    """Hour stamps and billing periods of `months` months from FIRST_PERIOD."""

    def __init__(self, months: int) -> None:
        y, m = FIRST_PERIOD
        starts = []
        for _ in range(months + 1):
            starts.append(datetime(y, m, 1, tzinfo=UTC))
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
        self.period_starts = [_iso(d) for d in starts]
        total = int((starts[-1] - starts[0]).total_seconds() // 3600)
        self.hours = [_iso(starts[0] + timedelta(hours=h)) for h in range(total + 1)]
        self.period_of = [0] * total
        self.hours_in: list[int] = []
        k = 0
        for i in range(months):
            span = int((starts[i + 1] - starts[i]).total_seconds() // 3600)
            self.period_of[k:k + span] = [i] * span
            self.hours_in.append(span)
            k += span
        self.total = total


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _coprime(n: int, start: int) -> int:
    p = start
    while math.gcd(p, n) != 1:
        p += 1
    return p


def _row_values(n: int, seed: int, period_months: int) -> Iterator[list[str]]:
    """Rows as value lists in FOCUS_COLUMNS order (the fast path of write_focus_csv)."""
    if period_months < 1:
        raise ValueError("period_months must be at least 1")
    cal = _Calendar(period_months)
    n_res = max(60, math.ceil(n / cal.total) + 1)
    resources: dict[int, _Resource] = {}
    stride = _coprime(n_res, 7919)
    rng = random.Random(f"focus-rows:{seed}")
    purchased: set[tuple[str, int]] = set()
    k = 0
    while k < n:
        h = k * cal.total // n
        j = (k * stride) % n_res
        res = resources.get(j)
        if res is None:
            res = resources[j] = _make_resource(seed, j)
        u = rng.random()
        if u < 0.01 and res.committed and (res.provider.name, h) not in purchased:
            purchased.add((res.provider.name, h))
            yield _purchase(res, cal, h, rng)
            k += 1
            continue
        if u < 0.015 and cal.period_of[h] > 0:
            yield _correction(res, cal, h, rng)
            k += 1
            continue
        usage, billed = _usage(res, cal, h, rng)
        yield usage
        k += 1
        v = rng.random()
        if k < n and billed > 0 and v < 0.04:
            yield _companion(usage, "Credit", -_per_mille(billed, 100), res)
            k += 1
        elif k < n and billed > 0 and res.account.tax_rate and v < 0.10:
            yield _companion(usage, "Tax", _per_mille(billed, res.account.tax_rate), res)
            k += 1


def _periods(row: list[str], cal: _Calendar, h: int, bp: int) -> None:
    row[_IX["BillingPeriodStart"]] = cal.period_starts[bp]
    row[_IX["BillingPeriodEnd"]] = cal.period_starts[bp + 1]
    row[_IX["ChargePeriodStart"]] = cal.hours[h]
    row[_IX["ChargePeriodEnd"]] = cal.hours[h + 1]


def _usage(res: _Resource, cal: _Calendar, h: int, rng: random.Random) -> tuple[list[str], int]:
    """One usage row and its BilledCost (1e-4 units)."""
    row = res.template.copy()
    _periods(row, cal, h, cal.period_of[h])
    lo, hi = res.size
    qty = lo if lo == hi else rng.randint(lo, hi)
    list_price = res.sku[2]
    contracted_price = _per_mille(list_price, 1000 - res.provider.negotiated)
    list_cost = _mul(list_price, qty)
    contracted = _mul(contracted_price, qty)
    svc = res.service
    if res.committed:
        cid, cname, ccat, ctype, disc = res.provider.commit
        billed, effective = 0, _per_mille(list_cost, 1000 - disc)
        for col, val in (("CommitmentDiscountId", cid), ("CommitmentDiscountName", cname),
                         ("CommitmentDiscountCategory", ccat), ("CommitmentDiscountType", ctype),
                         ("CommitmentDiscountStatus", "Used"), ("PricingCategory", "Committed")):
            row[_IX[col]] = val
        desc = f"{res.sku[1]}, covered by {ctype}"
    else:
        billed = effective = contracted
        row[_IX["PricingCategory"]] = "Standard"
        desc = f"{res.sku[1]} ({svc.unit.lower()})"
    row[_IX["BilledCost"]] = fmt(billed)
    row[_IX["EffectiveCost"]] = fmt(effective)
    row[_IX["ListCost"]] = fmt(list_cost)
    row[_IX["ContractedCost"]] = fmt(contracted)
    row[_IX["ListUnitPrice"]] = fmt(list_price)
    row[_IX["ContractedUnitPrice"]] = fmt(contracted_price)
    row[_IX["PricingQuantity"]] = row[_IX["ConsumedQuantity"]] = fmt(qty)
    row[_IX["PricingUnit"]] = row[_IX["ConsumedUnit"]] = svc.unit
    row[_IX["ChargeCategory"]] = "Usage"
    row[_IX["ChargeFrequency"]] = "Usage-Based"
    row[_IX["ChargeDescription"]] = desc
    return row, billed


_NOT_FOR_COMPANIONS = (
    "PricingQuantity", "ConsumedQuantity", "PricingUnit", "ConsumedUnit", "ListUnitPrice",
    "ContractedUnitPrice", "PricingCategory", "CommitmentDiscountId", "CommitmentDiscountName",
    "CommitmentDiscountCategory", "CommitmentDiscountType", "CommitmentDiscountStatus",
)


def _companion(usage: list[str], category: str, amount: int, res: _Resource) -> list[str]:
    """A Credit or Tax row sharing Krateo's 7-column key with `usage`."""
    row = usage.copy()
    for col in _NOT_FOR_COMPANIONS:
        row[_IX[col]] = ""
    row[_IX["ChargeCategory"]] = category
    row[_IX["BilledCost"]] = row[_IX["EffectiveCost"]] = fmt(amount)
    row[_IX["ListCost"]] = row[_IX["ContractedCost"]] = fmt(amount if category == "Tax" else 0)
    if category == "Tax":
        row[_IX["ChargeDescription"]] = f"{res.account.tax_label} on {res.service.name}"
    else:
        row[_IX["ChargeDescription"]] = f"Promotional credit, {res.provider.name} Migration Program"
    return row


def _purchase(res: _Resource, cal: _Calendar, h: int, rng: random.Random) -> list[str]:
    """An hourly recurring commitment fee: BilledCost > 0, EffectiveCost 0 (amortized into usage)."""
    p, a = res.provider, res.provider.accounts[0]
    cid, cname, ccat, ctype, _ = p.commit
    row = [""] * len(FOCUS_COLUMNS)
    fee = 25_000 + 1_000 * rng.randrange(20)
    _periods(row, cal, h, cal.period_of[h])
    for col, val in (
        ("BilledCost", fmt(fee)), ("EffectiveCost", fmt(0)), ("ListCost", fmt(fee)),
        ("ContractedCost", fmt(fee)), ("BillingAccountId", a.billing_id), ("BillingAccountName", a.billing_name),
        ("BillingCurrency", a.currency), ("ChargeCategory", "Purchase"), ("ChargeFrequency", "Recurring"),
        ("ChargeDescription", f"{cname}, recurring fee"), ("CommitmentDiscountId", cid),
        ("CommitmentDiscountName", cname), ("CommitmentDiscountCategory", ccat),
        ("CommitmentDiscountType", ctype), ("InvoiceIssuerName", p.issuer), ("ProviderName", p.name),
        ("PublisherName", p.publisher), ("ResourceId", cid), ("ResourceName", cname), ("ResourceType", ctype),
        ("ServiceCategory", res.service.category), ("ServiceName", res.service.name),
        ("PricingCategory", "Standard"), ("PricingQuantity", fmt(_SCALE)), ("PricingUnit", _HOURS),
        ("SkuId", f"{ctype.replace(' ', '')}-1yr"), ("SkuPriceId", f"{ctype.replace(' ', '')}-1yr.{a.billing_id[-4:]}"),
        ("SubAccountId", a.sub_id), ("SubAccountName", a.sub_name), ("Tags", "{}"),
        ("x_ServiceCode", res.service.code), ("x_UsageType", "commitment:fee"), ("x_SkuDescription", cname),
    ):
        row[_IX[col]] = val
    return row


def _correction(res: _Resource, cal: _Calendar, h: int, rng: random.Random) -> list[str]:
    """An Adjustment/Correction billed now for usage of the previous month."""
    bp = cal.period_of[h]
    start = sum(cal.hours_in[:bp])
    earlier = start - cal.hours_in[bp - 1] + min(h - start, cal.hours_in[bp - 1] - 1)
    row, billed = _usage(res, cal, earlier, rng)
    _periods(row, cal, earlier, bp)
    amount = -_per_mille(abs(billed) or 1_000, 50 + rng.randrange(100))
    for col in _NOT_FOR_COMPANIONS:
        row[_IX[col]] = ""
    row[_IX["ChargeCategory"]] = "Adjustment"
    row[_IX["ChargeClass"]] = "Correction"
    row[_IX["ChargeDescription"]] = f"Correction of {res.service.name} charges, previous billing period"
    row[_IX["BilledCost"]] = row[_IX["EffectiveCost"]] = fmt(amount)
    row[_IX["ListCost"]] = row[_IX["ContractedCost"]] = fmt(amount)
    return row


def focus_rows(n: int, *, seed: int = 0, period_months: int = 2) -> Iterator[dict[str, str]]:
    """n FOCUS 1.0 rows (dicts over FOCUS_COLUMNS), the same for the same (n, seed, period_months)."""
    cols = FOCUS_COLUMNS
    for values in _row_values(n, seed, period_months):
        yield dict(zip(cols, values, strict=True))


class _CsvCells(dict[str, str]):
    """Cell text exactly as csv.writer (QUOTE_MINIMAL) writes it, memoized: rows repeat most values,
    and this is twice as fast as csv.writer on wide rows (the test compares both byte for byte)."""

    def __missing__(self, v: str) -> str:
        out = '"' + v.replace('"', '""') + '"' if ('"' in v or "," in v or "\n" in v or "\r" in v) else v
        if len(self) < 200_000:
            self[v] = out
        return out


def write_focus_csv(path_or_file: str | Path | IO[str], n: int, seed: int = 0, *, period_months: int = 2) -> int:
    """Stream n rows as CSV (header first) to a path or text file; returns the number of rows."""
    if isinstance(path_or_file, str | Path):
        with open(path_or_file, "w", newline="", encoding="utf-8") as fh:
            return write_focus_csv(fh, n, seed, period_months=period_months)
    out = path_or_file
    cell = _CsvCells().__getitem__
    out.write(",".join(map(cell, FOCUS_COLUMNS)) + "\n")
    count = 0
    batch: list[str] = []
    for values in _row_values(n, seed, period_months):
        batch.append(",".join(map(cell, values)))
        if len(batch) == 1000:
            out.write("\n".join(batch) + "\n")
            count += len(batch)
            batch = []
    if batch:
        out.write("\n".join(batch) + "\n")
    return count + len(batch)


def write_rows_csv(path_or_file: str | Path | IO[str], rows: Iterable[dict[str, str]]) -> int:
    """Write dict rows (e.g. from restate) as CSV with FOCUS_COLUMNS as the header."""
    if isinstance(path_or_file, str | Path):
        with open(path_or_file, "w", newline="", encoding="utf-8") as fh:
            return write_rows_csv(fh, rows)
    writer = csv.DictWriter(path_or_file, FOCUS_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow(row)
        count += 1
    return count


def focus_csv_text(n: int, seed: int = 0, *, period_months: int = 2) -> str:
    """The CSV as one string (small n: tests and fixtures)."""
    buf = io.StringIO()
    write_focus_csv(buf, n, seed, period_months=period_months)
    return buf.getvalue()


def restate(rows: Iterable[dict[str, str]], period: str, factor: Decimal | str | int) -> Iterator[dict[str, str]]:
    """The provider re-issues one billing period: its cost amounts times `factor`, ChargeClass Correction.

    `period` is `YYYY-MM` (matched against BillingPeriodStart); rows of other periods pass unchanged,
    so the output is a full replacement export, as providers publish it.
    """
    f = Decimal(str(factor))
    q = Decimal("0.0001")
    for row in rows:
        if not row.get("BillingPeriodStart", "").startswith(period):
            yield row
            continue
        out = dict(row)
        for col in COST_COLUMNS:
            if out.get(col):
                out[col] = str((Decimal(out[col]) * f).quantize(q, rounding=ROUND_HALF_UP))
        out["ChargeClass"] = "Correction"
        yield out


def period_label(row: dict[str, str]) -> str:
    """`YYYY-MM` of a row's billing period."""
    return row["BillingPeriodStart"][:7]
