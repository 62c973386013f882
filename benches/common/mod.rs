//! What the load generators share: a callpool node under test, run from the release build as an
//! operator would, stopped with SIGTERM when dropped; and cleaning up a run's Redis keys.
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
