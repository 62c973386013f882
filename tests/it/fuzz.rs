//! Property tests over every parser that takes network input: websocket frames (parsed, and sent
//! to a live node), each webhook format (signed, so the readers run, and unsigned), the callback
//! form, and the configuration. Each runs a fixed number of cases from a fixed seed, so CI time
//! stays bounded and a failure repeats; `PROPTEST_CASES` does not change them (raise `CASES`
//! here to search longer). What they hold: no panic anywhere, a clear refusal (a documented
//! status or close code) for what is wrong, never a 5xx, and the node answering afterwards.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use callpool::live::protocol::ClientMsg;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};

const CASES: u32 = 512;
const LIVE_CASES: u32 = 96;
const ORIGIN: &str = "https://shop.example";
const PBX_SECRET: &str = "fuzz-pbx-secret-0123456789";
const TWILIO_TOKEN: &str = "fuzz-twilio-token-0123";
const TWILIO_URL: &str = "https://callpool.example.com/v1/pbx/calls?pbx=tw";
const MANGO_KEY: &str = "fuzz-mango-key";

/// A runner with a fixed seed: the same cases every run.
fn runner(cases: u32) -> TestRunner {
    let config = RunConfig { cases, failure_persistence: None, max_shrink_iters: 256, ..RunConfig::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]))
}

/// Runs `strategy`'s cases through `test`; a failure panics with the (shrunk) input.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(e) = runner(cases).run(&strategy, test) {
        panic!("{e}");
    }
}

/// Text a client may send: any Unicode, the characters parsers trip on, numbers of every
/// shape, and long runs.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[+0-9 ()\\-.]{0,40}",
        "[%&=?#+a-z0-9_.:/]{0,80}",
        "\\PC{0,200}",
        Just(String::new()),
        (1usize..6000).prop_map(|n| "9".repeat(n)),
        (1usize..3000).prop_map(|n| "%".repeat(n)),
        Just("https://shop.example/landing?utm_source=%ZZ&gclid=%E2%82&x".to_owned()),
        Just("+79161234567".to_owned()),
        Just("+8816123456789".to_owned()),
        Just("8 (916) 123-45-67".to_owned()),
        Just("2026-11-22T10:15:00+03:00".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("-0001-01-01T00:00:00Z".to_owned()),
    ]
}

/// A JSON value at most three levels deep.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object whose keys are mostly `fields` (each present or not), with a plausible or
/// arbitrary value each, and now and then a key of its own.
fn object(fields: &'static [&'static str], plausible: fn(&str) -> Vec<Value>) -> impl Strategy<Value = Value> {
    let one = move |name: &'static str| {
        let choices: Vec<BoxedStrategy<Value>> = plausible(name).into_iter().map(|v| Just(v).boxed()).collect();
        let known = proptest::strategy::Union::new(choices.into_iter().chain([value().boxed()]));
        proptest::option::weighted(0.8, known).prop_map(move |v| (name, v))
    };
    let named: Vec<_> = fields.iter().copied().map(one).collect();
    (named, proptest::option::of(("[a-z_]{1,10}", value()))).prop_map(|(named, extra)| {
        let mut m = Map::new();
        for (k, v) in named {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        }
        if let Some((k, v)) = extra {
            m.insert(k, v);
        }
        Value::Object(m)
    })
}

// ---- websocket -------------------------------------------------------------------------------

const WS_FIELDS: &[&str] = &[
    "type",
    "v",
    "visitor",
    "tab",
    "page",
    "referrer",
    "ga_client_id",
    "ga_session_id",
    "ym_uid",
    "visible",
    "number",
];

fn ws_plausible(field: &str) -> Vec<Value> {
    match field {
        "type" => ["hello", "activity", "visibility", "callback_request", "bye"].map(Value::from).to_vec(),
        "v" => vec![json!(1), json!(2), json!(0)],
        "visitor" => vec![json!("1197596843.1673515099"), json!("v-fuzz-0001"), json!("")],
        "tab" => vec![json!("t1"), json!("x".repeat(65))],
        "page" => vec![json!("https://shop.example/?utm_source=a%20b&gclid=1"), json!("javascript:alert(1)")],
        "visible" => vec![json!(true), json!(false)],
        "number" => vec![json!("+79161234567"), json!("8 (916) 123-45-67")],
        _ => vec![json!("x")],
    }
}

