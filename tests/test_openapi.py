"""/openapi.json's parameters against the live server: a value is in a parameter's schema exactly when
the server takes it (an empty `cursor=` or `limit=` is taken as the default, `Last-Event-ID: abc` is
ignored), so neither a client checking its requests nor a fuzzer finds the two apart."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

import jsonschema_rs

from tests.support import ServerThread, TargetSite

#: (path in the document, query parameter, value, the server's answer)
QUERY_CASES = [
    ("/v1/jobs", "cursor", "", 200),
    ("/v1/jobs", "cursor", "c5", 200),
    ("/v1/jobs", "cursor", "c", 422),
    ("/v1/jobs", "cursor", "x5", 422),
    ("/v1/jobs", "status", "", 200),
    ("/v1/jobs", "status", "completed", 200),
    ("/v1/jobs", "status", "done", 422),
    ("/v1/jobs", "kind", "", 200),
    ("/v1/jobs", "limit", "", 200),
    ("/v1/jobs", "limit", "2.5", 200),
    ("/v1/jobs", "limit", "1000", 200),
    ("/v1/jobs", "limit", "0", 422),
    ("/v1/jobs", "limit", "1001", 422),
    ("/v1/jobs", "limit", "many", 422),
    ("/v1/jobs/{job_id}", "wait", "", 200),
    ("/v1/jobs/{job_id}", "wait", "0.5", 200),
    ("/v1/jobs/{job_id}", "wait", "-1", 422),
    ("/v1/jobs/{job_id}", "wait", "61", 422),
    ("/v1/jobs/{job_id}", "wait", "soon", 422),
    ("/v1/jobs/{job_id}/result", "offset", "", 200),
    ("/v1/jobs/{job_id}/result", "offset", "1.5", 200),
    ("/v1/jobs/{job_id}/result", "offset", "-1", 422),
    ("/v1/jobs/{job_id}/result", "offset", "2000000000", 422),
    ("/v1/jobs/{job_id}/result", "limit", "", 200),
    ("/v1/jobs/{job_id}/result", "limit", "0", 422),
    ("/v1/jobs/{job_id}/events", "last_event_id", "abc", 200),
    ("/v1/jobs/{job_id}/events", "last_event_id", "999999999999999999", 204),
]
#: (path, method, header, value, the server's answer)
HEADER_CASES = [
    ("/v1/jobs/{job_id}/events", "get", "Last-Event-ID", "abc", 200),
    ("/v1/jobs/{job_id}/events", "get", "Last-Event-ID", "999999999999999999", 204),
    ("/v1/jobs", "post", "Idempotency-Key", "order 1", 202),
    ("/v1/jobs", "post", "Idempotency-Key", "order\t1", 422),
]
JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def parameter(spec: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    operation = spec["paths"][path][method]
    for found in [*spec["paths"][path].get("parameters", []), *operation.get("parameters", [])]:
        if found["name"] == name:
            return found  # type: ignore[no-any-return]
    raise AssertionError(f"{method.upper()} {path} documents no parameter {name!r}")


def in_schema(spec: dict[str, Any], path: str, method: str, name: str, raw: str) -> bool:
    """As an OpenAPI tool checks a value sent as text: as the text, or as the number it spells."""
    schema = jsonschema_rs.validator_for(parameter(spec, path, method, name)["schema"])
    return bool(schema.is_valid(raw) or (JSON_NUMBER.fullmatch(raw) and schema.is_valid(float(raw))))


def finished_crawl(server: ServerThread, site: TargetSite) -> str:
    """A job whose result has pages: the only kind of result that reads offset and limit."""
    site.add_html("/", '<a href="/a">a</a>')
    site.add_html("/a", "<p>a</p>")
    job = server.http.submit({"url": site.url("/"), "max_pages": 2}, kind="crawl")
    assert server.http.wait(job["job_id"])["status"] == "completed"
    return str(job["job_id"])


def test_a_query_value_is_in_the_schema_exactly_when_the_server_takes_it(
    server: ServerThread, site: TargetSite
) -> None:
    spec = server.http.get("/openapi.json").json
    job_id = finished_crawl(server, site)
    seen = []
    for path, name, value, _ in QUERY_CASES:
        answer = server.http.get(f"{path.format(job_id=job_id)}?{urlencode({name: value})}").status
        seen.append((path, name, value, answer, in_schema(spec, path, "get", name, value)))
    assert seen == [(path, name, value, answer, answer < 400) for path, name, value, answer in QUERY_CASES]


def test_a_header_value_is_in_the_schema_exactly_when_the_server_takes_it(
    server: ServerThread, site: TargetSite
) -> None:
    spec = server.http.get("/openapi.json").json
    job_id = finished_crawl(server, site)
    submit = {"input": {"url": site.url("/later")}, "delay_s": 3600}
    seen = []
    for path, method, name, value, _ in HEADER_CASES:
        body = submit if method == "post" else None
        answer = server.http.request(method.upper(), path.format(job_id=job_id), body, headers={name: value}).status
        seen.append((path, name, value, answer, in_schema(spec, path, method, name, value)))
    assert seen == [(path, name, value, answer, answer < 400) for path, _, name, value, answer in HEADER_CASES]


#: (a job's header name, value, rendered?, the server's answer)
JOB_HEADER_CASES = [
    ("X-Trace", "1", False, 202),
    ("Host", "example.test", False, 202),
    ("X-Tab", "a\tb", False, 202),
    ("Transfer-Encoding", "chunked", False, 422),
    ("content-length", "5", False, 422),
    ("CONNECTION", "close", False, 422),
    ("Te", "trailers", False, 422),
    ("Bad Name", "1", False, 422),
    ("X-Control", "a\x01b", False, 422),
    ("X-Trace", "1", True, 202),
    ("Host", "example.test", True, 422),
    ("Proxy-Token", "1", True, 422),
]


def test_a_job_header_is_in_the_schema_exactly_when_the_server_takes_it(server: ServerThread, site: TargetSite) -> None:
    spec = server.http.get("/openapi.json").json
    fetch_input = jsonschema_rs.validator_for(spec["components"]["schemas"]["FetchInput"])
    seen = []
    for name, value, rendered, _ in JOB_HEADER_CASES:
        job_input = {"url": site.url("/later"), "headers": {name: value}, "render_js": rendered}
        answer = server.http.post("/v1/jobs", {"input": job_input, "delay_s": 3600}).status
        seen.append((name, value, rendered, answer, fetch_input.is_valid(job_input)))
    assert seen == [(name, value, rendered, answer, answer < 400) for name, value, rendered, answer in JOB_HEADER_CASES]


ACTIONS_TAKEN = [
    {"type": "click", "selector": "#a"},
    {"type": "type", "selector": "input[name=q]", "text": "hi"},
    {"type": "press", "key": "Enter"},
    {"type": "press", "key": "Tab", "selector": "#a"},
    {"type": "wait", "ms": 1.5},
    {"type": "wait_for", "selector": "#a", "timeout_ms": 500},
    {"type": "wait_for", "selector": "#a", "timeout_ms": 0},
    {"type": "wait_for", "selector": "#a", "timeout_ms": 3_600_000},
    {"type": "scroll", "to": "bottom", "times": 3, "ms": 100},
    {"type": "scroll", "by": -200},
    {"type": "evaluate", "script": "() => document.title"},
    {"type": "screenshot", "full_page": True},
    {"type": "screenshot"},
]
ACTIONS_REFUSED = [
    {"type": "press", "text": "Enter"},  # API.md's spelling: the key is `key`
    {"type": "wait_for", "selector": "#a", "ms": 500},  # API.md's spelling: the limit is `timeout_ms`
    {"type": "wait_for", "selector": "#a", "timeout_ms": -5},
    {"type": "wait_for", "selector": "#a", "timeout_ms": 3_600_001},
    {"type": "scroll"},
    {"type": "scroll", "to": "top"},
    {"type": "scroll", "by": 10, "times": 0},
    {"type": "scroll", "by": 10, "times": 101},
    {"type": "scroll", "by": 10, "ms": 60_001},
    {"type": "wait", "ms": 60_001},
    {"type": "wait", "ms": -1},
    {"type": "wait", "ms": True},
    {"type": "wait"},
    {"type": "click"},
    {"type": "click", "selector": "#a", "button": "right"},
    {"type": "hover", "selector": "#a"},
    {"type": "screenshot", "full_page": "yes"},
    {"selector": "#a"},
]


def interact_cases(url: str) -> list[tuple[str, dict[str, Any]]]:
    """(kind, input): every action alone, and the input around them."""
    cases = [("interact", {"url": url, "actions": [action]}) for action in ACTIONS_TAKEN + ACTIONS_REFUSED]
    actions = [{"type": "wait", "ms": 1}]
    return [
        *cases,
        ("interact", {"url": url, "actions": ACTIONS_TAKEN, "wait_until": "networkidle0", "output": ["screenshot"]}),
        ("interact", {"url": url, "actions": actions * 100}),
        ("interact", {"url": url, "actions": actions * 101}),
        ("interact", {"url": url, "actions": []}),
        ("interact", {"url": url}),
        ("interact", {"url": url, "actions": actions, "render_js": True}),
        ("interact", {"url": url, "actions": actions, "method": "POST"}),
        ("interact", {"url": url, "actions": actions, "body": "x"}),
        ("interact", {"url": url, "actions": actions, "headers": {"Host": "example.test"}}),
        ("render", {"url": url, "method": "POST"}),
        ("render", {"url": url, "body": "x"}),
        ("render", {"url": url, "method": "get"}),
        ("fetch", {"url": url, "output": ["pdf"], "method": "POST"}),
        ("fetch", {"url": url, "output": ["pdf"], "body": "x"}),
        ("fetch", {"url": url, "method": "POST", "body": "x"}),
    ]


def test_an_interact_input_is_in_the_schema_exactly_when_the_server_takes_it(
    server: ServerThread, site: TargetSite
) -> None:
    spec = server.http.get("/openapi.json").json
    submission = jsonschema_rs.validator_for({"$ref": "#/components/schemas/Submission", **spec})
    seen = []
    for kind, job_input in interact_cases(site.url("/later")):
        body = {"kind": kind, "input": job_input, "delay_s": 3600}
        answer = server.http.post("/v1/jobs", body).status
        seen.append((kind, job_input, answer, submission.is_valid(body)))
    assert [(kind, job_input, answer) for kind, job_input, answer, valid in seen if (answer < 400) != valid] == []
    assert {answer for _, _, answer, _ in seen} == {202, 422}


def test_the_schema_names_every_action_and_exactly_its_fields(server: ServerThread) -> None:
    from litejobs.kinds.interact import ACTION_FIELDS

    actions = server.http.get("/openapi.json").json["components"]["schemas"]["InteractInput"]["properties"]["actions"]
    documented = {
        one["properties"]["type"]["const"]: (set(one.get("required", [])) - {"type"}, set(one["properties"]) - {"type"})
        for one in actions["items"]["oneOf"]
    }

    assert documented == {
        kind: (set(required), {*required, *optional}) for kind, (required, optional) in ACTION_FIELDS.items()
    }
