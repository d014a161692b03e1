//! Sealed job secrets on their way to a process: a claimed run's secrets are opened with the
//! cluster's key just before they are handed to the worker that runs it (the local pool or a
//! remote agent); a run whose secrets do not open is failed, never started without them.

use tempora_core::secret::SecretKey;

use crate::{ClaimedRun, RunResult};

/// Open the sealed `secrets` of claimed runs. A run whose secrets do not open (another node's
/// key, no key) is not handed out: it comes back as a failed result, with the reason, for the
/// caller to record.
pub fn open_secrets(
    key: Option<&SecretKey>,
    runs: Vec<ClaimedRun>,
) -> (Vec<ClaimedRun>, Vec<RunResult>) {
    let mut ok = Vec::with_capacity(runs.len());
    let mut failed = Vec::new();
    for mut c in runs {
        let mut problem = None;
        for (name, value) in c.spec.secrets.iter_mut() {
            let opened = match key {
                Some(k) => k.open(&c.spec.name, name, value).map_err(|e| e.to_string()),
                None => Err("this node has no secret key".to_owned()),
            };
            match opened {
                Ok(v) => *value = v,
                Err(e) => {
                    problem = Some(format!("cannot open secret `{name}`: {e}"));
                    break;
                }
            }
        }
        match problem {
            None => ok.push(c),
            Some(error) => {
                tracing::error!(message = "run not started: a secret does not open", run_id = c.run.id, job = %c.run.job, error = %error);
                failed.push(RunResult {
                    run_id: c.run.id,
                    state: tempora_core::run::RunState::Failed,
                    started_at: None,
                    finished_at: crate::clock::now(),
                    exit_code: None,
                    signal: None,
                    error: Some(error),
                    log_tail: Vec::new(),
                    awaits_completion: false,
                });
            }
        }
    }
    (ok, failed)
}
