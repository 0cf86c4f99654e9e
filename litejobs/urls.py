"""URL rules of crawls and maps: normalisation for dedupe, path globs, and which hosts are in scope; pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_GLOB_TOKEN = re.compile(r"/\*\*\Z|\*\*/|\*\*|\*|\?")
_WILDCARDS = frozenset({"*", "**", "**/", "/**"})
_MEDIA = "png jpg jpeg gif webp svg ico bmp tif tiff avif heic mp3 mp4 m4a m4v wav ogg oga webm avi mov mkv flv wmv"
_ARCHIVES = "zip gz tgz bz2 xz 7z rar tar exe dmg iso bin msi apk deb rpm woff woff2 ttf otf eot css js mjs map"
_DOCUMENTS = "pdf doc docx xls xlsx ppt pptx odt ods odp"
#: links to these are never fetched by a crawl: no text to read, and often large
SKIPPED_EXTENSIONS = frozenset(f"{_MEDIA} {_ARCHIVES} {_DOCUMENTS}".split())


def normalize_url(url: str) -> str | None:
    """The canonical form of an absolute http(s) URL, or None when it is not one.

    Scheme and host lowercased (IDN hosts in punycode), default port and fragment dropped, an empty
    path becomes "/", dot segments resolved, percent-escapes uppercased, escapes of unreserved
    characters decoded and unsafe characters encoded (UTF-8). A trailing slash is kept: `/a` and `/a/`
    stay two URLs, since servers may answer them differently. The query is kept in its order.
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    netloc = http_netloc(parts)
    if netloc is None:
        return None
    path = normalize_escapes(remove_dot_segments(parts.path or "/"), _PATH_SAFE)
    query = normalize_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((parts.scheme.lower(), netloc, path or "/", query, ""))


def http_netloc(parts: SplitResult) -> str | None:
    """`[userinfo@]host[:port]` of an http(s) URL as browsers write it: the host lowercased (an IDN
    host in punycode), a default port dropped; None for another scheme, no host or a bad port."""
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    host = _ascii_host(parts.hostname or "")
    if scheme not in DEFAULT_PORTS or not host:
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != DEFAULT_PORTS[scheme]:
        netloc = f"{netloc}:{port}"
    if "@" in parts.netloc:
        netloc = f"{parts.netloc.rpartition('@')[0]}@{netloc}"
    return netloc


def _ascii_host(host: str) -> str:
    host = host.rstrip(".") if host.endswith(".") and len(host) > 1 else host
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return ""


def normalize_escapes(text: str, safe: str = _QUERY_SAFE) -> str:
    """Percent-escapes in one form: `%7e` → `~`, `%2f` → `%2F`, `é` → `%C3%A9`, a stray `%` → `%25`."""

    def unescape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    text = _STRAY_PERCENT.sub("%25", text)
    return quote(_ESCAPE.sub(unescape, text), safe=safe)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: `/a/./b/../c` → `/a/c`."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    joined = "/".join(output)
    return joined if joined.startswith("/") or not path.startswith("/") else "/" + joined


def host_key(url: str) -> str:
    """What politeness counts as one host: `host[:port]` of a normalised URL."""
    netloc = urlsplit(url).netloc
    return netloc.rpartition("@")[2].lower()


