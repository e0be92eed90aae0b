//! Signals to process groups, reaping, and the subreaper role. Nothing else in the runner sends
//! a signal.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::identity::group_members;

/// Whether no live process is left in a group. Signal 0 answers for the common case without
/// a scan of `/proc`: no process at all, not even a zombie, has that group.
fn group_is_gone(pgid: i32) -> bool {
    matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)) || group_members(pgid).is_empty()
}

/// Sends `signal` to a process group; a group that no longer exists is not an error.
fn signal_group(pgid: i32, signal: Signal) {
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => crate::telemetry::process_signalled(signal.as_str()),
        Err(Errno::ESRCH) => {}
        Err(error) => tracing::warn!(pgid, %signal, %error, "cannot signal process group"),
    }
}

/// Reaps the exited members of a group that were handed to us as subreaper. Only call it after
/// the group leader itself was reaped, so it never takes an exit status tokio waits for.
pub fn reap_group(pgid: i32) {
    loop {
        match waitpid(Pid::from_raw(-pgid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => continue,
        }
    }
}

/// Kills a group that is not our child's (an orphan found at start-up): SIGTERM, up to `grace`
/// for its members to leave, then SIGKILL. Returns once no member is alive (or a second later).
pub async fn terminate_group(pgid: i32, grace: Duration) {
    signal_group(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    while tokio::time::Instant::now() < deadline && !group_members(pgid).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill_group(pgid).await;
}

/// SIGKILL to a group, then waits (at most a second) until none of it is alive.
pub async fn kill_group(pgid: i32) {
    signal_group(pgid, Signal::SIGKILL);
    for _ in 0..50 {
        reap_group(pgid);
        if group_is_gone(pgid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tracing::warn!(pgid, "processes of the group are still alive after SIGKILL");
}

/// Asks a job's group to stop (SIGTERM).
pub fn ask_to_stop(pgid: i32) {
    signal_group(pgid, Signal::SIGTERM);
}

/// Kills a job's group at once (SIGKILL), without waiting.
pub fn kill_now(pgid: i32) {
    signal_group(pgid, Signal::SIGKILL);
}

/// The name of a signal number ("SIGTERM"), or "unknown".
pub fn signal_name(signal: i32) -> &'static str {
    Signal::try_from(signal).map_or("unknown", Signal::as_str)
}

/// Makes this process the reaper of its descendants' orphans, so double-forked grandchildren
/// stay ours to reap and kill with their group.
pub fn become_subreaper() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become a child subreaper; orphaned grandchildren go to init");
    }
}
