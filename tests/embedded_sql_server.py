"""The embedded engine's SQL listener (functions.storage.sql_listener) on a free loopback port, for tests.

The database handler runs the same listener for its own SQL and its notebooks' (embedded mode);
tests of the storage layer use it to reach an Engine through the real `crate` client.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from functions.storage.engine import Engine
from functions.storage.sql_listener import Limits, SqlListener


@contextmanager
def serve(engine: Engine, users: Mapping[str, str] | None = None, limits: Limits | None = None) -> Iterator[str]:
    """Serve `engine` on a free loopback port; yields the base URL; stops the listener on exit."""
    listener = SqlListener(engine, dict(users or {}), limits=limits or Limits(), name="test-sql")
    try:
        yield listener.url
    finally:
        listener.close()