/// A frame's text: a message-shaped object, or anything.
fn ws_frame() -> impl Strategy<Value = String> {
    prop_oneof![4 => object(WS_FIELDS, ws_plausible).prop_map(|v| v.to_string()), 1 => text()]
}

#[test]
fn websocket_messages_are_read_or_refused() {
    check(CASES * 4, ws_frame(), |frame| {
        if let Ok(ClientMsg::Hello(h)) = serde_json::from_str::<ClientMsg>(&frame) {
            let _ = h.checked();
            let a = h.attrs();
            for v in [&a.utm_source, &a.utm_medium, &a.utm_campaign, &a.gclid, &a.yclid, &a.landing_page, &a.referrer] {
                prop_assert!(
                    v.as_ref().is_none_or(|v| v.chars().count() <= 256),
                    "an attribute longer than 256: {v:?}"
                );
            }
        }
        Ok(())
    });
}

/// Panics on the threads of the node under test (the test's own assertions run elsewhere).
static NODE_PANICS: AtomicUsize = AtomicUsize::new(0);
const NODE_THREAD: &str = "fuzzed-node";

fn count_node_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(NODE_THREAD) {
                NODE_PANICS.fetch_add(1, Ordering::SeqCst);
            }
            before(info)
        }));
    });
}

/// A node on its own runtime (named threads, so its panics are counted) with the shop site,
/// a callback form and three webhooks: callpool's JSON, the same PBX's form fields, Twilio.
fn fuzzed_node() -> (tokio::runtime::Runtime, Node, tempfile::TempDir) {
    count_node_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(NODE_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]
requests_per_second = 100000

[[pbx]]
id = "tw"
kind = "twilio"
auth_token = "{TWILIO_TOKEN}"
url = "{TWILIO_URL}"
requests_per_second = 100000

[[pbx]]
id = "zd"
kind = "zadarma"
secret = "{PBX_SECRET}"
requests_per_second = 100000

[[pbx]]
id = "mango"
kind = "mango"
api_key = "{MANGO_KEY}"
api_salt = "{PBX_SECRET}"
requests_per_second = 100000

[[pbx]]
id = "sip"
kind = "sipuni"
token = "{PBX_SECRET}"
requests_per_second = 100000

[[pbx]]
id = "uis"
kind = "uis"
token = "{PBX_SECRET}"
requests_per_second = 100000

{site}

[site.callback]
language = "en"
operator = "+74951230099"
pbx = "office"
min_time_on_site = "0s"
limits = {{ per_ip = ["1000000/1m"], per_visitor = ["1000000/1m"], per_number = ["1000000/1m"], per_site = ["1000000/1m"] }}
trigger = {{ kind = "generic", url = "http://127.0.0.1:9/trigger", secret = "fuzz-trigger-secret-0123" }}
"#,
        data = dir.path().join("data").display().to_string(),
        site = shop_site(ORIGIN, "0s", "30m", "1s"),
    );
    let config = Config::parse(&text, "fuzz.toml", &HashMap::new()).expect("fuzz config");
    let node = rt.block_on(Node::start_real(config));
    (rt, node, dir)
}

/// After the cases: no panic on the node's threads, and it still answers.
fn node_survived(rt: &tokio::runtime::Runtime, node: &Node) {
    assert_eq!(NODE_PANICS.load(Ordering::SeqCst), 0, "the node panicked (see the output above)");
    let status = rt.block_on(async { node.get("/readyz").await.status() });
    assert_eq!(status, 200, "the node answers after the fuzzing");
}

/// Close codes the protocol documents (docs/PROTOCOL.md): normal, going away, too large, and
/// callpool's own 44xx.
const CLOSE_CODES: &[u16] = &[1000, 1001, 1009, 4400, 4403, 4404, 4408, 4426, 4429];

