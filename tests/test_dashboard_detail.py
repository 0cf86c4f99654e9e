"""The dashboard's job detail page in real headless Chromium: live status, timelines, result tabs, hostile data.

Each test saves screenshots under test-artifacts/dashboard/ for a person to look at.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.dashboard_support import (
    BADGE,
    MARKS,
    build_site,
    dashboard,
    keep_pyppeteer_on_loopback,
    key_server,
    run,
)
from tests.support import ServerThread, TargetSite

pytestmark = MARKS

#: the job timeline's steps: [label, the ISO time the step shows]
STEPS = """() => [...document.querySelectorAll('.grid-2 .timeline:not(.attempts) > li')].map(
  li => [li.querySelector('.step-label').textContent, (li.querySelector('time') || {}).dateTime || null])"""


# -- fixtures: one server with an API key, one target site, for the whole module -------------------------


@pytest.fixture(scope="module")
def site() -> Iterator[TargetSite]:
    target = build_site()
    yield target
    target.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, site: TargetSite) -> Iterator[ServerThread]:
    with key_server(tmp_path_factory, site) as running:
        yield running


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    keep_pyppeteer_on_loopback(monkeypatch)


# -- tests ------------------------------------------------------------------------------------------------


def test_the_detail_page_follows_a_running_job_to_its_result(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.url("/slow")})

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await board.wait_for(f"() => ({BADGE})() === 'active'")
            await page.evaluate("() => { window.__sameDocument = true }")
            assert "appears here when the job finishes" in await board.text("#result")
            await board.wait_for(f"() => ({BADGE})() === 'completed'")
            await page.waitForSelector("#result article.markdown h1")
            assert await board.text("#result article.markdown h1") == "Slow page"
            assert await page.evaluate("() => window.__sameDocument") is True
            assert "Completed" in await board.text(".timeline")

    run(scenario())


def test_job_data_is_shown_as_text_and_never_runs(server: ServerThread, site: TargetSite) -> None:
    outputs = ["markdown", "html", "links", "metadata"]
    job = server.http.submit(
        {"url": site.url("/hostile"), "output": outputs}, meta={"note": "<img src=x onerror=\"window.__xss='meta'\">"}
    )
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector("article.markdown")
            assert "<img src=x" in await board.text("article.markdown")
            assert "<img src=x" in await board.text(".grid-2")
            for tab in ("html", "links", "metadata", "json"):
                await page.click(f"button.tab[data-tab={tab}]")
            await page.click("button.tab[data-tab=html]")
            await page.click(".tab-body .seg.small button:nth-child(2)")
            await page.waitForSelector("iframe.html-frame")
            await asyncio.sleep(0.3)
            assert await page.evaluate("() => window.__xss") is None
            assert (
                await page.querySelectorAllEval("a", "as => as.filter(a => /^javascript:/i.test(a.href)).length") == 0
            )
            assert (
                await page.querySelectorAllEval("img", "imgs => imgs.filter(i => i.getAttribute('src') === 'x').length")
                == 0
            )
            assert await page.querySelectorEval("iframe.html-frame", "f => f.getAttribute('sandbox')") == ""
            await page.click("button.tab[data-tab=markdown]")
            await board.shot("06-hostile-job.png")

    run(scenario())


def test_a_crawl_shows_its_pages_in_a_table(server: ServerThread, site: TargetSite) -> None:
    assert server.app is not None
    if "crawl" not in server.app.kinds.names():
        pytest.skip("this build has no crawl kind")
    job = server.http.submit({"url": site.url("/article"), "max_pages": 3, "max_depth": 1}, kind="crawl")
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector("#pages tbody tr")
            urls = await page.querySelectorAllEval("#pages tbody .url", "cells => cells.map(c => c.textContent)")
            assert urls == [site.url("/article"), site.url("/other")]
            assert await board.text("#pages h3") == "Pages (2)"
            await page.click("#pages tbody tr:nth-child(2)")
            await page.waitForSelector("#pages .page-preview article.markdown")
            assert "other page" in await board.text("#pages .page-preview article.markdown")
            await board.shot("07-crawl-pages.png")

    run(scenario())


def test_a_map_lists_its_urls(server: ServerThread, site: TargetSite) -> None:
    assert server.app is not None
    if "map" not in server.app.kinds.names():
        pytest.skip("this build has no map kind")
    job = server.http.submit({"url": site.url("/article")}, kind="map")
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            await board.open(f"#/jobs/{job['job_id']}")
            await board.page.waitForSelector("button.tab[data-tab=urls]")
            await board.page.click("button.tab[data-tab=urls]")
            assert site.url("/other") in await board.text("ol.links")

    run(scenario())


def test_the_timeline_shows_each_attempt_at_its_own_time(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.url("/broken")}, max_attempts=2)
    done = server.http.wait(job["job_id"])
    assert done["status"] == "failed"
    first, second = done["attempts_detail"]

    async def scenario() -> None:
        async with dashboard(server) as board:
            await board.open(f"#/jobs/{job['job_id']}")
            await board.wait_for("() => document.querySelectorAll('.timeline.attempts li').length === 2")
            steps = await board.page.evaluate(STEPS)
            labels = [label for label, _ in steps]
            assert labels[:6] == [
                "Submitted",
                "Started",
                "Attempt 1 failed",
                "Attempt 2 started",
                "Attempt 2 failed",
                "Failed",
            ]
            at = dict(steps)
            assert at["Started"] == first["started_at"]
            assert at["Attempt 1 failed"] == first["ended_at"]
            assert at["Attempt 2 started"] == second["started_at"]
            assert at["Attempt 2 failed"] == second["ended_at"]
            # the run time is the last attempt's own, without the backoff before it
            failed = await board.page.evaluate(
                "() => [...document.querySelectorAll('.timeline:not(.attempts) .step')].find("
                "li => li.querySelector('.step-label').textContent === 'Failed').querySelector('.step-detail').textContent"
            )
            assert failed.startswith("ran ") and failed.endswith("(attempt 2 of 2)")
            await board.shot("12-retried-timeline.png")

    run(scenario())


def test_the_attempts_list_follows_a_retry_live(server: ServerThread, site: TargetSite) -> None:
    job = server.http.submit({"url": site.url("/broken")}, max_attempts=1)
    assert server.http.wait(job["job_id"])["status"] == "failed"
    attempts = "() => [...document.querySelectorAll('.timeline.attempts .step-label')].map(e => e.textContent)"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector(".head-actions button[data-action=retry]")
            assert await page.evaluate(attempts) == []
            await page.evaluate("() => { window.__sameDocument = true }")
            await page.click(".head-actions button[data-action=retry]")
            await board.wait_for(f"() => ({attempts})().length === 2", timeout_s=15)
            assert await page.evaluate(attempts) == ["Attempt 1: failed", "Run 2, attempt 1: failed"]
            await board.wait_for(f"() => ({BADGE})() === 'failed'")
            assert await page.evaluate("() => window.__sameDocument") is True
            # one read of the job for each change of status or attempts, not one per event
            reads = [u for _, u in board.requests if u.endswith(f"/v1/jobs/{job['job_id']}")]
            assert 2 <= len(reads) <= 5, reads

    run(scenario())


def test_a_multi_fetch_job_shows_its_urls_and_pages(server: ServerThread, site: TargetSite) -> None:
    urls = [site.url("/article"), site.url("/other")]
    job = server.http.submit({"urls": urls}, kind="multi_fetch")
    assert server.http.wait(job["job_id"])["status"] == "completed"
    row = f"tr[data-id='{job['job_id']}']"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector(row)
            assert await board.text(f"{row} a.url") == f"{urls[0]} +1 more"
            await page.type("input[name=q]", "/other")  # the second URL finds it too
            await board.wait_for(f'() => document.querySelector("{row}") !== null')
            await page.select("select[name=kind]", "multi_fetch")
            await board.wait_for(
                "() => { const kinds = [...document.querySelectorAll('tbody tr[data-id] .kind')].map(k => k.textContent);"
                " return kinds.length > 0 && kinds.every(k => k === 'multi_fetch') }"
            )
            await page.click(f"{row} a.url")
            await page.waitForSelector("#result button.tab[data-tab=pages]")
            assert await board.text(".url-line a") == urls[0]
            assert await board.text(".url-line .more-urls summary") == "+1 more"
            assert "Dashboard test page" in await board.text("#result .tab-body article.markdown")
            await page.click("button.tab[data-tab=pages]")
            assert await page.querySelectorAllEval("details.multi-page", "ds => ds.length") == 2
            await page.click("details.multi-page[data-index='1'] summary")
            await page.waitForSelector("details.multi-page[data-index='1'] article.markdown")
            assert "other page" in await board.text("details.multi-page[data-index='1'] article.markdown")
            await board.shot("13-multi-fetch.png")

    run(scenario())


def test_an_ai_answer_is_rendered_in_its_own_tab_with_the_model_in_the_facts(
    server: ServerThread, site: TargetSite
) -> None:
    job = server.http.submit({"url": site.url("/article"), "extract": {"prompt": "What is the answer?"}})
    assert server.http.wait(job["job_id"])["status"] == "completed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open(f"#/jobs/{job['job_id']}")
            await page.waitForSelector("#result .tab-body article.markdown")
            assert await board.text("button.tab[aria-selected=true]") == "AI answer"
            assert await board.text("#result .tab-body article.markdown h1") == "The answer"
            assert await board.text("#result .tab-body article.markdown strong") == "42"
            assert "<script>" in await board.text("#result .tab-body article.markdown")
            facts = await page.querySelectorAllEval(
                ".fact-grid > div",
                "ds => Object.fromEntries(ds.map(d => [d.children[0].textContent, d.children[1].textContent]))",
            )
            assert facts["ai_model"] == "fake-model"
            assert facts["ai_tokens"] == "in 11 · out 7 · total 18"
            assert "content" not in facts
            assert await page.evaluate("() => window.__xss") is None
            await board.shot("14-ai-answer.png", "#result")

    run(scenario())
