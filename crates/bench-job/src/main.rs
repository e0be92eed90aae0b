fn main() -> std::process::ExitCode {
    bench_job::run()
}
