"""The local scheduler: fires PingSources on their cron schedules, sending their event to the broker.

Sources: the static PingSources in eventsources/*.yaml, plus those the CR store derived from CRs
(re-read every minute, so `finops apply` changes the schedule without a restart). The event is the
one Knative's PingSource sends: type dev.knative.sources.ping, source
/apis/v1/namespaces/<ns>/pingsources/<name>, the spec's data, and its ceOverrides extensions.
Cron: the five standard fields (numbers, `*`, ranges, steps, lists; names not supported), evaluated
in the PingSource's timezone (UTC by default). Day-of-month and day-of-week combine with OR when both
are restricted, as in cron(8) (the matcher is functions.models.cron's, which also checks the
schedules the bridge and the CR store derive PingSources from). Ticks carry the caller token
(`token`) the broker's ingress requires.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from functions import events
from functions.local.broker import load_manifests
from functions.local.crstore import CrStore
from functions.logs import get_logger
from functions.models.cron import Cron, parse_field

__all__ = ["Cron", "Scheduler", "due", "parse_field", "ping_event"]

log = get_logger("local.scheduler")


def ping_event(pingsource: dict[str, Any]) -> events.Event:
    """The CloudEvent a PingSource sends on each tick."""
    meta, spec = pingsource.get("metadata", {}), pingsource.get("spec", {})
    ns, name = meta.get("namespace", "default"), meta.get("name", "")
    data: Any = spec.get("data", "")
    if "json" in str(spec.get("contentType", "")) and isinstance(data, str) and data:
        data = json.loads(data)
    extensions = {k: str(v) for k, v in ((spec.get("ceOverrides") or {}).get("extensions") or {}).items()}
    return events.new(events.PING, f"/apis/v1/namespaces/{ns}/pingsources/{name}", data=data, **extensions)


def due(pingsources: list[dict[str, Any]], minute: datetime) -> list[dict[str, Any]]:
    """The PingSources whose schedule matches this minute (invalid schedules are logged and skipped)."""
    out = []
    for ps in pingsources:
        spec = ps.get("spec", {})
        try:
            local = minute.astimezone(ZoneInfo(spec.get("timezone") or "UTC"))
            if Cron(str(spec.get("schedule", ""))).matches(local):
                out.append(ps)
        except (ValueError, KeyError) as exc:
            log.warning("bad PingSource schedule", extra={"pingsource": ps.get("metadata", {}).get("name"),
                                                          "error": str(exc)})
    return out


class Scheduler:
    """A thread that wakes at each minute boundary and sends the due ticks to the broker."""

    def __init__(self, broker_url: str, state_dir: Path | str, eventsources_dir: Path | str | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 token: Callable[[], str] | None = None) -> None:
        self.broker_url = broker_url
        self.token = token or (lambda: "")
        self.store = CrStore(state_dir)
        self.static_dir = Path(eventsources_dir) if eventsources_dir else None
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)

    def pingsources(self) -> list[dict[str, Any]]:
        static = [d for d in load_manifests(self.static_dir) if d.get("kind") == "PingSource"] \
            if self.static_dir and self.static_dir.is_dir() else []
        return static + self.store.pingsources()

    def tick(self, minute: datetime) -> list[str]:
        """Fire everything due at `minute`; returns the ids of the events sent."""
        sent = []
        for ps in due(self.pingsources(), minute):
            event = ping_event(ps)
            headers, body = events.to_binary(event)
            token = self.token()
            if token:
                headers = {**headers, "Authorization": f"Bearer {token}"}
            try:
                httpx.post(self.broker_url, headers=headers, content=body, timeout=10).raise_for_status()
                sent.append(event.id)
                log.info("ping sent", extra={"pingsource": ps["metadata"]["name"], "event_id": event.id})
            except httpx.HTTPError as exc:
                log.warning("ping not delivered to the broker", extra={"pingsource": ps["metadata"]["name"],
                                                                     "error": str(exc)})
        return sent

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = self.clock()
            next_minute = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
            if self._stop.wait((next_minute - now).total_seconds()):
                return
            try:
                self.tick(next_minute)
            except Exception:  # one bad tick must not stop the schedule
                log.exception("scheduler tick failed")
