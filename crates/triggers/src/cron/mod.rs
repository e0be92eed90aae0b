//! The cron dialect.
//!
//! Five fields (`minute hour day-of-month month day-of-week`) or six with a leading seconds
//! field; `*`, lists, ranges, steps, names and wrap-around ranges; the usual `@` macros; and
//! Jenkins' `H` (`H`, `H(a-b)`, `H/n`, `H(a-b)/n`): a value chosen by a hash of the
//! schedule's id, so that schedules written alike do not all fire at once.
//! Day-of-month and day-of-week combine as in cronie: when both are restricted either may
//! match, and a field that begins with `*` counts as unrestricted. [`CronSchedule`] applies the
//! expression in an IANA time zone with cronie's daylight-saving policy.

mod expr;
mod field;
mod zone;

pub use expr::CronExpr;
pub use field::Field;
pub use zone::CronSchedule;

/// Why a cron expression was rejected. Every variant names the field at fault where there is one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error("cron expression is empty")]
    Empty,
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field, got {0}"
    )]
    FieldCount(usize),
    #[error(
        "unknown macro '{0}' (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)"
    )]
    UnknownMacro(String),
    #[error("{field}: {message}")]
    Field { field: Field, message: String },
    #[error(
        "expression '{0}' can never fire: no calendar day matches its day-of-month, month and day-of-week fields"
    )]
    NeverFires(String),
}

impl CronError {
    pub(crate) fn field(field: Field, message: impl Into<String>) -> Self {
        CronError::Field {
            field,
            message: message.into(),
        }
    }
}
