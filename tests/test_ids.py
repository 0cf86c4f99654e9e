"""Job and delivery ids come from a pool of OS randomness: never repeated across threads or a fork."""

from __future__ import annotations

import os
import re
import threading

from litejobs.ids import random_hex
from litejobs.jobs import new_job_id


def test_ids_taken_by_many_threads_at_once_are_all_distinct_and_well_formed() -> None:
    taken: list[list[str]] = [[] for _ in range(4)]

    def take(into: list[str]) -> None:
        into.extend(new_job_id() for _ in range(5000))

    threads = [threading.Thread(target=take, args=(into,)) for into in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = [job_id for into in taken for job_id in into]
    assert len(ids) == 20_000 and len(set(ids)) == 20_000
    assert all(re.fullmatch(r"job_[0-9a-f]{32}", job_id) for job_id in ids)


def test_a_forked_child_does_not_repeat_its_parents_next_ids() -> None:
    random_hex(16)  # the pool holds unread bytes when the fork happens
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.write(write_end, " ".join(random_hex(16) for _ in range(8)).encode())
        os._exit(0)
    os.close(write_end)
    from_child = os.read(read_end, 65536).decode().split()
    os.close(read_end)
    os.waitpid(child, 0)
    from_parent = [random_hex(16) for _ in range(8)]
    assert len(from_child) == 8 and not set(from_child) & set(from_parent)


def test_a_request_for_more_than_the_pool_holds_is_met_whole() -> None:
    assert len(random_hex(10_000)) == 20_000
