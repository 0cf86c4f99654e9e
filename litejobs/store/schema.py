"""The SQLite schema as numbered migrations; `PRAGMA user_version` records how far a file is."""

from __future__ import annotations

#: Each entry migrates from version i to i+1. Append; never edit a released one.
MIGRATIONS: list[str] = [
    # 1: jobs, their results, attempts, files and crawl pages
    """
    CREATE TABLE jobs (
        -- AUTOINCREMENT: seq never reused, so FIFO order and list cursors stay stable after deletes
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT NOT NULL UNIQUE,
        kind             TEXT NOT NULL,
        owner            TEXT NOT NULL,
        status           TEXT NOT NULL,
        priority         INTEGER NOT NULL DEFAULT 0,
        run_at           INTEGER NOT NULL,
        input            TEXT NOT NULL,
        meta             TEXT NOT NULL,
        webhook          TEXT,
        attempts         INTEGER NOT NULL DEFAULT 0,
        max_attempts     INTEGER NOT NULL,
        timeout_s        REAL NOT NULL,
        recoveries       INTEGER NOT NULL DEFAULT 0,
        lease_until      INTEGER,
        lease_owner      TEXT,
        progress         TEXT,
        error            TEXT,
        result_available INTEGER NOT NULL DEFAULT 0,
        idempotency_key  TEXT,
        request_hash     TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        started_at       INTEGER,
        completed_at     INTEGER,
        expires_at       INTEGER
    );
    -- (priority DESC, run_at) and not (priority, run_at): SQLite would sort on every claim otherwise
    CREATE INDEX jobs_claim ON jobs(priority DESC, run_at) WHERE status = 'waiting';
    CREATE INDEX jobs_delayed ON jobs(run_at) WHERE status = 'delayed';
    CREATE INDEX jobs_leases ON jobs(lease_until) WHERE status = 'active';
    CREATE INDEX jobs_expiry ON jobs(expires_at) WHERE expires_at IS NOT NULL;
    CREATE INDEX jobs_owner ON jobs(owner, seq);
    CREATE UNIQUE INDEX jobs_idempotency ON jobs(owner, idempotency_key)
        WHERE idempotency_key IS NOT NULL;

    CREATE TABLE results (
        job_id  TEXT PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
        outputs TEXT NOT NULL,
        stats   TEXT NOT NULL
    );
    CREATE TABLE attempts (
        job_id     TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        number     INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        outcome    TEXT,
        error      TEXT,
        PRIMARY KEY (job_id, number)
    );
    CREATE TABLE files (
        job_id       TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        content_type TEXT NOT NULL,
        size         INTEGER NOT NULL,
        PRIMARY KEY (job_id, name)
    );
    CREATE TABLE pages (
        job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        seq    INTEGER NOT NULL,
        url    TEXT NOT NULL,
        data   TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    );
    """,
    # 2: event streams resume from a time: find a caller's jobs changed since then
    """
    CREATE INDEX jobs_owner_updated ON jobs(owner, updated_at);
    """,
    # 3: webhook deliveries, kept in the database so that pending retries survive a restart
    """
    CREATE TABLE webhook_deliveries (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        event       TEXT NOT NULL,
        url         TEXT NOT NULL,
        -- the exact bytes sent: every retry carries (and signs) the same body
        payload     BLOB NOT NULL,
        state       TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        -- when a pending delivery is due (while one is being sent: when its sender's claim ends)
        next_at     INTEGER,
        last_status INTEGER,
        last_error  TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_at) WHERE state = 'pending';
    CREATE INDEX webhook_deliveries_job ON webhook_deliveries(job_id, seq);
    """,
    # 4: attempts belong to a run (1, then one more per retry), so that a retry keeps the earlier
    # runs' attempts instead of overwriting them. SQLite cannot change a primary key: rebuild.
    """
    CREATE TABLE attempts_by_run (
        job_id     TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        run        INTEGER NOT NULL DEFAULT 1,
        number     INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        ended_at   INTEGER,
        outcome    TEXT,
        error      TEXT,
        PRIMARY KEY (job_id, run, number)
    );
    INSERT INTO attempts_by_run (job_id, run, number, started_at, ended_at, outcome, error)
        SELECT job_id, 1, number, started_at, ended_at, outcome, error FROM attempts;
    DROP TABLE attempts;
    ALTER TABLE attempts_by_run RENAME TO attempts;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
