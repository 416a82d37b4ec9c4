//! Shared by the benches that drive a real server over HTTP: one `custos` server on the embedded
//! SQLite store in a temporary data directory, and a set of NDJSON bodies sent to one URL by
//! several clients in parallel, each answer required to be 200 (durably committed).

use custos_core::SystemClock;
use custos_server::App;
use custos_server::config::Config;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A running server and what a client needs to reach it.
pub struct BenchServer {
    pub runtime: tokio::runtime::Runtime,
    pub addr: std::net::SocketAddr,
    /// The bootstrap administrator's secret.
    pub admin: String,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl BenchServer {
    /// Starts a server with the default configuration on a free loopback port.
    pub fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let (addr, admin) = runtime.block_on(async {
            let mut config = Config::default();
            config.server.data_dir = dir.path().join("data");
            let app = App::build(config, Arc::new(SystemClock)).await.unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(app.serve(listener, std::future::pending()));
            let admin = std::fs::read_to_string(dir.path().join("data/bootstrap-token")).unwrap();
            (addr, admin.trim().to_owned())
        });
        Self {
            runtime,
            addr,
            admin,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    /// Registers a model (answer 201 required).
    pub fn register(&self, spec: &serde_json::Value) {
        self.runtime.block_on(async {
            let r = self
                .client
                .post(format!("http://{}/api/v1/models", self.addr))
                .bearer_auth(&self.admin)
                .json(spec)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        });
    }

    /// Sends every body to the model's predictions URL with `clients` clients in parallel and
    /// returns the wall time until the last answer.
    pub fn send_all(&self, model: &str, bodies: Vec<Vec<u8>>, clients: usize) -> Duration {
        let url = format!("http://{}/api/v1/models/{model}/predictions", self.addr);
        self.runtime.block_on(async {
            let queue = Arc::new(tokio::sync::Mutex::new(bodies));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..clients {
                let (queue, client, url, admin) = (
                    queue.clone(),
                    self.client.clone(),
                    url.clone(),
                    self.admin.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    loop {
                        let Some(body) = queue.lock().await.pop() else {
                            break;
                        };
                        let r = client
                            .post(&url)
                            .bearer_auth(&admin)
                            .header("content-type", "application/x-ndjson")
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            started.elapsed()
        })
    }
}
