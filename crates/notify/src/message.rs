//! What a notification says: the webhook's JSON document, the email's subject, and the text of
//! an email or a Slack message. The run's own fields only — never its output, variables or
//! secrets.

use tempora_core::run::Run;
use tempora_store::notify::Notification;

fn events(n: &Notification) -> Vec<&'static str> {
    n.events.iter().map(|e| e.as_str()).collect()
}

/// The webhook's JSON body.
pub fn webhook_body(n: &Notification, run: &Run) -> String {
    serde_json::json!({
        "delivery": n.id,
        "events": events(n),
        "job": n.job,
        "run": {
            "id": run.id,
            "state": run.state,
            "trigger": run.trigger,
            "attempt": run.attempt,
            "scheduled_for": run.scheduled_for,
            "started_at": run.started_at,
            "finished_at": run.finished_at,
            "exit_code": run.exit_code,
            "signal": run.signal,
            "error": run.error,
            "worker": run.worker,
        },
        "sent_at": tempora_store::clock::now(),
    })
    .to_string()
}

/// An email's subject.
pub fn subject(n: &Notification, run: &Run) -> String {
    format!(
        "[tempora] job {}: {} (run {}, attempt {})",
        n.job, run.state, run.id, run.attempt
    )
}

/// The text of an email or a Slack message.
pub fn text(n: &Notification, run: &Run) -> String {
    let mut t = format!(
        "Job {} run {} (attempt {}) ended {}: {}.\n",
        n.job,
        run.id,
        run.attempt,
        run.state,
        events(n).join(", ")
    );
    t.push_str(&format!("Scheduled for: {}\n", run.scheduled_for));
    if let Some(s) = run.started_at {
        t.push_str(&format!("Started: {s}\n"));
    }
    if let Some(f) = run.finished_at {
        t.push_str(&format!("Finished: {f}\n"));
    }
    if let Some(c) = run.exit_code {
        t.push_str(&format!("Exit code: {c}\n"));
    }
    if let Some(e) = &run.error {
        t.push_str(&format!("Error: {e}\n"));
    }
    if let Some(w) = &run.worker {
        t.push_str(&format!("Worker: {w}\n"));
    }
    t.push_str(&format!(
        "Output: tempora run logs {} (GET /api/v1/runs/{}/log)\n",
        run.id, run.id
    ));
    t
}
