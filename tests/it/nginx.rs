//! nginx in front of a cluster, as shipped: Debian's nginx runs `deploy/nginx/callpool.conf` (its
//! `listen` line moved to a free loopback port, the two nodes in the `callpool-nodes.conf` it
//! includes) in front of two callpool nodes sharing the test Redis and RabbitMQ. Tabs opened
//! through it are websockets spread over both nodes; one visitor's tabs on the two nodes show one
//! number; and the nodes count connection attempts per visitor address as nginx's
//! `X-Forwarded-For` names it (`trusted_proxies`), whatever the client wrote in that header; and
//! a rolling restart (a node stopped, its tabs told to reconnect) keeps the visitor's number.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool_pool::{SiteId, Ts, VisitorId};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/?utm_source=google";
const SITE_KEY: &str = "shop-public-key";

/// A node of the cluster behind nginx: Redis and RabbitMQ, nginx (on 127.0.0.1) trusted to name
/// the visitor's address, and two connection attempts per address and minute.
fn node_config(prefix: &str) -> Config {
    let text = format!(
        r#"
[server]
node_id = "{node}"
trusted_proxy_header = "X-Forwarded-For"
trusted_proxies = ["127.0.0.1/32"]
ws_connects_per_ip_per_minute = 2

[store]
kind = "redis"
redis_url = "{redis}"
redis_prefix = "{prefix}"

[bus]
kind = "rabbitmq"
amqp_url = "{amqp}"
{site}"#,
        node = unique("nginx-node"),
        redis = redis_url(),
        amqp = amqp_url(),
        site = shop_site(ORIGIN, "300ms", "5m", "30s"),
    );
    Config::parse(&text, "nginx-test.toml", &std::collections::HashMap::new()).expect("test config")
}

/// Debian's nginx on the shipped `deploy/nginx/callpool.conf`, its `listen` line moved to a free
/// loopback port and `nodes` in the `callpool-nodes.conf` it includes.
fn shipped_nginx(nodes: &[SocketAddr]) -> OwnNginx {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx/callpool.conf"))
        .expect("deploy/nginx/callpool.conf");
    assert_eq!(shipped.matches("\n    listen 80;\n").count(), 1, "the shipped file listens on port 80, once");
    OwnNginx::serve(|dir, port| {
        let conf = shipped.replace("\n    listen 80;\n", &format!("\n    listen 127.0.0.1:{port};\n"));
        std::fs::write(dir.join("callpool.conf"), conf).unwrap();
        // What an operator writes in /etc/nginx/callpool-nodes.conf: one line per node.
        let upstream: String = nodes.iter().map(|n| format!("server {n} max_fails=2 fail_timeout=10s;\n")).collect();
        std::fs::write(dir.join("callpool-nodes.conf"), upstream).unwrap();
        format!("include {}/callpool.conf;\n", dir.display())
    })
}

