//! `schedctl watch …`, `schedctl system …` and `schedctl import-apscheduler`.

use clap::Subcommand;
use scheduler_client::{WatchQuery, WatchStatus};
use serde_json::json;

use crate::output::{Format, Table, cut, json, or_dash, time};
use crate::{Context, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum WatchCommand {
    /// Watches, newest first.
    #[command(after_help = "Example:\n  schedctl watch list --status active --workflow deploy-42")]
    List {
        /// active, completed, failed or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Cancel a watch: it completes with nothing sent.
    #[command(after_help = "Example:\n  schedctl watch cancel 0193c0de-…")]
    Cancel { id: String },
    /// Cancel every active watch of a workflow.
    #[command(after_help = "Example:\n  schedctl watch cancel-workflow deploy-42")]
    CancelWorkflow { workflow_id: String },
}

#[derive(Subcommand, Debug)]
pub(crate) enum SystemCommand {
    /// Declared schedules and system tasks with their next runs (admin token).
    #[command(after_help = "Example:\n  SCHEDULER_TOKEN=$ADMIN schedctl system registry")]
    Registry,
    /// This replica: leader, database, jobstores.
    #[command(after_help = "Example:\n  schedctl system status")]
    Status,
    /// Run a system task now (admin token).
    #[command(after_help = "Example:\n  schedctl system run report_late_executions")]
    Run { task: String },
}

fn watches_table(watches: &[scheduler_client::Watch]) -> String {
    let mut table = Table::new(&[
        "ID", "USER", "WORKFLOW", "CHECK", "STATUS", "ATTEMPTS", "NEXT RUN", "MESSAGE",
    ]);
    for w in watches {
        table.row(vec![
            w.id.clone(),
            w.user_id.clone(),
            or_dash(w.workflow_id.as_deref()),
            w.job_type.clone(),
            format!("{:?}", w.status).to_lowercase(),
            format!("{}/{}", w.attempts, w.max_attempts),
            time(w.next_run_at.as_ref()),
            cut(w.message.as_deref().unwrap_or("-"), 50),
        ]);
    }
    table.render()
}

pub(crate) async fn watch(context: &Context, command: WatchCommand) -> Result<(), Failure> {
    let client = context.scheduler()?;
    match command {
        WatchCommand::List {
            status,
            user,
            workflow,
            limit,
            cursor,
        } => {
            let status = status
                .map(|s| {
                    serde_json::from_value::<WatchStatus>(json!(s)).map_err(|_| {
                        Failure::usage(format!(
                            "--status '{s}': one of active, completed, failed, cancelled"
                        ))
                    })
                })
                .transpose()?;
            let page = client
                .list_watches(WatchQuery {
                    status,
                    user_id: user,
                    workflow_id: workflow,
                    limit,
                    cursor,
                })
                .await?;
            match context.format {
                Format::Json => json(&page),
                Format::Table => {
                    print!("{}", watches_table(&page.watches));
                    if let Some(cursor) = page.next_cursor {
                        println!("(more: --cursor {cursor})");
                    }
                }
            }
        }
        WatchCommand::Cancel { id } => {
            let watch = client.cancel_watch(&id).await?;
            match context.format {
                Format::Json => json(&watch),
                Format::Table => print!("{}", watches_table(std::slice::from_ref(&watch))),
            }
        }
        WatchCommand::CancelWorkflow { workflow_id } => {
            let cancelled = client.cancel_workflow(&workflow_id).await?;
            match context.format {
                Format::Json => json(&json!({"cancelled": cancelled})),
                Format::Table => println!("cancelled {cancelled} watches"),
            }
        }
    }
    Ok(())
}

pub(crate) async fn system(context: &Context, command: SystemCommand) -> Result<(), Failure> {
    let client = context.scheduler()?;
    match command {
        SystemCommand::Registry => {
            let registry = client.get_registry().await?;
            match context.format {
                Format::Json => json(&registry),
                Format::Table => {
                    println!("leader: {}", registry.leader);
                    let mut table =
                        Table::new(&["ID", "JOBSTORE", "OWNER", "TRIGGER", "STATE", "NEXT RUN"]);
                    for s in &registry.schedules {
                        table.row(vec![
                            s.id.clone(),
                            s.jobstore.clone(),
                            s.owner.clone(),
                            cut(&s.trigger.to_string(), 50),
                            if s.paused { "paused" } else { "active" }.into(),
                            time(s.next_run_time.as_ref()),
                        ]);
                    }
                    print!("{}", table.render());
                    let mut tasks = Table::new(&["TASK", "JOBSTORE", "ENABLED", "NEXT RUN"]);
                    for t in &registry.system_tasks {
                        tasks.row(vec![
                            t.task.clone(),
                            t.jobstore.clone(),
                            match &t.disabled_reason {
                                Some(reason) if !t.enabled => format!("no: {}", cut(reason, 40)),
                                _ => t.enabled.to_string(),
                            },
                            time(t.next_run_time.as_ref()),
                        ]);
                    }
                    print!("\n{}", tasks.render());
                }
            }
        }
        SystemCommand::Status => {
            let status = client.get_scheduler_status().await?;
            match context.format {
                Format::Json => json(&status),
                Format::Table => {
                    println!(
                        "leader: {}  database: {} ({})  up {:.0}s  next run: {}",
                        status.leader,
                        status.database,
                        if status.database_ok { "ok" } else { "DOWN" },
                        status.uptime_secs,
                        time(status.next_run_time.as_ref())
                    );
                    let mut table =
                        Table::new(&["JOBSTORE", "BACKEND", "SCHEDULES", "ACTIVE", "NEXT RUN"]);
                    for j in &status.jobstores {
                        table.row(vec![
                            j.name.clone(),
                            j.backend.clone(),
                            or_dash(j.schedules),
                            j.active.to_string(),
                            time(j.next_run_time.as_ref()),
                        ]);
                    }
                    print!("{}", table.render());
                }
            }
        }
        SystemCommand::Run { task } => {
            let result = client.execute_system_task(&task, None).await?;
            match context.format {
                Format::Json => json(&result),
                Format::Table => println!("{task}: {result}"),
            }
        }
    }
    Ok(())
}

/// Imports into the store at `database_url` and prints the report.
pub(crate) async fn import_apscheduler(
    import: &apscheduler_import::cli::ImportArgs,
    database_url: &str,
) -> Result<(), Failure> {
    let target = service_kit::DatabaseUrl::parse(database_url)
        .map_err(|e| Failure::usage(format!("--database-url: {e}")))?;
    let text = apscheduler_import::cli::import_into(import, &target)
        .await
        .map_err(|e| Failure::Refused {
            kind: "ImportError".into(),
            message: e.to_string(),
        })?;
    print!("{text}");
    Ok(())
}
