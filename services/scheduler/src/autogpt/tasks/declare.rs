//! The declared system tasks: the `[system_tasks]` section of the configuration, AutoGPT's
//! set when it lists none, the settings of the services the tasks call, and the trigger each
//! declaration asks for.

use anyhow::{Context, bail};
use jobstore::StoreName;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use service_kit::config::check_http_url;

use super::SystemTask;

/// The system tasks and the services they call. Each service is a JSON-RPC endpoint; a task
/// whose service has no URL is not registered (and says so in `get_registry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SystemTasksConfig {
    /// The notification manager (`queue_weekly_summary`, `process_existing_batches`).
    pub notification_manager_url: Option<String>,
    /// The database manager (`get_graph_executions`, `get_block_error_stats`).
    pub database_manager_url: Option<String>,
    /// The storage service (`cleanup_expired_files`).
    pub storage_url: Option<String>,
    /// Where alerts go, as a Discord-compatible webhook (`{"content": "..."}`). Without it alerts
    /// are only logged.
    pub alert_webhook_url: Option<String>,
    /// A QUEUED execution older than this is late; also how often `report_late_executions` runs.
    pub execution_late_notification_threshold_secs: u64,
    /// How far back `report_late_executions` looks.
    pub execution_late_notification_checkrange_secs: u64,
    /// How often `report_block_error_rates` runs; it looks at the last 24 hours.
    pub block_error_rate_check_interval_secs: u64,
    /// A block failing at least this share of its runs (0-1) is reported...
    pub block_error_rate_threshold: f64,
    /// ...when it ran at least this many times.
    pub block_error_min_runs: u64,
    /// How often `cleanup_expired_files` runs (1-24).
    pub cloud_storage_cleanup_interval_hours: u64,
    /// The declared tasks; absent means the AutoGPT set built from the settings above, and an
    /// empty list means none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskDeclaration>>,
}

/// One system task: which task, where its schedule lives and when it fires. Without `cron` or
/// `every_secs` it runs only when asked (`execute_<task>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDeclaration {
    /// The schedule id, unique over all tasks.
    pub id: String,
    pub task: SystemTask,
    pub jobstore: StoreName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// The IANA zone of `cron` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_secs: Option<u64>,
    /// Keyword arguments passed to the task.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub kwargs: Value,
}

impl Default for SystemTasksConfig {
    fn default() -> Self {
        SystemTasksConfig {
            notification_manager_url: None,
            database_manager_url: None,
            storage_url: None,
            alert_webhook_url: None,
            execution_late_notification_threshold_secs: 300,
            execution_late_notification_checkrange_secs: 3600,
            block_error_rate_check_interval_secs: 86_400,
            block_error_rate_threshold: 0.5,
            block_error_min_runs: 10,
            cloud_storage_cleanup_interval_hours: 6,
            tasks: None,
        }
    }
}

impl SystemTasksConfig {
    /// The declared tasks: the configured list, or AutoGPT's set.
    pub fn declarations(&self) -> Vec<TaskDeclaration> {
        if let Some(tasks) = &self.tasks {
            return tasks.clone();
        }
        let task = |task: SystemTask, jobstore, cron: Option<&str>, every_secs| TaskDeclaration {
            id: task.as_str().to_string(),
            task,
            jobstore,
            cron: cron.map(str::to_string),
            timezone: cron.map(|_| "UTC".to_string()),
            every_secs,
            kwargs: Value::Null,
        };
        vec![
            // Monday 09:00 UTC. AutoGPT's APScheduler read the 1 as Tuesday.
            task(
                SystemTask::ProcessWeeklySummary,
                StoreName::WeeklyNotifications,
                Some("0 9 * * 1"),
                None,
            ),
            task(
                SystemTask::ReportLateExecutions,
                StoreName::Execution,
                None,
                Some(self.execution_late_notification_threshold_secs),
            ),
            task(
                SystemTask::ReportBlockErrorRates,
                StoreName::Execution,
                None,
                Some(self.block_error_rate_check_interval_secs),
            ),
            task(
                SystemTask::CleanupExpiredFiles,
                StoreName::Execution,
                None,
                Some(self.cloud_storage_cleanup_interval_hours * 3600),
            ),
            task(
                SystemTask::ProcessExistingBatches,
                StoreName::BatchedNotifications,
                None,
                None,
            ),
        ]
    }

