//! The fixtures written by APScheduler itself (`fixtures/make_fixtures.py`).

use std::path::PathBuf;

use apscheduler_import::Row;
use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub apscheduler: String,
    pub reference: DateTime<Utc>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub name: String,
    pub table: String,
    pub id: String,
    pub next_run_time: Option<f64>,
    /// `imported`, `system` or `set_aside`.
    pub expect: String,
    /// A word the reason for setting the row aside must contain.
    pub reason: Option<String>,
    pub dow_mismatch: bool,
    pub dst_note: bool,
    /// Whether its cron argument disagrees with its trigger (another way than numbering).
    pub cron_note: bool,
    /// APScheduler's own next 20 fire times after the reference instant.
    pub fires: Vec<DateTime<Utc>>,
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

pub fn manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("cases.json")).expect("fixtures/cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

impl Case {
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(dir().join("rows").join(format!("{}.pkl", self.name)))
            .expect("the fixture's pickle")
    }

    pub fn row(&self) -> Row {
        Row {
            id: self.id.clone(),
            next_run_time: self.next_run_time,
            job_state: self.bytes(),
            oversized: None,
        }
    }
}
