//! The websocket hub on one node, driven by real websocket clients: the visitor timeline in
//! several tabs, filters, the session stored with the lease, and every refusal.

use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool_pool::{PhoneNumber, SiteId, VisitorId};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/?utm_source=google&utm_medium=cpc&gclid=g1";

/// One site with a short timeline: the number after 300 ms, taken back after 1.5 s idle.
fn hub_config(dir: &std::path::Path, extra_site: &str, extra_server: &str) -> Config {
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
{extra_server}

[store]
kind = "embedded"
data_dir = {dir:?}

{site}
{extra_site}
"#,
        dir = dir.join("data").display().to_string(),
        site = shop_site(ORIGIN, "300ms", "1500ms", "200ms"),
    );
    Config::parse(&text, "hub-test.toml", &std::collections::HashMap::new()).expect("test config")
}

async fn node(extra_site: &str, extra_server: &str) -> (Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Node::start_real(hub_config(dir.path(), extra_site, extra_server)).await, dir)
}

#[tokio::test]
async fn two_tabs_see_the_site_number_then_the_tracking_number_then_default_after() {
    let (node, _dir) = node("", "").await;
    let mut a = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    a.hello("111.222", PAGE).await;
    match a.next().await {
        Heard::Json(v) => {
            assert_eq!(v["type"], "site");
            assert_eq!(v["numbers"][0], serde_json::json!({"e164": "+74951234567", "national": "4951234567"}));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(a.number().await, ("+74951234567".into(), "default_before".into()));
    let mut b = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    b.hello("111.222", PAGE).await;
    assert_eq!(b.number().await.1, "default_before", "the second tab joins the same visit");

    // The delay counts from the first page view; both tabs swap together.
    let (number_a, kind_a) = a.number().await;
    let (number_b, kind_b) = b.number().await;
    assert_eq!((kind_a.as_str(), kind_b.as_str()), ("tracking", "tracking"));
    assert_eq!(number_a, number_b);
    assert!(["+74951230001", "+74951230002"].contains(&number_a.as_str()));

    // A third tab opened now shows the tracking number at once.
    let mut c = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    c.hello("111.222", PAGE).await;
    assert_eq!(c.number().await, (number_a.clone(), "tracking".into()));

    // The session travels with the lease.
    let n = PhoneNumber::parse(&number_a).unwrap();
    let lease = node.app.pool.holder_at(&n, callpool_pool::Ts::now()).await.unwrap().expect("leased");
    assert_eq!(lease.visitor, VisitorId::new("111.222").unwrap());
    assert_eq!(lease.attrs.utm_source.as_deref(), Some("google"));
    assert_eq!(lease.attrs.gclid.as_deref(), Some("g1"));
    assert_eq!(lease.attrs.landing_page.as_deref(), Some(PAGE));

    // Idle: every tab gets default_after.
    for tab in [&mut a, &mut b, &mut c] {
        assert_eq!(tab.number().await, ("+74951234568".into(), "default_after".into()));
    }
    assert!(node.metric(r#"callpool_hub_swaps_total{kind="default_after"}"#).await >= 1.0);
    node.stop().await;
}

#[tokio::test]
async fn activity_keeps_the_number_and_a_reconnect_gets_it_back() {
    let (node, _dir) = node("", "").await;
    let mut a = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    a.hello("v-active", PAGE).await;
    assert_eq!(a.number().await.1, "default_before");
    let (number, kind) = a.number().await;
    assert_eq!(kind, "tracking");
    // Activity every 500 ms for 3 s, twice the 1.5 s idle timeout: the number stays.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.send_text(r#"{"type":"activity"}"#).await;
    }
    let (site, visitor) = (SiteId::new("shop").unwrap(), VisitorId::new("v-active").unwrap());
    let lease = node.app.pool.current(&site, &visitor, callpool_pool::Ts::now()).await.unwrap();
    assert_eq!(lease.map(|l| l.number.to_string()), Some(number.clone()), "the lease is alive");
    // The tab reconnects (a network blip): it gets the same number at once.
    drop(a);
    let mut again = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    again.hello("v-active", PAGE).await;
    assert_eq!(again.number().await, (number.clone(), "tracking".into()), "a reconnect resyncs");
    // Then it goes quiet: default_after.
    assert_eq!(again.number().await, ("+74951234568".into(), "default_after".into()));
    node.stop().await;
}

#[tokio::test]
async fn untracked_traffic_gets_the_static_number_and_no_lease() {
    let (node, _dir) = node(
        r#"static_number = "+74951234569"
track = { utm_source = ["google"] }"#,
        "",
    )
    .await;
    let mut direct = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    direct.hello("v-direct", "https://shop.example/").await;
    assert_eq!(direct.number().await, ("+74951234569".into(), "static".into()));
    let mut ads = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    ads.hello("v-ads", PAGE).await;
    assert_eq!(ads.number().await.1, "default_before");
    assert_eq!(ads.number().await.1, "tracking");
    let st = node.app.pool.status(&SiteId::new("shop").unwrap(), callpool_pool::Ts::now()).await.unwrap().unwrap();
    assert_eq!(st.leased, 1, "only the tracked visitor holds a number");
    node.stop().await;
}

#[tokio::test]
async fn an_exhausted_pool_keeps_the_site_number_and_counts_it() {
    let (node, _dir) = node("", "").await;
    let mut tabs = Vec::new();
    for v in 0..3 {
        let mut t = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
        t.hello(&format!("v-ex-{v}"), PAGE).await;
        assert_eq!(t.number().await.1, "default_before");
        tabs.push(t);
    }
    let mut kinds = Vec::new();
    for t in tabs.iter_mut().take(2) {
        kinds.push(t.number().await.1);
    }
    assert_eq!(kinds, ["tracking", "tracking"]);
    eventually("the third visitor was counted as exhausted", || async {
        node.metric(r#"callpool_hub_exhausted_total{site="shop"}"#).await == 1.0
    })
    .await;
    node.stop().await;
}

#[tokio::test]
async fn closing_every_tab_returns_the_number_after_the_grace() {
    let (node, _dir) = node("", "").await;
    let mut a = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    a.hello("v-leaves", PAGE).await;
    assert_eq!(a.number().await.1, "default_before");
    let (number, _) = a.number().await;
    drop(a);
    let site = SiteId::new("shop").unwrap();
    eventually("the number is free again", || async {
        let st = node.app.pool.status(&site, callpool_pool::Ts::now()).await.unwrap().unwrap();
        st.leased == 0
    })
    .await;
    let held = node.app.pool.holder_at(&PhoneNumber::parse(&number).unwrap(), callpool_pool::Ts::now()).await.unwrap();
    assert!(held.is_none());
    assert!(node.metric(r#"callpool_pool_leases_ended_total{reason="left",site="shop"}"#).await >= 1.0);
    node.stop().await;
}

async fn refused(node: &Node, key: &str, origin: &str, first: Option<&str>) -> (String, Option<u16>) {
    let mut t = WsTab::open(node.addr, key, origin).await;
    if let Some(text) = first {
        t.send_text(text).await;
    }
    let code = match t.next().await {
        Heard::Json(v) if v["type"] == "error" => v["code"].as_str().unwrap().to_owned(),
        other => panic!("expected an error, got {other:?}"),
    };
    let closed = match t.next().await {
        Heard::Closed(c) => c,
        other => panic!("expected a close, got {other:?}"),
    };
    (code, closed)
}

#[tokio::test]
async fn bad_connections_get_an_error_code_and_a_close() {
    let (node, _dir) = node("", "").await;
    let hello = r#"{"type":"hello","v":1,"visitor":"v1","tab":"t","page":"https://shop.example/"}"#;
    assert_eq!(refused(&node, "nope", ORIGIN, None).await, ("unknown_site".into(), Some(4404)));
    assert_eq!(
        refused(&node, "shop-public-key", "https://evil.example", None).await,
        ("origin_not_allowed".into(), Some(4403))
    );
    assert_eq!(
        refused(&node, "shop-public-key", ORIGIN, Some(r#"{"type":"activity"}"#)).await,
        ("hello_first".into(), Some(4400))
    );
    assert_eq!(refused(&node, "shop-public-key", ORIGIN, Some("{not json")).await, ("bad_message".into(), Some(4400)));
    assert_eq!(
        refused(&node, "shop-public-key", ORIGIN, Some(&hello.replace("\"v\":1", "\"v\":2"))).await,
        ("unsupported_version".into(), Some(4426))
    );
    assert_eq!(
        refused(&node, "shop-public-key", ORIGIN, Some(&hello.replace("v1", "bad visitor!"))).await,
        ("bad_message".into(), Some(4400))
    );
    let huge = format!(
        r#"{{"type":"hello","v":1,"visitor":"v1","tab":"t","page":"https://shop.example/?{}"}}"#,
        "x".repeat(5000)
    );
    let (code, _) = refused(&node, "shop-public-key", ORIGIN, Some(&huge)).await;
    assert_eq!(code, "too_large");

    // After hello: a second hello or garbage closes the tab with an error too.
    let mut t = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    t.hello("v-garbage", PAGE).await;
    t.number().await;
    t.send_text(r#"{"type":"visibility","visible":"yes"}"#).await;
    loop {
        match t.next().await {
            Heard::Json(v) if v["type"] == "error" => {
                assert_eq!(v["code"], "bad_message");
                break;
            }
            Heard::Json(_) => continue,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(t.next().await, Heard::Closed(Some(4400)));
    assert!(node.metric(r#"callpool_ws_refused_total{reason="unknown_site"}"#).await >= 1.0);
    node.stop().await;
}

/// A script opening tab after tab for one visitor gets 20, then a refusal the snippet does not
/// retry; the visitor's 20 tabs still swap together.
#[tokio::test]
async fn one_visitor_gets_at_most_twenty_tabs() {
    let (node, _dir) = node("", "").await;
    let mut tabs = Vec::new();
    for _ in 0..20 {
        let mut t = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
        t.hello("many.tabs", PAGE).await;
        assert_eq!(t.number().await.1, "default_before");
        tabs.push(t);
    }
    let mut extra = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    extra.hello("many.tabs", PAGE).await;
    match extra.next().await {
        Heard::Json(v) => assert_eq!((v["type"].as_str(), v["code"].as_str()), (Some("error"), Some("too_many_tabs"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(extra.next().await, Heard::Closed(Some(4429)));
    let mut numbers = std::collections::HashSet::new();
    for t in &mut tabs {
        numbers.insert(t.number().await);
    }
    assert_eq!(numbers.len(), 1, "every tab swaps to the same tracking number: {numbers:?}");
    assert_eq!(node.metric("callpool_ws_refused_total{reason=\"too_many_tabs\"}").await, 1.0);
    node.stop().await;
}

/// Seven visitors from one address cannot drain the pool or learn every number: an address
/// gets at most half the site's numbers (here one of two) in `leases_per_address`'s period;
/// another address still gets a number.
#[tokio::test]
async fn one_address_cannot_take_the_whole_pool() {
    let (node, _dir) = node("", "trusted_proxies = [\"127.0.0.1/32\"]").await;
    let mut numbers = Vec::new();
    let mut tabs = Vec::new();
    for i in 0..7 {
        let mut t = WsTab::open_from(node.addr, "shop-public-key", ORIGIN, [127, 0, 0, 2]).await;
        t.hello(&format!("harvester-{i}"), PAGE).await;
        assert_eq!(t.number().await.1, "default_before");
        tabs.push(t);
    }
    eventually("six of seven are held back", || async {
        node.metric("callpool_hub_address_limited_total{site=\"shop\"}").await == 6.0
    })
    .await;
    for t in &mut tabs {
        let heard = tokio::time::timeout(Duration::from_millis(150), t.number()).await;
        if let Ok((number, "tracking")) = heard.as_ref().map(|(n, k)| (n.clone(), k.as_str())) {
            numbers.push(number);
        }
    }
    assert_eq!(numbers.len(), 1, "one number for the address: {numbers:?}");
    let mut other = WsTab::open_from(node.addr, "shop-public-key", ORIGIN, [127, 0, 0, 3]).await;
    other.hello("someone-else", PAGE).await;
    assert_eq!(other.number().await.1, "default_before");
    let (theirs, kind) = other.number().await;
    assert_eq!(kind, "tracking", "another address still gets a number");
    assert_ne!(theirs, numbers[0]);
    assert_eq!(node.metric("callpool_hub_address_limited_total{site=\"shop\"}").await, 6.0);
    node.stop().await;
}

#[tokio::test]
async fn connection_attempts_are_rate_limited_per_address() {
    let (node, _dir) = node("", "ws_connects_per_ip_per_minute = 3").await;
    for _ in 0..3 {
        let mut t = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
        t.hello("v-rate", PAGE).await;
        t.number().await;
    }
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/v1/ws?site=shop-public-key", node.addr).into_client_request().unwrap();
    req.headers_mut().insert("origin", ORIGIN.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    node.stop().await;
}

#[tokio::test]
async fn the_snippet_and_the_demo_page_are_served() {
    let (node, _dir) = node("", "").await;
    let js = node.get("/snippet.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("application/javascript"));
    assert!(js.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(js.text().await.unwrap().contains("/v1/ws?site="));
    let widget = node.get("/callback.js").await;
    assert!(widget.headers()["content-type"].to_str().unwrap().starts_with("application/javascript"));
    assert!(widget.text().await.unwrap().contains("callpool.callbackForm()"));
    assert_eq!(node.get("/").await.status(), 404, "no demo page outside the demo configuration");
    let gzipped =
        reqwest::Client::new().get(node.url("/snippet.js")).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(gzipped.headers()["content-encoding"], "gzip", "browsers that take gzip get it");
    assert!(gzipped.bytes().await.unwrap().len() <= 5 * 1024);
    let plain =
        reqwest::Client::new().get(node.url("/snippet.js")).header("accept-encoding", "gzip;q=0").send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none(), "gzip;q=0 refuses it");
    // Caching: an ETag that revalidates, and the widget at the versioned URL the snippet names cached for good.
    let etag = node.get("/snippet.js").await.headers().get("etag").cloned().unwrap();
    let again = reqwest::Client::new().get(node.url("/snippet.js")).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304, "an unchanged snippet is not sent again");
    let text = node.get("/snippet.js").await.text().await.unwrap();
    let at = text.find("/callback.js?v=").expect("the snippet names the widget's versioned URL") + 15;
    let v: String = text[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    assert_eq!(v.len(), 16, "{}", &text[at - 15..at + 20]);
    let versioned = node.get(&format!("/callback.js?v={v}")).await;
    assert_eq!(versioned.headers()["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(versioned.headers()["etag"].to_str().unwrap(), format!("W/\"{v}\""));
    let stale = node.get("/callback.js?v=0000000000000000").await;
    assert_eq!(stale.headers()["cache-control"], "public, max-age=600", "another version is not cached for long");
    node.stop().await;
}

#[test]
fn the_snippet_is_at_most_5_kb_gzipped() {
    let out = std::process::Command::new("gzip").args(["-9", "-c", "snippet/snippet.js"]).output().expect("gzip");
    assert!(out.status.success());
    assert!(out.stdout.len() <= 5 * 1024, "snippet.js is {} bytes gzipped (unminified)", out.stdout.len());
}

#[tokio::test]
async fn a_tab_that_stops_answering_pings_is_dropped_and_counted_while_a_live_one_stays() {
    let (node, _dir) = node("", "ws_ping_interval = \"100ms\"\nws_dead_after = \"400ms\"").await;
    let mut live = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    live.hello("live.1", PAGE).await;
    let mut silent = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    silent.hello("silent.1", PAGE).await;
    assert_eq!(live.number().await.1, "default_before");
    assert_eq!(silent.number().await.1, "default_before");
    // The live tab keeps reading (its client answers every ping); the silent one reads nothing,
    // so it sends no pong.
    let live_closed = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            if let Heard::Closed(code) = live.next().await {
                return code;
            }
        }
    })
    .await;
    assert!(live_closed.is_err(), "the live tab was closed: {live_closed:?}");
    assert_eq!(node.metric("callpool_ws_closed_total{reason=\"dead\"}").await, 1.0);
    assert_eq!(node.metric("callpool_ws_tabs").await, 1.0, "only the live tab is left");
    assert!(matches!(silent.next().await, Heard::Closed(_)), "the silent tab's connection is gone");
}
