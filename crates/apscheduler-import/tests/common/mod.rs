//! The fixtures written by APScheduler itself (`fixtures/make_fixtures.py`).

use std::path::PathBuf;

use apscheduler_import::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) apscheduler: String,
    pub(crate) reference: DateTime<Utc>,
    pub(crate) cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) table: String,
    pub(crate) id: String,
    pub(crate) next_run_time: Option<f64>,
    /// `imported`, `system` or `set_aside`.
    pub(crate) expect: String,
    /// A word the reason for setting the row aside must contain.
    pub(crate) reason: Option<String>,
    pub(crate) dow_mismatch: bool,
    pub(crate) dst_note: bool,
    /// Whether its cron argument disagrees with its trigger (another way than numbering).
    pub(crate) cron_note: bool,
    /// APScheduler's own next 20 fire times after the reference instant.
    pub(crate) fires: Vec<DateTime<Utc>>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub(crate) fn manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("cases.json")).expect("fixtures/cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

impl Case {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        std::fs::read(dir().join("rows").join(format!("{}.pkl", self.name)))
            .expect("the fixture's pickle")
    }

    pub(crate) fn row(&self) -> Row {
        Row {
            id: self.id.clone(),
            next_run_time: self.next_run_time,
            job_state: self.bytes(),
            oversized: None,
        }
    }
}
