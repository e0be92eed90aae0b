//! The farm's device runners, forwarded: their status, queue, history and timeline merged
//! (each device, pool and job with its `runner`), and a job's logs (followed while it runs),
//! kill and restart sent to the runner that has the job.

use std::future::Future;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::DateTime;
use device_runner_client::{DeviceRunnerApiClient, DeviceRunnerClient, RunnerError};
use jsonrpsee::core::ClientError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Answer, Farm, Refusal, error};

/// The routes forwarded to the runners.
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

/// A runner's refusal as the farm's API gives it.
fn refusal(error_: ClientError) -> Refusal {
    match device_runner_client::Error::from(error_) {
        device_runner_client::Error::Runner(e) => {
            let status = match e {
                RunnerError::Value(_) => StatusCode::BAD_REQUEST,
                RunnerError::NotFound(_) => StatusCode::NOT_FOUND,
                RunnerError::Conflict(_) => StatusCode::CONFLICT,
                RunnerError::Unauthorized(_) | RunnerError::Runtime(_) => StatusCode::BAD_GATEWAY,
            };
            error(status, e.to_string())
        }
        e => error(StatusCode::BAD_GATEWAY, format!("the device runner: {e}")),
    }
}

/// A runner's answer as the farm's API gives it.
fn forwarded<T: Serialize>(result: Result<T, ClientError>) -> Answer {
    result
        .map(|value| (StatusCode::OK, Json(json!(value))))
        .map_err(refusal)
}

/// Each object of `items` (an array) with its runner's name.
fn with_runner(items: Option<&Value>, runner: &str) -> Vec<Value> {
    let items = items.and_then(Value::as_array).cloned().unwrap_or_default();
    items
        .into_iter()
        .map(|mut item| {
            if let Value::Object(fields) = &mut item {
                fields.insert("runner".into(), runner.into());
            }
            item
        })
        .collect()
}

/// Every runner's answer to `ask` as JSON, in the farm's order.
async fn ask_all<T, F, Fut>(
    farm: &Farm,
    ask: F,
) -> Result<Vec<(String, Result<Value, Refusal>)>, Refusal>
where
    T: Serialize,
    F: Fn(DeviceRunnerClient) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let asked = farm.runners()?.iter().map(|(name, client)| {
        let answer = ask(client.clone());
        async move {
            (
                name.clone(),
                answer.await.map(|v| json!(v)).map_err(refusal),
            )
        }
    });
    Ok(futures::future::join_all(asked).await)
}

/// The answers of the runners that answered; the first refusal when none did.
fn reached(
    answers: Vec<(String, Result<Value, Refusal>)>,
) -> Result<Vec<(String, Value)>, Refusal> {
    let mut first_refusal = None;
    let mut reached = Vec::new();
    for (name, answer) in answers {
        match answer {
            Ok(value) => reached.push((name, value)),
            Err(refusal) => {
                tracing::warn!(runner = %name, error = %refusal.1, "a device runner did not answer the farm's route");
                first_refusal.get_or_insert(refusal);
            }
        }
    }
    match (reached.is_empty(), first_refusal) {
        (true, Some(refusal)) => Err(refusal),
        _ => Ok(reached),
    }
}

/// Every runner's status as one: the first runner's name and uptime, every device, pool and
/// running job with its runner, and `runners` saying which answered.
async fn status(State(farm): State<Farm>) -> Answer {
    let answers = ask_all(&farm, |rpc| async move { rpc.rpc().get_status().await }).await?;
    let runners: Vec<Value> = answers
        .iter()
        .map(|(name, answer)| match answer {
            Ok(status) => json!({"name": name, "reports_as": status["name"], "reachable": true}),
            Err(refusal) => json!({"name": name, "reachable": false, "error": refusal.1}),
        })
        .collect();
    let reached = reached(answers)?;
    let mut merged = reached[0].1.clone();
    for field in ["devices", "pools", "running_jobs"] {
        let all: Vec<Value> = reached
            .iter()
            .flat_map(|(name, status)| with_runner(status.get(field), name))
            .collect();
        merged[field] = Value::Array(all);
    }
    merged["runners"] = Value::Array(runners);
    Ok((StatusCode::OK, Json(merged)))
}

