//! A TCP relay in front of PostgreSQL, to stage a database outage.

use std::sync::Arc;

/// A TCP relay to PostgreSQL that a test can cut, as a database restart or outage would: every
/// open connection is closed and new ones are refused until it is restored.
pub struct DbProxy {
    pub port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
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
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::channel(0u64).0);
        let (up2, generation2) = (up.clone(), generation.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let target = target.clone();
                let mut cut = generation2.subscribe();
                tokio::spawn(async move {
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
            up,
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
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}
