"""A fetch job's `cookies` are matched again at every hop of its redirects, on the origin of its URL only."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from tests.support import ServerThread, TargetSite


class CookieSite:
    """Pages that redirect where `?to=` says (setting `?set=name=value` if asked), and pages that
    answer with the Cookie header they got; each request's Cookie header is kept by path."""

    def __init__(self, site: TargetSite) -> None:
        self.site = site
        self.cookies: dict[str, list[str | None]] = {}

    def redirect(self, path: str) -> str:
        async def handler(request: web.Request) -> web.Response:
            self._keep(request)
            response = web.Response(status=302, headers={"Location": request.query["to"]})
            if "set" in request.query:
                name, _, value = request.query["set"].partition("=")
                response.set_cookie(name, value, path="/")
            return response

        return self.site.add(path, handler)

    def echo(self, path: str) -> str:
        async def handler(request: web.Request) -> web.Response:
            self._keep(request)
            return web.Response(text=request.headers.get("Cookie", "(none)"), content_type="text/plain")

        return self.site.add(path, handler)

    def _keep(self, request: web.Request) -> None:
        self.cookies.setdefault(request.path, []).append(request.headers.get("Cookie"))


@pytest.fixture
def cookie_site(site: TargetSite) -> CookieSite:
    return CookieSite(site)


@pytest.fixture
def other_origin() -> Iterator[CookieSite]:
    """Another origin: a target on 127.0.0.2."""
    target = TargetSite("127.0.0.2")
    yield CookieSite(target)
    target.close()


def fetch_text(server: ServerThread, url: str, cookies: Any) -> dict[str, Any]:
    """The finished fetch job of `url` with `cookies`, its result's `text` in job["text"]."""
    job = server.http.wait(server.http.submit({"url": url, "cookies": cookies, "output": ["text"]})["job_id"])
    if job["status"] == "completed":
        job["text"] = server.http.get(f"/v1/jobs/{job['job_id']}/result").json["outputs"]["text"]
    return job


def test_a_cookie_is_sent_where_a_redirect_leads_when_its_path_matches_there(
    server: ServerThread, cookie_site: CookieSite
) -> None:
    start = cookie_site.redirect("/redirect")
    cookie_site.echo("/cookies/app")
    job = fetch_text(server, f"{start}?to=/cookies/app", [{"name": "sid", "value": "1", "path": "/cookies"}])
    assert job["status"] == "completed" and job["text"] == "sid=1"
    assert cookie_site.cookies["/redirect"] == [None]


def test_a_cookie_is_not_sent_where_a_redirect_leads_out_of_its_path(
    server: ServerThread, cookie_site: CookieSite
) -> None:
    start = cookie_site.redirect("/redirect")
    cookie_site.echo("/cookies/public")
    job = fetch_text(server, f"{start}?to=/cookies/public", [{"name": "p", "value": "secret", "path": "/redirect"}])
    assert job["status"] == "completed" and job["text"] == "(none)"
    assert cookie_site.cookies["/redirect"] == ["p=secret"]


def test_cookies_come_back_when_redirects_return_to_their_origin_and_never_go_to_another(
    server: ServerThread, cookie_site: CookieSite, other_origin: CookieSite
) -> None:
    start = cookie_site.redirect("/out")
    back = cookie_site.echo("/back")
    bounce = other_origin.redirect("/bounce")
    domain_cookie = {"name": "d", "value": "2", "domain": "127.0.0.2"}  # names the other host, yet stays home
    job = fetch_text(
        server, f"{start}?to={quote(f'{bounce}?to={back}', safe='')}", [{"name": "sid", "value": "1"}, domain_cookie]
    )
    assert job["status"] == "completed" and job["text"] == "sid=1"
    assert other_origin.cookies["/bounce"] == [None]


def test_a_cookie_a_redirect_sets_replaces_the_given_one_of_that_name(
    server: ServerThread, cookie_site: CookieSite
) -> None:
    start = cookie_site.redirect("/login")
    cookie_site.echo("/home")
    given = [{"name": "sid", "value": "old"}, {"name": "lang", "value": "fr"}]
    job = fetch_text(server, f"{start}?to=/home&set=sid=new", given)
    assert job["status"] == "completed" and job["text"] == "lang=fr; sid=new"
    assert cookie_site.cookies["/login"] == ["sid=old; lang=fr"]


@pytest.mark.parametrize(
    ("cookie", "field"),
    [
        ({"name": "a", "value": "1\r\nX-Injected: 1"}, "input.cookies[0].value"),
        ({"name": "a\nb", "value": "1"}, "input.cookies[0].name"),
    ],
)
def test_a_cookie_with_a_line_break_is_refused_at_submit(
    server: ServerThread, cookie_site: CookieSite, cookie: dict[str, str], field: str
) -> None:
    url = cookie_site.echo("/home")
    resp = server.http.post("/v1/jobs", {"kind": "fetch", "input": {"url": url, "cookies": [cookie]}})
    assert resp.status == 422, (resp.status, resp.body)
    assert field in [detail["field"] for detail in resp.json["error"]["details"]]
    assert "/home" not in cookie_site.cookies
