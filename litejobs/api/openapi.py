"""The native API as an OpenAPI 3.1 document, built once from small schema pieces."""

from __future__ import annotations

import functools
from typing import Any

from litejobs import __version__

_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_OBJ = {"type": "object"}
_TIME = {"type": ["string", "null"], "format": "date-time"}
STATUSES = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ref("Error"), "error") for s in statuses}


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "request_id"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "properties": {"code": _STR, "message": _STR, "details": {"type": "array", "items": _OBJ}},
            },
            "request_id": _STR,
        },
    },
    "FetchInput": {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "method": _STR,
            "headers": {"type": "object", "additionalProperties": _STR},
            "body": {},
            "render_js": {"type": "boolean"},
            "wait_until": {"enum": ["load", "domcontentloaded", "networkidle0", "networkidle2"]},
            "wait_for": _STR,
            "wait_ms": {"type": "integer"},
            "output": {"type": "array", "items": _STR},
            "screenshot_full_page": {"type": "boolean"},
            "extract": _OBJ,
        },
    },
    "Submission": {
        "type": "object",
        "required": ["input"],
        "properties": {
            "kind": _STR,
            "input": _OBJ,
            "meta": _OBJ,
            "priority": {"type": "integer", "minimum": -100, "maximum": 100},
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
            "timeout_s": {"type": "number", "minimum": 1},
            "delay_s": {"type": "number", "minimum": 0},
            "webhook": {"type": "object", "properties": {"url": _STR, "events": {"type": "array", "items": _STR}}},
        },
    },
    "Job": {
        "type": "object",
        "required": ["job_id", "kind", "status", "input", "attempts", "max_attempts", "created_at", "links"],
        "properties": {
            "job_id": _STR,
            "kind": _STR,
            "status": {"enum": STATUSES},
            "input": _OBJ,
            "meta": _OBJ,
            "priority": {"type": "integer"},
            "attempts": {"type": "integer"},
            "max_attempts": {"type": "integer"},
            "timeout_s": {"type": "number"},
            "progress": {"type": ["object", "null"]},
            "error": {"type": ["object", "null"]},
            "result_available": {"type": "boolean"},
            "created_at": _TIME,
            "started_at": _TIME,
            "updated_at": _TIME,
            "completed_at": _TIME,
            "run_at": _TIME,
            "expires_at": _TIME,
            "links": _OBJ,
            "attempts_detail": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "attempt": {"type": "integer"},
                        "started_at": _TIME,
                        "ended_at": _TIME,
                        "outcome": _NSTR,
                        "error": {"type": ["object", "null"]},
                    },
                },
            },
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "next_cursor"],
        "properties": {"jobs": {"type": "array", "items": _ref("Job")}, "next_cursor": _NSTR},
    },
    "Result": {
        "type": "object",
        "required": ["job_id", "kind", "status", "outputs", "stats"],
        "properties": {"job_id": _STR, "kind": _STR, "status": _STR, "outputs": _OBJ, "stats": _OBJ},
    },
}

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": _STR}


def _paths() -> dict[str, Any]:
    submission = {"required": True, "content": {"application/json": {"schema": _ref("Submission")}}}
    fetch_input = {"required": True, "content": {"application/json": {"schema": _ref("FetchInput")}}}
    idem = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": _STR}
    job = _json(_ref("Job"), "the job")
    return {
        "/v1/jobs": {
            "post": {
                "summary": "Submit a job",
                "parameters": [idem],
                "requestBody": submission,
                "responses": {"202": job, "200": job, **_errors(400, 401, 409, 413, 415, 422, 429, 503, 507)},
            },
            "get": {
                "summary": "List the caller's jobs, newest first",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"enum": STATUSES}},
                    {"name": "kind", "in": "query", "schema": _STR},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "cursor", "in": "query", "schema": _STR},
                ],
                "responses": {"200": _json(_ref("JobList"), "a page of jobs"), **_errors(401, 422)},
            },
        },
        "/v1/jobs/batch": {
            "post": {
                "summary": "Submit up to 1000 jobs, all or none",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "object", "properties": {"jobs": {"type": "array"}}}}
                    },
                },
                "responses": {"202": _json(_OBJ, "the jobs"), **_errors(400, 401, 413, 415, 422, 429, 503, 507)},
            }
        },
        "/v1/jobs/{job_id}": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "A job; ?wait=N holds until it is terminal",
                "parameters": [{"name": "wait", "in": "query", "schema": {"type": "number", "maximum": 60}}],
                "responses": {"200": job, **_errors(401, 403, 404, 422)},
            },
            "delete": {"summary": "Cancel a job", "responses": {"200": job, **_errors(401, 403, 404, 409)}},
        },
        "/v1/jobs/{job_id}/result": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The result of a completed or partial job",
                "responses": {"200": _json(_ref("Result"), "the result"), **_errors(401, 403, 404, 409)},
            },
        },
        "/v1/jobs/{job_id}/retry": {
            "parameters": [_JOB_ID],
            "post": {
                "summary": "Run a failed or cancelled job again",
                "responses": {"202": job, **_errors(401, 403, 404, 409, 503)},
            },
        },
        "/v1/stats": {"get": {"summary": "Queue and worker figures", "responses": {"200": _json(_OBJ, "stats")}}},
        "/v1/scrape": {
            "post": {
                "summary": "Fetch one page now (at most limits.sync_timeout_s)",
                "requestBody": fetch_input,
                "responses": {"200": _json(_OBJ, "the result"), **_errors(400, 401, 413, 415, 422, 502, 504)},
            }
        },
        "/v1/scrape/async": {
            "post": {
                "summary": "Submit a fetch job with the body of /v1/scrape",
                "parameters": [idem],
                "requestBody": fetch_input,
                "responses": {"202": job, "200": job, **_errors(400, 401, 409, 413, 415, 422, 429, 503, 507)},
            }
        },
        "/v1/files/{job_id}/{name}": {
            "parameters": [_JOB_ID, {"name": "name", "in": "path", "required": True, "schema": _STR}],
            "get": {
                "summary": "A stored artefact",
                "responses": {"200": {"description": "the file"}, **_errors(401, 403, 404)},
            },
        },
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json(_OBJ, "alive")}}},
        "/readyz": {
            "get": {"summary": "Readiness", "responses": {"200": _json(_OBJ, "ready"), "503": _json(_OBJ, "not ready")}}
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
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}, {}],
    }
