//! What each system task does: the calls it makes to its service, and the alert it sends when
//! it finds something wrong.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{Value, json};

use super::SystemTask;
use super::SystemTasksConfig;
use crate::endpoint::{DispatchError, Endpoint, error_chain, excerpt, is_retryable, truncate};

/// Discord refuses a message longer than this many characters.
const ALERT_MAX_CHARS: usize = 2000;
/// The most late executions one check asks for, as AutoGPT does.
const LATE_EXECUTIONS_LIMIT: u32 = 1000;

/// Runs system tasks against the configured services.
pub struct TaskRunner {
    notification_manager: Option<Endpoint>,
    database_manager: Option<Endpoint>,
    storage: Option<Endpoint>,
    webhook: Option<String>,
    http: reqwest::Client,
    settings: SystemTasksConfig,
}

impl TaskRunner {
    pub fn new(config: &SystemTasksConfig, http: reqwest::Client) -> Self {
        let endpoint = |url: &Option<String>, service| {
            url.as_deref()
                .filter(|u| !u.is_empty())
                .map(|url| Endpoint::new(http.clone(), service, url))
        };
        TaskRunner {
            notification_manager: endpoint(
                &config.notification_manager_url,
                "notification manager",
            ),
            database_manager: endpoint(&config.database_manager_url, "database manager"),
            storage: endpoint(&config.storage_url, "storage service"),
            webhook: config.alert_webhook_url.clone().filter(|u| !u.is_empty()),
            http,
            settings: config.clone(),
        }
    }

    /// Runs `task` once, as of `now`, and returns its result.
    pub async fn run(
        &self,
        task: SystemTask,
        kwargs: &Value,
        now: DateTime<Utc>,
    ) -> Result<Value, DispatchError> {
        match task {
            SystemTask::ProcessWeeklySummary => {
                self.service(task, &self.notification_manager)?
                    .call("queue_weekly_summary", json!({}))
                    .await
            }
            SystemTask::ProcessExistingBatches => {
                task.check_kwargs(kwargs).map_err(DispatchError::Rejected)?;
                let types = &kwargs["notification_types"];
                self.service(task, &self.notification_manager)?
                    .call(
                        "process_existing_batches",
                        json!({"notification_types": types}),
                    )
                    .await
            }
            SystemTask::CleanupExpiredFiles => {
                self.service(task, &self.storage)?
                    .call("cleanup_expired_files", json!({}))
                    .await
            }
            SystemTask::ReportLateExecutions => self.report_late_executions(now).await,
            SystemTask::ReportBlockErrorRates => self.report_block_error_rates(now).await,
        }
    }

