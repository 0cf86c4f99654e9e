"""RenderRequest and RenderResult: what one render asks of the browser, and what it hands back."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from litejobs.charsets import mime_of, page_encoding
from litejobs.errors import BodyTooLarge

WAIT_UNTIL = ("load", "domcontentloaded", "networkidle0", "networkidle2")
#: the `block` names a render accepts, and the Fetch resourceType each one aborts
BLOCKABLE = {"images": "Image", "fonts": "Font", "media": "Media", "stylesheets": "Stylesheet"}
#: the most of a render's time kept, once `wait_until` is given up, for what follows the load
AFTER_LOAD_MAX_S = 5.0


@dataclass
class RenderRequest:
    url: str
    wait_until: str = "load"
    wait_for: str | None = None
    wait_ms: int = 0
    block: frozenset[str] = frozenset()
    headers: dict[str, str] = field(default_factory=dict)
    #: [{name, value, domain?, path?}], set before navigation; without a domain they belong to `url`
    cookies: list[dict[str, Any]] = field(default_factory=list)
    user_agent: str | None = None
    viewport: tuple[int, int] | None = None
    screenshot: bool = False
    full_page: bool = False
    pdf: bool = False
    actions: list[dict[str, Any]] = field(default_factory=list)
    #: the whole render: waiting for a page, launching, navigating, actions, captures
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.wait_until not in WAIT_UNTIL:
            raise ValueError(f"wait_until must be one of {', '.join(WAIT_UNTIL)}, not {self.wait_until!r}")
        unknown = sorted(set(self.block) - set(BLOCKABLE))
        if unknown:
            raise ValueError(f"cannot block {unknown[0]!r} (blockable: {', '.join(BLOCKABLE)})")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")

    def give_up_on_load_at(self, started: float) -> float:
        """When a render that began at `started` stops waiting for `wait_until` and goes on with the page as
        it is, if its document is parsed (DOMContentLoaded): one stalled image or tracker holds back `load`
        and the network-idle events for ever, and the page is there. The rest of timeout_s is kept for what
        follows: `wait_ms` and the actions' own waits (actions_wait_s), then a quarter of the render's time,
        at most AFTER_LOAD_MAX_S, for `wait_for`, the other actions and the captures. Waits that fill the
        render's time leave the load none: the render goes on as soon as the document is parsed."""
        kept_s = self.wait_ms / 1000 + self.actions_wait_s() + min(self.timeout_s / 4, AFTER_LOAD_MAX_S)
        return started + max(0.0, self.timeout_s - kept_s)

    def actions_wait_s(self) -> float:
        """The time the actions are told to wait: a `wait`'s ms, a `scroll`'s `times` x `ms`, a `wait_for`'s
        timeout_ms (the most it may wait). A `wait_for` without one, like the page's own `wait_for`, falls to
        the quarter kept for the rest: an element is most often there at once, and counting its default
        (30 s) would give up `load` early on every page. A 3 s `wait` on a page whose one image never loads
        must not be left with the 5 s that the quarter keeps for everything."""
        waits_ms = 0.0
        for action in self.actions:
            kind = action.get("type")
            if kind == "wait":
                waits_ms += _number(action.get("ms"))
            elif kind == "scroll":
                waits_ms += _number(action.get("ms")) * max(1.0, _number(action.get("times")))
            elif kind == "wait_for":
                waits_ms += _number(action.get("timeout_ms"))
        return waits_ms / 1000

    def page_agent(self, default: str | None) -> str | None:
        """The page's User-Agent (sent, and navigator.userAgent): a `User-Agent` in `headers` wins over
        `user_agent`, as in a fetch (docs/api.md), then `default` ([fetch] user_agent or Chromium's own)."""
        given = [value for name, value in self.headers.items() if name.lower() == "user-agent"]
        return given[0] if given else self.user_agent or default


def _number(value: Any) -> float:
    """An action's duration field as a count of ms: absent, null or not a positive number is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return max(0.0, float(value))


@dataclass
class RenderResult:
    html: str
    final_url: str
    status_code: int
    headers: dict[str, str]
    content_type: str
    screenshot: bytes | None = None
    pdf: bytes | None = None
    #: one outcome per action: {index, type, ok: True, result? | screenshot?}
    actions: list[dict[str, Any]] = field(default_factory=list)
    action_screenshots: list[bytes] = field(default_factory=list)
    elapsed_ms: float = 0.0
    #: False when the render stopped waiting for `wait_until` (RenderRequest.give_up_on_load_at) and took
    #: the page as it was: parsed, with something still loading
    wait_until_reached: bool = True


def shown_in_a_viewer(content_type: str) -> bool:
    """Whether Chromium shows a document of this type in a viewer of its own, not as a page: JSON and text
    in a <pre> of the escaped body, XML as a tree, images and PDFs in a shell. Its DOM is then not the
    page; the body is, as for a fetch. HTML and XHTML are their DOM; so is an untyped answer Chromium sniffs.
    """
    mime = mime_of(content_type)
    return bool(mime) and "html" not in mime


def resource_text(resource: dict[str, Any], content_type: str, url: str, limit: int) -> str:
    """A Page.getResourceContent answer as the page's text: text as Chromium decoded it (as the browser
    shows it), other bodies decoded as the fetcher decodes them; over `limit` bytes ([fetch]
    max_body_bytes) it is BodyTooLarge, as a fetched body is."""
    content = str(resource.get("content", ""))
    if resource.get("base64Encoded"):
        body = base64.b64decode(content)
        text = body.decode(page_encoding(content_type, body), errors="replace")
    else:
        body, text = content.encode(errors="replace"), content
    if len(body) > limit:
        raise BodyTooLarge(f"the page at {url} is {len(body)} bytes, more than the {limit}-byte limit")
    return text
