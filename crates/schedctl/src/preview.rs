//! `schedctl preview`: what will fire over the next hours, the busiest minutes first.

use chrono::{TimeDelta, Utc};
use clap::Args;
use scheduler_client::{FirePreview, PreviewQuery};

use crate::output::{Format, Table, json, time};
use crate::{Context, Failure};

/// The occurrences listed in the table; `-o json` gives every one the scheduler returns.
const SHOWN: usize = 20;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  schedctl preview --next 24h\n  schedctl preview --next 2h --owner farm --tag warmup"
)]
pub(crate) struct PreviewArgs {
    /// How far ahead from now (up to 7 days): 30m, 24h, 3d.
    #[arg(long, default_value = "24h", value_parser = parse_window)]
    next: TimeDelta,
    /// Only this owner's schedules.
    #[arg(long)]
    owner: Option<String>,
    /// Only schedules carrying this tag.
    #[arg(long)]
    tag: Option<String>,
    /// Only this jobstore (execution or batched_notifications).
    #[arg(long)]
    jobstore: Option<String>,
}

fn parse_window(text: &str) -> Result<TimeDelta, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("'{text}': {e}"))?;
    TimeDelta::from_std(duration).map_err(|_| format!("'{text}' is too long"))
}

pub(crate) async fn preview(context: &Context, args: PreviewArgs) -> Result<(), Failure> {
    let from = Utc::now();
    let query = PreviewQuery {
        owner: args.owner,
        tag: args.tag,
        jobstore: args.jobstore,
        limit: None,
    };
    let preview = context
        .scheduler()?
        .preview_fires(from, from + args.next, query)
        .await?;
    match context.format {
        Format::Json => json(&preview),
        Format::Table => print!("{}", preview_tables(&preview)),
    }
    Ok(())
}

fn preview_tables(preview: &FirePreview) -> String {
    let mut busiest = Table::new(&["MINUTE", "FIRES"]);
    for minute in &preview.busiest {
        busiest.row(vec![time(Some(&minute.minute)), minute.count.to_string()]);
    }
    let mut fires = Table::new(&["AT", "SCHEDULE", "OWNER", "TARGET"]);
    for fire in preview.fires.iter().take(SHOWN) {
        fires.row(vec![
            time(Some(&fire.at)),
            fire.schedule_id.clone(),
            fire.owner.clone(),
            fire.target_type.clone(),
        ]);
    }
    let minutes = preview.per_minute.len();
    format!(
        "{} occurrences in {minutes} minutes; the busiest:\n{}\nthe first {}:\n{}",
        preview.total,
        busiest.render(),
        preview.fires.len().min(SHOWN),
        fires.render()
    )
}
