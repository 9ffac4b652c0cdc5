"""What the optimizer's entries need (settings, readers, policy, carbon data, the event sink, the window
cache, thread pools), and the wiring that builds it once per process from the environment."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from functions import events
from functions.clients import kube, sink
from functions.clients.db import Database
from functions.clients.kube import ResourceReader
from functions.clients.policy import PolicyEngine, engine_from_env
from functions.settings.optimizer import OptimizerSettings
from functions.storage.carbon_series import SqlCarbonData

EVENT_BACKLOG = 256  # events waiting for a slow sink before new ones are dropped (logged)


class ObjectReader(Protocol):
    """Any namespaced object of the cluster (compositions, Azure VMs); None when absent or unsupported."""

    def get_resource(self, api_version: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None: ...


class CompositionLabeller(Protocol):
    """Lists compositions of a kind and patches one label: what the day-2 labelling needs of the cluster."""

    def list_resources(self, api_version: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]: ...

    def set_label(self, api_version: str, plural: str, namespace: str, name: str, key: str, value: str) -> None: ...


class CarbonData(Protocol):
    """Carbon intensity per region on an hourly grid: [(time, gCO2/kWh)], oldest first."""

    def forecast(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]: ...

    def history(self, regions: list[str], start: datetime, end: datetime) -> dict[str, list[tuple[datetime, float]]]: ...


@dataclass
class WindowCache:
    """Computed windows per (handler URL, credentials, table, resource, mode), reused for `ttl` seconds; bounded."""

    ttl: float
    max_entries: int = 50_000
    _items: dict[tuple[str, ...], tuple[float, list[dict[str, Any]]]] = field(default_factory=dict)
    _running: dict[tuple[str, ...], Future[list[dict[str, Any]]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: tuple[str, ...]) -> list[dict[str, Any]] | None:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def get_or_compute(self, key: tuple[str, ...], compute: Callable[[], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """The cached value, else one computation per key at a time: concurrent callers wait for it."""
        cached = self.get(key)
        if cached is not None:
            return cached
        with self._lock:
            running = self._running.get(key)
            leader = running is None
            if running is None:
                running = self._running[key] = Future()
        if not leader:
            return running.result()
        try:
            items = compute()
        except BaseException as exc:
            running.set_exception(exc)
            raise
        else:
            self.put(key, items)
            running.set_result(items)
            return items
        finally:
            with self._lock:
                self._running.pop(key, None)

    def put(self, key: tuple[str, ...], items: list[dict[str, Any]]) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._items) >= self.max_entries:
                now = time.monotonic()
                self._items = {k: v for k, v in self._items.items() if v[0] >= now}
                if len(self._items) >= self.max_entries:
                    self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, items)


@dataclass
class Deps:
    """What the optimizer needs, built once per process (`current`) or per test.

    `objects` reads (the webhook's service account may only get), `labeller` lists and patches (only the
    Service that runs the day-2 labelling may): both None without the Kubernetes API.
    """

    settings: OptimizerSettings
    reader: ResourceReader
    policy: PolicyEngine
    objects: ObjectReader | None = None
    labeller: CompositionLabeller | None = None
    carbon: CarbonData | None = None
    publish: Callable[[events.Event], None] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    cache: WindowCache = field(default_factory=lambda: WindowCache(900.0))
    pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(16, thread_name_prefix="optimizer"))
    event_pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2, thread_name_prefix="optimizer-events"))
    event_slots: threading.BoundedSemaphore = field(default_factory=lambda: threading.BoundedSemaphore(EVENT_BACKLOG))


def from_env(reader: ResourceReader) -> Deps:
    """The dependencies the environment describes (OptimizerSettings), around this process's reader."""
    settings = OptimizerSettings.from_env()
    carbon = None
    if settings.carbon_db_url:
        db = Database(settings.carbon_db_url, settings.carbon_db_user or None, settings.carbon_db_password or None,
                      timeout=10.0)  # a stuck database must not hold an optimizer thread for a minute
        carbon = SqlCarbonData(db, settings.carbon_forecast_table, settings.carbon_history_table)
    publish = None
    if settings.sink:
        target = settings.sink

        def publish(event: events.Event) -> None:
            headers, body = events.to_binary(event)
            sink.post_event(target, headers, body, retries=1, timeout=5.0)

    objects = kube.KubeObjects(reader) if isinstance(reader, kube.KubeApiReader) else None
    policy = engine_from_env({"FINOPS_OPA_URL": settings.opa_url, "FINOPS_POLICY_DIR": settings.policy_dir})
    return Deps(settings=settings, reader=reader, policy=policy, objects=objects, labeller=objects, carbon=carbon,
                publish=publish, cache=WindowCache(settings.cache_ttl_s))


_CURRENT: list[Deps] = []
_CURRENT_LOCK = threading.Lock()


def current(reader: Callable[[], ResourceReader]) -> Deps:
    """This process's dependencies (`from_env`), built once even when the first admissions arrive together;
    `reader` is asked only for that first build. A failed build raises and is tried again next time."""
    if not _CURRENT:
        with _CURRENT_LOCK:
            if not _CURRENT:
                _CURRENT.append(from_env(reader()))
    return _CURRENT[0]
