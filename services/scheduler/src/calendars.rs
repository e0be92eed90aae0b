//! `[calendars.<name>]`: the exclusion calendars triggers name (`exclude = ["holidays"]`),
//! declared once in the configuration, installed for the whole process at start, and shown
//! by `list_calendars`.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use triggers::{Calendar, Calendars};

/// One calendar: the local dates, in `zone`, on which the occurrences of the triggers naming it
/// are skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The IANA zone its dates are local to.
    #[serde(default = "utc")]
    pub zone: String,
    /// Dates (`"2026-12-25"`) and ranges of dates (`"2026-12-24..2026-12-26"`, both ends
    /// included).
    #[serde(default)]
    pub dates: Vec<String>,
    /// Days of the week (`"sat"`, `"sun"`).
    #[serde(default)]
    pub weekdays: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

/// The calendars of the configuration (their names already checked), checked.
pub(crate) fn of(
    configured: &std::collections::BTreeMap<String, CalendarConfig>,
) -> anyhow::Result<Calendars> {
    let mut calendars = Vec::with_capacity(configured.len());
    for (name, calendar) in configured {
        let calendar = Calendar::new(name, &calendar.zone, &calendar.dates, &calendar.weekdays)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("calendars.{name}"))?;
        calendars.push(calendar);
    }
    Ok(Calendars::new(calendars))
}

/// The installed calendars as the API shows them.
pub(crate) fn views() -> Vec<scheduler_api::CalendarView> {
    Calendars::installed()
        .iter()
        .map(|calendar| scheduler_api::CalendarView {
            name: calendar.name().to_string(),
            zone: calendar.zone().name().to_string(),
            dates: calendar.dates(),
            weekdays: calendar.weekdays(),
        })
        .collect()
}
