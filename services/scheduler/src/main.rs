use std::process::ExitCode;

use clap::Parser;
use scheduler::config::Config;
use service_kit::cli::CommonArgs;

/// Holds schedules (cron with time zones) and fires them. Speaks JSON-RPC 2.0 and AutoGPT's
/// scheduler wire protocol on one port (default 8003).
#[derive(Parser, Debug)]
#[command(name = "scheduler", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// The execution service that receives add_graph_execution (executor.url).
    #[arg(long, value_name = "URL")]
    executor_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let keys = cli
        .executor_url
        .map(|url| ("executor.url", url))
        .into_iter()
        .collect();
    service_kit::cli::main::<Config, _, _>(&cli.common, keys, scheduler::run)
}
