//! `schedctl alerts`: the incidents of schedules whose work did not happen.

use clap::Args;
use scheduler_client::{Alert, AlertQuery, AlertState};

use crate::output::{Format, Table, cut, json, time};
use crate::{Context, Failure};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  schedctl alerts --open\n  schedctl alerts --schedule nightly")]
pub(crate) struct AlertsArgs {
    /// Only the incidents still open.
    #[arg(long, conflicts_with = "resolved")]
    open: bool,
    /// Only the resolved ones.
    #[arg(long)]
    resolved: bool,
    /// Only this owner's.
    #[arg(long)]
    owner: Option<String>,
    /// Only this schedule's.
    #[arg(long = "schedule", value_name = "ID")]
    schedule_id: Option<String>,
    /// How many, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

pub(crate) async fn alerts(context: &Context, args: AlertsArgs) -> Result<(), Failure> {
    let state = match (args.open, args.resolved) {
        (true, _) => Some(AlertState::Open),
        (_, true) => Some(AlertState::Resolved),
        _ => None,
    };
    let query = AlertQuery {
        state,
        owner: args.owner,
        schedule_id: args.schedule_id,
        limit: Some(args.limit),
    };
    let alerts = context.scheduler()?.list_alerts(query).await?;
    match context.format {
        Format::Json => json(&alerts),
        Format::Table if alerts.is_empty() => println!("no incident"),
        Format::Table => print!("{}", alerts_table(&alerts)),
    }
    Ok(())
}

fn alerts_table(alerts: &[Alert]) -> String {
    let mut table = Table::new(&[
        "OPENED",
        "KIND",
        "STATE",
        "SCHEDULE",
        "OWNER",
        "WHAT",
        "ERROR/RESOLUTION",
    ]);
    for alert in alerts {
        let last = match alert.state {
            AlertState::Open => alert.last_error.as_deref(),
            AlertState::Resolved => alert.resolution.as_deref(),
        };
        table.row(vec![
            time(Some(&alert.opened_at)),
            alert.kind.as_str().into(),
            alert.state.as_str().into(),
            alert.schedule_id.clone(),
            alert.owner.clone(),
            cut(&alert.summary, 60),
            cut(last.unwrap_or("-"), 50),
        ]);
    }
    table.render()
}
