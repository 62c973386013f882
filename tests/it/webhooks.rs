//! The site's own call webhooks (`[[site.webhooks]]`), against a strict local receiver that checks
//! every signature with both secrets: a call reported ringing, answered and completed reaches it
//! as `call.started`, `call.answered`, `call.completed`, in that order, each once per delivery id
//! (a receiver that answers 500 for a while gets the same id again, and the later events wait
//! for it); a second URL takes only the final event, with the caller masked.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::common::*;
use callpool::config::Config;

const PBX_SECRET: &str = "office-secret-0123456789";
const SECRETS: [&str; 2] = ["hook-secret-old-0123456789", "hook-secret-new-0123456789"];
const CALLER: &str = "+79161234567";

/// A request the receiver took: path, event, delivery id, body.
type Took = (String, String, String, Value);

#[derive(Clone, Default)]
struct Receiver {
    took: Arc<Mutex<Vec<Took>>>,
    violations: Arc<Mutex<Vec<String>>>,
    /// Answer 500 to this many `call.started` requests first.
    fail_started: Arc<Mutex<u32>>,
    /// Answer 429 to everything while set (a CRM over its rate limit), counting the refusals.
    limited: Arc<Mutex<Option<u32>>>,
}

impl Receiver {
    async fn start(&self) -> String {
        let me = self.clone();
        serve_fake(move |req| {
            let me = me.clone();
            async move { me.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: axum::extract::Request) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode;
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
        let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut problems = Vec::new();
        if parts.method != "POST" || header("content-type") != "application/json" {
            problems.push(format!("{} {}", parts.method, header("content-type")));
        }
        // Both secrets sign it (the receiver may hold either while they rotate).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        for secret in SECRETS {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("callpool-signature", header("callpool-signature").parse().unwrap());
            let at = callpool_pool::Ts::from_millis(now * 1000);
            if callpool::pbx::signature::verify(&headers, &body, &[secret.to_owned()], at).is_err() {
                problems.push(format!("the signature does not verify with {secret}"));
            }
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let (event, delivery) = (header("callpool-event"), header("callpool-delivery"));
        if v["type"] != event.as_str() || v["id"] != delivery.as_str() || delivery.is_empty() {
            problems.push(format!("headers {event}/{delivery} against the body's {} {}", v["type"], v["id"]));
        }
        if !problems.is_empty() {
            self.violations.lock().unwrap().extend(problems);
            return (StatusCode::BAD_REQUEST, String::new());
        }
        if let Some(n) = self.limited.lock().unwrap().as_mut() {
            *n += 1;
            return (StatusCode::TOO_MANY_REQUESTS, String::new());
        }
        if event == "call.started" {
            let mut n = self.fail_started.lock().unwrap();
            if *n > 0 {
                *n -= 1;
                return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
            }
        }
        self.took.lock().unwrap().push((parts.uri.path().to_owned(), event, delivery, v));
        (StatusCode::OK, String::new())
    }

    fn events(&self, path: &str) -> Vec<(String, String, Value)> {
        let took = self.took.lock().unwrap();
        took.iter().filter(|t| t.0 == path).map(|t| (t.1.clone(), t.2.clone(), t.3.clone())).collect()
    }
}

fn config(dir: &std::path::Path, hooks: &str) -> Config {
    config_with(dir, hooks, "100ms")
}

fn config_with(dir: &std::path::Path, hooks: &str, retry_base: &str) -> Config {
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[analytics]
retry_base = "{retry_base}"

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]

{site}

[[site.webhooks]]
url = "{hooks}/crm"
secrets = ["{old}", "{new}"]

[[site.webhooks]]
url = "{hooks}/sheet"
secrets = ["{old}", "{new}"]
caller = "masked"
events = ["call.completed", "call.missed"]
"#,
        data = dir.join("data").display().to_string(),
        site = shop_site("https://shop.example", "0s", "30m", "30m"),
        old = SECRETS[0],
        new = SECRETS[1],
    );
    Config::parse(&text, "webhooks-test.toml", &std::collections::HashMap::new()).expect("test config")
}

async fn report(node: &Node, status: &str) {
    let call = json!({
        "call_id": "c-1", "called": "+74951234567", "caller": CALLER,
        "started_at": callpool_pool::Ts::now().as_millis() / 1000 - 30, "status": status, "duration": 42,
    });
    post_call(node, PBX_SECRET, &call).await;
}

