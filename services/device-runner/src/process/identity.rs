//! Who a process is, from `/proc`: enough to tell a job's process from a later one that reused
//! its pid, and to find the members of a job's process group.

/// Who a running job's process is: enough to tell it from a later process with the same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub pgid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks from boot to the process's start.
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id` when the process started.
    pub boot_id: String,
}

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
