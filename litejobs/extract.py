"""HTML → markdown, text, links, metadata and CSS-schema extraction; pure, no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from html_to_markdown import ConversionOptions, WarningKind, convert
from selectolax.lexbor import LexborHTMLParser, LexborNode, SelectolaxError

from litejobs.errors import ValidationFailed
from litejobs.fields import Fields
from litejobs.urls import http_netloc

FieldType = Literal["text", "html", "number", "attr"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)

# Inline <svg> is icons in practice; its <title> would read as stray words.
_INVISIBLE_TAGS = ["script", "style", "noscript", "template", "iframe", "svg"]
_BLOCK_SELECTOR = (
    "address, article, aside, blockquote, caption, center, dd, details, dialog, div, dl, dt, fieldset, "
    "figcaption, figure, footer, form, h1, h2, h3, h4, h5, h6, header, hgroup, hr, legend, li, main, menu, "
    "nav, ol, option, p, pre, section, summary, table, tr, ul, br"
)
#: html_to_markdown converts nothing nested deeper than 1024 elements: the elements this deep (the root
#: is 1) become paragraphs of their text, a few levels under its limit
_MARKDOWN_DEPTH = 1000
# A private-use character marks block boundaries in the text; real pages practically never contain it.
_BREAK = "\ue000"
_URL_ATTRS = frozenset({"href", "src"})
_OG_URL_KEYS = frozenset({"url", "image", "image:url", "image:secure_url", "video", "audio"})
_TWITTER_URL_KEYS = frozenset({"image", "image:src"})
_HTTP_SCHEMES = ("http", "https")
_UNSAFE_URL_CHAR = re.compile(r'[^\x21-\x7e]|["<>\\^`{|}]')
# Thousands separators only count as such before exactly three digits, so "1,299.00" is 1299 but "12,5" is 12;
# a minus glued to a word ("SKU-12") is a hyphen, not a sign.
_NUMBER_RE = re.compile(r"(?:(?<!\w)[-\u2212])?(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)")


@dataclass(frozen=True)
class ExtractField:
    """One named value to pull from the page: `selector` finds it, `type` says what to read."""

    name: str
    selector: str
    type: FieldType = "text"
    attr: str | None = None
    all: bool = False


@dataclass(frozen=True)
class ExtractSchema:
    """A validated `extract` request; build it with `parse_schema`."""

    fields: tuple[ExtractField, ...] = ()
    base_selector: str | None = None
    prompt: str | None = None


def parse_schema(raw: Any, field_prefix: str = "input.extract") -> ExtractSchema:
    """Validate a JSON `extract` object, raising one ValidationFailed that lists every problem."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed([{"field": field_prefix, "problem": "must be a JSON object"}])
    top = Fields(raw, field_prefix)
    prompt = top.str("prompt", None)
    if isinstance(prompt, str) and not prompt.strip():
        top.problem("prompt", "must not be empty")
    base_selector = top.str("base_selector", None, max_len=2000)
    if isinstance(base_selector, str) and (problem := _selector_problem(base_selector)):
        top.problem("base_selector", problem)
    # Fields.dict would report a missing required object twice ("is required", "must be a JSON object").
    raw_fields = top.dict("fields", None)
    if raw.get("fields") is None and prompt is None:
        top.problem("fields", "is required")
    top.reject_unknown()
    problems = top.problems
    fields: list[ExtractField] = []
    if raw_fields is not None:
        if not raw_fields and prompt is None:
            problems.append({"field": top.name("fields"), "problem": "must name at least one field"})
        for name, spec in raw_fields.items():
            field, field_problems = _parse_field(name, spec, f"{top.name('fields')}.{name}")
            problems.extend(field_problems)
            if field is not None:
                fields.append(field)
    if problems:
        raise ValidationFailed(problems)
    return ExtractSchema(fields=tuple(fields), base_selector=base_selector, prompt=prompt)


def _parse_field(name: str, spec: Any, path: str) -> tuple[ExtractField | None, list[dict[str, str]]]:
    if not isinstance(name, str) or not name.strip():
        return None, [{"field": path, "problem": "field names must not be empty"}]
    if isinstance(spec, str):
        problem = _selector_problem(spec)
        return ExtractField(name, spec), [{"field": path, "problem": problem}] if problem else []
    if not isinstance(spec, Mapping):
        return None, [{"field": path, "problem": "must be a CSS selector string or an object with a selector"}]
    f = Fields(spec, path)
    selector = f.str("selector", max_len=2000)
    attr = f.str("attr", None, max_len=200)
    all_ = f.bool("all", False)
    type_ = f.str("type", "attr" if attr is not None else "text", choices=FIELD_TYPES)
    f.reject_unknown()
    if isinstance(selector, str) and (problem := _selector_problem(selector)):
        f.problem("selector", problem)
    if type_ == "attr" and not attr:
        f.problem("attr", "is required when type is attr")
    elif type_ != "attr" and attr is not None and type_ in FIELD_TYPES:
        f.problem("attr", f"is only used when type is attr, not {type_}")
    if f.problems:
        return None, f.problems
    return ExtractField(name, selector, cast(FieldType, type_), attr, all_), []


