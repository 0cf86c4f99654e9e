"""Fixtures of the fetcher's tests: an event loop of the test's own, and target sites on 127.0.0.1 and
127.0.0.2 (this folder's `site` is the fetcher's, not the suite's TargetSite)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.fetcher_support import Run, Site, bounded_run, new_loop, site_on


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    yield from new_loop()


@pytest.fixture
def run(loop: asyncio.AbstractEventLoop) -> Run:
    """Run one coroutine to its end on the test's loop, never longer than 10 s."""
    return bounded_run(loop)


@pytest.fixture
def site(loop: asyncio.AbstractEventLoop) -> Iterator[Site]:
    yield from site_on(loop, "127.0.0.1")


@pytest.fixture
def other_site(loop: asyncio.AbstractEventLoop) -> Iterator[Site]:
    """A second target on 127.0.0.2: another origin, or the forbidden one when the policy blocks it."""
    yield from site_on(loop, "127.0.0.2")
