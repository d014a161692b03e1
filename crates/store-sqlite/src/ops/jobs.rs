//! Jobs: write (with their parents and cursor), delete, pause, the change list.

use super::*;

/// Create or replace a job ([`txn::jobs::put_job`]).
pub fn put_job(
    c: &Connection,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> StoreResult<PutOutcome> {
    sync(txn::jobs::put_job(&SqliteTx(c), spec, mode, now))
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

/// Delete a job, its runs and their output ([`txn::jobs::delete_job`]).
pub fn delete_job(c: &Connection, name: &str, force: bool, now: Timestamp) -> StoreResult<bool> {
    sync(txn::jobs::delete_job(&SqliteTx(c), name, force, now))
}

/// Pause or resume a job ([`txn::jobs::set_paused`]).
pub fn set_paused(
    c: &Connection,
    name: &str,
    paused: bool,
    now: Timestamp,
) -> StoreResult<JobRecord> {
    sync(txn::jobs::set_paused(&SqliteTx(c), name, paused, now))
}

impl txn::jobs::JobSteps for SqliteTx<'_> {
    async fn lock_definitions(&self) -> StoreResult<()> {
        // One writer thread: every definition change is serialized already.
        Ok(())
    }

    async fn job_exists(&self, name: &str) -> StoreResult<bool> {
        let found: Option<i64> = self
            .0
            .prepare_cached("SELECT 1 FROM jobs WHERE name = ?1")
            .map_err(db)?
            .query_row([name], |r| r.get(0))
            .optional()
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn parent_edges(&self) -> StoreResult<Vec<(String, String)>> {
        self.0
            .prepare_cached("SELECT child, parent FROM job_parents")
            .map_err(db)?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
    }

    async fn set_parents(&self, child: &str, parents: &[String]) -> StoreResult<()> {
        let c = self.0;
        c.prepare_cached("DELETE FROM job_parents WHERE child = ?1")
            .map_err(db)?
            .execute([child])
            .map_err(db)?;
        for p in parents {
            c.prepare_cached("INSERT INTO job_parents (child, parent) VALUES (?1, ?2)")
                .map_err(db)?
                .execute(params![child, p])
                .map_err(db)?;
        }
        c.prepare_cached(
            "DELETE FROM dependency_progress WHERE child = ?1 AND parent NOT IN \
             (SELECT parent FROM job_parents WHERE child = ?1)",
        )
        .map_err(db)?
        .execute([child])
        .map_err(db)?;
        Ok(())
    }

    async fn write_job_row(
        &self,
        spec: &JobSpec,
        now: Timestamp,
        cursor: Option<Timestamp>,
        new: bool,
    ) -> StoreResult<()> {
        write_job_row(self.0, spec, now, cursor, new)
    }

    async fn delete_job_rows(&self, name: &str) -> StoreResult<bool> {
        let c = self.0;
        for sql in [
            "DELETE FROM job_parents WHERE parent = ?1 OR child = ?1",
            "DELETE FROM dependency_progress WHERE parent = ?1 OR child = ?1",
            "DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = ?1)",
            "DELETE FROM notifications WHERE job = ?1",
            "DELETE FROM runs WHERE job = ?1",
        ] {
            c.prepare_cached(sql)
                .map_err(db)?
                .execute([name])
                .map_err(db)?;
        }
        let n = c
            .prepare_cached("DELETE FROM jobs WHERE name = ?1")
            .map_err(db)?
            .execute([name])
            .map_err(db)?;
        Ok(n > 0)
    }
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