def _selector_problem(selector: str) -> str | None:
    """Why lexbor cannot use `selector`, found by running it on a tiny document."""
    try:
        LexborHTMLParser("<p></p>").css(selector)
    except SelectolaxError:
        return "is not a valid CSS selector"
    return None


class Document:
    """Parse once (selectolax's lexbor backend), derive many outputs."""

    def __init__(self, html: str, base_url: str) -> None:
        self._tree = LexborHTMLParser(html)
        self.page_url = base_url
        #: what relative URLs resolve against: the first <base href>, else the page's own URL
        self.link_base = _document_base(self._tree, base_url)

    def markdown(self) -> str:
        """The page as Markdown, scripts and styles dropped, links and images absolute."""
        clean = self._tree.clone()
        # <base> goes too: self.link_base already accounts for it and the converter would apply it twice.
        clean.strip_tags([*_INVISIBLE_TAGS, "base"], recursive=True)
        options = ConversionOptions(
            extract_metadata=False,
            base_url=self.link_base or None,
            inline_data_media="alt_text_only",  # base64 payloads are noise to a reader or an LLM
        )
        result = convert(clean.html or "", options)
        if any(warning.kind == WarningKind.DEPTH_LIMIT_EXCEEDED for warning in result.warnings):
            # The converter skips, saying nothing, what lies deeper than its depth limit: that part is
            # kept as its text instead. Only such a page pays for a second conversion.
            _flatten_deep(clean)
            result = convert(clean.html or "", options)
        return result.content or ""

    def text(self) -> str:
        """The visible text of <body>, one line per block, whitespace collapsed."""
        body = self._tree.body
        return "\n".join(_visible_lines(body)) if body is not None else ""

    def links(self) -> list[str]:
        """Absolute http(s) URLs of every <a href>, fragment dropped, deduplicated, in page order."""
        # Pages repeat the same href many times (nav, pagers); resolving each distinct one once halves the cost.
        hrefs = dict.fromkeys(node.attributes.get("href") for node in self._tree.css("a[href]"))
        netlocs: dict[tuple[str, str], str | None] = {}  # a page links to few hosts: each is written once
        urls = (_http_url(self._absolute(href), netlocs) for href in hrefs)
        return [url for url in dict.fromkeys(urls) if url is not None]

    def title(self) -> str | None:
        """The document's <title> (never an SVG's), whitespace collapsed; None when missing or blank."""
        node = self._tree.css_first("title:not(svg title)")
        return (_collapse(node.text()) or None) if node is not None else None

    def metadata(self) -> dict[str, Any]:
        """Title, description, language, canonical, favicon, Open Graph, Twitter card, keywords, author, robots."""
        names, og, twitter = self._meta_tags()
        root = self._tree.root
        lang = root.attributes.get("lang") if root is not None else None
        return {
            "title": self.title(),
            "description": names.get("description"),
            "language": (lang or "").strip() or None,
            "canonical": self._link_href("canonical"),
            "favicon": self._link_href("icon") or self._link_href("apple-touch-icon"),
            "og": og,
            "twitter": twitter,
            "keywords": names.get("keywords"),
            "author": names.get("author"),
            "robots": names.get("robots"),
        }

    def extract(self, schema: ExtractSchema) -> dict[str, Any] | list[dict[str, Any]]:
        """One dict of field values, or one per `base_selector` match."""
        if schema.base_selector is None:
            root = self._tree.root
            return {f.name: self._field(root, f) if root is not None else None for f in schema.fields}
        scopes = self._tree.css(schema.base_selector)
        return [{f.name: self._field(scope, f) for f in schema.fields} for scope in scopes]

    def _field(self, scope: LexborNode, field: ExtractField) -> Any:
        if not field.all:
            node = scope.css_first(field.selector)
            return self._value(node, field) if node is not None else None
        values = (self._value(node, field) for node in scope.css(field.selector))
        return [value for value in values if value is not None]

    def _value(self, node: LexborNode, field: ExtractField) -> Any:
        if field.type == "html":
            return node.html
        if field.type == "attr":
            return self._attr_value(node, field.attr or "")
        # A selected <script> is wanted for its source (JSON-LD, inline state), which visible text would drop.
        text = node.text().strip() if node.tag in _INVISIBLE_TAGS else " ".join(_visible_lines(node))
        return _parse_number(text) if field.type == "number" else text

    def _attr_value(self, node: LexborNode, attr: str) -> str | None:
        attrs = node.attributes
        if attr not in attrs:
            return None
        value = attrs[attr] or ""
        return (self._absolute(value) or value.strip()) if attr.lower() in _URL_ATTRS else value

    def _meta_tags(self) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
        """<meta> contents by lowercased name, og:* and twitter:* keys; the first non-empty tag wins."""
        names: dict[str, str] = {}
        og: dict[str, str] = {}
        twitter: dict[str, str] = {}
        for node in self._tree.css("meta[content]"):
            attrs = node.attributes
            content = (attrs.get("content") or "").strip()
            # Sites mix up `name` and `property` for og:/twitter:, so both are read.
            keys = {(attrs.get(k) or "").strip().lower() for k in ("property", "name")} - {""}
            for key in keys if content else ():
                if key.startswith("og:"):
                    og.setdefault(key[3:], self._absolute_if(key[3:] in _OG_URL_KEYS, content))
                elif key.startswith("twitter:"):
                    twitter.setdefault(key[8:], self._absolute_if(key[8:] in _TWITTER_URL_KEYS, content))
                else:
                    names.setdefault(key, content)
        return names, og, twitter

    def _link_href(self, rel: str) -> str | None:
        node = self._tree.css_first(f'link[rel~="{rel}" i][href]')
        return self._absolute(node.attributes.get("href")) if node is not None else None

    def _absolute(self, href: str | None) -> str | None:
        return _join(self.link_base, href)

    def _absolute_if(self, is_url: bool, value: str) -> str:
        return (self._absolute(value) or value) if is_url else value


