"""The native API as an OpenAPI 3.1 document, built once from small schema pieces.

tests/test_schema_fuzz.py sends generated requests to a live server and holds its answers to this
document: every status it can give is listed, and every body matches its schema.
"""

from __future__ import annotations

import functools
from typing import Any

from litejobs import __version__
from litejobs.kinds.fetch import BLOCKABLE, METHODS, OUTPUTS, WAIT_UNTIL

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_OBJ = {"type": "object"}
_INT = {"type": "integer"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
#: the server takes any http(s) URL with a host; this pattern is the plain ASCII part of that
_HTTP_URL = {
    "type": "string",
    "format": "uri",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~-]+(:[1-9][0-9]{0,3})?([/?#][!-~]*)?$",
    "maxLength": 8192,
}
STATUSES = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"]
#: every route but /healthz takes a key when keys are configured, and counts against [auth] rate_per_s
_AUTHED = (401, 429)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), "error") for s in sorted({*statuses, *_AUTHED})}


def _object(properties: dict[str, Any], *required: str, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:  # the server refuses fields it does not know, so that a typo never goes unnoticed
        schema["additionalProperties"] = False
    return schema


_FETCH_INPUT = _object(
    {
        "url": _HTTP_URL,
        "method": {"enum": [*METHODS, *(m.lower() for m in METHODS)], "default": "GET"},
        "headers": {
            "type": "object",
            "propertyNames": {"pattern": "^[^\\r\\n\\x00]*$"},
            "additionalProperties": {"type": "string", "pattern": "^[^\\r\\n\\x00]*$"},
        },
        "body": {"type": ["string", "object", "array"], "description": "an object or array is sent as JSON"},
        "render_js": {"type": "boolean", "default": False},
        "wait_until": {"enum": list(WAIT_UNTIL)},
        "wait_for": {"type": "string", "maxLength": 1000, "description": "a CSS selector"},
        "wait_ms": {"type": "integer", "minimum": 0, "maximum": 60_000},
        "block": {"type": "array", "items": {"enum": list(BLOCKABLE)}},
        "cookies": {
            "type": ["array", "object"],
            "items": _object({"name": _STR, "value": _STR}, "name", "value"),
            "additionalProperties": _STR,
        },
        "user_agent": {"type": "string", "maxLength": 1000},
        "viewport": _object(
            {
                "width": {"type": "integer", "minimum": 100, "maximum": 10_000},
                "height": {"type": "integer", "minimum": 100, "maximum": 10_000},
            },
            "width",
            "height",
            closed=True,
        ),
        "output": {"type": "array", "items": {"enum": list(OUTPUTS)}, "maxItems": 1000},
        "screenshot_full_page": {"type": "boolean"},
        "extract": {
            **_object(
                {
                    "prompt": {"type": "string", "minLength": 1, "pattern": "\\S"},
                    "base_selector": {"type": "string", "maxLength": 2000, "description": "a CSS selector"},
                    "fields": {"type": "object", "description": "name: CSS selector, or {selector, attr?, all?}"},
                },
                closed=True,
            ),
            "anyOf": [{"required": ["fields"]}, {"required": ["prompt"]}],
        },
    },
    "url",
    closed=True,
)
# a rendered page is loaded with GET
_FETCH_INPUT["if"] = {"properties": {"render_js": {"const": True}}, "required": ["render_js"]}
_FETCH_INPUT["then"] = {"properties": {"method": {"enum": ["GET", "get"]}}}

_SUBMISSION = _object(
    {
        "kind": {"type": "string", "default": "fetch", "description": "a built-in kind or a plugin's"},
        "input": {"type": "object", "description": "the kind's input; for fetch and render, FetchInput"},
        "meta": {"type": "object", "description": "echoed back; at most 16 KiB of JSON"},
        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
        "timeout_s": {"type": "number", "minimum": 1, "description": "at most [limits] max_timeout_s"},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
        "webhook": _object({"url": _HTTP_URL, "events": {"type": "array", "items": _STR}}, "url", closed=True),
    },
    "input",
    closed=True,
)
# no kind means fetch; a `properties`-only `if` also holds when kind is absent
_SUBMISSION["if"] = {"properties": {"kind": {"enum": ["fetch", "render"]}}}
_SUBMISSION["then"] = {"properties": {"input": _ref("FetchInput")}}

_SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {"code": _STR, "message": _STR, "details": {"type": "array", "items": _OBJ}},
                "code",
                "message",
                "details",
            ),
            "request_id": _STR,
        },
        "error",
        "request_id",
    ),
    "FetchInput": _FETCH_INPUT,
    "Submission": _SUBMISSION,
    "Job": _object(
        {
            "job_id": _STR,
            "kind": _STR,
            "status": {"enum": STATUSES},
            "input": _OBJ,
            "meta": _OBJ,
            "priority": _INT,
            "attempts": _INT,
            "max_attempts": _INT,
            "timeout_s": {"type": "number"},
            "progress": {"type": ["object", "null"]},
            "error": {"type": ["object", "null"], "properties": {"code": _STR, "message": _STR}},
            "result_available": {"type": "boolean"},
            "created_at": _TIME,
            "started_at": _TIME,
            "updated_at": _TIME,
            "completed_at": _TIME,
            "run_at": _TIME,
            "expires_at": _TIME,
            "links": _object({"self": _STR, "result": _STR, "events": _STR}, "self", "result", "events"),
            "attempts_detail": {
                "type": "array",
                "description": "GET /v1/jobs/{job_id} only: every attempt of every run, oldest first",
                "items": _object(
                    {
                        "run": {**_INT, "description": "1, then one more per retry; attempts count from 1 in each"},
                        "attempt": _INT,
                        "started_at": _TIME,
                        "ended_at": _TIME,
                        "outcome": _NSTR,
                        "error": {},
                    },
                    "run",
                    "attempt",
                    "started_at",
                ),
            },
        },
        "job_id",
        "kind",
        "status",
        "input",
        "attempts",
        "max_attempts",
        "created_at",
        "links",
    ),
    "JobList": _object({"jobs": {"type": "array", "items": _ref("Job")}, "next_cursor": _NSTR}, "jobs", "next_cursor"),
    "Batch": _object(
        {"jobs": {"type": "array", "items": _ref("Submission"), "minItems": 1, "maxItems": 1000}}, "jobs", closed=True
    ),
    "Result": _object(
        {
            "job_id": _STR,
            "kind": _STR,
            "status": _STR,
            "outputs": _OBJ,
            "stats": _OBJ,
            "pages": {"type": "array", "items": _OBJ, "description": "multi-page jobs (a crawl) only"},
            "total_pages": _INT,
            "next_offset": {"type": ["integer", "null"]},
        },
        "job_id",
        "kind",
        "status",
        "outputs",
        "stats",
    ),
    "ScrapeResult": _object({"status": _STR, "outputs": _OBJ, "stats": _OBJ}, "status", "outputs", "stats"),
    "Deliveries": _object(
        {"job_id": _STR, "webhook": {"type": ["object", "null"]}, "deliveries": {"type": "array", "items": _OBJ}},
        "job_id",
        "deliveries",
    ),
}

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": _STR}
_EVENTS = {
    "description": "Server-Sent Events: `status` and `progress` events whose data is a Job",
    "content": {"text/event-stream": {"schema": _STR}},
}
_LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]*$"},
}


