//! Run-time statistics: `/job/stat/{name}`, `/stats/{percentile}` and the Chronos metrics JSON.

use super::*;

/// Runs looked at for statistics (per job).
pub(super) const STAT_RUNS: u32 = 100;

/// Durations in seconds of a job's recent successful runs, oldest first.
pub(super) async fn durations(store: &dyn Store, job: &str) -> ChronosResult<Vec<f64>> {
    let runs = store.list_runs(job, None, STAT_RUNS).await?;
    Ok(runs
        .iter()
        .rev()
        .filter(|r| r.state == RunState::Succeeded)
        .filter_map(run_seconds)
        .collect())
}

/// How long a run's process took; `None` for runs without a process (a `job/success` mark).
pub(super) fn run_seconds(r: &Run) -> Option<f64> {
    r.exit_code?;
    let (a, b) = (r.started_at?, r.finished_at?);
    Some(((b.as_millisecond() - a.as_millisecond()).max(0) as f64) / 1000.0)
}

/// A quantile the way Codahale's snapshots compute it (linear interpolation on sorted values).
pub(super) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let pos = q * (n as f64 + 1.0);
    if pos < 1.0 {
        return sorted[0];
    }
    if pos >= n as f64 {
        return sorted[n - 1];
    }
    let idx = pos.floor() as usize;
    let lower = sorted[idx - 1];
    let upper = sorted[idx];
    lower + (pos - pos.floor()) * (upper - lower)
}

pub(super) fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

pub(super) fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// The statistic a `stats/{percentile}` path names.
pub(super) fn statistic(name: &str, sorted: &[f64]) -> Option<f64> {
    Some(match name {
        "99thPercentile" => quantile(sorted, 0.99),
        "98thPercentile" => quantile(sorted, 0.98),
        "95thPercentile" => quantile(sorted, 0.95),
        "75thPercentile" => quantile(sorted, 0.75),
        "median" => quantile(sorted, 0.5),
        "mean" => mean(sorted),
        _ => return None,
    })
}

/// `MM/dd/yy HH:mm:ss` in UTC, or `N/A`.
pub(super) fn stat_time(t: Option<Timestamp>) -> String {
    t.map_or_else(
        || "N/A".to_owned(),
        |t| t.strftime("%m/%d/%y %H:%M:%S").to_string(),
    )
}

/// `1d2h3m4s`.
pub(super) fn stat_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (n, unit) in [(d, 'd'), (h, 'h'), (m, 'm')] {
        if n > 0 || !out.is_empty() {
            let _ = write!(out, "{n}{unit}");
        }
    }
    let _ = write!(out, "{s}s");
    out
}

