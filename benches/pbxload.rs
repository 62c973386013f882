//! PBX webhook load generator (run through `benches/pbx.sh`; figures in BENCHMARKS.md).
//! Loopback only, bounded in time, stops by itself.
//!
//! `pbxload STORE SECONDS CONCURRENCY [STATUS]` starts one callpool node (release build): STORE `embedded`
//! (embedded store, in-process bus) or `cluster` (Redis + RabbitMQ from CALLPOOL_BENCH_REDIS_URL /
//! CALLPOOL_BENCH_AMQP_URL). It opens 200 visitor tabs that each get a tracking number (delay 0 s)
//! with a GA client id, and points GA4 at a local collector in this process that answers 204. Then
//! CONCURRENCY connections post signed `completed` call reports as fast as they are answered for
//! SECONDS, each to one of the 200 tracking numbers from one of 10,000 callers: every call is
//! matched (`active`), stored with its caller memory, and its GA4 job queued — the node's outbox
//! sends those events to the local collector meanwhile. Reported: webhooks per second and the
//! latency from sending a webhook to its 200 answer (which comes after the call and its jobs are
//! durable), p50/p90/p99/max, and the GA4 events the collector received during the run.
//!
//! STATUS `completed` (default) makes every call final, so its GA4 event goes out at once, on the
//! same two cores; `ringing` leaves every call open, so its event is queued for `finalize_after`
//! (an hour) and the run measures ingest alone: matched, stored, and queued. Afterwards the
//! run's Redis keys are deleted.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{free_port, Server};

const ORIGIN: &str = "https://load.example";
const SECRET: &str = "bench-pbx-secret-0123456789";
const VISITORS: usize = 200;

impl Server {
    fn start(store: &str, ga4: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let numbers: Vec<String> = (0..VISITORS).map(|i| format!("\"+74953{:06}\"", 100_000 + i)).collect();
        let prefix = format!("bench-pbx-{}", std::process::id());
        let store = common::store_tables(store, dir.path(), &prefix);
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
ws_connects_per_ip_per_minute = 1000000
node_id = "{prefix}"
{store}
[analytics]
ga4_base_url = "{ga4}"
[[pbx]]
id = "bench"
secrets = ["{SECRET}"]
requests_per_second = 1000000
[pool]
reaper_interval = "1s"
[[site]]
id = "load"
key = "load-site-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = [{}]
delay_to_show = "0s"
reclaim_after_idle = "2h"
max_hold = "4h"
[site.ga4]
measurement_id = "G-BENCH1"
api_secret = "bench"
"#,
            numbers.join(",")
        );
        Server::spawn(dir, port, &config)
    }
}

/// Opens a tab as visitor `i` and returns it with its tracking number.
async fn tab(
    port: u16,
    i: usize,
) -> (tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, String) {
    let mut req = format!("ws://127.0.0.1:{port}/v1/ws?site=load-site-key").into_client_request().unwrap();
    req.headers_mut().insert("origin", ORIGIN.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("tab connects");
    let hello = serde_json::json!({"type": "hello", "v": 1, "visitor": format!("1000.{i}"), "tab": "t",
        "ga_client_id": format!("1000.{}", i + 1), "page": "https://load.example/?utm_source=bench"});
    ws.send(Message::text(hello.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("an answer").unwrap().unwrap();
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "number" && v["kind"] == "tracking" {
            return (ws, v["number"].as_str().unwrap().to_owned());
        }
    }
}

fn sign(t: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn run(store: String, seconds: u64, concurrency: usize, status: String) {
    let received = Arc::new(AtomicU64::new(0));
    let ga4 = common::counting_server(received.clone()).await;
    let server = Server::start(&store, &ga4);
    let port = server.port;
    let mut tabs = Vec::new();
    let mut numbers = Vec::new();
    for i in 0..VISITORS {
        let (ws, number) = tab(port, i).await;
        tabs.push(ws);
        numbers.push(number);
    }
    let numbers = Arc::new(numbers);
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let url = format!("http://127.0.0.1:{port}/v1/pbx/calls?pbx=bench");
    let seq = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();
    let status = Arc::new(status);
    let post = {
        let (client, url, numbers, seq, status) =
            (client.clone(), url.clone(), numbers.clone(), seq.clone(), status.clone());
        move || {
            let (client, url, numbers, seq, status) =
                (client.clone(), url.clone(), numbers.clone(), seq.clone(), status.clone());
            async move {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::json!({
                    "call_id": format!("{run_id}-{n}"),
                    "called": numbers[(n as usize * 7919) % numbers.len()],
                    "caller": format!("+7916{:07}", (n * 104_729) % 10_000),
                    "started_at": chrono::Utc::now().to_rfc3339(),
                    "status": status.as_str(),
                    "duration": 60,
                })
                .to_string();
                let t = chrono::Utc::now().timestamp();
                let started = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("callpool-signature", sign(t, body.as_bytes()))
                    .body(body)
                    .send()
                    .await;
                let ok = matches!(&resp, Ok(r) if r.status() == 200);
                (ok, started.elapsed())
            }
        }
    };
    // Warm up: connections, scripts, caches.
    common::closed_loop(concurrency, Duration::from_secs(2), post.clone()).await;
    let events_before = received.load(Ordering::Relaxed);
    let m = common::closed_loop(concurrency, Duration::from_secs(seconds), post).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = received.load(Ordering::Relaxed) - events_before;
    println!(
        "store={store} concurrency={concurrency} seconds={seconds} status={status}: {} webhooks answered 200 ({:.0}/s), {} errors; {}; GA4 events received during the run and 2 s after: {events}",
        m.latencies_us.len(),
        m.rate(),
        m.errors,
        m.latency(),
    );
    drop(tabs);
    drop(server);
    if store == "cluster" {
        common::forget_keys(&format!("{{bench-pbx-{}}}:*", std::process::id())).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let seconds: u64 = arg(1, "10").parse().expect("SECONDS");
    assert!(seconds <= 120, "bounded: at most 120 s");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(arg(0, "embedded"), seconds, arg(2, "32").parse().expect("CONCURRENCY"), arg(3, "completed")));
}
