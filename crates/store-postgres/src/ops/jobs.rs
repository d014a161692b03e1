//! Jobs: write (with their parents and cursor), delete, pause, the change list.

use super::*;

/// Create or replace a job ([`txn::jobs::put_job`]).
pub async fn put_job(
    c: &Conn,
    spec: JobSpec,
    mode: PutMode,
    now: Timestamp,
) -> TxResult<PutOutcome> {
    txn::jobs::put_job(&PgTx(c), spec, mode, now).await
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

/// Delete a job, its runs and their output ([`txn::jobs::delete_job`]).
pub async fn delete_job(c: &Conn, name: &str, force: bool, now: Timestamp) -> TxResult<bool> {
    txn::jobs::delete_job(&PgTx(c), name, force, now).await
}

/// Pause or resume a job ([`txn::jobs::set_paused`]).
pub async fn set_paused(c: &Conn, name: &str, paused: bool, now: Timestamp) -> TxResult<JobRecord> {
    txn::jobs::set_paused(&PgTx(c), name, paused, now).await
}

impl txn::jobs::JobSteps for PgTx<'_> {
    async fn lock_definitions(&self) -> TxResult<()> {
        lock_jobs(self.0).await
    }

    async fn job_exists(&self, name: &str) -> TxResult<bool> {
        Ok(self
            .0
            .query_opt("SELECT 1 FROM jobs WHERE name = $1", &[&name])
            .await?
            .is_some())
    }

    async fn parent_edges(&self) -> TxResult<Vec<(String, String)>> {
        let rows = self
            .0
            .query("SELECT child, parent FROM job_parents", &[])
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
        Ok(out)
    }

    async fn set_parents(&self, child: &str, parents: &[String]) -> TxResult<()> {
        let c = self.0;
        c.execute("DELETE FROM job_parents WHERE child = $1", &[&child])
            .await?;
        for p in parents {
            c.execute(
                "INSERT INTO job_parents (child, parent) VALUES ($1, $2)",
                &[&child, p],
            )
            .await?;
        }
        c.execute(
            "DELETE FROM dependency_progress WHERE child = $1 AND parent NOT IN \
             (SELECT parent FROM job_parents WHERE child = $1)",
            &[&child],
        )
        .await?;
        Ok(())
    }

    async fn write_job_row(
        &self,
        spec: &JobSpec,
        now: Timestamp,
        cursor: Option<Timestamp>,
        new: bool,
    ) -> TxResult<()> {
        write_job_row(self.0, spec, now, cursor, new).await
    }

    async fn delete_job_rows(&self, name: &str) -> TxResult<bool> {
        let c = self.0;
        for sql in [
            "DELETE FROM job_parents WHERE parent = $1 OR child = $1",
            "DELETE FROM dependency_progress WHERE parent = $1 OR child = $1",
            "DELETE FROM run_logs WHERE run_id IN (SELECT id FROM runs WHERE job = $1)",
            "DELETE FROM notifications WHERE job = $1",
            "DELETE FROM runs WHERE job = $1",
        ] {
            c.execute(sql, &[&name]).await?;
        }
        let n = c
            .execute("DELETE FROM jobs WHERE name = $1", &[&name])
            .await?;
        Ok(n > 0)
    }
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
