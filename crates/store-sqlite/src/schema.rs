//! SQLite schema migrations, applied in order at open; the applied count is `PRAGMA user_version`.
//!
//! Timestamps are INTEGER microseconds since the Unix epoch (UTC).

use rusqlite::Connection;

/// Each entry is one migration; never edit a released one, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, runs, run output.
    r#"
CREATE TABLE jobs (
    name             TEXT PRIMARY KEY,
    spec             TEXT NOT NULL,          -- JSON of tempora_core::job::JobSpec
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    version          INTEGER NOT NULL,
    paused           INTEGER NOT NULL DEFAULT 0,
    next_fire_at     INTEGER,                -- cursor: next occurrence not yet fired
    success_count    INTEGER NOT NULL DEFAULT 0,
    error_count      INTEGER NOT NULL DEFAULT 0,
    last_success_at  INTEGER,
    last_error_at    INTEGER
);
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    job              TEXT NOT NULL,
    trigger          TEXT NOT NULL,          -- schedule | manual | retry | dependency
    origin           TEXT NOT NULL,          -- trigger of attempt 1 (retries inherit it)
    scheduled_for    INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    state            TEXT NOT NULL,
    hold             INTEGER NOT NULL DEFAULT 0, -- waiting under concurrency: queue
    queued_at        INTEGER NOT NULL,
    not_before       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    exit_code        INTEGER,
    signal           INTEGER,
    worker           TEXT,
    lease_expires_at INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    overrides        TEXT,
    log_size         INTEGER NOT NULL DEFAULT 0, -- bytes ever appended
    log_dropped      INTEGER NOT NULL DEFAULT 0  -- offset of the first byte still kept
);
-- Exactly once per occurrence: a scheduled occurrence is one row per attempt.
CREATE UNIQUE INDEX runs_occurrence ON runs (job, scheduled_for, attempt) WHERE origin = 'schedule';
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_claimable ON runs (not_before, id) WHERE state = 'queued' AND hold = 0;
CREATE INDEX runs_active ON runs (job, state) WHERE state IN ('queued', 'running');
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE state = 'running';
CREATE TABLE run_logs (
    run_id  INTEGER NOT NULL,
    offset  INTEGER NOT NULL,                -- stream offset of data[0]
    data    BLOB NOT NULL,
    PRIMARY KEY (run_id, offset)
) WITHOUT ROWID;
"#,
    // 2: dependent jobs. Edges, and each child's progress since its last dependency run
    // (persisted, so a restart never loses it).
    r#"
