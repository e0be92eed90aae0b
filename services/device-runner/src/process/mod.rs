//! The runner's process code, the only place that starts or signals processes: [`spawn`]
//! starts a job (or the adb listing), [`identity`] tells from `/proc` whether a recorded
//! process is still the job's, [`group`] signals and reaps process groups. A signal goes to a
//! recorded group only after its identity was checked (see ARCHITECTURE.md).

pub mod group;
pub mod identity;
pub mod spawn;

pub use group::{
    ask_to_stop, become_subreaper, kill_group, kill_now, reap_group, signal_name, terminate_group,
};
pub use identity::{
    ProcessIdentity, boot_id, group_members, identify, is_same_process, job_members, stat,
};
pub use tokio::process::{Child, ChildStderr, ChildStdout};
