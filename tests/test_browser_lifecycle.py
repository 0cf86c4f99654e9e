"""BrowserPool against the real Chromium: availability, a lazy launch, crashes and relaunches, recycling, no orphans."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs import chromium
from litejobs.browser import LOOPBACK_ONLY_RULES, BrowserPool, RenderRequest, find_chromium
from litejobs.config import BrowserConfig
from litejobs.errors import BrowserCrashed, BrowserUnavailable
from tests.browser_support import TEST_RULES, Run, Site, hosted_site, make_policy, needs_chromium, until

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    """One event loop for the module, so the site outlives single tests."""
    with asyncio.Runner() as runner:
        yield runner.run


@pytest.fixture(scope="module")
def site(run: Run) -> Iterator[Site]:
    yield from hosted_site(run)


def new_pool(**config: Any) -> BrowserPool:
    return BrowserPool(BrowserConfig(**config), make_policy(), host_resolver_rules=TEST_RULES)


def chromium_with(needle: str) -> list[int]:
    """Live processes whose command line mentions `needle` (a pool's profile directory)."""
    found = []
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and needle in Path(entry.path, "cmdline").read_text():
                found.append(int(entry.name))
    return found


# -- availability, lifecycle, crashes --------------------------------------------------------------------


def test_no_executable_means_unavailable_at_once(run: Run) -> None:
    pool = BrowserPool(BrowserConfig(executable="/nonexistent"), make_policy())

    started = time.monotonic()
    with pytest.raises(BrowserUnavailable) as unavailable:
        run(pool.render(RenderRequest("http://127.0.0.1:9/")))

    assert time.monotonic() - started < 0.1
    assert pool.available is False and pool.state()["state"] == "unavailable"
    assert "apt-get install" in str(unavailable.value) and "/nonexistent" in str(unavailable.value)
    assert unavailable.value.retryable is False


def test_render_requests_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="wait_until must be one of"):
        RenderRequest("http://x/", wait_until="idle")
    with pytest.raises(ValueError, match="cannot block 'scripts'"):
        RenderRequest("http://x/", block=frozenset({"scripts"}))
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        RenderRequest("http://x/", timeout_s=0)


def test_chromium_flags_keep_it_quiet_and_resolve_only_by_the_rules() -> None:
    args = chromium.chromium_args(LOOPBACK_ONLY_RULES, as_root=False)

    for flag in ("--headless", "--disable-gpu", "--disable-background-networking", "--disable-component-update"):
        assert flag in args
    assert "--disable-sync" in args and "--no-first-run" in args
    assert f"--host-resolver-rules={LOOPBACK_ONLY_RULES}" in args
    disabled = [a for a in args if a.startswith("--disable-features=")]
    assert len(disabled) == 1 and "site-per-process" in disabled[0]
    assert "--no-sandbox" not in args
    assert "--no-sandbox" in chromium.chromium_args(LOOPBACK_ONLY_RULES, as_root=True)


def test_the_debian_wrapper_resolves_to_the_real_binary() -> None:
    if not Path("/usr/lib/chromium/chromium").exists():
        pytest.skip("not Debian's chromium package")
    assert find_chromium() == "/usr/lib/chromium/chromium"
    assert find_chromium("/usr/bin/chromium") == "/usr/bin/chromium"


@needs_chromium
def test_launch_is_lazy_keeps_the_loop_responsive_and_exit_leaves_no_chromium(run: Run, site: Site) -> None:
    async def launch_and_close() -> tuple[float, float, dict[str, Any]]:
        handlers_before = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
        async with new_pool() as pool:
            assert pool.state()["state"] == "idle" and pool.state()["launches"] == 0
            ticker = asyncio.ensure_future(worst_stall_until(lambda: pool.state()["launches"] == 1))
            await asyncio.sleep(0.02)
            await pool.render(RenderRequest(site.url("/")))
            worst_stall_s, launch_s = await ticker
            state = pool.state()
            assert state["state"] == "running" and state["launches"] == 1
            assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == handlers_before
        return worst_stall_s, launch_s, state

    worst_stall_s, launch_s, state = run(launch_and_close())

    # pyppeteer's own launch() blocks the loop for most of the launch (0.25 of 0.3 s here); ours for ~1%
    assert worst_stall_s < 0.5 * launch_s, (worst_stall_s, launch_s)
    assert chromium_with(state["user_data_dir"]) == []
    assert chromium.group_pids(state["pid"], alive_only=True) == []
    assert not Path(state["user_data_dir"]).exists()


