"""End-to-end fixtures: `make_stack(**options)` and `stack`, real local stacks in tmp_path (see e2e_stack)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_stack import E2EStack, start_stack


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., E2EStack]]:
    started: list[E2EStack] = []

    def make(**kwargs: Any) -> E2EStack:
        started.append(start_stack(tmp_path, **kwargs))
        return started[-1]

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def stack(make_stack: Callable[..., E2EStack]) -> E2EStack:
    """A stack with the manifests as shipped (except the short Trigger backoff)."""
    return make_stack()