def _paths() -> dict[str, Any]:
    submission = {"required": True, "content": {"application/json": {"schema": _ref("Submission")}}}
    fetch_input = {"required": True, "content": {"application/json": {"schema": _ref("FetchInput")}}}
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
    }
    job = _json(_ref("Job"), "the job")
    accepted = {"202": job, "200": _json(_ref("Job"), "an idempotent replay: the job the same key made")}
    submit_errors = _errors(400, 409, 413, 415, 422, 503, 507)
    return {
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job",
                "parameters": [idem],
                "requestBody": submission,
                "responses": {**accepted, **submit_errors},
            },
            "get": {
                "summary": "List the caller's jobs, newest first",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": STATUSES}},
                    {"name": "kind", "in": "query", "schema": _STR},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^c[0-9]{1,18}$"},
                        "description": "next_cursor of the page before",
                    },
                ],
                "responses": {"200": _json(_ref("JobList"), "a page of jobs"), **_errors(422)},
            },
        },
        "/v1/jobs/batch": {
            "post": {
                "summary": "Submit up to 1000 jobs, all or none",
                "parameters": [idem],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Batch")}}},
                "responses": {
                    "202": _json(_object({"jobs": {"type": "array", "items": _ref("Job")}}, "jobs"), "the jobs"),
                    "200": _json(
                        _object({"jobs": {"type": "array", "items": _ref("Job")}}, "jobs"),
                        "an idempotent replay: the jobs the same key made",
                    ),
                    **submit_errors,
                },
            }
        },
        "/v1/jobs/{job_id}": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "A job; ?wait=N holds until it is terminal",
                "parameters": [
                    {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 60}}
                ],
                "responses": {"200": job, **_errors(403, 404, 422)},
            },
            "delete": {"summary": "Cancel a job", "responses": {"200": job, **_errors(403, 404, 409, 507)}},
        },
        "/v1/jobs/{job_id}/result": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The result of a completed or partial job",
                "parameters": [
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ],
                "responses": {"200": _json(_ref("Result"), "the result"), **_errors(403, 404, 409, 422)},
            },
        },
        "/v1/jobs/{job_id}/retry": {
            "parameters": [_JOB_ID],
            "post": {
                "summary": "Run a failed or cancelled job again",
                "responses": {"202": job, **_errors(403, 404, 409, 503, 507)},
            },
        },
        "/v1/jobs/{job_id}/events": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The job's changes as Server-Sent Events; the stream ends after a terminal status",
                "parameters": [_LAST_EVENT_ID],
                "responses": {
                    "200": _EVENTS,
                    "204": {"description": "the job ended at or before Last-Event-ID: nothing more to send"},
                    **_errors(403, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/webhook": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The job's webhook deliveries, the latest 100",
                "responses": {"200": _json(_ref("Deliveries"), "deliveries"), **_errors(403, 404)},
            },
            "post": {
                "summary": "Deliver the job as it is now once more",
                "responses": {"202": _json(_OBJ, "the delivery"), **_errors(403, 404, 422, 507)},
            },
        },
        "/v1/events": {
            "get": {
                "summary": "Every change of the caller's jobs as Server-Sent Events (a stream that does not end)",
                "parameters": [_LAST_EVENT_ID],
                "responses": {"200": _EVENTS, **_errors()},
            }
        },
        "/v1/stats": {
            "get": {"summary": "Queue and worker figures", "responses": {"200": _json(_OBJ, "stats"), **_errors()}}
        },
        "/v1/scrape": {
            "post": {
                "summary": "Fetch one page now (at most limits.sync_timeout_s)",
                "requestBody": fetch_input,
                "responses": {
                    "200": _json(_ref("ScrapeResult"), "the result"),
                    **_errors(400, 413, 415, 422, 502, 503, 504),
                },
            }
        },
        "/v1/scrape/async": {
            "post": {
                "summary": "Submit a fetch job with the body of /v1/scrape",
                "parameters": [idem],
                "requestBody": fetch_input,
                "responses": {**accepted, **submit_errors},
            }
        },
        "/v1/files/{job_id}/{name}": {
            "parameters": [_JOB_ID, {"name": "name", "in": "path", "required": True, "schema": _STR}],
            "get": {
                "summary": "A stored artefact",
                "responses": {"200": {"description": "the file", "content": {"*/*": {}}}, **_errors(403, 404)},
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": _STR}}},
                    **_errors(),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": _json(_OBJ, "alive")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (needs no key)",
                "security": [],
                "responses": {"200": _json(_OBJ, "ready"), "503": _json(_OBJ, "not ready")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document (needs no key)",
                "security": [],
                "responses": {"200": _json(_OBJ, "OpenAPI 3.1")},
            }
        },
    }


@functools.cache
def openapi_document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "litejobs", "version": __version__, "description": "Self-hosted scraping jobs."},
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
        # no key is needed when the server has none configured
        "security": [{"bearer": []}, {"apiKey": []}, {"apiKeyQuery": []}, {}],
    }