    fn service<'a>(
        &self,
        task: SystemTask,
        endpoint: &'a Option<Endpoint>,
    ) -> Result<&'a Endpoint, DispatchError> {
        endpoint.as_ref().ok_or_else(|| {
            let key = self.settings.service_url(task).err().unwrap_or("its URL");
            DispatchError::Rejected(format!(
                "system task '{}' cannot run: {key} is not set",
                task.as_str()
            ))
        })
    }

    /// QUEUED executions created between the check range and the threshold ago.
    async fn report_late_executions(&self, now: DateTime<Utc>) -> Result<Value, DispatchError> {
        let threshold = self.settings.execution_late_notification_threshold_secs;
        let range = self.settings.execution_late_notification_checkrange_secs;
        let params = json!({
            "statuses": ["QUEUED"],
            "created_time_gte": rfc3339(now - seconds(range)),
            "created_time_lte": rfc3339(now - seconds(threshold)),
            "limit": LATE_EXECUTIONS_LIMIT,
        });
        let answer = self
            .service(SystemTask::ReportLateExecutions, &self.database_manager)?
            .call("get_graph_executions", params)
            .await?;
        let executions = list(answer, "get_graph_executions")?;
        if executions.is_empty() {
            return Ok(json!("No late executions detected."));
        }
        let users: std::collections::HashSet<&str> = executions
            .iter()
            .filter_map(|e| e.get("user_id").and_then(Value::as_str))
            .collect();
        let mut message = format!(
            "Late executions detected: {} late executions from {} users in the last {range} \
             seconds. Graph has been queued for more than {threshold} seconds. Please check the \
             executor status. Details:",
            executions.len(),
            users.len(),
        );
        for execution in &executions {
            let field = |name: &str| {
                execution
                    .get(name)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .unwrap_or_else(|| "?".into())
            };
            let created = execution
                .get("created_at")
                .or_else(|| execution.get("started_at"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            message.push_str(&format!(
                "\n* `Execution ID: {}, Graph ID: {}v{}, User ID: {}, Created At: {created}`",
                field("id"),
                field("graph_id"),
                field("graph_version"),
                field("user_id"),
            ));
        }
        self.alert(&message).await?;
        Ok(Value::String(message))
    }

    /// Blocks with enough runs and too high a share of failures over the last 24 hours.
    async fn report_block_error_rates(&self, now: DateTime<Utc>) -> Result<Value, DispatchError> {
        let params = json!({
            "start_time": rfc3339(now - TimeDelta::hours(24)),
            "end_time": rfc3339(now),
        });
        let answer = self
            .service(SystemTask::ReportBlockErrorRates, &self.database_manager)?
            .call("get_block_error_stats", params)
            .await?;
        let stats = list(answer, "get_block_error_stats")?;
        let mut failing: Vec<(String, u64, u64, f64)> = stats
            .iter()
            .filter_map(|entry| {
                let total = entry.get("total_executions")?.as_u64()?;
                let failed = entry.get("failed_executions")?.as_u64()?;
                let block = entry
                    .get("block_name")
                    .or_else(|| entry.get("block_id"))?
                    .as_str()?
                    .to_string();
                let rate = failed as f64 / total.max(1) as f64;
                (total >= self.settings.block_error_min_runs
                    && rate >= self.settings.block_error_rate_threshold)
                    .then_some((block, total, failed, rate))
            })
            .collect();
        if failing.is_empty() {
            return Ok(json!(
                "No block above the error rate threshold in the last 24 hours."
            ));
        }
        failing.sort_by(|a, b| b.3.total_cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
        let mut message = format!(
            "Block Error Rate Alert: {} block(s) failed at least {:.0}% of at least {} runs in \
             the last 24 hours:",
            failing.len(),
            self.settings.block_error_rate_threshold * 100.0,
            self.settings.block_error_min_runs,
        );
        for (block, total, failed, rate) in &failing {
            message.push_str(&format!(
                "\n* `{block}`: {failed} of {total} runs failed ({:.1}%)",
                rate * 100.0
            ));
        }
        self.alert(&message).await?;
        Ok(Value::String(message))
    }

    /// Posts `message` to the alert webhook; without one the alert is only logged.
    async fn alert(&self, message: &str) -> Result<(), DispatchError> {
        tracing::warn!(alert = %message, "system alert");
        let Some(url) = &self.webhook else {
            return Ok(());
        };
        let content = truncate(message, ALERT_MAX_CHARS);
        let response = self
            .http
            .post(url)
            .json(&json!({ "content": content }))
            .send()
            .await
            .map_err(|e| {
                DispatchError::Unreachable(format!("alert webhook: {}", error_chain(&e)))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let message = format!("alert webhook answered HTTP {status}: {}", excerpt(&text));
        if is_retryable(status) {
            Err(DispatchError::Unreachable(message))
        } else {
            Err(DispatchError::Rejected(message))
        }
    }
}

fn list(answer: Value, method: &str) -> Result<Vec<Value>, DispatchError> {
    match answer {
        Value::Array(items) => Ok(items),
        other => Err(DispatchError::Rejected(format!(
            "{method} returned {}, expected a list",
            excerpt(&other.to_string())
        ))),
    }
}

fn seconds(secs: u64) -> TimeDelta {
    TimeDelta::seconds(secs.min(i64::MAX as u64 / 1000) as i64)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
