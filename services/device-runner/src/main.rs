use std::process::ExitCode;

use clap::Parser;
use device_runner::config::Config;
use service_kit::cli::CommonArgs;

/// Runs the subprocesses that drive the Android phones attached to this host: a queue per
/// phone, priorities and preemption, timeouts, logs, history. JSON-RPC 2.0 on one port
/// (default 8004).
#[derive(Parser, Debug)]
#[command(name = "device-runner", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    service_kit::cli::main::<Config, _, _>(&cli.common, Vec::new(), device_runner::run)
}
