//! Sending a watch's completion, once: a Redis notification, or `resume_conversation` on the
//! agent's core with the notification as fallback, retried until it is delivered.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use jobstore::{Sent, WatchStore};
use scheduler_api::{OnComplete, Watch};
use serde_json::{Value, json};

use crate::endpoint::{error_chain, truncate};
use crate::outbound::Outbound;

use super::Watches;

/// What a PUBLISH may take at most while Redis is down (three connection attempts of 3 s, a
/// response timeout of 5 s), with a margin: part of a sender's lease.
const PUBLISH_BOUND: Duration = Duration::from_secs(20);
/// Completions taken per claim.
const DELIVERY_BATCH: usize = 100;
/// The longest the sender sleeps without looking for completions left by a process that died.
const DELIVERY_MAX_SLEEP: Duration = Duration::from_secs(30);

impl Watches {
    /// Sends a watch's completion once: the notification, or `resume_conversation` with the
    /// notification as fallback. Says how it went, with when to try again if it did not.
    pub async fn send(&self, outbound: &Outbound, watch: &Watch) -> Sent {
        let now = Utc::now();
        let attempts = watch.delivery.as_ref().map_or(0, |d| d.attempts);
        let retry_at = now + self.retry_delay(attempts);
        let mut fallback = None;
        if watch.on_complete == OnComplete::ResumeConversation {
            match self.resume(watch).await {
                Ok(()) => {
                    return Sent::Delivered {
                        via: OnComplete::ResumeConversation,
                        detail: None,
                        at: Utc::now(),
                    };
                }
                Err(error) => {
                    tracing::warn!(watch_id = %watch.id, %error, "resume_conversation failed; falling back to the notification");
                    fallback = Some(error);
                }
            }
        }
        let channel = watch.channel();
        match outbound
            .publish_text(&channel, &notification(watch).to_string())
            .await
        {
            Ok(receivers) => Sent::Delivered {
                via: OnComplete::Notify,
                detail: Some(match fallback {
                    Some(error) => format!(
                        "resume_conversation failed ({error}); notified on {channel} instead \
                         ({receivers} receivers)"
                    ),
                    None => format!("notified on {channel} ({receivers} receivers)"),
                }),
                at: Utc::now(),
            },
            Err(error) => Sent::Failed {
                error: match fallback {
                    Some(resume) => format!(
                        "resume_conversation failed ({resume}), and so did the notification: \
                         {error}"
                    ),
                    None => format!("notification on {channel} failed: {error}"),
                },
                retry_at,
            },
        }
    }

    /// POSTs the completion to the core's `/continue`, as often as `watches.core_attempts`
    /// says while it fails.
    async fn resume(&self, watch: &Watch) -> Result<(), String> {
        let core = self
            .core
            .as_ref()
            .ok_or("watches.core_url is not configured")?;
        let body = json!({
            "conversation_id": watch.conversation_id,
            "user_id": watch.user_id,
            "message": watch.message,
            "watch_id": watch.id,
            "workflow_id": watch.workflow_id,
            "status": watch.status,
        });
        let mut last = String::new();
        for attempt in 0..self.core_attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200) * 2u32.pow(attempt - 1)).await;
            }
            let mut request = core.http.post(&core.url).json(&body);
            if let Some(token) = &core.token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    last = format!("{} answered {status}: {}", core.url, truncate(&text, 200));
                }
                Err(error) => last = format!("{}: {}", core.url, error_chain(&error)),
            }
        }
        Err(last)
    }

    /// How long a sender holds a completion it is sending before another may take it over:
    /// longer than a send can take (every `/continue` attempt timing out, then the PUBLISH),
    /// so two replicas never send one completion at once.
    pub fn delivery_lease(&self) -> TimeDelta {
        let resume = self.core.as_ref().map_or(Duration::ZERO, |_| {
            let backoff = Duration::from_millis(200) * 2u32.pow(self.core_attempts);
            self.core_timeout * self.core_attempts + backoff
        });
        TimeDelta::from_std(resume + PUBLISH_BOUND).unwrap_or(TimeDelta::minutes(5))
    }

    /// The wait before the next send of a completion already tried `attempts` times: one
    /// second, doubling, at most `watches.max_retry_delay`.
    fn retry_delay(&self, attempts: u32) -> TimeDelta {
        let delay = Duration::from_secs(1)
            .saturating_mul(2u32.saturating_pow(attempts.min(20)))
            .min(self.max_retry_delay);
        TimeDelta::from_std(delay).unwrap_or(TimeDelta::seconds(60))
    }
}

/// The notification of a completed or failed watch, as the bot reads it.
fn notification(watch: &Watch) -> Value {
    json!({
        "user_id": watch.user_id,
        "platform": watch.platform,
        "platform_channel_id": watch.platform_channel_id,
        "platform_thread_id": watch.platform_thread_id,
        "conversation_id": watch.conversation_id,
        "watch_id": watch.id,
        "workflow_id": watch.workflow_id,
        "status": watch.status,
        "message": watch.message,
    })
}

/// Sends the completions of watches until `stopped`: those this process ends (it is woken),
/// and those another process left unsent (found when their lease or retry time comes).
pub(crate) async fn deliver(
    store: Arc<dyn WatchStore>,
    watches: Arc<Watches>,
    outbound: Arc<Outbound>,
    mut stopped: service_kit::shutdown::Shutdown,
) {
    while !stopped.is_requested() {
        let now = Utc::now();
        let claimed = match store
            .claim_deliveries(now, DELIVERY_BATCH, watches.delivery_lease())
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::error!(%error, "claiming watch completions failed; retrying");
                Vec::new()
            }
        };
        let full = claimed.len() == DELIVERY_BATCH;
        let sends = claimed.into_iter().map(|watch| {
            let store = store.clone();
            let watches = watches.clone();
            let outbound = outbound.clone();
            async move {
                let sent = watches.send(&outbound, &watch).await;
                match &sent {
                    Sent::Delivered { via, detail, .. } => {
                        tracing::info!(watch_id = %watch.id, via = via.as_str(), detail = detail.as_deref().unwrap_or(""), "watch completion delivered")
                    }
                    Sent::Failed { error, retry_at } => {
                        tracing::warn!(watch_id = %watch.id, %error, %retry_at, "watch completion not delivered; it is sent again later")
                    }
                }
                // Unrecorded, the send is repeated when its lease runs out: the completion is
                // never dropped, at the price of a rare second notification.
                if let Err(error) = store.record_delivery(&watch.id, &sent).await {
                    tracing::error!(%error, watch_id = %watch.id, "recording a watch completion's send failed");
                }
            }
        });
        futures::future::join_all(sends).await;
        if full {
            continue;
        }
        let sleep = match store.next_delivery().await {
            Ok(Some(at)) => (at - Utc::now()).to_std().unwrap_or_default(),
            Ok(None) => DELIVERY_MAX_SLEEP,
            Err(error) => {
                tracing::error!(%error, "reading the next watch completion failed");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep.min(DELIVERY_MAX_SLEEP)) => {}
            _ = watches.ended.notified() => {}
            _ = stopped.requested() => return,
        }
    }
}
