"""The native API as an OpenAPI 3.1 document, built once from small schema pieces.

tests/test_schema_fuzz.py sends generated requests to a live server and holds its answers to this
document: every status it can give is listed, and every body matches its schema.
"""

from __future__ import annotations

import functools
from typing import Any

from litejobs import __version__
from litejobs.api.openapi_schemas import (
    OBJ,
    SCHEMAS,
    STATUSES,
    STR,
    error_responses,
    json_body,
    object_schema,
    query_number,
    schema_ref,
)

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": STR}
_EVENTS = {
    "description": "Server-Sent Events: `status` and `progress` events whose data is a Job",
    "content": {"text/event-stream": {"schema": STR}},
}
#: any value: one that is not up to 18 ASCII digits is ignored, and the stream starts over
_RESUME = {"type": "string", "description": "the id of the last event seen (up to 18 digits); other values: ignored"}
_LAST_EVENT_ID = [
    {"name": "Last-Event-ID", "in": "header", "required": False, "schema": _RESUME},
    # for clients that cannot set a header (a polyfilled EventSource); the header wins
    {"name": "last_event_id", "in": "query", "required": False, "schema": _RESUME},
]
_EMPTY_IS_ANY = "empty: any"
_OFFSET = query_number(0, 10**9, "the first page to give, from 0; a fraction is dropped; empty: 0")
#: so a range is checked only there: a one-page job's result takes any value and ignores it
_PAGES_ONLY = "read for a job with pages (a crawl) only; other jobs' results ignore it"
#: a page's size on GET /v1/jobs (default 50) and on a crawl's result (default 100)
_LIMIT = query_number(1, 1000, "at most 1000; a fraction is dropped; empty: the default")


def _paths() -> dict[str, Any]:
    submission = {"required": True, "content": {"application/json": {"schema": schema_ref("Submission")}}}
    fetch_input = {"required": True, "content": {"application/json": {"schema": schema_ref("FetchInput")}}}
    idem = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        # printable Latin-1, as the server reads a header: it refuses control characters
        "schema": {"type": "string", "pattern": "^[ -~\u00a1-\u00ac\u00ae-\u00ff]{1,255}$"},
    }
    job = json_body(schema_ref("Job"), "the job")
    accepted = {"202": job, "200": json_body(schema_ref("Job"), "an idempotent replay: the job the same key made")}
    submit_errors = error_responses(400, 409, 413, 415, 422, 503, 507)
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
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"enum": [*STATUSES, ""]},
                        "description": _EMPTY_IS_ANY,
                    },
                    {"name": "kind", "in": "query", "schema": STR, "description": _EMPTY_IS_ANY},
                    {"name": "limit", "in": "query", "schema": _LIMIT},
                    {
                        "name": "cursor",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^(c[0-9]{1,18})?$"},
                        "description": "next_cursor of the page before; empty: the first page",
                    },
                ],
                "responses": {"200": json_body(schema_ref("JobList"), "a page of jobs"), **error_responses(422)},
            },
        },
        "/v1/jobs/batch": {
            "post": {
                "summary": "Submit up to 1000 jobs, all or none",
                "parameters": [idem],
                "requestBody": {"required": True, "content": {"application/json": {"schema": schema_ref("Batch")}}},
                "responses": {
                    "202": json_body(
                        object_schema({"jobs": {"type": "array", "items": schema_ref("Job")}}, "jobs"), "the jobs"
                    ),
                    "200": json_body(
                        object_schema({"jobs": {"type": "array", "items": schema_ref("Job")}}, "jobs"),
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
                    {"name": "wait", "in": "query", "schema": query_number(0, 60, "seconds; empty or 0: no wait")}
                ],
                "responses": {"200": job, **error_responses(403, 404, 422)},
            },
            "delete": {"summary": "Cancel a job", "responses": {"200": job, **error_responses(403, 404, 409, 507)}},
        },
        "/v1/jobs/{job_id}/result": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The result of a completed or partial job",
                "parameters": [
                    {"name": "offset", "in": "query", "schema": _OFFSET, "description": _PAGES_ONLY},
                    {"name": "limit", "in": "query", "schema": _LIMIT, "description": _PAGES_ONLY},
                ],
                "responses": {
                    "200": json_body(schema_ref("Result"), "the result"),
                    **error_responses(403, 404, 409, 422),
                },
            },
        },
        "/v1/jobs/{job_id}/retry": {
            "parameters": [_JOB_ID],
            "post": {
                "summary": "Run a failed or cancelled job again",
                "responses": {"202": job, **error_responses(403, 404, 409, 503, 507)},
            },
        },
        "/v1/jobs/{job_id}/events": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The job's changes as Server-Sent Events; the stream ends after a terminal status",
                "parameters": _LAST_EVENT_ID,
                "responses": {
                    "200": _EVENTS,
                    "204": {"description": "the job ended at or before Last-Event-ID: nothing more to send"},
                    **error_responses(403, 404),
                },
            },
        },
        "/v1/jobs/{job_id}/webhook": {
            "parameters": [_JOB_ID],
            "get": {
                "summary": "The job's webhook deliveries, the latest 100",
                "responses": {"200": json_body(schema_ref("Deliveries"), "deliveries"), **error_responses(403, 404)},
            },
            "post": {
                "summary": "Deliver the job as it is now once more",
                "responses": {"202": json_body(OBJ, "the delivery"), **error_responses(403, 404, 422, 507)},
            },
        },
        "/v1/events": {
            "get": {
                "summary": "Every change of the caller's jobs as Server-Sent Events (a stream that does not end)",
                "parameters": _LAST_EVENT_ID,
                "responses": {"200": _EVENTS, **error_responses()},
            }
        },
        "/v1/stats": {
            "get": {
                "summary": "Queue and worker figures",
                "responses": {"200": json_body(OBJ, "stats"), **error_responses()},
            }
        },
        "/v1/scrape": {
            "post": {
                "summary": "Fetch one page now (at most limits.sync_timeout_s)",
                "requestBody": fetch_input,
                "responses": {
                    "200": json_body(schema_ref("ScrapeResult"), "the result"),
                    **error_responses(400, 413, 415, 422, 502, 503, 504),
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
            "parameters": [_JOB_ID, {"name": "name", "in": "path", "required": True, "schema": STR}],
            "get": {
                "summary": "A stored artefact",
                "responses": {
                    "200": {"description": "the file", "content": {"*/*": {}}},
                    "206": {"description": "the byte ranges asked for with Range", "content": {"*/*": {}}},
                    "416": {"description": "a Range past the end of the file"},
                    **error_responses(403, 404),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text format",
                "responses": {
                    "200": {"description": "metrics", "content": {"text/plain": {"schema": STR}}},
                    **error_responses(),
                },
            }
        },
        "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": json_body(OBJ, "alive")}}},
        "/readyz": {
            "get": {
                "summary": "Readiness (a key when keys are configured; /healthz needs none)",
                "responses": {
                    **error_responses(),
                    "200": json_body(OBJ, "ready"),
                    "503": json_body(OBJ, "not ready"),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document (a key when keys are configured)",
                "responses": {**error_responses(), "200": json_body(OBJ, "OpenAPI 3.1")},
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
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
            },
        },
        # no key is needed when the server has none configured
        "security": [{"bearer": []}, {"apiKey": []}, {"apiKeyQuery": []}, {}],
    }
