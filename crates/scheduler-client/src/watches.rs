//! Watches: an agent's monitoring jobs.

use scheduler_api::{NewWatch, SchedulerApiClient, Watch, WatchPage, WatchQuery};

use crate::{Error, SchedulerClient};

impl SchedulerClient {
    /// Adds a watch. Like every call it is retried when the scheduler cannot be reached; a
    /// retry after a lost answer may add it twice.
    pub async fn add_watch(&self, watch: NewWatch) -> Result<Watch, Error> {
        self.call(|rpc| {
            let w = watch.clone();
            async move {
                rpc.add_watch(
                    w.check.kind().to_string(),
                    w.check.config(),
                    w.on_success_message,
                    w.on_failure_message,
                    Some(w.on_complete.as_str().to_string()),
                    w.workflow_id,
                    w.interval_seconds.map(|s| s as i64),
                    w.max_attempts.map(i64::from),
                    w.user_id,
                    w.conversation_id,
                    w.platform,
                    w.platform_channel_id,
                    w.platform_thread_id,
                )
                .await
            }
        })
        .await
    }

    pub async fn list_watches(&self, query: WatchQuery) -> Result<WatchPage, Error> {
        self.call(|rpc| {
            let q = query.clone();
            async move {
                let status = q.status.map(|s| s.as_str().to_string());
                rpc.list_watches(status, q.user_id, q.workflow_id, q.limit, q.cursor)
                    .await
            }
        })
        .await
    }

    pub async fn cancel_watch(&self, id: &str) -> Result<Watch, Error> {
        let id = id.to_string();
        self.call(|rpc| {
            let id = id.clone();
            async move { rpc.cancel_watch(id).await }
        })
        .await
    }

    /// Cancels the active watches of a workflow; returns how many.
    pub async fn cancel_workflow(&self, workflow_id: &str) -> Result<u64, Error> {
        let workflow_id = workflow_id.to_string();
        self.call(|rpc| {
            let workflow_id = workflow_id.clone();
            async move { rpc.cancel_workflow(workflow_id).await }
        })
        .await
    }
}
