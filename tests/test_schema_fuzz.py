"""Generated requests (schemathesis) against a live server: no 5xx, and every answer as /openapi.json says.

The server is sealed: name lookups fail without asking any DNS server, every address is refused by
the network policy, and no Chromium is found, so the jobs that generated submits start reach
nothing but 127.0.0.1, where the test itself talks to the API.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.support import Http, ServerThread, make_config

schemathesis = pytest.importorskip("schemathesis")  # the `test` extra; hypothesis comes with it
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    # schemathesis' own strategies use `random`; that is its business, not a fault of this test
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

KEY = "fuzz-key"
#: examples per operation and mode. The default run sends the same requests every time (a failure is
#: reproducible); LITEJOBS_FUZZ_EXAMPLES=500 explores further, with fresh random requests.
EXAMPLES = int(os.environ.get("LITEJOBS_FUZZ_EXAMPLES", "40"))
EXPLORING = "LITEJOBS_FUZZ_EXAMPLES" in os.environ
BUDGET_S = 60 * max(1.0, EXAMPLES / 40)
#: 5xx answers the API documents as the target's fault, not the server's
TARGET_FAULTS = {("/v1/scrape", 502)}
#: event streams: /v1/events never ends, and the generated client cannot read a stream
#: (tests/test_events.py and tests/test_hostile.py cover both)
STREAMS = {"/v1/events", "/v1/jobs/{job_id}/events"}


class NoDns(AbstractResolver):
    """Every name lookup fails at once, without a packet sent."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        raise OSError(f"name lookups are off in this test ({host})")

    async def close(self) -> None:
        return None


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    monkeypatch.setattr(aiohttp, "DefaultResolver", NoDns)
    config = make_config(
        tmp_path,
        auth={"keys": [KEY]},
        fetch={"blocked_networks": ["0.0.0.0/0", "::/0"], "timeout_s": 2},
        browser={"executable": str(tmp_path / "no-chromium")},
        limits={"sync_timeout_s": 3},
        webhooks={"timeout_s": 1},
    )
    with ServerThread(config) as server:
        yield server


def no_server_error(ctx: Any, response: Any, case: Any) -> None:
    """A 500 is always a bug; another 5xx only where the document says it is the target's fault."""
    if response.status_code >= 500 and (case.operation.path, response.status_code) not in TARGET_FAULTS:
        raise AssertionError(f"{response.status_code}: {response.text[:500]}")


CHECKS = [
    no_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_headers_conformance,
    openapi_checks.response_schema_conformance,
]


def known_jobs(http: Http) -> dict[str, str]:
    """Jobs in each state the generated requests should also meet, besides unknown ids."""
    url = "http://192.0.2.1/"  # refused by the policy: the job fails at once, nothing is sent
    failed = http.submit({"url": url}, max_attempts=1)["job_id"]
    delayed = http.submit({"url": url}, delay_s=3600)["job_id"]
    cancelled = http.submit({"url": url}, delay_s=3600)["job_id"]
    assert http.delete(f"/v1/jobs/{cancelled}").status == 200
    assert http.wait(failed)["status"] == "failed"
    return {"failed": failed, "delayed": delayed, "cancelled": cancelled}


def described(exc: BaseException) -> str:
    """A failure's message with Hypothesis' notes (the falsifying request), group members one by one."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n".join(described(member) for member in exc.exceptions)
    return "\n".join([f"{type(exc).__name__}: {exc}"[:3000], *getattr(exc, "__notes__", [])])


def explore(operation: Any, mode: Any, base_url: str, path_parameters: dict[str, str] | None) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=not EXPLORING,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def send(case: Any) -> None:
        case.call_and_validate(base_url=base_url, headers={"Authorization": f"Bearer {KEY}"}, checks=CHECKS, timeout=20)

    send()


def test_generated_requests_get_no_5xx_and_answers_that_match_the_document(sealed: ServerThread) -> None:
    schema = schemathesis.openapi.from_url(
        f"{sealed.base_url}/openapi.json", headers={"Authorization": f"Bearer {KEY}"}
    )
    jobs = known_jobs(sealed.http)
    started = time.monotonic()
    failures: dict[str, str] = {}
    explored = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in STREAMS:
            continue
        job_ids: list[str | None] = [None]  # an id nobody has, then real jobs
        if "{job_id}" in operation.path:
            # ?wait=N holds the answer for a job that is not over: GET meets only finished ones
            job_ids += [jobs["failed"], jobs["cancelled"]] if operation.method == "get" else [jobs["delayed"]]
        for job_id in job_ids:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                label = f"{operation.label} [{mode.value}{', job ' + job_id if job_id else ''}]"
                try:
                    explore(operation, mode, sealed.base_url, {"job_id": job_id} if job_id else None)
                except Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:  # only a negative run may find nothing to negate
                        failures[label] = "no request could be generated"
                except (Exception, BaseExceptionGroup) as exc:
                    failures[label] = described(exc)
                explored += 1
    assert not failures, "\n\n".join(f"{label}\n{text}" for label, text in failures.items())
    assert explored > 30 and time.monotonic() - started < BUDGET_S