def _document_base(tree: LexborHTMLParser, page_url: str) -> str:
    """The first <base href> resolved against the page URL, as browsers do; ignored unless http(s)."""
    node = tree.css_first("base[href]")
    base = _join(page_url, node.attributes.get("href")) if node is not None else None
    if base and urlsplit(base).scheme in _HTTP_SCHEMES:
        return base
    return page_url


def _join(base: str, href: str | None) -> str | None:
    """`href` resolved against `base`, None when blank or unparseable."""
    if href is None:
        return None
    # Browsers drop ASCII tab and newlines anywhere in a URL and strip surrounding whitespace.
    href = href.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    if not href and not base:
        return None
    try:
        return urljoin(base, href)
    except ValueError:
        return None


def _http_url(url: str | None, netlocs: dict[tuple[str, str], str | None]) -> str | None:
    """`url` as a browser writes it (host as http_netloc writes it, an empty path "/"), without its fragment
    and with unsafe characters percent-encoded; None unless http(s) with a host. One URL is then one
    spelling, whatever case or script its link used for the host."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    key = (parts.scheme, parts.netloc)
    netloc = netlocs[key] if key in netlocs else netlocs.setdefault(key, http_netloc(parts))
    if netloc is None:
        return None
    path, query = parts.path or "/", parts.query
    if _UNSAFE_URL_CHAR.search(path) or _UNSAFE_URL_CHAR.search(query):
        path = quote(path, safe="/%:@!$&'()*+,;=~")
        query = quote(query, safe="/?%:@!$&'()*+,;=~")
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _flatten_deep(tree: LexborHTMLParser) -> None:
    """Each element _MARKDOWN_DEPTH deep replaced by a <div> of one <p> per line of its visible text."""
    # Level by level: each element above that depth is visited once (a CSS child chain that long
    # would walk up a thousand parents from every element).
    level = [tree.root] if tree.root is not None else []
    for _ in range(_MARKDOWN_DEPTH - 1):
        level = [child for node in level for child in node.iter()]
    for node in level:
        box = tree.create_node("div")
        for line in _visible_lines(node):
            paragraph = tree.create_node("p")
            paragraph.insert_child(line)
            box.insert_child(paragraph)
        node.replace_with(box)


def _visible_lines(node: LexborNode) -> list[str]:
    """The text a reader sees in `node`, one whitespace-collapsed line per block element."""
    copy = node.clone()
    copy.strip_tags(_INVISIBLE_TAGS, recursive=True)
    for hidden in copy.css("[hidden]"):
        hidden.decompose()
    # Inserting markers on a copy lets lexbor gather the text in C instead of a Python walk over every node.
    for block in copy.css(_BLOCK_SELECTOR):
        if block.tag != "br":
            block.insert_before(_BREAK)
        block.insert_after(_BREAK)
    for cell in copy.css("td, th"):
        cell.insert_before(" ")
    lines = (_collapse(part) for part in (copy.text() or "").split(_BREAK))
    return [line for line in lines if line]


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _parse_number(text: str) -> int | float | None:
    """The first number in `text`: "$1,299.00" → 1299.0, "-3" → -3, "n/a" → None."""
    match = _NUMBER_RE.search(text)
    if match is None:
        return None
    literal = match.group().replace(",", "").replace("\u2212", "-")
    return float(literal) if "." in literal else int(literal)
