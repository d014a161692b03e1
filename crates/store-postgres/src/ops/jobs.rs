//! Jobs: write (with their parents and cursor), delete, pause, the change list.

use super::*;

/// Create or replace a job.
pub async fn put_job(
    c: &Conn,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> TxResult<PutOutcome> {
    lock_jobs(c).await?;
    let prev = lock_job(c, &spec.name).await?;
    if mode == PutMode::Create && prev.is_some() {
        return Err(StoreError::JobExists(spec.name).into());
    }
    let created_at = prev.as_ref().map_or(now, |p| p.created_at);
    let cursor = compute_cursor(&spec, created_at, now, prev.as_ref())?;
    write_parents(c, &spec).await?;
    write_job_row(c, &spec, now, cursor, prev.is_none()).await?;
    let record = load_job(c, &spec.name)
        .await?
        .ok_or_else(|| StoreError::Backend("job vanished after write".into()))?;
    Ok(PutOutcome {
        record,
        created: prev.is_none(),
    })
}

/// Check a job's parents (they exist, no cycle) and store its edges; progress towards parents it
/// no longer has is dropped.
pub(super) async fn write_parents(c: &Conn, spec: &JobSpec) -> TxResult<()> {
    let mut missing = Vec::new();
    for p in &spec.parents {
        if c.query_opt("SELECT 1 FROM jobs WHERE name = $1", &[p])
            .await?
            .is_none()
        {
            missing.push(format!("`{p}`"));
        }
    }
    if !missing.is_empty() {
        return Err(ValidationError::new(
            "parents",
            "unknown_parent",
            format!("unknown parent job(s): {}", missing.join(", ")),
        )
        .into());
    }
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in c
        .query("SELECT child, parent FROM job_parents", &[])
        .await?
    {
        let child: String = row.try_get(0)?;
        let parent: String = row.try_get(1)?;
        graph.entry(child).or_default().push(parent);
    }
    graph.insert(spec.name.clone(), spec.parents.clone());
    if let Some(cycle) = find_cycle(&graph) {
        return Err(ValidationError::new(
            "parents",
            "cycle",
            format!("dependency cycle: {}", cycle.join(" → ")),
        )
        .into());
    }
    c.execute("DELETE FROM job_parents WHERE child = $1", &[&spec.name])
        .await?;
    for p in &spec.parents {
        c.execute(
            "INSERT INTO job_parents (child, parent) VALUES ($1, $2)",
            &[&spec.name, p],
        )
        .await?;
    }
    c.execute(
        "DELETE FROM dependency_progress WHERE child = $1 AND parent NOT IN \
         (SELECT parent FROM job_parents WHERE child = $1)",
        &[&spec.name],
    )
    .await?;
    Ok(())
}

pub(super) async fn children_of(c: &Conn, parent: &str) -> TxResult<Vec<String>> {
    c.query(
        "SELECT child FROM job_parents WHERE parent = $1 ORDER BY child",
        &[&parent],
    )
    .await?
    .iter()
    .map(|r| r.try_get(0).map_err(Into::into))
    .collect()
}

/// Insert (`new`) or update a job's row: spec, pause state and cursor; an update bumps `version`.
pub(super) async fn write_job_row(
    c: &Conn,
    spec: &JobSpec,
    now: Timestamp,
    cursor: Option<Timestamp>,
    new: bool,
) -> TxResult<()> {
    let spec_json = json(spec)?;
    let sql = if new {
        "INSERT INTO jobs (name, spec, created_at, updated_at, version, paused, next_fire_at) \
         VALUES ($1, $2, $3, $3, 1, $4, $5)"
    } else {
        "UPDATE jobs SET spec = $2, updated_at = $3, version = version + 1, paused = $4, \
         next_fire_at = $5 WHERE name = $1"
    };
    c.execute(
        sql,
        &[
            &spec.name,
            &spec_json,
            &us(now),
            &spec.paused,
            &cursor.map(us),
        ],
    )
    .await?;
    Ok(())
}

/// Delete a job, its runs and their output (refused while other jobs depend on it, unless `force`).
pub async fn delete_job(c: &Conn, name: &str, force: bool, now: Timestamp) -> TxResult<bool> {
    lock_jobs(c).await?;
    let children = children_of(c, name).await?;
    if !children.is_empty() && lock_job(c, name).await?.is_some() {
        if !force {
            return Err(StoreError::Conflict(format!(
                "job `{name}` has dependent jobs: {}; delete them first, or delete with force=true to remove `{name}` from their parents",
                children.join(", ")
            ))
            .into());
        }
        for child in &children {
            if let Some(mut rec) = lock_job(c, child).await? {
                rec.spec.parents.retain(|p| p != name);
                write_job_row(c, &rec.spec, now, rec.next_fire_at, false).await?;
            }
        }
    }
    c.execute(
        "DELETE FROM job_parents WHERE parent = $1 OR child = $1",
        &[&name],
    )
    .await?;
    c.execute(
        "DELETE FROM dependency_progress WHERE parent = $1 OR child = $1",
        &[&name],
    )
    .await?;
    c.execute(
        "DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = $1)",
        &[&name],
    )
    .await?;
    c.execute("DELETE FROM runs WHERE job = $1", &[&name])
        .await?;
    let n = c
        .execute("DELETE FROM jobs WHERE name = $1", &[&name])
        .await?;
    Ok(n > 0)
}

/// Pause or resume a job.
pub async fn set_paused(c: &Conn, name: &str, paused: bool, now: Timestamp) -> TxResult<JobRecord> {
    lock_jobs(c).await?;
    let prev = lock_job(c, name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?;
    if prev.spec.paused == paused {
        return Ok(prev);
    }
    let mut spec = prev.spec.clone();
    spec.paused = paused;
    // Resuming starts from now: the paused period is not backfilled.
    let cursor = compute_cursor(&spec, prev.created_at, now, None)?;
    write_job_row(c, &spec, now, cursor, false).await?;
    Ok(load_job(c, name)
        .await?
        .ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?)
}

/// Jobs written after `since`.
pub async fn changed_jobs(c: &Conn, since: Timestamp) -> TxResult<Vec<JobChange>> {
    Ok(c.query(
        "SELECT name, version, updated_at FROM jobs WHERE updated_at > $1",
        &[&us(since)],
    )
    .await?
    .iter()
    .map(|r| JobChange {
        name: r.get(0),
        version: r.get(1),
        updated_at: ts(r.get(2)),
    })
    .collect())
}
