//! The engine's one backoff. What must not be lost (a pass over the stores, the outcomes and
//! watch attempts to record) is tried again after a delay that doubles from its first up to
//! 30 s, for as long as it takes.

use std::fmt::Display;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

/// The longest wait between two tries.
const MAX_DELAY: Duration = Duration::from_secs(30);

/// The first wait before recording again what failed to record.
const FIRST_RECORD_RETRY: Duration = Duration::from_millis(100);

/// Waits that start at `first` and double up to 30 s, without end.
pub(super) fn delays(first: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(MAX_DELAY)
        .without_max_times()
        .build()
}

/// Runs `attempt` until it succeeds, logging each failure as `what` failing.
pub(super) async fn until_done<T, E, Fut>(what: &str, mut attempt: impl FnMut() -> Fut) -> T
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut waits = delays(FIRST_RECORD_RETRY);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(error) => {
                let delay = waits.next().unwrap_or(MAX_DELAY);
                tracing::error!(%error, ?delay, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_waits_double_from_the_first_up_to_thirty_seconds() {
        let waits: Vec<Duration> = delays(Duration::from_millis(500)).take(9).collect();
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            millis,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[tokio::test]
    async fn until_done_tries_again_until_it_succeeds() {
        let mut tries = 0;
        let value = until_done("counting", || {
            tries += 1;
            let tried = tries;
            async move { if tried < 3 { Err("not yet") } else { Ok(tried) } }
        })
        .await;
        assert_eq!(value, 3);
    }
}
