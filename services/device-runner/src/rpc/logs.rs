//! Reading a job's log by byte offset, and following it live over a subscription.

use std::sync::Arc;
use std::time::Duration;

use device_runner_api::{LogChunk, RunnerError};
use jsonrpsee::core::SubscriptionResult;
use jsonrpsee::{PendingSubscriptionSink, SubscriptionMessage};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::jobs::find;
use crate::state::RunnerState;

/// The most one `get_logs` call or one subscription message carries.
pub(super) const MAX_CHUNK: u64 = 1024 * 1024;

pub(super) async fn read(
    runner: &RunnerState,
    job_id: &str,
    offset: u64,
    limit: Option<u64>,
) -> Result<LogChunk, RunnerError> {
    let limit = limit.unwrap_or(MAX_CHUNK);
    if limit == 0 || limit > MAX_CHUNK {
        return Err(RunnerError::Value(format!(
            "limit must be between 1 and {MAX_CHUNK}, got {limit}"
        )));
    }
    let job = find(runner, job_id).await?;
    // Whether more may come: the job has not ended, or its output is still being written.
    let live = !job.status.is_finished() || is_writing(runner, job_id);
    let length = match &job.log_path {
        Some(path) => tokio::fs::metadata(path).await.map_or(0, |m| m.len()),
        None => 0,
    };
    // A log only grows, and every chunk's `next_offset` lies within it: an offset past its
    // end is the caller's mistake.
    if offset > length {
        return Err(RunnerError::Value(format!(
            "offset {offset} is past the end of the log of job {job_id} ({length} bytes so far)"
        )));
    }
    let Some(path) = job.log_path else {
        return Ok(chunk(job_id, offset, Vec::new(), false));
    };
    let bytes = read_range(&path, offset, limit).await.map_err(|error| {
        // The path is the server's business: logged, not answered.
        tracing::error!(%error, %path, job_id, "cannot read a job's log");
        RunnerError::Runtime(format!(
            "cannot read the log of job {job_id}: {}",
            error.kind()
        ))
    })?;
    let end = offset + bytes.len() as u64;
    Ok(chunk(job_id, offset, bytes, !live && end >= length))
}

pub(super) async fn follow(
    runner: Arc<RunnerState>,
    pending: PendingSubscriptionSink,
    job_id: String,
    offset: u64,
) -> SubscriptionResult {
    if let Err(error) = find(&runner, &job_id).await {
        pending.reject(error).await;
        return Ok(());
    }
    let Some(sink) = runner.accepting.accept(pending).await? else {
        return Ok(());
    };
    let mut offset = offset;
    loop {
        let progress = runner
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job_id)
            .cloned();
        let piece = read(&runner, &job_id, offset, Some(MAX_CHUNK)).await?;
        let finished = piece.eof;
        let empty = piece.data.is_empty();
        offset = piece.next_offset;
        if !empty || finished {
            sink.send(SubscriptionMessage::from(serde_json::value::to_raw_value(
                &piece,
            )?))
            .await?;
        }
        if finished {
            return Ok(());
        }
        if !empty {
            continue;
        }
        match progress {
            // Wait for the writer to write more or close.
            Some(mut progress) => {
                tokio::select! {
                    _ = progress.changed() => {}
                    _ = sink.closed() => return Ok(()),
                }
            }
            // Not started yet, or just between states: look again shortly.
            None => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = sink.closed() => return Ok(()),
                }
            }
        }
    }
}

fn is_writing(runner: &RunnerState, job_id: &str) -> bool {
    runner
        .logs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(job_id)
        .is_some_and(|progress| !progress.borrow().done)
}

async fn read_range(path: &str, offset: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// A chunk that ends on a character boundary unless it is the last, so no character is split
/// across two reads.
fn chunk(job_id: &str, offset: u64, mut bytes: Vec<u8>, eof: bool) -> LogChunk {
    if !eof
        && let Err(error) = std::str::from_utf8(&bytes)
        && error.error_len().is_none()
    {
        bytes.truncate(error.valid_up_to());
    }
    LogChunk {
        job_id: job_id.to_string(),
        offset,
        next_offset: offset + bytes.len() as u64,
        data: String::from_utf8_lossy(&bytes).into_owned(),
        eof,
    }
}