#[test]
fn a_tab_that_sends_anything_is_answered_or_closed_with_a_documented_code() {
    let (rt, node, _dir) = fuzzed_node();
    let frames = (any::<bool>(), proptest::collection::vec(ws_frame(), 1..5));
    check(LIVE_CASES, frames, |(hello_first, frames)| {
        rt.block_on(async {
            use futures_util::{SinkExt, StreamExt};
            use tokio_tungstenite::tungstenite::Message;
            let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
            if hello_first {
                tab.hello(&unique("v"), "https://shop.example/").await;
            }
            for f in &frames {
                if tab.stream.send(Message::text(f.clone())).await.is_err() {
                    break;
                }
            }
            loop {
                match tokio::time::timeout(Duration::from_millis(300), tab.stream.next()).await {
                    Err(_) | Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(Message::Text(t)))) => {
                        let v: Value =
                            serde_json::from_str(&t).map_err(|e| TestCaseError::fail(format!("{e}: {t}")))?;
                        prop_assert!(v["type"].is_string(), "a message without a type: {t}");
                    }
                    Ok(Some(Ok(Message::Close(frame)))) => {
                        let code = frame.map(|f| u16::from(f.code));
                        prop_assert!(code.is_some_and(|c| CLOSE_CODES.contains(&c)), "closed with {code:?}");
                        break;
                    }
                    Ok(Some(Ok(_))) => {}
                }
            }
            Ok(())
        })
    });
    node_survived(&rt, &node);
}

// ---- webhooks --------------------------------------------------------------------------------

const CALL_FIELDS: &[&str] =
    &["call_id", "called", "caller", "started_at", "answered_at", "ended_at", "status", "duration", "recording_url"];
const TWILIO_FIELDS: &[&str] =
    &["CallSid", "From", "To", "CallStatus", "CallDuration", "RecordingUrl", "Timestamp", "Direction", "Called"];

fn call_plausible(field: &str) -> Vec<Value> {
    match field {
        "call_id" | "CallSid" => vec![json!("c1"), json!("CA0123"), json!("c 1"), json!("x".repeat(300))],
        "called" | "caller" | "From" | "To" | "Called" => {
            vec![json!("+74951230001"), json!("anonymous"), json!("84951230001"), json!("+8816123456789")]
        }
        "started_at" | "answered_at" | "ended_at" => vec![
            json!("2026-11-22T10:15:00+03:00"),
            json!(1_767_225_600),
            json!(i64::MAX),
            json!(-1),
            json!("9999-12-31T23:59:59Z"),
        ],
        "Timestamp" => vec![json!("Fri, 15 Jan 2027 08:00:30 +0000"), json!("Mon, 99 Foo 99999 99:99:99 +9999")],
        "status" | "CallStatus" => {
            ["ringing", "answered", "completed", "no-answer", "busy", "failed", "in-progress"].map(Value::from).to_vec()
        }
        "duration" | "CallDuration" => vec![json!(63), json!(u32::MAX), json!(-1), json!(1e300), json!("63")],
        "recording_url" | "RecordingUrl" => {
            vec![json!("https://pbx.example/r/1.mp3"), json!("javascript:alert(1)"), json!("http://[::1")]
        }
        _ => vec![json!("x")],
    }
}

/// Form fields as a PBX posts them (values flattened to text).
fn form(v: &Value) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    if let Value::Object(m) = v {
        for (k, v) in m {
            out.append_pair(k, &v.as_str().map_or_else(|| v.to_string(), str::to_owned));
        }
    }
    out.finish()
}

const ZADARMA_FIELDS: &[&str] = &[
    "event",
    "call_start",
    "pbx_call_id",
    "caller_id",
    "called_did",
    "disposition",
    "duration",
    "destination",
    "call_id_with_rec",
];
const SIPUNI_FIELDS: &[&str] = &[
    "event",
    "call_id",
    "src_num",
    "src_type",
    "dst_num",
    "dst_type",
    "pbxdstnum",
    "timestamp",
    "status",
    "call_start_timestamp",
    "call_answer_timestamp",
    "call_record_link",
];
const UIS_FIELDS: &[&str] = &[
    "event",
    "call_session_id",
    "virtual_phone_number",
    "contact_phone_number",
    "notification_time",
    "direction",
    "start_time",
    "talk_time_duration",
    "file_link",
];
const MANGO_FIELDS: &[&str] = &[
    "entry_id",
    "call_id",
    "timestamp",
    "seq",
    "call_state",
    "location",
    "from",
    "to",
    "line_number",
    "call_direction",
    "create_time",
    "talk_time",
    "end_time",
    "entry_result",
    "recording_id",
];

