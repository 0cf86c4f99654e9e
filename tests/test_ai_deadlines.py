"""A prompt's model is held to the job's time: a slow one costs the answer, never the fetched page.

And what `ai_error` tells an API caller: which time ran out, the model's HTTP status, never its address.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from litejobs.ai import extract_with_prompt
from litejobs.config import AiConfig
from tests.support import ServerThread, TargetSite, make_config
from tests.test_ai import PAGE, FakeModel


def result_of(server: ServerThread, body: dict[str, Any], kind: str = "fetch") -> tuple[dict[str, Any], dict[str, Any]]:
    job = server.http.wait(server.http.submit(kind=kind, **body)["job_id"])
    return job, server.http.get(f"/v1/jobs/{job['job_id']}/result").json


def test_a_fetch_job_whose_model_outlasts_the_job_completes_with_the_markdown_and_is_not_retried(
    tmp_path: Path, site: TargetSite
) -> None:
    model = FakeModel(site, delay_s=10)  # [ai] timeout_s stays at its default, 30 s: the job's 3 s rule
    url = site.add_html("/shop", PAGE)
    with ServerThread(make_config(tmp_path, ai=model.config())) as server:
        body = {"input": {"url": url, "extract": {"prompt": "the price of tea"}}, "timeout_s": 3, "max_attempts": 2}
        job, result = result_of(server, body)
    assert job["status"] == "completed", job["error"]
    assert job["attempts"] == 1 and len(model.requests) == 1
    outputs = result["outputs"]
    assert outputs["ai_extraction_failed"] is True and "# Prices" in outputs["content"]
    assert "did not answer within the" in outputs["ai_error"] and "the job's time limit left it" in outputs["ai_error"]
    assert result["stats"]["ai"]["elapsed_ms"] > 0


def test_a_sync_scrape_whose_model_outlasts_sync_timeout_answers_with_the_markdown(
    tmp_path: Path, site: TargetSite
) -> None:
    model = FakeModel(site, delay_s=10)
    url = site.add_html("/shop", PAGE)
    with ServerThread(make_config(tmp_path, ai=model.config(), limits={"sync_timeout_s": 3})) as server:
        resp = server.http.post("/v1/scrape", {"url": url, "extract": {"prompt": "the price of tea"}})
    assert resp.status == 200, resp.json
    outputs = resp.json["outputs"]
    assert outputs["ai_extraction_failed"] is True and "# Prices" in outputs["content"]
    assert "the job's time limit left it" in outputs["ai_error"]


def test_a_multi_fetch_model_given_up_at_the_deadline_reports_the_time_it_ran(tmp_path: Path, site: TargetSite) -> None:
    model = FakeModel(site, delay_s=10)
    url = site.add_html("/shop", PAGE)
    with ServerThread(make_config(tmp_path, ai=model.config())) as server:
        body = {"input": {"urls": [url], "prompt": "the price"}, "timeout_s": 3, "max_attempts": 1}
        job, result = result_of(server, body, kind="multi_fetch")
    assert job["status"] == "completed", job["error"]
    assert result["outputs"]["ai_extraction_failed"] is True
    assert "the job's time limit left it" in result["outputs"]["ai_error"]
    assert result["stats"]["ai"]["elapsed_ms"] > 0


@pytest.mark.browser
def test_a_render_job_whose_model_outlasts_the_job_completes_with_the_markdown(
    tmp_path: Path, site: TargetSite
) -> None:
    model = FakeModel(site, delay_s=20)
    url = site.add_html("/shop", PAGE)
    with ServerThread(make_config(tmp_path, ai=model.config())) as server:
        body = {"input": {"url": url, "extract": {"prompt": "the price"}}, "timeout_s": 8, "max_attempts": 1}
        job, result = result_of(server, body, kind="render")
    assert job["status"] == "completed", job["error"]
    assert result["outputs"]["ai_extraction_failed"] is True and "# Prices" in result["outputs"]["content"]


def ask(config: AiConfig) -> str:
    extraction = asyncio.run(extract_with_prompt(config, "the price of tea", "# Prices"))
    assert extraction.failed and extraction.content == "# Prices"
    return extraction.error or ""


def test_a_model_error_gives_its_status_but_neither_the_model_address_nor_its_answer(site: TargetSite) -> None:
    model = FakeModel(site, status=500)
    error = ask(AiConfig(**model.config()))
    assert "HTTP 500" in error
    assert model.base_url not in error and str(site.port) not in error and "model overloaded" not in error


def test_an_unreachable_model_is_named_without_its_address() -> None:
    error = ask(AiConfig(base_url="http://127.0.0.1:9/v1", timeout_s=2))
    assert "could not be reached" in error and "127.0.0.1" not in error
