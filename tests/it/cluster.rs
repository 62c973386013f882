//! Two callpool nodes sharing real Redis and real RabbitMQ: a visitor with a tab on each node sees
//! the same number in both, keeps it while a tab stays open on either node, and both tabs still
//! converge on `default_after` when RabbitMQ restarts in the middle. And the fault test: a burst
//! of calls to two node processes while one is killed, RabbitMQ restarts, Redis (AOF) restarts
//! and GA4 fails for a while. The tests that restart the shared broker take turns.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool_pool::{SiteId, Ts, VisitorId};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/?utm_source=yandex";

fn cluster_config(prefix: &str, node: &str) -> Config {
    let text = format!(
        r#"
[server]
node_id = "{node}"

[store]
kind = "redis"
redis_url = "{redis}"
redis_prefix = "{prefix}"

[bus]
kind = "rabbitmq"
amqp_url = "{amqp}"

[[pbx]]
id = "office"
secrets = ["office-secret-0123456789"]

{site}

[site.callback]
language = "en"
operator = "+74951230099"
min_time_on_site = "0s"
retry_base = "10s"
# Nobody listens there: the trigger fails and is retried, which the tabs are told.
trigger = {{ kind = "generic", url = "http://127.0.0.1:9/trigger", secret = "trigger-secret-0123456789" }}
"#,
        redis = redis_url(),
        amqp = amqp_url(),
        site = shop_site(ORIGIN, "300ms", "4s", "500ms"),
    );
    Config::parse(&text, "cluster-test.toml", &std::collections::HashMap::new()).expect("test config")
}