#[tokio::test]
async fn a_calls_events_reach_each_url_in_order_signed_and_once_per_delivery() {
    let receiver = Receiver::default();
    *receiver.fail_started.lock().unwrap() = 3;
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(config(dir.path(), &url)).await;

    report(&node, "ringing").await;
    report(&node, "answered").await;
    report(&node, "completed").await;
    eventually("the CRM has the call's three events", || async { receiver.events("/crm").len() >= 3 }).await;
    eventually("the sheet has the final one", || async { !receiver.events("/sheet").is_empty() }).await;
    // Give a duplicate a moment to show.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let crm = receiver.events("/crm");
    let kinds: Vec<&str> = crm.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        kinds,
        ["call.started", "call.answered", "call.completed"],
        "in order, though call.started failed 3 times first"
    );
    let ids: std::collections::BTreeSet<&str> = crm.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(ids.len(), 3, "one delivery id per event");
    let done = &crm[2].2;
    assert_eq!(done["site"], "shop");
    assert_eq!((done["call"]["id"].as_str(), done["call"]["pbx"].as_str()), (Some("c-1"), Some("office")));
    assert_eq!(done["call"]["caller"], CALLER, "the CRM takes the caller in full");
    assert_eq!((done["call"]["status"].as_str(), done["call"]["duration"].as_u64()), (Some("completed"), Some(42)));
    assert_eq!(done["match"]["kind"], "default_before");

    let sheet = receiver.events("/sheet");
    assert_eq!(sheet.len(), 1, "{sheet:?}");
    assert_eq!(sheet[0].0, "call.completed");
    assert_eq!(sheet[0].2["call"]["caller"], "+7********67", "the sheet takes it masked");
    assert_eq!(receiver.violations.lock().unwrap().clone(), Vec::<String>::new());

    // /openapi.json describes the body, as OpenAPI 3.1's webhooks.
    let doc: Value = node.get("/openapi.json").await.json().await.unwrap();
    assert_eq!(
        doc["webhooks"]["call"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/CallEvent"
    );
    let facts = doc["components"]["schemas"]["CallFacts"]["properties"].as_object().unwrap();
    for key in done["call"].as_object().unwrap().keys() {
        assert!(facts.contains_key(key), "call.{key} is not in the documented CallFacts");
    }

    // The admin API's test sends a sample event to each URL, signed, and says how each took it.
    let resp = reqwest::Client::new()
        .post(node.url("/v1/admin/webhooks/shop/test"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let test: Value = resp.json().await.unwrap();
    let taken: Vec<bool> = test["deliveries"].as_array().unwrap().iter().map(|d| d["taken"] == true).collect();
    assert_eq!(taken, [true, true], "{test}");
    let sample = receiver.events("/crm").last().cloned().unwrap();
    assert!(sample.1.starts_with("test|") && sample.0 == "call.completed", "{sample:?}");

    // The deliveries show in the node's status like every destination's.
    let st: Value = node.admin_get("/v1/admin/status").await.json().await.unwrap();
    let kinds: Vec<&str> = st["destinations"].as_array().unwrap().iter().filter_map(|d| d["kind"].as_str()).collect();
    assert!(kinds.contains(&"wh_call_started") && kinds.contains(&"wh_cb_finished"), "{kinds:?}");
    node.stop().await;
}

/// A receiver over its rate limit (429) while callpool restarts: the events wait in the store,
/// and the restarted node delivers them, in order, once the receiver takes them again.
#[tokio::test]
async fn events_survive_a_restart_while_the_receiver_answers_429() {
    let receiver = Receiver::default();
    *receiver.limited.lock().unwrap() = Some(0);
    let url = receiver.start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(config_with(dir.path(), &url, "300ms")).await;
    report(&node, "ringing").await;
    report(&node, "completed").await;
    eventually("the receiver refused a few", || async { receiver.limited.lock().unwrap().unwrap_or(0) >= 2 }).await;
    node.stop().await;

    *receiver.limited.lock().unwrap() = None;
    let node = Node::restart_on(config_with(dir.path(), &url, "300ms")).await;
    eventually("the restarted node delivered all three", || async { receiver.events("/crm").len() >= 3 }).await;
    let crm = receiver.events("/crm");
    let kinds: Vec<&str> = crm.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["call.started", "call.answered", "call.completed"]);
    let ids: std::collections::BTreeSet<&str> = crm.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(ids.len(), 3);
    // The final event goes to the second URL right after the first.
    eventually("the sheet has the final event", || async { receiver.events("/sheet").len() == 1 }).await;
    node.stop().await;
}
