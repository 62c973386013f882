//! The service in-process on port 0: health, readiness, metrics, the OpenAPI document, the
//! admin API, and the reaper on one node and on two nodes sharing Redis.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use callpool::clock::{Clock, ManualClock};
use callpool_pool::{Grant, PoolError, SessionAttrs, SiteId, VisitorId};

fn shop() -> SiteId {
    SiteId::new("shop").unwrap()
}

fn visitor(i: u32) -> VisitorId {
    VisitorId::new(format!("visitor-{i}")).unwrap()
}

#[tokio::test]
async fn health_readiness_openapi_and_admin_auth() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(embedded_config(dir.path()), Arc::new(ManualClock::new(T0))).await;

    assert_eq!(node.get("/healthz").await.text().await.unwrap(), "ok");
    let ready: serde_json::Value = node.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready, serde_json::json!({"status": "ready", "store": "embedded", "broker": "in_process"}));

    let doc: serde_json::Value = node.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "an OpenAPI 3 document");
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/admin/pool",
        "/v1/admin/pool/{site}",
        "/v1/pbx/calls",
        "/v1/reports/{site}/calls",
        "/v1/reports/{site}/summary",
        "/v1/reports/{site}/yandex.csv",
        "/v1/reports/{site}",
        "/v1/reports/{site}/callbacks",
        "/v1/callback",
        "/v1/callback/{id}",
        "/v1/admin/status",
        "/v1/admin/config",
        "/v1/admin/reload",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }

    let refused = node.get("/v1/admin/pool").await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let wrong = reqwest::Client::new().get(node.url("/v1/admin/pool")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);

    let st: serde_json::Value = node.admin_get("/v1/admin/pool/shop").await.json().await.unwrap();
    assert_eq!(st["site"], "shop");
    assert_eq!(
        (st["working"].as_u64(), st["dedicated"].as_u64(), st["max_numbers"].as_u64()),
        (Some(1), Some(1), Some(3))
    );
    let missing = node.admin_get("/v1/admin/pool/nope").await;
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    node.stop().await;
}

