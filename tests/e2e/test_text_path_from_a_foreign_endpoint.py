"""A ScraperConfig reads a foreign Prometheus text endpoint (prometheus_client's own HTTP server on
127.0.0.1, a real registry) and stores one generic row per sample.

Cases (samples counted with prometheus_client's parser on the very body the endpoint serves):
- generic with metricName (as crds/examples/scraperconfig.yaml): one row per sample of that family,
  its labels as columns and its value;
- generic without a metricName: every sample of every family (counter, *_created, gauge, histogram
  buckets/sum/count: families with different label sets, absent labels stored as NULL);
- the next scrape replaces the source's rows: the same row count, the new values.
"""

from __future__ import annotations

import math
from collections import Counter as Multiset
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from e2e_stack import DB_REF, NAMESPACE, E2EStack, database_docs, secret
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from functions.local.supervisor import free_port


class Endpoint:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.orders = Counter("shop_orders", "Orders served.", ["method", "status"], registry=self.registry)
        self.temperature = Gauge("room_temperature_celsius", "Room temperature.", ["room", "floor"],
                                 registry=self.registry)
        self.latency = Histogram("shop_request_seconds", "Latency.", ["path"], buckets=(0.1, 0.5, 2.5),
                                 registry=self.registry)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def samples(self, family: str | None = None) -> Multiset[tuple[Any, ...]]:
        """(sorted labels, value) per sample, as prometheus_client parses what the endpoint serves now."""
        body = httpx.get(self.url + "/metrics", timeout=10).text
        return Multiset((tuple(sorted(s.labels.items())), s.value)
                        for fam in text_string_to_metric_families(body) for s in fam.samples
                        if family is None or s.name == family)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()
    ep.orders.labels("GET", "200").inc(1027)
    ep.orders.labels("GET", "500").inc(3)
    ep.orders.labels("POST", "200").inc(311)
    ep.temperature.labels("lab", "1").set(21.5)
    ep.temperature.labels("office", "2").set(-3.25)
    for path, value in (("/api/orders", 0.05), ("/api/orders", 0.7), ("/api/cart", 3.0)):
        ep.latency.labels(path).observe(value)
    server, thread = start_http_server(ep.port, addr="127.0.0.1", registry=ep.registry)
    try:
        yield ep
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def scraper_config(name: str, table: str, generic: dict[str, Any] | None) -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"tableName": table, "pollingInterval": "5m", "metricType": "generic",
                     "api": {"path": "/metrics", "verb": "GET", "endpointRef": {"name": "foreign", "namespace": NAMESPACE}},
                     **({"generic": generic} if generic else {}), "scraperDatabaseConfigRef": DB_REF}}


def stored(stack: E2EStack, table: str) -> Multiset[tuple[Any, ...]]:
    """(sorted non-null labels, value) per stored row."""
    cols = [r[0] for r in stack.sql("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])]
    labels = [c for c in cols if c not in ("value", "timestamp") and not c.startswith("finops_")]
    rows = stack.sql(f"SELECT {', '.join(labels)}, value FROM {table}")
    return Multiset((tuple(sorted((k, v) for k, v in zip(labels, r, strict=False) if v is not None)), r[-1])
                    for r in rows)


@pytest.mark.parametrize("family", ["shop_orders_total", None], ids=["one-family", "every-family"])
def test_one_row_per_sample_and_the_next_scrape_replaces_them(stack: E2EStack, endpoint: Endpoint,
                                                              family: str | None) -> None:
    name, table = ("foreign-one", "foreign_one") if family else ("foreign-all", "foreign_all")
    generic = {"metricName": family, "valueColumnIndex": 0} if family else None
    stack.apply(secret("foreign", {"server-url": endpoint.url}), *database_docs(),
                scraper_config(name, table, generic))

    result = stack.run(f"ScraperConfig/{NAMESPACE}/{name}")
    assert result.rc == 0, result.text
    expected = endpoint.samples(family)
    assert all(math.isfinite(v) for _, v in expected)
    assert sum(expected.values()) == 3 if family else sum(expected.values()) > 3 + 2 + 2 * 6
    assert sum(stored(stack, table).values()) == sum(expected.values())
    assert stored(stack, table) == expected

    endpoint.orders.labels("GET", "200").inc(5)
    endpoint.temperature.labels("lab", "1").set(22.0)
    result = stack.run(f"ScraperConfig/{NAMESPACE}/{name}")
    assert result.rc == 0, result.text
    after = endpoint.samples(family)
    assert after != expected
    assert stored(stack, table) == after
