//! `schedctl`: the operator's command line for the scheduler and its device runners, built on
//! the typed clients. Exit codes: 0 done, 1 a call the service refused (or could not be
//! reached), 2 bad usage.

mod alerts;
mod devices;
mod fleet;
mod output;
mod preview;
mod schedules;
mod system;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::output::Format;

const EXAMPLES: &str = "Examples:
  schedctl schedule list --owner alice
  schedctl schedule create --owner alice --name nightly --cron '0 3 * * *' --tz Europe/Paris \\
      --target '{\"type\": \"rpc\", \"endpoint\": \"backend\", \"method\": \"cleanup\"}'
  schedctl cron next '0 9 * * mon-fri' --tz Asia/Makassar --count 3
  schedctl device logs <job-id> -f
  schedctl fleet --tag tiktok
  schedctl preview --next 24h
  schedctl device quarantine R58M123 --runner host-2 --reason 'cracked screen'
  schedctl -o json watch list --status active";

/// Operate the scheduler and its device runners.
#[derive(Parser, Debug)]
#[command(name = "schedctl", version, after_help = EXAMPLES)]
struct Cli {
    /// The scheduler (SCHEDULER_URL).
    #[arg(
        long,
        env = "SCHEDULER_URL",
        default_value = "http://127.0.0.1:8003",
        global = true,
        help_heading = "Global options"
    )]
    url: String,
    /// Bearer token for the scheduler, the admin token for admin actions (SCHEDULER_TOKEN).
    #[arg(
        long,
        env = "SCHEDULER_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    token: Option<String>,
    /// The device runner (DEVICE_RUNNER_URL).
    #[arg(
        long,
        env = "DEVICE_RUNNER_URL",
        default_value = "http://127.0.0.1:8004",
        global = true,
        help_heading = "Global options"
    )]
    runner_url: String,
    /// Bearer token for the device runner (DEVICE_RUNNER_TOKEN).
    #[arg(
        long,
        env = "DEVICE_RUNNER_TOKEN",
        hide_env_values = true,
        global = true,
        help_heading = "Global options"
    )]
    runner_token: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true, help_heading = "Global options")]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create, list, change and run schedules.
    #[command(subcommand)]
    Schedule(Box<schedules::ScheduleCommand>),
    /// A schedule's runs from the ledger, newest first.
    Runs(schedules::RunsArgs),
    /// Cron expressions.
    #[command(subcommand)]
    Cron(schedules::CronCommand),
    /// Phones, pools, the queue, runs and logs of the device runner.
    #[command(subcommand)]
    Device(devices::DeviceCommand),
    /// Incidents of schedules whose work did not happen: late, failing in a row, missing.
    Alerts(alerts::AlertsArgs),
    /// Every runner's phones, as the scheduler follows them: state, health, quarantine.
    Fleet(fleet::FleetArgs),
    /// What will fire: every occurrence of the active schedules over the next hours, and the
    /// busiest minutes.
    Preview(preview::PreviewArgs),
    /// An agent's watches.
    #[command(subcommand)]
    Watch(system::WatchCommand),
    /// The registry of declared schedules and system tasks.
    #[command(subcommand)]
    System(system::SystemCommand),
    /// Import AutoGPT's APScheduler jobs (its apscheduler_jobs table) as schedules into the
    /// scheduler's store, with the scheduler stopped; read the report of a --dry-run first.
    #[command(after_help = "Example:\n  schedctl import-apscheduler --from \
                      'postgres://autogpt@db/autogpt?schema=platform' \\\n      --database-url \
                      sqlite://data/scheduler.db --dry-run")]
    ImportApscheduler {
        #[command(flatten)]
        import: apscheduler_import::cli::ImportArgs,
        /// The scheduler's store: where the schedules go (SCHEDULER__DATABASE__URL).
        #[arg(long, env = "SCHEDULER__DATABASE__URL", value_name = "URL")]
        database_url: String,
    },
}