fn vendor_plausible(field: &str) -> Vec<Value> {
    match field {
        "event" => {
            ["NOTIFY_START", "NOTIFY_END", "1", "2", "3", "4", "start", "answered", "finished", "lost", "recorded"]
                .map(Value::from)
                .to_vec()
        }
        "src_type" | "dst_type" => vec![json!("1"), json!("2"), json!("3")],
        "status" => ["ANSWER", "NOANSWER", "BUSY", "CANCEL", "CONGESTION", "CHANUNAVAIL"].map(Value::from).to_vec(),
        "src_num" | "dst_num" | "pbxdstnum" | "virtual_phone_number" | "contact_phone_number" => {
            vec![json!("74951230001"), json!("74951230001_id265648"), json!(74951230001u64), json!("070196201")]
        }
        "call_start_timestamp" | "call_answer_timestamp" => vec![json!("1767225600"), json!("0"), json!("-5")],
        "notification_time" | "start_time" => {
            vec![json!("2026-11-22 10:15:00.234"), json!("2026-11-22T10:15:00+03:00")]
        }
        "direction" => vec![json!("in"), json!("out"), json!(null)],
        "talk_time_duration" => vec![json!(42), json!(0), json!(null), json!(-1)],
        "call_session_id" => vec![json!(123456789), json!("abc"), json!(-1)],
        "call_record_link" | "file_link" => {
            vec![json!("https://app.uiscom.ru/system/media/talk/1/2/"), json!("https%3A%2F%2Fx")]
        }
        "call_start" => vec![json!("2026-11-22 10:15:00"), json!("2026-03-29 02:30:00"), json!("9999-99-99 99:99:99")],
        "caller_id" | "called_did" | "destination" | "line_number" => {
            vec![json!("74951230001"), json!("+74951230001"), json!("anonymous"), json!("sip:line@x.mangosip.ru")]
        }
        "disposition" => {
            ["answered", "busy", "cancel", "no answer", "failed", "no money, no limit"].map(Value::from).to_vec()
        }
        "call_state" => ["Appeared", "Connected", "OnHold", "Disconnected"].map(Value::from).to_vec(),
        "location" => ["abonent", "ivr", "queue"].map(Value::from).to_vec(),
        "from" | "to" => {
            vec![json!({"number": "79161234567"}), json!({"extension": "12", "line_number": "74951230001"})]
        }
        "timestamp" | "create_time" | "talk_time" | "end_time" => {
            vec![json!(1_767_225_600), json!(0), json!(i64::MAX), json!("1767225600")]
        }
        _ => call_plausible(field),
    }
}

#[derive(Debug, Clone)]
enum Webhook {
    /// callpool's signed JSON, to `office`.
    Json(Value),
    /// Twilio-style fields, signed the callpool way, to `office`.
    Form(Value),
    /// Twilio's own status callback, signed the Twilio way, to `tw`.
    Twilio(Value),
    /// Zadarma's notification fields, signed as Zadarma signs them, to `zd`.
    Zadarma(Value),
    /// A Mango Office event, signed, posted to the path Mango appends, to `mango`.
    Mango(String, Value),
    /// Sipuni's event fields (unsigned; the token in the URL), to `sip`.
    Sipuni(Value),
    /// A UIS notification built from callpool's templates' fields, to `uis`.
    Uis(Value),
    /// Any body with any signature header, to either.
    Unsigned { pbx: bool, body: Vec<u8>, signature: String },
}

