"""Plugin kinds end to end: loaded from [kinds] or an entry point, validated, retried, timed out, cancelled."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from litejobs.app import App
from litejobs.errors import ConfigError, ValidationFailed
from litejobs.plugins import parse_schema, validate_input
from tests.support import ServerThread, TargetSite, make_config
from tests.test_compat_common import poll

PLUGINS = {
    "word_count": "tests.plugin_example:word_count",
    "nap": "tests.plugin_example:nap",
    "flaky": "tests.plugin_example:flaky",
    "shout": "tests.plugin_example:shout",
    "ends_as": "tests.plugin_odd_results:ends_as",
    "set_inside": "tests.plugin_odd_results:set_inside",
    "cancelled_elsewhere": "tests.plugin_odd_results:cancelled_elsewhere",
    "tally": "tests.plugin_odd_results:tally",
}
#: long enough for any of these jobs to end; far less than the 30 s lease a stuck job would hold
ENDS_WITHIN_S = 10
PAGE = "<html><body><h1>Tea</h1><p>Green tea and black tea.</p><script>var hidden;</script></body></html>"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    with ServerThread(make_config(tmp_path, kinds=PLUGINS)) as running:
        yield running


def test_a_configured_plugin_runs_as_a_native_kind_and_reports_progress(api: ServerThread, site: TargetSite) -> None:
    job = api.http.submit({"url": site.add_html("/", PAGE)}, kind="word_count")
    done = api.http.wait(job["job_id"])
    assert done["status"] == "completed" and done["kind"] == "word_count"
    assert done["progress"] == {"message": "counting", "progress": 0.8}
    result = api.http.get(f"/v1/jobs/{job['job_id']}/result").json
    assert result["outputs"] == {"url": site.url("/"), "words": 6, "distinct": 5}


def test_plugin_input_is_checked_against_its_schema_at_submit(api: ServerThread) -> None:
    resp = api.http.post("/v1/jobs", {"kind": "word_count", "input": {"url": "file:///etc/passwd", "min_length": 99}})
    assert resp.status == 422 and resp.json["error"]["code"] == "validation_error"
    problems = {d["field"]: d["problem"] for d in resp.json["error"]["details"]}
    assert set(problems) == {"input.url", "input.min_length"} and "at most 50" in problems["input.min_length"]
    extra = api.http.post("/v1/jobs", {"kind": "shout", "input": {"text": "hi", "volume": 11}})
    assert extra.status == 422 and extra.json["error"]["details"] == [
        {"field": "input.volume", "problem": "is not a known field"}
    ]


def test_a_plugin_failure_is_retried_with_the_engines_backoff(api: ServerThread) -> None:
    retried = api.http.submit({"succeed_on": 3}, kind="flaky")
    given_up = api.http.submit({"succeed_on": 5}, kind="flaky", max_attempts=2)
    done = api.http.wait(retried["job_id"])
    assert done["status"] == "completed" and done["attempts"] == 3
    assert api.http.get(f"/v1/jobs/{retried['job_id']}/result").json["outputs"] == {"result": 3}
    failed = api.http.wait(given_up["job_id"])
    assert failed["status"] == "failed" and failed["attempts"] == 2
    assert failed["error"]["code"] == "job_error" and "attempt 2 failed on purpose" in failed["error"]["message"]


def test_a_plugin_past_its_timeout_fails_and_a_cancel_stops_it(api: ServerThread) -> None:
    slow = api.http.submit({"seconds": 10}, kind="nap", timeout_s=1, max_attempts=1)
    long = api.http.submit({"seconds": 10}, kind="nap")
    poll(lambda: api.http.get(f"/v1/jobs/{long['job_id']}"), lambda j: (j["progress"] or {}).get("progress", 0) > 0)
    started = time.monotonic()
    cancelled = api.http.delete(f"/v1/jobs/{long['job_id']}")
    assert cancelled.status == 200 and cancelled.json["status"] == "cancelled"
    assert time.monotonic() - started < 2.5
    timed_out = api.http.wait(slow["job_id"])
    assert timed_out["status"] == "failed" and timed_out["error"]["code"] == "timeout"


@pytest.mark.parametrize("state", ["waiting", "delayed", "active", "failed", "cancelled"])
def test_a_job_result_that_does_not_finish_the_job_fails_it_at_once(api: ServerThread, state: str) -> None:
    job = api.http.submit({"state": state}, kind="ends_as", max_attempts=3)
    done = api.http.wait(job["job_id"], timeout_s=ENDS_WITHIN_S)
    assert (done["status"], done["attempts"], done["result_available"]) == ("failed", 1, False)
    assert done["error"]["code"] == "job_error"
    assert f"status {state!r}" in done["error"]["message"] and "completed or partial" in done["error"]["message"]


def test_a_partial_job_result_is_kept_with_its_stats(api: ServerThread) -> None:
    job = api.http.submit({"state": "partial", "stats": {"skipped": 2}}, kind="ends_as")
    assert api.http.wait(job["job_id"])["status"] == "partial"
    result = api.http.get(f"/v1/jobs/{job['job_id']}/result").json
    assert result["outputs"] == {"a": 1} and result["stats"]["skipped"] == 2


@pytest.mark.parametrize("where", ["outputs", "stats"])
def test_a_job_result_that_is_not_json_fails_the_job_at_once(api: ServerThread, where: str) -> None:
    job = api.http.submit({"where": where}, kind="set_inside", max_attempts=3)
    done = api.http.wait(job["job_id"], timeout_s=ENDS_WITHIN_S)
    assert (done["status"], done["attempts"]) == ("failed", 1)
    assert done["error"]["code"] == "job_error" and f"{where} are not a JSON object" in done["error"]["message"]


def test_a_cancelled_error_the_job_did_not_ask_for_is_a_retryable_internal_error(api: ServerThread) -> None:
    retried = api.http.submit({"succeed_on": 2}, kind="cancelled_elsewhere", max_attempts=2)
    given_up = api.http.submit({"succeed_on": 5}, kind="cancelled_elsewhere", max_attempts=1)
    done = api.http.wait(retried["job_id"], timeout_s=ENDS_WITHIN_S)
    assert (done["status"], done["attempts"]) == ("completed", 2)
    assert done["attempts_detail"][0]["error"]["code"] == "internal_error"
    failed = api.http.wait(given_up["job_id"], timeout_s=ENDS_WITHIN_S)
    assert (failed["status"], failed["error"]["code"]) == ("failed", "internal_error")
    assert "CancelledError" in failed["error"]["message"]


def test_each_job_gets_its_own_copy_of_the_schemas_defaults(api: ServerThread) -> None:
    outputs = []
    for _ in range(3):
        job = api.http.submit({}, kind="tally")
        assert api.http.wait(job["job_id"])["status"] == "completed"
        outputs.append(api.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"])
    assert outputs == [{"options": {"seen": [1], "runs": 1}, "tags": [["first", "again"], "more"]}] * 3


def test_a_plugin_is_a_kind_in_the_dialects_that_take_one(api: ServerThread) -> None:
    job = api.http.post("/compat/scrapio/v1/jobs", {"kind": "shout", "input": {"text": "hi"}}).json
    poll(lambda: api.http.get(f"/compat/scrapio/v1/jobs/{job['job_id']}"), lambda s: s["result_available"])
    assert api.http.get(f"/compat/scrapio/v1/jobs/{job['job_id']}/result").json["outputs"] == {"text": "HI"}
    inline = api.http.post("/compat/scrapellm/scrapers/shout/jobs?text=hey").json
    done = poll(lambda: api.http.get(f"/compat/scrapellm/jobs/{inline['job_id']}"), lambda s: s["status"] == "done")
    assert done["result"] == {"text": "HEY"}


def test_an_installed_entry_point_is_a_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "site" / "litejobs_loud-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: litejobs-loud\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[litejobs.kinds]\nloud = tests.plugin_example:shout\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with ServerThread(make_config(tmp_path)) as api:
        job = api.http.submit({"text": "installed"}, kind="loud")
        assert api.http.wait(job["job_id"])["status"] == "completed"
        assert api.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"] == {"text": "INSTALLED"}


@pytest.mark.parametrize(
    ("kinds", "message"),
    [
        ({"gone": "tests.no_such_module:run"}, r"plugin kind 'gone' \(\[kinds\] gone\): cannot load .*ModuleNotFound"),
        ({"typo": "tests.plugin_example:wordcount"}, r"plugin kind 'typo' .*cannot load .*AttributeError"),
        ({"sync": "tests.plugin_example:not_async"}, r"plugin kind 'sync' .*is not an async function"),
        ({"bare": "tests.plugin_example:no_schema"}, r"plugin kind 'bare' .*declares no input_schema"),
        ({"odd": "tests.plugin_example:bad_schema"}, r"plugin kind 'odd' .*input_schema\['when'\]: type must be"),
        ({"fetch": "tests.plugin_example:shout"}, r"plugin kind 'fetch' .*is a built-in kind"),
    ],
)
def test_a_bad_plugin_stops_the_server_at_start_naming_it(tmp_path: Path, kinds: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        App(make_config(tmp_path, kinds=kinds))


def test_a_bad_kinds_line_is_refused_by_the_config_loader(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"kinds\.Word-Count: a kind name"):
        make_config(tmp_path, kinds={"Word-Count": "tests.plugin_example:word_count"})
    with pytest.raises(ConfigError, match=r'kinds\.word_count: expected "package\.module:function"'):
        make_config(tmp_path, kinds={"word_count": "tests.plugin_example"})


def check(schema: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    return validate_input(parse_schema(schema, "test"), raw)


def test_schemas_take_type_names_python_types_and_field_objects() -> None:
    schema = {
        "q": "string",
        "n": "integer?",
        "ratio": float,
        "tags": {"type": "array", "default": []},
        "mode": {"type": "string", "choices": ["fast", "slow"], "default": "fast"},
        "site": "url?",
    }
    assert check(schema, {"q": "tea", "ratio": 1}) == {
        "q": "tea",
        "n": None,
        "ratio": 1.0,
        "tags": [],
        "mode": "fast",
        "site": None,
    }
    with pytest.raises(ValidationFailed) as failed:
        check(schema, {"n": "3", "ratio": True, "tags": "a", "mode": "medium", "site": "ftp://x"})
    assert {d["field"] for d in failed.value.details} == {
        "input.q",
        "input.n",
        "input.ratio",
        "input.tags",
        "input.mode",
        "input.site",
    }


NON_FINITE_PLUGIN = """
from litejobs.jobs import JobResult, JobState
from litejobs.plugins import job_kind


