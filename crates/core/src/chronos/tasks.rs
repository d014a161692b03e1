//! Chronos task ids (`ct:<ms>:<attempt>:<job>:<args>`) and the shell words of its `arguments`.

use super::*;

/// A Chronos task id, `ct:<dueMillis>:<attempt>:<job>:<arguments>` (attempt 0-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId {
    /// The occurrence (or, for a manual start, the trigger) instant in epoch milliseconds.
    pub due_ms: i64,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// The job's name.
    pub job: String,
    /// The run's arguments (may contain `:`).
    pub arguments: String,
}

impl TaskId {
    /// The task id of a run.
    pub fn of(run: &Run, spec: &JobSpec) -> TaskId {
        let arguments = match (&run.overrides.command_suffix, &run.overrides.arguments) {
            (Some(s), _) => s.clone(),
            (None, Some(a)) => a.join(" "),
            (None, None) => spec.arguments.join(" "),
        };
        TaskId {
            due_ms: run.scheduled_for.as_millisecond(),
            attempt: run.attempt.saturating_sub(1),
            job: run.job.clone(),
            arguments,
        }
    }

    /// Parse `ct:(\d+):(\d+):([\w.-]+):?(.*)`.
    pub fn parse(s: &str) -> Option<TaskId> {
        let rest = s.strip_prefix("ct:")?;
        let (due, rest) = rest.split_once(':')?;
        let (attempt, rest) = rest.split_once(':')?;
        let (job, arguments) = rest.split_once(':').unwrap_or((rest, ""));
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(due) || !digits(attempt) || job.is_empty() {
            return None;
        }
        if !job
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return None;
        }
        Some(TaskId {
            due_ms: due.parse().ok()?,
            attempt: attempt.parse().ok()?,
            job: job.to_owned(),
            arguments: arguments.to_owned(),
        })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ct:{}:{}:{}:{}",
            self.due_ms, self.attempt, self.job, self.arguments
        )
    }
}

/// Chronos strips `;` from manual-start arguments (so `-c 1 ; ./evil.sh` cannot chain commands).
pub fn clean_arguments(s: &str) -> String {
    s.replace(';', "")
}

/// The words of a Chronos `arguments` string as shell data: each whitespace-separated word
/// single-quoted, so that appended to a shell command it reaches the program as one argument
/// and is never interpreted (`$(id) && echo X` → `'$(id)' '&&' 'echo' 'X'`).
pub fn quote_words(s: &str) -> String {
    s.split_whitespace()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}