fn webhook() -> impl Strategy<Value = Webhook> {
    prop_oneof![
        3 => object(CALL_FIELDS, call_plausible).prop_map(Webhook::Json),
        2 => object(TWILIO_FIELDS, call_plausible).prop_map(Webhook::Form),
        2 => object(TWILIO_FIELDS, call_plausible).prop_map(Webhook::Twilio),
        2 => object(ZADARMA_FIELDS, vendor_plausible).prop_map(Webhook::Zadarma),
        2 => object(SIPUNI_FIELDS, vendor_plausible).prop_map(Webhook::Sipuni),
        2 => object(UIS_FIELDS, vendor_plausible).prop_map(Webhook::Uis),
        2 => (prop_oneof![Just("events/call"), Just("events/summary"), Just("events/recording"), Just("events/ping"), Just("x")],
            object(MANGO_FIELDS, vendor_plausible)).prop_map(|(path, v)| Webhook::Mango(path.to_owned(), v)),
        1 => (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..2000), text())
            .prop_map(|(pbx, body, signature)| Webhook::Unsigned { pbx, body, signature }),
    ]
}

#[test]
fn every_webhook_format_answers_anything_without_a_server_error() {
    let (rt, node, _dir) = fuzzed_node();
    let http = reqwest::Client::new();
    check(LIVE_CASES * 2, webhook(), |hook| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let sign = |body: &[u8]| callpool::pbx::signature::sign(PBX_SECRET, now, body);
        let (pbx, content_type, body, header): (String, &str, Vec<u8>, (&str, String)) = match &hook {
            Webhook::Json(v) => {
                let body = v.to_string().into_bytes();
                ("?pbx=office".into(), "application/json", body.clone(), ("callpool-signature", sign(&body)))
            }
            Webhook::Form(v) => {
                let body = form(v).into_bytes();
                (
                    "?pbx=office".into(),
                    "application/x-www-form-urlencoded",
                    body.clone(),
                    ("callpool-signature", sign(&body)),
                )
            }
            Webhook::Twilio(v) => {
                let body = form(v).into_bytes();
                let sig = callpool::pbx::twilio::sign(TWILIO_URL, &body, TWILIO_TOKEN);
                ("?pbx=tw".into(), "application/x-www-form-urlencoded", body, ("x-twilio-signature", sig))
            }
            Webhook::Zadarma(v) => {
                let body = form(v);
                let fields: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
                let signed = callpool::pbx::zadarma::signed_text(&fields).unwrap_or_default();
                let sig = callpool::pbx::zadarma::sign(&signed, PBX_SECRET);
                ("/zd".into(), "application/x-www-form-urlencoded", body.into_bytes(), ("signature", sig))
            }
            Webhook::Sipuni(v) => {
                let body = form(v).into_bytes();
                (
                    format!("/sip?token={PBX_SECRET}"),
                    "application/x-www-form-urlencoded",
                    body,
                    ("x-none", String::new()),
                )
            }
            Webhook::Uis(v) => {
                let body = v.to_string().into_bytes();
                (format!("/uis?token={PBX_SECRET}"), "application/json", body, ("x-none", String::new()))
            }
            Webhook::Mango(path, v) => {
                let json = v.to_string();
                let sign = callpool::pbx::mango::sign(MANGO_KEY, &json, PBX_SECRET);
                let body = form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([("vpbx_api_key", MANGO_KEY), ("sign", &sign), ("json", &json)])
                    .finish();
                (
                    format!("/mango/{path}"),
                    "application/x-www-form-urlencoded",
                    body.into_bytes(),
                    ("x-none", String::new()),
                )
            }
            Webhook::Unsigned { pbx, body, signature } => {
                let name = if *pbx { ("?pbx=office", "callpool-signature") } else { ("/zd", "signature") };
                (name.0.into(), "application/json", body.clone(), (name.1, signature.clone()))
            }
        };
        let mut req =
            http.post(node.url(&format!("/v1/pbx/calls?pbx={pbx}"))).header("content-type", content_type).body(body);
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&header.1) {
            req = req.header(header.0, v);
        }
        let (status, text) = rt.block_on(async {
            let resp = req.send().await.expect("the node answers");
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        });
        prop_assert!([200, 400, 401, 413, 415].contains(&status), "{status}: {text}");
        if status != 200 {
            let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "error body {text}");
        }
        Ok(())
    });
    node_survived(&rt, &node);
}

// ---- the callback form -----------------------------------------------------------------------

const CALLBACK_FIELDS: &[&str] =
    &["site", "number", "visitor", "ga_client_id", "ga_session_id", "ym_uid", "page", "referrer"];

