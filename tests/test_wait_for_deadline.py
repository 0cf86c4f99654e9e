"""A `wait_for` without a limit of its own, in a job shorter than the 30 s it would wait: it ends before the
job's timeout, less a margin for the captures, and fails not retried, for the page would not change. The
real server drives the real Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from litejobs.browser import find_chromium
from tests.support import ServerThread, TargetSite, make_config

pytestmark = [pytest.mark.browser, pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine")]

PAGE = """<html><head><title>Late</title></head><body><p id="here">here</p>
<script>setTimeout(() => document.body.insertAdjacentHTML("beforeend", "<p id='late'>late</p>"), 1000)</script>
</body></html>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = make_config(tmp_path_factory.mktemp("wait_for"), browser={"max_pages": 2})
    with ServerThread(config) as running:
        yield running


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = TargetSite()
    target.add_html("/late", PAGE)
    yield target
    target.close()


def run_job(server: ServerThread, kind: str, input: dict[str, Any], **options: Any) -> dict[str, Any]:
    """Submit a job and wait for its end; its outputs (if it completed) under "outputs"."""
    job = server.http.wait(server.http.submit(input, kind=kind, **options)["job_id"], 90)
    if job["status"] == "completed":
        job["outputs"] = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]
    return job


def test_a_wait_for_action_that_never_matches_fails_action_failed_within_a_short_job(
    server: ServerThread, site: TargetSite
) -> None:
    """It waited its default 30 s, so a 5 s job ran out: `timeout`, retried three times."""
    actions = [{"type": "wait_for", "selector": "#never"}]

    job = run_job(server, "interact", {"url": site.url("/late"), "actions": actions}, timeout_s=5, max_attempts=3)

    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "action_failed"
    assert job["error"]["message"].startswith("action 0 (wait_for): '#never' did not appear within ")


def test_a_render_whose_wait_for_never_matches_fails_browser_error_not_retried(
    server: ServerThread, site: TargetSite
) -> None:
    """The input's own `wait_for` had no limit at all: `timeout`, retried, whatever the job's length."""
    job = run_job(server, "render", {"url": site.url("/late"), "wait_for": "#never"}, timeout_s=5, max_attempts=3)

    assert job["status"] == "failed" and job["attempts"] == 1
    assert job["error"]["code"] == "browser_error"
    assert job["error"]["message"].startswith("wait_for '#never': no element matched it in the ")


@pytest.mark.parametrize("kind", ["render", "interact"])
def test_an_element_that_appears_in_time_is_waited_for_in_a_short_job(
    server: ServerThread, site: TargetSite, kind: str
) -> None:
    """The bound leaves a wait that ends in time alone: the element comes 1 s after the load."""
    input: dict[str, Any] = {"url": site.url("/late"), "output": ["html"]}
    if kind == "interact":
        input["actions"] = [{"type": "wait_for", "selector": "#late"}]
    else:
        input["wait_for"] = "#late"

    job = run_job(server, kind, input, timeout_s=5, max_attempts=1)

    assert job["status"] == "completed", job["error"]
    assert '<p id="late">late</p>' in job["outputs"]["html"]
