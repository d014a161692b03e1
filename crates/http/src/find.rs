//! Finding jobs: the filters of `GET /api/v1/jobs` (`q`, `label`, `owner`, `state`). Pages are
//! read from the store in name order and filtered here; one request reads at most
//! [`SCAN_MAX`] jobs, so a filter that matches few of a million jobs answers a short page and
//! a `next_after` to go on from, never a long scan.

use std::collections::{BTreeMap, HashSet};

use tempora_core::run::RunState;
use tempora_store::{JobRecord, RunFilter, Store};

use crate::error::{ApiError, ApiResult};

/// Jobs one filtered request reads at most.
pub const SCAN_MAX: usize = 10_000;
/// Store page size while scanning.
const SCAN_PAGE: u32 = 1_000;

/// A job's state, for `state=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Paused: fires nothing.
    Paused,
    /// Not paused.
    Active,
    /// Its last occurrence failed after its retries (`errors_since_success` > 0).
    Failing,
    /// A run of it is running now.
    Running,
}

/// The filters of a request; all given ones must hold.
#[derive(Debug, Default)]
pub struct Filters {
    /// Case-insensitive substring of the name or the description.
    pub q: Option<String>,
    /// Labels the job must have, with these values.
    pub labels: BTreeMap<String, String>,
    /// Case-insensitive substring of `owner`.
    pub owner: Option<String>,
    /// The state.
    pub state: Option<JobState>,
}

impl Filters {
    /// Check the query's filters, naming the bad one.
    pub fn parse(
        q: Option<String>,
        label: Option<String>,
        owner: Option<String>,
        state: Option<String>,
    ) -> ApiResult<Filters> {
        // At most 200 bytes each; empty is not given.
        let bounded = |field: &str, v: Option<String>| -> ApiResult<Option<String>> {
            match v {
                Some(v) if v.len() > 200 => Err(ApiError::field(
                    "invalid_query",
                    field,
                    format!("`{field}` may be at most 200 bytes"),
                )),
                v => Ok(v.filter(|s| !s.is_empty())),
            }
        };
        let lower = |v: Option<String>| v.map(|s| s.to_lowercase());
        let mut labels = BTreeMap::new();
        if let Some(text) = bounded("label", label)? {
            for pair in text.split(',') {
                let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                    return Err(ApiError::field(
                        "invalid_query",
                        "label",
                        format!("label `{pair}`: expected key=value (several: a=b,c=d)"),
                    ));
                };
                labels.insert(k.to_owned(), v.to_owned());
            }
        }
        let state = match state.as_deref() {
            None | Some("") => None,
            Some("paused") => Some(JobState::Paused),
            Some("active") => Some(JobState::Active),
            Some("failing") => Some(JobState::Failing),
            Some("running") => Some(JobState::Running),
            Some(other) => {
                return Err(ApiError::field(
                    "invalid_query",
                    "state",
                    format!("state `{other}` is not one of paused, active, failing, running"),
                ));
            }
        };
        Ok(Filters {
            q: lower(bounded("q", q)?),
            labels,
            owner: lower(bounded("owner", owner)?),
            state,
        })
    }

    /// Whether any filter is given.
    pub fn any(&self) -> bool {
        self.q.is_some() || !self.labels.is_empty() || self.owner.is_some() || self.state.is_some()
    }

    fn matches(&self, j: &JobRecord, running: &HashSet<String>) -> bool {
        let spec = &j.spec;
        let q_ok = self.q.as_deref().is_none_or(|q| {
            spec.name.to_lowercase().contains(q)
                || spec
                    .description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(q))
        });
        let owner_ok = self.owner.as_deref().is_none_or(|o| {
            spec.owner
                .as_deref()
                .is_some_and(|owner| owner.to_lowercase().contains(o))
        });
        let labels_ok = self
            .labels
            .iter()
            .all(|(k, v)| spec.labels.get(k) == Some(v));
        let state_ok = match self.state {
            None => true,
            Some(JobState::Paused) => spec.paused,
            Some(JobState::Active) => !spec.paused,
            Some(JobState::Failing) => j.errors_since_success > 0,
            Some(JobState::Running) => running.contains(&spec.name),
        };
        q_ok && owner_ok && labels_ok && state_ok
    }
}

/// A job's state in one word: `paused`, else `running` (a run of it runs now), else `failing`
/// (its last occurrence failed after its retries), else `active` — each the `state` filter
/// that matches it first.
pub fn state_word(j: &JobRecord, running: &HashSet<String>) -> &'static str {
    if j.spec.paused {
        "paused"
    } else if running.contains(&j.spec.name) {
        "running"
    } else if j.errors_since_success > 0 {
        "failing"
    } else {
        "active"
    }
}

/// The jobs with a run running now (at most 1000 runs are read: the slots of a cluster).
pub async fn running_jobs(store: &dyn Store) -> ApiResult<HashSet<String>> {
    let filter = RunFilter {
        state: Some(RunState::Running),
        ..RunFilter::default()
    };
    let runs = store
        .search_runs(&filter, None, crate::jobs::MAX_PAGE)
        .await?;
    Ok(runs.into_iter().map(|r| r.job).collect())
}

/// Up to `limit` jobs after `after` that match, reading at most [`SCAN_MAX`] jobs; the name to
/// continue after when more may match. `running`: [`running_jobs`].
pub async fn find(
    store: &dyn Store,
    filters: &Filters,
    running: &HashSet<String>,
    after: Option<&str>,
    limit: u32,
) -> ApiResult<(Vec<JobRecord>, Option<String>)> {
    let mut found = Vec::new();
    let mut cursor = after.map(str::to_owned);
    let mut scanned = 0usize;
    loop {
        let page = store.list_jobs(cursor.as_deref(), SCAN_PAGE).await?;
        let full = page.len() as u32 == SCAN_PAGE;
        for j in page {
            scanned += 1;
            cursor = Some(j.spec.name.clone());
            if filters.matches(&j, running) {
                found.push(j);
                if found.len() as u32 == limit {
                    return Ok((found, cursor));
                }
            }
            if scanned == SCAN_MAX {
                return Ok((found, cursor));
            }
        }
        if !full {
            return Ok((found, None));
        }
    }
}
