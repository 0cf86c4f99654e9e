"""The schema pieces of openapi.py's document: JSON Schema for the bodies the native API takes and
gives, and the helpers that build them. Apart from openapi.py, which lays out the paths."""

from __future__ import annotations

from typing import Any

from litejobs.fetcher import FRAMING_HEADERS
from litejobs.kinds.fetch import BLOCKABLE, OUTPUTS, WAIT_UNTIL
from litejobs.kinds.fetch_input import BROWSER_OUTPUTS, METHODS

STR = {"type": "string"}
NSTR = {"type": ["string", "null"]}
OBJ = {"type": "object"}
INT = {"type": "integer"}
TIME = {"type": ["string", "null"], "format": "date-time"}
#: the server takes any http(s) URL with a host; this pattern is the plain ASCII part of that
HTTP_URL = {
    "type": "string",
    "format": "uri",
    "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://([^@/?#\\s]*@)?([A-Za-z0-9._~-]+|\\[[0-9A-Fa-f:.]+\\])(:[0-9]{1,5})?([/?#][!-~]*)?$",
    "maxLength": 8192,
}
STATUSES = ["waiting", "delayed", "active", "completed", "partial", "failed", "cancelled"]
#: every route but /healthz takes a key when keys are configured, and counts against [auth] rate_per_s
AUTHED = (401, 429)
#: 503 store_unavailable (with Retry-After) while the database cannot be reached: every route given
#: error_responses reads or writes the store (/v1/scrape aside, whose 503 is shutting_down)
STORE_AWAY = 503


def any_case(name: str) -> str:
    """A pattern for a header name (letters, digits, `-`) in any case: header names are
    case-insensitive, and JSON Schema's patterns have no flag to say so."""
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in name)


def whole_of(*patterns: str) -> str:
    return f"^({'|'.join(patterns)})$"


#: a job's header name as fetch_input.check_headers takes it: an HTTP token, and none of the headers
#: the HTTP client owns, since they frame the request or govern the connection (refused for every kind)
HEADER_NAME = {
    "type": "string",
    "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
    "not": {"pattern": whole_of(*(any_case(name) for name in sorted(FRAMING_HEADERS)))},
}
#: nor, where the page is loaded in the browser, one Chromium will not send from a page
BROWSER_HEADER_NAME = {
    "not": {
        "pattern": whole_of(*(any_case(name) for name in ("cookie2", "host", "set-cookie")), any_case("proxy-") + ".*")
    }
}


def query_number(low: float, high: float, description: str) -> dict[str, Any]:
    """A query number as the server reads it (api/http.py `query_number`): any number in the range,
    where a whole one is wanted its fraction dropped, and an empty value meaning the default."""
    return {"anyOf": [{"type": "number", "minimum": low, "maximum": high}, {"const": ""}], "description": description}


def schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): json_body(schema_ref("Error"), "error") for s in sorted({*statuses, *AUTHED, STORE_AWAY})}


