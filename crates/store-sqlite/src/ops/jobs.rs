//! Jobs: write (with their parents and cursor), delete, pause, the change list.

use super::*;

/// Create or replace a job.
pub fn put_job(
    c: &Connection,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> StoreResult<PutOutcome> {
    let prev = load_job(c, &spec.name)?;
    if mode == PutMode::Create && prev.is_some() {
        return Err(StoreError::JobExists(spec.name));
    }
    let created_at = prev.as_ref().map_or(now, |p| p.created_at);
    let cursor = compute_cursor(&spec, created_at, now, prev.as_ref())?;
    write_parents(c, &spec)?;
    write_job_row(c, &spec, now, cursor, prev.is_none())?;
    let record = load_job(c, &spec.name)?
        .ok_or_else(|| StoreError::Backend("job vanished after write".into()))?;
    Ok(PutOutcome {
        record,
        created: prev.is_none(),
    })
}

/// Check a job's parents (they exist, no cycle) and store its edges; progress towards parents it
/// no longer has is dropped.
pub(super) fn write_parents(c: &Connection, spec: &JobSpec) -> StoreResult<()> {
    let mut missing = Vec::new();
    for p in &spec.parents {
        let exists: Option<i64> = c
            .prepare_cached("SELECT 1 FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([p], |r| r.get(0))
            .optional()
            .map_err(db)?;
        if exists.is_none() {
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
    {
        let mut stmt = c
            .prepare_cached("SELECT child, parent FROM job_parents")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(db)?;
        for row in rows {
            let (child, parent) = row.map_err(db)?;
            graph.entry(child).or_default().push(parent);
        }
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
    c.prepare_cached("DELETE FROM job_parents WHERE child = ?1")
        .map_err(db)?
        .execute([&spec.name])
        .map_err(db)?;
    for p in &spec.parents {
        c.prepare_cached("INSERT INTO job_parents (child, parent) VALUES (?1, ?2)")
            .map_err(db)?
            .execute(params![spec.name, p])
            .map_err(db)?;
    }
    c.prepare_cached(
        "DELETE FROM dependency_progress WHERE child = ?1 AND parent NOT IN \
         (SELECT parent FROM job_parents WHERE child = ?1)",
    )
    .map_err(db)?
    .execute([&spec.name])
    .map_err(db)?;
    Ok(())
}

pub(super) fn children_of(c: &Connection, parent: &str) -> StoreResult<Vec<String>> {
    c.prepare_cached("SELECT child FROM job_parents WHERE parent = ?1 ORDER BY child")
        .map_err(db)?
        .query_map([parent], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)
}

/// Insert (`new`) or update a job's row: spec, pause state and cursor; an update bumps `version`.
pub(super) fn write_job_row(
    c: &Connection,
    spec: &JobSpec,
    now: Timestamp,
    cursor: Option<Timestamp>,
    new: bool,
) -> StoreResult<()> {
    let json = serde_json::to_string(spec).map_err(|e| StoreError::Backend(e.to_string()))?;
    let sql = if new {
        "INSERT INTO jobs (name, spec, created_at, updated_at, version, paused, next_fire_at) \
         VALUES (?1, ?2, ?3, ?3, 1, ?4, ?5)"
    } else {
        "UPDATE jobs SET spec = ?2, updated_at = ?3, version = version + 1, paused = ?4, \
         next_fire_at = ?5 WHERE name = ?1"
    };
    c.prepare_cached(sql)
        .map_err(db)?
        .execute(params![
            spec.name,
            json,
            us(now),
            spec.paused,
            cursor.map(us)
        ])
        .map_err(db)?;
    Ok(())
}

/// Delete a job, its runs and their output (refused while other jobs depend on it, unless `force`).
pub fn delete_job(c: &Connection, name: &str, force: bool, now: Timestamp) -> StoreResult<bool> {
    let children = children_of(c, name)?;
    if !children.is_empty() && load_job(c, name)?.is_some() {
        if !force {
            return Err(StoreError::Conflict(format!(
                "job `{name}` has dependent jobs: {}; delete them first, or delete with force=true to remove `{name}` from their parents",
                children.join(", ")
            )));
        }
        for child in &children {
            if let Some(mut rec) = load_job(c, child)? {
                rec.spec.parents.retain(|p| p != name);
                write_job_row(c, &rec.spec, now, rec.next_fire_at, false)?;
            }
        }
    }
    c.prepare_cached("DELETE FROM job_parents WHERE parent = ?1 OR child = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM dependency_progress WHERE parent = ?1 OR child = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = ?1)")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    c.prepare_cached("DELETE FROM runs WHERE job = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    let n = c
        .prepare_cached("DELETE FROM jobs WHERE name = ?1")
        .map_err(db)?
        .execute([name])
        .map_err(db)?;
    Ok(n > 0)
}

/// Pause or resume a job.
pub fn set_paused(
    c: &Connection,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> StoreResult<JobRecord> {
    let prev = load_job(c, name)?.ok_or_else(|| StoreError::JobNotFound(name.to_owned()))?;
    if prev.spec.paused == paused {
        return Ok(prev);
    }
    let mut spec = prev.spec.clone();
    spec.paused = paused;
    // Resuming starts from now: the paused period is not backfilled.
    let cursor = compute_cursor(&spec, prev.created_at, now, None)?;
    write_job_row(c, &spec, now, cursor, false)?;
    load_job(c, name)?.ok_or_else(|| StoreError::JobNotFound(name.to_owned()))
}

/// Jobs written after `since`.
pub fn changed_jobs(c: &Connection, since: Timestamp) -> StoreResult<Vec<JobChange>> {
    c.prepare_cached("SELECT name, version, updated_at FROM jobs WHERE updated_at > ?1")
        .map_err(db)?
        .query_map([us(since)], |r| {
            Ok(JobChange {
                name: r.get(0)?,
                version: r.get(1)?,
                updated_at: ts(r.get(2)?),
            })
        })
        .map_err(db)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db)
}