fn rabbitmqctl(cmd: &str) {
    let node = std::env::var("CALLPOOL_TEST_RABBIT_NODE")
        .expect("CALLPOOL_TEST_RABBIT_NODE names the test broker (./deploy/test.sh sets it)");
    let status = Command::new("rabbitmqctl").args(["-q", "-n", &node, cmd]).status().expect("rabbitmqctl runs");
    assert!(status.success(), "rabbitmqctl {cmd} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_on_two_nodes_share_a_number_and_converge_after_a_rabbitmq_restart() {
    let _broker = BROKER.lock().await;
    // Fail at once, with the reason, rather than wait on a broker that is not there.
    std::env::var("CALLPOOL_TEST_RABBIT_NODE").expect(
        "CALLPOOL_TEST_RABBIT_NODE names the test broker: run ./deploy/test.sh, which starts RabbitMQ and sets it",
    );
    let prefix = unique("cluster");
    let one = Node::start_real(cluster_config(&prefix, &unique("one"))).await;
    let two = Node::start_real(cluster_config(&prefix, &unique("two"))).await;
    eventually("both nodes joined RabbitMQ", || async {
        let q = Command::new("rabbitmqctl")
            .args(["-q", "-n", &std::env::var("CALLPOOL_TEST_RABBIT_NODE").unwrap_or_default(), "list_queues", "name"])
            .output();
        q.map(|o| String::from_utf8_lossy(&o.stdout).matches("callpool.node.").count() >= 2).unwrap_or(false)
    })
    .await;

    let mut a = WsTab::open(one.addr, "shop-public-key", ORIGIN).await;
    a.hello("cluster-visitor", PAGE).await;
    let mut b = WsTab::open(two.addr, "shop-public-key", ORIGIN).await;
    b.hello("cluster-visitor", PAGE).await;
    let on_a = a.until_kind("tracking").await;
    let on_b = b.until_kind("tracking").await;
    assert_eq!(on_a, on_b, "one lease, one number, on both nodes");

    // The tab on node one closes; the one on node two keeps the number past the grace.
    drop(a);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (site, visitor) = (SiteId::new("shop").unwrap(), VisitorId::new("cluster-visitor").unwrap());
    let lease = two.app.pool.current(&site, &visitor, Ts::now()).await.unwrap();
    assert_eq!(lease.map(|l| l.number.to_string()), Some(on_a.clone()), "a tab open on another node keeps the number");

    // A new tab on node one shows it at once.
    let mut a = WsTab::open(one.addr, "shop-public-key", ORIGIN).await;
    a.hello("cluster-visitor", PAGE).await;
    assert_eq!(a.until_kind("tracking").await, on_a);

    // RabbitMQ goes away while the lease runs idle, then comes back: both tabs converge.
    assert_eq!(one.get("/readyz").await.status(), 200);
    rabbitmqctl("stop_app");
    eventually("a node without RabbitMQ is not ready", || async { one.get("/readyz").await.status() == 503 }).await;
    let ready: serde_json::Value = one.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["broker"], "unavailable");
    tokio::time::sleep(Duration::from_secs(4)).await;
    rabbitmqctl("start_app");
    assert_eq!(a.until_kind("default_after").await, "+74951234568");
    assert_eq!(b.until_kind("default_after").await, "+74951234568");
    eventually("both nodes reconnected", || async {
        one.metric("callpool_bus_reconnects_total").await >= 1.0
            && two.metric("callpool_bus_reconnects_total").await >= 1.0
    })
    .await;
    eventually("ready again", || async { one.get("/readyz").await.status() == 200 }).await;
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_requested_through_one_node_is_shown_in_the_visitors_tab_on_another() {
    let _broker = BROKER.lock().await;
    std::env::var("CALLPOOL_TEST_RABBIT_NODE").expect(
        "CALLPOOL_TEST_RABBIT_NODE names the test broker: run ./deploy/test.sh, which starts RabbitMQ and sets it",
    );
    let prefix = unique("cluster-cb");
    let one = Node::start_real(cluster_config(&prefix, &unique("one"))).await;
    let two = Node::start_real(cluster_config(&prefix, &unique("two"))).await;
    eventually("both nodes are ready", || async {
        one.get("/readyz").await.status() == 200 && two.get("/readyz").await.status() == 200
    })
    .await;
    let mut tab = WsTab::open(two.addr, "shop-public-key", ORIGIN).await;
    tab.hello("cb-visitor", PAGE).await;
    tab.number().await;
    // The site's own form posts to node one.
    let resp = reqwest::Client::new()
        .post(one.url("/v1/callback"))
        .header("origin", ORIGIN)
        .json(&serde_json::json!({"site": "shop-public-key", "number": "+79161234567", "visitor": "cb-visitor"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let mut seen = Vec::new();
    while !seen.contains(&"retrying".to_owned()) {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback" => {
                assert_eq!(v["id"], id.as_str());
                seen.push(v["status"].as_str().unwrap().to_owned());
            }
            Heard::Json(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["accepted", "retrying"], "the tab on node two hears both");
    one.stop().await;
    two.stop().await;
}

/// The tests that use the shared broker run one at a time: one restarts it.
pub static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A callpool node in a process of its own (so that it can be killed), on `port`.
struct NodeProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl NodeProcess {
    fn start(config: &std::path::Path, log: &std::path::Path, port: u16) -> NodeProcess {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_callpool"))
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        NodeProcess { child, addr: ([127, 0, 0, 1], port).into() }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn ready(&self) {
        eventually("the node is ready", || async {
            reqwest::get(self.url("/readyz")).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// SIGKILL: no goodbye to the tabs, the broker or the store.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tab of visitor `i` (GA client id `10000000i.1700000000`), its tracking number.
async fn visitor_tab(addr: std::net::SocketAddr, i: usize) -> (WsTab, String) {
    let mut tab = WsTab::open(addr, "shop-public-key", ORIGIN).await;
    let client = format!("10000000{i}.1700000000");
    let hello = serde_json::json!({"type": "hello", "v": 1, "visitor": client, "ga_client_id": client,
        "tab": unique("tab"), "page": PAGE});
    tab.send_text(&hello.to_string()).await;
    let number = tab.until_kind("tracking").await;
    (tab, number)
}

/// A burst of calls to two nodes while one is killed, RabbitMQ restarts, Redis (with AOF)
/// restarts twice — once while GA4 is taking events — and GA4 answers 503 for a while: every
/// call is stored once with its visitor, GA4 gets exactly one event per call, and every
/// visitor's tabs are back on the visitor's number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_calls_survives_a_killed_node_and_restarts_of_rabbitmq_and_redis() {
    use std::sync::atomic::Ordering;
    let _broker = BROKER.lock().await;
    let redis_port = free_port();
    let mut redis = OwnRedis::start_with(redis_port, &["--appendonly", "yes", "--appendfsync", "always"]);
    let fake = FakeAnalytics::default();
    let fake_url = fake.start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("faults");
    let ports = [free_port(), free_port()];
    let configs: Vec<std::path::PathBuf> = ["a", "b"]
        .iter()
        .zip(ports)
        .map(|(name, port)| {
            let path = dir.path().join(format!("{name}.toml"));
            let text = format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
node_id = "{node}"
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "redis"
redis_url = "redis://127.0.0.1:{redis_port}/"
redis_prefix = "{prefix}"

[bus]
kind = "rabbitmq"
amqp_url = "{amqp}"

[analytics]
ga4_base_url = "{fake_url}"
retry_base = "200ms"
request_timeout = "2s"

[[pbx]]
id = "office"
secrets = ["{FAULT_PBX_SECRET}"]

[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001", "+74951230002", "+74951230003", "+74951230004", "+74951230005", "+74951230006", "+74951230007", "+74951230008"]
max_numbers = 8
delay_to_show = "200ms"
reclaim_after_idle = "30m"
release_grace = "30m"
report_token = "{FAULT_REPORT_TOKEN}"

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"
"#,
                node = unique(name),
                amqp = amqp_url(),
            );
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let log = |name: &str| dir.path().join(format!("{name}.log"));
    let mut a = NodeProcess::start(&configs[0], &log("a"), ports[0]);
    let b = NodeProcess::start(&configs[1], &log("b"), ports[1]);
    a.ready().await;
    b.ready().await;

    // Six visitors, tabs on both nodes, each with a number of its own.
    const VISITORS: usize = 6;
    const CALLS_EACH: usize = 3;
    let mut tabs = Vec::new();
    let mut numbers = Vec::new();
    for i in 0..VISITORS {
        let (tab, number) = visitor_tab(if i % 2 == 0 { a.addr } else { b.addr }, i).await;
        tabs.push(tab);
        numbers.push(number);
    }
    let mut distinct = numbers.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), VISITORS, "a number each: {numbers:?}");

    // The PBX posts every call, to either node, retrying (as PBXs do) until one takes it.
    fake.down.store(true, Ordering::SeqCst);
    let addrs = [a.addr, b.addr];
    let calls: Vec<(String, String)> =
        (0..VISITORS * CALLS_EACH).map(|n| (format!("f-{n}"), numbers[n % VISITORS].clone())).collect();
    let pbx = {
        let calls = calls.clone();
        tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            for (n, (id, number)) in calls.iter().enumerate() {
                let body = serde_json::json!({"call_id": id, "called": number, "caller": format!("+7916123{n:04}"),
                    "started_at": chrono::Utc::now().to_rfc3339(), "status": "completed", "duration": 30})
                .to_string();
                let mut tries = 0;
                loop {
                    let node = addrs[(n + tries) % 2];
                    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
                    let sig = callpool::pbx::signature::sign(FAULT_PBX_SECRET, t as i64, body.as_bytes());
                    let sent = http
                        .post(format!("http://{node}/v1/pbx/calls?pbx=office"))
                        .header("content-type", "application/json")
                        .header("callpool-signature", sig)
                        .body(body.clone())
                        .send()
                        .await;
                    if sent.is_ok_and(|r| r.status() == 200) {
                        break;
                    }
                    tries += 1;
                    assert!(tries < 600, "call {id} was never taken");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        })
    };

    // The faults, one after another, while the calls come in and GA4 answers 503.
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    rabbitmqctl("stop_app");
    tokio::time::sleep(Duration::from_secs(1)).await;
    // RabbitMQ comes back while Redis is down: the nodes resync their tabs from a store that
    // does not answer, and the tabs keep their numbers.
    let reconnects = || async {
        reqwest::get(b.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("callpool_bus_reconnects_total "))
            .find_map(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = reconnects().await;
    let (_, started) =
        tokio::join!(redis.restart(Duration::from_secs(4)), tokio::task::spawn_blocking(|| rabbitmqctl("start_app")));
    started.unwrap();
    assert!(reconnects().await > before, "node b reconnected to RabbitMQ while Redis was down");
    let a = NodeProcess::start(&configs[0], &log("a"), ports[0]);
    a.ready().await;
    pbx.await.expect("every call was taken");

    // GA4 comes back, answering slowly; Redis restarts while events are on their way.
    fake.delay_ms.store(300, Ordering::SeqCst);
    fake.down.store(false, Ordering::SeqCst);
    eventually("GA4 takes events again", || async { !fake.ga4_accepted().is_empty() }).await;
    redis.restart(Duration::from_millis(700)).await;
    fake.delay_ms.store(0, Ordering::SeqCst);

    // Every call once, with its visitor, and its event sent. (A claim a killed node held
    // returns to the queue after its hold, about two minutes here: allow for it.)
    let report = || async {
        let resp = reqwest::Client::new()
            .get(b.url("/v1/reports/shop/calls"))
            .bearer_auth(FAULT_REPORT_TOKEN)
            .send()
            .await
            .ok()?;
        let v: serde_json::Value = resp.json().await.ok()?;
        v["calls"].as_array().cloned()
    };
    let mut rows = Vec::new();
    for _ in 0..900 {
        rows = report().await.unwrap_or_default();
        if rows.len() == calls.len() && rows.iter().all(|c| c["ga4"] == "sent") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rows.len(), calls.len(), "every call stored once: {rows:#?}");
    for (n, (id, number)) in calls.iter().enumerate() {
        let row = rows.iter().find(|r| r["call_id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not stored"));
        let client = format!("10000000{}.1700000000", n % VISITORS);
        assert_eq!(
            (row["called"].as_str(), row["match"].as_str(), row["visitor"].as_str(), row["ga4"].as_str()),
            (Some(number.as_str()), Some("active"), Some(client.as_str()), Some("sent")),
            "{row:#}"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut events: Vec<String> = fake
        .ga4_accepted()
        .iter()
        .map(|e| e["events"][0]["params"]["call_id"].as_str().unwrap_or("").to_owned())
        .collect();
    events.sort();
    let sent = events.len();
    events.dedup();
    assert_eq!((sent, events.len()), (calls.len(), calls.len()), "one GA4 event per call: {events:?}");
    assert!(fake.violations().is_empty(), "{:?}", fake.violations());

    // Every visitor's tabs: a tab that survived still shows its number; a tab the killed node
    // dropped comes back (on either node) to the same number.
    for (i, tab) in tabs.iter_mut().enumerate() {
        if i % 2 == 1 {
            tab.send_text(r#"{"type":"activity"}"#).await;
        }
        let (_again, number) = visitor_tab(if i % 2 == 0 { a.addr } else { b.addr }, i).await;
        assert_eq!(number, numbers[i], "visitor {i} is back on its number");
    }
    for (i, tab) in tabs.iter_mut().enumerate().filter(|(i, _)| i % 2 == 1) {
        // The tab on the surviving node: whatever it was told last names the same number.
        let mut last = None;
        let mut all = Vec::new();
        while let Ok(heard) = tokio::time::timeout(Duration::from_millis(300), tab.next()).await {
            all.push(format!("{heard:?}"));
            match heard {
                Heard::Json(v) if v["type"] == "number" => last = v["number"].as_str().map(str::to_owned),
                Heard::Json(_) => {}
                Heard::Closed(code) => panic!("visitor {i}'s tab on the surviving node closed: {code:?}"),
            }
        }
        assert!(last.as_deref().is_none_or(|n| n == numbers[i]), "visitor {i}'s tab shows {last:?}: {all:#?}");
    }
}

const FAULT_PBX_SECRET: &str = "office-secret-0123456789";
const FAULT_REPORT_TOKEN: &str = "shop-report-token-0123";