/// `GET /scheduler/job/stat/{name}`: duration histogram and recent task history.
#[utoipa::path(
    get,
    path = "/job/stat/{name}",
    operation_id = "chronosJobStat",
    tag = "chronos",
    params(("name" = String, Path, description = "The job's name")),
    responses((status = 200, description = "`{histogram, taskStatHistory}`", body = Object), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn job_stat(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ChronosResult<Response> {
    let rec = job_or_400(s.store.as_ref(), &name).await?;
    let runs = s.store.list_runs(&name, None, STAT_RUNS).await?;
    let d = sorted(
        runs.iter()
            .filter(|r| r.state == RunState::Succeeded)
            .filter_map(run_seconds)
            .collect(),
    );
    let histogram = json!({
        "75thPercentile": quantile(&d, 0.75),
        "95thPercentile": quantile(&d, 0.95),
        "98thPercentile": quantile(&d, 0.98),
        "99thPercentile": quantile(&d, 0.99),
        "median": quantile(&d, 0.5),
        "mean": mean(&d),
        "count": d.len(),
    });
    let history: Vec<Value> = runs
        .iter()
        .map(|r| {
            let status = match r.state {
                RunState::Succeeded => "success",
                RunState::Running => "running",
                RunState::Queued => "idle",
                _ => "fail",
            };
            let mut o = json!({
                "taskId": TaskId::of(r, &rec.spec).to_string(),
                "jobName": r.job,
                "slaveId": r.worker.clone().unwrap_or_default(),
                "startTime": stat_time(r.started_at),
                "endTime": stat_time(r.finished_at),
                "status": status,
            });
            if let (Some(secs), Some(obj)) = (run_seconds(r), o.as_object_mut()) {
                obj.insert("duration".into(), json!(stat_duration(secs as u64)));
            }
            o
        })
        .collect();
    Ok(json_response(
        json!({"histogram": histogram, "taskStatHistory": history}),
    ))
}

/// `GET /scheduler/stats/{percentile}`: `[{"jobNameLabel", "time"}]`, slowest first.
#[utoipa::path(
    get,
    path = "/stats/{percentile}",
    operation_id = "chronosStats",
    tag = "chronos",
    params(("percentile" = String, Path, description = "`99thPercentile`, `98thPercentile`, `95thPercentile`, `75thPercentile`, `median` or `mean`")),
    responses((status = 200, description = "`[{jobNameLabel, time}]`, slowest first", body = Vec<Object>), (status = 400, description = "Bad input, or no such job", body = super::doc::ChronosError))
)]
pub(super) async fn stats(
    State(s): State<Arc<AppState>>,
    Path(pct): Path<String>,
) -> ChronosResult<Response> {
    if statistic(&pct, &[]).is_none() {
        return Err(ChronosError::bad(format!(
            "percentile must be one of 99thPercentile, 98thPercentile, 95thPercentile, \
             75thPercentile, median, mean; not `{pct}`"
        )));
    }
    let mut out: Vec<(String, f64)> = Vec::new();
    for j in all_jobs(s.store.as_ref()).await? {
        let d = sorted(durations(s.store.as_ref(), &j.spec.name).await?);
        if let Some(t) = statistic(&pct, &d).filter(|_| !d.is_empty()) {
            out.push((j.spec.name, t));
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    Ok(json_response(Value::Array(
        out.into_iter()
            .map(|(n, t)| json!({"jobNameLabel": n, "time": t}))
            .collect(),
    )))
}

/// The Codahale-style JSON registry dump Chronos serves at `/metrics`: per-job run counters
/// and duration histograms, queue gauges.
pub async fn metrics_json(s: &AppState) -> Result<Value, ApiError> {
    let counts = s.store.counts().await?;
    let mut counters = BTreeMap::new();
    let mut histograms = BTreeMap::new();
    let jobs = all_jobs(s.store.as_ref())
        .await
        .map_err(|e| ApiError::new(e.status, "internal", e.message))?;
    for j in &jobs {
        let name = &j.spec.name;
        counters.insert(
            format!("jobs.run.success.{name}"),
            json!({"count": j.success_count}),
        );
        counters.insert(
            format!("jobs.run.failure.{name}"),
            json!({"count": j.error_count}),
        );
        let d = sorted(
            durations(s.store.as_ref(), name)
                .await
                .map_err(|e| ApiError::new(e.status, "internal", e.message))?,
        );
        let min = d.first().copied().unwrap_or(0.0);
        let max = d.last().copied().unwrap_or(0.0);
        let m = mean(&d);
        let var = if d.len() > 1 {
            d.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (d.len() - 1) as f64
        } else {
            0.0
        };
        histograms.insert(
            format!("jobs.run.time.{name}"),
            json!({
                "count": d.len(), "min": min, "max": max, "mean": m, "stddev": var.sqrt(),
                "p50": quantile(&d, 0.5), "p75": quantile(&d, 0.75), "p95": quantile(&d, 0.95),
                "p98": quantile(&d, 0.98), "p99": quantile(&d, 0.99), "p999": quantile(&d, 0.999),
            }),
        );
    }
    let gauges = json!({
        "org.apache.mesos.chronos.scheduler.jobs.TaskManager.queueSize": {"value": counts.queued},
        "org.apache.mesos.chronos.scheduler.jobs.TaskManager.highQueueSize": {"value": 0},
        "tempora.runs.running": {"value": counts.running},
        "tempora.jobs": {"value": counts.jobs},
    });
    Ok(json!({
        "version": "3.0.0",
        "gauges": gauges,
        "counters": counters,
        "histograms": histograms,
        "meters": {},
        "timers": {},
    }))
}