/// Opens a tab through `nginx` from the local address `from`, with the `X-Forwarded-For` header
/// the client itself sends; the handshake's status when the server refuses it.
async fn open_through(nginx: SocketAddr, from: [u8; 4], forwarded_for: &str) -> Result<WsTab, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Error;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let tcp = socket.connect(nginx).await.expect("connect to nginx");
    let mut req = format!("ws://{nginx}/v1/ws?site={SITE_KEY}").into_client_request().unwrap();
    req.headers_mut().insert("origin", ORIGIN.parse().unwrap());
    req.headers_mut().insert("x-forwarded-for", forwarded_for.parse().unwrap());
    match tokio_tungstenite::client_async(req, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await {
        Ok((stream, _)) => Ok(WsTab { stream }),
        Err(Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("the websocket handshake through nginx failed: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_config_spreads_a_visitors_tabs_over_two_nodes_with_one_number() {
    std::env::var("CALLPOOL_TEST_RABBIT_NODE").expect(
        "CALLPOOL_TEST_RABBIT_NODE names the test broker: run ./deploy/test.sh, which starts RabbitMQ and sets it",
    );
    let prefix = unique("nginx");
    let one = Node::start_real(node_config(&prefix)).await;
    let two = Node::start_real(node_config(&prefix)).await;
    eventually("both nodes are ready (Redis and RabbitMQ)", || async {
        one.get("/readyz").await.status() == 200 && two.get("/readyz").await.status() == 200
    })
    .await;
    let nginx = shipped_nginx(&[one.addr, two.addr]);

    // Plain requests pass; the metrics stay per node, not behind the balancer.
    let ready = reqwest::get(nginx.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", nginx.error_log());
    assert_eq!(reqwest::get(nginx.url("/snippet.js")).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(nginx.url("/metrics")).await.unwrap().status(), 404);

    // One visitor, two tabs through nginx: upgraded to websockets, one on each node (round robin).
    let visitor = "nginx-visitor".to_owned();
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = open_through(nginx.addr(), [127, 0, 0, 2], "203.0.113.50").await.expect("upgraded");
        tab.hello(&visitor, PAGE).await;
        tabs.push(tab);
    }
    eventually("a tab on each node", || async {
        one.metric("callpool_ws_tabs").await == 1.0 && two.metric("callpool_ws_tabs").await == 1.0
    })
    .await;
    let first = tabs[0].until_kind("tracking").await;
    let second = tabs[1].until_kind("tracking").await;
    assert_eq!(first, second, "the visitor's tabs on the two nodes show one number");
    let (site, held_by) = (SiteId::new("shop").unwrap(), VisitorId::new(&visitor).unwrap());
    for node in [&one, &two] {
        let lease = node.app.pool.current(&site, &held_by, Ts::now()).await.unwrap();
        assert_eq!(lease.map(|l| l.number.to_string()), Some(first.clone()), "one lease in the shared store");
    }

    // The nodes count attempts per visitor address, as nginx names it: a client on 127.0.0.3
    // writing a new X-Forwarded-For each time is still 127.0.0.3, two attempts a minute on each
    // node; five attempts alternate over the nodes (3 and 2), so the fifth is the one refused.
    let mut answers = Vec::new();
    for i in 0..5 {
        let spoofed = format!("10.66.0.{i}");
        answers.push(open_through(nginx.addr(), [127, 0, 0, 3], &spoofed).await.map(|_| 101));
    }
    assert_eq!(answers, [Ok(101), Ok(101), Ok(101), Ok(101), Err(429)], "{}", nginx.error_log());
    let refused = one.metric("callpool_ws_refused_total{reason=\"rate_limited\"}").await
        + two.metric("callpool_ws_refused_total{reason=\"rate_limited\"}").await;
    assert_eq!(refused, 1.0);
    // Another address still gets in: the limit is per visitor, not per nginx.
    assert!(open_through(nginx.addr(), [127, 0, 0, 4], "10.66.0.9").await.is_ok(), "another address connects");

    // The visitor's first tab closes; the one on the other node keeps the number.
    let mut kept = tabs.pop().unwrap();
    drop(tabs);
    kept.send_text(r#"{"type":"activity"}"#).await;
    while let Ok(heard) = tokio::time::timeout(Duration::from_millis(500), kept.next()).await {
        match heard {
            Heard::Json(v) if v["type"] == "number" => assert_eq!(v["number"], first.as_str(), "{v}"),
            Heard::Json(_) => {}
            Heard::Closed(code) => panic!("the tab closed: {code:?}"),
        }
    }
    // A rolling restart: the node that holds the tab stops; it tells the tab to reconnect (1001,
    // "going away", which the snippet answers by connecting again), and the tab opened again
    // through nginx reaches the other node with the visitor's number.
    eventually("only the kept tab is open", || async {
        one.metric("callpool_ws_tabs").await + two.metric("callpool_ws_tabs").await == 1.0
    })
    .await;
    let (leaving, staying) = if one.metric("callpool_ws_tabs").await == 1.0 { (one, two) } else { (two, one) };
    let stopped = tokio::spawn(leaving.stop());
    let code = loop {
        match kept.next().await {
            Heard::Closed(code) => break code,
            Heard::Json(_) => {}
        }
    };
    assert_eq!(code, Some(1001), "the stopping node tells its tabs to reconnect");
    stopped.await.unwrap();
    let mut again = open_through(nginx.addr(), [127, 0, 0, 2], "203.0.113.50").await.expect("upgraded");
    again.hello(&visitor, PAGE).await;
    assert_eq!(again.until_kind("tracking").await, first, "the visitor keeps the number on the other node");
    assert_eq!(staying.metric("callpool_ws_tabs").await, 1.0, "{}", nginx.error_log());
    drop(again);
    drop(nginx);
    staying.stop().await;
}
