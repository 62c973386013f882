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
//!
//! FORMAT (fifth argument, default `callpool`) is the vendor whose requests are posted, each as
//! that vendor sends and signs them: `callpool` (signed JSON), `zadarma` (a signed NOTIFY_START,
//! or NOTIFY_END with `completed`), `mango` (a signed events/call `Appeared`, or events/summary),
//! `sipuni` (event 1, or event 2, behind a token), `uis` (the start template, or finished).

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
[[pbx]]
id = "zadarma"
kind = "zadarma"
secret = "{SECRET}"
timezone = "UTC"
requests_per_second = 1000000
[[pbx]]
id = "mango"
kind = "mango"
api_key = "bench-key"
api_salt = "{SECRET}"
requests_per_second = 1000000
[[pbx]]
id = "sipuni"
kind = "sipuni"
token = "{SECRET}"
requests_per_second = 1000000
[[pbx]]
id = "uis"
kind = "uis"
token = "{SECRET}"
timezone = "UTC"
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

/// One call's request as `format`'s vendor sends it: (URL path and query, content type, body,
/// extra header).
fn vendor_request(
    format: &str,
    id: &str,
    called: &str,
    caller: &str,
    done: bool,
) -> (String, &'static str, String, Option<(&'static str, String)>) {
    let now = chrono::Utc::now();
    let digits = |n: &str| n.trim_start_matches('+').to_owned();
    let form = |pairs: &[(&str, String)]| form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    match format {
        "zadarma" => {
            let start = (now - chrono::Duration::seconds(1)).format("%Y-%m-%d %H:%M:%S").to_string();
            let mut pairs = vec![
                ("event", (if done { "NOTIFY_END" } else { "NOTIFY_START" }).to_owned()),
                ("call_start", start.clone()),
                ("pbx_call_id", id.to_owned()),
                ("caller_id", digits(caller)),
                ("called_did", digits(called)),
            ];
            if done {
                pairs.extend([("disposition", "answered".to_owned()), ("duration", "1".to_owned())]);
            }
            let sig = callpool::pbx::zadarma::sign(&format!("{}{}{start}", digits(caller), digits(called)), SECRET);
            (
                "/v1/pbx/calls/zadarma".into(),
                "application/x-www-form-urlencoded",
                form(&pairs),
                Some(("signature", sig)),
            )
        }
        "mango" => {
            let t = now.timestamp();
            let (path, json) = if done {
                (
                    "events/summary",
                    serde_json::json!({"entry_id": id, "call_direction": 1, "from": {"number": digits(caller)},
                    "to": {"extension": "1", "number": "74951230099"}, "line_number": digits(called), "create_time": t - 1,
                    "forward_time": t - 1, "talk_time": t - 1, "end_time": t, "entry_result": 1, "disconnect_reason": 1100}),
                )
            } else {
                (
                    "events/call",
                    serde_json::json!({"entry_id": id, "call_id": format!("{id}-1"), "timestamp": t, "seq": 1,
                    "call_state": "Appeared", "location": "ivr", "from": {"number": digits(caller)},
                    "to": {"number": "74951230099", "line_number": digits(called)}}),
                )
            };
            let json = json.to_string();
            let sign = callpool::pbx::mango::sign("bench-key", &json, SECRET);
            let body = form(&[("vpbx_api_key", "bench-key".into()), ("sign", sign), ("json", json)]);
            (format!("/v1/pbx/calls/mango/{path}"), "application/x-www-form-urlencoded", body, None)
        }
        "sipuni" => {
            let t = now.timestamp();
            let mut pairs = vec![
                ("event", (if done { "2" } else { "1" }).to_owned()),
                ("call_id", id.to_owned()),
                ("src_num", digits(caller)),
                ("src_type", "1".into()),
                ("dst_num", digits(called)),
                ("dst_type", "1".into()),
                ("pbxdstnum", digits(called)),
                ("timestamp", t.to_string()),
            ];
            if done {
                pairs.extend([
                    ("status", "ANSWER".into()),
                    ("call_start_timestamp", (t - 1).to_string()),
                    ("call_answer_timestamp", (t - 1).to_string()),
                ]);
            }
            (format!("/v1/pbx/calls/sipuni?token={SECRET}"), "application/x-www-form-urlencoded", form(&pairs), None)
        }
        "uis" => {
            let at = now.format("%Y-%m-%d %H:%M:%S%.3f").to_string();
            let mut v = serde_json::json!({"event": if done { "finished" } else { "start" }, "call_session_id": id,
                "virtual_phone_number": digits(called), "contact_phone_number": digits(caller), "notification_time": at});
            if done {
                v["direction"] = "in".into();
                v["start_time"] =
                    (now - chrono::Duration::seconds(1)).format("%Y-%m-%d %H:%M:%S%.3f").to_string().into();
                v["talk_time_duration"] = 1.into();
            }
            (format!("/v1/pbx/calls/uis?token={SECRET}"), "application/json", v.to_string(), None)
        }
        _ => {
            let status = if done { "completed" } else { "ringing" };
            let body = serde_json::json!({"call_id": id, "called": called, "caller": caller,
                "started_at": now.to_rfc3339(), "status": status, "duration": 60})
            .to_string();
            let sig = sign(now.timestamp(), body.as_bytes());
            ("/v1/pbx/calls?pbx=bench".into(), "application/json", body, Some(("callpool-signature", sig)))
        }
    }
}

async fn run(store: String, seconds: u64, concurrency: usize, status: String, format: String) {
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
    let base = format!("http://127.0.0.1:{port}");
    let seq = Arc::new(AtomicU64::new(0));
    let run_id = std::process::id();
    let done = status == "completed";
    let format = Arc::new(format);
    let post = {
        let (client, base, numbers, seq, format) =
            (client.clone(), base.clone(), numbers.clone(), seq.clone(), format.clone());
        move || {
            let (client, base, numbers, seq, format) =
                (client.clone(), base.clone(), numbers.clone(), seq.clone(), format.clone());
            async move {
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let called = &numbers[(n as usize * 7919) % numbers.len()];
                let caller = format!("+7916{:07}", (n * 104_729) % 10_000);
                let (path, content_type, body, header) =
                    vendor_request(&format, &format!("{run_id}-{n}"), called, &caller, done);
                let mut req = client.post(format!("{base}{path}")).header("content-type", content_type).body(body);
                if let Some((name, value)) = header {
                    req = req.header(name, value);
                }
                let started = Instant::now();
                let resp = req.send().await;
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
        "store={store} format={format} concurrency={concurrency} seconds={seconds} status={status}: {} webhooks answered 200 ({:.0}/s), {} errors; {}; GA4 events received during the run and 2 s after: {events}",
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
    rt.block_on(run(
        arg(0, "embedded"),
        seconds,
        arg(2, "32").parse().expect("CONCURRENCY"),
        arg(3, "completed"),
        arg(4, "callpool"),
    ));
}
