//! Two callpool nodes sharing real Redis and real RabbitMQ: a visitor with a tab on each node sees
//! the same number in both, keeps it while a tab stays open on either node, and both tabs still
//! converge on `default_after` when RabbitMQ restarts in the middle.

use std::process::Command;
use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool_pool::{SiteId, Ts, VisitorId};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/?utm_source=yandex";

fn amqp_url() -> String {
    std::env::var("CALLPOOL_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

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

/// The next number message whose kind is `kind`, skipping repeats of others.
async fn until_kind(tab: &mut WsTab, kind: &str) -> String {
    loop {
        let (number, k) = tab.number().await;
        if k == kind {
            return number;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tabs_on_two_nodes_share_a_number_and_converge_after_a_rabbitmq_restart() {
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
    let on_a = until_kind(&mut a, "tracking").await;
    let on_b = until_kind(&mut b, "tracking").await;
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
    assert_eq!(until_kind(&mut a, "tracking").await, on_a);

    // RabbitMQ goes away while the lease runs idle, then comes back: both tabs converge.
    assert_eq!(one.get("/readyz").await.status(), 200);
    rabbitmqctl("stop_app");
    eventually("a node without RabbitMQ is not ready", || async { one.get("/readyz").await.status() == 503 }).await;
    let ready: serde_json::Value = one.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["broker"], "unavailable");
    tokio::time::sleep(Duration::from_secs(4)).await;
    rabbitmqctl("start_app");
    assert_eq!(until_kind(&mut a, "default_after").await, "+74951234568");
    assert_eq!(until_kind(&mut b, "default_after").await, "+74951234568");
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