fn callback_plausible(field: &str) -> Vec<Value> {
    match field {
        "site" => vec![json!("shop-public-key"), json!("nope")],
        "number" => ["+79161234567", "8 (916) 123-45-67", "+8816123456789", "+79001234567", "+7 809 123 45 67", ""]
            .map(Value::from)
            .to_vec(),
        "visitor" => vec![json!("1197596843.1673515099"), json!("")],
        "page" => vec![json!("https://shop.example/?utm_source=x%zz")],
        _ => vec![json!("x")],
    }
}

#[test]
fn the_callback_form_answers_anything_without_a_server_error() {
    let region: phonenumber::country::Id = "RU".parse().unwrap();
    check(CASES * 4, text(), |raw| {
        if let Ok(n) = callpool::callback::number::read(&raw, region) {
            prop_assert!(n.region().is_some(), "{raw:?} read as {n}, a number of no region");
        }
        Ok(())
    });
    let (rt, node, _dir) = fuzzed_node();
    let http = reqwest::Client::new();
    let bodies = prop_oneof![
        4 => object(CALLBACK_FIELDS, callback_plausible).prop_map(|v| v.to_string().into_bytes()),
        1 => proptest::collection::vec(any::<u8>(), 0..3000),
    ];
    check(LIVE_CASES * 2, (bodies, prop_oneof![3 => Just(ORIGIN.to_owned()), 1 => text()]), |(body, origin)| {
        let mut req = http.post(node.url("/v1/callback")).header("content-type", "application/json").body(body.clone());
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&origin) {
            req = req.header("origin", v);
        }
        let (status, text) = rt.block_on(async {
            let resp = req.send().await.expect("the node answers");
            (resp.status().as_u16(), resp.text().await.unwrap_or_default())
        });
        prop_assert!([202, 400, 403, 404, 413, 429].contains(&status), "{status}: {text}");
        let v: Value = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
        if status == 202 {
            prop_assert!(v["status"].is_string(), "{text}");
        } else {
            prop_assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "error body {text}");
        }
        Ok(())
    });
    node_survived(&rt, &node);
}

// ---- the configuration -----------------------------------------------------------------------

/// A TOML value's text: the odd ones validation must refuse, and anything.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        text().prop_map(|s| toml::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| toml::Value::Float(f).to_string()),
        Just("true".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("[\"\", \"x\"]".to_owned()),
        "[0-9]{1,25}(ns|ms|s|m|h|d|w|y)".prop_map(|d| format!("{d:?}")),
        Just("\"-1s\"".to_owned()),
        Just("\"0s\"".to_owned()),
        Just("\"18446744073709551615s\"".to_owned()),
        Just("\"25:00-26:00\"".to_owned()),
        Just("\"+8816123456789\"".to_owned()),
        Just("\"redis://:pw@[::1\"".to_owned()),
        Just("\"0/0s\"".to_owned()),
        Just("\"4294967296/1s\"".to_owned()),
        Just("\"1/0s\"".to_owned()),
        Just("\"0.0.0.0/33\"".to_owned()),
    ]
}

#[test]
fn any_configuration_is_accepted_or_refused_with_its_problems() {
    let example = include_str!("../../callpool.example.toml");
    let env: HashMap<String, String> = HashMap::new();
    Config::parse(example, "callpool.example.toml", &env).expect("the example configuration is valid");
    let lines: Vec<&str> = example.lines().collect();
    let settings: Vec<usize> =
        (0..lines.len()).filter(|&i| !lines[i].trim_start().starts_with('#') && lines[i].contains(" = ")).collect();
    let edits = proptest::collection::vec((0..settings.len(), toml_value()), 1..4);
    let settings = Arc::new(settings);
    check(CASES * 2, edits, |edits| {
        let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        for (at, value) in &edits {
            let i = settings[*at];
            let key = edited[i].split(" = ").next().unwrap_or("").to_owned();
            edited[i] = format!("{key} = {value}");
        }
        match Config::parse(&edited.join("\n"), "fuzz.toml", &env) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.problems.is_empty(), "a refusal names its problems"),
        }
        Ok(())
    });
    check(CASES, text(), |s| {
        let _ = Config::parse(&s, "fuzz.toml", &env);
        Ok(())
    });
}
