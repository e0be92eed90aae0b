//! `cargo xtask <task>`: automation beyond the README's two commands: benchmarks and the book.
//!
//! - `cargo xtask bench [--backend sqlite|postgres|both] [--schedules N] [--due N] [--adds N]
//!   [--replicas 1,2,3] [--against BINARY] [--seed api|store] [--traces on|off]`: the scheduler
//!   benchmark (see `bench.rs`), side by side with another revision's binary with `--against`;
//!   the stored schedules are added through the API unless `--seed store`; `--traces on` runs
//!   this tree's binary again with traces exported to a sink on loopback.
//! - `cargo xtask bench-targets [--backend sqlite|postgres|both] [--due N] [--batch N]
//!   [--bursts graph,batched,http] [--lookahead 0,2] [--against BINARY] [--runs N]
//!   [--firing N] [--old-rows N]`: bursts of general targets and batched executions (side by
//!   side with another revision's binary with `--against`), and the dispatch lag while the
//!   ledger prunes (see `targets_bench.rs`).
//! - `cargo xtask bench-runner [--backend sqlite|postgres|both] [--devices N] [--queued N]
//!   [--job-ms N] [--samples N] [--clients N] [--rounds N] [--against BINARY]
//!   [--against-scheduler BINARY]`: the device-runner benchmark (see `runner_bench.rs`); it
//!   runs the small `bench-job` program as every job.
//! - `cargo xtask bench-watches [--backend sqlite|postgres|both] [--watches N] [--warmup S]
//!   [--window S] [--against BINARY] [--module-batch 100,1]`: active watches checking a stub
//!   module every second, with the module's `batch` settings given (see `watches_bench.rs`).
//! - `cargo xtask bench-console [--schedules 100,10000] [--phones 5,50] [--loads N]`: the
//!   console's schedules page and timeline in Chromium (see `console_bench.rs`).
//! - `cargo xtask bench-peer [--due N]`: the same burst through APScheduler 3.11 as AutoGPT
//!   configures it and through this scheduler, side by side (see `peer_bench.rs`).
//! - `cargo xtask bench-fleet [--backend sqlite|postgres|both] [--runners N] [--phones N]
//!   [--schedules N] [--rounds N] [--poll 2s] [--against BINARY] [--against-scheduler BINARY]`:
//!   occurrences placed by tags over several device runners, beside the same burst naming its
//!   phones (see `fleet_bench.rs`).
//! - `cargo xtask bench-alerts [--backend sqlite|postgres|both] [--schedules N] [--passes N]`:
//!   how long the leader's pass over the alert checks takes, with `[alerts]` defaults (every
//!   schedule checked) and with 1 % of the schedules asking (see `alerts_bench.rs`).
//! - `cargo xtask docs`: the book in `docs/`, into `target/book` (see `docs.rs`).

mod alerts_bench;
mod bench;
mod console_bench;
mod daemon;
mod docs;
mod fleet_bench;
mod peer_bench;
mod runner_bench;
mod targets_bench;
mod watches_bench;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask bench [--backend sqlite|postgres|both] [--schedules N] [--due N] [--adds N] [--replicas 1,2,3] [--against BINARY] [--seed api|store] [--traces on|off]
       cargo xtask bench-targets [--backend sqlite|postgres|both] [--due N] [--batch N] [--bursts graph,batched,http] [--lookahead 0,2] [--against BINARY] [--runs N] [--firing N] [--old-rows N]
       cargo xtask bench-runner [--backend sqlite|postgres|both] [--devices N] [--queued N] [--job-ms N] [--samples N] [--clients N] [--rounds N] [--against BINARY] [--against-scheduler BINARY]
       cargo xtask bench-watches [--backend sqlite|postgres|both] [--watches N] [--warmup S] [--window S] [--against BINARY] [--module-batch 100,1]
       cargo xtask bench-console [--schedules 100,10000] [--phones 5,50] [--loads N]
       cargo xtask bench-peer [--due N]
       cargo xtask bench-fleet [--backend sqlite|postgres|both] [--runners N] [--phones N] [--schedules N] [--rounds N] [--poll 2s] [--against BINARY] [--against-scheduler BINARY]
       cargo xtask bench-alerts [--backend sqlite|postgres|both] [--schedules N] [--passes N]
       cargo xtask docs";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::Options::parse(&args[1..]).and_then(bench::run),
        Some("bench-targets") => {
            targets_bench::Options::parse(&args[1..]).and_then(targets_bench::run)
        }
        Some("bench-runner") => {
            runner_bench::Options::parse(&args[1..]).and_then(runner_bench::run)
        }
        Some("bench-watches") => {
            watches_bench::Options::parse(&args[1..]).and_then(watches_bench::run)
        }
        Some("bench-console") => {
            console_bench::Options::parse(&args[1..]).and_then(console_bench::run)
        }
        Some("bench-fleet") => fleet_bench::Options::parse(&args[1..]).and_then(fleet_bench::run),
        Some("bench-alerts") => {
            alerts_bench::Options::parse(&args[1..]).and_then(alerts_bench::run)
        }
        Some("bench-peer") => peer_bench::Options::parse(&args[1..]).and_then(peer_bench::run),
        Some("docs") => docs::run(),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
