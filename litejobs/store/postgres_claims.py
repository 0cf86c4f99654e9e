"""The claim statements of PostgresStore: due delayed jobs made waiting, waiting jobs leased."""

from __future__ import annotations

from litejobs.store.rows import JOB_COLUMNS

# One statement: lock up to $1 waiting jobs in claim order, skipping rows another node is claiming;
# cut the list at the first job recovered from a dead worker (it runs alone, and only for an idle
# caller, $5), lease what remains and open each job's attempt. Its run is derived as SQLite's
# OPEN_ATTEMPT does: attempt 1 opens a new run, a later one continues the latest (a conflict is a
# retried job's stale row from before runs, replaced).
CLAIM = f"""
WITH candidates AS (
    SELECT seq, recoveries, priority, run_at FROM jobs WHERE status = 'waiting'
    ORDER BY priority DESC, run_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED
), ranked AS (
    SELECT seq, recoveries, row_number() OVER (ORDER BY priority DESC, run_at, seq) AS rank FROM candidates
), cut AS (
    SELECT min(rank) AS rank FROM ranked WHERE recoveries > 0
), chosen AS (
    SELECT ranked.seq FROM ranked, cut
    WHERE cut.rank IS NULL OR ranked.rank < cut.rank OR (cut.rank = 1 AND ranked.rank = 1 AND $5)
), claimed AS (
    UPDATE jobs SET status = 'active', attempts = attempts + 1, lease_until = $2, lease_owner = $3,
        started_at = COALESCE(started_at, $4), updated_at = $4, progress = NULL
    FROM chosen WHERE jobs.seq = chosen.seq AND jobs.status = 'waiting'
    RETURNING {", ".join("jobs." + c.strip() for c in JOB_COLUMNS.split(","))}
), opened AS (
    INSERT INTO attempts (job_id, run, number, started_at)
    SELECT claimed.id, (
        SELECT CASE WHEN claimed.attempts = 1 THEN coalesce(max(a.run), 0) + 1 ELSE coalesce(max(a.run), 1) END
        FROM attempts a WHERE a.job_id = claimed.id
    ), claimed.attempts, $4 FROM claimed
    ON CONFLICT (job_id, run, number) DO UPDATE
        SET started_at = EXCLUDED.started_at, ended_at = NULL, outcome = NULL, error = NULL
)
SELECT * FROM claimed ORDER BY priority DESC, run_at, seq
"""


#: due delayed jobs made waiting at once, oldest first; rows another node is promoting are skipped
PROMOTE = f"""
UPDATE jobs SET status = 'waiting', updated_at = $1 WHERE seq IN (
    SELECT seq FROM jobs WHERE status = 'delayed' AND run_at <= $1 ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED
) AND status = 'delayed' RETURNING {JOB_COLUMNS}
"""
#: due jobs one claim promotes, when it does; the claims that follow take the rest
PROMOTE_BATCH = 100
