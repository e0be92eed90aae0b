//! `schedctl device …`: the device runner's phones, pools, queue, runs and logs.

use device_runner_client::Enqueue;
use std::io::Write;

use chrono::Utc;
use clap::Subcommand;
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, Job};
use serde_json::Value;

use crate::output::{Format, Table, cut, json, or_dash, time};
use crate::{Context, Failure};

#[derive(Subcommand, Debug)]
pub(crate) enum DeviceCommand {
    /// Each phone and pool: its state, the running job, how many wait.
    #[command(after_help = "Example:\n  schedctl device status")]
    Status,
    /// The jobs waiting and running.
    #[command(after_help = "Example:\n  schedctl device queue --device R58M123")]
    Queue {
        /// Only this phone (or pool:<name>).
        #[arg(long)]
        device: Option<String>,
    },
    /// Ended runs, newest first.
    #[command(after_help = "Example:\n  schedctl device runs --status failed --limit 20")]
    Runs {
        #[arg(long)]
        device: Option<String>,
        /// completed, failed, timeout, killed, cancelled, preempted…
        #[arg(long)]
        status: Option<String>,
        #[arg(long = "type")]
        job_type: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// A job's log; -f follows it while it runs.
    #[command(after_help = "Example:\n  schedctl device logs 0193c0de-… -f")]
    Logs {
        job_id: String,
        /// Follow the log until the job ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a running job (SIGTERM, then SIGKILL) or take a pending one off the queue.
    #[command(after_help = "Example:\n  schedctl device kill 0193c0de-…")]
    Kill { job_id: String },
    /// Take a phone out of service: it takes no new job until released. Through the scheduler
    /// (admin token) with --runner, else on the device runner (its admin token).
    #[command(
        after_help = "Examples:\n  schedctl device quarantine R58M123 --runner host-2 --reason 'cracked screen'\n  \
        schedctl device quarantine R58M123 --runner-token $RUNNER_ADMIN_TOKEN"
    )]
    Quarantine {
        serial: String,
        /// The runner, by its name in the scheduler's [device_runners.<name>].
        #[arg(long)]
        runner: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// End a phone's quarantine.
    #[command(after_help = "Example:\n  schedctl device release R58M123 --runner host-2")]
    Release {
        serial: String,
        /// The runner, by its name in the scheduler's [device_runners.<name>].
        #[arg(long)]
        runner: Option<String>,
    },
    /// Queue a job on a phone or in a pool.
    #[command(
        after_help = "Example:\n  schedctl device enqueue --type engage --device R58M123 \
        --params '{\"count\": 5}' --priority 3"
    )]
    Enqueue {
        #[arg(long = "type")]
        job_type: String,
        /// The phone.
        #[arg(long, conflicts_with = "pool")]
        device: Option<String>,
        /// The pool, for jobs that need no phone.
        #[arg(long)]
        pool: Option<String>,
        /// The job's parameters as JSON.
        #[arg(long, value_name = "JSON")]
        params: Option<String>,
        /// 1 (highest) to 10.
        #[arg(long)]
        priority: Option<i64>,
        /// Longest run, such as 15m.
        #[arg(long)]
        max_duration: Option<String>,
        /// Enqueueing again with the same key returns the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
}

fn jobs_table(jobs: &[Job]) -> String {
    let mut table = Table::new(&[
        "ID", "DEVICE", "TYPE", "STATUS", "PRIORITY", "STARTED", "DURATION", "EXIT", "ERROR",
    ]);
    for job in jobs {
        let duration = job.duration_secs.or_else(|| {
            job.started_at
                .filter(|_| job.ended_at.is_none())
                .map(|s| (Utc::now() - s).num_milliseconds() as f64 / 1000.0)
        });
        table.row(vec![
            job.id.clone(),
            job.device.clone(),
            job.job_type.clone(),
            format!("{:?}", job.status).to_lowercase(),
            job.priority.to_string(),
            time(job.started_at.as_ref()),
            or_dash(duration.map(|d| format!("{d:.1}s"))),
            or_dash(job.exit_code),
            cut(job.error.as_deref().unwrap_or("-"), 50),
        ]);
    }
    table.render()
}