/// Why a command failed: bad usage (exit 2) or a refusal (exit 1).
#[derive(Debug)]
pub(crate) enum Failure {
    Usage(String),
    Refused { kind: String, message: String },
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }
}

impl From<scheduler_client::Error> for Failure {
    fn from(error: scheduler_client::Error) -> Self {
        use scheduler_client::Error;
        let (kind, message) = match &error {
            Error::Scheduler(e) => (e.exception_type().to_string(), e.to_string()),
            Error::Unreachable { .. } => ("ConnectionError".into(), error.to_string()),
            Error::Timeout => ("TimeoutError".into(), error.to_string()),
            Error::Rpc(message) => ("RpcError".into(), message.clone()),
            Error::Config(message) => return Failure::Usage(message.clone()),
        };
        Failure::Refused { kind, message }
    }
}

impl From<device_runner_client::Error> for Failure {
    fn from(error: device_runner_client::Error) -> Self {
        match &error {
            device_runner_client::Error::Runner(e) => Failure::Refused {
                kind: e.type_name().to_string(),
                message: e.to_string(),
            },
            device_runner_client::Error::Transport(e) => Failure::Refused {
                kind: "ConnectionError".into(),
                message: format!("device runner: {e}"),
            },
        }
    }
}

/// What every command needs.
pub(crate) struct Context {
    pub(crate) format: Format,
    url: String,
    token: Option<String>,
    runner_url: String,
    runner_token: Option<String>,
}

impl Context {
    /// A client for the scheduler at `--url`: few retries and a short timeout, as a person
    /// waits at a terminal.
    pub(crate) fn scheduler(&self) -> Result<scheduler_client::SchedulerClient, Failure> {
        let rest = self.url.strip_prefix("http://").ok_or_else(|| {
            Failure::usage(format!("--url '{}' must start with http://", self.url))
        })?;
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host.to_string(),
                port.parse()
                    .map_err(|_| Failure::usage(format!("--url '{}': bad port", self.url)))?,
            ),
            None => (authority.to_string(), 80),
        };
        if host.is_empty() || authority.contains('/') {
            return Err(Failure::usage(format!(
                "--url '{}' must be http://HOST[:PORT]",
                self.url
            )));
        }
        let config = scheduler_client::ClientConfig {
            host,
            port,
            timeout: Duration::from_secs(30),
            retries: 1,
            retry_delay: Duration::from_millis(200),
            token: self.token.clone(),
        };
        Ok(scheduler_client::SchedulerClient::new(config)?)
    }

    pub(crate) fn runner(&self) -> Result<device_runner_client::DeviceRunnerClient, Failure> {
        device_runner_client::DeviceRunnerClient::with_options(
            &self.runner_url,
            Duration::from_secs(30),
            self.runner_token.as_deref(),
        )
        .map_err(|e| Failure::usage(format!("--runner-url '{}': {e}", self.runner_url)))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = Context {
        format: cli.output,
        url: cli.url,
        token: cli.token,
        runner_url: cli.runner_url,
        runner_token: cli.runner_token,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("schedctl: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Schedule(command) => schedules::run(&context, *command).await,
            Command::Runs(args) => schedules::runs(&context, args).await,
            Command::Cron(command) => schedules::cron(&context, command).await,
            Command::Device(command) => devices::run(&context, command).await,
            Command::Alerts(args) => alerts::alerts(&context, args).await,
            Command::Fleet(args) => fleet::fleet(&context, args).await,
            Command::Preview(args) => preview::preview(&context, args).await,
            Command::Watch(command) => system::watch(&context, command).await,
            Command::System(command) => system::system(&context, command).await,
            Command::ImportApscheduler {
                import,
                database_url,
            } => system::import_apscheduler(&import, &database_url).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Refused { kind, message }) => {
            eprintln!("{kind}: {message}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
