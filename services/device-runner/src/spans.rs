//! A job's part of the trace that queued it, when traces are on (`[telemetry] otlp_endpoint`,
//! see [`service_kit::traces`]): `queue` when it is queued, `run` from its start to its end
//! (its process gets the span's `TRACEPARENT`), and `kill` when it is stopped, each continuing
//! the job's `traceparent`. Off, each is [`Span::none`].

use device_runner_api::Job;
use service_kit::traces;
use tracing::{Span, info_span};

/// A span with no parent of its own, continuing `job`'s trace.
fn continued(span: Span, job: &Job) -> Span {
    if let Some(parent) = &job.traceparent {
        traces::continue_from(&span, parent);
    }
    span
}

/// Marks that `job` was queued.
pub(crate) fn queued(job: &Job) {
    if !traces::enabled() {
        return;
    }
    let span = info_span!(
        parent: None,
        "queue",
        job_id = %job.id,
        queue = %job.device,
        job_type = %job.job_type,
        priority = job.priority,
    );
    drop(continued(span, job));
}

/// The span of `job`'s run, open until it ends ([`ended`]).
pub(crate) fn run(job: &Job) -> Span {
    if !traces::enabled() {
        return Span::none();
    }
    let span = info_span!(
        parent: None,
        "run",
        job_id = %job.id,
        device = %job.device,
        job_type = %job.job_type,
        pid = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    continued(span, job)
}

/// Records the end of the run of `span` with `status`, and closes it.
pub(crate) fn ended(span: Span, status: &str) {
    span.record("status", status);
}

/// Marks that the run of `span` is being stopped, and why.
pub(crate) fn killed(span: &Span, reason: &str) {
    if span.is_none() {
        return;
    }
    drop(info_span!(parent: span, "kill", reason = %reason));
}
