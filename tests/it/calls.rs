//! Calls end to end, on both stores: a visitor's tab gets a tracking number over the websocket,
//! the PBX posts a signed webhook for a call to it, the fake GA4 collector receives exactly one
//! valid event with the visitor's client id and source, Metrica gets its CSV row, and the report
//! lists the call. Also: after the visitor left (`recent`), a default number (untracked),
//! duplicates, refused signatures, malformed bodies, and GA down for a while across a restart.

use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool_pool::Ts;
use serde_json::{json, Value};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter";
const PBX_SECRET: &str = "office-secret-0123456789";
const REPORT_TOKEN: &str = "shop-report-token-0123";
const CLIENT_ID: &str = "1197596843.1673515099";
const YM_UID: &str = "1628529640459314054";
const CALLER: &str = "+79161234567";
const LOCK_TOKEN: &str = "pbx-static-token-0123456789";
const ZD_SECRET: &str = "zadarma-api-secret-0123456789";
const ZD_KEY: &str = "zadarmauserkey0123";
const MANGO_KEY: &str = "mango-vpbx-key-0123";
const MANGO_SALT: &str = "mango-vpbx-salt-0123456789";
const SIP_TOKEN: &str = "sipuni-static-token-0123456789";
const TWILIO_TOKEN: &str = "twilio-auth-token-0123";
const UIS_TOKEN: &str = "uis-static-token-0123456789";
/// The webhook URL as configured in Twilio: the public name behind a reverse proxy.
const TWILIO_URL: &str = "https://callpool.example.com/v1/pbx/calls?pbx=tw";
const TWILIO_KIND_URL: &str = "https://callpool.example.com/v1/pbx/calls?pbx=twk";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Redis,
    /// A Redis of the test's own, on this port.
    RedisAt(u16),
}

fn config(backend: Backend, dir: &std::path::Path, prefix: &str, fake: &str, analytics: &str) -> Config {
    let store = match backend {
        Backend::Embedded => format!("kind = \"embedded\"\ndata_dir = {:?}", dir.join("data").display().to_string()),
        Backend::Redis => format!("kind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"", redis_url()),
        Backend::RedisAt(port) => {
            format!("kind = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}/\"\nredis_prefix = \"{prefix}\"")
        }
    };
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
{store}

[analytics]
ga4_base_url = "{fake}"
yandex_base_url = "{fake}"
yandex_upload_interval = "200ms"
retry_base = "200ms"
request_timeout = "2s"
{analytics}

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]
# The tests' fake PBX serves recordings on loopback.
recordings_from = ["127.0.0.0/8"]

[[pbx]]
id = "tw"
twilio_auth_token = "{TWILIO_TOKEN}"
twilio_url = "{TWILIO_URL}"

[[pbx]]
id = "slow"
secrets = ["{PBX_SECRET}"]
requests_per_second = 2

[[pbx]]
id = "zd"
kind = "zadarma"
secret = "{ZD_SECRET}"
# Recordings through the tests' fake of Zadarma's API, on loopback.
key = "{ZD_KEY}"
url = "{zd_api}"
recordings_from = ["127.0.0.0/8"]

[[pbx]]
id = "mango"
kind = "mango"
api_key = "{MANGO_KEY}"
api_salt = "{MANGO_SALT}"
# The tests' fake of Mango's API, on loopback.
url = "{mango_api}"
recordings_from = ["127.0.0.0/8"]

[[pbx]]
id = "sip"
kind = "sipuni"
token = "{SIP_TOKEN}"

[[pbx]]
id = "locked"
secrets = ["{PBX_SECRET}"]
token = "{LOCK_TOKEN}"
allow_from = ["127.0.0.0/30"]

[[pbx]]
id = "twk"
kind = "twilio"
auth_token = "{TWILIO_TOKEN}"
url = "{TWILIO_KIND_URL}"

[[pbx]]
id = "uis"
kind = "uis"
token = "{UIS_TOKEN}"

{site}
report_token = "{REPORT_TOKEN}"
recent_window = "1h"

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"

[site.yandex]
counter_id = {YM_COUNTER}
token = "{YM_TOKEN}"
"#,
        zd_api = ZD_API.0,
        site = shop_site(ORIGIN, "200ms", "30m", "200ms"),
        mango_api = fake_mango_api(),
    );
    Config::parse(&text, "calls-test.toml", &std::collections::HashMap::new()).expect("test config")
}

struct World {
    node: Node,
    fake: FakeAnalytics,
    fake_url: String,
    backend: Backend,
    dir: tempfile::TempDir,
    prefix: String,
    analytics: String,
}

impl World {
    async fn start(backend: Backend) -> World {
        World::start_with(backend, "").await
    }

    /// With extra `[analytics]` settings.
    async fn start_with(backend: Backend, analytics: &str) -> World {
        let fake = FakeAnalytics::default();
        let fake_url = fake.start().await;
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique("calls");
        let node = Node::start_real(config(backend, dir.path(), &prefix, &fake_url, analytics)).await;
        World { node, fake, fake_url, backend, dir, prefix, analytics: analytics.to_owned() }
    }

    /// Stops the node and starts another on the same store.
    async fn restart(self) -> World {
        let World { node, fake, fake_url, backend, dir, prefix, analytics } = self;
        node.stop().await;
        let node = Node::restart_on(config(backend, dir.path(), &prefix, &fake_url, &analytics)).await;
        World { node, fake, fake_url, backend, dir, prefix, analytics }
    }

    /// A visitor's tab that has been given its tracking number.
    async fn visitor_with_number(&self) -> (WsTab, String) {
        let mut tab = WsTab::open(self.node.addr, "shop-public-key", ORIGIN).await;
        let hello = json!({
            "type": "hello", "v": 1, "visitor": CLIENT_ID, "tab": unique("tab"), "page": PAGE,
            "ga_client_id": CLIENT_ID, "ga_session_id": "1747132561", "ym_uid": YM_UID,
            "referrer": "https://www.google.com/",
        });
        tab.send_text(&hello.to_string()).await;
        assert_eq!(tab.number().await.1, "default_before");
        let (number, kind) = tab.number().await;
        assert_eq!(kind, "tracking");
        (tab, number)
    }

    /// Posts `body` signed at `t` (Unix seconds) with `secret`.
    async fn post_signed(&self, body: &str, t: i64, secret: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(self.node.url("/v1/pbx/calls?pbx=office"))
            .header("content-type", "application/json")
            .header("callpool-signature", callpool::pbx::signature::sign(secret, t, body.as_bytes()))
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, body: &str) -> reqwest::Response {
        self.post_signed(body, Ts::now().as_millis() / 1000, PBX_SECRET).await
    }

