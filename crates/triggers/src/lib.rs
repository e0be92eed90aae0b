//! Triggers decide when a schedule is due. Nothing here does I/O or reads the clock: every
//! function takes the instant it reasons from, so the engine can always compute the next fire
//! from the previous *scheduled* instant rather than from "now".

pub mod calendar;
pub mod cron;
mod trigger;

pub use calendar::{Calendar, Calendars};
pub use cron::{CronError, CronExpr, CronSchedule};
pub use trigger::{
    Coalesced, EARLIEST, LATEST, MAX_DAILY_TIMES, MAX_EXCLUDED_DAYS, MAX_INTERVAL_SECS, Trigger,
    TriggerError, TriggerKind, TriggerSpec, in_range, parse_timezone,
};
