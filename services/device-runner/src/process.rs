//! Processes: identity from `/proc`, signals to process groups, reaping. The only module that
//! signals anything.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::store::ProcessIdentity;

/// This boot's id, which tells a pid recorded before a reboot from one of this boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|text| text.trim().to_string())
        .unwrap_or_default()
}

/// Fields of `/proc/<pid>/stat`: state, process group, start time (ticks after boot).
fn read_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): pgrp is field 5, starttime field 22.
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, pgrp, start))
}

/// A live process's group and start time; `None` when it is gone or a zombie.
pub fn stat(pid: i32) -> Option<(i32, u64)> {
    read_stat(pid)
        .filter(|(state, _, _)| !matches!(state, 'Z' | 'X'))
        .map(|(_, pgrp, start)| (pgrp, start))
}

/// The identity of a process we just started in its own group.
pub fn identify(pid: i32) -> Option<ProcessIdentity> {
    // A job that exited at once is a zombie until reaped; its stat still tells who it was.
    let (_, pgid, start_ticks) = read_stat(pid)?;
    Some(ProcessIdentity {
        pid,
        pgid,
        start_ticks,
        boot_id: boot_id(),
    })
}

/// Whether the recorded process is still that very process (same boot, pid, group and start
/// time), so signalling its group cannot hit a stranger that reused the pid.
pub fn is_same_process(recorded: &ProcessIdentity) -> bool {
    recorded.boot_id == boot_id()
        && stat(recorded.pid)
            .is_some_and(|(pgid, start)| pgid == recorded.pgid && start == recorded.start_ticks)
}

/// The live (not zombie) processes in a group.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| stat(*pid).is_some_and(|(group, _)| group == pgid))
        .collect()
}

/// The live members of a recorded process group that carry `JOB_ID=<job_id>` in their
/// environment. Such members prove the group is still the job's: a pid is never reused as a
/// new group's id while the group has members, and no stranger carries the job's id. So the
/// group may be signalled even when its leader is gone (it died with the runner, say of
/// SIGPIPE on its output, and left children behind).
pub fn job_members(pgid: i32, job_id: &str) -> Vec<i32> {
    let marker = format!("JOB_ID={job_id}");
    group_members(pgid)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .split(|byte| *byte == 0)
                    .any(|entry| entry == marker.as_bytes())
            })
        })
        .collect()
}

/// Whether no live process is left in a group. Signal 0 answers for the common case without
/// a scan of `/proc`: no process at all, not even a zombie, has that group.
fn group_is_gone(pgid: i32) -> bool {
    matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)) || group_members(pgid).is_empty()
}

/// Sends `signal` to a process group; a group that no longer exists is not an error.
pub fn signal_group(pgid: i32, signal: Signal) {
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

/// Makes this process the reaper of its descendants' orphans, so double-forked grandchildren
/// stay ours to reap and kill with their group.
pub fn become_subreaper() {
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(%error, "cannot become a child subreaper; orphaned grandchildren go to init");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_identity_is_read_and_matches() {
        let pid = std::process::id() as i32;
        let identity = identify(pid).expect("our own /proc/<pid>/stat");
        assert!(identity.start_ticks > 0);
        assert!(is_same_process(&identity));
        let reused = ProcessIdentity {
            start_ticks: identity.start_ticks + 1,
            ..identity.clone()
        };
        assert!(
            !is_same_process(&reused),
            "a different start time is another process"
        );
        let other_boot = ProcessIdentity {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..identity
        };
        assert!(
            !is_same_process(&other_boot),
            "a pid from another boot is another process"
        );
    }
}
