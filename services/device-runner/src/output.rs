//! A job's output: every line goes to its log file (up to the cap), and stdout lines of the
//! job protocol (`::checkpoint <json>`, `::result <json>`, `::progress <0-100> [message]`) are
//! reported as they arrive.

use std::path::Path;

use device_runner_api::Progress;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The longest line kept whole; longer ones are logged in pieces and never read as protocol.
pub const MAX_LINE: usize = 64 * 1024;

/// A protocol line from a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    Checkpoint(Value),
    Result(Value),
    Progress(Progress),
}

/// Reads a stdout line: `None` for a plain log line, an error for a protocol line that is
/// malformed.
pub fn parse_report(line: &str) -> Option<Result<Report, String>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let rest = line.strip_prefix("::")?;
    let (word, argument) = rest.split_once(' ').unwrap_or((rest, ""));
    let json = |kind: &str| {
        serde_json::from_str::<Value>(argument.trim())
            .map_err(|e| format!("::{kind} needs JSON: {e}"))
    };
    Some(match word {
        "checkpoint" => json("checkpoint").map(Report::Checkpoint),
        "result" => json("result").map(Report::Result),
        "progress" => {
            let (number, message) = argument
                .trim_start()
                .split_once(' ')
                .unwrap_or((argument.trim(), ""));
            match number.parse::<u8>() {
                Ok(percent) if percent <= 100 => Ok(Report::Progress(Progress {
                    percent,
                    message: Some(message.trim())
                        .filter(|m| !m.is_empty())
                        .map(str::to_string),
                })),
                _ => Err(format!(
                    "::progress needs a number from 0 to 100, got '{number}'"
                )),
            }
        }
        _ => return None,
    })
}

/// Splits a stream into lines of at most [`MAX_LINE`] bytes, without ever holding more.
pub struct Lines<R> {
    reader: R,
    buffer: Vec<u8>,
    eof: bool,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub fn new(reader: R) -> Self {
        Lines {
            reader,
            buffer: Vec::new(),
            eof: false,
        }
    }

    /// The next line with its newline (if it had one), or `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                return Some(self.buffer.drain(..=end).collect());
            }
            if self.buffer.len() >= MAX_LINE {
                return Some(self.buffer.drain(..MAX_LINE).collect());
            }
            if self.eof {
                return (!self.buffer.is_empty()).then(|| std::mem::take(&mut self.buffer));
            }
            let mut chunk = [0u8; 8192];
            match self.reader.read(&mut chunk).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// How far a log has been written, for readers that follow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogProgress {
    pub len: u64,
    pub done: bool,
}

/// A job's log file with its size cap.
pub struct LogFile {
    file: tokio::fs::File,
    written: u64,
    cap: u64,
    capped: bool,
    progress: watch::Sender<LogProgress>,
}

impl LogFile {
    pub async fn create(
        path: &Path,
        cap: u64,
    ) -> std::io::Result<(LogFile, watch::Receiver<LogProgress>)> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = tokio::fs::File::create(path).await?;
        let (progress, receiver) = watch::channel(LogProgress {
            len: 0,
            done: false,
        });
        let log = LogFile {
            file,
            written: 0,
            cap,
            capped: false,
            progress,
        };
        Ok((log, receiver))
    }

    /// Appends a line, or drops it once the cap is reached (writing a marker once).
    pub async fn write(&mut self, line: &[u8]) {
        if self.capped {
            return;
        }
        let result = if self.written + line.len() as u64 <= self.cap {
            self.written += line.len() as u64;
            self.file.write_all(line).await
        } else {
            self.capped = true;
            let marker = format!(
                "\n[device-runner] log cap of {} bytes reached; further output dropped\n",
                self.cap
            );
            self.written += marker.len() as u64;
            self.file.write_all(marker.as_bytes()).await
        };
        if let Err(error) = result.and(self.file.flush().await) {
            tracing::warn!(%error, "cannot write job log");
        }
        self.progress.send_replace(LogProgress {
            len: self.written,
            done: false,
        });
    }

    /// A line from the runner itself.
    pub async fn note(&mut self, text: &str) {
        self.write(format!("[device-runner] {text}\n").as_bytes())
            .await;
    }

    /// Flushes to disk and tells followers that nothing more comes.
    pub async fn close(self) {
        if let Err(error) = self.file.sync_all().await {
            tracing::warn!(%error, "cannot sync job log");
        }
        self.progress.send_replace(LogProgress {
            len: self.written,
            done: true,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn protocol_lines_are_read_and_plain_lines_are_not() {
        assert_eq!(
            parse_report("::checkpoint {\"page\": 3}\n"),
            Some(Ok(Report::Checkpoint(json!({"page": 3}))))
        );
        assert_eq!(
            parse_report("::result [1, 2]"),
            Some(Ok(Report::Result(json!([1, 2]))))
        );
        assert_eq!(
            parse_report("::progress 40 scrolling feed"),
            Some(Ok(Report::Progress(Progress {
                percent: 40,
                message: Some("scrolling feed".into())
            })))
        );
        assert_eq!(
            parse_report("::progress 100"),
            Some(Ok(Report::Progress(Progress {
                percent: 100,
                message: None
            })))
        );
        assert!(matches!(parse_report("::progress 140"), Some(Err(_))));
        assert!(matches!(parse_report("::checkpoint {oops"), Some(Err(_))));
        assert_eq!(parse_report("plain output"), None);
        assert_eq!(parse_report("::unknown thing"), None);
    }

    #[tokio::test]
    async fn long_lines_are_split_and_memory_stays_bounded() {
        let mut input = vec![b'x'; MAX_LINE * 2 + 10];
        input.extend_from_slice(b"\nshort\nlast");
        let mut lines = Lines::new(&input[..]);
        let mut sizes = Vec::new();
        while let Some(line) = lines.next().await {
            sizes.push(line.len());
        }
        assert_eq!(sizes, [MAX_LINE, MAX_LINE, 11, 6, 4]);
    }

    #[tokio::test]
    async fn the_cap_drops_output_behind_one_marker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.log");
        let (mut log, progress) = LogFile::create(&path, 1024).await.unwrap();
        for i in 0..200 {
            log.write(format!("line {i:04}\n").as_bytes()).await;
        }
        log.close().await;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("line 0000\n"));
        assert_eq!(text.matches("log cap of 1024 bytes reached").count(), 1);
        assert!(text.len() < 1024 + 100, "{}", text.len());
        assert_eq!(progress.borrow().len, text.len() as u64);
        assert!(progress.borrow().done);
    }
}
