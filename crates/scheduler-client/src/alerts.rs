//! Alerts: the incidents of schedules whose work did not happen.

use scheduler_api::SchedulerApiClient;
pub use scheduler_api::{Alert, AlertKind, AlertPolicy, AlertState};

use crate::{Error, SchedulerClient};

/// Which incidents `list_alerts` returns (every one within the caller's owners by default),
/// newest first, at most `limit` (default 100).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertQuery {
    pub state: Option<AlertState>,
    pub owner: Option<String>,
    pub schedule_id: Option<String>,
    pub limit: Option<u32>,
}

impl SchedulerClient {
    /// The incidents, newest first.
    pub async fn list_alerts(&self, query: AlertQuery) -> Result<Vec<Alert>, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.list_alerts(q.state, q.owner, q.schedule_id, q.limit)
                    .await
            }
        })
        .await
    }
}