def object_schema(properties: dict[str, Any], *required: str, closed: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:  # the server refuses fields it does not know, so that a typo never goes unnoticed
        schema["additionalProperties"] = False
    return schema


FETCH_INPUT = object_schema(
    {
        "url": HTTP_URL,
        "method": {"enum": [*METHODS, *(m.lower() for m in METHODS)], "default": "GET"},
        "headers": {
            "type": "object",
            "propertyNames": HEADER_NAME,
            # a tab is the only control character a value may hold
            "additionalProperties": {"type": "string", "pattern": "^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$"},
            "description": f"never {', '.join(sorted(FRAMING_HEADERS))}: the HTTP client sets those. A page "
            "loaded in the browser (render, render_js, a screenshot or pdf) sends no Host, Cookie2, "
            "Set-Cookie or Proxy-*",
        },
        "body": {"type": ["string", "object", "array"], "description": "an object or array is sent as JSON"},
        "render_js": {"type": "boolean", "default": False},
        "wait_until": {"enum": list(WAIT_UNTIL)},
        "wait_for": {"type": "string", "maxLength": 1000, "description": "a CSS selector"},
        "wait_ms": {"type": "integer", "minimum": 0, "maximum": 60_000},
        "block": {"type": "array", "items": {"enum": list(BLOCKABLE)}},
        "cookies": {
            "type": ["array", "object"],
            "items": object_schema({"name": STR, "value": STR}, "name", "value"),
            "additionalProperties": STR,
        },
        "user_agent": {"type": "string", "maxLength": 1000},
        "viewport": object_schema(
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
            **object_schema(
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
_RENDERED = {"properties": {"render_js": {"const": True}}, "required": ["render_js"]}
#: a page loaded in the browser is loaded with GET and no body (fetch_input.check_browser_request)
_IN_BROWSER = {
    "properties": {"headers": {"propertyNames": BROWSER_HEADER_NAME}, "method": {"enum": ["GET", "get"]}},
    "not": {"required": ["body"]},
}
FETCH_INPUT["allOf"] = [
    {
        "if": {
            "anyOf": [
                _RENDERED,
                {"properties": {"output": {"contains": {"enum": sorted(BROWSER_OUTPUTS)}}}, "required": ["output"]},
            ]
        },
        "then": _IN_BROWSER,
    },
]

#: an action's selector, as kinds/interact.py checks it
SELECTOR = {
    "type": "string",
    "description": "a CSS selector, matched in the page's document (not in iframes or shadow DOM)",
}
#: a pause in ms, as long as a `wait` may be
PAUSE_MS = {"type": "number", "minimum": 0, "maximum": 60_000}


def action_schema(kind: str, properties: dict[str, Any], *required: str) -> dict[str, Any]:
    """One interact action: its `type` and only the fields of that type (kinds/interact.py ACTION_FIELDS)."""
    return object_schema({"type": {"const": kind}, **properties}, "type", *required, closed=True)


INTERACT_ACTIONS = [
    action_schema("click", {"selector": SELECTOR}, "selector"),
    action_schema("type", {"selector": SELECTOR, "text": STR}, "selector", "text"),
    action_schema(
        "press", {"key": {**STR, "description": "a key name: Enter, Tab, ArrowDown, a"}, "selector": SELECTOR}, "key"
    ),
    action_schema("wait", {"ms": PAUSE_MS}, "ms"),
    action_schema(
        "wait_for",
        {
            "selector": SELECTOR,
            "timeout_ms": {
                "type": "number",
                "minimum": 0,
                "maximum": 3_600_000,
                "description": "absent: 30000; 0: as long as the render lasts",
            },
        },
        "selector",
    ),
    {
        **action_schema(
            "scroll",
            {
                "to": {"const": "bottom"},
                "by": {"type": "number", "description": "pixels, down (negative: up)"},
                "times": {"type": "integer", "minimum": 1, "maximum": 100, "default": 1},
                "ms": {**PAUSE_MS, "description": "the pause after each scroll", "default": 0},
            },
        ),
        "anyOf": [{"required": ["to"]}, {"required": ["by"]}],
    },
    action_schema(
        "evaluate", {"script": {**STR, "description": "an expression, or a function that is called"}}, "script"
    ),
    action_schema("screenshot", {"full_page": {"type": "boolean", "default": False}}),
]
#: render's input and the actions; what a render refuses (render_js, a method but GET, a body) it refuses
INTERACT_INPUT = object_schema(
    {
        **{name: schema for name, schema in FETCH_INPUT["properties"].items() if name not in ("render_js", "body")},
        "method": {"enum": ["GET", "get"], "default": "GET"},
        "actions": {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"oneOf": INTERACT_ACTIONS},
            "description": "run in order once the page is loaded; docs/api.md, Interact actions",
        },
    },
    "url",
    "actions",
    closed=True,
)
INTERACT_INPUT["allOf"] = [_IN_BROWSER]

SUBMISSION = object_schema(
    {
        "kind": {"type": "string", "default": "fetch", "description": "a built-in kind or a plugin's"},
        "input": {
            "type": "object",
            "description": "the kind's input: FetchInput for fetch and render, InteractInput for interact",
        },
        "meta": {"type": "object", "description": "echoed back; at most 16 KiB of JSON"},
        "priority": {"type": "integer", "minimum": -100, "maximum": 100},
        "max_attempts": {"type": "integer", "minimum": 1, "maximum": 20},
        "timeout_s": {"type": "number", "minimum": 1, "description": "at most [limits] max_timeout_s"},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 30 * 86400},
        "webhook": object_schema({"url": HTTP_URL, "events": {"type": "array", "items": STR}}, "url", closed=True),
    },
    "input",
    closed=True,
)
SUBMISSION["allOf"] = [
    # no kind means fetch; a `properties`-only `if` also holds when kind is absent
    {
        "if": {"properties": {"kind": {"enum": ["fetch", "render"]}}},
        "then": {"properties": {"input": schema_ref("FetchInput")}},
    },
    # a render always renders: render_js is not one of its fields
    {
        "if": {"properties": {"kind": {"const": "render"}}, "required": ["kind"]},
        "then": {"properties": {"input": {"allOf": [{"not": {"required": ["render_js"]}}, _IN_BROWSER]}}},
    },
    {
        "if": {"properties": {"kind": {"const": "interact"}}, "required": ["kind"]},
        "then": {"properties": {"input": schema_ref("InteractInput")}},
    },
]

SCHEMAS: dict[str, Any] = {
    "Error": object_schema(
        {
            "error": object_schema(
                {"code": STR, "message": STR, "details": {"type": "array", "items": OBJ}},
                "code",
                "message",
                "details",
            ),
            "request_id": STR,
        },
        "error",
        "request_id",
    ),
    "FetchInput": FETCH_INPUT,
    "InteractInput": INTERACT_INPUT,
    "Submission": SUBMISSION,
    "Job": object_schema(
        {
            "job_id": STR,
            "kind": STR,
            "status": {"enum": STATUSES},
            "input": OBJ,
            "meta": OBJ,
            "priority": INT,
            "attempts": INT,
            "max_attempts": INT,
            "timeout_s": {"type": "number"},
            "progress": {"type": ["object", "null"]},
            "error": {"type": ["object", "null"], "properties": {"code": STR, "message": STR}},
            "result_available": {"type": "boolean"},
            "created_at": TIME,
            "started_at": TIME,
            "updated_at": TIME,
            "completed_at": TIME,
            "run_at": TIME,
            "expires_at": TIME,
            "links": object_schema({"self": STR, "result": STR, "events": STR}, "self", "result", "events"),
            "attempts_detail": {
                "type": "array",
                "description": "GET /v1/jobs/{job_id} only: every attempt of every run, oldest first",
                "items": object_schema(
                    {
                        "run": {**INT, "description": "1, then one more per retry; attempts count from 1 in each"},
                        "attempt": INT,
                        "started_at": TIME,
                        "ended_at": TIME,
                        "outcome": NSTR,
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
    "JobList": object_schema(
        {"jobs": {"type": "array", "items": schema_ref("Job")}, "next_cursor": NSTR}, "jobs", "next_cursor"
    ),
    "Batch": object_schema(
        {"jobs": {"type": "array", "items": schema_ref("Submission"), "minItems": 1, "maxItems": 1000}},
        "jobs",
        closed=True,
    ),
    "Result": object_schema(
        {
            "job_id": STR,
            "kind": STR,
            "status": STR,
            "outputs": OBJ,
            "stats": OBJ,
            "pages": {"type": "array", "items": OBJ, "description": "multi-page jobs (a crawl) only"},
            "total_pages": INT,
            "next_offset": {"type": ["integer", "null"]},
        },
        "job_id",
        "kind",
        "status",
        "outputs",
        "stats",
    ),
    "ScrapeResult": object_schema({"status": STR, "outputs": OBJ, "stats": OBJ}, "status", "outputs", "stats"),
    "Deliveries": object_schema(
        {"job_id": STR, "webhook": {"type": ["object", "null"]}, "deliveries": {"type": "array", "items": OBJ}},
        "job_id",
        "deliveries",
    ),
}
