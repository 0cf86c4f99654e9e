"""The native API (../shared/API.md): routes that translate HTTP into Engine calls and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from litejobs.api.auth import ANONYMOUS, presented_key
from litejobs.api.http import app_of, attempt_body, job_body, public_page, query_number, read_json, result_body
from litejobs.api.responses import HeldBytes, JSONResponse, bytes_etag, file_response, stat_etag
from litejobs.engine import Engine, request_hash
from litejobs.errors import IdempotencyConflict, NotFound, ValidationFailed
from litejobs.fields import Fields
from litejobs.jobs import JobSpec, JobState
from litejobs.store import Submitted

MAX_WAIT_S = 60.0
#: joins a batch's Idempotency-Key to a job's place in it: a control character, which the keys a
#: client may send (printable) never hold, so a batch takes no key its caller could use
BATCH_KEY_JOIN = "\x1f"
#: marks the hash of a batch whose jobs' keys are joined by BATCH_KEY_JOIN (not by the old `#`)
BATCH_HASH_PREFIX = "batch:"


def owner(request: Request, body_key: str | None = None) -> str:
    app = app_of(request)
    # an open server has one owner: no need to look for a key in the headers and query
    found = app.keys.owner(presented_key(request, body_key)) if app.keys.enabled else ANONYMOUS
    app.rate_limit(found)
    return found


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not (1 <= len(key) <= 255) or not key.isprintable():
        raise ValidationFailed([{"field": "Idempotency-Key", "problem": "must be 1 to 255 printable characters"}])
    return key


def accepted(job_body_: dict[str, Any], replayed: bool) -> JSONResponse:
    headers = {"Location": job_body_["links"]["self"]}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(job_body_, status_code=200 if replayed else 202, headers=headers)


async def submit_job(request: Request) -> Response:
    who = owner(request)
    body = await read_json(request)
    engine = app_of(request).engine
    engine.check_accepting()
    spec = engine.build_spec(body, who, idempotency_key(request))
    [submitted] = await engine.submit([spec])
    return accepted(job_body(submitted.job), submitted.replayed)


async def submit_batch(request: Request) -> Response:
    who = owner(request)
    body = await read_json(request)
    engine = app_of(request).engine
    engine.check_accepting()
    key = idempotency_key(request)
    limit = app_of(request).config.limits.max_batch
    top = Fields(body)
    jobs = top.any("jobs")
    if not isinstance(jobs, list) or not jobs:
        top.problem("jobs", "must be a non-empty list of job submissions")
    elif len(jobs) > limit:
        top.problem("jobs", f"must have at most {limit} jobs")
    top.finish()  # and no other top-level field: a misspelt one must not be dropped in silence
    specs, problems = [], []
    for index, item in enumerate(jobs):
        try:
            specs.append(engine.build_spec(item, who, prefix=f"jobs[{index}]"))
        except ValidationFailed as exc:
            problems.extend(exc.details)
    if problems:
        raise ValidationFailed(problems, f"{len(problems)} problem(s) in the batch; no job was submitted")
    if key is None:
        submitted = await engine.submit(specs)
    else:
        submitted = await submit_under_key(engine, specs, key, request_hash(body))
    replayed = all(s.replayed for s in submitted)
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(
        {"jobs": [job_body(s.job) for s in submitted]}, status_code=200 if replayed else 202, headers=headers
    )


async def submit_under_key(engine: Engine, specs: list[JobSpec], key: str, batch_hash: str) -> list[Submitted]:
    """A batch under an Idempotency-Key: a new one, or the replay of one stored under either form of
    its jobs' keys. Before BATCH_KEY_JOIN a batch took `key#n`, keys a client could send as its own;
    until those jobs expire, the new form's attempt conflicts on the first job (its hash has no
    BATCH_HASH_PREFIX) and rolls back, and the old form's finds them, or conflicts in turn: 409."""
    try:
        return await engine.submit(batch_bound_to_key(specs, key, BATCH_HASH_PREFIX + batch_hash, BATCH_KEY_JOIN))
    except IdempotencyConflict:
        return await engine.submit(batch_bound_to_key(specs, key, batch_hash, "#"))


def batch_bound_to_key(specs: list[JobSpec], key: str, batch_hash: str, join: str) -> list[JobSpec]:
    """Each job of a batch under an Idempotency-Key: the first takes the key itself, the n-th
    `key{join}n` (keys are unique per owner), all bound to the hash of the whole batch. A replay finds
    every job; the same key on another batch or a single submit finds the first with another hash: 409."""
    return [
        replace(spec, idempotency_key=key if index == 0 else f"{key}{join}{index}", request_hash=batch_hash)
        for index, spec in enumerate(specs)
    ]


async def get_job(request: Request) -> Response:
    who = owner(request)
    wait_s = query_number(request, "wait", 0.0, 0.0, MAX_WAIT_S)
    engine = app_of(request).engine
    job_id = request.path_params["job_id"]
    job = await engine.wait(job_id, who, wait_s) if wait_s > 0 else await engine.get(job_id, who)
    body = job_body(job)
    body["attempts_detail"] = [attempt_body(a) for a in await engine.store.attempts(job.id)]
    return JSONResponse(body)


