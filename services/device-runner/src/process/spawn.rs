//! Starting processes: a job in its own process group with the job protocol's environment,
//! and the `adb` listing the device watcher reads.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use device_runner_api::Job;
use tokio::process::{Child, Command};

use crate::config::JobTypeConfig;

/// Starts a job's process: argv with `{device}`, `{job_id}` and `{params_json}` filled in, in
/// its own process group, stdout and stderr piped, and `JOB_ID`, `ANDROID_SERIAL` (not for a
/// pool's job), `JOB_PARAMS`, and (when it has one) `JOB_CHECKPOINT` and `TRACEPARENT` (the
/// trace its run continues) in its environment.
pub fn job(
    job_type: &JobTypeConfig,
    job: &Job,
    traceparent: Option<&str>,
) -> std::io::Result<Child> {
    let params_json = job.params.to_string();
    let fill = |arg: &str| {
        arg.replace("{device}", &job.device)
            .replace("{job_id}", &job.id)
            .replace("{params_json}", &params_json)
    };
    let mut command = Command::new(fill(&job_type.argv[0]));
    command
        .args(job_type.argv[1..].iter().map(|arg| fill(arg)))
        .current_dir(&job_type.cwd)
        .envs(&job_type.env)
        .env("JOB_ID", &job.id)
        .env("JOB_PARAMS", &params_json)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // A pool's job drives no phone.
    match &job.pool {
        Some(_) => command.env_remove("ANDROID_SERIAL"),
        None => command.env("ANDROID_SERIAL", &job.device),
    };
    match &job.checkpoint {
        Some(checkpoint) => command.env("JOB_CHECKPOINT", checkpoint.to_string()),
        None => command.env_remove("JOB_CHECKPOINT"),
    };
    match traceparent {
        Some(traceparent) => command.env("TRACEPARENT", traceparent),
        None => command.env_remove("TRACEPARENT"),
    };
    command.spawn()
}

/// The output of `adb devices -l`.
pub async fn adb_devices(adb: &Path) -> std::io::Result<String> {
    run_adb(adb, &["devices", "-l"]).await
}

/// What `getprop` and `dumpsys battery` tell of a phone, in one `adb shell`: lines
/// `model=…` and `android=…`, then the battery's dump.
pub async fn adb_facts(adb: &Path, serial: &str) -> std::io::Result<String> {
    let script = "echo model=$(getprop ro.product.model); \
                  echo android=$(getprop ro.build.version.release); dumpsys battery";
    run_adb(adb, &["-s", serial, "shell", script]).await
}

/// Asks a phone to reboot.
pub async fn adb_reboot(adb: &Path, serial: &str) -> std::io::Result<String> {
    run_adb(adb, &["-s", serial, "reboot"]).await
}

/// Runs adb with `args` and returns its output, within 10 seconds (the process is killed
/// after that).
async fn run_adb(adb: &Path, args: &[&str]) -> std::io::Result<String> {
    let what = format!("adb {}", args.join(" "));
    let output = tokio::time::timeout(
        Duration::from_secs(10),
        Command::new(adb).args(args).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| std::io::Error::other(format!("{what} took over 10 s")))??;
    if !output.status.success() {
        return Err(std::io::Error::other(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