CREATE TABLE job_parents (
    child   TEXT NOT NULL,
    parent  TEXT NOT NULL,
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;
CREATE INDEX job_parents_by_parent ON job_parents (parent, child);
CREATE TABLE dependency_progress (
    child   TEXT NOT NULL,
    parent  TEXT NOT NULL,
    run_id  INTEGER NOT NULL,           -- the parent run that reported
    PRIMARY KEY (child, parent)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN triggered_by TEXT;  -- JSON list of parent run ids
"#,
    // 3: Chronos compatibility. Failures since the last success; async runs waiting for their
    // completion call (no lease meanwhile) and an outcome reported before the process exited.
    r#"
ALTER TABLE jobs ADD COLUMN errors_since_success INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN awaiting_completion INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN completion TEXT;  -- succeeded | failed, reported while still running
"#,
    // 4: cluster. The leader lease (one row, fencing epoch) and the nodes' heartbeats.
    r#"
CREATE TABLE leader_lease (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    node       TEXT NOT NULL,
    address    TEXT NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE nodes (
    id        TEXT PRIMARY KEY,
    address   TEXT NOT NULL,
    last_seen INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX jobs_updated ON jobs (updated_at);
"#,
    // 5: remote workers. The registry of workers (what they advertise, when last heard from);
    // job selectors are read from the spec JSON.
    r#"
CREATE TABLE workers (
    id             TEXT PRIMARY KEY,
    labels         TEXT NOT NULL,          -- JSON object
    slots          INTEGER NOT NULL,
    version        TEXT NOT NULL,
    address        TEXT,
    registered_at  INTEGER NOT NULL,
    last_seen      INTEGER NOT NULL
);
CREATE INDEX runs_by_worker ON runs (worker) WHERE state = 'running';
"#,
    // 6: job counts kept by triggers, so `/metrics` and `/api/v1/status` read one row instead
    // of counting a million jobs on every scrape.
    r#"
CREATE TABLE job_counts (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    total  INTEGER NOT NULL,
    paused INTEGER NOT NULL
);
INSERT INTO job_counts SELECT 1, COUNT(*), COALESCE(SUM(paused != 0), 0) FROM jobs;
CREATE TRIGGER job_counts_insert AFTER INSERT ON jobs BEGIN
    UPDATE job_counts SET total = total + 1, paused = paused + (NEW.paused != 0) WHERE id = 1;
END;
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs BEGIN
    UPDATE job_counts SET total = total - 1, paused = paused - (OLD.paused != 0) WHERE id = 1;
END;
CREATE TRIGGER job_counts_paused AFTER UPDATE OF paused ON jobs
    WHEN (NEW.paused != 0) != (OLD.paused != 0) BEGIN
    UPDATE job_counts SET paused = paused + (NEW.paused != 0) - (OLD.paused != 0) WHERE id = 1;
END;
"#,
    // 7: held runs (`concurrency: queue`) found without reading a job's other queued runs.
    r#"
CREATE INDEX runs_held ON runs (job) WHERE state = 'queued' AND hold = 1;
"#,
    // 8: access control. API tokens (hashes only; a name is unique among tokens not revoked),
    // which token registered each worker id, and the audit log of changes.
    r#"
CREATE TABLE tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    last_used_at  INTEGER,
    revoked_at    INTEGER,
    created_by    TEXT
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE TABLE worker_tokens (
    worker    TEXT PRIMARY KEY,
    token_id  TEXT NOT NULL
);
CREATE TABLE audit (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    token_id    TEXT NOT NULL,
    token_name  TEXT NOT NULL,
    role        TEXT NOT NULL,
    remote      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target      TEXT NOT NULL,
    job         TEXT,
    spec_hash   TEXT,
    detail      TEXT,
    status      INTEGER NOT NULL
);
CREATE INDEX audit_by_job ON audit (job, id) WHERE job IS NOT NULL;
CREATE INDEX audit_by_time ON audit (at);
"#,
    // 9: consecutive skipped occurrences fold into one row.
    r#"
ALTER TABLE runs ADD COLUMN occurrences INTEGER NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN last_scheduled_for INTEGER;
"#,
    // 10: the jobs with per-job metric series (label `metrics: "true"`), found without a scan.
    r#"
CREATE INDEX jobs_metrics ON jobs (name) WHERE json_extract(spec, '$.labels.metrics') = 'true';
"#,
    // 11: each node's and each worker's clock offset to the reference clock (microseconds).
    r#"
ALTER TABLE nodes ADD COLUMN clock_offset_us INTEGER;
ALTER TABLE workers ADD COLUMN clock_offset_us INTEGER;
"#,
    // 12: backfill. A backfilled occurrence has the same key as a scheduled one: one run per
    // occurrence and attempt, whichever made it.
    r#"
DROP INDEX runs_occurrence;
CREATE UNIQUE INDEX runs_occurrence ON runs (job, scheduled_for, attempt)
    WHERE origin IN ('schedule', 'backfill');
"#,
    // 13: the newest occurrence whose run retention deleted, per job (microseconds): a backfill
    // does not run again what may have run.
    r#"
ALTER TABLE jobs ADD COLUMN pruned_through INTEGER;
"#,
    // 14: notifications, written with the end of their run; `next_at` is when the next attempt
    // is due (or when a claim's lease ends).
    r#"
CREATE TABLE notifications (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      INTEGER NOT NULL,
    job         TEXT NOT NULL,
    target      TEXT NOT NULL,
    events      TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    next_at     INTEGER NOT NULL
);
CREATE INDEX notifications_run ON notifications (run_id);
CREATE INDEX notifications_due ON notifications (next_at) WHERE state = 'pending';
"#,
    // 15: artifacts, content-addressed, in 1 MiB chunks.
    r#"
CREATE TABLE artifacts (
    sha256      TEXT PRIMARY KEY,
    size        INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE artifact_chunks (
    sha256  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    data    BLOB NOT NULL,
    PRIMARY KEY (sha256, seq)
);
"#,
];

/// Apply the migrations not yet applied, each in its own transaction.
pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let applied: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {sql}; PRAGMA user_version = {version}; COMMIT;"
        ))?;
        tracing::info!(message = "applied SQLite migration", version);
    }
    Ok(())
}
