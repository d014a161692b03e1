//! PostgreSQL schema migrations, applied in order at connect inside one transaction that holds
//! an advisory lock, so concurrent nodes starting together migrate once. Applied versions are
//! rows of `schema_migrations`.
//!
//! Timestamps are `bigint` microseconds since the Unix epoch (UTC), as in the SQLite store.

use tokio_postgres::Client;

/// Advisory lock key guarding migrations (any constant unique to tempora).
const MIGRATION_LOCK: i64 = 0x7465_6d70_6f72_6101;

/// Each entry is one migration; never edit a released one, append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, runs, run output, dependencies, Chronos compatibility (the SQLite store's
    // migrations 1–3 in one step).
    r#"
CREATE TABLE jobs (
    name                 text PRIMARY KEY,
    spec                 text NOT NULL,          -- JSON of tempora_core::job::JobSpec
    created_at           bigint NOT NULL,
    updated_at           bigint NOT NULL,
    version              bigint NOT NULL,
    paused               boolean NOT NULL DEFAULT false,
    next_fire_at         bigint,                 -- cursor: next occurrence not yet fired
    success_count        bigint NOT NULL DEFAULT 0,
    error_count          bigint NOT NULL DEFAULT 0,
    last_success_at      bigint,
    last_error_at        bigint,
    errors_since_success bigint NOT NULL DEFAULT 0
);
CREATE TABLE runs (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job                 text NOT NULL,
    trigger             text NOT NULL,           -- schedule | manual | retry | dependency
    origin              text NOT NULL,           -- trigger of attempt 1 (retries inherit it)
    scheduled_for       bigint NOT NULL,
    attempt             bigint NOT NULL,
    state               text NOT NULL,
    hold                boolean NOT NULL DEFAULT false, -- waiting under concurrency: queue
    queued_at           bigint NOT NULL,
    not_before          bigint NOT NULL,
    started_at          bigint,
    finished_at         bigint,
    exit_code           integer,
    signal              integer,
    worker              text,
    lease_expires_at    bigint,
    cancel_requested    boolean NOT NULL DEFAULT false,
    error               text,
    overrides           text,                    -- JSON of RunOverrides
    log_size            bigint NOT NULL DEFAULT 0, -- bytes ever appended
    log_dropped         bigint NOT NULL DEFAULT 0, -- offset of the first byte still kept
    triggered_by        text,                    -- JSON list of parent run ids
    awaiting_completion boolean NOT NULL DEFAULT false,
    completion          text                     -- succeeded | failed, reported while running
);
-- Exactly once per occurrence: a scheduled occurrence is one row per attempt.
CREATE UNIQUE INDEX runs_occurrence ON runs (job, scheduled_for, attempt) WHERE origin = 'schedule';
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_claimable ON runs (not_before, id) WHERE state = 'queued' AND NOT hold;
CREATE INDEX runs_active ON runs (job, state) WHERE state IN ('queued', 'running');
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE state = 'running';
CREATE INDEX runs_by_worker ON runs (worker) WHERE state = 'running';
CREATE TABLE run_logs (
    run_id bigint NOT NULL,
    pos    bigint NOT NULL,                      -- stream offset of data[0]
    data   bytea NOT NULL,
    PRIMARY KEY (run_id, pos)
);
ALTER TABLE run_logs ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE TABLE job_parents (
    child  text NOT NULL,
    parent text NOT NULL,
    PRIMARY KEY (child, parent)
);
CREATE INDEX job_parents_by_parent ON job_parents (parent, child);
CREATE TABLE dependency_progress (
    child  text NOT NULL,
    parent text NOT NULL,
    run_id bigint NOT NULL,                      -- the parent run that reported
    PRIMARY KEY (child, parent)
);
"#,
    // 2: cluster. The leader lease (one row, fencing epoch) and the nodes' heartbeats.
    r#"
