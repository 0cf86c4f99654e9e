"""The `fetch` and `render` kinds: one URL, over HTTP or through the browser, into chosen outputs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from litejobs.ai import extract_with_prompt
from litejobs.charsets import mime_of
from litejobs.errors import BrowserUnavailable, UpstreamStatus
from litejobs.fetch_cookies import GivenCookie
from litejobs.fields import Fields
from litejobs.jobs import JobResult, JobState
from litejobs.jsontext import clean_text
from litejobs.kinds import Kind, KindContext
from litejobs.kinds.fetch_input import (
    BROWSER_OUTPUTS,
    check_browser_request,
    check_headers,
    css_selector_problem,
    read_cookies,
)

OUTPUTS = ("html", "markdown", "text", "links", "metadata", "headers", "screenshot", "pdf", "extract")
DEFAULT_OUTPUT = ("markdown",)
WAIT_UNTIL = ("load", "domcontentloaded", "networkidle0", "networkidle2")
BLOCKABLE = ("images", "fonts", "media", "stylesheets")
#: outputs made from the parsed tree
PARSED_OUTPUTS = frozenset({"markdown", "text", "links", "metadata", "extract"})
#: kept back from the job's timeout_s to build and return the result (a fifth of a shorter timeout)
FINISH_MARGIN_S = 1.0


@dataclass(frozen=True)
class FetchParams:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    render_js: bool = False
    wait_until: str = "load"
    wait_for: str | None = None
    wait_ms: int = 0
    block: frozenset[str] = frozenset()
    cookies: tuple[dict[str, Any], ...] = ()
    user_agent: str | None = None
    viewport: tuple[int, int] | None = None
    output: tuple[str, ...] = DEFAULT_OUTPUT
    screenshot_full_page: bool = False
    extract: Any = None
    actions: tuple[dict[str, Any], ...] = ()

    @property
    def needs_browser(self) -> bool:
        return self.render_js or bool(self.actions) or bool(BROWSER_OUTPUTS & set(self.output))


def read_fetch_fields(f: Fields, *, force_render: bool = False) -> dict[str, Any]:
    """The fields shared by fetch, render, interact (and a crawl's per-page options).

    What could only fail at run time (a header name that is no HTTP token, a cookie or a `wait_for`
    Chromium refuses) is refused here, so that a bad input is a 422 at submit, not a failed job."""
    headers = f.str_map("headers", {})
    body = _body(f, headers)
    output = tuple(f.str_list("output", list(DEFAULT_OUTPUT), choices=OUTPUTS) or DEFAULT_OUTPUT)
    extract_raw = f.any("extract")
    schema = None
    if extract_raw is not None:
        from litejobs.errors import ValidationFailed
        from litejobs.extract import parse_schema

        try:
            schema = parse_schema(extract_raw, field_prefix=f.name("extract"))
        except ValidationFailed as exc:
            f.problems.extend(exc.details)
        if "extract" not in output:
            output = (*output, "extract")
    viewport = f.dict("viewport", None)
    values = {
        "url": f.url("url"),
        "method": (f.str("method", "GET") or "GET").upper(),
        "headers": headers or {},
        "body": body,
        "render_js": True if force_render else f.bool("render_js", False),
        "wait_until": f.str("wait_until", "load", choices=WAIT_UNTIL),
        "wait_for": f.str("wait_for", None, max_len=1000),
        "wait_ms": f.int("wait_ms", 0, low=0, high=60_000),
        "block": frozenset(f.str_list("block", [], choices=BLOCKABLE) or ()),
        "cookies": tuple(read_cookies(f)),
        "user_agent": f.str("user_agent", None, max_len=1000),
        "viewport": _viewport(f, viewport),
        "output": output,
        "screenshot_full_page": f.bool("screenshot_full_page", False),
        "extract": schema,
    }
    check_headers(f, values)
    if isinstance(values["wait_for"], str) and (problem := css_selector_problem(values["wait_for"])):
        f.problem("wait_for", problem)
    return values


def _body(f: Fields, headers: dict[str, str] | None) -> bytes | None:
    raw = f.any("body")
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.encode()
    if isinstance(raw, (dict, list)):
        # a JSON body: say so unless the caller already did
        if headers is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return json.dumps(raw).encode()
    f.problem("body", "must be a string or a JSON object")
    return None


def _viewport(f: Fields, raw: dict[str, Any] | None) -> tuple[int, int] | None:
    if raw is None:
        return None
    # 1280.0 is an integer to JSON (and to Fields.int); true is not
    width, height = (
        int(v) if isinstance(v, float) and v.is_integer() else v for v in (raw.get("width"), raw.get("height"))
    )
    if not all(isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 10_000 for v in (width, height)):
        f.problem("viewport", "must be {width, height} with integers from 100 to 10000")
        return None
    return (width, height)  # type: ignore[return-value]


def parse_fetch(raw: Mapping[str, Any], *, force_render: bool = False) -> FetchParams:
    f = Fields(raw, "input")
    values = read_fetch_fields(f, force_render=force_render)
    check_browser_request(f, values)
    f.finish()
    return FetchParams(**values)


def parse_render(raw: Mapping[str, Any]) -> FetchParams:
    return parse_fetch(raw, force_render=True)


async def load_page(
    params: FetchParams,
    ctx: KindContext,
    timeout_s: float | None = None,
    *,
    before_redirect: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fetch or render one URL; return the raw material for outputs: html, status, headers, files.

    `before_redirect` sees each redirect of a fetch before it is followed (Fetcher.fetch); the
    browser follows a rendered page's redirects itself, so it is not called for them.
    """
    if params.needs_browser:
        return await _render(params, ctx, timeout_s)
    page = await ctx.fetcher.fetch(
        params.url,
        method=params.method,
        headers=_request_headers(params),
        body=params.body,
        timeout_s=timeout_s,
        cookies=[_given_cookie(cookie) for cookie in params.cookies],
        before_redirect=before_redirect,
    )
    if page.status_code >= 500 or page.status_code == 429:
        raise UpstreamStatus(page.status_code)
    return {
        "html": page.text,
        "status_code": page.status_code,
        "final_url": page.final_url,
        "content_type": page.content_type,
        "headers": page.headers,
        "stats": {"elapsed_ms": round(page.elapsed_ms, 1), "bytes": len(page.body), "redirects": len(page.redirects)},
    }


def _request_headers(params: FetchParams) -> dict[str, str]:
    """`headers` plus `user_agent`, sent as a render sends them: a `User-Agent` in `headers` wins over
    `user_agent` (as extra headers win in the browser)."""
    headers = dict(params.headers)
    if params.user_agent and not any(name.lower() == "user-agent" for name in headers):
        headers["User-Agent"] = params.user_agent
    return headers


def _given_cookie(cookie: Mapping[str, Any]) -> GivenCookie:
    """A job's `{name, value, domain?, path?, secure?}` for the fetcher, which sends it to each hop of
    the fetch it matches, as a browser would, and never to another origin than the URL's."""
    return GivenCookie(
        name=cookie["name"],
        value=cookie["value"],
        domain=str(cookie.get("domain") or "").lower().lstrip("."),
        path=str(cookie.get("path") or "/"),
        secure=bool(cookie.get("secure")),
    )


def working_budget_s(ctx: KindContext) -> float | None:
    """The attempt's timeout_s less a moment to answer (FINISH_MARGIN_S, a fifth of a shorter one), so
    that the work stops itself, saying why, before the worker's timeout cancels it; None without one."""
    budget_s = ctx.timeout_s
    if not isinstance(budget_s, int | float) or budget_s <= 0:
        return None
    return budget_s - min(FINISH_MARGIN_S, budget_s / 5)


def finish_by(ctx: KindContext, started: float) -> float | None:
    """When the work of an attempt that began at `started` (event-loop time) must be done:
    working_budget_s later, plus the time it spent parked for a browser page, during which the
    worker's clock for its timeout_s stood still; None without a budget."""
    working_s = working_budget_s(ctx)
    if working_s is None:
        return None
    parked_s = getattr(ctx, "parked_s", None)  # the worker's context counts it; an inline run never parks
    return started + working_s + (parked_s() if callable(parked_s) else 0.0)


def render_budget_s(ctx: KindContext) -> float:
    """A render's share of the attempt (working_budget_s); without one, [limits] default_timeout_s."""
    budget_s = working_budget_s(ctx)
    return ctx.config.limits.default_timeout_s if budget_s is None else budget_s


async def _render(params: FetchParams, ctx: KindContext, timeout_s: float | None) -> dict[str, Any]:
    if ctx.browser is None or not ctx.browser.available:
        raise BrowserUnavailable()
    from litejobs.browser import RenderRequest

    outputs = set(params.output)
    request = RenderRequest(
        url=params.url,
        wait_until=params.wait_until,
        wait_for=params.wait_for,
        wait_ms=params.wait_ms,
        block=params.block,
        headers=dict(params.headers),
        cookies=[dict(c) for c in params.cookies],
        user_agent=params.user_agent,
        viewport=params.viewport,
        screenshot="screenshot" in outputs,
        full_page=params.screenshot_full_page,
        pdf="pdf" in outputs,
        actions=[dict(a) for a in params.actions],
        timeout_s=timeout_s or render_budget_s(ctx),
    )
    # a first page's 5xx or 429 raises UpstreamStatus in the render, unless the actions left it (capture)
    result = await ctx.browser.render(request, waiting=ctx.parked())
    html = clean_text(result.html)  # a viewer's body too: no UTF-8 text holds a lone surrogate
    loaded: dict[str, Any] = {
        "html": html,
        "status_code": result.status_code,
        "final_url": result.final_url,
        # the MIME type alone, as the fetcher gives it: the browser has decoded the page already
        "content_type": mime_of(result.content_type),
        "headers": result.headers,
        "stats": {
            "elapsed_ms": round(result.elapsed_ms, 1),
            "bytes": len(html.encode()),
            "rendered": True,
            # false: the render went on without `wait_until`, which a stalled subresource held back
            "wait_until_reached": result.wait_until_reached,
        },
    }
    if result.screenshot is not None:
        loaded["screenshot"] = await ctx.save_file("screenshot.png", result.screenshot, "image/png")
    if result.pdf is not None:
        loaded["pdf"] = await ctx.save_file("page.pdf", result.pdf, "application/pdf")
    if params.actions:
        loaded["actions"] = result.actions
        for index, png in enumerate(result.action_screenshots):
            url = await ctx.save_file(f"action-{index}.png", png, "image/png")
            loaded.setdefault("action_screenshots", []).append(url)
    return loaded


def build_outputs(loaded: Mapping[str, Any], output: tuple[str, ...], extract_schema: Any) -> dict[str, Any]:
    """The outputs a client asked for, from a loaded page. Non-HTML bodies pass through as text."""
    from litejobs.extract import Document

    html = loaded["html"]
    is_html = "html" in loaded["content_type"] or loaded["content_type"] in ("", "application/xml")
    # parse only for outputs that need the tree: `html` alone is passed through untouched
    doc = Document(html, loaded["final_url"]) if is_html and PARSED_OUTPUTS & set(output) else None
    outputs: dict[str, Any] = {
        "status_code": loaded["status_code"],
        "final_url": loaded["final_url"],
        "content_type": loaded["content_type"],
    }
    makers = {
        "html": lambda: html,
        "markdown": lambda: doc.markdown() if doc else html,
        "text": lambda: doc.text() if doc else html,
        "links": lambda: doc.links() if doc else [],
        "metadata": lambda: doc.metadata() if doc else {},
        "headers": lambda: dict(loaded["headers"]),
        "extract": lambda: doc.extract(extract_schema) if doc and extract_schema else None,
    }
    for name in output:
        if name in makers:
            outputs[name] = makers[name]()
        elif name in loaded:
            outputs[name] = loaded[name]
    for extra in ("actions", "action_screenshots"):
        if extra in loaded:
            outputs[extra] = loaded[extra]
    return outputs


async def outputs_of(loaded: Mapping[str, Any], output: tuple[str, ...], extract_schema: Any) -> dict[str, Any]:
    """build_outputs, in a worker thread when it must parse: lexbor and the markdown converter
    release the GIL, so pages are parsed on the second core while the event loop keeps serving."""
    if PARSED_OUTPUTS & set(output):
        return await asyncio.to_thread(build_outputs, loaded, output, extract_schema)
    return build_outputs(loaded, output, extract_schema)


async def run_fetch(params: FetchParams, ctx: KindContext) -> JobResult:
    started = asyncio.get_running_loop().time()
    loaded = await load_page(params, ctx)
    outputs = await outputs_of(loaded, params.output, params.extract)
    if params.extract is not None and params.extract.prompt:
        markdown = outputs.get("markdown") or build_outputs(loaded, ("markdown",), None)["markdown"]
        # the model gets what the page left of the job's time: a slow one costs the answer, not the page
        deadline = finish_by(ctx, started)
        extraction = await extract_with_prompt(ctx.config.ai, params.extract.prompt, markdown, deadline=deadline)
        outputs.update(extraction.outputs())
        loaded["stats"]["ai"] = extraction.stats()
    return JobResult(JobState.COMPLETED, outputs, loaded["stats"])


KIND = Kind("fetch", parse_fetch, run_fetch, clock_stops_while_parked=True)
RENDER_KIND = Kind("render", parse_render, run_fetch, clock_stops_while_parked=True)
