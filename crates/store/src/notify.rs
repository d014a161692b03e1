//! Notifications as the store keeps them: one row per rule an ended run matched, written in the
//! transaction that ended the run (so a crash cannot lose one), then claimed with a lease,
//! delivered and recorded attempt by attempt by `tempora-notify`.

use std::sync::RwLock;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tempora_core::notify::{Event, NotifyRule, Target};

/// Most notifications of one job handed out by one [`crate::Store::due_notifications`]: a job
/// whose receivers hang or fail cannot take every sender while other jobs' notifications wait.
pub const PER_JOB_CLAIM: u32 = 4;

/// This process's server-wide rules, applied to every job besides its own `notify`.
static DEFAULTS: RwLock<Vec<NotifyRule>> = RwLock::new(Vec::new());

/// Set the server-wide rules (the server's `--notify-default`; every node of a cluster should
/// set the same). They apply to runs ended from now on, by this process.
pub fn set_defaults(rules: Vec<NotifyRule>) {
    if let Ok(mut d) = DEFAULTS.write() {
        *d = rules;
    }
}

/// The server-wide rules.
pub fn defaults() -> Vec<NotifyRule> {
    DEFAULTS.read().map(|d| d.clone()).unwrap_or_default()
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Not delivered yet (a first attempt or a retry is due at `next_at`).
    Pending,
    /// Delivered.
    Sent,
    /// Given up on: every attempt failed for the whole retry window.
    Failed,
    /// Not sent, on purpose (e.g. an email with no SMTP server configured).
    Skipped,
}

impl NotificationState {
    /// The state's name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationState::Pending => "pending",
            NotificationState::Sent => "sent",
            NotificationState::Failed => "failed",
            NotificationState::Skipped => "skipped",
        }
    }

    /// Parse a stored state.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => NotificationState::Pending,
            "sent" => NotificationState::Sent,
            "failed" => NotificationState::Failed,
            "skipped" => NotificationState::Skipped,
            _ => return None,
        })
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NotificationAttempt {
    /// When it was made.
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// Whether it was delivered.
    pub ok: bool,
    /// What happened, in words (`HTTP 200`, `connection refused`, `250 queued`, …).
    pub detail: String,
}

/// A notification of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notification {
    /// Its id.
    pub id: i64,
    /// The run it is about.
    pub run_id: i64,
    /// The run's job.
    pub job: String,
    /// Where it goes (as the rule says: a `${NAME}` stays unresolved here).
    pub target: Target,
    /// The events of the run it is about.
    pub events: Vec<Event>,
    /// Where it is.
    pub state: NotificationState,
    /// Every attempt so far, oldest first.
    pub attempts: Vec<NotificationAttempt>,
    /// When it was recorded (the run's end).
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// When the next attempt is due (pending), or when it ended.
    #[schema(value_type = String, format = DateTime)]
    pub next_at: Timestamp,
}

/// What an attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Try again at this time.
    RetryAt(Timestamp),
    /// Done: it is in this final state.
    Final(NotificationState),
}