CREATE TABLE leader_lease (
    id         integer PRIMARY KEY CHECK (id = 1),
    node       text NOT NULL,
    address    text NOT NULL,
    epoch      bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE TABLE nodes (
    id        text PRIMARY KEY,
    address   text NOT NULL,
    last_seen bigint NOT NULL
);
CREATE INDEX jobs_updated ON jobs (updated_at);
"#,
    // 3: remote workers. Each job's `selector` as jsonb (derived from the spec, so writes need
    // not know about it) for `selector <@ labels` at claim; the registry of workers.
    r#"
ALTER TABLE jobs ADD COLUMN selector jsonb
    GENERATED ALWAYS AS (COALESCE(spec::jsonb -> 'selector', '{}'::jsonb)) STORED;
CREATE TABLE workers (
    id             text PRIMARY KEY,
    labels         jsonb NOT NULL,
    slots          bigint NOT NULL,
    version        text NOT NULL,
    address        text,
    registered_at  bigint NOT NULL,
    last_seen      bigint NOT NULL
);
"#,
    // 4: held runs (`concurrency: queue`) found without reading a job's other queued runs.
    r#"
CREATE INDEX runs_held ON runs (job) WHERE state = 'queued' AND hold;
"#,
    // 5: access control. API tokens (hashes only; a name is unique among tokens not revoked),
    // which token registered each worker id, and the audit log of changes.
    r#"
CREATE TABLE tokens (
    id            text PRIMARY KEY,
    name          text NOT NULL,
    role          text NOT NULL,
    hash          text NOT NULL UNIQUE,
    created_at    bigint NOT NULL,
    expires_at    bigint,
    last_used_at  bigint,
    revoked_at    bigint,
    created_by    text
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE TABLE worker_tokens (
    worker    text PRIMARY KEY,
    token_id  text NOT NULL
);
CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    at          bigint NOT NULL,
    token_id    text NOT NULL,
    token_name  text NOT NULL,
    role        text NOT NULL,
    remote      text NOT NULL,
    action      text NOT NULL,
    target      text NOT NULL,
    job         text,
    spec_hash   text,
    detail      text,
    status      integer NOT NULL
);
CREATE INDEX audit_by_job ON audit (job, id) WHERE job IS NOT NULL;
CREATE INDEX audit_by_time ON audit (at);
"#,
    // 6: consecutive skipped occurrences fold into one row.
    r#"
ALTER TABLE runs ADD COLUMN occurrences bigint NOT NULL DEFAULT 1;
ALTER TABLE runs ADD COLUMN last_scheduled_for bigint;
"#,
    // 7: the jobs with per-job metric series (label `metrics: "true"`), found without a scan.
    r#"
CREATE INDEX jobs_metrics ON jobs (name) WHERE (spec::jsonb -> 'labels' ->> 'metrics') = 'true';
"#,
    // 8: each node's and each worker's clock offset to the database's clock (microseconds).
    r#"
ALTER TABLE nodes ADD COLUMN clock_offset_us bigint;
ALTER TABLE workers ADD COLUMN clock_offset_us bigint;
"#,
    // 9: backfill. A backfilled occurrence has the same key as a scheduled one: one run per
    // occurrence and attempt, whichever made it.
    r#"
DROP INDEX runs_occurrence;
CREATE UNIQUE INDEX runs_occurrence ON runs (job, scheduled_for, attempt)
    WHERE origin IN ('schedule', 'backfill');
"#,
    // 10: the newest occurrence whose run retention deleted, per job (microseconds): a backfill
    // does not run again what may have run.
    r#"
ALTER TABLE jobs ADD COLUMN pruned_through bigint;
"#,
    // 11: a job's kind is a capability a worker must have: the claim's `selector <@ labels`
    // reads the effective selector, the job's own plus its kind's reserved label
    // (`tempora.io/command|http|container`, see `tempora_core::kind`).
    r#"
ALTER TABLE jobs DROP COLUMN selector;
ALTER TABLE jobs ADD COLUMN selector jsonb
    GENERATED ALWAYS AS (COALESCE(spec::jsonb -> 'selector', '{}'::jsonb) || CASE
        WHEN spec::jsonb ? 'container' THEN '{"tempora.io/container": "yes"}'::jsonb
        WHEN spec::jsonb ? 'http' THEN '{"tempora.io/http": "yes"}'::jsonb
        ELSE '{"tempora.io/command": "yes"}'::jsonb END) STORED;
"#,
    // 12: notifications, written with the end of their run; `next_at` is when the next attempt
    // is due (or when a claim's lease ends).
    r#"
CREATE TABLE notifications (
    id          bigserial PRIMARY KEY,
    run_id      bigint NOT NULL,
    job         text NOT NULL,
    target      text NOT NULL,
    events      text NOT NULL,
    state       text NOT NULL,
    attempts    jsonb NOT NULL,
    created_at  bigint NOT NULL,
    next_at     bigint NOT NULL
);
CREATE INDEX notifications_run ON notifications (run_id);
CREATE INDEX notifications_due ON notifications (next_at) WHERE state = 'pending';
"#,
    // 13: artifacts, content-addressed; the bytes in a PostgreSQL large object each (written
    // and read in 1 MiB pieces).
    r#"
CREATE TABLE artifacts (
    sha256      text PRIMARY KEY,
    size        bigint NOT NULL,
    created_at  bigint NOT NULL,
    blob        oid NOT NULL
);
"#,
];

/// Apply the migrations not yet applied, all in one transaction under an advisory lock.
pub async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             version bigint PRIMARY KEY, \
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .try_get(0)?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= applied {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(message = "applied PostgreSQL migration", version);
    }
    tx.commit().await
}
