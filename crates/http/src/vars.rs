//! Aurora's admin endpoints: `GET /vars` (one `name value` line per variable, sorted by name)
//! and `GET /vars.json` (the same variables as one flat JSON object): the build, when the
//! process started, the effective configuration (`config_<key>`, credentials redacted by the
//! binary before they reach [`AppState`]), leadership, counts of jobs, runs and workers, and
//! every unlabelled series of `/metrics` (the counters and gauges).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiResult;

/// `GET /vars`: `name value` lines; whitespace inside a value is shown as `_` (`/vars.json`
/// has the exact values).
#[utoipa::path(
    get,
    path = "/vars",
    operation_id = "getVars",
    tag = "operations",
    responses((status = 200, description = "One `name value` line per variable", body = String, content_type = "text/plain"))
)]
pub async fn text(State(s): State<Arc<AppState>>) -> ApiResult<Response> {
    let vars = collect(&s).await?;
    let mut out = String::new();
    for (name, value) in vars {
        let value = match value {
            Value::String(v) => v,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let value: String = value
            .chars()
            .map(|c| if c.is_whitespace() { '_' } else { c })
            .collect();
        out.push_str(&name);
        out.push(' ');
        out.push_str(&value);
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], out).into_response())
}

/// `GET /vars.json`: the variables of `/vars` as one JSON object.
#[utoipa::path(
    get,
    path = "/vars.json",
    operation_id = "getVarsJson",
    tag = "operations",
    responses((status = 200, description = "The variables of `/vars` as one object", body = Object))
)]
pub async fn json(State(s): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let vars = collect(&s).await?;
    Ok(Json(Value::Object(vars.into_iter().collect())))
}

/// Every variable, by name.
async fn collect(s: &AppState) -> ApiResult<BTreeMap<String, Value>> {
    let now = tempora_store::clock::now();
    let counts = s.store.counts().await?;
    let workers = s.store.list_workers(now).await?;
    let view = s.store.cluster_view(now).await?;
    let lease = view.lease.as_ref().filter(|l| l.expires_at > view.now);
    let mut vars = BTreeMap::new();
    let mut set = |name: &str, value: Value| {
        vars.insert(name.to_owned(), value);
    };
    set("version", json!(env!("CARGO_PKG_VERSION")));
    set(
        "build_profile",
        json!(if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }),
    );
    set(
        "build_target",
        json!(format!(
            "{}-{}",
            std::env::consts::ARCH,
            std::env::consts::OS
        )),
    );
    set("node_id", json!(s.node_id));
    set("store", json!(s.store_kind));
    set("started_at", json!(s.started_at.to_string()));
    set("start_time_seconds", json!(s.started_at.as_second()));
    set("uptime_seconds", json!(s.started.elapsed().as_secs()));
    set("leader", json!(s.leadership.borrow().is_some()));
    set("leader_node", json!(lease.map(|l| l.node.clone())));
    set("leader_epoch", json!(lease.map(|l| l.epoch)));
    set(
        "clock_offset_ms",
        json!(tempora_store::clock::offset().map(tempora_store::clock::millis)),
    );
    set("jobs", json!(counts.jobs));
    set("jobs_paused", json!(counts.paused_jobs));
    set("runs_queued", json!(counts.queued));
    set("runs_running", json!(counts.running));
    let live = workers.iter().filter(|w| !w.stale);
    set("workers", json!(workers.len()));
    set(
        "workers_stale",
        json!(workers.iter().filter(|w| w.stale).count()),
    );
    set(
        "worker_slots",
        json!(live.map(|w| u64::from(w.info.slots)).sum::<u64>()),
    );
    for (key, value) in s.config.iter() {
        set(&format!("config_{key}"), json!(value));
    }
    if let Some(p) = &s.prometheus {
        crate::ops::refresh_gauges(s, Some(&counts), Some(&workers), now).await;
        for (name, value) in unlabelled(&p.render()) {
            set(&name, value);
        }
    }
    Ok(vars)
}

/// The samples without labels of a Prometheus text exposition, as numbers.
fn unlabelled(text: &str) -> Vec<(String, Value)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            let n: f64 = value.trim().parse().ok()?;
            let value = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                json!(n as i64)
            } else {
                json!(n)
            };
            Some((name.to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::unlabelled;
    use serde_json::json;

    #[test]
    fn only_unlabelled_samples_are_taken() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total 3\nb{job=\"x\"} 1\n\
                    c_seconds 0.25\nbad line here\n";
        assert_eq!(
            unlabelled(text),
            vec![
                ("a_total".to_owned(), json!(3)),
                ("c_seconds".to_owned(), json!(0.25))
            ]
        );
    }
}
