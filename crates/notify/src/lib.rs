//! `tempora-notify`: delivers notifications. The store records one notification per matching
//! rule in the transaction that ends a run (`tempora_core::notify`, `tempora_store::notify`);
//! [`run`] claims the due ones under a lease, delivers each (a signed webhook, an email over
//! SMTP, a Slack message — [`deliver`]), and records every attempt. A failed attempt is retried
//! with backoff for at most [`NotifyConfig::retry_for`]. Delivery never blocks scheduling: it
//! runs on its own task, each attempt bounded by [`NotifyConfig::attempt_timeout`].

use std::sync::Arc;
use std::time::Duration;

use tempora_core::secret::SecretKey;
use tempora_store::Store;
use tempora_store::notify::{AttemptOutcome, Notification, NotificationAttempt, NotificationState};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod deliver;
mod message;

pub use deliver::Smtp;

/// How notifications are delivered.
#[derive(Clone)]
pub struct NotifyConfig {
    /// The SMTP server emails go through (None: email notifications are `skipped`).
    pub smtp: Option<Smtp>,
    /// The key webhooks are signed with (`X-Tempora-Signature`).
    pub webhook_key: Arc<ring::hmac::Key>,
    /// Opens the jobs' sealed secrets, for `${NAME}` in webhook and Slack URLs.
    pub secret_key: Option<Arc<SecretKey>>,
    /// How long after a run's end a notification is still retried.
    pub retry_for: Duration,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// How often due notifications are looked for.
    pub poll_every: Duration,
    /// Most deliveries at once.
    pub concurrency: usize,
}

impl NotifyConfig {
    /// Defaults around a webhook signing key: no SMTP, retried for 10 minutes, 10 s per
    /// attempt, polled every second, 64 at once.
    pub fn new(webhook_key: &[u8]) -> NotifyConfig {
        NotifyConfig {
            smtp: None,
            webhook_key: Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, webhook_key)),
            secret_key: None,
            retry_for: Duration::from_secs(600),
            attempt_timeout: Duration::from_secs(10),
            poll_every: Duration::from_secs(1),
            concurrency: 64,
        }
    }
}

/// The delay before retry number `attempts` (1 s, doubling, at most 5 minutes).
pub fn backoff(attempts: usize) -> Duration {
    let exp = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(9);
    Duration::from_secs(1u64 << exp).min(Duration::from_secs(300))
}

/// Deliver due notifications until `shutdown` fires.
pub async fn run(store: Arc<dyn Store>, cfg: NotifyConfig, shutdown: CancellationToken) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut running: JoinSet<()> = JoinSet::new();
    // A claim holds a notification for longer than its attempt can take.
    let lease = cfg.attempt_timeout * 2 + Duration::from_secs(5);
    loop {
        while running.try_join_next().is_some() {}
        let room = cfg.concurrency.saturating_sub(running.len());
        if room > 0 {
            let now = tempora_store::clock::now();
            let max = u32::try_from(room).unwrap_or(u32::MAX);
            match store.due_notifications(now, max, lease).await {
                Ok(due) => {
                    for n in due {
                        running.spawn(attempt(store.clone(), cfg.clone(), n));
                    }
                }
                Err(e) => tracing::warn!(message = "cannot read due notifications", error = %e),
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(cfg.poll_every) => {}
        }
    }
    // Attempts under way finish (each is bounded); the rest are claimed again after a restart.
    while running.join_next().await.is_some() {}
}

/// One attempt at `n`, recorded.
async fn attempt(store: Arc<dyn Store>, cfg: NotifyConfig, n: Notification) {
    let kind = n.target.kind();
    let delivery = tokio::time::timeout(cfg.attempt_timeout, deliver::deliver(&store, &cfg, &n));
    let result = match delivery.await {
        Ok(r) => r,
        Err(_) => deliver::Delivery::Retry(format!(
            "no answer within {}",
            tempora_core::duration::format_duration(cfg.attempt_timeout)
        )),
    };
    let now = tempora_store::clock::now();
    let (ok, detail, outcome) = match result {
        deliver::Delivery::Sent(d) => (true, d, AttemptOutcome::Final(NotificationState::Sent)),
        deliver::Delivery::Skipped(d) => {
            (false, d, AttemptOutcome::Final(NotificationState::Skipped))
        }
        deliver::Delivery::Failed(d) => {
            (false, d, AttemptOutcome::Final(NotificationState::Failed))
        }
        deliver::Delivery::Retry(d) => {
            let next = now
                .checked_add(backoff(n.attempts.len() + 1))
                .unwrap_or(now);
            let give_up = n
                .created_at
                .checked_add(cfg.retry_for)
                .is_ok_and(|end| next > end);
            if give_up {
                (false, d, AttemptOutcome::Final(NotificationState::Failed))
            } else {
                (false, d, AttemptOutcome::RetryAt(next))
            }
        }
    };
    let label = match outcome {
        AttemptOutcome::RetryAt(_) => "retried",
        AttemptOutcome::Final(s) => s.as_str(),
    };
    metrics::counter!("tempora_notifications_total", "target" => kind, "outcome" => label)
        .increment(1);
    if ok {
        tracing::info!(message = "notification sent", id = n.id, run_id = n.run_id, job = %n.job, target = kind);
    } else {
        tracing::warn!(message = "notification not delivered", id = n.id, run_id = n.run_id, job = %n.job, target = kind, outcome = label, detail = %detail);
    }
    let attempt = NotificationAttempt {
        at: now,
        ok,
        detail,
    };
    if let Err(e) = store.record_notification(n.id, attempt, outcome).await {
        // Claimed again when its lease ends: delivered at least once.
        tracing::warn!(message = "cannot record a notification attempt", id = n.id, error = %e);
    }
}

#[cfg(test)]
mod tests {
    use super::backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), Duration::from_secs(300));
    }
}