    async fn report(&self, token: &str) -> Value {
        let resp = reqwest::Client::new()
            .get(self.node.url("/v1/reports/shop/calls"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }
}

fn call_json(call_id: &str, called: &str, status: &str) -> String {
    json!({
        "call_id": call_id, "called": called, "caller": CALLER,
        "started_at": chrono::Utc::now().to_rfc3339(), "status": status, "duration": 63,
        "recording_url": "https://pbx.example/rec/1.mp3",
    })
    .to_string()
}

/// Waits `for_` and checks GA4 still received exactly `n` events.
async fn still_exactly(fake: &FakeAnalytics, n: usize, for_: Duration) {
    tokio::time::sleep(for_).await;
    assert_eq!(fake.ga4_accepted().len(), n, "GA4 events: {:#?}", fake.ga4_accepted());
}

async fn tracked_call_reaches_ga_once(backend: Backend) {
    let w = World::start(backend).await;
    let (_tab, number) = w.visitor_with_number().await;

    let first = w.post(&call_json("c-1", &number, "ringing")).await;
    assert_eq!(first.status(), 200);
    let v: Value = first.json().await.unwrap();
    assert_eq!(
        (v["result"].as_str(), v["match"].as_str(), v["site"].as_str()),
        (Some("new"), Some("active"), Some("shop"))
    );
    // The PBX retries, then reports the end of the call: still one call, one event.
    assert_eq!(
        w.post(&call_json("c-1", &number, "ringing")).await.json::<Value>().await.unwrap()["result"],
        "unchanged"
    );
    assert_eq!(
        w.post(&call_json("c-1", &number, "completed")).await.json::<Value>().await.unwrap()["result"],
        "updated"
    );
    assert_eq!(
        w.post(&call_json("c-1", &number, "completed")).await.json::<Value>().await.unwrap()["result"],
        "unchanged"
    );

    eventually("GA4 received the call", || async { !w.fake.ga4_accepted().is_empty() }).await;
    // A report after the event went out (the recording is ready): the call is updated, not re-sent.
    let late = call_json("c-1", &number, "completed").replace("rec/1.mp3", "rec/1-final.mp3");
    assert_eq!(w.post(&late).await.json::<Value>().await.unwrap()["result"], "updated");
    still_exactly(&w.fake, 1, Duration::from_millis(1500)).await;
    let event = &w.fake.ga4_accepted()[0];
    assert_eq!(event["client_id"], CLIENT_ID);
    let params = &event["events"][0]["params"];
    assert_eq!(event["events"][0]["name"], "phone_call");
    assert_eq!((params["source"].as_str(), params["medium"].as_str()), (Some("google"), Some("cpc")));
    assert_eq!((params["match_kind"].as_str(), params["call_id"].as_str()), (Some("active"), Some("c-1")));
    assert_eq!((params["session_id"].as_str(), params["call_duration"].as_u64()), (Some("1747132561"), Some(63)));
    assert!(!event.to_string().contains(&CALLER[2..]), "the caller's number never goes to GA: {event}");

    // Metrica: one upload with the visitor's ClientId and the tracking number.
    eventually("Metrica received the call", || async { !w.fake.yandex_accepted().is_empty() }).await;
    let csv = w.fake.yandex_accepted().join("\n");
    assert!(csv.contains(&format!("{YM_UID},")) && csv.contains(&format!(",0,{number},63,")), "{csv}");
    assert!(w.fake.violations().is_empty(), "{:?}", w.fake.violations());

    // The report lists it: the admin sees the caller, the report token a masked one.
    let full = w.report(ADMIN_TOKEN).await;
    let call = &full["calls"][0];
    assert_eq!(full["calls"].as_array().unwrap().len(), 1, "{full}");
    assert_eq!(
        (call["match"].as_str(), call["caller"].as_str(), call["source"].as_str()),
        (Some("active"), Some(CALLER), Some("google"))
    );
    assert_eq!(
        (call["status"].as_str(), call["ga4"].as_str(), call["yandex"].as_str()),
        (Some("completed"), Some("sent"), Some("sent"))
    );
    assert_eq!(
        call["recording"], "/v1/reports/shop/recordings/office:c-1",
        "served through callpool, not the PBX's link"
    );
    let masked = w.report(REPORT_TOKEN).await;
    assert_eq!(masked["calls"][0]["caller"], "+7********67");
    let download = reqwest::Client::new()
        .get(w.node.url("/v1/reports/shop/yandex.csv"))
        .bearer_auth(REPORT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(download.headers()["content-type"], "text/csv; charset=utf-8");
    assert_eq!(download.headers()["cache-control"], "no-store");
    let download = download.text().await.unwrap();
    assert!(download.starts_with("ClientId,DateTime,") && download.contains(&format!("{YM_UID},")), "{download}");
    let no_token = reqwest::get(w.node.url("/v1/reports/shop/calls")).await.unwrap();
    assert_eq!(no_token.status(), 401);
    assert_eq!(w.node.metric("callpool_calls_recorded_total{kind=\"active\",site=\"shop\"}").await, 1.0);
    assert_eq!(w.node.metric("callpool_analytics_sent_total{kind=\"ga4\"}").await, 1.0);
    assert_eq!(w.node.metric("callpool_hub_leases_granted_total{site=\"shop\"}").await, 1.0);
    w.node.stop().await;
}

/// Redis restarts while each delivery is on its way: GA4 has taken the event, the node cannot
/// record that it did. The outcome is recorded once Redis is back, and nothing is sent again:
/// one GA4 event and one Metrica row per call.
#[tokio::test]
async fn a_delivery_made_while_redis_restarts_is_recorded_not_repeated() {
    use std::sync::atomic::Ordering;
    let port = free_port();
    let mut redis = OwnRedis::start_with(port, &["--appendonly", "yes"]);
    let w = World::start(Backend::RedisAt(port)).await;
    let (_tab, number) = w.visitor_with_number().await;
    // The collector answers 400 ms after it took an event; Redis is stopped in between.
    w.fake.delay_ms.store(400, Ordering::SeqCst);
    let calls = 5;
    for i in 0..calls {
        let id = format!("r-{i}");
        let body = call_json(&id, &number, "completed").replace(CALLER, &format!("+7916123450{i}"));
        eventually("the webhook is taken", || async { w.post(&body).await.status() == 200 }).await;
        let taken = || w.fake.requests.lock().unwrap().iter().any(|c| String::from_utf8_lossy(&c.body).contains(&id));
        eventually("GA4 took the event", || async { taken() }).await;
        redis.restart(Duration::from_millis(700)).await;
    }
    eventually("every delivery is recorded as sent", || async {
        let Ok(resp) =
            reqwest::Client::new().get(w.node.url("/v1/reports/shop/calls")).bearer_auth(REPORT_TOKEN).send().await
        else {
            return false;
        };
        let Ok(report) = resp.json::<Value>().await else { return false };
        let calls = report["calls"].as_array().cloned().unwrap_or_default();
        calls.len() == 5 && calls.iter().all(|c| c["ga4"] == "sent" && c["yandex"] == "sent")
    })
    .await;
    w.fake.delay_ms.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events: Vec<String> = w
        .fake
        .ga4_accepted()
        .iter()
        .map(|e| e["events"][0]["params"]["call_id"].as_str().unwrap().to_owned())
        .collect();
    let mut unique_events = events.clone();
    unique_events.sort();
    unique_events.dedup();
    assert_eq!((events.len(), unique_events.len()), (calls, calls), "one event per call: {events:?}");
    let rows: Vec<String> = w
        .fake
        .yandex_accepted()
        .iter()
        .flat_map(|body| body.lines().filter(|l| l.starts_with(YM_UID)).map(str::to_owned).collect::<Vec<_>>())
        .collect();
    assert_eq!(rows.len(), calls, "one Metrica row per call: {rows:#?}");
    assert!(w.fake.violations().is_empty(), "{:?}", w.fake.violations());
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_a_tracked_call_reaches_ga_once_and_the_report() {
    tracked_call_reaches_ga_once(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_a_tracked_call_reaches_ga_once_and_the_report() {
    tracked_call_reaches_ga_once(Backend::Redis).await;
}

async fn call_after_the_visitor_left_is_recent(backend: Backend) {
    let w = World::start(backend).await;
    let (tab, number) = w.visitor_with_number().await;
    drop(tab);
    // The lease ends 200 ms (release_grace) after the last tab closed.
    let n = callpool_pool::PhoneNumber::parse(&number).unwrap();
    eventually("the lease ended", || async { w.node.app.pool.holder_at(&n, Ts::now()).await.unwrap().is_none() }).await;
    let v: Value = w.post(&call_json("c-2", &number, "completed")).await.json().await.unwrap();
    assert_eq!(v["match"], "recent");
    eventually("GA4 received the call", || async { w.fake.ga4_accepted().len() == 1 }).await;
    let event = &w.fake.ga4_accepted()[0];
    assert_eq!(
        (event["client_id"].as_str(), event["events"][0]["params"]["match_kind"].as_str()),
        (Some(CLIENT_ID), Some("recent"))
    );
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_a_call_after_the_visitor_left_is_recent() {
    call_after_the_visitor_left_is_recent(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_a_call_after_the_visitor_left_is_recent() {
    call_after_the_visitor_left_is_recent(Backend::Redis).await;
}

async fn default_numbers_and_refusals(backend: Backend) {
    let w = World::start(backend).await;
    // A call to the number in the page's HTML: untracked, no event.
    let v: Value = w.post(&call_json("c-3", "+74951234567", "completed")).await.json().await.unwrap();
    assert_eq!(v["match"], "default_before");

    // Refusals record nothing.
    let now = Ts::now().as_millis() / 1000;
    let body = call_json("c-bad", "+74951234567", "completed");
    let wrong = w.post_signed(&body, now, "not-the-secret-0123456789").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.json::<Value>().await.unwrap()["error"]["code"], "bad_signature");
    assert_eq!(w.post_signed(&body, now - 600, PBX_SECRET).await.status(), 401, "a replayed timestamp");
    let unsigned =
        reqwest::Client::new().post(w.node.url("/v1/pbx/calls?pbx=office")).body(body.clone()).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let malformed = w.post("{\"call_id\": \"c-4\", \"called\": 42}").await;
    assert_eq!(malformed.status(), 400);
    let message = malformed.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("called:"), "{message}");
    assert_eq!(w.post("{not json").await.status(), 400);

    let report = w.report(ADMIN_TOKEN).await;
    let ids: Vec<&str> = report["calls"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["c-3"], "only the accepted call is stored");

    // A call to a number that belongs to no site is kept, and the operator sees it.
    let stray: Value = w.post(&call_json("c-stray", "+74957654321", "completed")).await.json().await.unwrap();
    assert_eq!((stray["match"].as_str(), stray["site"].as_str()), (Some("unmatched"), None));
    let unassigned: Value = w.node.admin_get("/v1/admin/calls/unassigned").await.json().await.unwrap();
    assert_eq!(unassigned[0]["call_id"], "c-stray", "{unassigned}");
    assert_eq!(w.node.get("/v1/admin/calls/unassigned").await.status(), 401);
    assert_eq!(report["calls"][0]["ga4"], "skipped: the call is not attributed to a visitor");
    let summary: Value = reqwest::Client::new()
        .get(w.node.url("/v1/reports/shop/summary"))
        .bearer_auth(REPORT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((summary["total"]["default_before"].as_u64(), summary["total"]["tracked"].as_u64()), (Some(1), Some(0)));
    assert!(summary["hint"].as_str().unwrap().contains("shorten delay_to_show"), "{summary}");
    let today = summary["days"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((today["peak_leased"].as_u64(), today["exhausted"].as_u64()), (Some(0), Some(0)), "{today}");
    // A report link from a mail: the token goes into a cookie at once and leaves the URL.
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let link = browser.get(w.node.url(&format!("/v1/reports/shop?token={REPORT_TOKEN}&from=2026-01-01"))).send();
    let link = link.await.unwrap();
    assert_eq!(link.status(), 303);
    assert_eq!(link.headers()["location"], "/v1/reports/shop?from=2026-01-01");
    let set_cookie = link.headers()["set-cookie"].to_str().unwrap();
    assert_eq!(
        set_cookie,
        format!(
            "callpool_report={REPORT_TOKEN}; Path=/v1/reports/shop; Max-Age=28800; HttpOnly; Secure; SameSite=Strict"
        )
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = browser.get(w.node.url("/v1/reports/shop")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    for (name, value) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
    ] {
        assert_eq!(page.headers()[name], value, "{name}");
    }
    assert!(page.headers()["content-security-policy"].to_str().unwrap().starts_with("default-src 'none'"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<svg") && !html.contains(REPORT_TOKEN), "the page never repeats the token");
    let advice =
        browser.get(w.node.url("/v1/reports/shop?advice=1&lang=en")).header("cookie", &cookie).send().await.unwrap();
    let advice = advice.text().await.unwrap();
    assert!(advice.contains("No advice yet: 0 visits recorded"), "too little traffic to fit: {advice}");
    // Who may not see a site cannot tell whether it exists; the operator can.
    for (path, token, status) in [
        ("/v1/reports/nope/calls", REPORT_TOKEN, 401),
        ("/v1/reports/shop/calls", "a-wrong-token-of-some-length", 401),
        ("/v1/reports/nope/calls", ADMIN_TOKEN, 404),
    ] {
        let resp = reqwest::Client::new().get(w.node.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(resp.status(), status, "{path} with {token}");
    }
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"bad_signature\"}").await, 1.0);
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"stale_timestamp\"}").await, 1.0);
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"malformed\"}").await, 2.0);
    still_exactly(&w.fake, 0, Duration::from_millis(700)).await;
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_default_numbers_are_untracked_and_bad_webhooks_are_refused() {
    default_numbers_and_refusals(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_default_numbers_are_untracked_and_bad_webhooks_are_refused() {
    default_numbers_and_refusals(Backend::Redis).await;
}

async fn ga_down_then_up_delivers_once_across_a_restart(backend: Backend) {
    let w = World::start(backend).await;
    let (tab, number) = w.visitor_with_number().await;
    w.fake.down.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(w.post(&call_json("c-5", &number, "completed")).await.status(), 200);
    eventually("GA4 was tried twice", || async { w.fake.attempts("/mp/collect") >= 2 }).await;
    drop(tab);
    // callpool restarts while GA is still down; then GA comes back.
    let w = w.restart().await;
    assert!(w.fake.ga4_accepted().is_empty());
    w.fake.down.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually("GA4 received the call after recovering", || async { w.fake.ga4_accepted().len() == 1 }).await;
    still_exactly(&w.fake, 1, Duration::from_millis(1500)).await;
    assert_eq!(w.fake.ga4_accepted()[0]["events"][0]["params"]["call_id"], "c-5");
    let report = w.report(ADMIN_TOKEN).await;
    assert_eq!(report["calls"][0]["ga4"], "sent");
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_ga_down_then_up_delivers_once_across_a_restart() {
    ga_down_then_up_delivers_once_across_a_restart(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_ga_down_then_up_delivers_once_across_a_restart() {
    ga_down_then_up_delivers_once_across_a_restart(Backend::Redis).await;
}

#[tokio::test]
async fn ga4_debug_mode_sends_to_the_validation_endpoint_only() {
    let w = World::start_with(Backend::Embedded, "ga4_debug = true").await;
    let (_tab, number) = w.visitor_with_number().await;
    assert_eq!(w.post(&call_json("c-6", &number, "completed")).await.status(), 200);
    eventually("the validation endpoint was asked", || async { w.fake.attempts("/debug/mp/collect") == 1 }).await;
    eventually("the delivery is settled", || async {
        w.report(ADMIN_TOKEN).await["calls"][0]["ga4"] == "skipped: debug mode: validated by GA4, not recorded"
    })
    .await;
    assert_eq!(w.fake.attempts("/mp/collect"), 0, "nothing was sent for real");
    assert!(w.fake.violations().is_empty(), "{:?}", w.fake.violations());
    w.node.stop().await;
}

/// A call's recording is fetched from the PBX when a report user opens it and streamed through,
/// a range passed on; another site's token, a call without one, and a recording the PBX lost
/// each get a clear answer.
#[tokio::test]
async fn a_recording_is_streamed_from_the_pbx_to_a_report_user() {
    let w = World::start(Backend::Embedded).await;
    let audio: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    let served = audio.clone();
    let pbx = serve_fake(move |req: axum::extract::Request| {
        let audio = served.clone();
        async move {
            if req.uri().path() != "/rec/1.mp3" {
                return (axum::http::StatusCode::NOT_FOUND, String::new());
            }
            // The fake answers in text; the bytes are ASCII digits of the audio for simplicity.
            let body: String = audio.iter().map(|b| char::from(b'0' + b % 10)).collect();
            match req.headers().get("range").and_then(|v| v.to_str().ok()) {
                Some("bytes=0-3") => (axum::http::StatusCode::PARTIAL_CONTENT, body[..4].to_owned()),
                _ => (axum::http::StatusCode::OK, body),
            }
        }
    })
    .await;
    let (_tab, number) = w.visitor_with_number().await;
    let rec = |id: &str, path: &str| {
        call_json(id, &number, "completed").replace("https://pbx.example/rec/1.mp3", &format!("{pbx}{path}"))
    };
    assert_eq!(w.post(&rec("rec-1", "/rec/1.mp3")).await.status(), 200);
    assert_eq!(w.post(&rec("rec-2", "/rec/gone.mp3")).await.status(), 200);
    let get = |path: &str, token: &str, range: Option<&str>| {
        let mut req = reqwest::Client::new().get(w.node.url(path)).bearer_auth(token);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let whole = get("/v1/reports/shop/recordings/office:rec-1", REPORT_TOKEN, None).await.unwrap();
    assert_eq!(whole.status(), 200);
    let expected: String = audio.iter().map(|b| char::from(b'0' + b % 10)).collect();
    assert_eq!(whole.text().await.unwrap(), expected);
    let part = get("/v1/reports/shop/recordings/office:rec-1", REPORT_TOKEN, Some("bytes=0-3")).await.unwrap();
    assert_eq!((part.status().as_u16(), part.text().await.unwrap()), (206, expected[..4].to_owned()));
    let gone = get("/v1/reports/shop/recordings/office:rec-2", REPORT_TOKEN, None).await.unwrap();
    let body: Value = gone.json().await.unwrap();
    assert_eq!(body["error"]["code"], "recording_gone");
    let none = get("/v1/reports/shop/recordings/office:nope", REPORT_TOKEN, None).await.unwrap();
    assert_eq!(none.status(), 404);
    let stranger = get("/v1/reports/shop/recordings/office:rec-1", "wrong-token-0123456789", None).await.unwrap();
    assert_eq!(stranger.status(), 401);
    // A PBX without `recordings_from` cannot point callpool at the node's own loopback services.
    let body = rec("ssrf-1", "/rec/1.mp3");
    let t = Ts::now().as_millis() / 1000;
    let posted = reqwest::Client::new()
        .post(w.node.url("/v1/pbx/calls?pbx=slow"))
        .header("content-type", "application/json")
        .header("callpool-signature", callpool::pbx::signature::sign(PBX_SECRET, t, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let refused = get("/v1/reports/shop/recordings/slow:ssrf-1", REPORT_TOKEN, None).await.unwrap();
    assert_eq!(refused.status(), 502);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "recording_unavailable");
    let listed = w.report(REPORT_TOKEN).await;
    assert!(!listed.to_string().contains(&pbx), "the PBX's link never reaches the report");
    // The page plays it: an audio element on callpool's own path, which its policy allows.
    let page = get("/v1/reports/shop", REPORT_TOKEN, None).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<audio controls preload="none" src="/v1/reports/shop/recordings/office:rec-1">"#),
        "{html}"
    );
    assert!(!html.contains(&pbx) && csp.contains("media-src 'self'"), "{csp}");
    w.node.stop().await;
}

/// The recording the fake Zadarma API has (a `call_id_with_rec`), and its bytes.
const ZD_REC: &str = "1800000000.123456";
const ZD_AUDIO: &[u8] = b"ID3\x04\x00\x00\xff\xfb\x90\x00 zadarma recording";

/// The fake Zadarma API `[[pbx]] id = "zd"` names: its URL, and its port's listener, bound once
/// for the test binary (every test's configuration names it) and served by the one test that
/// plays Zadarma recordings.
static ZD_API: std::sync::LazyLock<(String, std::sync::Mutex<Option<std::net::TcpListener>>)> =
    std::sync::LazyLock::new(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the fake Zadarma API");
        (format!("http://{}", listener.local_addr().unwrap()), std::sync::Mutex::new(Some(listener)))
    });

/// The `Authorization` Zadarma's API expects for `method` and `query` (its documentation, "API
/// authorization": `key:base64(hex(HMAC-SHA1(secret, method . query . md5(query))))`).
fn zadarma_authorization(method: &str, query: &str) -> String {
    use hmac::Mac;
    use md5::Digest;
    let text = format!("{method}{query}{}", hex::encode(md5::Md5::digest(query.as_bytes())));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(ZD_SECRET.as_bytes()).unwrap();
    mac.update(text.as_bytes());
    let hex_text = hex::encode(mac.finalize().into_bytes());
    format!("{ZD_KEY}:{}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex_text))
}

/// Serves [`ZD_API`]: `GET /v1/pbx/record/request/?call_id=<id>&format=json`, signed, answers a
/// link for [`ZD_REC`], "not found" for `*.404` and 503 for `*.503`; the link serves [`ZD_AUDIO`]
/// without credentials. Anything else is answered 400 and listed in the returned violations.
async fn serve_fake_zadarma_api() -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use axum::http::StatusCode;
    let listener = ZD_API.1.lock().unwrap().take().expect("one test serves the fake Zadarma API");
    listener.set_nonblocking(true).unwrap();
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let violations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = violations.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let (path, query) = (req.uri().path().to_owned(), req.uri().query().unwrap_or_default().to_owned());
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let link = format!("/v1/pbx/record/download/NjM3MzY/{ZD_REC}.mp3");
            if req.method() == "GET" && path == link && query.is_empty() && auth.is_none() {
                return (StatusCode::OK, ZD_AUDIO.to_vec());
            }
            let id = query.strip_prefix("call_id=").and_then(|q| q.strip_suffix("&format=json")).unwrap_or_default();
            let signed = auth.as_deref() == Some(zadarma_authorization(&path, &query).as_str());
            if req.method() != "GET" || path != "/v1/pbx/record/request/" || id.is_empty() || !signed {
                seen.lock().unwrap().push(format!("{} {path}?{query} authorization {auth:?}", req.method()));
                return (StatusCode::BAD_REQUEST, br#"{"status":"error","message":"Wrong request"}"#.to_vec());
            }
            let answer = match id {
                ZD_REC => json!({"status": "success", "link": format!("{}{link}", ZD_API.0),
                    "lifetime_till": "2027-01-15 11:30:00"}),
                _ if id.ends_with(".503") => return (StatusCode::SERVICE_UNAVAILABLE, Vec::new()),
                _ => json!({"status": "error", "message": "Record not found"}),
            };
            (StatusCode::OK, answer.to_string().into_bytes())
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    violations
}

/// A call through Zadarma as its notifications arrive (the URL check, start, end, a repeat):
/// one call, matched to the visitor, one GA4 event; a forged notification records nothing. Its
/// recording (named by the end, then by NOTIFY_RECORD) plays through a strict fake of Zadarma's API.
#[tokio::test]
async fn zadarma_notifications_record_one_call_for_the_visitor() {
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let http = reqwest::Client::new();
    let echo = http.get(w.node.url("/v1/pbx/calls/zd?zd_echo=Zx81-ab")).send().await.unwrap();
    // Zadarma's start time has whole seconds: the call comes a second after the number was shown.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!((echo.status().as_u16(), echo.text().await.unwrap()), (200, "Zx81-ab".to_owned()), "the URL check");
    let start = chrono::Utc::now().with_timezone(&chrono_tz::Europe::Moscow).format("%Y-%m-%d %H:%M:%S").to_string();
    let did = number.trim_start_matches('+').to_owned();
    let notify = |event: &str, extra: &[(&str, &str)], signature: Option<String>| {
        let mut fields: Vec<(String, String)> = [
            ("event", event),
            ("call_start", start.as_str()),
            ("pbx_call_id", "in_4f2a9c"),
            ("caller_id", "79161234567"),
            ("called_did", did.as_str()),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        fields.sort();
        let signed = format!("79161234567{did}{start}");
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
        let sig = signature.unwrap_or_else(|| callpool::pbx::zadarma::sign(&signed, ZD_SECRET));
        http.post(w.node.url("/v1/pbx/calls/zd"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("signature", sig)
            .body(body)
            .send()
    };
    assert_eq!(notify("NOTIFY_START", &[], None).await.unwrap().status(), 200);
    let forged = notify("NOTIFY_END", &[("disposition", "answered"), ("duration", "99")], Some("bm9wZQ==".into()));
    assert_eq!(forged.await.unwrap().status(), 401);
    let recorded = [("is_recorded", "1"), ("call_id_with_rec", ZD_REC)];
    for _ in 0..2 {
        let extra = [("disposition", "answered"), ("duration", "42"), recorded[0], recorded[1]];
        let end = notify("NOTIFY_END", &extra, None).await.unwrap();
        assert_eq!(end.status(), 200, "a repeat is answered the same");
    }
    eventually("GA4 got the call", || async { w.fake.ga4_accepted().len() == 1 }).await;
    let calls = w.report(REPORT_TOKEN).await["calls"].as_array().cloned().unwrap();
    let call = calls.iter().find(|c| c["call_id"] == "in_4f2a9c").expect("the call is in the report");
    assert_eq!(
        (call["match"].as_str(), call["status"].as_str(), call["duration"].as_u64(), call["called"].as_str()),
        (Some("active"), Some("completed"), Some(42), Some(number.as_str()))
    );

    // Its recording, named by the end, is played through Zadarma's API: a link asked for, then fetched.
    let api = serve_fake_zadarma_api().await;
    let play = || http.get(w.node.url("/v1/reports/shop/recordings/zd:in_4f2a9c")).bearer_auth(REPORT_TOKEN).send();
    let played = play().await.unwrap();
    assert_eq!(played.status(), 200);
    assert_eq!(played.bytes().await.unwrap().as_ref(), ZD_AUDIO);
    // NOTIFY_RECORD names it too (the last one named is kept); one the API no longer has, or
    // cannot give now, gets a clear answer.
    let record = |call: &str, rec: &str, secret: &str| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("event", "NOTIFY_RECORD"), ("pbx_call_id", call), ("call_id_with_rec", rec)])
            .finish();
        http.post(w.node.url("/v1/pbx/calls/zd"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("signature", callpool::pbx::zadarma::sign(&format!("{call}{rec}"), secret))
            .body(body)
            .send()
    };
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<Value>().await.unwrap()["error"]["code"].as_str().map(str::to_owned))
    };
    assert_eq!(record("in_4f2a9c", "1800000000.404", ZD_SECRET).await.unwrap().status(), 200);
    assert_eq!(code(play().await.unwrap()).await, (404, Some("recording_gone".into())));
    assert_eq!(record("in_4f2a9c", "1800000000.503", ZD_SECRET).await.unwrap().status(), 200);
    assert_eq!(code(play().await.unwrap()).await, (502, Some("recording_unavailable".into())));
    assert_eq!(record("in_4f2a9c", ZD_REC, "another-secret-0123456789").await.unwrap().status(), 401, "forged");
    assert_eq!(
        record("in_unknown", ZD_REC, ZD_SECRET).await.unwrap().status(),
        200,
        "a call callpool has not: ignored"
    );
    assert_eq!(record("in_4f2a9c", "1800000000/1", ZD_SECRET).await.unwrap().status(), 400);
    assert_eq!(record("in_4f2a9c", ZD_REC, ZD_SECRET).await.unwrap().status(), 200);
    let played = play().await.unwrap();
    assert_eq!((played.status(), played.bytes().await.unwrap().as_ref()), (reqwest::StatusCode::OK, ZD_AUDIO));
    let listed = w.report(REPORT_TOKEN).await.to_string();
    assert!(!listed.contains(&ZD_API.0) && !listed.contains(ZD_KEY), "neither the API nor its link reach the report");
    assert_eq!(api.lock().unwrap().as_slice(), &[] as &[String], "requests the fake Zadarma API refused");
    still_exactly(&w.fake, 1, Duration::from_millis(500)).await;
    w.node.stop().await;
}

/// A call through Mango Office's realtime events, posted to `<address>/events/...` as Mango
/// does, out of order (the summary before a late `Connected`): one call, answered, one event.
#[tokio::test]
async fn mango_events_record_one_call_for_the_visitor() {
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let http = reqwest::Client::new();
    let line = number.trim_start_matches('+').to_owned();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = Ts::now().as_millis() / 1000;
    let post = |event: &'static str, json: String, key: &'static str| {
        let sign = callpool::pbx::mango::sign(key, &json, MANGO_SALT);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("vpbx_api_key", key), ("sign", sign.as_str()), ("json", json.as_str())])
            .finish();
        http.post(w.node.url(&format!("/v1/pbx/calls/mango/{event}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let call = |state: &str, seq: u32, at: i64| {
        serde_json::json!({"entry_id": "bWFuZ28tMQ==", "call_id": "leg-1", "timestamp": at, "seq": seq,
            "call_state": state, "location": "abonent", "from": {"number": "79161234567"},
            "to": {"extension": "12", "number": "74951230099", "line_number": line}})
        .to_string()
    };
    assert_eq!(post("events/call", call("Appeared", 1, now), MANGO_KEY).await.unwrap().status(), 200);
    let summary = serde_json::json!({"entry_id": "bWFuZ28tMQ==", "call_direction": 1,
        "from": {"number": "79161234567"}, "to": {"extension": "12", "number": "74951230099"},
        "line_number": line, "create_time": now, "forward_time": now + 1, "talk_time": now + 5,
        "end_time": now + 18, "entry_result": 1, "disconnect_reason": 1100})
    .to_string();
    assert_eq!(post("events/summary", summary.clone(), MANGO_KEY).await.unwrap().status(), 200);
    assert_eq!(post("events/call", call("Connected", 2, now + 5), MANGO_KEY).await.unwrap().status(), 200, "late");
    assert_eq!(post("events/summary", summary, "not-the-key").await.unwrap().status(), 401, "a foreign key");
    assert_eq!(post("events/ping", "{}".into(), MANGO_KEY).await.unwrap().status(), 200, "ignored");
    eventually("GA4 got the call", || async { w.fake.ga4_accepted().len() == 1 }).await;
    let calls = w.report(REPORT_TOKEN).await["calls"].as_array().cloned().unwrap();
    let call = calls.iter().find(|c| c["call_id"] == "bWFuZ28tMQ==").expect("the call is in the report");
    assert_eq!(
        (call["match"].as_str(), call["status"].as_str(), call["duration"].as_u64(), call["answered"].as_bool()),
        (Some("active"), Some("completed"), Some(13), Some(true))
    );
    still_exactly(&w.fake, 1, Duration::from_millis(500)).await;

    // Its recording: Mango names it by id; a report user plays it through callpool, which asks
    // Mango's API (the fake) for it with the VPBX's key and a sign.
    let recording = |state: &str, seq: u32, done: bool| {
        let mut json = serde_json::json!({"recording_id": MANGO_RECORDING, "recording_state": state, "seq": seq,
            "call_id": "leg-1", "entry_id": "bWFuZ28tMQ==", "extension": "12", "timestamp": now + 5 + i64::from(seq)});
        if done {
            json["completion_code"] = 1000.into();
            json["recipient"] = "Cloud".into();
        }
        json.to_string()
    };
    let link_of_the_call = || async {
        let calls = w.report(REPORT_TOKEN).await["calls"].as_array().cloned().unwrap();
        calls.iter().find(|c| c["call_id"] == "bWFuZ28tMQ==").expect("the call")["recording"].clone()
    };
    assert_eq!(post("events/recording", recording("Started", 1, false), MANGO_KEY).await.unwrap().status(), 200);
    assert_eq!(link_of_the_call().await, Value::Null, "a recording that goes on is not the call's yet");
    assert_eq!(post("events/recording", recording("Completed", 2, true), MANGO_KEY).await.unwrap().status(), 200);
    let added = serde_json::json!({"entry_id": "bWFuZ28tMQ==", "product_id": 300022532, "user_id": 300049012,
        "timestamp": now + 20, "recording_id": MANGO_RECORDING});
    assert_eq!(post("events/record/added", added.to_string(), MANGO_KEY).await.unwrap().status(), 200, "again");
    let link = link_of_the_call().await.as_str().expect("the call has a recording").to_owned();
    assert_eq!(link, "/v1/reports/shop/recordings/mango:bWFuZ28tMQ%3D%3D");
    let get = |range: Option<&'static str>| {
        let mut req = http.get(w.node.url(&link)).bearer_auth(REPORT_TOKEN);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let whole = get(None).await.unwrap();
    assert_eq!((whole.status().as_u16(), whole.headers()["content-type"].to_str().unwrap()), (200, "audio/mpeg"));
    assert_eq!(whole.bytes().await.unwrap(), mango_audio(), "the file behind Mango's temporary link");
    let part = get(Some("bytes=4-9")).await.unwrap();
    assert_eq!((part.status().as_u16(), part.headers()["content-range"].to_str().unwrap()), (206, "bytes 4-9/4100"));
    assert_eq!(part.bytes().await.unwrap(), mango_audio()[4..10], "a range, on a new link");
    assert!(FAKE_MANGO.violations.lock().unwrap().is_empty(), "{:?}", FAKE_MANGO.violations.lock().unwrap());
    assert_eq!(FAKE_MANGO.links.lock().unwrap().len(), 2, "each link asked for once, and fetched");
    assert!(!w.report(ADMIN_TOKEN).await.to_string().contains(MANGO_RECORDING), "Mango's id stays in callpool");
    w.node.stop().await;
}

const MANGO_RECORDING: &str = "MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=";

/// The recording's bytes, as Mango's file service serves them.
fn mango_audio() -> Vec<u8> {
    b"ID3\x04".iter().copied().chain((0..=255u8).cycle().take(4096)).collect()
}

/// What the fake of Mango's API saw: its objections, and each temporary link it handed out with
/// whether it was fetched.
#[derive(Default)]
struct FakeMango {
    violations: std::sync::Mutex<Vec<String>>,
    links: std::sync::Mutex<Vec<(String, bool)>>,
}

static FAKE_MANGO: std::sync::LazyLock<FakeMango> = std::sync::LazyLock::new(FakeMango::default);

/// The base URL of a fake of Mango's VPBX API (`.../vpbx`), one for the test binary (the shared
/// config names it), on a thread of its own.
fn fake_mango_api() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/vpbx", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, axum::Router::new().fallback(fake_mango)).await.unwrap();
            });
        });
        url
    })
}

/// Mango's API as its documentation (§3.5.1) has it, strictly: `POST /vpbx/queries/recording/post`
/// with the form `vpbx_api_key`, `sign` = hex(sha256(key + json + salt)), `json` =
/// `{"recording_id", "action": "play" | "download"}` is answered `302 Found` to a temporary link
/// on the file service, good for one fetch (a `Range` honoured). Anything else is a violation,
/// answered 400.
async fn fake_mango(req: axum::extract::Request) -> axum::response::Response {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    use sha2::Digest;
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 16).await.unwrap_or_default();
    let sent = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut problems = Vec::new();
    let answer = match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/vpbx/queries/recording/post") => {
            let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
            let field = |name: &str| form.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
            let (key, sign, json) = (field("vpbx_api_key"), field("sign"), field("json"));
            let mut names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
            names.sort_unstable();
            let expected = hex::encode(sha2::Sha256::digest(format!("{MANGO_KEY}{json}{MANGO_SALT}")));
            let query: Value = serde_json::from_str(json).unwrap_or_default();
            let fields: Vec<&String> = query.as_object().map(|o| o.keys().collect()).unwrap_or_default();
            for (ok, problem) in [
                (sent(header::CONTENT_TYPE) == "application/x-www-form-urlencoded", "not a form"),
                (names == ["json", "sign", "vpbx_api_key"], "not exactly vpbx_api_key, sign and json"),
                (key == MANGO_KEY, "not the VPBX's key"),
                (sign == expected, "sign is not hex(sha256(vpbx_api_key + json + vpbx_api_salt))"),
                (fields.len() == 2, "json is not {recording_id, action}"),
                (query["recording_id"] == MANGO_RECORDING, "not the recording's id"),
                (query["action"] == "play" || query["action"] == "download", "action is not play or download"),
            ] {
                if !ok {
                    problems.push(format!("{problem}: {}", String::from_utf8_lossy(&body)));
                }
            }
            let mut links = FAKE_MANGO.links.lock().unwrap();
            let link = format!("/files/{}", links.len());
            links.push((link.clone(), false));
            let location = format!("http://{}{link}", sent(header::HOST));
            (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
        }
        ("GET", path) if path.starts_with("/files/") => {
            let mut links = FAKE_MANGO.links.lock().unwrap();
            match links.iter_mut().find(|(link, fetched)| link == path && !*fetched) {
                Some((_, fetched)) => *fetched = true,
                None => problems.push(format!("{path}: not a link handed out, or fetched before")),
            }
            let audio = mango_audio();
            let range = sent(header::RANGE).strip_prefix("bytes=").and_then(|r| r.split_once('-'));
            let range = range.and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
            match range {
                Some((from, to)) if from <= to && to < audio.len() => {
                    let content_range = format!("bytes {from}-{to}/{}", audio.len());
                    let headers =
                        [(header::CONTENT_TYPE, "audio/mpeg".to_owned()), (header::CONTENT_RANGE, content_range)];
                    (StatusCode::PARTIAL_CONTENT, headers, audio[from..=to].to_vec()).into_response()
                }
                _ => (StatusCode::OK, [(header::CONTENT_TYPE, "audio/mpeg")], audio).into_response(),
            }
        }
        (method, path) => {
            problems.push(format!("{method} {path}: not what Mango's API serves"));
            StatusCode::NOT_FOUND.into_response()
        }
    };
    if problems.is_empty() {
        answer
    } else {
        FAKE_MANGO.violations.lock().unwrap().extend(problems);
        StatusCode::BAD_REQUEST.into_response()
    }
}

/// A call through Sipuni as its events arrive (the start as a GET with the token in the URL, the
/// answer and the end as POSTs, the end repeated): one call, matched to the visitor, one GA4
/// event, every event answered `{"success":true}`; an event with a wrong token records nothing.
#[tokio::test]
async fn sipuni_events_record_one_call_for_the_visitor() {
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let http = reqwest::Client::new();
    // Sipuni's times are whole seconds: the call comes a second after the number was shown.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let start = Ts::now().as_millis() / 1000;
    let line = number.trim_start_matches('+').to_owned();
    // An incoming call's leg to extension 201, naming the dialled line in pbxdstnum.
    let fields = |call_id: &str, event: &str, at: i64, extra: &[(&str, String)]| {
        let mut f: Vec<(&str, String)> = vec![
            ("event", event.into()),
            ("call_id", call_id.into()),
            ("src_num", "79161234567".into()),
            ("src_type", "1".into()),
            ("dst_num", "070196201".into()),
            ("dst_type", "2".into()),
            ("short_dst_num", "201".into()),
            ("pbxdstnum", line.clone()),
            ("timestamp", at.to_string()),
            ("treeName", "Входящая".into()),
            ("treeNumber", "000-1734442".into()),
        ];
        f.extend(extra.iter().cloned());
        form_urlencoded::Serializer::new(String::new()).extend_pairs(&f).finish()
    };
    let call_id = format!("{start}.533962");
    let answered = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    };
    let success = (200, r#"{"success":true}"#.to_owned());

    let get =
        |token: &str, query: String| http.get(w.node.url(&format!("/v1/pbx/calls/sip?token={token}&{query}"))).send();
    let started = get(SIP_TOKEN, fields(&call_id, "1", start, &[])).await.unwrap();
    assert_eq!(answered(started).await, success, "the start, as a GET");
    let post = |body: String| {
        http.post(w.node.url(&format!("/v1/pbx/calls/sip?token={SIP_TOKEN}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    assert_eq!(answered(post(fields(&call_id, "3", start, &[])).await.unwrap()).await, success, "the answer");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let end = fields(
        &call_id,
        "2",
        start + 1,
        &[
            ("status", "ANSWER".into()),
            ("call_start_timestamp", start.to_string()),
            ("call_answer_timestamp", start.to_string()),
            ("last_called", "201".into()),
            ("call_record_link", format!("https://sipuni.com/api/crm/record?id={call_id}&hash=93247a3b")),
        ],
    );
    for _ in 0..2 {
        assert_eq!(answered(post(end.clone()).await.unwrap()).await, success, "the end, and its repeat");
    }
    let forged = get("wrong-token-0123456789", fields("forged.1", "1", start, &[])).await.unwrap();
    assert_eq!(forged.status(), 401, "a wrong token");
    let bare = http.get(w.node.url(&format!("/v1/pbx/calls/sip?{}", fields("forged.2", "1", start, &[])))).send();
    assert_eq!(bare.await.unwrap().status(), 401, "no token");

    eventually("GA4 got the call", || async { w.fake.ga4_accepted().len() == 1 }).await;
    let calls = w.report(REPORT_TOKEN).await["calls"].as_array().cloned().unwrap();
    let call = calls.iter().find(|c| c["call_id"] == call_id.as_str()).expect("the call is in the report");
    assert_eq!(
        (call["match"].as_str(), call["status"].as_str(), call["duration"].as_u64(), call["called"].as_str()),
        (Some("active"), Some("completed"), Some(1), Some(number.as_str()))
    );
    assert!(
        calls.iter().all(|c| !c["call_id"].as_str().unwrap_or("").starts_with("forged")),
        "nothing stored: {calls:?}"
    );
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"bad_token\"}").await, 2.0);
    still_exactly(&w.fake, 1, Duration::from_millis(500)).await;
    w.node.stop().await;
}

/// A call through UIS's HTTP notifications, in the JSON templates docs/PBX.md gives, filled in as
/// UIS fills them (strings quoted, numbers bare, times in the account's zone without an offset) and
/// posted to `/v1/pbx/calls/uis?token=`: the start, the talk, the end and a repeat are one call,
/// matched to the visitor, with one GA4 event; a notification without the right token records
/// nothing.
#[tokio::test]
async fn uis_notifications_record_one_call_for_the_visitor() {
    use callpool::pbx::uis::{ANSWERED_TEMPLATE, FINISHED_TEMPLATE, START_TEMPLATE};
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let http = reqwest::Client::new();
    let moscow =
        || chrono::Utc::now().with_timezone(&chrono_tz::Europe::Moscow).format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let start = moscow();
    let virtual_number = number.trim_start_matches('+').to_owned();
    let notify = |template: &str, call_session_id: u64, time: String, token: &str| {
        let vars = json!({
            "call_session_id": call_session_id, "virtual_phone_number": virtual_number,
            "contact_phone_number": "79161234567", "notification_time": time, "direction": "in",
            "start_time": start, "talk_time_duration": 42,
        });
        let mut body = template.to_owned();
        for (name, value) in vars.as_object().unwrap() {
            body = body.replace(&format!("{{{{{name}}}}}"), &value.to_string());
        }
        assert!(!body.contains("{{"), "{body}");
        let req = http
            .post(w.node.url(&format!("/v1/pbx/calls/uis?token={token}")))
            .header("content-type", "application/json")
            .body(body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let answer =
        |(status, body): (u16, Value)| (status, body["result"].as_str().map(str::to_owned), body["status"].clone());
    let ok = |result: &str, status: &str| (200, Some(result.to_owned()), json!(status));
    assert_eq!(answer(notify(START_TEMPLATE, 998677427, start.clone(), UIS_TOKEN).await), ok("new", "ringing"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(answer(notify(ANSWERED_TEMPLATE, 998677427, moscow(), UIS_TOKEN).await), ok("updated", "answered"));
    let (status, body) = notify(FINISHED_TEMPLATE, 998677428, moscow(), "not-the-uis-token-0123").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("bad_signature")), "a wrong token");
    assert_eq!(notify(START_TEMPLATE, 998677429, moscow(), "").await.0, 401, "no token");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let end = moscow();
    assert_eq!(answer(notify(FINISHED_TEMPLATE, 998677427, end.clone(), UIS_TOKEN).await), ok("updated", "completed"));
    let repeat = notify(FINISHED_TEMPLATE, 998677427, end, UIS_TOKEN).await;
    assert_eq!(answer(repeat), ok("unchanged", "completed"), "a repeat is answered, nothing changes");
    eventually("GA4 got the call", || async { w.fake.ga4_accepted().len() == 1 }).await;
    let calls = w.report(REPORT_TOKEN).await["calls"].as_array().cloned().unwrap();
    let call = calls.iter().find(|c| c["call_id"] == "998677427").expect("the call is in the report");
    assert_eq!(
        (call["match"].as_str(), call["status"].as_str(), call["duration"].as_u64(), call["called"].as_str()),
        (Some("active"), Some("completed"), Some(42), Some(number.as_str()))
    );
    let admin = w.report(ADMIN_TOKEN).await;
    let ids: Vec<&str> = admin["calls"].as_array().unwrap().iter().filter_map(|c| c["call_id"].as_str()).collect();
    assert!(!ids.iter().any(|id| id.starts_with("99867742") && *id != "998677427"), "refused ones: {ids:?}");
    still_exactly(&w.fake, 1, Duration::from_millis(500)).await;
    w.node.stop().await;
}

/// A PBX may also require a static token (in the URL or a bearer header) and post only from its
/// own networks: anything else is refused before the signature is read, and nothing is stored.
#[tokio::test]
async fn a_pbx_may_also_require_a_token_and_its_own_addresses() {
    let w = World::start(Backend::Embedded).await;
    let post = |from: [u8; 4], query: String, bearer: Option<&'static str>, i: usize| {
        let body = call_json(&format!("lock-{i}"), "+74951234567", "completed");
        let t = Ts::now().as_millis() / 1000;
        let client = reqwest::Client::builder().local_address(std::net::IpAddr::from(from)).build().unwrap();
        let mut req = client
            .post(w.node.url(&format!("/v1/pbx/calls?pbx=locked{query}")))
            .header("content-type", "application/json")
            .header("callpool-signature", callpool::pbx::signature::sign(PBX_SECRET, t, body.as_bytes()))
            .body(body);
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ok = format!("&token={LOCK_TOKEN}");
    assert_eq!(post([127, 0, 0, 1], ok.clone(), None, 0).await.0, 200, "token in the URL");
    assert_eq!(post([127, 0, 0, 2], String::new(), Some(LOCK_TOKEN), 1).await.0, 200, "token as a bearer");
    let (status, body) = post([127, 0, 0, 1], "&token=wrong-token-0123456789".into(), None, 2).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("bad_signature")));
    assert_eq!(post([127, 0, 0, 1], String::new(), None, 3).await.0, 401, "no token");
    let (status, body) = post([127, 0, 0, 5], ok, None, 4).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("forbidden_address")), "127.0.0.5 is outside /30");
    let report = w.report(ADMIN_TOKEN).await;
    let ids: Vec<&str> = report["calls"].as_array().unwrap().iter().filter_map(|c| c["call_id"].as_str()).collect();
    assert_eq!(ids.len(), 2, "only the two let in are stored: {ids:?}");
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"bad_token\"}").await, 2.0);
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"address\"}").await, 1.0);
    // The operator sees what each request came to, newest first, without bodies or tokens.
    let seen: Value = w.node.admin_get("/v1/admin/pbx").await.json().await.unwrap();
    let locked = seen["pbxs"].as_array().unwrap().iter().find(|p| p["pbx"] == "locked").unwrap().clone();
    let outcomes: Vec<(String, String, String)> = locked["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let code = r["code"].as_str().unwrap_or("").to_owned();
            (r["outcome"].as_str().unwrap().to_owned(), code, r["from"].as_str().unwrap().to_owned())
        })
        .collect();
    let o = |outcome: &str, code: &str, from: &str| (outcome.to_owned(), code.to_owned(), from.to_owned());
    assert_eq!(
        outcomes,
        vec![
            o("refused", "forbidden_address", "127.0.0.5"),
            o("refused", "bad_signature", "127.0.0.1"),
            o("refused", "bad_signature", "127.0.0.1"),
            o("recorded", "", "127.0.0.2"),
            o("recorded", "", "127.0.0.1"),
        ]
    );
    assert_eq!(locked["requests"][4]["calls"], serde_json::json!(["lock-0: new"]));
    assert!(!seen.to_string().contains(LOCK_TOKEN), "no token in the list");
    w.node.stop().await;
}

