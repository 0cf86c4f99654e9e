"""A lone UTF-16 surrogate from a page's scripts (JavaScript that cut a string through an emoji) becomes
U+FFFD, as the browser shows it, and the job completes; an outcome that no JSON can hold fails the job
`internal_error` at once instead of leaving it active."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from litejobs.errors import JobError
from litejobs.jobs import JobResult, JobState
from litejobs.kinds import Kind, KindContext
from tests.crawl_support import all_pages, crawl
from tests.support import ServerThread, TargetSite, make_config

HALF = "String.fromCharCode(0xD83D)"  # the first half of 😀, alone
SURROGATE_PAGE = (
    "<html><head><title>S</title></head><body><p id=p>x</p><a href='/next'>next</a>"
    f"<script>document.getElementById('p').textContent = 'half ' + {HALF} + ' emoji'</script></body></html>"
)


def result_of(server: ServerThread, job_id: str) -> dict[str, Any]:
    return server.http.get(f"/v1/jobs/{job_id}/result").json  # type: ignore[no-any-return]


@pytest.mark.browser
def test_a_rendered_page_with_a_lone_surrogate_shows_the_replacement_character(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.add_html("/surrogate", SURROGATE_PAGE)
    jobs = [
        server.http.submit({"url": url, "output": ["html", "markdown", "text"]}, kind="render", max_attempts=1),
        server.http.submit({"url": url, "render_js": True, "output": ["text"]}, max_attempts=1),
    ]
    for job in jobs:
        assert server.http.wait(job["job_id"], 60)["status"] == "completed"
    outputs = result_of(server, jobs[0]["job_id"])["outputs"]
    assert "half \ufffd emoji" in outputs["html"]
    assert "half \ufffd emoji" in outputs["markdown"] and "half \ufffd emoji" in outputs["text"]
    assert "half \ufffd emoji" in result_of(server, jobs[1]["job_id"])["outputs"]["text"]


@pytest.mark.browser
def test_an_evaluate_result_with_a_lone_surrogate_completes(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/page", "<html><body><p>page</p></body></html>")
    actions = [
        {"type": "evaluate", "script": f"'a' + {HALF}"},
        {"type": "evaluate", "script": f"({{['key' + {HALF}]: ['b' + {HALF}, 'c']}})"},
        {"type": "evaluate", "script": "'whole 😀'"},
    ]
    job = server.http.submit({"url": url, "actions": actions, "output": ["text"]}, kind="interact", max_attempts=1)
    finished = server.http.wait(job["job_id"], 60)
    assert finished["status"] == "completed", finished["error"]
    results = [action["result"] for action in result_of(server, job["job_id"])["outputs"]["actions"]]
    assert results == ["a\ufffd", {"key\ufffd": ["b\ufffd", "c"]}, "whole 😀"]


@pytest.mark.browser
def test_inline_renders_of_a_lone_surrogate_answer_200(server: ServerThread, site: TargetSite) -> None:
    url = site.add_html("/surrogate", SURROGATE_PAGE)
    scraped = server.http.post("/v1/scrape", {"url": url, "render_js": True, "output": ["text"]})
    assert scraped.status == 200, scraped.body
    assert "half \ufffd emoji" in scraped.json["outputs"]["text"]
    actions = [{"type": "evaluate", "script": f"'a' + {HALF}"}]
    interacted = server.http.post("/compat/scrapio/v1/interact", {"url": url, "actions": actions, "output": ["text"]})
    assert interacted.status == 200, interacted.body
    assert interacted.json["outputs"]["actions"][0]["result"] == "a\ufffd"


@pytest.mark.browser
def test_an_inline_action_that_throws_a_lone_surrogate_answers_in_the_error_shape(
    server: ServerThread, site: TargetSite
) -> None:
    url = site.add_html("/surrogate", SURROGATE_PAGE)
    actions = [{"type": "evaluate", "script": f"(() => {{ throw new Error('bad ' + {HALF}) }})()"}]
    answered = server.http.post("/compat/scrapio/v1/interact", {"url": url, "actions": actions})
    assert answered.status != 500, answered.body
    assert answered.json["error"]["code"] == "action_failed"
    assert "bad \ufffd" in answered.json["error"]["message"]


@pytest.mark.browser
def test_a_rendered_crawl_through_a_lone_surrogate_keeps_every_page(server: ServerThread, site: TargetSite) -> None:
    site.add_html("/surrogate", SURROGATE_PAGE)
    site.add_html("/next", "<html><body><p>the next page</p></body></html>")
    job = crawl(server.http, {"max_attempts": 1}, url=site.url("/surrogate"), render_js=True, max_pages=2)
    assert job["status"] == "completed", job["error"]
    pages = {page["url"]: page for page in all_pages(server.http, job["job_id"])}
    assert set(pages) == {site.url("/surrogate"), site.url("/next")}
    assert all(page.get("error") is None for page in pages.values())


# -- what the worker does with an outcome that cannot be stored ------------------------------------------


async def _half_emoji_result(params: Any, ctx: KindContext) -> JobResult:
    return JobResult(JobState.COMPLETED, {"text": "half \ud83d", "tags": {"a set is no JSON"}})


async def _half_emoji_error(params: Any, ctx: KindContext) -> JobResult:
    raise JobError("the page said: half \ud83d", retryable=False)


@pytest.fixture
def odd_kinds_server(tmp_path: Path) -> Any:
    """A server with two kinds of this module's, beside the built-in ones: one whose result no JSON can
    hold, one whose error message holds a lone surrogate."""
    with ServerThread(make_config(tmp_path)) as running:
        assert running.app is not None
        running.app.kinds.add(Kind("unstorable", lambda raw: dict(raw), _half_emoji_result))
        running.app.kinds.add(Kind("half_emoji_error", lambda raw: dict(raw), _half_emoji_error))
        yield running


def test_an_outcome_no_json_can_hold_fails_the_job_at_once(odd_kinds_server: ServerThread) -> None:
    job = odd_kinds_server.http.submit({}, kind="unstorable", max_attempts=3)
    finished = odd_kinds_server.http.wait(job["job_id"], 20)
    assert finished["status"] == "failed"
    assert finished["attempts"] == 1  # not retried: the same work makes the same outcome
    assert finished["error"]["code"] == "internal_error"
    assert "outcome cannot be stored" in finished["error"]["message"]


def test_an_error_message_with_a_lone_surrogate_is_kept_readable(odd_kinds_server: ServerThread) -> None:
    job = odd_kinds_server.http.submit({}, kind="half_emoji_error", max_attempts=1)
    finished = odd_kinds_server.http.wait(job["job_id"], 20)
    assert finished["status"] == "failed"
    assert finished["error"]["code"] == "job_error"
    assert finished["error"]["message"] == "the page said: half \ufffd"