/// Every runner's items of one list, each with its runner.
async fn merged_list<T, F, Fut>(farm: &Farm, ask: F) -> Result<Vec<Value>, Refusal>
where
    T: Serialize,
    F: Fn(DeviceRunnerClient) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let reached = reached(ask_all(farm, ask).await?)?;
    Ok(reached
        .iter()
        .flat_map(|(name, list)| with_runner(Some(list), name))
        .collect())
}

async fn queue(State(farm): State<Farm>) -> Answer {
    let jobs = merged_list(&farm, |rpc| async move { rpc.rpc().list_queue(None).await }).await?;
    Ok((StatusCode::OK, Json(Value::Array(jobs))))
}

/// The runner that has job `id`: the only one, or the one whose `get_run` finds it.
async fn runner_of(farm: &Farm, id: &str) -> Result<DeviceRunnerClient, Refusal> {
    let runners = farm.runners()?;
    if let [(_, only)] = runners {
        return Ok(only.clone());
    }
    let mut failed = None;
    for (_, client) in runners {
        match client.rpc().get_run(id.to_string()).await {
            Ok(_) => return Ok(client.clone()),
            Err(e) => {
                let refused = refusal(e);
                if refused.0 != StatusCode::NOT_FOUND {
                    failed.get_or_insert(refused);
                }
            }
        }
    }
    Err(failed.unwrap_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("no device runner has job {id}"),
        )
    }))
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
    let runner = runner_of(&farm, &id).await?;
    forwarded(runner.rpc().get_logs(id, q.offset, q.limit).await)
}

/// A job's log from `offset`, followed while the job runs: the runner's subscription, as
/// one JSON chunk per line (`{"offset", "next_offset", "data", "eof"}`), ending after the
/// chunk that says `eof`. A failure after the first byte is a last line `{"error": …}`.
async fn follow_logs(
    State(farm): State<Farm>,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, Refusal> {
    let follower = runner_of(&farm, &id)
        .await?
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
    let runner = runner_of(&farm, &id).await?;
    forwarded(runner.rpc().kill_job(id).await)
}

async fn restart(State(farm): State<Farm>, Path(id): Path<String>) -> Answer {
    let runner = runner_of(&farm, &id).await?;
    forwarded(runner.rpc().restart_run(id).await)
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<i64>,
    device: Option<String>,
    status: Option<String>,
    job_type: Option<String>,
    before: Option<String>,
}

/// Finished runs of every runner, newest first. `before` (a run id) pages back from that run:
/// its runner is asked for the runs before it, the others for those that ended earlier.
async fn history(State(farm): State<Farm>, Query(q): Query<HistoryQuery>) -> Answer {
    let limit = q.limit.unwrap_or(50);
    let ended_before = match (&q.before, farm.runners()?.len()) {
        (Some(before), several) if several > 1 => {
            let runner = runner_of(&farm, before).await?;
            let run = runner
                .rpc()
                .get_run(before.clone())
                .await
                .map_err(refusal)?;
            run.ended_at
        }
        _ => None,
    };
    let q = &q;
    let mut runs = merged_list(&farm, |rpc| {
        let (device, status, job_type) = (q.device.clone(), q.status.clone(), q.job_type.clone());
        let before = q.before.clone();
        async move {
            let mine = match &before {
                Some(id) => rpc.rpc().get_run(id.clone()).await.is_ok(),
                None => true,
            };
            let (before, ended_before) = if mine {
                (before, None)
            } else {
                (None, ended_before)
            };
            rpc.rpc()
                .list_runs(device, status, job_type, Some(limit), before, ended_before)
                .await
        }
    })
    .await?;
    // Newest first across the runners.
    let ended = |run: &Value| {
        run["ended_at"]
            .as_str()
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
    };
    runs.sort_by_key(|run| std::cmp::Reverse(ended(run)));
    runs.truncate(usize::try_from(limit).unwrap_or(0));
    Ok((StatusCode::OK, Json(Value::Array(runs))))
}

#[derive(Deserialize)]
struct TimelineQuery {
    hours: Option<f64>,
}

async fn timeline(State(farm): State<Farm>, Query(q): Query<TimelineQuery>) -> Answer {
    let hours = q.hours;
    let lanes = merged_list(
        &farm,
        |rpc| async move { rpc.rpc().get_timeline(hours).await },
    )
    .await?;
    Ok((StatusCode::OK, Json(Value::Array(lanes))))
}
