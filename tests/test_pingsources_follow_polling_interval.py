"""A CR's PingSources follow its pollingInterval (the rule the bridge and the local scheduler share).

Cases:
- intervals 1m, 12h, 12h30m, 5s, 0s, 90m -> the cron schedule and the note explaining any rounding;
- an ExporterScraperConfig gets one `<name>-exporter` PingSource at exporterConfig.pollingInterval and a
  note that scraperConfig.pollingInterval has no timer of its own;
- a ScraperConfig gets one `<name>-scraper`; a DatabaseConfig none;
- the tick's data, CloudEvent extensions (lowercase alphanumeric names), Broker sink, owner reference;
- names stay within 63 characters; the local scheduler's event and cron matcher agree with the manifest.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from functions.local.scheduler import Cron, due, ping_event
from functions.models.pingsources import ANNOTATION_NOTE, pingsource_name, pingsources_for, plan


def _esc(interval: str, name: str = "costs", scrape: str = "1h") -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ExporterScraperConfig",
            "metadata": {"name": name, "namespace": "team-a", "uid": "uid-1"},
            "spec": {"exporterConfig": {"api": {"path": "/x"}, "pollingInterval": interval},
                     "scraperConfig": {"tableName": "t", "pollingInterval": scrape,
                                       "scraperDatabaseConfigRef": {"name": "db", "namespace": "team-a"}}}}


def _scraper(interval: str) -> dict[str, Any]:
    return {"apiVersion": "finops.krateo.io/v1", "kind": "ScraperConfig", "metadata": {"name": "prom"},
            "spec": {"tableName": "t", "pollingInterval": interval,
                     "scraperDatabaseConfigRef": {"name": "db", "namespace": "default"}}}


@pytest.mark.parametrize("interval,cron,note", [
    ("1m", "* * * * *", ""),
    ("12h", "0 */12 * * *", ""),
    ("12h30m", "0 */12 * * *", "not whole hours; running every 12h"),
    ("5s", "* * * * *", "below the one-minute cron floor"),
    ("0s", "* * * * *", "below the one-minute cron floor"),
    ("90m", "0 * * * *", "not whole hours; running every 1h"),
], ids=["1m", "12h", "12h30m", "5s", "0s", "90m"])
def test_schedule_follows_polling_interval(interval: str, cron: str, note: str) -> None:
    [scraper_plan] = plan(_scraper(interval))
    assert scraper_plan.manifest["spec"]["schedule"] == cron
    assert note in scraper_plan.note and (note or scraper_plan.note == "")
    if note:
        assert note in scraper_plan.manifest["metadata"]["annotations"][ANNOTATION_NOTE]
    [esc_plan] = plan(_esc(interval))
    assert esc_plan.manifest["spec"]["schedule"] == cron
    assert "scraperConfig.pollingInterval (1h) has no separate timer" in esc_plan.note


def test_exporter_scraper_config_gets_one_exporter_pingsource() -> None:
    [ps] = pingsources_for(_esc("1h", scrape="5m"))
    assert ps["apiVersion"] == "sources.knative.dev/v1" and ps["kind"] == "PingSource"
    assert ps["metadata"]["name"] == "costs-exporter" and ps["metadata"]["namespace"] == "team-a"
    spec = ps["spec"]
    assert spec["schedule"] == "0 * * * *"
    assert json.loads(spec["data"]) == {"kind": "ExporterScraperConfig", "namespace": "team-a", "name": "costs"}
    ext = spec["ceOverrides"]["extensions"]
    assert ext == {"finopstarget": "exporter", "kind": "ExporterScraperConfig", "crnamespace": "team-a", "crname": "costs"}
    assert all(re.fullmatch(r"[a-z0-9]+", k) for k in ext)
    assert spec["sink"]["ref"] == {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default",
                                   "namespace": "finops"}
    [owner] = ps["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("ExporterScraperConfig", "costs", "uid-1", True)


def test_scraper_config_gets_one_scraper_pingsource_and_database_config_none() -> None:
    [ps] = pingsources_for(_scraper("5m"))
    assert ps["metadata"]["name"] == "prom-scraper"
    assert ps["spec"]["ceOverrides"]["extensions"]["finopstarget"] == "scraper"
    assert "ownerReferences" not in ps["metadata"]  # no uid yet: nothing to own it by
    dbconf = {"apiVersion": "finops.krateo.io/v1", "kind": "DatabaseConfig", "metadata": {"name": "db"},
              "spec": {"username": "u", "passwordSecretRef": {"name": "s", "namespace": "n", "key": "k"}}}
    assert pingsources_for(dbconf) == []


def test_long_names_stay_within_63_characters() -> None:
    name = "a" * 80
    assert len(pingsource_name(name, "exporter")) <= 63
    assert pingsource_name(name, "exporter") != pingsource_name("a" * 81, "exporter")
    [ps] = pingsources_for(_esc("1h", name=name))
    assert len(ps["metadata"]["name"]) <= 63 and ps["metadata"]["name"].endswith("-exporter")


def test_scheduler_sends_what_the_manifest_says() -> None:
    [ps] = pingsources_for(_esc("15m"))
    event = ping_event(ps)
    assert event.type == "dev.knative.sources.ping"
    assert event.source == "/apis/v1/namespaces/team-a/pingsources/costs-exporter"
    assert event.data == {"kind": "ExporterScraperConfig", "namespace": "team-a", "name": "costs"}
    assert event.extensions["finopstarget"] == "exporter"
    assert due([ps], datetime(2025, 1, 1, 10, 45, tzinfo=UTC)) == [ps]
    assert due([ps], datetime(2025, 1, 1, 10, 46, tzinfo=UTC)) == []


@pytest.mark.parametrize("expr,when,expected", [
    ("*/15 * * * *", datetime(2025, 1, 6, 3, 30), True),
    ("0 */12 * * *", datetime(2025, 1, 6, 12, 0), True),
    ("0 */12 * * *", datetime(2025, 1, 6, 6, 0), False),
    ("0 0 1 * 0", datetime(2025, 1, 5, 0, 0), True),   # Sunday: day-of-month OR day-of-week
    ("0 0 1 * 0", datetime(2025, 1, 6, 0, 0), False),
    ("30 9 * * 1-5", datetime(2025, 1, 4, 9, 30), False),  # Saturday
], ids=str)
def test_cron_matcher(expr: str, when: datetime, expected: bool) -> None:
    assert Cron(expr).matches(when) is expected


@pytest.mark.parametrize("expr", ["* * * *", "61 * * * *", "*/0 * * * *", "a * * * *"], ids=str)
def test_bad_cron_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        Cron(expr)
