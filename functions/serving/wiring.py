"""Process singletons shared by the targets, built on first use and cached (nothing at import time,
so a cold start stays cheap): settings, the CR reader and status writer, the snapshot store, the
caller gate and the database connections of the aicost and focus_ingest targets."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from functions.clients.kube import ResourceReader, StatusWriter
    from functions.storage.snapshots import SnapshotStore

AICOST_DBS: dict[Any, Any] = {}
"""The aicost and aicost_metrics targets' connections, by database URL and credentials."""
FOCUS_DBS: dict[Any, Any] = {}
"""The focus_ingest target's connections, by database URL and credentials."""


@lru_cache(maxsize=1)
def settings() -> Any:
    from functions.settings.collection import CollectionSettings

    return CollectionSettings.from_env()


@lru_cache(maxsize=1)
def reader() -> ResourceReader:
    from functions.clients import kube

    found = settings()
    return kube.LocalReader(found.state_dir) if found.kube == "local" else kube.KubeApiReader()


@lru_cache(maxsize=1)
def status_writer() -> StatusWriter:
    from functions.clients import kube

    found = reader()
    if isinstance(found, kube.KubeApiReader):
        return kube.KubeStatusWriter(found)
    return kube.LocalStatusWriter(settings().state_dir)


@lru_cache(maxsize=1)
def store() -> SnapshotStore:
    from functions.storage import snapshots

    found = settings()
    if found.snapshot_store == "database":
        from functions.clients.db import connect

        db = connect(found.snapshot_db_url, found.snapshot_db_user, found.snapshot_db_password)
        return snapshots.DatabaseSnapshotStore(db)
    return snapshots.FileSnapshotStore(found.state_dir / "snapshots")


@lru_cache(maxsize=1)
def aicost_settings() -> Any:
    from functions.settings.aicost import AICostSettings

    return AICostSettings.from_env()


@lru_cache(maxsize=1)
def caller_gate() -> Any:
    """This process's caller gate, built (and what it accepts logged, loudly when nothing) on the first request."""
    from functions.clients.callers import gate_from_env

    return gate_from_env()

