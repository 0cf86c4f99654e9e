"""A keyless vendor poll spends its caller's rate limit, never the job owner's."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Http, ServerThread, TargetSite, make_config

KEY, OTHER = "owner-key", "other-key"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServerThread]:
    config = make_config(tmp_path, auth={"keys": [KEY, OTHER], "rate_per_s": 2.0})
    with ServerThread(config) as running:
        yield running


def test_polling_someone_elses_status_url_without_a_key_leaves_the_owner_unthrottled(
    api: ServerThread, site: TargetSite
) -> None:
    owner = Http(api.base_url, KEY)
    url = site.add_html("/p", "<p>x</p>")
    submitted = owner.post("/compat/scraperapi/jobs", {"apiKey": KEY, "url": url})
    assert submitted.status == 200, submitted.json
    status_path = f"/compat/scraperapi/jobs/{submitted.json['id']}"
    time.sleep(1.1)  # the owner's bucket full again (2 tokens) after the submit

    keyless = Http(api.base_url)
    polls = [keyless.get(status_path).status for _ in range(8)]
    owners_own = [owner.get(f"/v1/jobs/{submitted.json['id']}").status for _ in range(2)]

    assert 429 in polls  # the keyless caller is limited...
    assert owners_own == [200, 200]  # ...and the owner's own bucket is untouched
    unknown = [keyless.get("/compat/scraperapi/jobs/job_" + "0" * 26).status for _ in range(3)]
    assert set(unknown) == {429}  # unknown ids spend the caller's bucket too: no free probing
