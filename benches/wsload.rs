//! Websocket load generator (run through `benches/ws.sh`; figures in BENCHMARKS.md). Loopback only,
//! bounded in count and time, stops by itself.
//!
//! - `idle N`: starts one callpool node (release build, embedded store, in-process bus), opens N
//!   tabs (distinct visitors whose delay never runs out) from worker processes of at most 5,000
//!   connections each, each worker on its own 127.0.0.x source address, and reports the node's
//!   resident memory per tab and the rate at which tabs were accepted (upgrade + hello answered).
//! - `swaps RATE SECONDS NODES`: starts NODES callpool nodes (1: embedded + in-process bus;
//!   2: Redis + RabbitMQ from CALLPOOL_BENCH_REDIS_URL / CALLPOOL_BENCH_AMQP_URL), then for SECONDS
//!   starts RATE visitors per second, each with one tab on every node. `delay_to_show` is
//!   SECONDS + 10 s, so every tab is open before the first swap, and the swaps then come at RATE
//!   per second with nothing else going on. The delivery latency of a swap is when a tab received
//!   the tracking number minus (its visitor's first hello + the delay): the delay timer, the lease
//!   in the store, the bus, and the websocket write (an upper bound: it includes the time the
//!   server took to read the hello).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use common::{free_port, Server};