pub(crate) async fn run(context: &Context, command: DeviceCommand) -> Result<(), Failure> {
    match command {
        DeviceCommand::Quarantine {
            serial,
            runner,
            reason,
        } => return crate::fleet::set_quarantine(context, serial, runner, Some(reason)).await,
        DeviceCommand::Release { serial, runner } => {
            return crate::fleet::set_quarantine(context, serial, runner, None).await;
        }
        _ => {}
    }
    let runner = context.runner()?;
    let rpc = runner.rpc();
    match command {
        DeviceCommand::Status => status(context, &runner).await?,
        DeviceCommand::Queue { device } => {
            let jobs = rpc
                .list_queue(device)
                .await
                .map_err(device_runner_client::Error::from)?;
            match context.format {
                Format::Json => json(&jobs),
                Format::Table => print!("{}", jobs_table(&jobs)),
            }
        }
        DeviceCommand::Runs {
            device,
            status,
            job_type,
            limit,
        } => {
            let jobs = rpc
                .list_runs(device, status, job_type, Some(limit), None, None)
                .await
                .map_err(device_runner_client::Error::from)?;
            match context.format {
                Format::Json => json(&jobs),
                Format::Table => print!("{}", jobs_table(&jobs)),
            }
        }
        DeviceCommand::Logs { job_id, follow } => logs(context, &runner, job_id, follow).await?,
        DeviceCommand::Kill { job_id } => {
            let job = rpc
                .kill_job(job_id)
                .await
                .map_err(device_runner_client::Error::from)?;
            match context.format {
                Format::Json => json(&job),
                Format::Table => print!("{}", jobs_table(std::slice::from_ref(&job))),
            }
        }
        DeviceCommand::Quarantine { .. } | DeviceCommand::Release { .. } => {
            unreachable!("handled above")
        }
        DeviceCommand::Enqueue {
            job_type,
            device,
            pool,
            params,
            priority,
            max_duration,
            idempotency_key,
        } => {
            let params = params
                .map(|p| {
                    serde_json::from_str::<Value>(&p)
                        .map_err(|e| Failure::usage(format!("--params is not JSON: {e}")))
                })
                .transpose()?;
            let job = rpc
                .enqueue(device_runner_client::EnqueueJob {
                    device,
                    job_type,
                    params,
                    priority,
                    max_duration: max_duration.map(Value::String),
                    source: Some("schedctl".into()),
                    idempotency_key,
                    pool,
                    ..Default::default()
                })
                .await
                .map_err(device_runner_client::Error::from)?;
            match context.format {
                Format::Json => json(&job),
                Format::Table => print!("{}", jobs_table(std::slice::from_ref(&job))),
            }
        }
    }
    Ok(())
}

/// Prints each phone and pool: its state, running job, elapsed time, progress and pending count.
async fn status(context: &Context, runner: &DeviceRunnerClient) -> Result<(), Failure> {
    let rpc = runner.rpc();
    let status = rpc
        .get_status()
        .await
        .map_err(device_runner_client::Error::from)?;
    match context.format {
        Format::Json => json(&status),
        Format::Table => {
            let mut table = Table::new(&[
                "QUEUE", "STATE", "RUNNING", "ELAPSED", "PROGRESS", "PENDING",
            ]);
            let running = |job: Option<&Job>| {
                let elapsed = job.and_then(|j| j.started_at).map(|s| {
                    format!(
                        "{:.0}s",
                        (Utc::now() - s).num_milliseconds() as f64 / 1000.0
                    )
                });
                let progress = job
                    .and_then(|j| j.progress.as_ref())
                    .map(|p| format!("{}%", p.percent));
                (
                    or_dash(job.map(|j| format!("{} {}", j.job_type, j.id))),
                    or_dash(elapsed),
                    or_dash(progress),
                )
            };
            for device in &status.devices {
                let (job, elapsed, progress) = running(device.running.as_ref());
                let name = match &device.device.label {
                    Some(label) => format!("{} ({label})", device.device.serial),
                    None => device.device.serial.clone(),
                };
                table.row(vec![
                    name,
                    device.device.state.clone(),
                    job,
                    elapsed,
                    progress,
                    device.pending.to_string(),
                ]);
            }
            for pool in &status.pools {
                let (job, elapsed, progress) = running(pool.running.first());
                table.row(vec![
                    format!("pool:{}", pool.name),
                    format!("{}/{} running", pool.running.len(), pool.concurrency),
                    job,
                    elapsed,
                    progress,
                    pool.pending.to_string(),
                ]);
            }
            print!("{}", table.render());
        }
    }
    Ok(())
}

/// Prints a job's log: what there is, or (with `follow`) as it grows until the job ends.
async fn logs(
    context: &Context,
    runner: &DeviceRunnerClient,
    job_id: String,
    follow: bool,
) -> Result<(), Failure> {
    let rpc = runner.rpc();
    let mut stdout = std::io::stdout();
    if follow {
        let mut follower = runner.follow_logs(&job_id, 0).await?;
        while let Some(chunk) = follower.next().await {
            let chunk = chunk?;
            write_chunk(context, &mut stdout, &chunk);
            if chunk.eof {
                break;
            }
        }
    } else {
        let mut offset = 0;
        loop {
            let chunk = rpc
                .get_logs(job_id.clone(), Some(offset), None)
                .await
                .map_err(device_runner_client::Error::from)?;
            write_chunk(context, &mut stdout, &chunk);
            if chunk.data.is_empty() || chunk.next_offset == offset {
                break;
            }
            offset = chunk.next_offset;
        }
    }
    Ok(())
}

fn write_chunk(context: &Context, out: &mut impl Write, chunk: &device_runner_client::LogChunk) {
    let _ = match context.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string(chunk).unwrap_or_default()),
        Format::Table => write!(out, "{}", chunk.data),
    };
    let _ = out.flush();
}