#[tokio::test]
async fn the_reaper_ends_idle_leases_and_metrics_show_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let node = Node::start(embedded_config(dir.path()), clock.clone()).await;
    for v in 0..2 {
        let g = node.app.pool.acquire(&shop(), &visitor(v), &SessionAttrs::default(), clock.now()).await.unwrap();
        assert!(matches!(g, Grant::Leased { .. }));
    }
    let st: serde_json::Value = node.admin_get("/v1/admin/pool/shop").await.json().await.unwrap();
    assert_eq!((st["leased"].as_u64(), st["working"].as_u64()), (Some(2), Some(2)));
    assert_eq!(node.metric(r#"callpool_pool_numbers{site="shop",state="leased"}"#).await, 2.0);

    clock.advance(Duration::from_secs(31 * 60));
    eventually("the reaper ended both leases", || async {
        node.metric(r#"callpool_pool_leases_ended_total{reason="idle",site="shop"}"#).await == 2.0
    })
    .await;
    let st: serde_json::Value = node.admin_get("/v1/admin/pool/shop").await.json().await.unwrap();
    assert_eq!(st["leased"].as_u64(), Some(0));

    // A day later the shared number goes back to the inventory; the dedicated one stays.
    clock.advance(Duration::from_secs(86_400));
    eventually("the shared number went back", || async {
        node.metric(r#"callpool_pool_numbers_returned_total{site="shop"}"#).await == 1.0
    })
    .await;
    let st: serde_json::Value = node.admin_get("/v1/admin/pool/shop").await.json().await.unwrap();
    assert_eq!((st["working"].as_u64(), st["cooling"].as_u64()), (Some(1), Some(1)));
    node.stop().await;
}

#[tokio::test]
async fn two_nodes_on_one_redis_end_each_lease_exactly_once() {
    let prefix = unique("two-nodes");
    let clock = Arc::new(ManualClock::new(T0));
    let a = Node::start(redis_config(&redis_url(), &prefix), clock.clone()).await;
    let b = Node::start(redis_config(&redis_url(), &prefix), clock.clone()).await;
    let ready: serde_json::Value = a.get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["store"], "redis");

    let on_a = a.app.pool.acquire(&shop(), &visitor(1), &SessionAttrs::default(), clock.now()).await.unwrap();
    let on_b = b.app.pool.acquire(&shop(), &visitor(1), &SessionAttrs::default(), clock.now()).await.unwrap();
    match (on_a, on_b) {
        (Grant::Leased { lease: la, fresh: true }, Grant::Leased { lease: lb, fresh: false }) => {
            assert_eq!(la.id, lb.id, "a visitor's tabs on two nodes share one lease")
        }
        other => panic!("unexpected grants {other:?}"),
    }
    for v in 2..4 {
        b.app.pool.acquire(&shop(), &visitor(v), &SessionAttrs::default(), clock.now()).await.unwrap();
    }
    clock.advance(Duration::from_secs(31 * 60));
    let series = r#"callpool_pool_leases_ended_total{reason="idle",site="shop"}"#;
    eventually("the reapers ended all three leases", || async {
        a.metric(series).await + b.metric(series).await == 3.0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.metric(series).await + b.metric(series).await, 3.0, "no lease is ended twice");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn redis_going_away_makes_leases_unavailable_and_readyz_fail_until_it_returns() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let url = format!("redis://127.0.0.1:{port}/");
    let clock = Arc::new(ManualClock::new(T0));
    let node = Node::start(redis_config(&url, "outage"), clock.clone()).await;
    assert_eq!(node.get("/readyz").await.status(), 200);

    drop(redis);
    let r = node.app.pool.acquire(&shop(), &visitor(1), &SessionAttrs::default(), clock.now()).await;
    assert!(matches!(r, Err(PoolError::Unavailable(_))), "a lease answers Unavailable: {r:?}");
    let not_ready = node.get("/readyz").await;
    assert_eq!(not_ready.status(), 503);
    let body: serde_json::Value = not_ready.json().await.unwrap();
    assert_eq!(body["status"], "unavailable");
    let admin = node.admin_get("/v1/admin/pool").await;
    assert_eq!(admin.status(), 503);
    let body: serde_json::Value = admin.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    for internal in ["os error", "efused", &port.to_string(), "Redis", "redis"] {
        assert!(!message.contains(internal), "the store's own words stay in the log: {message}");
    }

    // Redis comes back empty (it had no persistence): the connection recovers without a
    // restart, and the reaper notices the lost configuration and writes it again.
    let _redis = OwnRedis::start(port);
    eventually("readyz recovers", || async { node.get("/readyz").await.status() == 200 }).await;
    eventually("the pool is configured again", || async {
        let r = node.admin_get("/v1/admin/pool/shop").await;
        r.status() == 200 && r.json::<serde_json::Value>().await.unwrap()["working"] == 1
    })
    .await;
    let g = node.app.pool.acquire(&shop(), &visitor(1), &SessionAttrs::default(), clock.now()).await.unwrap();
    assert!(matches!(g, Grant::Leased { .. }), "leases work again: {g:?}");
    node.stop().await;
}

/// Reads what the server sends on `stream` until it closes or `within` passes: `Some(bytes)`
/// when it closed, `None` when it was still open.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.ok().map(|()| got)
}

/// Slowloris and a full house: half-sent requests are closed after `header_timeout`; past
/// `max_connections` new connections wait instead of taking descriptors, while the monitoring
/// address still answers (with its token); and a stop with a half-sent request open ends within
/// the grace period.
#[tokio::test]
async fn half_sent_requests_cannot_starve_the_server() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ops = free_port();
    let token = "metrics-token-0123456789";
    let store = format!("[store]\nkind = \"embedded\"\ndata_dir = {:?}", dir.path().display().to_string());
    let text = config_text(&store).replace(
        "[server]",
        &format!(
            "[server]\nmax_connections = 16\nheader_timeout = \"1s\"\nshutdown_grace = \"1s\"\nops_listen = \"127.0.0.1:{ops}\"\nmetrics_token = \"{token}\""
        ),
    );
    let config = callpool::config::Config::parse(&text, "t.toml", &std::collections::HashMap::new()).unwrap();
    let node = Node::start(config, Arc::new(ManualClock::new(T0))).await;

    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = tokio::net::TcpStream::connect(node.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        held.push(s);
    }
    // The house is full: a 17th connection is not served while they are held...
    let mut late = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    assert_eq!(closed_within(&mut late, Duration::from_millis(300)).await, None, "it waits for a place");
    // ...but monitoring has connections of its own.
    let ops_url = |path: &str| format!("http://127.0.0.1:{ops}{path}");
    assert_eq!(reqwest::get(ops_url("/healthz")).await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(reqwest::get(ops_url("/metrics")).await.unwrap().status(), 401, "metrics need the token");
    let scraped = reqwest::Client::new().get(ops_url("/metrics")).bearer_auth(token).send().await.unwrap();
    assert!(scraped.text().await.unwrap().contains("callpool_pool_numbers"));
    assert_eq!(reqwest::get(ops_url("/v1/admin/pool")).await.unwrap().status(), 404, "monitoring only");

    // The half-sent heads time out and are closed; the waiting connection is then served.
    for s in &mut held {
        assert!(closed_within(s, Duration::from_secs(3)).await.is_some(), "a half-sent head is closed");
    }
    let answer = closed_within(&mut late, Duration::from_secs(3)).await.expect("served once a place is free");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));

    // A stop with a half-sent request open still ends, within the grace period.
    let mut open = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    open.write_all(b"POST /v1/callback HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    node.stop().await;
    assert!(started.elapsed() < Duration::from_secs(3), "within the grace period: {:?}", started.elapsed());
}
