"""A FocusConfig's row follows the CR through the local stack: created, updated, deleted.

Cases (one stack for the module; each case has its own table):
- `finops apply` -> the row is queryable within one event delivery (the cr.applied event goes through
  the local broker to the focus-ingest function), with typed columns (billedcost DOUBLE, tags['team']);
- an update (billedCost, key fields resourceId/skuPriceId and chargeDescription changed) replaces that
  CR's row: still one row for its uid, new values;
- a chargeDescription with `,` `"` and a newline round-trips exactly;
- a second FocusConfig in the same table, with the same key fields, never overwrites the first;
- changing tableName moves the row to the new table;
- `finops delete` removes the row (Krateo keeps it) and leaves the other CR's row alone;
- the same flow through bridge-shaped events posted to the function directly (the CR stored as the
  API server would, the event built like the bridge's): 200 with status conditions, a repeated event
  changes nothing, a delete removes the row;
- an event for a CR that is gone answers 200 "skipped" (never 404);
- an invalid CR (stored past validation, as a looser CRD could let through) answers 400 listing every
  bad field and carrying Ready=False conditions.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import DB_REF, NAMESPACE, E2EStack, start_stack, wait_until

from functions import events
from functions.clients.kube import resource_path
from functions.local.crstore import CrStore

pytestmark = pytest.mark.slow
TRICKY = 'Support, "premium" tier\nsecond line, with a comma'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    s = start_stack(tmp_path_factory.mktemp("focus"))
    yield s
    s.stop()


def focusconfig(name: str, table: str, **focus: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "billedCost": "100.25", "billingCurrency": "EUR", "effectiveCost": "90.5",
        "billingPeriodStart": "2024-01-01T00:00:00Z", "billingPeriodEnd": "2024-02-01T00:00:00Z",
        "chargePeriodStart": "2024-01-01T00:00:00Z", "chargePeriodEnd": "2024-02-01T00:00:00Z",
        "chargeCategory": "Purchase", "chargeDescription": "Support", "consumedQuantity": "1",
        "consumedUnit": "Month", "invoiceIssuerName": "ACME", "serviceCategory": "Management and Governance",
        "resourceId": "r-1", "resourceName": "support", "skuPriceId": "p-1",
        "capacityReservationStatus": "Used", "commitmentDiscountCategory": "Spend",
        "tags": [{"key": "team", "value": "platform"}, {"key": "cost.center", "value": "cc-1"}],
    }
    spec.update(focus)
    return {"apiVersion": "finops.krateo.io/v1", "kind": "FocusConfig",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"focusSpec": spec, "scraperConfig": {"tableName": table, "pollingInterval": "1h",
                                                          "scraperDatabaseConfigRef": DB_REF}}}


def uid(stack: E2EStack, name: str) -> str:
    cr = CrStore(stack.state).get("FocusConfig", NAMESPACE, name)
    assert cr is not None
    return str(cr["metadata"]["uid"])


def rows(stack: E2EStack, table: str, name: str) -> list[list[Any]]:
    if not stack.sql("SELECT table_name FROM information_schema.tables WHERE table_name = ?", [table]):
        return []
    return stack.sql(
        f"SELECT chargedescription, billedcost, resourceid, skupriceid, tags['team'] AS team, tags['costcenter'] AS cc,"
        f" effectivecost, billingperiodstart, capacityreservationstatus FROM {table} WHERE finops_source = ?",
        [f"FocusConfig/{uid(stack, name)}"])


def test_apply_update_delete_through_the_broker(stack: E2EStack) -> None:
    stack.apply(focusconfig("fc-a", "fc_life"))
    got = wait_until(lambda: rows(stack, "fc_life", "fc-a"), timeout=30, what="the FocusConfig row")
    assert got == [["Support", 100.25, "r-1", "p-1", "platform", "cc-1", 90.5, 1704067200000, "Used"]]

    stack.apply(focusconfig("fc-b", "fc_life"))  # same key fields, another CR
    wait_until(lambda: rows(stack, "fc_life", "fc-b"), timeout=30, what="the second CR's row")

    stack.apply(focusconfig("fc-a", "fc_life", billedCost="7.5", resourceId="r-2", skuPriceId="p-2",
                            chargeDescription=TRICKY))
    got = wait_until(lambda: [r for r in rows(stack, "fc_life", "fc-a") if r[1] == 7.5], timeout=30, what="the update")
    assert got == [[TRICKY, 7.5, "r-2", "p-2", "platform", "cc-1", 90.5, 1704067200000, "Used"]]
    assert rows(stack, "fc_life", "fc-a") == got  # replaced, not added
    assert len(rows(stack, "fc_life", "fc-b")) == 1

    stack.apply(focusconfig("fc-a", "fc_moved", billedCost="7.5", chargeDescription=TRICKY))
    wait_until(lambda: rows(stack, "fc_moved", "fc-a"), timeout=30, what="the row in the new table")
    assert rows(stack, "fc_life", "fc-a") == []

    uid_a = uid(stack, "fc-a")
    result = stack.finops("delete", f"FocusConfig/{NAMESPACE}/fc-a")
    assert result.rc == 0, result.text
    source = f"FocusConfig/{uid_a}"
    wait_until(lambda: not stack.sql("SELECT 1 FROM fc_moved WHERE finops_source = ?", [source]),
               timeout=30, what="the row to be deleted")
    assert len(rows(stack, "fc_life", "fc-b")) == 1
    assert stack.deadletters() == []



def test_bridge_shaped_events_posted_directly(stack: E2EStack) -> None:
    store = CrStore(stack.state)
    [change] = store.apply([focusconfig("fc-bridge", "fc_bridge", chargeDescription=TRICKY)])
    [event] = change.events
    assert event.extensions["kind"] == "FocusConfig"
    for _ in range(2):  # at least once: a redelivery changes nothing
        resp = stack.post_event("focus-ingest", event)
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["result"] == "stored" and answer["table"] == "fc_bridge"
        assert [c["status"] for c in answer["status"]["conditions"]] == ["True", "True"]
        assert [r[0] for r in rows(stack, "fc_bridge", "fc-bridge")] == [TRICKY]

    gone = store.delete("FocusConfig", NAMESPACE, "fc-bridge")
    [late_apply] = [e for e in [event] if e.type == events.CR_APPLIED]
    assert stack.post_event("focus-ingest", late_apply).json()["result"] == "skipped"  # the CR is gone: nothing written
    resp = stack.post_event("focus-ingest", gone.events[0])
    assert resp.status_code == 200 and resp.json()["result"] == "deleted", resp.text
    source = f"FocusConfig/{event.data['metadata']['uid']}"
    assert stack.sql("SELECT count(*) AS n FROM fc_bridge WHERE finops_source = ?", [source]) == [[0]]
    assert stack.post_event("focus-ingest", gone.events[0]).status_code == 200  # deleting twice is fine


def test_invalid_cr_answers_400_with_every_field_and_conditions(stack: E2EStack) -> None:
    bad = focusconfig("fc-bad", "fc_bad", billedCost="12 euros", billingCurrency="eur", chargeCategory="Refund")
    bad["metadata"]["uid"] = "uid-bad"
    path: Path = resource_path(stack.state, "FocusConfig", NAMESPACE, "fc-bad")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bad), encoding="utf-8")  # past validation, as a looser CRD could let it through
    event = events.new(events.CR_APPLIED, "/test/bridge", copy.deepcopy(bad), subject=f"FocusConfig/{NAMESPACE}/fc-bad",
                       kind="FocusConfig")
    resp = stack.post_event("focus-ingest", event)
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    locs = {e["loc"] for e in answer["errors"]}
    assert {"spec.focusSpec.billedCost", "spec.focusSpec.billingCurrency", "spec.focusSpec.chargeCategory"} <= locs
    ready = answer["status"]["conditions"][0]
    assert ready["type"] == "Ready" and ready["status"] == "False" and "billingCurrency" in ready["message"]
    # the rejected row is kept: every reason in finops_rejects with the spec as the raw row, and the
    # ledger counts one row received and rejected (received = stored + rejected holds for this path too)
    rejects = stack.sql("SELECT column_name, reason, raw, target_table, stage FROM finops_rejects WHERE finops_source = ?",
                        ["FocusConfig/uid-bad"])
    assert {r[0] for r in rejects} >= {"spec.focusSpec.billedCost", "spec.focusSpec.billingCurrency"}, rejects
    assert all(r[3] == "fc_bad" and r[4] == "focus_ingest" for r in rejects)
    assert json.loads(rejects[0][2])["billedCost"] == "12 euros"
    assert stack.sql("SELECT SUM(rows_received), SUM(rows_stored), SUM(rows_rejected) FROM finops_ledger "
                     "WHERE finops_source = ?", ["FocusConfig/uid-bad"]) == [[1, 0, 1]]
    assert stack.post_event("focus-ingest", event).status_code == 400  # redelivered: still one reject set
    assert len(stack.sql("SELECT reason FROM finops_rejects WHERE finops_source = ?", ["FocusConfig/uid-bad"])) == len(rejects)
