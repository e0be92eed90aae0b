//! Pruning the ledger's finished rows, in bounded batches that skip rows another transaction
//! holds rather than wait for them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use service_kit::on_db;

use super::{At, One, SqlStore};
use crate::store::{Retention, StoreError};

#[async_trait]
impl Retention for SqlStore {
    async fn prune_finished(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let d = self.dialect();
        let sql = format!(
            "DELETE FROM schedule_runs WHERE {0} IN (SELECT {0} FROM schedule_runs \
             WHERE finished_at < $2 AND jobstore = $1 AND status NOT IN ('pending', 'buffered') \
             LIMIT $3{1})",
            d.address(),
            d.skip_locked()
        );
        let mut conn = self.writer().await?;
        let deleted = on_db!(
            conn.conn(),
            execute,
            &sql,
            self.jobstore.as_str(),
            At(before),
            limit as i64
        );
        Ok(deleted)
    }

    async fn over_keep(&self, keep: usize, limit: usize) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT r.schedule_id FROM schedule_runs AS r JOIN {} AS s ON s.id = r.schedule_id \
             WHERE r.jobstore = $1 AND r.status NOT IN ('pending', 'buffered') \
             GROUP BY r.schedule_id HAVING count(*) > $2 LIMIT $3",
            self.table()
        );
        let mut conn = self.reader().await?;
        let over: Vec<(String,)> = on_db!(
            conn.conn(),
            fetch_all One<String>,
            &sql,
            self.jobstore.as_str(),
            keep as i64,
            limit as i64
        );
        Ok(over.into_iter().map(|(id,)| id).collect())
    }

    async fn trim_runs(
        &self,
        schedule_id: &str,
        keep: usize,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let d = self.dialect();
        let sql = format!(
            "DELETE FROM schedule_runs WHERE {0} IN (SELECT {0} FROM schedule_runs \
             WHERE schedule_id = $1 AND status NOT IN ('pending', 'buffered') \
             AND scheduled_time < (SELECT scheduled_time FROM schedule_runs WHERE schedule_id = $1 \
             AND status NOT IN ('pending', 'buffered') ORDER BY scheduled_time DESC \
             LIMIT 1 OFFSET $2) \
             ORDER BY scheduled_time LIMIT $3{1})",
            d.address(),
            d.skip_locked()
        );
        let mut conn = self.writer().await?;
        let deleted = on_db!(
            conn.conn(),
            execute,
            &sql,
            schedule_id,
            keep.saturating_sub(1) as i64,
            limit as i64
        );
        Ok(deleted)
    }
}
