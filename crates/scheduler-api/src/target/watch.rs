//! The `watch` target: one attempt of a watch's check. `add_watch` makes these; a schedule
//! cannot be one.

use serde::{Deserialize, Serialize};

use super::{Origin, TargetData};
use crate::watch::Check;

pub(super) const TAG: &str = "watch";

/// One attempt of a watch's check (the schedule's id is the watch's); made by `add_watch`,
/// never through the schedule API. Its run lasts until the check has answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchTarget {
    pub check: Check,
}

impl TargetData for WatchTarget {
    fn tag(&self) -> &'static str {
        TAG
    }

    fn lasts(&self) -> bool {
        true
    }

    fn validate(&self, _: Origin) -> Result<(), String> {
        Err("target.type 'watch' is made by add_watch; a schedule cannot be one".into())
    }
}
