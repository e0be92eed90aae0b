//! Subscriptions an unsubscribe can always end. jsonrpsee sends a subscription's id to the
//! caller before it registers the subscription on the connection, so an unsubscribe that
//! follows the id at once can find nothing there, answer `false` and leave the subscription
//! running. [`Accepting`] closes that gap: a service accepts its subscriptions through it, and
//! the RPC middleware ([`crate::calls`]) turns such a `false` for a subscription still being
//! accepted into `true`, ending the subscription as soon as its acceptance completes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonrpsee::SubscriptionSink;
use jsonrpsee::core::server::{PendingSubscriptionAcceptError, PendingSubscriptionSink};

/// The subscriptions being accepted, by id (as JSON text), each with whether an unsubscribe
/// came for it meanwhile.
#[derive(Debug, Clone, Default)]
pub struct Accepting(Arc<Mutex<HashMap<String, bool>>>);

impl Accepting {
    /// Accepts `pending`; `None` when it was unsubscribed while being accepted (its sink is
    /// dropped, which ends it).
    pub async fn accept(
        &self,
        pending: PendingSubscriptionSink,
    ) -> Result<Option<SubscriptionSink>, PendingSubscriptionAcceptError> {
        let id = serde_json::to_string(&pending.subscription_id()).unwrap_or_default();
        self.begin(&id);
        let sink = pending.accept().await;
        let cancelled = self.end(&id);
        match sink {
            Ok(_) if cancelled => Ok(None),
            Ok(sink) => Ok(Some(sink)),
            Err(error) => Err(error),
        }
    }

    /// Subscription `id` (JSON text) is being accepted.
    pub fn begin(&self, id: &str) {
        self.lock().insert(id.to_string(), false);
    }

    /// Subscription `id` is accepted (or failed to be); whether it was cancelled meanwhile.
    pub fn end(&self, id: &str) -> bool {
        self.lock().remove(id).unwrap_or(false)
    }

    /// Marks subscription `id` (JSON text) to end once accepted; whether it was being
    /// accepted.
    pub fn cancel(&self, id: &str) -> bool {
        match self.lock().get_mut(id) {
            Some(cancelled) => {
                *cancelled = true;
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, bool>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_subscription_being_accepted_can_be_cancelled_through_it() {
        let accepting = Accepting::default();
        assert!(!accepting.cancel("42"));
        accepting.begin("42");
        assert!(accepting.cancel("42"));
        assert!(accepting.end("42"));
        assert!(!accepting.end("42"), "ended once");
        accepting.begin("7");
        assert!(!accepting.end("7"), "not cancelled");
    }
}
