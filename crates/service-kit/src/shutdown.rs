//! Graceful shutdown as one type handed to whatever must stop: the server, the engine, the
//! election, the watchers. [`ShutdownTrigger::request`] flips it once; every clone of
//! [`Shutdown`] sees it, whenever it looks. [`Background`] starts a service's background tasks
//! with it and waits for them together.

use std::future::Future;

use tokio::sync::watch;
use tokio::task::JoinHandle;

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

/// A service's background tasks: each started with the [`Shutdown`] it must watch, and all of
/// them waited for together once it is requested, so that the function that starts a service
/// reads as the list of what runs.
#[derive(Debug)]
pub struct Background {
    shutdown: Shutdown,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    pub fn new(shutdown: Shutdown) -> Self {
        Background {
            shutdown,
            tasks: Vec::new(),
        }
    }

    /// Starts `task`, made with the shutdown it must end on.
    pub fn start<F>(&mut self, name: &'static str, task: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.shutdown.clone()));
        self.tasks.push((name, handle));
    }

    /// Takes charge of a task started elsewhere with this shutdown.
    pub fn adopt(&mut self, name: &'static str, handle: JoinHandle<()>) {
        self.tasks.push((name, handle));
    }

    /// Waits for every task to end, which they do once the shutdown is requested; a task that
    /// panicked is logged with its name.
    pub async fn stopped(self) {
        for (name, handle) in self.tasks {
            if let Err(error) = handle.await {
                tracing::error!(task = name, %error, "a background task ended abnormally");
            }
        }
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
    async fn background_tasks_end_together_once_the_shutdown_is_requested() {
        let (trigger, shutdown) = channel();
        let (ended, mut ends) = tokio::sync::mpsc::unbounded_channel();
        let mut background = Background::new(shutdown);
        for name in ["first", "second"] {
            let ended = ended.clone();
            background.start(name, move |mut shutdown| async move {
                shutdown.requested().await;
                let _ = ended.send(name);
            });
        }
        drop(ended);
        assert!(ends.try_recv().is_err(), "nothing ends before the request");
        trigger.request();
        background.stopped().await;
        let mut names = Vec::new();
        while let Some(name) = ends.recv().await {
            names.push(name);
        }
        names.sort_unstable();
        assert_eq!(names, ["first", "second"]);
    }

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