@job_kind({"value": {"type": "string", "choices": ["nan", "inf", "-inf"]}, "as_stats": {"type": "boolean", "default": False}})
async def non_finite(input, ctx):
    number = float(input["value"])
    if input["as_stats"]:
        return JobResult(JobState.COMPLETED, {"a": 1}, {"ratio": [1.0, number]})
    return {"ratio": number, "ok": 1.5}
"""


@pytest.mark.parametrize(("value", "as_stats"), [("nan", False), ("inf", False), ("-inf", False), ("nan", True)])
def test_a_nan_or_an_infinity_in_a_plugins_result_fails_the_job_with_job_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str, as_stats: bool
) -> None:
    (tmp_path / "non_finite_plugin.py").write_text(NON_FINITE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    with ServerThread(make_config(tmp_path, kinds={"non_finite": "non_finite_plugin:non_finite"})) as api:
        job = api.http.submit({"value": value, "as_stats": as_stats}, kind="non_finite", max_attempts=3)
        done = api.http.wait(job["job_id"], timeout_s=ENDS_WITHIN_S)
        result = api.http.get(f"/v1/jobs/{job['job_id']}/result")
    assert (done["status"], done["attempts"], done["result_available"]) == ("failed", 1, False)
    assert done["error"]["code"] == "job_error" and "JSON" in done["error"]["message"]
    assert result.status == 409
