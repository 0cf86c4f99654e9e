"""URL rules of crawls and maps: normalisation, path globs, scope, and robots.txt matching."""

from __future__ import annotations

import pytest

from litejobs.robots import agent_token, parse_robots
from litejobs.urls import Scope, compile_glob, host_key, normalize_url, origin_of, remove_dot_segments

AGENT = "litejobs/0.1 (+https://github.com/litejobs/litejobs)"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/../../a", "http://example.com/a"),
        ("http://example.com/%7euser/%2f%2F", "http://example.com/~user/%2F%2F"),
        ("http://example.com/%61%62c", "http://example.com/abc"),
        ("http://example.com/caf\u00e9 menu", "http://example.com/caf%C3%A9%20menu"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/a?", "http://example.com/a"),
        ("http://example.com/a?b=2&a=1", "http://example.com/a?b=2&a=1"),
        ("http://example.com/a/", "http://example.com/a/"),
        ("http://b\u00fccher.de/x", "http://xn--bcher-kva.de/x"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://user:pw@Example.com/x", "http://user:pw@example.com/x"),
    ],
)
def test_urls_are_normalised_before_dedupe(raw: str, normal: str) -> None:
    assert normalize_url(raw) == normal


@pytest.mark.parametrize(
    "raw", ["mailto:a@example.org", "javascript:void(0)", "tel:+1", "ftp://example.org/x", "/relative", "http://"]
)
def test_only_absolute_http_urls_normalise(raw: str) -> None:
    assert normalize_url(raw) is None


def test_the_trailing_slash_is_kept_and_normalising_twice_changes_nothing() -> None:
    assert normalize_url("http://example.com/docs") != normalize_url("http://example.com/docs/")
    for url in ("HTTP://X.org:80/a/../b%7e?q=%zz#f", "http://x.org/\u00e9/%C3%A9"):
        once = normalize_url(url)
        assert once is not None and normalize_url(once) == once


def test_dot_segments_follow_rfc_3986() -> None:
    assert remove_dot_segments("/a/b/c/./../../g") == "/a/g"
    assert remove_dot_segments("/mid/content=5/../6") == "/mid/6"
    assert remove_dot_segments("/a/.") == "/a/"


def test_host_key_and_origin_keep_a_non_default_port() -> None:
    url = normalize_url("https://Docs.Example.com:8443/a?b")
    assert url is not None
    assert host_key(url) == "docs.example.com:8443" and origin_of(url) == "https://docs.example.com:8443"


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("/blog/*", ["/blog/a", "/blog/"], ["/blog", "/blog/a/b", "/en/blog/a"]),
        ("/blog/**", ["/blog", "/blog/a", "/blog/a/b"], ["/blogs", "/en/blog/a"]),
        ("*.html", ["/a.html", "/x/y/b.html"], ["/a.htm", "/a.html/x"]),
        ("/p/?", ["/p/1"], ["/p/12", "/p/"]),
        ("/**/item-*", ["/item-1", "/a/b/item-2"], ["/a/items"]),
        ("docs/**", ["/docs/a", "/en/docs/a/b", "/docs"], ["/documents"]),
        ("/caf\u00e9/*", ["/caf%C3%A9/menu"], ["/cafe/menu"]),
        ("/a+b(c)", ["/a+b(c)"], ["/aab(c)"]),
    ],
)
def test_include_and_exclude_globs_match_the_whole_path(
    pattern: str, matching: list[str], not_matching: list[str]
) -> None:
    regex = compile_glob(pattern)
    assert all(regex.fullmatch(p) for p in matching), [p for p in matching if not regex.fullmatch(p)]
    assert not any(regex.fullmatch(p) for p in not_matching), [p for p in not_matching if regex.fullmatch(p)]


