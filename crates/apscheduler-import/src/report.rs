//! The report as a person reads it.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::import::{Outcome, Report, RowReport};

fn time(at: Option<DateTime<Utc>>, paused: bool) -> String {
    match at {
        Some(at) => at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        None if paused => "paused".into(),
        None => "-".into(),
    }
}

fn trigger(row: &RowReport) -> String {
    let mut text = row.trigger.clone().unwrap_or_else(|| "?".into());
    if let Some(zone) = &row.zone {
        let _ = write!(text, " {zone}");
    }
    text
}

/// The report as text: the counts, then each row under its outcome.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let c = &report.counts;
    let _ = writeln!(
        out,
        "APScheduler import from {} into the {} jobstore{}",
        report.source,
        report.jobstore.as_str(),
        if report.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    let verb = if report.dry_run {
        "to import"
    } else {
        "imported"
    };
    let _ = writeln!(
        out,
        "{} rows: {} {verb}, {} already present, {} system jobs skipped, {} set aside",
        c.rows, c.imported, c.already_present, c.system, c.set_aside
    );
    let sections = [
        (
            Outcome::Imported,
            if report.dry_run {
                "To import"
            } else {
                "Imported"
            },
        ),
        (
            Outcome::AlreadyPresent,
            "Already present (same id; left as it is)",
        ),
        (
            Outcome::System,
            "System jobs (not imported: this scheduler declares its own)",
        ),
        (
            Outcome::SetAside,
            "Set aside (not imported; the source row is unchanged)",
        ),
    ];
    for (outcome, title) in sections {
        let rows: Vec<&RowReport> = report
            .rows
            .iter()
            .filter(|r| r.outcome == outcome)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{title}:");
        for row in rows {
            line(&mut out, outcome, row);
        }
    }
    out
}

/// One row of a section of [`text`].
fn line(out: &mut String, outcome: Outcome, row: &RowReport) {
    match outcome {
        Outcome::Imported | Outcome::AlreadyPresent => {
            let _ = writeln!(
                out,
                "  {}  user {}  {}  next {} -> {}",
                row.id,
                row.user.as_deref().unwrap_or("-"),
                trigger(row),
                time(row.next_run_before, row.paused),
                time(row.next_run_after, row.paused),
            );
            for note in &row.notes {
                let _ = writeln!(out, "      note: {note}");
            }
        }
        Outcome::System => {
            let _ = writeln!(
                out,
                "  {}  {}  {}",
                row.id,
                row.func.as_deref().unwrap_or("?"),
                trigger(row)
            );
        }
        Outcome::SetAside => {
            let _ = writeln!(
                out,
                "  {}  user {}  {}",
                row.id,
                row.user.as_deref().unwrap_or("-"),
                row.reason.as_deref().unwrap_or("?")
            );
        }
    }
}
