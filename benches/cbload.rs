//! Callback request load generator (run through `benches/callback.sh`; figures in BENCHMARKS.md).
//! Loopback only, bounded in time, stops by itself.
//!
//! `cbload STORE MODE SECONDS CONCURRENCY` starts one callpool node (release build) with one site
//! whose callback form triggers a local PBX in this process (answers 204, counts triggers); STORE
//! `embedded` or `cluster` (Redis + RabbitMQ from CALLPOOL_BENCH_REDIS_URL / CALLPOOL_BENCH_AMQP_URL).
//! CONCURRENCY connections post `POST /v1/callback` as fast as they are answered for SECONDS, each
//! from its own forwarded address and visitor:
//! - MODE `accept`: every request for a number of its own (the site's limits raised out of the
//!   way): each is checked, stored with its limit counts, links and jobs in one atomic step, and
//!   its trigger sent to the local PBX by the node's worker meanwhile;
//! - MODE `flood`: every request for the same number (an abuser, or a form stuck submitting): the
//!   first is stored, every other joins it in the same atomic step (one call in all).
//!
//! Reported: requests per second answered 202, latency p50/p90/p99/max, and the triggers the PBX
//! received during the run and 2 s after. Afterwards the run's Redis keys are deleted.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{free_port, Server};

const ORIGIN: &str = "https://load.example";

fn start(store: &str, pbx: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let prefix = format!("bench-cb-{}", std::process::id());
    let store = common::store_tables(store, dir.path(), &prefix);
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
trusted_proxy_header = "X-Forwarded-For"
node_id = "{prefix}"
{store}
[[pbx]]
id = "bench"
secrets = ["bench-pbx-secret-0123456789"]
[[site]]
id = "load"
key = "load-site-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]
[site.callback]
language = "en"
operator = "+74951230099"
trigger = {{ kind = "generic", url = "{pbx}/trigger", secret = "bench-trigger-secret-0123" }}
limits = {{ per_site = ["100000000/1h"], per_ip = ["1000/1h"], per_visitor = ["1000/1h"] }}
"#
    );
    Server::spawn(dir, port, &config)
}

async fn run(store: String, mode: String, seconds: u64, concurrency: usize) {
    assert!(mode == "accept" || mode == "flood", "MODE: accept or flood");
    let triggers = Arc::new(AtomicU64::new(0));
    let server = start(&store, &common::counting_server(triggers.clone()).await);
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let url = format!("http://127.0.0.1:{}/v1/callback", server.port);
    let seq = Arc::new(AtomicU64::new(0));
    let flood = mode == "flood";
    let post = move || {
        let (client, url, seq) = (client.clone(), url.clone(), seq.clone());
        async move {
            let n = seq.fetch_add(1, Ordering::Relaxed);
            // Mobile numbers +7 916 000-00-00 and up: valid, one per request (accept).
            let number = if flood { "+79160000000".to_owned() } else { format!("+7916{:07}", n % 10_000_000) };
            let body = serde_json::json!({"site": "load-site-key", "number": number, "visitor": format!("v{n}"),
                "ga_client_id": format!("1000.{n}"), "page": "https://load.example/?utm_source=bench"});
            let started = Instant::now();
            let resp = client
                .post(&url)
                .header("origin", ORIGIN)
                .header("x-forwarded-for", format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255))
                .json(&body)
                .send()
                .await;
            (matches!(&resp, Ok(r) if r.status() == 202), started.elapsed())
        }
    };
    let m = common::closed_loop(concurrency, Duration::from_secs(seconds), post).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "store={store} mode={mode} concurrency={concurrency} seconds={seconds}: {} requests answered 202 ({:.0}/s), {} other answers; {}; triggers the PBX received during the run and 2 s after: {}",
        m.latencies_us.len(),
        m.rate(),
        m.errors,
        m.latency(),
        triggers.load(Ordering::Relaxed),
    );
    drop(server);
    if store == "cluster" {
        common::forget_keys(&format!("{{bench-cb-{}}}:*", std::process::id())).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let seconds: u64 = arg(2, "10").parse().expect("SECONDS");
    assert!(seconds <= 120, "bounded: at most 120 s");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(arg(0, "embedded"), arg(1, "accept"), seconds, arg(3, "32").parse().expect("CONCURRENCY")));
}