#[tokio::test]
async fn each_pbx_is_rate_limited_on_its_own() {
    let w = World::start(Backend::Embedded).await;
    let post = |pbx: &'static str, i: usize| {
        let body = call_json(&format!("r-{pbx}-{i}"), "+74951234567", "completed");
        let t = Ts::now().as_millis() / 1000;
        reqwest::Client::new()
            .post(w.node.url(&format!("/v1/pbx/calls?pbx={pbx}")))
            .header("content-type", "application/json")
            .header("callpool-signature", callpool::pbx::signature::sign(PBX_SECRET, t, body.as_bytes()))
            .body(body)
            .send()
    };
    let mut statuses = Vec::new();
    for i in 0..4 {
        statuses.push(post("slow", i).await.unwrap().status().as_u16());
    }
    assert_eq!(statuses, vec![200, 200, 429, 429], "a burst of two, then refused");
    let refused = post("slow", 9).await.unwrap();
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(post("office", 0).await.unwrap().status(), 200, "another PBX is not affected");
    assert_eq!(w.node.metric("callpool_pbx_webhooks_rejected_total{reason=\"rate_limited\"}").await, 3.0);
    // Unsigned requests from one address are limited before they are verified, and spend no
    // budget of the PBX's own requests from elsewhere.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forger = reqwest::Client::builder().local_address(std::net::IpAddr::from([127, 0, 0, 2])).build().unwrap();
    let mut forged = Vec::new();
    for i in 0..4 {
        let body = call_json(&format!("f-{i}"), "+74951234567", "completed");
        let sent = forger
            .post(w.node.url("/v1/pbx/calls?pbx=slow"))
            .header("content-type", "application/json")
            .header("callpool-signature", format!("t={},v1=00", Ts::now().as_millis() / 1000))
            .body(body)
            .send();
        forged.push(sent.await.unwrap().status().as_u16());
    }
    assert_eq!(forged, vec![401, 401, 429, 429], "refused unread once the address used the PBX's rate");
    assert_eq!(post("slow", 20).await.unwrap().status(), 200, "the PBX itself is not held up by them");
    w.node.stop().await;
}

