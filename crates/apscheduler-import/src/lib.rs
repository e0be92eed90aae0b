//! Moving AutoGPT's schedules out of APScheduler: `scheduler import-apscheduler`.
//!
//! AutoGPT's scheduler keeps each job as a pickled `Job.__getstate__()` in a PostgreSQL table
//! (`apscheduler_jobs`). This crate reads those rows without Python: [`pickle`] is a safe,
//! bounded reader of the pickle format that executes and imports nothing; [`state`] recognises
//! the few classes an APScheduler 3.x job holds (triggers, cron fields, time zones, datetimes);
//! [`convert`] turns a row into a schedule of this scheduler that fires exactly when the job
//! did, or sets it aside with the reason; [`import`] reads a table read-only, stores what is new
//! and reports on every row ([`report`] writes it for people).

pub mod cli;
pub mod convert;
pub mod import;
pub mod pickle;
pub mod report;
pub mod state;

pub use convert::{Mapped, Mapper, Row};
pub use import::{ImportError, Options, Outcome, Report, run};
pub use pickle::Limits;
