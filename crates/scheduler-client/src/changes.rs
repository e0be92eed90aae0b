//! The audit log: who changed what, and when.

use chrono::{DateTime, Utc};
use scheduler_api::SchedulerApiClient;
pub use scheduler_api::{ChangePage, ScheduleChange};

use crate::{Error, SchedulerClient};

/// Which changes `list_changes` returns (every change within the caller's owners by default),
/// newest first, `limit` (default 50) at a time from `cursor`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangeQuery {
    pub schedule_id: Option<String>,
    pub owner: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl SchedulerClient {
    /// The audit log, newest first.
    pub async fn list_changes(&self, query: ChangeQuery) -> Result<ChangePage, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.list_changes(q.schedule_id, q.owner, q.since, q.limit, q.cursor)
                    .await
            }
        })
        .await
    }
}