async def worst_stall_until(done: Callable[[], bool]) -> tuple[float, float]:
    """Tick every 10 ms until done(); (the longest the event loop kept a tick waiting, seconds until done)."""
    started, worst = time.monotonic(), 0.0
    while not done():
        before = time.monotonic()
        await asyncio.sleep(0.01)
        worst = max(worst, time.monotonic() - before - 0.01)
    return worst, time.monotonic() - started


@needs_chromium
def test_killed_browser_fails_the_render_promptly_and_the_next_one_relaunches(run: Run, site: Site) -> None:
    async def kill_midway() -> None:
        async with new_pool() as pool:
            site.hang_started = asyncio.Event()
            task = asyncio.ensure_future(pool.render(RenderRequest(site.url("/hang"), timeout_s=20)))
            await asyncio.wait_for(site.hang_started.wait(), 10)
            old = pool.state()
            os.kill(old["pid"], signal.SIGKILL)
            killed_at = time.monotonic()
            with pytest.raises(BrowserCrashed) as crashed:
                await task
            assert time.monotonic() - killed_at < 3.0
            assert crashed.value.retryable is True
            assert pool.state()["state"] == "crashed"
            await until(lambda: not chromium.group_pids(old["pid"]), 5.0)  # no zombies, no orphans
            assert not Path(old["user_data_dir"]).exists()

            result = await pool.render(RenderRequest(site.url("/"), wait_for="#content"))
            assert "Hello injected" in result.html
            assert pool.state()["state"] == "running" and pool.state()["launches"] == 2

    run(kill_midway())


@needs_chromium
def test_recycles_after_n_renders_without_killing_renders_in_flight(run: Run, site: Site) -> None:
    async def six() -> tuple[list[Any], dict[str, Any]]:
        async with new_pool(recycle_after_pages=2) as pool:
            results = await asyncio.gather(*(pool.render(RenderRequest(site.url("/slow"))) for _ in range(6)))
            return results, pool.state()

    results, state = run(six())

    assert all("done" in r.html for r in results)
    assert state["launches"] == 2


@needs_chromium
def test_recycles_when_the_chromium_tree_uses_too_much_memory(run: Run, site: Site) -> None:
    async def two() -> dict[str, Any]:
        async with new_pool(max_rss_mb=1) as pool:
            await pool.render(RenderRequest(site.url("/")))
            await pool.render(RenderRequest(site.url("/")))
            return pool.state()

    assert run(two())["launches"] == 2


CHILD = """
import asyncio, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)
from litejobs.browser import BrowserPool, RenderRequest, LOOPBACK_ONLY_RULES
from litejobs.config import BrowserConfig

class Allow:
    def check_ip(self, ip, port=None):
        pass

async def main():
    pool = BrowserPool(BrowserConfig(), Allow(), host_resolver_rules=LOOPBACK_ONLY_RULES)
    await pool.render(RenderRequest(sys.argv[1]))
    print(pool.state()["pid"], pool.state()["user_data_dir"], flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


@needs_chromium
def test_chromium_dies_with_a_sigkilled_server(run: Run, site: Site) -> None:
    async def kill_server() -> None:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, site.url("/"), stdout=asyncio.subprocess.PIPE
        )
        assert server.stdout is not None
        pid, profile = (await asyncio.wait_for(server.stdout.readline(), 20)).decode().split()
        assert len(chromium_with(profile)) >= 5  # the crashpad handlers too: their database is in the profile
        server.kill()
        await server.wait()
        await until(lambda: not chromium.group_pids(int(pid)), 5.0)
        assert chromium_with(profile) == []
        shutil.rmtree(profile)  # a SIGKILLed server cannot remove its profile directory

    run(kill_server())
