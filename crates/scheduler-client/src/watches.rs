//! Watches: an agent's monitoring jobs.

use scheduler_api::{Check, OnComplete, SchedulerApiClient, Watch, WatchPage, WatchStatus};
use serde_json::Value;

use crate::{Error, SchedulerClient};

/// The arguments of `add_watch`.
#[derive(Debug, Clone)]
pub struct NewWatch {
    pub user_id: String,
    pub check: Check,
    /// `{result}` is replaced by what the check found.
    pub on_success_message: String,
    pub on_failure_message: Option<String>,
    pub on_complete: OnComplete,
    pub workflow_id: Option<String>,
    /// `None` for 30.
    pub interval_seconds: Option<u64>,
    /// `None` for 120.
    pub max_attempts: Option<u32>,
    pub conversation_id: Option<String>,
    pub platform: Option<String>,
    pub platform_channel_id: Option<String>,
    pub platform_thread_id: Option<String>,
}

impl NewWatch {
    /// A watch of `user_id` with the defaults: notify, every 30 s, 120 attempts.
    pub fn new(
        user_id: impl Into<String>,
        check: Check,
        on_success_message: impl Into<String>,
    ) -> Self {
        NewWatch {
            user_id: user_id.into(),
            check,
            on_success_message: on_success_message.into(),
            on_failure_message: None,
            on_complete: OnComplete::Notify,
            workflow_id: None,
            interval_seconds: None,
            max_attempts: None,
            conversation_id: None,
            platform: None,
            platform_channel_id: None,
            platform_thread_id: None,
        }
    }

    /// `job_type` and `check_config` as the wire has them.
    fn check_fields(&self) -> (String, Value) {
        let mut config = serde_json::to_value(&self.check).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut config {
            map.remove("job_type");
        }
        (self.check.kind().to_string(), config)
    }
}

/// The filters of `list_watches`.
#[derive(Debug, Clone, Default)]
pub struct WatchQuery {
    pub status: Option<WatchStatus>,
    pub user_id: Option<String>,
    pub workflow_id: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

impl SchedulerClient {
    /// Adds a watch. Like every call it is retried when the scheduler cannot be reached; a
    /// retry after a lost answer may add it twice.
    pub async fn add_watch(&self, watch: NewWatch) -> Result<Watch, Error> {
        self.call(|rpc| {
            let w = watch.clone();
            async move {
                let (job_type, check_config) = w.check_fields();
                rpc.add_watch(
                    job_type,
                    check_config,
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
