//! Graceful shutdown as one type handed to whatever must stop: the server, the engine, the
//! election, the watchers. [`ShutdownTrigger::request`] flips it once; every clone of
//! [`Shutdown`] sees it, whenever it looks.

use tokio::sync::watch;

/// The side that asks everything to stop.
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

/// The side that is told to stop.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A new trigger and the shutdown it controls.
pub fn channel() -> (ShutdownTrigger, Shutdown) {
    let (sender, receiver) = watch::channel(false);
    (ShutdownTrigger(sender), Shutdown(receiver))
}

impl ShutdownTrigger {
    /// Asks every [`Shutdown`] to stop. Asking twice is asking once.
    pub fn request(&self) {
        self.0.send_replace(true);
    }

    /// Another handle on the same shutdown.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether a stop was asked for.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once a stop is asked for (at once when it already was), or when the trigger is
    /// gone, which can only mean the process is ending.
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot listen for SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_handle_sees_the_request_even_when_it_looks_late() {
        let (trigger, mut first) = channel();
        let mut late = trigger.subscribe();
        assert!(!first.is_requested());
        trigger.request();
        first.requested().await;
        late.requested().await;
        assert!(late.is_requested() && first.is_requested());
    }
}
