"""Cost `Tags` labels become objects queryable as `tags['key']` through the crate client.

Cases:
- `SELECT ... WHERE tags['team'] = 'x'` finds exactly the rows tagged so;
- Krateo's rule: split on ';', keys trimmed and stripped of '.', the first key wins, parts without
  ':' dropped, empty Tags is an empty object;
- our difference: a value containing ':' (a URL) is kept whole (split at the first ':' only);
- a Tags value that is a JSON object is taken as is.
"""

from __future__ import annotations

from typing import Any

import pytest
from dbhandler_server import DbHandler, dbhandler_fixture  # noqa: F401 - the `dbhandler` fixture

from functions.stages.dbhandler.columns import parse_tags


def rec(resource: str, tags: str) -> dict[str, Any]:
    return {"labels": {"ResourceId": resource, "BilledCost": "1", "BillingPeriodStart": "2024-01-01T00:00:00Z",
                       "Tags": tags}, "value": 1, "timestamp": 1700000000}


def test_rows_are_found_by_tag_key(dbhandler: DbHandler) -> None:
    recs = [rec("a", "team: x;env: prod"), rec("b", "team: y"), rec("c", ""), rec("d", "env: dev;team: x")]
    params = {"table": "costs", "source": "ExporterScraperConfig/ns/n", "run": "r", "part": "0", "final": "true"}
    assert dbhandler.upload(recs, params).status_code == 200
    got = dbhandler.sql("SELECT resourceid FROM costs WHERE tags['team'] = 'x' ORDER BY resourceid")
    assert got == [["a"], ["d"]]
    assert dbhandler.sql("SELECT tags['env'] FROM costs WHERE resourceid = ?", ["a"]) == [["prod"]]


def test_url_values_and_dotted_keys_survive(dbhandler: DbHandler) -> None:
    tags = "link: https://portal.example.com/x?a=b; app.kubernetes.io/name : web;link: second;novalue"
    assert dbhandler.upload([rec("a", tags)], {"table": "costs"}).status_code == 200
    got = dbhandler.sql("SELECT tags['link'], tags['appkubernetesio/name'] FROM costs")
    assert got == [["https://portal.example.com/x?a=b", "web"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("env: prod;org: x", {"env": "prod", "org": "x"}, id="krateo-example"),
        pytest.param("", {}, id="empty"),
        pytest.param("a.b: 1;a.b: 2", {"ab": "1"}, id="dots-removed-first-wins"),
        pytest.param("url: http://h:8080/p", {"url": "http://h:8080/p"}, id="url-kept"),
        pytest.param("no colon;k: v", {"k": "v"}, id="part-without-colon-dropped"),
        pytest.param(": v", {}, id="empty-key-dropped"),
        pytest.param('{"team": "x", "n": 2}', {"team": "x", "n": "2"}, id="json-object"),
        pytest.param(None, None, id="absent"),
    ],
)
def test_tags_rule(text: str | None, expected: dict[str, str] | None) -> None:
    assert parse_tags(text) == expected
