//! Job definitions: create or replace (parents checked, cursor computed), delete (refused while
//! other jobs depend on it, unless forced), pause and resume.

use std::collections::BTreeMap;

use jiff::Timestamp;
use tempora_core::dag::find_cycle;
use tempora_core::job::{JobSpec, ValidationError};

use super::Tx;
use crate::{JobRecord, PutMode, PutOutcome, StoreError, compute_cursor};

/// The steps of the job-definition scripts, in a backend.
#[allow(async_fn_in_trait)] // used generically within the workspace, with concrete backends
pub trait JobSteps: Tx {
    /// Serialize definition changes for the transaction (the dependency graph check must see
    /// every other change; PostgreSQL takes an advisory lock, SQLite has one writer).
    async fn lock_definitions(&self) -> Result<(), Self::Error>;
    /// Whether a job exists.
    async fn job_exists(&self, name: &str) -> Result<bool, Self::Error>;
    /// Every dependency edge (child, parent).
    async fn parent_edges(&self) -> Result<Vec<(String, String)>, Self::Error>;
    /// Store `child`'s parents (replacing its edges) and drop progress towards parents it no
    /// longer has.
    async fn set_parents(&self, child: &str, parents: &[String]) -> Result<(), Self::Error>;
    /// Insert (`new`) or update a job's row: spec, pause state and cursor; an update bumps
    /// `version`.
    async fn write_job_row(
        &self,
        spec: &JobSpec,
        now: Timestamp,
        cursor: Option<Timestamp>,
        new: bool,
    ) -> Result<(), Self::Error>;
    /// Delete a job's row with its edges, progress, runs and output; false when it did not
    /// exist.
    async fn delete_job_rows(&self, name: &str) -> Result<bool, Self::Error>;
}

/// Create or replace a job. Nothing is written when it is refused (exists already for a
/// create, unknown parents, a cycle).
pub async fn put_job<T: JobSteps>(
    tx: &T,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> Result<PutOutcome, T::Error> {
    tx.lock_definitions().await?;
    let prev = tx.job_for_update(&spec.name).await?;
    if mode == PutMode::Create && prev.is_some() {
        return Err(StoreError::JobExists(spec.name).into());
    }
    let created_at = prev.as_ref().map_or(now, |p| p.created_at);
    let cursor = compute_cursor(&spec, created_at, now, prev.as_ref())?;
    check_parents(tx, &spec).await?;
    tx.set_parents(&spec.name, &spec.parents).await?;
    tx.write_job_row(&spec, now, cursor, prev.is_none()).await?;
    let record = tx
        .job_for_update(&spec.name)
        .await?
        .ok_or_else(|| StoreError::Backend("job vanished after write".into()))?;
    Ok(PutOutcome {
        record,
        created: prev.is_none(),
    })
}

/// A job's parents exist, and adding its edges makes no cycle.
async fn check_parents<T: JobSteps>(tx: &T, spec: &JobSpec) -> Result<(), T::Error> {
    let mut missing = Vec::new();
    for p in &spec.parents {
        if !tx.job_exists(p).await? {
            missing.push(format!("`{p}`"));
        }
    }
    if !missing.is_empty() {
        return Err(StoreError::from(ValidationError::new(
            "parents",
            "unknown_parent",
            format!("unknown parent job(s): {}", missing.join(", ")),
        ))
        .into());
    }
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (child, parent) in tx.parent_edges().await? {
        graph.entry(child).or_default().push(parent);
    }
    graph.insert(spec.name.clone(), spec.parents.clone());
    if let Some(cycle) = find_cycle(&graph) {
        return Err(StoreError::from(ValidationError::new(
            "parents",
            "cycle",
            format!("dependency cycle: {}", cycle.join(" → ")),
        ))
        .into());
    }
    Ok(())
}

/// Delete a job, its runs and their output. Refused while other jobs depend on it, unless
/// `force`, which removes it from their parents.
pub async fn delete_job<T: JobSteps>(
    tx: &T,
    name: &str,
    force: bool,
    now: Timestamp,
) -> Result<bool, T::Error> {
    tx.lock_definitions().await?;
    let children = tx.children_of(name).await?;
    if !children.is_empty() && tx.job_for_update(name).await?.is_some() {
        if !force {
            return Err(StoreError::Conflict(format!(
                "job `{name}` has dependent jobs: {}; delete them first, or delete with force=true to remove `{name}` from their parents",
                children.join(", ")
            ))
            .into());
        }
        for child in &children {
            if let Some(mut rec) = tx.job_for_update(child).await? {
                rec.spec.parents.retain(|p| p != name);
                tx.write_job_row(&rec.spec, now, rec.next_fire_at, false)
                    .await?;
            }
        }
    }
    tx.delete_job_rows(name).await
}

/// Pause or resume a job. Resuming starts from `now`: the paused period is not backfilled.
pub async fn set_paused<T: JobSteps>(
    tx: &T,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> Result<JobRecord, T::Error> {
    tx.lock_definitions().await?;
    let prev = tx
        .job_for_update(name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?;
    if prev.spec.paused == paused {
        return Ok(prev);
    }
    let mut spec = prev.spec.clone();
    spec.paused = paused;
    let cursor = compute_cursor(&spec, prev.created_at, now, None)?;
    tx.write_job_row(&spec, now, cursor, false).await?;
    Ok(tx
        .job_for_update(name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?)
}
