"""Logs: a line per request and per job transition, as JSON for machines, never with the API key."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from litejobs.logs import TEXT_FORMAT, JsonFormatter
from tests.support import Http, ServerProcess, ServerThread, TargetSite, make_config

KEY = "k-never-in-logs-123"


def test_json_logs_carry_requests_and_job_transitions_but_never_the_key(tmp_path: Path, site: TargetSite) -> None:
    server = ServerProcess(tmp_path / "db.sqlite", "--log-format", "json", env={"LITEJOBS_AUTH_KEYS": KEY})
    try:
        listed = Http(server.base_url).get(f"/v1/jobs?api_key={KEY}&limit=5")
        http = Http(server.base_url, KEY)
        submitted = http.post(
            "/v1/jobs", {"input": {"url": site.add_html("/p", "<p>hi</p>")}}, headers={"X-Request-Id": "req-test-1"}
        )
        job_id = submitted.json["job_id"]
        assert http.wait(job_id)["status"] == "completed"
    finally:
        server.terminate()
    assert listed.status == 200 and submitted.status == 202
    text = "".join(server.output)
    assert KEY not in text
    lines = [json.loads(line) for line in server.output if line.strip() and not line.startswith("litejobs listening")]
    requests = [line for line in lines if line["logger"] == "litejobs.http"]
    [submit] = [line for line in requests if line["request_id"] == "req-test-1"]
    assert submit["method"] == "POST" and submit["path"] == "/v1/jobs" and submit["status"] == 202
    assert submit["ms"] >= 0 and submit["ts"].endswith("Z") and submit["level"] == "info"
    [listing] = [line for line in requests if line["method"] == "GET" and line["path"] == "/v1/jobs"]
    assert listing["status"] == 200 and listing["request_id"] == listed.headers["x-request-id"]
    transitions = [line for line in lines if line.get("job_id") == job_id]
    assert [t["status"] for t in transitions] == ["waiting", "active", "completed"]
    assert transitions[-1]["kind"] == "fetch" and transitions[-1]["attempt"] == 1 and "error_code" in transitions[-1]


def test_text_lines_name_the_request_and_a_failed_jobs_error_code(
    tmp_path: Path, site: TargetSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="litejobs")
    with ServerThread(make_config(tmp_path, auth={"keys": [KEY]})) as server:
        resp = Http(server.base_url).get(f"/v1/stats?api_key={KEY}")
        job = server.http.submit({"url": site.add_html("/gone", "x", status=503)}, max_attempts=1)
        server.http.wait(job["job_id"])
    formatter = logging.Formatter(TEXT_FORMAT)
    lines = [formatter.format(record) for record in caplog.records]
    assert KEY not in "\n".join(lines)
    [stats] = [line for line in lines if "GET /v1/stats" in line]
    assert "GET /v1/stats 200 " in stats and stats.endswith(resp.headers["x-request-id"])
    assert any(f"job {job['job_id']} fetch failed attempt 1 error upstream_status" in line for line in lines)


def test_a_json_line_holds_the_exception_and_the_extra_fields() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("litejobs", logging.ERROR, __file__, 1, "failed %s", ("x",), exc_info)
    record.job_id = "job_1"
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "failed x" and line["level"] == "error" and line["job_id"] == "job_1"
    assert "ValueError: boom" in line["exc"]
