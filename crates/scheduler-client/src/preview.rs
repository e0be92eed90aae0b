//! What will fire: every occurrence of the active schedules in a window, and the bursts.

use chrono::{DateTime, Utc};
use scheduler_api::SchedulerApiClient;
pub use scheduler_api::{FirePreview, MinuteCount, PreviewFire};

use crate::{Error, SchedulerClient};

/// Which schedules `preview_fires` looks at (all active ones by default), and how many
/// occurrences it lists (default 10,000).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreviewQuery {
    pub owner: Option<String>,
    pub tag: Option<String>,
    pub jobstore: Option<String>,
    pub limit: Option<u32>,
}

impl SchedulerClient {
    /// Every occurrence of the active schedules due in `[from, to]` (at most 7 days apart),
    /// in time order, with how many fall due in each minute.
    pub async fn preview_fires(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        query: PreviewQuery,
    ) -> Result<FirePreview, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                rpc.preview_fires(from, to, q.owner, q.tag, q.jobstore, q.limit)
                    .await
            }
        })
        .await
    }
}
