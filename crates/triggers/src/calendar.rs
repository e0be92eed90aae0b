//! Exclusion calendars: named sets of local dates (listed dates, ranges of dates, weekdays) in
//! a time zone. A trigger that names a calendar (`exclude = ["holidays"]`) still has its
//! occurrences on those dates, so that each is accounted for, but they do not run: the engine
//! records them `skipped` with the reason `calendar <name>`, and what shows the next fires
//! ([`crate::Trigger::next_included_after`]) leaves them out.
//!
//! Calendars are declared in the configuration, which every part of a process reads alike, so
//! the process installs them once ([`Calendars::install`]) and triggers are compiled against
//! them, the way time zones are read from the tz database.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

use chrono::{DateTime, Datelike, NaiveDate, Utc, Weekday};
use chrono_tz::Tz;

/// A calendar of excluded local dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    name: String,
    zone: Tz,
    /// Inclusive ranges of local dates, in order.
    ranges: Vec<(NaiveDate, NaiveDate)>,
    weekdays: Vec<Weekday>,
}

impl Calendar {
    /// A calendar named `name` excluding, in `zone`, the `dates` (`"2026-12-25"`, or a range
    /// `"2026-12-24..2026-12-26"` with both ends included) and the `weekdays` (`"sat"`,
    /// `"sunday"`); or what is wrong with them.
    pub fn new(
        name: &str,
        zone: &str,
        dates: &[String],
        weekdays: &[String],
    ) -> Result<Calendar, String> {
        let zone = zone.trim().parse::<Tz>().map_err(|_| {
            format!("zone: '{zone}' is not an IANA time zone such as 'Europe/Berlin' or 'UTC'")
        })?;
        let mut ranges = dates
            .iter()
            .map(|text| date_range(text))
            .collect::<Result<Vec<_>, _>>()?;
        ranges.sort_unstable();
        let mut days = Vec::new();
        for text in weekdays {
            let day = text.trim().parse::<Weekday>().map_err(|_| {
                format!("weekdays: '{text}' is not a day of the week: expected mon … sun")
            })?;
            if !days.contains(&day) {
                days.push(day);
            }
        }
        if days.len() == 7 {
            return Err("weekdays: all seven days are excluded, so nothing would ever run".into());
        }
        days.sort_by_key(Weekday::num_days_from_monday);
        Ok(Calendar {
            name: name.to_string(),
            zone,
            ranges,
            weekdays: days,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The zone its dates are local to.
    pub fn zone(&self) -> Tz {
        self.zone
    }

    /// Whether `at` falls on one of its dates, in its zone.
    pub fn excludes(&self, at: DateTime<Utc>) -> bool {
        self.excludes_date(at.with_timezone(&self.zone).date_naive())
    }

    fn excludes_date(&self, date: NaiveDate) -> bool {
        self.weekdays.contains(&date.weekday())
            || self
                .ranges
                .iter()
                .any(|(first, last)| (*first..=*last).contains(&date))
    }

    /// The first instant after `at`'s local day: where a search for a date it does not
    /// exclude goes on.
    pub(crate) fn day_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::offset::LocalResult;
        use chrono::{NaiveTime, TimeZone};
        let next = at.with_timezone(&self.zone).date_naive().succ_opt()?;
        let midnight = next.and_time(NaiveTime::MIN);
        // A day that starts inside a daylight-saving gap starts at the gap's end; a search a
        // little early is harmless, it finds the same occurrences.
        match self.zone.from_local_datetime(&midnight) {
            LocalResult::Single(start) | LocalResult::Ambiguous(start, _) => {
                Some(start.with_timezone(&Utc))
            }
            LocalResult::None => Some(self.zone.from_utc_datetime(&midnight).with_timezone(&Utc)),
        }
    }

    /// Its dates as written: `2026-12-25`, or `2026-12-24..2026-12-26`.
    pub fn dates(&self) -> Vec<String> {
        self.ranges
            .iter()
            .map(|(first, last)| match first == last {
                true => first.to_string(),
                false => format!("{first}..{last}"),
            })
            .collect()
    }

    /// Its weekdays, `mon` … `sun`.
    pub fn weekdays(&self) -> Vec<String> {
        self.weekdays
            .iter()
            .map(|day| day.to_string().to_lowercase())
            .collect()
    }
}

/// `YYYY-MM-DD` or `YYYY-MM-DD..YYYY-MM-DD`, as an inclusive range.
fn date_range(text: &str) -> Result<(NaiveDate, NaiveDate), String> {
    let date = |part: &str| {
        NaiveDate::parse_from_str(part.trim(), "%Y-%m-%d").map_err(|_| {
            format!(
                "dates: '{text}' is not a date or a range of dates: expected \"2026-12-25\" or \
                 \"2026-12-24..2026-12-26\""
            )
        })
    };
    let (first, last) = match text.split_once("..") {
        Some((first, last)) => (date(first)?, date(last)?),
        None => (date(text)?, date(text)?),
    };
    if last < first {
        return Err(format!("dates: '{text}' ends before it begins"));
    }
    Ok((first, last))
}

/// The calendars a process knows, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendars(BTreeMap<String, Arc<Calendar>>);

/// The calendars installed in this process.
static INSTALLED: LazyLock<RwLock<Arc<Calendars>>> = LazyLock::new(RwLock::default);

impl Calendars {
    pub fn new(calendars: impl IntoIterator<Item = Calendar>) -> Calendars {
        Calendars(
            calendars
                .into_iter()
                .map(|calendar| (calendar.name.clone(), Arc::new(calendar)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Calendar>> {
        self.0.get(name)
    }

    /// Every calendar, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Calendar>> {
        self.0.values()
    }

    /// Their names, for a message.
    pub fn names(&self) -> String {
        match self.0.is_empty() {
            true => "none is configured".to_string(),
            false => format!(
                "the configured ones are {}",
                self.0.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// Makes these the calendars every trigger of the process is compiled against.
    pub fn install(self) {
        *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(self);
    }

    /// The calendars installed (none until [`Calendars::install`]).
    pub fn installed() -> Arc<Calendars> {
        INSTALLED.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn dates_ranges_and_weekdays_are_excluded_in_the_calendars_zone() {
        let dates = texts(&["2026-12-25", "2026-12-31..2027-01-01"]);
        let holidays =
            Calendar::new("holidays", "Europe/Berlin", &dates, &texts(&["Sun"])).unwrap();
        // 23:30 UTC on the 24th is already the 25th in Berlin.
        assert!(holidays.excludes(at("2026-12-24T23:30:00Z")));
        assert!(!holidays.excludes(at("2026-12-24T22:30:00Z")));
        assert!(
            holidays.excludes(at("2027-01-01T12:00:00Z")),
            "a range's last day"
        );
        assert!(holidays.excludes(at("2026-12-27T12:00:00Z")), "a Sunday");
        assert!(!holidays.excludes(at("2026-12-28T12:00:00Z")));
        assert_eq!(holidays.dates(), ["2026-12-25", "2026-12-31..2027-01-01"]);
        assert_eq!(holidays.weekdays(), ["sun"]);
        assert_eq!(
            holidays.day_after(at("2026-12-25T10:00:00Z")),
            Some(at("2026-12-25T23:00:00Z")),
            "midnight in Berlin"
        );
    }

    #[test]
    fn bad_calendars_are_refused_naming_what_is_wrong() {
        let refused = |zone: &str, dates: &[&str], days: &[&str]| {
            Calendar::new("c", zone, &texts(dates), &texts(days)).unwrap_err()
        };
        assert!(refused("Mars/Base", &[], &[]).contains("zone"));
        assert!(refused("UTC", &["25.12.2026"], &[]).contains("'25.12.2026'"));
        assert!(refused("UTC", &["2026-12-26..2026-12-24"], &[]).contains("ends before"));
        assert!(refused("UTC", &[], &["funday"]).contains("'funday'"));
        let every = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        assert!(refused("UTC", &[], &every).contains("all seven"));
    }
}
