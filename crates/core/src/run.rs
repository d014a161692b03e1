//! Runs: one attempt of one occurrence of a job, and its state machine.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The state of a run.
///
/// `queued` → `running` → one of the final states; or `skipped` directly (an occurrence that was
/// not run because of the concurrency or misfire policy). `queued` runs may also end `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for a worker.
    Queued,
    /// A worker executes it.
    Running,
    /// Exited with status 0.
    Succeeded,
    /// Exited non-zero, was killed by a signal, or could not start.
    Failed,
    /// Killed because it ran longer than the job's `timeout`.
    TimedOut,
    /// Cancelled by a user (or replaced under `concurrency: replace`).
    Cancelled,
    /// Its worker went away (lease expired, server killed or shut down).
    Lost,
    /// Not run: concurrency policy or a missed occurrence older than `epsilon`.
    Skipped,
}

impl RunState {
    /// All states, for metrics and listings.
    pub const ALL: [RunState; 8] = [
        RunState::Queued,
        RunState::Running,
        RunState::Succeeded,
        RunState::Failed,
        RunState::TimedOut,
        RunState::Cancelled,
        RunState::Lost,
        RunState::Skipped,
    ];

    /// The wire/database name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Lost => "lost",
            RunState::Skipped => "skipped",
        }
    }

    /// Whether the run has ended (no further transition).
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }

    /// Whether this final state is a failure that the retry policy applies to.
    pub fn is_retryable_failure(self) -> bool {
        matches!(self, RunState::Failed | RunState::TimedOut | RunState::Lost)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown state or trigger name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownName {
    /// What was being parsed.
    pub kind: &'static str,
    /// The value.
    pub value: String,
}

impl FromStr for RunState {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownName {
                kind: "run state",
                value: s.to_owned(),
            })
    }
}

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An occurrence of the job's schedule.
    Schedule,
    /// Triggered by a user (API, CLI).
    Manual,
    /// A retry of a failed attempt.
    Retry,
    /// Triggered by the completion of parent jobs.
    Dependency,
    /// A past occurrence of the job's schedule, asked for by a backfill.
    Backfill,
}

impl Trigger {
    /// The wire/database name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Dependency => "dependency",
            Trigger::Backfill => "backfill",
        }
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Trigger {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Trigger::Schedule,
            Trigger::Manual,
            Trigger::Retry,
            Trigger::Dependency,
            Trigger::Backfill,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .ok_or_else(|| UnknownName {
            kind: "trigger",
            value: s.to_owned(),
        })
    }
}

/// Per-run overrides given with a manual trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunOverrides {
    /// Extra environment variables for this run.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Replaces the job's `arguments` for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Vec<String>>,
    /// Text appended to a shell command after a space for this run: the `arguments` of a
    /// Chronos manual start (`PUT /scheduler/job/{name}?arguments=…`), with `;` removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_suffix: Option<String>,
}

impl RunOverrides {
    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.env.is_empty() && self.arguments.is_none() && self.command_suffix.is_none()
    }
}

/// A run as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    /// Unique, increasing id.
    pub id: i64,
    /// The job's name.
    pub job: String,
    /// Why the run exists.
    pub trigger: Trigger,
    /// The occurrence instant (for manual runs: the trigger time).
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_for: Timestamp,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Current state.
    pub state: RunState,
    /// When the run row was created.
    #[schema(value_type = String, format = DateTime)]
    pub queued_at: Timestamp,
    /// Earliest start (retry backoff).
    #[schema(value_type = String, format = DateTime)]
    pub not_before: Timestamp,
    /// When the process started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    /// When the run ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    /// Exit status, when the process exited.
    pub exit_code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    pub signal: Option<i32>,
    /// The worker that ran (or runs) it.
    pub worker: Option<String>,
    /// Why it failed or was skipped, in words.
    pub error: Option<String>,
    /// Bytes of output captured so far (including dropped ones).
    pub log_bytes: u64,
    /// Bytes of output dropped by the per-run bound (the tail is kept).
    pub log_dropped_bytes: u64,
    /// A cancel was requested and is being carried out.
    pub cancel_requested: bool,
    /// Overrides of a manual trigger.
    #[serde(default, skip_serializing_if = "RunOverrides::is_empty")]
    pub overrides: RunOverrides,
    /// For `trigger = dependency`: the parent runs that triggered it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggered_by: Vec<i64>,
    /// How many occurrences this row stands for: consecutive skipped occurrences of a job fold
    /// into one `skipped` row (from `scheduled_for` to `last_scheduled_for`); 1 otherwise.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub occurrences: u64,
    /// The latest occurrence folded into this row (only when `occurrences` > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_scheduled_for: Option<Timestamp>,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>().unwrap(), s);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
        for t in ["schedule", "manual", "retry", "dependency"] {
            assert_eq!(t.parse::<Trigger>().unwrap().as_str(), t);
        }
        assert!("nope".parse::<RunState>().is_err());
    }

    #[test]
    fn final_states() {
        assert!(!RunState::Queued.is_final());
        assert!(!RunState::Running.is_final());
        assert!(RunState::Skipped.is_final());
        assert!(RunState::Lost.is_retryable_failure());
        assert!(!RunState::Cancelled.is_retryable_failure());
        assert!(!RunState::Skipped.is_retryable_failure());
    }
}
