"""A job past its retention stays while its webhook is still being delivered, so that the expiry
sweep never drops a pending retry with the job: the receiver gets the terminal webhook, then the
job goes (both stores)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.pg import store_url  # noqa: F401 (a fixture)
from tests.support import ServerThread, TargetSite, make_config
from tests.test_webhooks import eventually, receiver


def test_an_expired_job_waits_for_its_pending_webhook_then_goes(
    tmp_path: Path,
    site: TargetSite,
    store_url: str,  # noqa: F811
) -> None:
    hook, received = receiver(site, "/hook", [500, 200])
    config = make_config(
        tmp_path,
        store={"url": store_url, "retention_s": 0.3, "sweep_interval_s": 0.1},
        # the retry comes 1-2 s after the 500: several sweeps after the job's expiry
        webhooks={"backoff_base_s": 2.0, "backoff_max_s": 2.0},
    )
    with ServerThread(config) as server:
        job_id = server.http.submit({"url": site.add_html("/page", "<p>hi</p>")}, webhook={"url": hook})["job_id"]
        eventually(lambda: len(received) == 1)
        time.sleep(0.6)  # past expires_at, and several sweeps
        meanwhile = server.http.get(f"/v1/jobs/{job_id}")
        pending = server.http.get(f"/v1/jobs/{job_id}/webhook").json["deliveries"]
        eventually(lambda: len(received) == 2)
        eventually(lambda: server.http.get(f"/v1/jobs/{job_id}").status == 404)
    assert meanwhile.status == 200 and meanwhile.json["status"] == "completed"
    assert [(d["state"], d["attempts"], d["last_status"]) for d in pending] == [("pending", 1, 500)]
    assert received[0][1] == received[1][1]  # the terminal webhook, sent again after the 500
