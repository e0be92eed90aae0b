//! `cargo xtask <task>`: automation beyond the README's two commands.
//!
//! - `cargo xtask bench [--backend sqlite|postgres|both] [--schedules N] [--due N] [--adds N]`:
//!   the scheduler benchmark (see `bench.rs`).

mod bench;
mod daemon;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::Options::parse(&args[1..]).and_then(bench::run),
        _ => {
            eprintln!(
                "usage: cargo xtask bench [--backend sqlite|postgres|both] [--schedules N] [--due N] [--adds N]"
            );
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
