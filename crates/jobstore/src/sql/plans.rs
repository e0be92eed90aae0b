//! The plans the database makes for the hottest queries, so that a test (or an operator) can
//! see that they read the indexes meant for them: an index that looks better to a planner
//! without statistics can turn a claim into a sort of every active schedule.

use chrono::Utc;
use service_kit::on_db;
use service_kit::sql::Row;

use super::{At, SqlStore, get};
use crate::model::ListFilter;
use crate::store::StoreError;

/// The plans, as the database prints them (one line per step).
#[derive(Debug, Clone)]
pub struct Plans {
    /// The claim's read of what is due.
    pub due: String,
    /// The engine's read of when there is work next.
    pub wakeup: String,
    /// The listing asked for.
    pub listing: String,
}

impl SqlStore {
    /// The plans of the claim's and the wakeup's reads, and of the listing with `filter`.
    pub async fn plans(&self, filter: &ListFilter) -> Result<Plans, StoreError> {
        let (explain, column) = self.dialect().explain();
        let now = At(Utc::now());
        let mut conn = self.reader().await?;
        let due_sql = format!("{explain} {}", self.due_sql());
        let due = on_db!(conn.conn(), rows, &due_sql, now, 500_i64, now);
        let wakeup_sql = format!("{explain} {}", self.wakeup_sql());
        let wakeup = on_db!(conn.conn(), rows, &wakeup_sql, self.jobstore.as_str(), now);
        let listing = self
            .listing_rows(conn.conn(), &format!("{explain} "), filter)
            .await?;
        let text = |rows: Vec<Row>| -> Result<String, StoreError> {
            let lines = rows
                .iter()
                .map(|row| get::<String>(row, column))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(lines.join("\n"))
        };
        Ok(Plans {
            due: text(due)?,
            wakeup: text(wakeup)?,
            listing: text(listing)?,
        })
    }
}
