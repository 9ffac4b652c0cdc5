"""Realistic FOCUS 1.0 rows for tests and benchmarks (a plain helper module, not a test).

`focus_rows(n)` yields dicts; `write_focus_csv(out, n)` writes a CSV of 45 columns
(the 43 FOCUS 1.0 columns plus two `x_` extension columns: 45) at about 1.5 KB per row, with
quoted cells that hold commas, JSON Tags and several providers, like a real export.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from typing import IO

from functions.demo.focus_rows import FOCUS_1_0_COLUMNS  # one FOCUS 1.0 column list

X_COLUMNS: tuple[str, ...] = ("x_SkuDescription", "x_BillingProfileId")
COLUMNS: tuple[str, ...] = FOCUS_1_0_COLUMNS + X_COLUMNS

_PROVIDERS = (
    ("Microsoft", "Microsoft Azure", "westeurope", "West Europe", "Virtual Machines", "Compute",
     "/subscriptions/{sub}/resourceGroups/rg-{team}-prod/providers/Microsoft.Compute/virtualMachines/vm-{team}-{i:06d}"),
    ("AWS", "Amazon Web Services, Inc.", "us-east-1", "US East (N. Virginia)", "Amazon Elastic Compute Cloud", "Compute",
     "arn:aws:ec2:us-east-1:{sub}:instance/i-{i:017x}"),
    ("Google Cloud", "Google LLC", "europe-west1", "Belgium", "Cloud Storage", "Storage",
     "//storage.googleapis.com/projects/{sub}/buckets/bucket-{team}-{i:06d}"),
)
_TEAMS = ("payments", "search", "platform", "data", "ml")


def focus_row(i: int, rng: random.Random, pad: int = 520) -> dict[str, str]:
    """One charge row; `i` makes ResourceId unique."""
    prov, issuer, region, region_name, service, category, rid = _PROVIDERS[i % len(_PROVIDERS)]
    team = _TEAMS[rng.randrange(len(_TEAMS))]
    sub = f"{rng.randrange(16**8):08x}-1b2c-4d5e-8f90-{rng.randrange(16**12):012x}"
    qty = rng.randrange(1, 744)
    price = round(rng.uniform(0.001, 2.5), 6)
    cost = round(qty * price, 6)
    day = 1 + i % 28
    tags = {"team": team, "env": rng.choice(("prod", "dev")), "cost-center": f"cc-{rng.randrange(1000):04d}",
            "owner": f"{team}@example.com", "app": f"{team}-service-{i % 97}"}
    return {
        "AvailabilityZone": f"{region}-{1 + i % 3}", "BilledCost": repr(cost),
        "BillingAccountId": f"ba-{sub}", "BillingAccountName": f"Contoso {prov} Billing Account, EMEA",
        "BillingCurrency": "USD", "BillingPeriodEnd": "2024-02-01T00:00:00Z",
        "BillingPeriodStart": "2024-01-01T00:00:00Z", "ChargeCategory": "Usage", "ChargeClass": "",
        "ChargeDescription": f"{qty} Hours of {service} usage in {region_name} for {team}, on-demand pricing tier",
        "ChargeFrequency": "Usage-Based", "ChargePeriodEnd": f"2024-01-{day:02d}T23:59:59Z",
        "ChargePeriodStart": f"2024-01-{day:02d}T00:00:00Z", "CommitmentDiscountCategory": "",
        "CommitmentDiscountId": "", "CommitmentDiscountName": "", "CommitmentDiscountStatus": "",
        "CommitmentDiscountType": "", "ConsumedQuantity": str(qty), "ConsumedUnit": "Hours",
        "ContractedCost": repr(cost), "ContractedUnitPrice": repr(price), "EffectiveCost": repr(cost),
        "InvoiceIssuerName": issuer, "ListCost": repr(round(cost * 1.1, 6)),
        "ListUnitPrice": repr(round(price * 1.1, 6)), "PricingCategory": "Standard",
        "PricingQuantity": str(qty), "PricingUnit": "1 Hour", "ProviderName": prov, "PublisherName": issuer,
        "RegionId": region, "RegionName": region_name, "ResourceId": rid.format(sub=sub, team=team, i=i),
        "ResourceName": f"{team}-{service.split()[0].lower()}-{i:06d}", "ResourceType": service,
        "ServiceCategory": category, "ServiceName": service,
        "SkuId": f"DZH318Z0BQ{i % 50:02d}", "SkuPriceId": f"DZH318Z0BQ{i % 50:02d}/00{i % 7}M/{region}",
        "SubAccountId": f"/subscriptions/{sub}", "SubAccountName": f"{team}-production-subscription",
        "Tags": json.dumps(tags),
        "x_SkuDescription": f"{service} D4s v5 - {region_name} - Linux - pay as you go{' - ' + 'x' * pad if pad else ''}",
        "x_BillingProfileId": f"bp-{i % 3}",
    }


def focus_rows(n: int, seed: int = 7, pad: int = 520) -> Iterator[dict[str, str]]:
    rng = random.Random(seed)
    for i in range(n):
        yield focus_row(i, rng, pad)


def write_focus_csv(out: IO[str], n: int, seed: int = 7, pad: int = 520) -> None:
    """Write a header and `n` rows (RFC 4180 quoting, \\n line ends) to a text stream."""
    w = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for row in focus_rows(n, seed, pad):
        w.writerow(row)


def focus_csv_bytes(n: int, seed: int = 7) -> bytes:
    buf = io.StringIO()
    write_focus_csv(buf, n, seed)
    return buf.getvalue().encode()
