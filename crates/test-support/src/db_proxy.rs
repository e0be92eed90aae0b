//! A TCP relay in front of PostgreSQL, to stage a database outage.

use std::sync::Arc;

use tokio::sync::watch;

/// What the relay does with a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relay,
    Refuse,
    /// Accept it and keep it waiting, unanswered, until the relay is restored.
    Hold,
}

/// A TCP relay to PostgreSQL that a test can cut, as a database restart or outage would: every
/// open connection is closed and new ones are refused (or held unanswered) until it is
/// restored.
pub struct DbProxy {
    pub port: u16,
    mode: Arc<watch::Sender<Mode>>,
    generation: Arc<watch::Sender<u64>>,
    server: tokio::task::JoinHandle<()>,
}

impl DbProxy {
    /// Relays to the host and port of the PostgreSQL `url`.
    pub async fn start(url: &str) -> DbProxy {
        let parsed = reqwest::Url::parse(url).unwrap();
        let target = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = Arc::new(watch::channel(Mode::Relay).0);
        let generation = Arc::new(watch::channel(0u64).0);
        let (mode2, generation2) = (mode.clone(), generation.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if *mode2.borrow() == Mode::Refuse {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut relaying = mode2.subscribe();
                let mut cut = generation2.subscribe();
                tokio::spawn(async move {
                    // A held connection waits, unanswered, for the relay to be restored.
                    if relaying
                        .wait_for(|mode| *mode == Mode::Relay)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    cut.mark_unchanged();
                    let Ok(mut server) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        DbProxy {
            port,
            mode,
            generation,
            server,
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = reqwest::Url::parse(url).unwrap();
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(self.port)).unwrap();
        parsed.to_string()
    }

    /// Closes every relayed connection and refuses new ones.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Refuse);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Closes every relayed connection and holds new ones unanswered until [`DbProxy::restore`],
    /// as a database that is starting up, or a network that drops packets, keeps a client
    /// waiting.
    pub fn hold(&self) {
        self.mode.send_replace(Mode::Hold);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.mode.send_replace(Mode::Relay);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}
