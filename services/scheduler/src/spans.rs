//! The trace of each occurrence, when traces are on (`[telemetry] otlp_endpoint`, see
//! [`service_kit::traces`]): a root span `occurrence` made when it is claimed, with its
//! schedule id, ledger key, jobstore, scheduled time and target kind, and in it `claim`,
//! `dispatch`, one `attempt` per try (the span the target's `traceparent` names) and `outcome`.
//! Off, every function here answers [`Span::none`] and costs a load of a flag.

use jobstore::{RunOutcome, RunRecord};
use service_kit::traces;
use tracing::{Span, info_span};

/// The root span of `run`'s occurrence, with its `claim` in it.
pub(crate) fn occurrence(run: &RunRecord) -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    let span = info_span!(
        parent: None,
        "occurrence",
        schedule_id = %run.schedule_id,
        ledger_key = %run.idempotency_key(),
        jobstore = run.jobstore.as_str(),
        scheduled_time = %run.scheduled_time,
        target = run.target.kind(),
        owner = %run.owner,
    );
    // The claim happened in a claim of many; its span marks when this one was taken.
    let claim = info_span!(parent: &span, "claim", claimed_at = %run.claimed_at);
    drop(claim);
    span
}

/// The span of a run's dispatch, all its attempts in it, under the current occurrence.
pub(crate) fn dispatch() -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    info_span!("dispatch")
}

/// The span of one attempt, the `number`th.
pub(crate) fn attempt(number: u32) -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    info_span!("attempt", attempt = number)
}

/// Records how the occurrence of `span` ended, as its ledger row says.
pub(crate) fn outcome(span: &Span, outcome: &RunOutcome) {
    if span.is_none() {
        return;
    }
    let recorded = info_span!(
        parent: span,
        "outcome",
        status = outcome.status.as_str(),
        attempts = outcome.attempts,
        detail = outcome.detail.as_deref().unwrap_or(""),
    );
    drop(recorded);
}
