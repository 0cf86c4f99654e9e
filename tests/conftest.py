"""Fixtures: a local target site, and the real server on 127.0.0.1:0 over a fresh SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import FakeClock, ServerThread, TargetSite, make_config

#: the throwaway PostgreSQL (postgres_server, pg_url)
pytest_plugins = ["tests.pg"]


@pytest.fixture
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    yield target
    target.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path), clock=clock) as running:
        yield running
