use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scheduler::autogpt::import::ImportCommand;
use scheduler::config::Config;
use service_kit::cli::CommonArgs;

/// Holds schedules (cron with time zones) and fires them. Speaks JSON-RPC 2.0 and AutoGPT's
/// scheduler wire protocol on one port (default 8003).
#[derive(Parser, Debug)]
#[command(name = "scheduler", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: CommonArgs,
    /// The execution service that receives add_graph_execution (executor.url).
    #[arg(long, value_name = "URL")]
    executor_url: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Import AutoGPT's APScheduler jobs (its apscheduler_jobs table) as schedules, into the
    /// store this scheduler is configured with. Run it with the old scheduler stopped; read the
    /// report of a --dry-run first.
    ImportApscheduler(ImportCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::ImportApscheduler(args)) = &cli.command {
        let store_url = |overrides: &service_kit::config::Overrides| {
            let config: Config = service_kit::config::load(overrides)?;
            Ok(config.database.url)
        };
        return scheduler::autogpt::import::main(args, Box::new(store_url));
    }
    let keys = cli
        .executor_url
        .map(|url| ("executor.url", url))
        .into_iter()
        .collect();
    service_kit::cli::main::<Config, _, _>(&cli.common, keys, scheduler::run)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