def origin_of(url: str) -> str:
    """`scheme://host[:port]`: where a URL's robots.txt lives."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{host_key(url)}"


def site_host(host: str) -> str:
    """The host as a site: `www.example.com` and `example.com` are one site."""
    return host[4:] if host.startswith("www.") else host


def compile_glob(pattern: str) -> Glob:
    """A path glob, for `fullmatch` on a URL path.

    `*` is any run of characters but `/`, `?` one such character, `**` anything (across `/`), `**/`
    zero or more whole segments, a final `/**` the path itself or anything below it. A pattern that
    does not start with `/` matches at any depth (`*.html` is `/**/*.html`).
    """
    pattern = normalize_escapes(pattern.strip())
    tokens: list[str] = [] if pattern.startswith("/") else ["**/"]
    position = 0
    for match in _GLOB_TOKEN.finditer(pattern):
        tokens.extend(pattern[position : match.start()])
        tokens.append(match.group())
        position = match.end()
    tokens.extend(pattern[position:])
    return Glob(pattern, _simplified(tokens))


def _simplified(tokens: list[str]) -> list[str]:
    """The same language with fewer wildcards in a row, so that no chain of empty moves is long: a
    run of wildcards holding a bare `**` is `**` (`.*` absorbs `[^/]*`, `(.*/)?` and `(/.*)?` on
    either side), and `**/**/` is `**/`."""
    out: list[str] = []
    run: list[str] = []
    for token in [*tokens, ""]:
        if token in _WILDCARDS:
            if not (run and token == "**/" and run[-1] == "**/"):
                run.append(token)
            continue
        out.extend(["**"] if "**" in run else run)
        run = []
        if token:
            out.append(token)
    return out


class Glob:
    """A glob matched by a bit-parallel NFA (bit i: "the path so far matches the first i elements").

    A regex with several `**` backtracks exponentially in the path's length (and `re` keeps the GIL,
    so the server would stop); this runs in time linear in the path, whatever the pattern. Each
    (states, character) step is remembered, so the ordinary case is a dict lookup per character.
    """

    _CACHE_LIMIT = 4096

    def __init__(self, pattern: str, tokens: list[str]) -> None:
        self.pattern = pattern
        self._literal: dict[str, int] = {}  #: char -> the states it advances
        one = star = anything = loops = splits = 0
        state = 0
        for token in tokens:
            bit = 1 << state
            if token == "?":
                one |= bit
            elif token == "*":
                star |= bit
                loops |= bit
            elif token == "**":
                anything |= bit
                loops |= bit
            elif token == "**/":  # (?:.*/)?: skip the next two states, or any run then "/"
                splits |= bit
                anything |= bit << 1
                loops |= bit << 1
                self._literal["/"] = self._literal.get("/", 0) | bit << 2
                state += 2
            elif token == "/**":  # (?:/.*)?: skip them, or "/" then any run
                splits |= bit
                self._literal["/"] = self._literal.get("/", 0) | bit << 1
                anything |= bit << 2
                loops |= bit << 2
                state += 2
            else:
                self._literal[token] = self._literal.get(token, 0) | bit
            state += 1
        self._one, self._star, self._anything, self._loops, self._splits = one, star, anything, loops, splits
        self._accept = 1 << state
        self._start = self._closed(1)
        self._steps: dict[tuple[int, str], int] = {}

    def __repr__(self) -> str:
        return f"Glob({self.pattern!r})"

    def _closed(self, states: int) -> int:
        """`states` with every state reachable from them by empty moves: past a loop, past a split or
        over it (both jump three states: the split and the two it guards)."""
        while True:
            more = states | ((states & self._loops) << 1) | ((states & self._splits) << 1)
            more |= (states & self._splits) << 3
            if more == states:
                return states
            states = more

    def _step(self, states: int, char: str) -> int:
        advance = self._literal.get(char, 0) | (self._one if char != "/" else 0)
        stay = (self._star if char != "/" else 0) | self._anything
        return self._closed(((states & advance) << 1) | (states & stay))

    def fullmatch(self, path: str) -> bool:
        """Whether the whole of `path` matches."""
        states = self._start
        steps = self._steps
        for char in path:
            key = (states, char)
            following = steps.get(key)
            if following is None:
                following = self._step(states, char)
                if len(steps) >= self._CACHE_LIMIT:
                    steps.clear()
                steps[key] = following
            states = following
            if not states:
                return False
        return bool(states & self._accept)


def path_of(url: str) -> str:
    return urlsplit(url).path or "/"


def has_skipped_extension(path: str) -> bool:
    last = path.rpartition("/")[2]
    return "." in last and last.rpartition(".")[2].lower() in SKIPPED_EXTENSIONS


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl or a map may follow, decided from the start URL and the job's options."""

    #: the start page's hosts as sites (www. dropped); the start page's final host joins them
    sites: frozenset[str]
    same_domain: bool = True
    allow_subdomains: bool = False
    include: tuple[Glob, ...] = field(default=())
    exclude: tuple[Glob, ...] = field(default=())

    @classmethod
    def around(
        cls,
        start_url: str,
        *,
        same_domain: bool = True,
        allow_subdomains: bool = False,
        include: tuple[str, ...] = (),
        exclude: tuple[str, ...] = (),
    ) -> Scope:
        host = urlsplit(start_url).hostname or ""
        return cls(
            frozenset({site_host(host)}),
            same_domain,
            allow_subdomains,
            tuple(compile_glob(p) for p in include),
            tuple(compile_glob(p) for p in exclude),
        )

    def with_site_of(self, url: str) -> Scope:
        """This scope, also covering `url`'s host (the start page redirected to another host)."""
        host = site_host(urlsplit(url).hostname or "")
        if not host or host in self.sites:
            return self
        return Scope(self.sites | {host}, self.same_domain, self.allow_subdomains, self.include, self.exclude)

    def covers_host(self, url: str) -> bool:
        if not self.same_domain:
            return True
        host = site_host(urlsplit(url).hostname or "")
        if host in self.sites:
            return True
        return self.allow_subdomains and any(host.endswith("." + site) for site in self.sites)

    def admits(self, url: str) -> bool:
        """Whether a normalised URL is one to follow: host in scope, path through the globs, not a binary."""
        if not self.covers_host(url):
            return False
        path = path_of(url)
        if has_skipped_extension(path):
            return False
        if self.include and not any(p.fullmatch(path) for p in self.include):
            return False
        return not any(p.fullmatch(path) for p in self.exclude)
