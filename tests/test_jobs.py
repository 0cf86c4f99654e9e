"""The job model: legal moves, backoff, ids and times."""

from __future__ import annotations

import itertools

from litejobs.jobs import (
    TERMINAL,
    TRANSITIONS,
    JobState,
    backoff_s,
    can_move,
    iso_ms,
    new_job_id,
    recovery_error,
    should_retry,
)


def test_terminal_states_go_nowhere_but_failed_and_cancelled_may_be_retried() -> None:
    assert TRANSITIONS[JobState.COMPLETED] == frozenset()
    assert TRANSITIONS[JobState.PARTIAL] == frozenset()
    assert TRANSITIONS[JobState.FAILED] == {JobState.WAITING}
    assert TRANSITIONS[JobState.CANCELLED] == {JobState.WAITING}


def test_the_lifecycle_of_api_md_is_exactly_the_legal_moves() -> None:
    legal = {
        ("waiting", "active"), ("waiting", "cancelled"), ("delayed", "waiting"), ("delayed", "cancelled"),
        ("active", "completed"), ("active", "partial"), ("active", "failed"), ("active", "delayed"),
        ("active", "cancelled"), ("active", "waiting"), ("failed", "waiting"), ("cancelled", "waiting"),
    }  # fmt: skip
    for source, target in itertools.product(JobState, JobState):
        assert can_move(source, target) == ((source.value, target.value) in legal), (source, target)


def test_a_job_is_never_claimed_from_delayed_or_terminal_directly() -> None:
    assert not can_move(JobState.DELAYED, JobState.ACTIVE)
    for state in TERMINAL:
        assert not can_move(state, JobState.ACTIVE)


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    assert backoff_s(1, 1.0, 60, jitter=1.0) == 1.0
    assert backoff_s(2, 1.0, 60, jitter=1.0) == 2.0
    assert backoff_s(3, 1.0, 60, jitter=1.0) == 4.0
    assert backoff_s(20, 1.0, 60, jitter=1.0) == 60
    assert backoff_s(3, 1.0, 60, jitter=0.0) == 2.0  # jitter spreads over [half, full]


def test_retry_only_while_attempts_remain_and_the_error_is_retryable() -> None:
    assert should_retry(1, 3, True)
    assert should_retry(2, 3, True)
    assert not should_retry(3, 3, True)
    assert not should_retry(1, 3, False)


def test_job_ids_are_128_random_bits() -> None:
    ids = {new_job_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("job_") and len(i) == 36 for i in ids)


def test_times_are_utc_iso_with_milliseconds() -> None:
    assert iso_ms(1_795_000_000_123) == "2026-11-18T11:06:40.123Z"
    assert iso_ms(1_795_000_000_000) == "2026-11-18T11:06:40.000Z"
    assert iso_ms(1_795_000_000_999) == "2026-11-18T11:06:40.999Z"
    assert iso_ms(1_795_000_001_007) == "2026-11-18T11:06:41.007Z"  # the next second, not the cached one
    assert iso_ms(None) is None


def test_recovery_error_poisons_past_the_limit_then_fails_without_attempts_else_requeues() -> None:
    assert recovery_error(3, 1, 3, max_recoveries=2) == {
        "code": "poisoned",
        "message": "the worker died 3 times running this job",
    }
    assert recovery_error(1, 3, 3, max_recoveries=2)["code"] == "worker_lost"  # type: ignore[index]
    assert recovery_error(2, 2, 3, max_recoveries=2) is None
