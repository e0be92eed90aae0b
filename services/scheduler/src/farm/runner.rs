//! The farm's device runner, forwarded: its status, queue, logs (followed while a job runs),
//! history and timeline, and killing or restarting a job.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use device_runner_client::{DeviceRunnerApiClient, RunnerError};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Answer, Farm, Refusal, error};

/// The routes forwarded to the runner.
pub(super) fn routes() -> Router<Farm> {
    Router::new()
        .route("/api/scheduler/status", get(status))
        .route("/api/scheduler/queue", get(queue))
        .route("/api/scheduler/queue/{id}/logs", get(logs))
        .route("/api/scheduler/queue/{id}/logs/follow", get(follow_logs))
        .route("/api/scheduler/queue/{id}/kill", post(kill))
        .route("/api/scheduler/runs/{id}/restart", post(restart))
        .route("/api/scheduler/history", get(history))
        .route("/api/scheduler/history/{id}/logs", get(logs))
        .route("/api/scheduler/timeline", get(timeline))
}

/// A runner's answer as the farm's API gives it.
fn forwarded<T: Serialize>(result: Result<T, jsonrpsee::core::ClientError>) -> Answer {
    match result.map_err(device_runner_client::Error::from) {
        Ok(value) => Ok((StatusCode::OK, Json(json!(value)))),
        Err(device_runner_client::Error::Runner(e)) => {
            let status = match e {
                RunnerError::Value(_) => StatusCode::BAD_REQUEST,
                RunnerError::NotFound(_) => StatusCode::NOT_FOUND,
                RunnerError::Conflict(_) => StatusCode::CONFLICT,
                RunnerError::Unauthorized(_) | RunnerError::Runtime(_) => StatusCode::BAD_GATEWAY,
            };
            Err(error(status, e.to_string()))
        }
        Err(e) => Err(error(
            StatusCode::BAD_GATEWAY,
            format!("the device runner: {e}"),
        )),
    }
}

async fn status(State(farm): State<Farm>) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_status().await)
}

async fn queue(State(farm): State<Farm>) -> Answer {
    forwarded(farm.runner()?.1.rpc().list_queue(None).await)
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    limit: Option<u64>,
}

async fn logs(
    State(farm): State<Farm>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_logs(id, q.offset, q.limit).await)
}

/// A job's log from `offset`, followed while the job runs: the runner's subscription, as
/// one JSON chunk per line (`{"offset", "next_offset", "data", "eof"}`), ending after the
/// chunk that says `eof`. A failure after the first byte is a last line `{"error": …}`.
async fn follow_logs(
    State(farm): State<Farm>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, Refusal> {
    let follower = farm
        .runner()?
        .1
        .follow_logs(&id, q.offset.unwrap_or(0))
        .await
        .map_err(|e| match e {
            device_runner_client::Error::Runner(RunnerError::NotFound(m)) => {
                error(StatusCode::NOT_FOUND, m)
            }
            other => error(
                StatusCode::BAD_GATEWAY,
                format!("the device runner: {other}"),
            ),
        })?;
    let lines = futures::stream::unfold(Some(follower), |follower| async move {
        let mut follower = follower?;
        let (line, more) = match follower.next().await {
            Some(Ok(chunk)) => (json!(chunk), !chunk.eof),
            Some(Err(e)) => (json!({"error": format!("the device runner: {e}")}), false),
            None => return None,
        };
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        let next = more.then_some(follower);
        Some((Ok::<_, std::convert::Infallible>(bytes), next))
    });
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, "application/x-ndjson"),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

async fn kill(State(farm): State<Farm>, Path(id): Path<String>) -> Answer {
    forwarded(farm.runner()?.1.rpc().kill_job(id).await)
}

async fn restart(State(farm): State<Farm>, Path(id): Path<String>) -> Answer {
    forwarded(farm.runner()?.1.rpc().restart_run(id).await)
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
    device: Option<String>,
    status: Option<String>,
    job_type: Option<String>,
    before: Option<String>,
}

async fn history(State(farm): State<Farm>, Query(q): Query<HistoryQuery>) -> Answer {
    let rpc = farm.runner()?.1.rpc();
    forwarded(
        rpc.list_runs(q.device, q.status, q.job_type, q.limit, q.before)
            .await,
    )
}

#[derive(Deserialize)]
struct TimelineQuery {
    hours: Option<f64>,
}

async fn timeline(State(farm): State<Farm>, Query(q): Query<TimelineQuery>) -> Answer {
    forwarded(farm.runner()?.1.rpc().get_timeline(q.hours).await)
}
