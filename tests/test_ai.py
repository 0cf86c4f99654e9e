"""AI extraction against a small OpenAI-compatible server on 127.0.0.1, directly and in fetch jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from litejobs.ai import MAX_PAGE_CHARS, Extraction, extract_with_prompt
from litejobs.config import AiConfig
from tests.support import ServerThread, TargetSite, make_config

PAGE = "<html><head><title>Shop</title></head><body><h1>Prices</h1><p>Tea costs 4 EUR.</p></body></html>"


class FakeModel:
    """An OpenAI-compatible chat endpoint: answers `answer` (or `status`), records every request."""

    def __init__(self, site: TargetSite, answer: str = "Tea: 4 EUR", status: int = 200, delay_s: float = 0) -> None:
        self.answer, self.status, self.delay_s = answer, status, delay_s
        self.requests: list[dict[str, Any]] = []
        self.site = site
        site.add("/v1/chat/completions", self._complete)
        self.base_url = site.url("/v1")

    async def _complete(self, request: web.Request) -> web.Response:
        self.requests.append({"body": await request.json(), "authorization": request.headers.get("Authorization")})
        await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status, text="model overloaded")
        message = {"role": "assistant", "content": self.answer}
        usage = {"prompt_tokens": 312, "completion_tokens": 84, "total_tokens": 396}
        return web.json_response({"choices": [{"index": 0, "message": message}], "usage": usage})

    def config(self, **overrides: Any) -> dict[str, Any]:
        return {"base_url": self.base_url, "model": "tiny", **overrides}


@pytest.fixture
def model(site: TargetSite) -> FakeModel:
    return FakeModel(site)


def extract(config: AiConfig, markdown: str = "# Prices", fmt: str = "markdown") -> Extraction:
    return asyncio.run(extract_with_prompt(config, "the price of tea", markdown, fmt))


def test_the_prompt_and_the_markdown_go_to_the_model_and_its_answer_comes_back(model: FakeModel) -> None:
    extraction = extract(AiConfig(**model.config(api_key="sk-local")))
    assert extraction.content == "Tea: 4 EUR" and not extraction.failed and extraction.error is None
    assert (extraction.input_tokens, extraction.output_tokens, extraction.total_tokens) == (312, 84, 396)
    [sent] = model.requests
    assert sent["authorization"] == "Bearer sk-local"
    assert sent["body"]["model"] == "tiny"
    assert "the price of tea" in sent["body"]["messages"][-1]["content"]
    assert "# Prices" in sent["body"]["messages"][-1]["content"]


def test_a_json_answer_is_parsed_even_inside_a_code_fence(model: FakeModel) -> None:
    model.answer = '```json\n{"tea": 4}\n```'
    extraction = extract(AiConfig(**model.config()), fmt="json")
    assert extraction.content == {"tea": 4} and not extraction.failed
    assert "JSON" in model.requests[0]["body"]["messages"][0]["content"]


def test_an_answer_that_is_not_the_json_asked_for_falls_back_to_the_markdown(model: FakeModel) -> None:
    model.answer = "Tea is 4 EUR"
    extraction = extract(AiConfig(**model.config()), fmt="json")
    assert extraction.content == "# Prices" and extraction.failed and "not valid JSON" in (extraction.error or "")
    assert extraction.total_tokens == 396  # the model was paid for all the same


def test_a_failing_model_server_falls_back_to_the_markdown(model: FakeModel) -> None:
    model.status = 500
    extraction = extract(AiConfig(**model.config()))
    assert extraction.content == "# Prices" and extraction.failed
    assert "HTTP 500" in (extraction.error or "")


def test_a_slow_model_server_falls_back_after_the_timeout(model: FakeModel) -> None:
    model.delay_s = 2
    extraction = extract(AiConfig(**model.config(timeout_s=0.3)))
    assert extraction.content == "# Prices" and extraction.failed
    assert extraction.error == "the model did not answer within [ai] timeout_s (0.3 s)"


def test_without_a_model_server_the_markdown_comes_back_marked_failed() -> None:
    extraction = extract(AiConfig())
    assert extraction.content == "# Prices" and extraction.failed and "[ai] base_url" in (extraction.error or "")


def test_no_server_listening_is_a_fallback_not_a_crash() -> None:
    extraction = extract(AiConfig(base_url="http://127.0.0.1:9/v1", timeout_s=2))
    assert extraction.failed and extraction.content == "# Prices"


def test_a_long_page_is_cut_before_it_is_sent(model: FakeModel) -> None:
    extract(AiConfig(**model.config()), markdown="x" * (MAX_PAGE_CHARS * 2))
    assert len(model.requests[0]["body"]["messages"][-1]["content"]) < MAX_PAGE_CHARS + 200


@pytest.fixture
def ai_server(tmp_path: Path, model: FakeModel) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, ai=model.config())) as running:
        yield running


def test_a_fetch_job_with_extract_prompt_answers_with_the_model(
    ai_server: ServerThread, site: TargetSite, model: FakeModel
) -> None:
    url = site.add_html("/shop", PAGE)
    job = ai_server.http.submit({"url": url, "extract": {"prompt": "the price of tea"}})
    assert ai_server.http.wait(job["job_id"])["status"] == "completed"
    result = ai_server.http.get(f"/v1/jobs/{job['job_id']}/result").json
    assert result["outputs"]["content"] == "Tea: 4 EUR" and result["outputs"]["ai_extraction_failed"] is False
    assert result["stats"]["ai"]["total_tokens"] == 396 and result["stats"]["ai"]["model"] == "tiny"
    assert "Tea costs 4 EUR." in model.requests[0]["body"]["messages"][-1]["content"]


def test_a_fetch_job_whose_model_fails_still_completes_with_the_markdown(
    ai_server: ServerThread, site: TargetSite, model: FakeModel
) -> None:
    model.status = 503
    url = site.add_html("/shop", PAGE)
    job = ai_server.http.submit({"url": url, "output": ["html"], "extract": {"prompt": "the price"}})
    assert ai_server.http.wait(job["job_id"])["status"] == "completed"
    outputs = ai_server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]
    assert outputs["ai_extraction_failed"] is True and "# Prices" in outputs["content"]
    assert "HTTP 503" in outputs["ai_error"] and "markdown" not in outputs
    assert json.loads(json.dumps(outputs))  # plain JSON all the way down
