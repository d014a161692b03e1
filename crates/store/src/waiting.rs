//! Why a queued run has not started: what runs and jobs show as `waiting`, and what
//! `tempora_runs_waiting_for_worker` counts. One place, so the API and the metric agree.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tempora_core::run::{Run, RunState};

use tempora_core::kind::RESERVED_PREFIX;

use crate::WorkerStatus;

/// Whether a worker with `labels` may take a job with `selector`: every entry of the selector
/// is among the labels (a job without a selector fits every worker).
pub fn satisfies(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Why no worker may take a job with effective `selector` (its selector and its kind's
/// capability label) now (None: some live worker may). Workers not heard from recently
/// (`stale`) do not count.
pub fn no_worker(selector: &BTreeMap<String, String>, workers: &[WorkerStatus]) -> Option<String> {
    let live: Vec<BTreeMap<String, String>> = workers
        .iter()
        .filter(|w| !w.stale)
        .map(|w| w.info.claim_labels())
        .collect();
    if live.is_empty() {
        return Some("no worker is connected".to_owned());
    }
    if live.iter().any(|l| satisfies(selector, l)) {
        return None;
    }
    let kinds: Vec<&str> = selector
        .keys()
        .filter_map(|k| k.strip_prefix(RESERVED_PREFIX))
        .collect();
    // The job's own labels, apart from its kind's.
    let own: BTreeMap<String, String> = selector
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let wanted: Vec<String> = own.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let capable = |kind: &str| {
        live.iter()
            .any(|l| l.contains_key(&format!("{RESERVED_PREFIX}{kind}")))
    };
    Some(match kinds.first() {
        Some(kind) if !capable(kind) => {
            format!("no worker can run {kind} jobs (none advertises capability `{kind}`)")
        }
        // Some worker has the labels, but none of those runs this kind.
        Some(kind) if live.iter().any(|l| satisfies(&own, l)) => format!(
            "no worker with labels {} that runs {kind} jobs",
            wanted.join(",")
        ),
        _ => format!("no worker with labels {}", wanted.join(",")),
    })
}

/// Why a run is still queued, when it is not just about to be claimed: not due yet (a retry's
/// backoff), no worker it may go to, or every slot of those workers busy.
pub fn waiting_reason(
    run: &Run,
    selector: &BTreeMap<String, String>,
    workers: &[WorkerStatus],
    now: Timestamp,
) -> Option<String> {
    if run.state != RunState::Queued {
        return None;
    }
    if run.not_before > now {
        return Some(format!("not before {}", run.not_before));
    }
    if let Some(why) = no_worker(selector, workers) {
        return Some(why);
    }
    let (slots, running) = workers
        .iter()
        .filter(|w| !w.stale && satisfies(selector, &w.info.claim_labels()))
        .fold((0u64, 0u64), |(s, r), w| {
            (s + u64::from(w.info.slots), r + w.running)
        });
    (running >= slots).then(|| {
        format!("every slot of the workers that may take it is busy ({running} of {slots})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::WorkerInfo;

    fn worker(labels: &[(&str, &str)], slots: u32, running: u64, stale: bool) -> WorkerStatus {
        let t = Timestamp::UNIX_EPOCH;
        WorkerStatus {
            info: WorkerInfo {
                id: "w".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                capabilities: vec![
                    tempora_core::kind::Kind::Command,
                    tempora_core::kind::Kind::Http,
                ],
                slots,
                version: "0".into(),
                address: None,
                clock_offset: None,
            },
            registered_at: t,
            last_seen: t,
            running,
            stale,
        }
    }

    fn sel(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn reasons() {
        let gpu = sel(&[("gpu", "yes")]);
        assert_eq!(no_worker(&gpu, &[]).unwrap(), "no worker is connected");
        let cpu = [worker(&[("zone", "a")], 4, 0, false)];
        assert_eq!(
            no_worker(&gpu, &cpu).unwrap(),
            "no worker with labels gpu=yes"
        );
        assert_eq!(no_worker(&sel(&[]), &cpu), None);
        let boxed = sel(&[("tempora.io/container", "yes")]);
        assert_eq!(
            no_worker(&boxed, &cpu).unwrap(),
            "no worker can run container jobs (none advertises capability `container`)"
        );
        let gpu_cmd = sel(&[("gpu", "yes"), ("tempora.io/command", "yes")]);
        assert_eq!(
            no_worker(&gpu_cmd, &cpu).unwrap(),
            "no worker with labels gpu=yes"
        );
        let mut gpu_box = worker(&[("gpu", "yes")], 1, 0, false);
        gpu_box.info.capabilities = vec![tempora_core::kind::Kind::Container];
        assert_eq!(
            no_worker(&gpu_cmd, &[cpu[0].clone(), gpu_box]).unwrap(),
            "no worker with labels gpu=yes that runs command jobs"
        );
        assert_eq!(
            no_worker(&sel(&[("tempora.io/command", "yes")]), &cpu),
            None
        );
        let stale_gpu = [worker(&[("gpu", "yes")], 4, 0, true)];
        assert_eq!(
            no_worker(&gpu, &stale_gpu).unwrap(),
            "no worker is connected"
        );
        let gpu_live = [worker(&[("gpu", "yes"), ("zone", "a")], 4, 0, false)];
        assert_eq!(no_worker(&gpu, &gpu_live), None);
        let mut run: Run = serde_json::from_value(serde_json::json!({
            "id": 1, "job": "j", "trigger": "manual", "attempt": 1,
            "state": "queued", "scheduled_for": "2026-01-01T00:00:00Z",
            "queued_at": "2026-01-01T00:00:00Z", "not_before": "2026-01-01T00:00:10Z",
            "log_bytes": 0, "log_dropped_bytes": 0, "cancel_requested": false,
            "overrides": {}, "triggered_by": [], "occurrences": 1
        }))
        .unwrap();
        let now: Timestamp = "2026-01-01T00:00:05Z".parse().unwrap();
        assert!(
            waiting_reason(&run, &gpu, &gpu_live, now)
                .unwrap()
                .starts_with("not before")
        );
        run.not_before = now;
        assert_eq!(waiting_reason(&run, &gpu, &gpu_live, now), None);
        let busy = [worker(&[("gpu", "yes")], 2, 2, false)];
        assert!(
            waiting_reason(&run, &gpu, &busy, now)
                .unwrap()
                .contains("busy (2 of 2)")
        );
        assert_eq!(
            waiting_reason(&run, &gpu, &cpu, now).unwrap(),
            "no worker with labels gpu=yes"
        );
        run.state = RunState::Running;
        assert_eq!(waiting_reason(&run, &gpu, &cpu, now), None);
    }
}
