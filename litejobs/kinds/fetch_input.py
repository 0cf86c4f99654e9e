"""What a fetch's input may hold beyond its types: the cookies, header names and selectors that aiohttp
or Chromium would refuse (or garble) at run time are refused at submit, with the field named."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from litejobs.fetcher import FRAMING_HEADERS
from litejobs.fields import Fields

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
#: outputs that only a browser can make
BROWSER_OUTPUTS = frozenset({"screenshot", "pdf"})
#: an HTTP field name (RFC 9110 token): aiohttp refuses others at run time, Chromium too
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: control characters a header value may not hold (tab may); CR, LF and NUL are Fields.str_map's
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: headers Chromium will not send from a page (net::ERR_INVALID_ARGUMENT), besides Proxy-* and the framing
_UNSAFE_IN_BROWSER = frozenset({"cookie2", "host", "set-cookie"})
#: a pseudo-class or pseudo-element, with its argument if it has one without parentheses in it
_PSEUDO = re.compile(r"::?-?[A-Za-z_][\w-]*(?:\([^()]*\))?")
#: name and value together, as Chromium counts a cookie's size
_MAX_COOKIE_CHARS = 4096


def read_cookies(f: Fields) -> list[dict[str, Any]]:
    raw = f.any("cookies", [])
    named = isinstance(raw, Mapping)
    if named:
        raw = [{"name": k, "value": v} for k, v in raw.items()]
    if not isinstance(raw, list) or not all(
        isinstance(c, Mapping) and isinstance(c.get("name"), str) and isinstance(c.get("value"), str) for c in raw
    ):
        f.problem("cookies", "must be a list of {name, value} objects or an object of name: value")
        return []
    cookies = []
    for index, cookie in enumerate(raw):
        where = f"cookies.{cookie['name']}" if named else f"cookies[{index}]"
        for key, problem in _cookie_problems(cookie):
            f.problem(f"{where}.{key}" if key and not named else where, problem)
        # an empty or null domain or path is none, as in a fetch (Chromium refuses "" and null)
        cookies.append({k: v for k, v in cookie.items() if not (k in ("domain", "path", "secure") and not v)})
    return cookies


def _cookie_problems(cookie: Mapping[str, Any]) -> list[tuple[str, str]]:
    """What Chromium would refuse in a cookie (a fetch would send it garbled, or not at all)."""
    name, value = cookie["name"], cookie["value"]
    problems = []
    for key, text, banned in (("name", name, ";="), ("value", value, ";")):
        if _CONTROL.search(text) or "\t" in text or any(ch in text for ch in banned):
            problems.append((key, f"must not contain control characters or {' or '.join(banned)}"))
        elif text != text.strip(" "):
            problems.append((key, "must not start or end with a space"))
    if not name and not value:
        problems.append(("", "must have a name or a value"))
    if len(name) + len(value) > _MAX_COOKIE_CHARS:
        problems.append(("", f"name and value must be at most {_MAX_COOKIE_CHARS} characters together"))
    domain, path, secure = cookie.get("domain"), cookie.get("path"), cookie.get("secure")
    if domain is not None and (not isinstance(domain, str) or _CONTROL.search(domain) or ";" in domain):
        problems.append(("domain", "must be a host name"))
    if path not in (None, "") and (not isinstance(path, str) or not path.startswith("/") or len(path) > 1024):
        problems.append(("path", "must be a path starting with / (at most 1024 characters)"))
    elif isinstance(path, str) and (_CONTROL.search(path) or ";" in path):
        problems.append(("path", "must not contain control characters or ;"))
    if secure is not None and not isinstance(secure, bool):
        problems.append(("secure", "must be true or false"))
    return problems


def check_headers(f: Fields, values: dict[str, Any]) -> None:
    """Header names must be HTTP tokens, values free of control characters (the fetch failed on them
    at run time); no job sets the framing headers; a page loaded in the browser cannot send the
    headers Chromium reserves."""
    in_browser = _needs_browser(values)
    for name, value in values["headers"].items():
        if any(ch in name for ch in "\r\n\x00"):
            continue  # Fields.str_map said so
        if not _TOKEN.fullmatch(name):
            f.problem(f"headers.{name}", "is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)")
        elif name.lower() in FRAMING_HEADERS:
            # Host stays allowed: aiohttp writes it as the one Host line, it frames nothing, and naming
            # the virtual host of an address is a real use. The others would let a job desynchronise
            # a lenient target on the connection pool every owner shares.
            f.problem(f"headers.{name}", "is set by the HTTP client, which frames the request and owns the connection")
        elif in_browser and (name.lower() in _UNSAFE_IN_BROWSER or name.lower().startswith("proxy-")):
            f.problem(f"headers.{name}", "is a header Chromium does not send from a rendered page")
        if isinstance(value, str) and _CONTROL.search(value) and not any(ch in value for ch in "\r\n\x00"):
            f.problem(f"headers.{name}", "must not contain control characters")
    if isinstance(values["user_agent"], str) and _CONTROL.search(values["user_agent"]):
        f.problem("user_agent", "must not contain control characters")


def css_selector_problem(selector: str) -> str | None:
    """Why `selector` is not CSS the browser could match, or None. Lexbor checks it; the pseudo-classes
    and elements lexbor does not know (:scope, ::before, :lang(en) ...) are given the benefit of the
    doubt, so a selector Chromium takes is never refused."""
    probe = LexborHTMLParser("<p></p>")
    candidate = selector
    for _ in range(20):  # innermost pseudo first: :not(:lang(en)) -> :not(:hover) -> :hover
        try:
            probe.css(candidate)
            return None
        except SelectolaxError:
            simpler = _PSEUDO.sub(":hover", candidate)
            if simpler == candidate:
                break
            candidate = simpler
    return "is not a valid CSS selector"


def _needs_browser(values: Mapping[str, Any]) -> bool:
    """FetchParams.needs_browser, before there are params (interact forces render_js)."""
    return bool(values["render_js"]) or bool(BROWSER_OUTPUTS & set(values["output"]))


def check_browser_request(f: Fields, values: Mapping[str, Any]) -> None:
    """A page loaded in the browser is loaded with GET and no body: refuse rather than drop them."""
    if values["method"] not in METHODS:
        f.problem("method", f"must be one of {', '.join(METHODS)}")
    if not _needs_browser(values):
        return
    why = "a page loaded in the browser (render, interact, render_js, a screenshot or pdf output)"
    if values["method"] != "GET":
        f.problem("method", f"{why} is loaded with GET; drop the method or fetch without the browser")
    if values["body"] is not None:
        f.problem("body", f"{why} is loaded without a body; drop the body or fetch without the browser")