async fn old_calls_are_forgotten(backend: Backend) {
    let w = World::start(backend).await;
    let old = json!({"call_id": "old-1", "called": "+74951234567", "caller": CALLER,
        "started_at": (chrono::Utc::now() - chrono::Duration::days(10)).to_rfc3339(), "status": "completed"});
    assert_eq!(w.post(&old.to_string()).await.status(), 200);
    assert_eq!(w.post(&call_json("new-1", "+74951234567", "completed")).await.status(), 200);
    let before = Ts::now().minus(Duration::from_secs(5 * 86_400));
    assert_eq!(callpool::reaper::forget_before(&w.node.app, before, 1000).await.unwrap(), 1);
    let report = w.report(ADMIN_TOKEN).await;
    let ids: Vec<&str> = report["calls"].as_array().unwrap().iter().map(|c| c["call_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["new-1"], "{report}");
    assert_eq!(callpool::reaper::forget_before(&w.node.app, before, 1000).await.unwrap(), 0, "nothing left to forget");
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_calls_older_than_the_retention_are_forgotten() {
    old_calls_are_forgotten(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_calls_older_than_the_retention_are_forgotten() {
    old_calls_are_forgotten(Backend::Redis).await;
}

#[tokio::test]
async fn a_real_twilio_status_callback_is_checked_with_twilios_signature() {
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let form = |sid: &str| {
        format!(
            "AccountSid=AC1&CallSid={sid}&From=%2B79161234567&To={}&CallStatus=in-progress&Direction=inbound",
            number.replace('+', "%2B")
        )
    };
    let post = |body: String, signature: String| {
        reqwest::Client::new()
            .post(w.node.url("/v1/pbx/calls?pbx=tw"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-twilio-signature", signature)
            .body(body)
            .send()
    };
    let body = form("CA0001");
    let ok = post(body.clone(), callpool::pbx::twilio::sign(TWILIO_URL, body.as_bytes(), TWILIO_TOKEN)).await.unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!((v["match"].as_str(), v["status"].as_str()), (Some("active"), Some("answered")));
    // Signed for another URL, or with another token: refused, nothing recorded.
    let other = form("CA0002");
    let wrong_url = callpool::pbx::twilio::sign("https://evil.example/x", other.as_bytes(), TWILIO_TOKEN);
    assert_eq!(post(other.clone(), wrong_url).await.unwrap().status(), 401);
    let wrong_token = callpool::pbx::twilio::sign(TWILIO_URL, other.as_bytes(), "another-token-0123456");
    assert_eq!(post(other, wrong_token).await.unwrap().status(), 401);
    let ids: Vec<String> = w.report(ADMIN_TOKEN).await["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec!["CA0001"]);
    w.node.stop().await;
}

#[tokio::test]
async fn a_twilio_kind_pbx_takes_only_twilios_signed_status_callbacks() {
    let w = World::start(Backend::Embedded).await;
    let (_tab, number) = w.visitor_with_number().await;
    let body = format!("CallSid=CA0009&From=%2B79161234567&To={}&CallStatus=ringing", number.replace('+', "%2B"));
    let post = |headers: Vec<(&'static str, String)>| {
        let mut req = reqwest::Client::new()
            .post(w.node.url("/v1/pbx/calls?pbx=twk"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let t = Ts::now().as_millis() / 1000;
    let callpool_signed = callpool::pbx::signature::sign(PBX_SECRET, t, body.as_bytes());
    let refused = post(vec![("callpool-signature", callpool_signed)]).await.unwrap();
    assert_eq!(refused.status(), 401, "a Twilio PBX does not take callpool's signature");
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["message"], "send X-Twilio-Signature");
    let signed = callpool::pbx::twilio::sign(TWILIO_KIND_URL, body.as_bytes(), TWILIO_TOKEN);
    let ok = post(vec![("x-twilio-signature", signed)]).await.unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!((v["call_id"].as_str(), v["match"].as_str()), (Some("CA0009"), Some("active")));
    w.node.stop().await;
}

/// A delivery GA4 refuses is a dead letter at once; the operator lists it, fixes the cause and
/// puts it back in the queue, and it goes out once.
async fn a_refused_delivery_is_a_dead_letter_until_requeued(backend: Backend) {
    use std::sync::atomic::Ordering;
    let w = World::start(backend).await;
    let (_tab, number) = w.visitor_with_number().await;
    w.fake.refusing.store(true, Ordering::SeqCst);
    assert_eq!(w.post(&call_json("c-dead", &number, "completed")).await.status(), 200);
    let dead = || async {
        let v: Value = w.node.admin_get("/v1/admin/dead-letters?kind=ga4").await.json().await.unwrap();
        v["dead_letters"].as_array().unwrap().clone()
    };
    eventually("GA4's refusal made a dead letter", || async { !dead().await.is_empty() }).await;
    let letter = &dead().await[0];
    assert_eq!((letter["kind"].as_str(), letter["id"].as_str()), (Some("ga4"), Some("office:c-dead")));
    assert_eq!(letter["error"], "GA4 refused it: HTTP 400 Bad Request");
    assert_eq!(w.report(ADMIN_TOKEN).await["calls"][0]["ga4"], "dead: GA4 refused it: HTTP 400 Bad Request");
    let refused = reqwest::Client::new()
        .post(w.node.url("/v1/admin/dead-letters/requeue"))
        .json(&json!({"kind": "ga4", "ids": ["office:c-dead"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "the admin token is required");
    let unknown: Value = w.node.admin_get("/v1/admin/dead-letters?kind=fax").await.json().await.unwrap();
    assert_eq!(unknown["error"]["code"], "bad_request");
    let malformed = w.node.admin_get("/v1/admin/dead-letters?limit=many").await;
    assert_eq!(malformed.status(), 400);
    let malformed: Value = malformed.json().await.unwrap();
    assert_eq!(malformed["error"]["code"], "bad_request", "a bad query parameter gets the API's error body");
    let trigger = reqwest::Client::new()
        .post(w.node.url("/v1/admin/dead-letters/requeue"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "trigger", "ids": ["cb-0"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 400, "a callback that could not be placed is over");
    w.fake.refusing.store(false, Ordering::SeqCst);
    let requeued: Value = reqwest::Client::new()
        .post(w.node.url("/v1/admin/dead-letters/requeue"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "ga4", "ids": ["office:c-dead", "office:nope"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(requeued, json!({"requeued": ["office:c-dead"], "not_found": ["office:nope"]}));
    eventually("GA4 received the call once re-queued", || async { w.fake.ga4_accepted().len() == 1 }).await;
    still_exactly(&w.fake, 1, Duration::from_millis(700)).await;
    assert!(dead().await.is_empty());
    assert_eq!(w.report(ADMIN_TOKEN).await["calls"][0]["ga4"], "sent");
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_a_refused_delivery_is_a_dead_letter_until_requeued() {
    a_refused_delivery_is_a_dead_letter_until_requeued(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_a_refused_delivery_is_a_dead_letter_until_requeued() {
    a_refused_delivery_is_a_dead_letter_until_requeued(Backend::Redis).await;
}

async fn ended_visits_are_recorded(backend: Backend) {
    let w = World::start(backend).await;
    let (a, _) = w.visitor_with_number().await;
    let mut b = WsTab::open(w.node.addr, "shop-public-key", ORIGIN).await;
    b.hello(CLIENT_ID, PAGE).await;
    assert_eq!(b.number().await.1, "tracking", "the second tab joins the visit");
    drop(a);
    drop(b);
    let shop = callpool_pool::SiteId::new("shop").unwrap();
    let (from, to) = (Ts::now().minus(Duration::from_secs(3600)), Ts::now().plus(Duration::from_secs(60)));
    eventually("the visit was recorded", || async {
        !w.node.app.store.visits(&shop, from, to, 10).await.unwrap().is_empty()
    })
    .await;
    let visits = w.node.app.store.visits(&shop, from, to, 10).await.unwrap();
    assert_eq!(visits.len(), 1, "{visits:?}");
    let v = &visits[0];
    assert_eq!((v.visitor.as_str(), v.tabs, v.source.as_str(), v.tracked), (CLIENT_ID, 2, "google", true));
    assert!(v.first_seen <= v.last_active && v.last_active <= v.closed, "{v:?}");
    w.node.stop().await;
}

#[tokio::test]
async fn embedded_ended_visits_are_recorded() {
    ended_visits_are_recorded(Backend::Embedded).await;
}

#[tokio::test]
async fn redis_ended_visits_are_recorded() {
    ended_visits_are_recorded(Backend::Redis).await;
}