    /// The URL of the service a task calls, or the name of the setting that is missing.
    pub fn service_url(&self, task: SystemTask) -> Result<&str, &'static str> {
        let (url, key) = match task {
            SystemTask::ProcessWeeklySummary | SystemTask::ProcessExistingBatches => (
                &self.notification_manager_url,
                "system_tasks.notification_manager_url",
            ),
            SystemTask::ReportLateExecutions | SystemTask::ReportBlockErrorRates => (
                &self.database_manager_url,
                "system_tasks.database_manager_url",
            ),
            SystemTask::CleanupExpiredFiles => (&self.storage_url, "system_tasks.storage_url"),
        };
        url.as_deref().filter(|u| !u.is_empty()).ok_or(key)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, url) in [
            ("notification_manager_url", &self.notification_manager_url),
            ("database_manager_url", &self.database_manager_url),
            ("storage_url", &self.storage_url),
            ("alert_webhook_url", &self.alert_webhook_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.is_empty()) {
                check_http_url(&format!("system_tasks.{key}"), url)?;
            }
        }
        if !(1..=24).contains(&self.cloud_storage_cleanup_interval_hours) {
            bail!(
                "system_tasks.cloud_storage_cleanup_interval_hours must be between 1 and 24, got {}",
                self.cloud_storage_cleanup_interval_hours
            );
        }
        if self.execution_late_notification_threshold_secs == 0
            || self.block_error_rate_check_interval_secs == 0
        {
            bail!(
                "system_tasks.execution_late_notification_threshold_secs and \
                 block_error_rate_check_interval_secs must be at least 1"
            );
        }
        if self.execution_late_notification_checkrange_secs
            <= self.execution_late_notification_threshold_secs
        {
            bail!(
                "system_tasks.execution_late_notification_checkrange_secs ({}) must exceed \
                 execution_late_notification_threshold_secs ({})",
                self.execution_late_notification_checkrange_secs,
                self.execution_late_notification_threshold_secs
            );
        }
        if !(self.block_error_rate_threshold > 0.0 && self.block_error_rate_threshold <= 1.0) {
            bail!(
                "system_tasks.block_error_rate_threshold must be in (0, 1], got {}",
                self.block_error_rate_threshold
            );
        }
        let mut seen = std::collections::HashSet::new();
        for declaration in self.declarations() {
            if declaration.id.trim().is_empty() {
                bail!("system_tasks.tasks: a task has an empty id");
            }
            if !seen.insert(declaration.id.clone()) {
                bail!(
                    "system_tasks.tasks: the id '{}' is declared twice",
                    declaration.id
                );
            }
            declaration
                .trigger(chrono::Utc::now())
                .with_context(|| format!("system_tasks.tasks: task '{}'", declaration.id))?;
        }
        Ok(())
    }
}

impl TaskDeclaration {
    /// The trigger this declaration asks for, anchored at `now` for intervals (the first fire
    /// is one interval after registration, as in AutoGPT); `None` for a task run only by hand.
    pub fn trigger(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Option<triggers::TriggerSpec>> {
        let spec = match (&self.cron, self.every_secs) {
            (Some(_), Some(_)) => bail!("give either cron or every_secs, not both"),
            (None, None) => {
                if self.timezone.is_some() {
                    bail!("timezone is given without cron");
                }
                return Ok(None);
            }
            (Some(expression), None) => triggers::TriggerKind::Cron {
                expression: expression.clone(),
                timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            },
            // Anchored when registered: the first fire is one interval later.
            (None, Some(every_secs)) => triggers::TriggerKind::Interval {
                every_secs,
                anchor: None,
            },
        };
        let spec = triggers::TriggerSpec::from(spec);
        spec.clone().anchored(now).compile()?;
        Ok(Some(spec))
    }
}
