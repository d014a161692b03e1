//! The dependency graph drawn on the server (`/ui/graph`, SVG), the cluster (`/ui/cluster`)
//! and the audit log (`/ui/audit`, admin).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use askama::Template;
use axum::Extension;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tempora_store::AuditQuery;

use super::session::Session;
use super::{Nav, message_page, relative, render};
use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// Most jobs the graph draws.
const GRAPH_MAX: usize = 500;
const BOX_W: usize = 190;
const BOX_H: usize = 44;
const GAP_X: usize = 70;
const GAP_Y: usize = 18;

/// The graph page.
#[derive(Template)]
#[template(path = "graph.html")]
pub struct GraphPage {
    nav: Nav,
    svg: String,
    jobs: usize,
    cut: bool,
}

/// A layered drawing: each job in the column of its longest path from a job without parents,
/// edges from a parent's right side to a child's left side, each box coloured by its last run.
pub fn draw(edges: &[(String, String)], last: &BTreeMap<String, &'static str>) -> String {
    let names: BTreeSet<&str> = edges
        .iter()
        .flat_map(|(p, c)| [p.as_str(), c.as_str()])
        .collect();
    // Longest path depth, by relaxation (the graph is acyclic: the store refuses cycles); at
    // most as many rounds as jobs.
    let mut depth: BTreeMap<&str, usize> = names.iter().map(|n| (*n, 0)).collect();
    for _ in 0..names.len() {
        let mut changed = false;
        for (p, c) in edges {
            let d = depth.get(p.as_str()).copied().unwrap_or(0) + 1;
            if depth.get(c.as_str()).copied().unwrap_or(0) < d {
                depth.insert(c.as_str(), d);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut columns: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (n, d) in &depth {
        columns.entry(*d).or_default().push(n);
    }
    let mut at: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (d, col) in &columns {
        for (i, n) in col.iter().enumerate() {
            at.insert(n, (10 + d * (BOX_W + GAP_X), 10 + i * (BOX_H + GAP_Y)));
        }
    }
    let width = 20 + columns.len() * (BOX_W + GAP_X);
    let height = 20 + columns.values().map(Vec::len).max().unwrap_or(0) * (BOX_H + GAP_Y);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"Dependency graph\" \
         width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"edge-head\"/></marker></defs>"
    );
    for (p, c) in edges {
        if let (Some(&(px, py)), Some(&(cx, cy))) = (at.get(p.as_str()), at.get(c.as_str())) {
            let (x1, y1, x2, y2) = (px + BOX_W, py + BOX_H / 2, cx, cy + BOX_H / 2);
            let mid = (x1 + x2) / 2;
            let _ = write!(
                svg,
                "<path class=\"edge\" d=\"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}\" marker-end=\"url(#arrow)\"/>"
            );
        }
    }
    for (n, (x, y)) in &at {
        let state = last.get(*n).copied().unwrap_or("none");
        let label: String = n.chars().take(24).collect();
        let _ = write!(
            svg,
            "<a href=\"/ui/jobs/{href}\"><g class=\"node s-{state}\"><title>{name}: {state}</title>\
             <rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\"/>\
             <text x=\"{tx}\" y=\"{ty}\">{label}</text><text class=\"sub\" x=\"{tx}\" y=\"{ty2}\">{state}</text></g></a>",
            href = super::runs::html_escape(&tempora_client::encode_segment(n)),
            name = super::runs::html_escape(n),
            label = super::runs::html_escape(&label),
            tx = x + 10,
            ty = y + 19,
            ty2 = y + 36,
        );
    }
    svg.push_str("</svg>");
    svg
}

/// `GET /ui/graph`.
pub async fn graph(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
) -> Response {
    let nav = Nav::new(&s, &caller, &session);
    let result: Result<GraphPage, ApiError> = async {
        let mut edges = s.store.dependency_edges().await?;
        let names: BTreeSet<String> = edges
            .iter()
            .flat_map(|(p, c)| [p.clone(), c.clone()])
            .collect();
        let cut = names.len() > GRAPH_MAX;
        let shown: BTreeSet<String> = names.into_iter().take(GRAPH_MAX).collect();
        edges.retain(|(p, c)| shown.contains(p) && shown.contains(c));
        let mut last: BTreeMap<String, &'static str> = BTreeMap::new();
        for n in &shown {
            if let Some(r) = s.store.list_runs(n, None, 1).await?.first() {
                last.insert(n.clone(), r.state.as_str());
            }
        }
        Ok(GraphPage {
            nav: nav.clone(),
            svg: draw(&edges, &last),
            jobs: shown.len(),
            cut,
        })
    }
    .await;
    match result {
        Ok(page) => render(&page),
        Err(e) => message_page(e.status, "Error", &e.message),
    }
}

/// One node of the cluster page.
pub struct NodeRow {
    id: String,
    address: String,
    seen: String,
    alive: bool,
    leader: bool,
}

/// One worker of the cluster page.
pub struct WorkerRow {
    id: String,
    labels: String,
    capabilities: String,
    slots: u32,
    running: u64,
    seen: String,
    stale: bool,
    version: String,
}

/// The cluster page.
#[derive(Template)]
#[template(path = "cluster.html")]
pub struct ClusterPage {
    nav: Nav,
    store: &'static str,
    this_node: String,
    leader: Option<String>,
    epoch: Option<u64>,
    nodes: Vec<NodeRow>,
    workers: Vec<WorkerRow>,
}

/// `GET /ui/cluster`.
pub async fn cluster(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
) -> Response {
    let now = tempora_store::clock::now();
    let (view, workers) = match (
        s.store.cluster_view(now).await,
        s.store.list_workers(now).await,
    ) {
        (Ok(v), Ok(w)) => (v, w),
        (Err(e), _) | (_, Err(e)) => {
            let e = ApiError::from(e);
            return message_page(e.status, "Error", &e.message);
        }
    };
    let timeout = jiff::SignedDuration::try_from(s.node_timeout).unwrap_or_default();
    let lease = view.lease.as_ref().filter(|l| l.expires_at > view.now);
    render(&ClusterPage {
        nav: Nav::new(&s, &caller, &session),
        store: s.store_kind,
        this_node: s.node_id.clone(),
        leader: lease.map(|l| format!("{} ({})", l.node, l.address)),
        epoch: view.lease.as_ref().map(|l| l.epoch),
        nodes: view
            .nodes
            .iter()
            .map(|n| NodeRow {
                id: n.id.clone(),
                address: n.address.clone(),
                seen: relative(n.last_seen, view.now),
                alive: view.now.duration_since(n.last_seen) <= timeout,
                leader: lease.is_some_and(|l| l.node == n.id),
            })
            .collect(),
        workers: workers
            .iter()
            .map(|w| WorkerRow {
                id: w.info.id.clone(),
                labels: w
                    .info
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                capabilities: w
                    .info
                    .capabilities
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                slots: w.info.slots,
                running: w.running,
                seen: relative(w.last_seen, now),
                stale: w.stale,
                version: w.info.version.clone(),
            })
            .collect(),
    })
}

/// One entry of the audit page.
pub struct AuditRow {
    id: i64,
    at: String,
    who: String,
    action: String,
    target: String,
    detail: String,
    remote: String,
}

/// The audit page.
#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    nav: Nav,
    rows: Vec<AuditRow>,
    next_before: Option<i64>,
    job: String,
}

/// Query of the audit page.
#[derive(Debug, Default, Deserialize)]
pub struct AuditParams {
    /// Entries older than this id.
    #[serde(default)]
    pub before: Option<i64>,
    /// Only this job's entries.
    #[serde(default)]
    pub job: String,
}

/// `GET /ui/audit` (admin): the changes, newest first, 100 a page.
pub async fn audit(
    State(s): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Extension(session): Extension<Session>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    s.auth_cache
        .audit_written(std::time::Duration::from_secs(2))
        .await;
    let job = q.job.trim().chars().take(200).collect::<String>();
    let entries = match s
        .store
        .list_audit(AuditQuery {
            limit: 100,
            before: q.before,
            job: (!job.is_empty()).then(|| job.clone()),
        })
        .await
    {
        Ok(e) => e,
        Err(e) => {
            let e = ApiError::from(e);
            return message_page(e.status, "Error", &e.message);
        }
    };
    let next_before = (entries.len() == 100)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    render(&AuditPage {
        nav: Nav::new(&s, &caller, &session),
        rows: entries
            .into_iter()
            .map(|e| AuditRow {
                id: e.id,
                at: super::local_time(e.entry.at, &jiff::tz::TimeZone::UTC),
                who: format!("{} ({})", e.entry.token_name, e.entry.role),
                action: e.entry.action,
                target: e.entry.target,
                detail: e.entry.detail.unwrap_or_default(),
                remote: e.entry.remote,
            })
            .collect(),
        next_before,
        job,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graph_puts_children_right_of_their_parents_and_escapes_names() {
        let edges = vec![
            ("a".to_owned(), "b".to_owned()),
            ("b".to_owned(), "c".to_owned()),
            ("a".to_owned(), "c".to_owned()),
        ];
        let mut last = BTreeMap::new();
        last.insert("a".to_owned(), "failed");
        let svg = draw(&edges, &last);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // c is two levels right of a (its longest path), b one.
        assert!(svg.contains(&format!("<rect x=\"{}\"", 10 + 2 * (BOX_W + GAP_X))));
        assert!(svg.contains("class=\"node s-failed\""));
        assert_eq!(svg.matches("class=\"edge\"").count(), 3);
        let odd = draw(&[("x<y".to_owned(), "z".to_owned())], &BTreeMap::new());
        assert!(odd.contains("x&lt;y") && !odd.contains("x<y"));
    }
}