def test_same_domain_covers_www_and_optionally_subdomains() -> None:
    scope = Scope.around("https://www.example.com/")
    assert scope.admits("http://example.com/a") and scope.admits("https://www.example.com:8443/a")
    assert not scope.admits("https://docs.example.com/a") and not scope.admits("https://example.org/a")
    assert not scope.admits("https://badexample.com/a")
    subdomains = Scope.around("https://example.com/", allow_subdomains=True)
    assert subdomains.admits("https://docs.example.com/a") and subdomains.admits("https://a.b.example.com/")
    assert not subdomains.admits("https://badexample.com/a")
    anywhere = Scope.around("https://example.com/", same_domain=False)
    assert anywhere.admits("https://example.org/a")


def test_a_redirected_start_page_brings_its_host_into_scope() -> None:
    scope = Scope.around("http://example.com/").with_site_of("https://example.net/home")
    assert scope.admits("https://example.net/a") and scope.admits("http://example.com/a")


def test_scope_skips_binaries_and_applies_include_then_exclude() -> None:
    scope = Scope.around("https://example.com/", include=("/docs/**",), exclude=("/docs/old/**",))
    assert scope.admits("https://example.com/docs/new/page")
    assert not scope.admits("https://example.com/docs/old/page") and not scope.admits("https://example.com/blog")
    assert not scope.admits("https://example.com/docs/logo.PNG") and not scope.admits("https://example.com/docs/a.pdf")


# --- robots.txt (RFC 9309) -----------------------------------------------------------------------

ROBOTS = """
Sitemap: /sitemap-relative.xml
Disallow: /before-any-group   # ignored: not in a group

User-agent: *
Disallow: /private/
Allow: /private/open
Disallow: /*.pdf$
Disallow: /search?*q=
Crawl-delay: 3

User-agent: litejobs
User-agent: otherbot
Disallow: /only-for-us/
Allow: /only-for-us/ok
Disallow: /only-for-us/ok$

User-agent: LiteJobs/2.0
Crawl-delay: 1.5
Disallow: /%7Etilde/

Sitemap: https://example.com/sitemap.xml
"""


def test_robots_choose_this_agents_groups_merged_over_the_star_group() -> None:
    robots = parse_robots(ROBOTS, AGENT, "https://example.com/robots.txt")
    assert agent_token(AGENT) == "litejobs"
    assert robots.allows("https://example.com/private/x")  # the * group does not apply to us
    assert not robots.allows("https://example.com/only-for-us/x")
    assert robots.crawl_delay_s == 1.5
    assert robots.sitemaps == ("https://example.com/sitemap-relative.xml", "https://example.com/sitemap.xml")


def test_robots_longest_match_wins_and_allow_wins_a_tie() -> None:
    robots = parse_robots(ROBOTS, AGENT)
    assert robots.allows("https://example.com/only-for-us/ok/more")  # Allow is longer than Disallow
    # "/only-for-us/ok$" is longer still, and matches only the exact path
    assert not robots.allows("https://example.com/only-for-us/ok")
    tie = parse_robots("User-agent: *\nDisallow: /page\nAllow: /page\nDisallow: /p*ge\n", AGENT)
    assert tie.allows("https://example.com/page") and not tie.allows("https://example.com/pXge")
    assert not robots.allows("https://example.com/~tilde/a")  # %7E and ~ are the same character
    assert robots.allows("https://example.com/robots.txt")


def test_robots_wildcards_and_end_anchors_in_the_star_group() -> None:
    robots = parse_robots(ROBOTS, "somebot/1.0")
    assert not robots.allows("https://example.com/private/x") and robots.allows("https://example.com/private/open/1")
    assert not robots.allows("https://example.com/docs/a.pdf") and robots.allows("https://example.com/docs/a.pdf?x")
    assert not robots.allows("https://example.com/search?lang=en&q=cats") and robots.allows(
        "https://example.com/search"
    )
    assert robots.allows("https://example.com/before-any-group") and robots.crawl_delay_s == 3


def test_robots_without_a_matching_group_allow_everything() -> None:
    robots = parse_robots("User-agent: otherbot\nDisallow: /\n", AGENT)
    assert robots.allows("https://example.com/anything") and robots.crawl_delay_s is None
    assert parse_robots("User-agent: *\nDisallow:\n", AGENT).allows("https://example.com/x")
    assert parse_robots("<html>not robots</html>", AGENT).allows("https://example.com/x")