const ORIGIN: &str = "https://load.example";
const PER_WORKER: usize = 5_000;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Server {
    fn start(store: &str, bus: &str, delay: &str, numbers: usize, node: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let numbers: Vec<String> = (0..numbers).map(|i| format!("\"+74951{:06}\"", 100_000 + i)).collect();
        let store = store.replace("{dir}", &dir.path().join("data").display().to_string());
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
ws_connects_per_ip_per_minute = 1000000
node_id = "{node}"
{store}
{bus}
[pool]
reaper_interval = "200ms"
[[site]]
id = "load"
key = "load-site-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = [{}]
delay_to_show = "{delay}"
release_grace = "0s"
max_hold = "2h"
"#,
            numbers.join(",")
        );
        Server::spawn(dir, port, &config)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens a tab from `src` and says hello as `visitor`; returns it once the first number arrived.
async fn open_tab(src: IpAddr, port: u16, visitor: &str) -> Result<Ws, String> {
    open_tab_timed(src, port, visitor).await.map(|(ws, _)| ws)
}

/// [`open_tab`], also returning when the hello was sent.
async fn open_tab_timed(src: IpAddr, port: u16, visitor: &str) -> Result<(Ws, Instant), String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.bind(SocketAddr::new(src, 0)).map_err(|e| e.to_string())?;
    let stream = socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.map_err(|e| e.to_string())?;
    let mut req = format!("ws://127.0.0.1:{port}/v1/ws?site=load-site-key").into_client_request().unwrap();
    req.headers_mut().insert("origin", ORIGIN.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.map_err(|e| e.to_string())?;
    let hello = format!(r#"{{"type":"hello","v":1,"visitor":"{visitor}","tab":"t","page":"https://load.example/"}}"#);
    let sent = Instant::now();
    ws.send(Message::text(hello)).await.map_err(|e| e.to_string())?;
    // `site`, then the first `number`.
    for _ in 0..2 {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => {}
            other => return Err(format!("no answer to hello: {other:?}")),
        }
    }
    Ok((ws, sent))
}

/// Worker process: opens `count` idle tabs from `src`, prints "ready", holds them until stdin closes.
async fn worker(port: u16, src: IpAddr, first: usize, count: usize) {
    let mut tabs = Vec::with_capacity(count);
    let mut pending = futures_util::stream::iter(
        (first..first + count).map(|i| async move { open_tab(src, port, &format!("idle-{i}")).await }),
    )
    .buffer_unordered(256);
    while let Some(tab) = pending.next().await {
        tabs.push(tab.expect("tab opens"));
    }
    println!("ready {}", tabs.len());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(tabs);
}

fn idle(n: usize) {
    let server = Server::start("[store]\nkind = \"embedded\"\ndata_dir = \"{dir}\"", "", "1h", 10, "idle");
    let pid = server.child.id();
    std::thread::sleep(Duration::from_secs(1));
    let before = rss_kib(pid);
    let started = Instant::now();
    let mut workers = Vec::new();
    for (k, first) in (0..n).step_by(PER_WORKER).enumerate() {
        let count = PER_WORKER.min(n - first);
        let src = format!("127.0.0.{}", 2 + k);
        workers.push(
            Command::new(std::env::current_exe().unwrap())
                .args(["worker", &server.port.to_string(), &src, &first.to_string(), &count.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
    }
    for w in &mut workers {
        let mut line = String::new();
        BufReader::new(w.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "worker failed: {line}");
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!("idle tabs: {n} on one node (in-process bus, embedded store)");
    println!("  node RSS before: {before} KiB, with {n} tabs: {after} KiB -> {per:.0} bytes per idle tab");
    println!(
        "  accepted in {:.2} s -> {:.0} tabs/s (upgrade + hello answered)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );
    for mut w in workers {
        drop(w.stdin.take());
        let _ = w.wait();
    }
}

async fn swaps(rate: usize, seconds: usize, nodes: usize) {
    let visitors = rate * seconds;
    let delay = Duration::from_secs(seconds as u64 + 10);
    let delay_text = format!("{}s", delay.as_secs());
    let numbers = visitors + 100;
    let servers: Vec<Server> = if nodes == 1 {
        vec![Server::start("[store]\nkind = \"embedded\"\ndata_dir = \"{dir}\"", "", &delay_text, numbers, "swap-1")]
    } else {
        let redis = std::env::var("CALLPOOL_BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
        let amqp = std::env::var("CALLPOOL_BENCH_AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".into());
        let prefix = format!("bench-{}", std::process::id());
        let store = format!("[store]\nkind = \"redis\"\nredis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"");
        let bus = format!("[bus]\nkind = \"rabbitmq\"\namqp_url = \"{amqp}\"");
        (0..nodes)
            .map(|i| Server::start(&store, &bus, &delay_text, numbers, &format!("swap-{i}-{}", std::process::id())))
            .collect()
    };
    // Let the nodes connect to their bus.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ports: Arc<Vec<u16>> = Arc::new(servers.iter().map(|s| s.port).collect());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    for v in 0..visitors {
        tokio::time::sleep_until(start + gap * v as u32).await;
        let (ports, latencies, failures) = (ports.clone(), latencies.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let visitor = format!("swap-{v}");
            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 2 + (v % 200) as u8));
            let mut first_hello = None;
            let mut tabs = Vec::new();
            for &port in ports.iter() {
                match open_tab_timed(src, port, &visitor).await {
                    Ok((t, sent)) => {
                        first_hello.get_or_insert(sent);
                        tabs.push(t)
                    }
                    Err(_) => {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return tabs;
                    }
                }
            }
            let due = first_hello.expect("a tab") + delay;
            for tab in &mut tabs {
                loop {
                    match tokio::time::timeout(delay + Duration::from_secs(20), tab.next()).await {
                        Ok(Some(Ok(Message::Text(t)))) if t.contains("\"tracking\"") => {
                            latencies.lock().unwrap().push(Instant::now().saturating_duration_since(due));
                            break;
                        }
                        Ok(Some(Ok(_))) => continue,
                        _ => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            break;
                        }
                    }
                }
            }
            tabs
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(tabs) = t.await {
            open.push(tabs);
        }
    }
    drop(open);
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let pct =
        |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or_default();
    let bus = if nodes == 1 { "in-process bus, embedded store" } else { "RabbitMQ bus, Redis store" };
    println!("swaps: {rate}/s for {seconds} s, {nodes} node(s), {bus}, one tab per node per visitor");
    println!(
        "  {} tabs got their number; {} failures; delivery after the delay: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.len(),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        l.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    drop(servers);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_owned());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    match arg(0, "").as_str() {
        "worker" => rt.block_on(worker(
            arg(1, "").parse().unwrap(),
            arg(2, "").parse().unwrap(),
            arg(3, "0").parse().unwrap(),
            arg(4, "0").parse().unwrap(),
        )),
        "idle" => idle(arg(1, "19000").parse().unwrap()),
        "swaps" => rt.block_on(swaps(
            arg(1, "1000").parse().unwrap(),
            arg(2, "10").parse().unwrap(),
            arg(3, "2").parse().unwrap(),
        )),
        _ => eprintln!("usage: wsload idle N | swaps RATE SECONDS NODES (see benches/ws.sh)"),
    }
}
