//! What the load generators share: a callpool node under test, run from the release build as an
//! operator would, stopped with SIGTERM when dropped; a counting stand-in for a service on the
//! internet; a closed-loop request driver and its latency summary; cleaning up a run's Redis keys.
#![allow(dead_code)] // each load generator uses part of it

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The binary under test: `CALLPOOL_BIN`, else the release build.
fn bin() -> PathBuf {
    std::env::var("CALLPOOL_BIN").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from("target/release/callpool"))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The `[store]` (and for a cluster `[bus]`) tables of a node under test: `embedded` in `dir`, or
/// `cluster` on the Redis and RabbitMQ of CALLPOOL_BENCH_REDIS_URL / CALLPOOL_BENCH_AMQP_URL
/// under `prefix`.
pub fn store_tables(store: &str, dir: &std::path::Path, prefix: &str) -> String {
    match store {
        "embedded" => format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}\n", dir.join("data")),
        "cluster" => format!(
            "[store]\nkind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"\n[bus]\nkind = \"rabbitmq\"\namqp_url = \"{}\"\n",
            std::env::var("CALLPOOL_BENCH_REDIS_URL").expect("CALLPOOL_BENCH_REDIS_URL"),
            std::env::var("CALLPOOL_BENCH_AMQP_URL").expect("CALLPOOL_BENCH_AMQP_URL"),
        ),
        other => panic!("unknown store {other}: embedded or cluster"),
    }
}

/// A callpool node under test, stopped on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Writes `config` (which must listen on 127.0.0.1:`port`) into `dir`, starts the node and
    /// waits until it accepts connections.
    pub fn spawn(dir: tempfile::TempDir, port: u16, config: &str) -> Server {
        let path = dir.path().join("callpool.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(&path)
            .arg("serve")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start callpool (cargo build --release first)");
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Server { child, port, _dir: dir };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("callpool did not start");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Deletes the keys matching `pattern` from the benchmark's Redis (`CALLPOOL_BENCH_REDIS_URL`).
pub async fn forget_keys(pattern: &str) {
    let url = std::env::var("CALLPOOL_BENCH_REDIS_URL").expect("CALLPOOL_BENCH_REDIS_URL");
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("UNLINK").arg(&keys).query_async(&mut conn).await.unwrap();
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
}

/// A local stand-in for a service on the internet (GA4's collector, a PBX): counts every request
/// into `count` and answers 204. Returns its base URL.
pub async fn counting_server(count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move || {
        count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        async { axum::http::StatusCode::NO_CONTENT }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// What a closed-loop run measured.
pub struct Measured {
    /// Latencies of the requests answered as expected, in µs, sorted.
    pub latencies_us: Vec<u64>,
    /// Requests answered otherwise (or not at all).
    pub errors: u64,
    pub seconds: f64,
}

impl Measured {
    /// Requests answered as expected per second.
    pub fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds
    }

    /// `latency ms p50 … p90 … p99 … max …`
    pub fn latency(&self) -> String {
        let lat = &self.latencies_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let q = |p: f64| {
            ms(lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0))
        };
        format!(
            "latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
            q(0.50),
            q(0.90),
            q(0.99),
            ms(lat.last().copied().unwrap_or(0))
        )
    }
}

/// `concurrency` workers each send with `send` back to back for `duration`; `send` answers whether
/// the request was answered as expected and how long it took.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, send: F) -> Measured
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = (bool, Duration)> + Send,
{
    let start = std::time::Instant::now();
    let until = start + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let send = send.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Vec::new(), 0u64);
                while std::time::Instant::now() < until {
                    let (ok, took) = send().await;
                    if ok {
                        lat.push(took.as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut latencies_us, mut errors) = (Vec::new(), 0);
    for w in workers {
        let (l, e) = w.await.unwrap();
        latencies_us.extend(l);
        errors += e;
    }
    let seconds = start.elapsed().as_secs_f64();
    latencies_us.sort_unstable();
    Measured { latencies_us, errors, seconds }
}
