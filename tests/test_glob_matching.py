"""Crawl and map globs match in time linear in the path: a hostile pattern or a hostile link cannot
freeze the server (the regex they once compiled to backtracked for hours, holding the GIL)."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

from litejobs.urls import _GLOB_TOKEN, compile_glob, normalize_escapes
from tests.crawl_support import all_pages, crawl
from tests.support import PYTHON, ROOT, ServerProcess, TargetSite

#: the auditor's patterns: one a member could send, one innocent that a site's links turn hostile
HOSTILE = [("**a**a**a**a**b", "a"), ("**a**a**a**a**a**a**b", "a"), ("**/*-*-*.html", "-")]


def regex_of(pattern: str) -> re.Pattern[str]:
    """The translation the matcher replaced, kept as the reference for what a glob means."""
    pattern = normalize_escapes(pattern.strip())
    parts = [] if pattern.startswith("/") else ["(?:.*/)?"]
    position = 0
    for match in _GLOB_TOKEN.finditer(pattern):
        parts.append(re.escape(pattern[position : match.start()]))
        parts.append({"/**": "(?:/.*)?", "**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}[match.group()])
        position = match.end()
    parts.append(re.escape(pattern[position:]))
    return re.compile("".join(parts))


def test_globs_answer_as_the_regexes_did_on_small_random_inputs() -> None:
    """Paths come normalised (percent-encoded: no raw newline, where `.` and `[^/]` differed)."""
    rng = random.Random(7)
    checked = 0
    for _ in range(5000):
        pattern = ("/" if rng.random() < 0.5 else "") + "".join(rng.choice("ab/*?.") for _ in range(rng.randint(1, 9)))
        glob, regex = compile_glob(pattern), regex_of(pattern)
        for _ in range(12):
            path = "/" + "".join(rng.choice("ab/.") for _ in range(rng.randint(0, 10)))
            assert glob.fullmatch(path) == bool(regex.fullmatch(path)), (pattern, path)
            checked += 1
    assert checked == 60_000


def test_hostile_patterns_on_long_paths_finish() -> None:
    """At 300 characters the first regex took 32 s; at 20,000 the regexes would run for ages. `re`
    holds the GIL, so no in-process timeout could end a regression: a child process does the
    matching, and the bound is a hang guard, not a speed test (linear matching takes milliseconds)."""
    script = f"""
from litejobs.urls import compile_glob
for pattern, char in {HOSTILE!r}:
    glob = compile_glob(pattern)
    path = "/" + char * 20_000
    assert not glob.fullmatch(path), pattern
    assert glob.fullmatch(path[:-4] + ("b" if char == "a" else "-.html")), pattern
print("matched")
"""
    done = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert (done.returncode, done.stdout.strip()) == (0, "matched"), done.stderr


def test_a_crawl_with_a_hostile_glob_and_hostile_links_completes(tmp_path: Path, site: TargetSite) -> None:
    """The member's pattern and the site's long links: the crawl follows the link that matches, skips
    those that don't, and the server answers meanwhile (a child server: a hang cannot hold the GIL
    of the test)."""
    long_a, dashes = "/" + "a" * 3000, "/" + "-" * 3000
    links = "".join(f'<a href="{href}">x</a>' for href in (long_a, dashes, dashes + "x", "/aaaaab"))
    start = site.add_html("/", f"<html><body>{links}</body></html>")
    for path in (long_a, dashes, dashes + "x", "/aaaaab"):
        site.add_html(path, "<p>page</p>")
    server = ServerProcess(tmp_path / "litejobs.db")
    try:
        job = crawl(server.http, url=start, include=["**a**a**a**a**b"], exclude=["**/*-*-*.html"], max_pages=10)
        assert server.http.get("/healthz").status == 200
        assert job["status"] == "completed"
        pages = all_pages(server.http, job["job_id"])
        assert sorted(p["url"].removeprefix(site.base_url) for p in pages) == ["/", "/aaaaab"]
    finally:
        server.kill()
