//! The notifications table: claims with a lease, attempts appended, a run's list.

use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, params};
use tempora_store::notify::{AttemptOutcome, Notification, NotificationAttempt, NotificationState};
use tempora_store::{StoreError, StoreResult};

use crate::rows::{db, ts, us};

/// Most notifications of one job in one claim: a job whose receivers hang or fail cannot take
/// every sender while other jobs' notifications wait.
const PER_JOB: u32 = tempora_store::notify::PER_JOB_CLAIM;

const COLS: &str = "id, run_id, job, target, events, state, attempts, created_at, next_at";

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored notification: {e}"))
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

type Raw = (i64, i64, String, String, String, String, String, i64, i64);

fn decode(raw: Raw) -> StoreResult<Notification> {
    let (id, run_id, job, target, events, state, attempts, created_at, next_at) = raw;
    Ok(Notification {
        id,
        run_id,
        job,
        target: serde_json::from_str(&target).map_err(corrupt)?,
        events: serde_json::from_str(&events).map_err(corrupt)?,
        state: NotificationState::parse(&state).ok_or_else(|| corrupt(&state))?,
        attempts: serde_json::from_str(&attempts).map_err(corrupt)?,
        created_at: ts(created_at),
        next_at: ts(next_at),
    })
}

/// Record a pending notification due at `now`.
pub fn insert(
    c: &Connection,
    run_id: i64,
    job: &str,
    target: &str,
    events: &str,
    now: Timestamp,
) -> StoreResult<()> {
    c.prepare_cached(
        "INSERT INTO notifications (run_id, job, target, events, state, attempts, created_at, next_at) \
         VALUES (?1, ?2, ?3, ?4, 'pending', '[]', ?5, ?5)",
    )
    .map_err(db)?
    .execute(params![run_id, job, target, events, us(now)])
    .map_err(db)?;
    Ok(())
}

/// Claim due pending notifications for `lease` (see `Store::due_notifications`).
pub fn due(
    c: &Connection,
    now: Timestamp,
    max: u32,
    lease: Duration,
) -> StoreResult<Vec<Notification>> {
    let until = now.checked_add(lease).unwrap_or(now);
    let raws: Vec<Raw> = c
        .prepare_cached(&format!(
            "UPDATE notifications SET next_at = ?2 WHERE id IN (SELECT id FROM \
             (SELECT id, next_at, ROW_NUMBER() OVER (PARTITION BY job ORDER BY next_at, id) AS k \
              FROM notifications WHERE state = 'pending' AND next_at <= ?1) \
             WHERE k <= {PER_JOB} ORDER BY next_at, id LIMIT ?3) \
             RETURNING {COLS}"
        ))
        .map_err(db)?
        .query_map(params![us(now), us(until), i64::from(max)], from_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut out = raws
        .into_iter()
        .map(decode)
        .collect::<StoreResult<Vec<_>>>()?;
    out.sort_by_key(|n| (n.next_at, n.id));
    Ok(out)
}

/// Append an attempt and move the notification on.
pub fn record(
    c: &Connection,
    id: i64,
    attempt: &NotificationAttempt,
    outcome: AttemptOutcome,
) -> StoreResult<()> {
    let attempt_at = attempt.at;
    let attempt = serde_json::to_string(attempt).map_err(corrupt)?;
    let (state, next_at) = match outcome {
        AttemptOutcome::RetryAt(t) => (NotificationState::Pending, t),
        AttemptOutcome::Final(s) => (s, attempt_at),
    };
    c.prepare_cached(
        "UPDATE notifications SET attempts = json_insert(attempts, '$[#]', json(?2)), \
         state = ?3, next_at = ?4 WHERE id = ?1",
    )
    .map_err(db)?
    .execute(params![id, attempt, state.as_str(), us(next_at)])
    .map_err(db)?;
    Ok(())
}

/// A run's notifications, oldest first.
pub fn of_run(c: &Connection, run_id: i64) -> StoreResult<Vec<Notification>> {
    let raws: Vec<Raw> = c
        .prepare_cached(&format!(
            "SELECT {COLS} FROM notifications WHERE run_id = ?1 ORDER BY id"
        ))
        .map_err(db)?
        .query_map([run_id], from_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    raws.into_iter().map(decode).collect()
}