async def get_result(request: Request) -> Response:
    """The result; a multi-page job (a crawl) adds `pages`, `?offset=&limit=` (limit ≤ 1000) at a time."""
    who = owner(request)
    app = app_of(request)
    job, result = await app.engine.result(request.path_params["job_id"], who)
    body = result_body(job, result)
    total = await app.store.page_count(job.id)
    if total:
        offset = int(query_number(request, "offset", 0, 0, 10**9))
        limit = int(query_number(request, "limit", 100, 1, 1000))
        body["pages"] = [public_page(p) for p in await app.store.pages(job.id, offset, limit)]
        body["total_pages"] = total
        body["next_offset"] = offset + limit if offset + limit < total else None
    return JSONResponse(body)


async def cancel_job(request: Request) -> Response:
    who = owner(request)
    job = await app_of(request).engine.cancel(request.path_params["job_id"], who)
    return JSONResponse(job_body(job))


async def retry_job(request: Request) -> Response:
    who = owner(request)
    job = await app_of(request).engine.retry(request.path_params["job_id"], who)
    return JSONResponse(job_body(job), status_code=202)


def _list_filters(request: Request) -> tuple[str | None, str | None, int, int | None]:
    params = request.query_params
    problems = []
    status = params.get("status") or None
    if status is not None and status not in {s.value for s in JobState}:
        problems.append({"field": "status", "problem": f"must be one of {', '.join(s.value for s in JobState)}"})
    cursor_raw = params.get("cursor") or None
    cursor = None
    if cursor_raw is not None:
        # ASCII digits only ("²".isdigit() is true, int() refuses it), and few enough for SQLite's int64
        if (
            cursor_raw.startswith("c")
            and cursor_raw[1:].isascii()
            and cursor_raw[1:].isdigit()
            and len(cursor_raw) <= 19
        ):
            cursor = int(cursor_raw[1:])
        else:
            problems.append({"field": "cursor", "problem": "is not a cursor this server gave out"})
    if problems:
        raise ValidationFailed(problems)
    limit = int(query_number(request, "limit", 50, 1, 1000))
    return status, params.get("kind") or None, limit, cursor


async def list_jobs(request: Request) -> Response:
    who = owner(request)
    status, kind, limit, cursor = _list_filters(request)
    jobs, next_seq = await app_of(request).store.list_jobs(who, status, kind, limit, cursor)
    next_cursor = None if next_seq is None else f"c{next_seq}"
    return JSONResponse({"jobs": [job_body(j) for j in jobs], "next_cursor": next_cursor})


async def stats(request: Request) -> Response:
    owner(request)
    return JSONResponse(await app_of(request).stats())


async def scrape_sync(request: Request) -> Response:
    owner(request)
    body = await read_json(request)
    with fields_at_top_level():
        result, _ = await app_of(request).engine.run_inline("fetch", body)
    return JSONResponse({"status": result.status.value, "outputs": result.outputs, "stats": result.stats})


async def scrape_async(request: Request) -> Response:
    who = owner(request)
    body = await read_json(request)
    engine = app_of(request).engine
    engine.check_accepting()
    with fields_at_top_level():
        spec = engine.build_spec({"kind": "fetch", "input": body}, who, idempotency_key(request))
    [submitted] = await engine.submit([spec])
    return accepted(job_body(submitted.job), submitted.replayed)


@contextmanager
def fields_at_top_level() -> Iterator[None]:
    """The /v1/scrape routes take a fetch job's input as their whole body: its problems are named
    from the body (`url`), not from a job's `input` (`input.url`) the caller never sent."""
    try:
        yield
    except ValidationFailed as exc:
        details = [{**d, "field": _from_input(d["field"])} for d in exc.details]
        raise ValidationFailed(details) from None


def _from_input(field: str) -> str:
    return "body" if field == "input" else field.removeprefix("input.")


async def get_file(request: Request) -> Response:
    who = owner(request)
    app = app_of(request)
    job_id, name = request.path_params["job_id"], request.path_params["name"]
    job = await app.engine.get(job_id, who)
    stored = await app.store.get_file(job_id, name)
    if stored is None:
        raise NotFound(f"job {job_id} has no file {name!r}")
    # the file held open or read whole: the sweep may delete it now, the answer has its bytes
    found = await app.files.read(job_id, name)
    if found is None:
        raise NotFound(f"the file {name!r} is gone")
    if isinstance(found, bytes):
        # a job's files are written while it runs: once it has ended, its end is their last change
        modified_at = job.completed_at / 1000 if job.is_terminal and job.completed_at is not None else None
        return file_response(request, HeldBytes(found), stored.content_type, await bytes_etag(found), modified_at, name)
    etag = stat_etag(found.size, found.modified_at)
    return file_response(request, found, stored.content_type, etag, found.modified_at, name)


ROUTES = [
    Route("/v1/jobs", submit_job, methods=["POST"]),
    Route("/v1/jobs", list_jobs, methods=["GET"]),
    Route("/v1/jobs/batch", submit_batch, methods=["POST"]),
    Route("/v1/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/v1/jobs/{job_id}", cancel_job, methods=["DELETE"]),
    Route("/v1/jobs/{job_id}/result", get_result, methods=["GET"]),
    Route("/v1/jobs/{job_id}/retry", retry_job, methods=["POST"]),
    Route("/v1/stats", stats, methods=["GET"]),
    Route("/v1/scrape", scrape_sync, methods=["POST"]),
    Route("/v1/scrape/async", scrape_async, methods=["POST"]),
    Route("/v1/files/{job_id}/{name}", get_file, methods=["GET"]),
]
