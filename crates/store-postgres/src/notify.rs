//! The notifications table (see the SQLite store's `notify.rs`; the same statements in
//! PostgreSQL's dialect, `FOR UPDATE SKIP LOCKED` so nodes never claim the same one).

use std::time::Duration;

use jiff::Timestamp;
use tempora_store::notify::{AttemptOutcome, Notification, NotificationAttempt, NotificationState};
use tokio_postgres::Row;

use crate::pool::{Conn, TxResult};
use crate::rows::{corrupt, ts, us};

const COLS: &str = "id, run_id, job, target, events, state, attempts::text, created_at, next_at";

fn from_row(r: &Row) -> TxResult<Notification> {
    let target: String = r.try_get(3)?;
    let events: String = r.try_get(4)?;
    let state: String = r.try_get(5)?;
    let attempts: String = r.try_get(6)?;
    Ok(Notification {
        id: r.try_get(0)?,
        run_id: r.try_get(1)?,
        job: r.try_get(2)?,
        target: serde_json::from_str(&target).map_err(corrupt)?,
        events: serde_json::from_str(&events).map_err(corrupt)?,
        state: NotificationState::parse(&state).ok_or_else(|| corrupt(&state))?,
        attempts: serde_json::from_str(&attempts).map_err(corrupt)?,
        created_at: ts(r.try_get(7)?),
        next_at: ts(r.try_get(8)?),
    })
}

/// Record a pending notification due at `now`.
pub async fn insert(
    c: &Conn,
    run_id: i64,
    job: &str,
    target: &str,
    events: &str,
    now: Timestamp,
) -> TxResult<()> {
    c.execute(
        "INSERT INTO notifications (run_id, job, target, events, state, attempts, created_at, next_at) \
         VALUES ($1, $2, $3, $4, 'pending', '[]'::jsonb, $5, $5)",
        &[&run_id, &job, &target, &events, &us(now)],
    )
    .await?;
    Ok(())
}

/// Claim due pending notifications for `lease`.
pub async fn due(
    c: &Conn,
    now: Timestamp,
    max: u32,
    lease: Duration,
) -> TxResult<Vec<Notification>> {
    let until = now.checked_add(lease).unwrap_or(now);
    let rows = c
        .query(
            &format!(
                "WITH fair AS (SELECT id FROM \
                     (SELECT id, next_at, ROW_NUMBER() OVER (PARTITION BY job ORDER BY next_at, id) AS k \
                      FROM notifications WHERE state = 'pending' AND next_at <= $1) w \
                     WHERE k <= {} ORDER BY next_at, id LIMIT $3), \
                 picked AS (SELECT id FROM notifications WHERE id IN (SELECT id FROM fair) \
                     AND state = 'pending' FOR UPDATE SKIP LOCKED) \
                 UPDATE notifications n SET next_at = $2 FROM picked WHERE n.id = picked.id \
                 RETURNING {}",
                tempora_store::notify::PER_JOB_CLAIM,
                COLS.split(", ")
                    .map(|c| format!("n.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            &[&us(now), &us(until), &i64::from(max)],
        )
        .await?;
    let mut out = rows.iter().map(from_row).collect::<TxResult<Vec<_>>>()?;
    out.sort_by_key(|n| (n.next_at, n.id));
    Ok(out)
}

/// Append an attempt and move the notification on.
pub async fn record(
    c: &Conn,
    id: i64,
    attempt: &NotificationAttempt,
    outcome: AttemptOutcome,
) -> TxResult<()> {
    let (state, next_at) = match outcome {
        AttemptOutcome::RetryAt(t) => (NotificationState::Pending, t),
        AttemptOutcome::Final(s) => (s, attempt.at),
    };
    let attempt = serde_json::to_string(attempt).map_err(corrupt)?;
    c.execute(
        "UPDATE notifications SET attempts = attempts || jsonb_build_array(CAST($2::text AS jsonb)), \
         state = $3, next_at = $4 WHERE id = $1",
        &[&id, &attempt, &state.as_str(), &us(next_at)],
    )
    .await?;
    Ok(())
}

/// A run's notifications, oldest first.
pub async fn of_run(c: &Conn, run_id: i64) -> TxResult<Vec<Notification>> {
    c.query(
        &format!("SELECT {COLS} FROM notifications WHERE run_id = $1 ORDER BY id"),
        &[&run_id],
    )
    .await?
    .iter()
    .map(from_row)
    .collect()
}
