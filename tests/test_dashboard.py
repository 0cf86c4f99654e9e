"""The dashboard in real headless Chromium against the real server: the key, the job list, the submit form.

Each test saves screenshots under test-artifacts/dashboard/ for a person to look at; the job detail page is
tested in test_dashboard_detail.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard_support import (
    BADGE,
    KEY,
    MARKS,
    ROW_STATUS,
    build_site,
    dashboard,
    keep_pyppeteer_on_loopback,
    key_server,
    run,
)
from tests.support import ServerThread, TargetSite, make_config

pytestmark = MARKS

#: the page's object URLs and their blobs, so that a test can read what a download link holds
RECORD_BLOBS = """() => {
  window.__blobs = {};
  const create = URL.createObjectURL;
  URL.createObjectURL = (blob) => { const url = create.call(URL, blob); window.__blobs[url] = blob; return url };
}"""


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


def test_it_asks_for_the_key_and_keeps_it_in_the_browser(server: ServerThread) -> None:
    async def scenario() -> None:
        async with dashboard(server, with_key=False) as board:
            await board.open()
            await board.page.waitForSelector("#key-overlay input[name=api_key]")
            await board.shot("01-key-prompt.png")

            await board.page.type("#key-overlay input[name=api_key]", "not-the-key")
            await board.page.click("#key-overlay button[type=submit]")
            await board.wait_for("() => document.querySelector('#key-overlay .form-problem').textContent !== ''")
            assert "not valid" in await board.text("#key-overlay .form-problem")

            await board.page.evaluate("() => { document.querySelector('#key-overlay input').value = '' }")
            await board.page.type("#key-overlay input[name=api_key]", KEY)
            await board.page.click("#key-overlay button[type=submit]")
            await board.page.waitForSelector("#overview .tile-count")
            assert await board.page.querySelector("#key-overlay") is None
            assert await board.page.evaluate("() => localStorage.getItem('litejobs.api_key')") == KEY

            await board.page.reload(waitUntil="load")
            await board.page.waitForSelector("#overview .tile-count")
            await board.wait_for("() => document.querySelector('#live').dataset.state === 'live'")
            assert await board.page.querySelector("#key-overlay") is None
            assert KEY[-4:] in await board.text("#keybox")

    run(scenario())


def test_a_job_submitted_in_the_form_turns_completed_live_and_shows_its_screenshot(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.url("/article")

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector("#overview .tile-count")
            await board.wait_for("() => document.querySelector('#live').dataset.state === 'live'")
            await page.evaluate("() => { window.__sameDocument = true }")

            await page.click("nav a[data-nav=new]")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=render] + span")
            await page.type("input[name=url]", url)
            await page.click("label[for=f_out_screenshot]")
            await page.type("textarea[name=meta]", '{"from": "dashboard test"}')
            preview = json.loads(await board.text(".request-preview pre"))
            assert preview == {
                "kind": "render",
                "input": {"url": url, "output": ["markdown", "screenshot"]},
                "meta": {"from": "dashboard test"},
            }
            await board.shot("02-submit-form.png")

            await page.click("button[type=submit][form=submit-form]")
            row = await page.waitForSelector("tr.flash[data-id]")
            job_id = await page.evaluate("(row) => row.dataset.id", row)
            shown_at = time.monotonic()
            assert await page.evaluate("() => location.hash") == "#/"

            await board.wait_for(f"() => ({ROW_STATUS})('{job_id}') === 'completed'", timeout_s=30)
            assert await page.evaluate("() => window.__sameDocument") is True  # no reload
            assert await board.text("#live") == "live"
            # the change came over the event stream: the page asked for no job or list meanwhile
            asked = [u for at, u in board.requests if at > shown_at and "/v1/jobs" in u]
            assert asked == []
            await board.wait_for("() => Number(document.querySelector('[data-count=completed]').textContent) >= 1")
            await board.shot("03-jobs.png")
            await board.shot("03a-overview.png", "#overview")

            await page.click(f"tr[data-id='{job_id}'] a.url")
            await page.waitForSelector("#result .result-top")
            await board.wait_for(
                "() => { const i = document.querySelector('#result .thumb img'); return i && i.naturalWidth > 0 }"
            )
            assert await board.text(".detail-head .badge") == "completed"
            assert await board.text("article.markdown h1") == "Dashboard test page"
            assert await board.text("article.markdown li") == "first item"
            steps = await page.querySelectorAllEval(".timeline .step-label", "els => els.map(e => e.textContent)")
            assert steps[0] == "Submitted" and "Started" in steps and "Completed" in steps
            assert '"from": "dashboard test"' in await board.text(".grid-2 .card:nth-child(2)")
            await board.shot("04-job-detail.png")

            await page.click("button.tab[data-tab=screenshot]")
            await board.wait_for(
                "() => { const i = document.querySelector('.shots img'); return i && i.naturalWidth >= 800 }"
            )
            await board.shot("05-job-screenshot.png", "#result")

    run(scenario())


def test_the_form_shows_what_the_server_refused(server: ServerThread) -> None:
    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            board.expected_statuses.add(422)
            await board.open("#/new")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=fetch] + span")
            await page.type("input[name=url]", "file:///etc/passwd")
            await page.click("button[type=submit][form=submit-form]")
            await page.waitForSelector(".form-problem .error-box")
            assert "input.url" in await board.text(".form-problem .error-box")
            assert await page.querySelector("input[name=url].invalid") is not None
            assert await page.evaluate("() => location.hash") == "#/new"
            await board.shot("10-submit-refused.png")

    run(scenario())


def test_a_json_object_body_from_the_form_is_sent_as_json(server: ServerThread, site: TargetSite) -> None:
    async def scenario() -> str:
        async with dashboard(server) as board:
            page = board.page
            await board.open("#/new")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=fetch] + span")
            await page.type("input[name=url]", site.url("/echo"))
            await page.select("select[name=method]", "POST")
            await page.type("textarea[name=body]", "a=1")
            assert json.loads(await board.text(".request-preview pre"))["input"]["body"] == "a=1"
            await page.evaluate("() => { document.querySelector('textarea[name=body]').value = '' }")
            await page.type("textarea[name=body]", '{"a": 1}')
            assert json.loads(await board.text(".request-preview pre"))["input"]["body"] == {"a": 1}
            await page.click("button[type=submit][form=submit-form]")
            row = await page.waitForSelector("tr.flash[data-id]")
            return await page.evaluate("(row) => row.dataset.id", row)  # type: ignore[no-any-return]

    job_id = run(scenario())
    assert server.http.wait(job_id)["status"] == "completed"
    markdown = server.http.get(f"/v1/jobs/{job_id}/result").json["outputs"]["markdown"]
    assert "type application/json" in markdown and '{"a": 1}' in markdown


def test_a_pdf_output_is_offered_in_the_form_and_downloaded_with_the_key(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.url("/article")

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await page.evaluateOnNewDocument(RECORD_BLOBS)
            await board.open("#/new")
            await page.waitForSelector("form.submit-form")
            await page.click("label.seg-item input[value=render] + span")
            await page.type("input[name=url]", url)
            await page.click("label[for=f_out_pdf]")
            preview = json.loads(await board.text(".request-preview pre"))
            assert preview["input"]["output"] == ["markdown", "pdf"]
            await page.click("button[type=submit][form=submit-form]")
            row = await page.waitForSelector("tr.flash[data-id]")
            job_id = await page.evaluate("(row) => row.dataset.id", row)
            await board.wait_for(f"() => ({ROW_STATUS})('{job_id}') === 'completed'", timeout_s=30)

            await page.click(f"tr[data-id='{job_id}'] a.url")
            await page.waitForSelector("button.tab[data-tab=pdf]")
            await page.click("button.tab[data-tab=pdf]")
            link = await page.waitForSelector("a.pdf-download")
            href = await page.evaluate("(a) => a.getAttribute('href')", link)
            assert href.startswith("blob:")
            assert await page.evaluate("(a) => a.getAttribute('download')", link) == f"{job_id}-page.pdf"
            head = await page.evaluate("(url) => window.__blobs[url].slice(0, 5).text()", href)
            assert head == "%PDF-"
            await board.shot("11-pdf-tab.png", "#result")

    run(scenario())


def test_filters_search_cancel_and_retry(server: ServerThread, site: TargetSite) -> None:
    later = server.http.submit({"url": site.url("/other")}, delay_s=3600)
    broken = server.http.submit({"url": site.url("/broken")}, max_attempts=1)
    assert server.http.wait(broken["job_id"])["status"] == "failed"

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector(f"tr[data-id='{later['job_id']}']")
            await board.shot("08-jobs-list.png")

            await page.select("select[name=status]", "failed")
            await board.wait_for(
                f"() => ({ROW_STATUS})('{broken['job_id']}') === 'failed' && !({ROW_STATUS})('{later['job_id']}')"
            )
            statuses = await page.querySelectorAllEval("tbody tr[data-id]", "rows => rows.map(r => r.dataset.status)")
            assert set(statuses) == {"failed"}
            assert "upstream_status" in await board.text(f"tr[data-id='{broken['job_id']}']")

            await page.select("select[name=status]", "")
            await page.type("input[name=q]", "/other")
            await board.wait_for(f"() => !({ROW_STATUS})('{broken['job_id']}') && ({ROW_STATUS})('{later['job_id']}')")
            await board.shot("08a-filtered-list.png", "#jobs")

            await page.click(f"tr[data-id='{later['job_id']}'] a.url")
            await page.waitForSelector(".head-actions button[data-action=cancel]")
            await board.shot("09-delayed-job.png")
            await page.click(".head-actions button[data-action=cancel]")
            await board.wait_for(f"() => ({BADGE})() === 'cancelled'")
            await page.click(".head-actions button[data-action=retry]")
            await board.wait_for(f"() => !['', 'cancelled'].includes(({BADGE})())")

    run(scenario())
    assert server.http.get(f"/v1/jobs/{later['job_id']}").json["status"] != "cancelled"


def test_forget_key_clears_the_last_keys_jobs_and_the_counts_say_they_are_every_keys(
    server: ServerThread, site: TargetSite
) -> None:
    job = server.http.submit({"url": site.url("/other")}, delay_s=3600)

    async def scenario() -> None:
        async with dashboard(server) as board:
            page = board.page
            await board.open()
            await page.waitForSelector(f"tr[data-id='{job['job_id']}']")
            assert "all keys" in await board.text("#overview .scope-note")
            await page.click("#keybox button")
            await page.waitForSelector("#key-overlay input[name=api_key]")
            assert await page.querySelectorAllEval("#main tr[data-id], #overview", "els => els.length") == 0
            await board.shot("15-key-forgotten.png")
            await page.type("#key-overlay input[name=api_key]", KEY)
            await page.click("#key-overlay button[type=submit]")
            await page.waitForSelector(f"tr[data-id='{job['job_id']}']")

    run(scenario())


def test_under_a_rate_limit_the_list_loads_once_and_waits_out_a_429(tmp_path: Path, site: TargetSite) -> None:
    config = make_config(tmp_path, auth={"keys": [KEY], "rate_per_s": 3.0})
    with ServerThread(config) as limited:
        later = limited.http.submit({"url": site.url("/other")}, delay_s=3600)
        job = limited.http.submit({"url": site.url("/other")})
        assert limited.http.wait(job["job_id"])["status"] == "completed"
        time.sleep(1.1)  # the key's bucket (3 requests, 3 a second) fills again

        async def scenario() -> None:
            async with dashboard(limited) as board:
                page = board.page
                board.expected_statuses.add(429)
                await board.open()
                await page.waitForSelector(f"tr[data-id='{later['job_id']}']")
                await board.wait_for("() => document.querySelector('#live').dataset.state === 'live'")
                await asyncio.sleep(1.0)  # a second load, had there been one, is sent by now
                loads = [u for _, u in board.requests if "/v1/jobs?" in u]
                assert len(loads) == 1, loads
                assert await page.querySelector("#jobs .error-box") is None

                # spend the bucket, then filter the list: its first answer is 429 rate_limited
                await page.evaluate(
                    """async (key) => {
                      for (let n = 0; n < 20; n += 1) {
                        const r = await fetch('/v1/stats', {headers: {Authorization: 'Bearer ' + key}});
                        if (r.status === 429) break;
                      }
                      const status = document.querySelector('select[name=status]');
                      status.value = 'completed';
                      status.dispatchEvent(new Event('change'));
                    }""",
                    KEY,
                )
                # the 429 is waited out (Retry-After: 1) and the list asked again, with no error shown
                filtered = lambda: [u for _, u in board.requests if "/v1/jobs?" in u and "status=completed" in u]  # noqa: E731
                deadline = time.monotonic() + 15
                while len(filtered()) < 2 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                assert len(filtered()) == 2, filtered()
                await board.wait_for(
                    "() => [...document.querySelectorAll('tbody tr[data-id]')].map(r => r.dataset.status).join() === 'completed'"
                )
                assert await page.querySelector("#jobs .error-box") is None

        run(scenario())


def test_the_dashboard_is_served_with_a_strict_content_security_policy(server: ServerThread) -> None:
    page = server.http.get("/", headers={"Authorization": ""})
    assert page.status == 200 and b'<script type="module" src="/static/app.js">' in page.body
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = server.http.get("/static/app.js", headers={"Authorization": ""})
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
    assert server.http.get("/static/nope.js").status == 404
    assert server.http.get("/static/../pyproject.toml").status == 404
