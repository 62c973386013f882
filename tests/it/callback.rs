//! The callback widget end to end, against a strict local fake PBX (generic signed webhook,
//! VoxImplant StartScenarios, Twilio create-call), a fake Telegram and notification webhook, and
//! the strict GA4 fake: a request in working hours → exactly one signed trigger → the outcome
//! webhook → every tab of the visitor sees the status → GA4 gets `callback_request` and the
//! call's event. Also: each limit and the blocklist, a burst of 1,000 requests, the PBX down
//! then up, a restart between request and trigger, and scheduling outside working hours.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use callpool::clock::ManualClock;
use callpool::config::Config;
use callpool_pool::Ts;
use serde_json::{json, Value};

const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter";
const PBX_SECRET: &str = "office-secret-0123456789";
const TRIGGER_SECRET: &str = "trigger-secret-0123456789";
const NOTIFY_SECRET: &str = "notify-secret-0123456789";
const BOT_TOKEN: &str = "123456:bot-token";
const CLIENT_ID: &str = "1197596843.1673515099";
const OPERATOR: &str = "+74951230099";
const REPORT_TOKEN: &str = "shop-report-token-0123456789";
/// The `hnt` site's form rings these after OPERATOR, in turn.
const OPERATOR_2: &str = "+74951230098";
const OPERATOR_3: &str = "+74951230097";
const TWILIO_SID: &str = "AC0123456789abcdef";
const TWILIO_TOKEN: &str = "twilio-auth-token-0123";
const TWILIO_URL: &str = "https://callpool.example.com/v1/pbx/calls?pbx=tw";
const ZADARMA_KEY: &str = "0123456789abcdef0123";
const ZADARMA_SECRET: &str = "zadarma-secret-0123456789";
const MANGO_KEY: &str = "mango-vpbx-key-0123";
const MANGO_SALT: &str = "mango-vpbx-salt-0123456789";
const SIPUNI_USER: &str = "070196";
const SIPUNI_KEY: &str = "0.sipuni-test-k3y";

/// One request the fake PBX (or Telegram, or the notification hook) received.
#[derive(Clone, Debug)]
struct Got {
    path: String,
    body: Vec<u8>,
    status: u16,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The PBX, Telegram and the team's webhook: checks every request strictly (violations are
/// answered 400 and listed) and answers 503 to triggers while `down` or `failing` > 0.
#[derive(Clone, Default)]
struct FakePbx {
    got: Arc<Mutex<Vec<Got>>>,
    violations: Arc<Mutex<Vec<String>>>,
    down: Arc<AtomicBool>,
    failing: Arc<AtomicU32>,
}

impl FakePbx {
    async fn start(&self) -> String {
        let me = self.clone();
        serve_fake(move |req| {
            let me = me.clone();
            async move { me.handle(req).await }
        })
        .await
    }

    async fn handle(&self, req: axum::extract::Request) -> (axum::http::StatusCode, String) {
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or("");
        let (problems, answer) =
            check(&parts.method, &path, query, &parts.headers, &body, self.got.lock().unwrap().len());
        let trigger = !path.contains("sendMessage") && path != "/notify";
        let status = if !problems.is_empty() {
            self.violations.lock().unwrap().extend(problems);
            400
        } else if trigger
            && (self.down.load(Ordering::SeqCst)
                || self.failing.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok())
        {
            503
        } else if path.ends_with("Calls.json") {
            201
        } else {
            200
        };
        self.got.lock().unwrap().push(Got { path, body, status });
        (axum::http::StatusCode::from_u16(status).unwrap(), if status < 300 { answer } else { String::new() })
    }

    /// Requests to `path` answered 2xx.
    fn accepted(&self, path: &str) -> Vec<Got> {
        self.got.lock().unwrap().iter().filter(|g| g.path.ends_with(path) && g.status < 300).cloned().collect()
    }

    fn attempts(&self, path: &str) -> usize {
        self.got.lock().unwrap().iter().filter(|g| g.path.ends_with(path)).count()
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

/// The time a `Callpool-Signature` names (the node under test may run on a manual clock, so the
/// MAC is checked at the time it claims; the replay window is the receiver's own policy).
fn signed_at(headers: &axum::http::HeaderMap) -> Ts {
    let value = headers.get("callpool-signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let t = value.split(',').find_map(|p| p.trim().strip_prefix("t=")).and_then(|t| t.parse::<i64>().ok());
    t.map_or(Ts::now(), |t| Ts::from_millis(t * 1000))
}

/// Zadarma's `Authorization` for a callback request with `query`, computed here as its PHP
/// library computes it: `key:base64(hex(hmac_sha1(method . query . md5(query), secret)))`.
fn zadarma_authorization(query: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    use md5::Digest;
    let signed = format!("/v1/request/callback/{query}{}", hex::encode(md5::Md5::digest(query.as_bytes())));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(ZADARMA_SECRET.as_bytes()).unwrap();
    mac.update(signed.as_bytes());
    let hex_text = hex::encode(mac.finalize().into_bytes());
    format!("{ZADARMA_KEY}:{}", base64::engine::general_purpose::STANDARD.encode(hex_text))
}

/// What each endpoint requires; the answer it gives when all is well.
fn check(
    method: &axum::http::Method,
    path: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
    n: usize,
) -> (Vec<String>, String) {
    let mut p = Vec::new();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let e164 = |s: &str| s.starts_with('+') && s.len() > 8 && s[1..].bytes().all(|b| b.is_ascii_digit());
    let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let mut answer = String::new();
    match path {
        "/trigger" => {
            if let Err(r) =
                callpool::pbx::signature::verify(headers, body, &[TRIGGER_SECRET.to_owned()], signed_at(headers))
            {
                p.push(format!("trigger signature: {}", r.message()));
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let id = v["callback_id"].as_str().unwrap_or("");
            // The call of the first operator is reported under the callback's id, the n-th one's under `<id>-<n>`.
            let call_id = v["call_id"].as_str().unwrap_or("");
            if !id.starts_with("cb-")
                || !(call_id == id || call_id.strip_prefix(id).is_some_and(|n| n.starts_with('-')))
            {
                p.push(format!("callback_id / call_id: {v}"));
            }
            if header("idempotency-key") != call_id {
                p.push("Idempotency-Key is not the call id".into());
            }
            let operator = v["operator"].as_str().unwrap_or("");
            if ![OPERATOR, OPERATOR_2, OPERATOR_3].contains(&operator) || !e164(v["number"].as_str().unwrap_or("")) {
                p.push(format!("operator / number: {v}"));
            }
            if v["operators"] != json!([operator]) || v["ring_for_s"].as_u64().is_none() {
                p.push(format!("operators / ring_for_s: {v}"));
            }
            if v["site"].as_str().is_none() || v["requested_at"].as_str().is_none() || v["attempt"].as_u64().is_none() {
                p.push(format!("site / requested_at / attempt: {v}"));
            }
            if !header("content-type").starts_with("application/json") {
                p.push("trigger content-type".into());
            }
        }
        "/platform_api/StartScenarios/" => {
            for (k, want) in [("account_id", "100"), ("api_key", "vox-key"), ("rule_id", "7")] {
                if form.get(k).map(String::as_str) != Some(want) {
                    p.push(format!("voximplant {k}: {:?}", form.get(k)));
                }
            }
            let data = form.get("script_custom_data").cloned().unwrap_or_default();
            let parts: Vec<&str> = data.split(':').collect();
            if parts.len() != 3 || parts[0] != OPERATOR || !e164(parts[1]) || !parts[2].starts_with("cb-") {
                p.push(format!("voximplant script_custom_data {data:?}"));
            }
            answer = json!({"result": 1, "media_session_access_url": "http://x/", "call_session_history_id": 9000 + n})
                .to_string();
        }
        _ if path == format!("/2010-04-01/Accounts/{TWILIO_SID}/Calls.json") => {
            use base64::Engine;
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_SID}:{TWILIO_TOKEN}"));
            if header("authorization") != format!("Basic {auth}") {
                p.push("twilio basic auth".into());
            }
            if form.get("To").map(String::as_str) != Some(OPERATOR) || !form.get("From").is_some_and(|f| e164(f)) {
                p.push(format!("twilio To/From: {form:?}"));
            }
            if !form.get("Twiml").is_some_and(|t| t.contains("<Dial") && t.contains("<Number>+7")) {
                p.push(format!("twilio Twiml: {:?}", form.get("Twiml")));
            }
            if form.get("StatusCallback").map(String::as_str) != Some(TWILIO_URL) {
                p.push("twilio StatusCallback".into());
            }
            answer = json!({"sid": format!("CA{n:032}"), "status": "queued"}).to_string();
        }
        _ if path == format!("/bot{BOT_TOKEN}/sendMessage") => {
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if v["chat_id"] != "-100200" || !v["text"].as_str().is_some_and(|t| t.contains("+79161234567")) {
                p.push(format!("telegram sendMessage: {v}"));
            }
            answer = json!({"ok": true, "result": {"message_id": n}}).to_string();
        }
        "/notify" => {
            if let Err(r) =
                callpool::pbx::signature::verify(headers, body, &[NOTIFY_SECRET.to_owned()], signed_at(headers))
            {
                p.push(format!("notify signature: {}", r.message()));
            }
            let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            if !matches!(v["event"].as_str(), Some("callback.requested" | "callback.missed"))
                || v["callback"]["id"].as_str().is_none()
            {
                p.push(format!("notify body: {v}"));
            }
        }
        "/v1/request/callback/" => {
            // Zadarma's API: a GET, its parameters in the query sorted by name, signed with the key pair.
            if method != axum::http::Method::GET || !body.is_empty() {
                p.push(format!("zadarma: {method} with {} bytes of body", body.len()));
            }
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map_or("", |(_, v)| v.as_str());
            if pairs.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>() != ["format", "from", "sip", "to"] {
                p.push(format!("zadarma parameters (these, sorted): {query}"));
            }
            if (get("format"), get("from"), get("sip")) != ("json", "100", "100") || !e164(&format!("+{}", get("to"))) {
                p.push(format!("zadarma values: {query}"));
            }
            if header("authorization") != zadarma_authorization(query) {
                p.push(format!("zadarma Authorization: {:?}", header("authorization")));
            }
            answer = json!({"status": "success", "from": get("from"), "to": get("to"), "time": Ts::now().as_millis() / 1000})
                .to_string();
        }
        "/vpbx/commands/callback" => {
            // Mango's VPBX API: a form POST of its three fields, `sign` = hex(sha256(key + json + salt)).
            let names: Vec<String> = form_urlencoded::parse(body).map(|(k, _)| k.into_owned()).collect();
            if method != axum::http::Method::POST
                || header("content-type") != "application/x-www-form-urlencoded"
                || names != ["vpbx_api_key", "sign", "json"]
            {
                p.push(format!("mango: {method} {:?} with fields {names:?}", header("content-type")));
            }
            let json = form.get("json").cloned().unwrap_or_default();
            let sign = {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(format!("{MANGO_KEY}{json}{MANGO_SALT}")))
            };
            if form.get("vpbx_api_key").map(String::as_str) != Some(MANGO_KEY) || form.get("sign") != Some(&sign) {
                p.push(format!("mango vpbx_api_key / sign: {form:?}"));
            }
            let v: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
            let keys: Vec<&str> = v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
            let id = v["command_id"].as_str().unwrap_or("");
            let to = v["to_number"].as_str().unwrap_or("");
            if keys.len() != 4
                || !(id.starts_with("cb-") && id.len() == 27)
                || v["from"] != json!({"extension": "101"})
                || !(to.starts_with('7') && e164(&format!("+{to}")))
                || v["line_number"] != "74951230013"
            {
                p.push(format!("mango json: {json}"));
            }
            answer = json!({"result": 1000}).to_string();
        }
        "/api/callback/call_number" => {
            // Sipuni's callback API: a form POST, the fields in the order of their names, then `hash`
            // = md5(antiaon+phone+reverse+sipnumber+user+key), as public integrations send it.
            let pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
            let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            if method != axum::http::Method::POST
                || header("content-type") != "application/x-www-form-urlencoded"
                || !query.is_empty()
                || names != ["antiaon", "phone", "reverse", "sipnumber", "user", "hash"]
            {
                p.push(format!("sipuni: {method} {:?} ?{query} with fields {names:?}", header("content-type")));
            }
            let get = |k: &str| form.get(k).map_or("", String::as_str);
            if (get("antiaon"), get("reverse"), get("sipnumber"), get("user")) != ("0", "0", "201", SIPUNI_USER)
                || !(get("phone").starts_with('7') && e164(&format!("+{}", get("phone"))))
            {
                p.push(format!("sipuni values: {form:?}"));
            }
            let hash = {
                use md5::Digest;
                let signed = ["antiaon", "phone", "reverse", "sipnumber", "user"].map(get).join("+");
                hex::encode(md5::Md5::digest(format!("{signed}+{SIPUNI_KEY}")))
            };
            if get("hash") != hash {
                p.push(format!("sipuni hash: {:?}, expected {hash}", get("hash")));
            }
            answer = json!({"success": true}).to_string();
        }
        other => p.push(format!("unexpected path {other}")),
    }
    (p, answer)
}

#[derive(Clone, Copy, Debug)]
enum Backend {
    Embedded,
    Redis,
}

/// `site_extra` goes into the `shop` site's table, `extra` into its `[site.callback]`; the other
/// sites follow.
fn config(
    backend: Backend,
    dir: &std::path::Path,
    prefix: &str,
    (pbx, ga): (&str, &str),
    site_extra: &str,
    extra: &str,
) -> Config {
    let store = match backend {
        Backend::Embedded => format!("kind = \"embedded\"\ndata_dir = {:?}", dir.join("data").display().to_string()),
        Backend::Redis => format!("kind = \"redis\"\nredis_url = \"{}\"\nredis_prefix = \"{prefix}\"", redis_url()),
    };
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"
trusted_proxy_header = "X-Forwarded-For"
trusted_proxies = ["127.0.0.1/32"]

[store]
{store}

[analytics]
ga4_base_url = "{ga}"
yandex_base_url = "{ga}"
retry_base = "200ms"
request_timeout = "2s"

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]

[[pbx]]
id = "tw"
twilio_auth_token = "{TWILIO_TOKEN}"
twilio_url = "{TWILIO_URL}"

{site}
report_token = "{REPORT_TOKEN}"
{site_extra}

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"

[site.callback]
language = "en"
operator = "{OPERATOR}"
pbx = "office"
retry_base = "200ms"
attempts = 4
blocklist = ["+7999*"]
trigger = {{ kind = "generic", url = "{pbx}/trigger", secret = "{TRIGGER_SECRET}" }}
telegram = {{ base_url = "{pbx}", bot_token = "{BOT_TOKEN}", chat_id = "-100200" }}
notify = {{ url = "{pbx}/notify", secret = "{NOTIFY_SECRET}" }}
limits = {{ per_ip = ["2000/1h"], per_visitor = ["2000/1h"] }}
{min_time}
{extra}
"#,
        site = shop_site(ORIGIN, "200ms", "30m", "200ms"),
        // Most tests ask without waiting on the site (the default is 10 s).
        min_time = if extra.split("[[site]]").next().unwrap_or("").contains("min_time_on_site") {
            ""
        } else {
            "min_time_on_site = \"0s\""
        },
    );
    Config::parse(&text, "callback-test.toml", &HashMap::new()).expect("test config")
}

/// A second site with small limits (`lim`), and sites on the VoxImplant and Twilio adapters.
fn more_sites(pbx: &str) -> String {
    format!(
        r#"
[[site]]
id = "lim"
key = "lim-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234500"
default_after = "+74951234501"
numbers = ["+74951230010"]

[site.callback]
operator = "{OPERATOR}"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "generic", url = "{pbx}/trigger", secret = "{TRIGGER_SECRET}" }}
limits = {{ per_number = ["2/1h"], per_site = ["4/1h"], per_ip = ["3/1h"], per_visitor = ["2/1h"] }}

[[site]]
id = "vox"
key = "vox-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234510"
default_after = "+74951234511"
numbers = ["+74951230011"]

[site.callback]
operator = "{OPERATOR}"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "voximplant", url = "{pbx}", account_id = "100", api_key = "vox-key", rule_id = 7 }}

[[site]]
id = "twi"
key = "twi-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234520"
default_after = "+74951234521"
numbers = ["+74951230012"]

[site.callback]
operator = "{OPERATOR}"
pbx = "tw"
min_time_on_site = "0s"
trigger = {{ kind = "twilio", url = "{pbx}", account_sid = "{TWILIO_SID}", auth_token = "{TWILIO_TOKEN}", from = "+74951230098", status_url = "{TWILIO_URL}" }}

[[site]]
id = "zdm"
key = "zdm-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234547"
default_after = "+74951234548"
numbers = ["+74951230047"]

[site.callback]
operator = "{OPERATOR}"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "zadarma", url = "{pbx}", key = "{ZADARMA_KEY}", secret = "{ZADARMA_SECRET}", from = "100", sip = "100" }}

[[site]]
id = "mng"
key = "mng-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234553"
default_after = "+74951234554"
numbers = ["+74951230053"]

[site.callback]
operator = "{OPERATOR}"
pbx = "mg"
min_time_on_site = "0s"
trigger = {{ kind = "mango", url = "{pbx}", api_key = "{MANGO_KEY}", api_salt = "{MANGO_SALT}", extension = "101", line_number = "+74951230013" }}

[[site]]
id = "spn"
key = "spn-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234559"
default_after = "+74951234560"
numbers = ["+74951230059"]

[site.callback]
operator = "{OPERATOR}"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "sipuni", url = "{pbx}", user = "{SIPUNI_USER}", secret = "{SIPUNI_KEY}", sipnumber = "201" }}

[[site]]
id = "hnt"
key = "hnt-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234570"
default_after = "+74951234571"
numbers = ["+74951230070"]

[site.callback]
operators = ["{OPERATOR}", "{OPERATOR_2}", "{OPERATOR_3}"]
ring_for = "5s"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "generic", url = "{pbx}/trigger", secret = "{TRIGGER_SECRET}" }}

[[pbx]]
id = "mg"
kind = "mango"
api_key = "{MANGO_KEY}"
api_salt = "{MANGO_SALT}"
"#
    )
}

struct World {
    node: Node,
    pbx: FakePbx,
    ga: FakeAnalytics,
    backend: Backend,
    dir: tempfile::TempDir,
    prefix: String,
    pbx_url: String,
    ga_url: String,
}

impl World {
    async fn start(backend: Backend) -> World {
        World::start_with(backend, "").await
    }

    /// With `sites` (TOML `[[site]]` tables) after the usual ones.
    async fn start_with(backend: Backend, sites: &str) -> World {
        let pbx = FakePbx::default();
        let pbx_url = pbx.start().await;
        let ga = FakeAnalytics::default();
        let ga_url = ga.start().await;
        let dir = tempfile::tempdir().unwrap();
        let prefix = unique("cb");
        let sites = more_sites(&pbx_url) + sites;
        let cfg = config(backend, dir.path(), &prefix, (&pbx_url, &ga_url), "", &sites);
        let node = Node::start_real(cfg).await;
        World { node, pbx, ga, backend, dir, prefix, pbx_url, ga_url }
    }

    fn config(&self) -> Config {
        config(
            self.backend,
            self.dir.path(),
            &self.prefix,
            (&self.pbx_url, &self.ga_url),
            "",
            &more_sites(&self.pbx_url),
        )
    }

    /// Stops the node and starts another on the same store.
    async fn restart(mut self) -> World {
        let config = self.config();
        self.node.stop().await;
        self.node = Node::restart_on(config).await;
        self
    }

    /// `POST /v1/callback` from `ip`.
    async fn ask(&self, site_key: &str, number: &str, visitor: &str, ip: &str) -> (u16, Value) {
        let body =
            json!({"site": site_key, "number": number, "visitor": visitor, "ga_client_id": CLIENT_ID, "page": PAGE});
        let resp = reqwest::Client::new()
            .post(self.node.url("/v1/callback"))
            .header("origin", ORIGIN)
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/callback/{id}`: how the request stands.
    async fn status(&self, site_key: &str, id: &str) -> Value {
        let url = self.node.url(&format!("/v1/callback/{id}?site={site_key}"));
        reqwest::Client::new().get(url).header("origin", ORIGIN).send().await.unwrap().json().await.unwrap()
    }

    /// The PBX reports the callback's call (`call_id` = the callback id, as the trigger asked).
    async fn report(&self, call_id: &str, status: &str) {
        let body = json!({
            "call_id": call_id, "called": "+79161234567", "caller": OPERATOR,
            "started_at": Ts::now().as_millis() / 1000, "status": status, "duration": 42,
        })
        .to_string();
        let t = Ts::now().as_millis() / 1000;
        let resp = reqwest::Client::new()
            .post(self.node.url("/v1/pbx/calls?pbx=office"))
            .header("content-type", "application/json")
            .header("callpool-signature", callpool::pbx::signature::sign(PBX_SECRET, t, body.as_bytes()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
}

/// The next `callback` message a tab hears (other messages skipped).
async fn callback_msg(tab: &mut WsTab) -> Value {
    loop {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback" || v["type"] == "callback_refused" => return v,
            Heard::Json(_) => continue,
            other => panic!("expected a callback message, got {other:?}"),
        }
    }
}

/// Statuses a tab hears until `last` (inclusive).
async fn statuses_until(tab: &mut WsTab, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let m = callback_msg(tab).await;
        let s = m["status"].as_str().unwrap_or("").to_owned();
        seen.push(s.clone());
        if s == last {
            return seen;
        }
    }
}

async fn open_tab(node: &Node, visitor: &str) -> WsTab {
    let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    let hello = json!({"type": "hello", "v": 1, "visitor": visitor, "tab": unique("tab"), "ga_client_id": CLIENT_ID, "page": PAGE});
    tab.send_text(&hello.to_string()).await;
    // site, callback_form, number
    loop {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback_form" => {
                assert_eq!(v["open"], true, "{v}");
                assert_eq!(v["texts"]["button"], "Call me back");
                return tab;
            }
            Heard::Json(_) => continue,
            other => panic!("expected the callback form, got {other:?}"),
        }
    }
}

async fn in_hours_request_is_triggered_once_and_followed_to_the_end(backend: Backend) {
    let w = World::start(backend).await;
    let visitor = unique("v");
    let mut tab1 = open_tab(&w.node, &visitor).await;
    let mut tab2 = open_tab(&w.node, &visitor).await;
    tab1.send_text(&json!({"type": "callback_request", "number": "8 (916) 123-45-67"}).to_string()).await;
    let first = callback_msg(&mut tab2).await;
    assert_eq!(first["status"], "accepted", "{first}");
    assert_eq!(first["message"], "Thank you! We are calling you now.");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(statuses_until(&mut tab2, "calling").await, ["calling"]);
    assert_eq!(statuses_until(&mut tab1, "calling").await, ["accepted", "calling"]);

    let triggers = w.pbx.accepted("/trigger");
    assert_eq!(triggers.len(), 1, "exactly one trigger");
    let t = triggers[0].json();
    assert_eq!(
        (t["callback_id"].as_str(), t["number"].as_str(), t["site"].as_str()),
        (Some(id.as_str()), Some("+79161234567"), Some("shop"))
    );

    w.report(&id, "answered").await;
    assert_eq!(statuses_until(&mut tab1, "connected").await, ["connected"]);
    w.report(&id, "completed").await;
    assert_eq!(statuses_until(&mut tab2, "completed").await, ["connected", "completed"]);

    // GA4: callback_request with the session, then the call's own event, attributed as a callback.
    eventually("GA4 has both events", || async { w.ga.ga4_accepted().len() == 2 }).await;
    let events = w.ga.ga4_accepted();
    let by_name = |name: &str| {
        events
            .iter()
            .find(|e| e["events"][0]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {events:?}"))
    };
    let req = by_name("callback_request");
    assert_eq!(req["client_id"], CLIENT_ID);
    assert_eq!(req["events"][0]["params"]["callback_id"], id.as_str());
    assert_eq!(req["events"][0]["params"]["source"], "google");
    let call = by_name("phone_call");
    assert_eq!(call["client_id"], CLIENT_ID);
    assert_eq!(call["events"][0]["params"]["match_kind"], "callback");
    assert_eq!(call["events"][0]["params"]["campaign"], "winter");
    assert!(!serde_json::to_string(&events).unwrap().contains("79161234567"), "the visitor's number never goes to GA");

    // The team heard of the request once, by Telegram and by the webhook.
    eventually("the team is notified", || async {
        w.pbx.accepted("sendMessage").len() == 1 && w.pbx.accepted("/notify").len() == 1
    })
    .await;
    assert_eq!(w.pbx.accepted("/notify")[0].json()["event"], "callback.requested");
    assert_eq!(w.ga.violations(), Vec::<String>::new());
    assert_eq!(w.pbx.violations(), Vec::<String>::new());

    // The report lists the call as a callback; a late repeat of the webhook changes nothing.
    w.report(&id, "completed").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w.pbx.accepted("/trigger").len(), 1);
    assert_eq!(w.ga.ga4_accepted().len(), 2);
    assert_eq!(w.node.metric("callpool_callback_outcomes_total{status=\"completed\"}").await, 1.0);
    // The site's callback report: the request, completed, its call, the number masked for a report token.
    let report: Value = w.node.admin_get("/v1/reports/shop/callbacks").await.json().await.unwrap();
    let row = &report["callbacks"][0];
    assert_eq!(
        (row["id"].as_str(), row["status"].as_str(), row["call_id"].as_str()),
        (Some(id.as_str()), Some("completed"), Some(id.as_str()))
    );
    assert_eq!(
        (row["number"].as_str(), row["source"].as_str(), row["origin"].as_str()),
        (Some("+79161234567"), Some("google"), Some("widget"))
    );
    let calls: Value = w.node.admin_get("/v1/reports/shop/calls").await.json().await.unwrap();
    assert_eq!(calls["calls"][0]["match"], "callback");
    assert_eq!(calls["calls"][0]["called"], "+79161234567", "in full for the admin token");
    // For the report token the visitor's number is masked everywhere: the PBX called the
    // visitor, so the call's `called` is theirs (the operator's line stays a masked caller).
    let as_owner = |path: &str| reqwest::Client::new().get(w.node.url(path)).bearer_auth(REPORT_TOKEN).send();
    for path in [
        "/v1/reports/shop/calls",
        "/v1/reports/shop/calls?format=csv",
        "/v1/reports/shop",
        "/v1/reports/shop/callbacks",
    ] {
        let resp = as_owner(path).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let text = resp.text().await.unwrap();
        assert!(!text.contains("9161234567"), "{path} shows the visitor's number: {text}");
        assert!(text.contains("+7********67"), "{path} shows it masked: {text}");
    }
    w.node.stop().await;
}

#[tokio::test]
async fn in_hours_request_is_triggered_once_and_followed_to_the_end_embedded() {
    in_hours_request_is_triggered_once_and_followed_to_the_end(Backend::Embedded).await;
}

#[tokio::test]
async fn in_hours_request_is_triggered_once_and_followed_to_the_end_redis() {
    in_hours_request_is_triggered_once_and_followed_to_the_end(Backend::Redis).await;
}

#[tokio::test]
async fn bad_numbers_are_refused_with_a_message_for_the_form() {
    let w = World::start(Backend::Embedded).await;
    let mut tab = open_tab(&w.node, &unique("v")).await;
    for (number, reason) in [
        ("123", "invalid"),
        ("call me", "invalid"),
        ("+7 999 123 45 67", "blocked"),
        ("8 809 123 45 67", "not_callable"),
        // Toll fraud: a satellite phone, a far country, a neighbour sharing +7: not the site's own.
        ("+881612345678", "abroad"),
        ("+77012345678", "abroad"),
        ("+442079460958", "abroad"),
    ] {
        tab.send_text(&json!({"type": "callback_request", "number": number}).to_string()).await;
        let m = callback_msg(&mut tab).await;
        assert_eq!(
            (m["type"].as_str(), m["reason"].as_str()),
            (Some("callback_refused"), Some(reason)),
            "{number}: {m}"
        );
        assert!(!m["message"].as_str().unwrap().is_empty());
    }
    let (status, body) = w.ask("shop-public-key", "12", "v-api", "10.0.0.1").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid");
    assert_eq!(body["error"]["message"], "Please enter a phone number we can call, with its area code.");
    // Wrong origin, unknown key, malformed body.
    let post = |origin: &'static str, body: Value| {
        let url = w.node.url("/v1/callback");
        async move {
            reqwest::Client::new()
                .post(url)
                .header("origin", origin)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(post("https://evil.example", json!({"site": "shop-public-key", "number": "+79161234567"})).await, 403);
    // CORS: a preflight from the site's page is allowed (cached ten minutes); from another page, not.
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, w.node.url("/v1/callback"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight(ORIGIN).await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(allowed.headers()["access-control-max-age"], "600");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(post(ORIGIN, json!({"site": "nope-key-123", "number": "+79161234567"})).await, 404);
    assert_eq!(post(ORIGIN, json!({"site": "shop-public-key"})).await, 400);
    assert_eq!(post(ORIGIN, json!({"site": "shop-public-key", "number": "+79161234567", "x": 1})).await, 400);
    assert_eq!(
        post(ORIGIN, json!({"site": "shop-public-key", "number": "+79161234567", "page": "x".repeat(10_000)})).await,
        413
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.pbx.attempts("/trigger"), 0, "nothing refused reaches the PBX");
    assert_eq!(w.node.metric("callpool_callback_refused_total{reason=\"invalid\",site=\"shop\"}").await, 3.0);
    w.node.stop().await;
}

#[tokio::test]
async fn each_limit_refuses_and_a_number_that_used_its_day_is_banned() {
    let w = World::start(Backend::Redis).await;
    let n = |i: u32| format!("+7916123450{i}");
    let mut results = Vec::new();
    for (number, visitor, ip) in [
        (n(1), "v1", "10.0.0.1"),
        (n(2), "v1", "10.0.0.1"),
        (n(3), "v1", "10.0.0.1"), // the visitor's third
        (n(3), "v2", "10.0.0.1"), // the address's fourth
        (n(1), "v3", "10.0.0.2"),
        (n(1), "v4", "10.0.0.3"), // n1's third in an hour: its longest window, banned
        (n(4), "v5", "10.0.0.4"),
        (n(5), "v6", "10.0.0.5"), // the site's fifth
    ] {
        let (status, body) = w.ask("lim-public-key", &number, visitor, ip).await;
        if status == 202 {
            // Over before the next request (an open request would be joined, not counted again).
            let placed = results.iter().filter(|(s, _)| *s == 202).count() + 1;
            eventually("triggered", || async { w.pbx.accepted("/trigger").len() == placed }).await;
            w.report(body["id"].as_str().unwrap(), "completed").await;
        }
        results
            .push((status, body["error"]["code"].as_str().unwrap_or(body["status"].as_str().unwrap_or("")).to_owned()));
    }
    let want: Vec<(u16, String)> = [
        (202, "accepted"),
        (202, "accepted"),
        (429, "visitor"),
        (429, "ip"),
        (202, "accepted"),
        (429, "banned"),
        (202, "accepted"),
        (429, "site"),
    ]
    .iter()
    .map(|(s, c)| (*s, (*c).to_owned()))
    .collect();
    assert_eq!(results, want);
    // The ban lasts a day; it says so.
    let resp = reqwest::Client::new()
        .post(w.node.url("/v1/callback"))
        .header("origin", ORIGIN)
        .header("x-forwarded-for", "10.0.0.9")
        .json(&json!({"site": "lim-public-key", "number": n(1), "visitor": "v9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 86_000, "banned for about a day, not {retry} s");
    assert_eq!(w.node.metric("callpool_callback_refused_total{reason=\"banned\",site=\"lim\"}").await, 2.0);
    eventually("four triggers", || async { w.pbx.accepted("/trigger").len() == 4 }).await;
    w.node.stop().await;
}

/// Behind nginx configured as the README says, the client's address is the one nginx saw,
/// whatever `X-Forwarded-For` the client wrote; a client that reaches callpool directly (not
/// from a trusted proxy's address) is counted by its own address, its header ignored.
#[tokio::test]
async fn only_the_trusted_proxy_names_the_client_address() {
    let prx = format!(
        r#"
[[site]]
id = "prx"
key = "prx-public-key"
allowed_origins = ["{ORIGIN}"]
default_before = "+74951234530"
default_after = "+74951234531"
numbers = ["+74951230013"]

[site.callback]
operator = "{OPERATOR}"
pbx = "office"
min_time_on_site = "0s"
trigger = {{ kind = "generic", url = "http://127.0.0.1:9/trigger", secret = "{TRIGGER_SECRET}" }}
limits = {{ per_ip = ["3/1h"] }}
"#
    );
    let w = World::start_with(Backend::Embedded, &prx).await;
    let nginx = OwnNginx::start(w.node.addr);
    let snippet = reqwest::get(nginx.url("/cp/snippet.js")).await.unwrap();
    assert_eq!(snippet.status(), 200, "the README's nginx block serves the snippet");
    let from = |ip: [u8; 4]| reqwest::Client::builder().local_address(std::net::IpAddr::from(ip)).build().unwrap();
    let mut seen = Vec::new();
    for (client, url) in
        [(from([127, 0, 0, 2]), nginx.url("/cp/v1/callback")), (from([127, 0, 0, 3]), w.node.url("/v1/callback"))]
    {
        for i in 0..4 {
            let resp = client
                .post(&url)
                .header("origin", ORIGIN)
                .header("x-forwarded-for", format!("10.66.{}.{i}", seen.len()))
                .json(&json!({"site": "prx-public-key", "number": format!("+7916555{:04}", seen.len()), "visitor": format!("spoof-{}", seen.len())}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            seen.push((status, body["error"]["code"].as_str().unwrap_or("").to_owned()));
        }
    }
    let codes: Vec<(u16, &str)> = seen.iter().map(|(s, c)| (*s, c.as_str())).collect();
    assert_eq!(
        codes,
        [(202, ""), (202, ""), (202, ""), (429, "ip"), (202, ""), (202, ""), (202, ""), (429, "ip")],
        "three per address an hour: spoofed headers do not make new addresses"
    );
    w.node.stop().await;
}

/// 1,000 requests at once, 100 at a time, each from its own address and visitor; the statuses.
async fn burst(w: &World, number: impl Fn(u32) -> String) -> Vec<(u16, Value)> {
    use futures_util::StreamExt;
    let client = reqwest::Client::new();
    let sends = (0..1000u32).map(|i| {
        let (client, url, number) = (client.clone(), w.node.url("/v1/callback"), number(i));
        async move {
            let resp = client
                .post(url)
                .header("origin", ORIGIN)
                .header("x-forwarded-for", format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256))
                .json(&json!({"site": "shop-public-key", "number": number, "visitor": format!("burst-{i}")}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    futures_util::stream::iter(sends).buffer_unordered(100).collect().await
}

#[tokio::test]
async fn a_burst_of_1000_requests_triggers_at_most_the_limit() {
    let w = World::start(Backend::Redis).await;
    // One number from 1,000 addresses: one request stands, the others join it; one call.
    let answers = burst(&w, |_| "+7 916 765-43-21".to_owned()).await;
    assert!(answers.iter().all(|(s, _)| *s == 202), "{:?}", answers.iter().find(|(s, _)| *s != 202));
    let ids: Vec<&str> = answers.iter().filter_map(|(_, b)| b["id"].as_str()).collect();
    assert_eq!(ids.len(), 1, "one request stands; the others joined it without learning its id");
    assert!(
        answers.iter().all(|(_, b)| b["status"] == "accepted" && b["message"].is_string()),
        "each is told the call comes"
    );
    // 1,000 numbers at once against the site's 100 per hour, counted exactly across the cluster's store.
    let answers = burst(&w, |i| format!("+7916{:07}", 1_000_000 + i)).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    let by_site = answers.iter().filter(|(s, b)| *s == 429 && b["error"]["code"] == "site").count();
    assert_eq!((accepted, by_site), (99, 901), "100 per hour per site (the default), one used before");
    eventually("the accepted ones are triggered", || async { w.pbx.accepted("/trigger").len() == 100 }).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w.pbx.attempts("/trigger"), 100, "no more than the limits let through reach the PBX");
    w.node.stop().await;
}

/// One address cannot use up the site's hourly window and close the form for everyone: it gets
/// half of it (50 of the default 100), across the cluster; another address still gets through.
#[tokio::test]
async fn one_address_gets_half_of_the_sites_window() {
    let w = World::start(Backend::Redis).await;
    let mut codes = Vec::new();
    for i in 0..60 {
        let (status, body) =
            w.ask("shop-public-key", &format!("+7916{:07}", 2_000_000 + i), &format!("h-{i}"), "10.9.9.9").await;
        codes
            .push((status, body["error"]["code"].as_str().unwrap_or(body["status"].as_str().unwrap_or("")).to_owned()));
    }
    let accepted = codes.iter().filter(|(s, _)| *s == 202).count();
    let by_address = codes.iter().filter(|(s, c)| *s == 429 && c == "ip").count();
    assert_eq!((accepted, by_address), (50, 10), "{codes:?}");
    let (status, _) = w.ask("shop-public-key", "+79163000000", "h-other", "10.9.9.10").await;
    assert_eq!(status, 202, "another address still gets through");
    w.node.stop().await;
}

#[tokio::test]
async fn pbx_down_then_up_is_triggered_once_after_recovery() {
    let w = World::start(Backend::Embedded).await;
    w.pbx.failing.store(2, Ordering::SeqCst);
    let visitor = unique("v");
    let mut tab = open_tab(&w.node, &visitor).await;
    tab.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    let mut retrying = None;
    let seen = loop {
        let m = callback_msg(&mut tab).await;
        if m["status"] == "retrying" && retrying.is_none() {
            retrying = Some(m.clone());
        }
        if m["status"] == "calling" {
            break m;
        }
    };
    let r = retrying.expect("the tab was told of the retry");
    assert!(r["at"].as_i64().is_some() && r["message"].as_str().unwrap().contains("try again"), "{r}");
    assert_eq!(seen["status"], "calling");
    assert_eq!(w.pbx.attempts("/trigger"), 3, "two failures, then one that went through");
    assert_eq!(w.pbx.accepted("/trigger").len(), 1);
    assert_eq!(w.node.metric("callpool_callback_triggers_total{adapter=\"generic\",result=\"retried\"}").await, 2.0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w.pbx.accepted("/trigger").len(), 1, "never twice");
    w.node.stop().await;
}

#[tokio::test]
async fn a_pbx_that_never_answers_makes_the_callback_failed_and_the_team_is_told() {
    let w = World::start(Backend::Embedded).await;
    w.pbx.down.store(true, Ordering::SeqCst);
    let (status, body) = w.ask("shop-public-key", "+79161234567", "v-down", "10.0.0.1").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    eventually("the callback is given up", || async { w.status("shop-public-key", &id).await["status"] == "failed" })
        .await;
    assert_eq!(w.pbx.attempts("/trigger"), 4, "the configured attempts");
    eventually("the team hears of the missed callback", || async {
        w.pbx.accepted("/notify").iter().any(|g| g.json()["event"] == "callback.missed")
            && w.pbx
                .accepted("sendMessage")
                .iter()
                .any(|g| g.json()["text"].as_str().unwrap().starts_with("Missed callback"))
    })
    .await;
    assert_eq!(w.pbx.violations(), Vec::<String>::new());
    w.node.stop().await;
}

async fn restart_between_request_and_trigger(backend: Backend) {
    let w = World::start(backend).await;
    w.pbx.down.store(true, Ordering::SeqCst);
    let (status, body) = w.ask("shop-public-key", "+79161234567", "v-restart", "10.0.0.1").await;
    assert_eq!(status, 202, "{body}");
    eventually("a first attempt failed", || async { w.pbx.attempts("/trigger") >= 1 }).await;
    let w = w.restart().await;
    w.pbx.down.store(false, Ordering::SeqCst);
    eventually("triggered after the restart", || async { w.pbx.accepted("/trigger").len() == 1 }).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(w.pbx.accepted("/trigger").len(), 1, "exactly once");
    assert_eq!(w.pbx.accepted("/trigger")[0].json()["callback_id"], body["id"]);
    w.node.stop().await;
}

#[tokio::test]
async fn restart_between_request_and_trigger_triggers_once_embedded() {
    restart_between_request_and_trigger(Backend::Embedded).await;
}

#[tokio::test]
async fn restart_between_request_and_trigger_triggers_once_redis() {
    restart_between_request_and_trigger(Backend::Redis).await;
}

#[tokio::test]
async fn voximplant_and_twilio_adapters_place_the_call_and_twilio_reports_link_back() {
    let w = World::start(Backend::Embedded).await;
    let (status, _) = w.ask("vox-public-key", "+79161234567", "v-vox", "10.0.0.1").await;
    assert_eq!(status, 202);
    eventually("VoxImplant started the scenario", || async {
        w.pbx.accepted("/platform_api/StartScenarios/").len() == 1
    })
    .await;

    let (status, body) = w.ask("twi-public-key", "+79161234567", "v-twi", "10.0.0.2").await;
    assert_eq!(status, 202);
    let id = body["id"].as_str().unwrap().to_owned();
    eventually("Twilio created the call", || async { w.pbx.accepted("Calls.json").len() == 1 }).await;
    let get = || w.status("twi-public-key", &id);
    eventually("the callback is calling", || async { get().await["status"] == "calling" }).await;
    // Twilio's status callback names the call by the sid its create-call answer gave.
    assert_eq!(w.pbx.accepted("Calls.json")[0].status, 201);
    let n = w.pbx.got.lock().unwrap().iter().position(|g| g.path.ends_with("Calls.json")).unwrap();
    let call_sid = format!("CA{n:032}");
    let form = format!(
        "CallSid={call_sid}&From=%2B74951230099&To=%2B79161234567&CallStatus=in-progress&Direction=outbound-api"
    );
    let resp = reqwest::Client::new()
        .post(w.node.url("/v1/pbx/calls?pbx=tw"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", callpool::pbx::twilio::sign(TWILIO_URL, form.as_bytes(), TWILIO_TOKEN))
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    eventually("the Twilio call is linked to the callback", || async { get().await["status"] == "connected" }).await;
    assert_eq!(w.pbx.violations(), Vec::<String>::new());
    w.node.stop().await;
}

/// Zadarma's callback API: one signed GET (checked strictly by the fake), and the widget hears
/// `accepted`, then `calling`. Zadarma's answer names no call and its notifications cannot be tied
/// to the request, so nothing moves the callback on from `calling` (docs/PBX.md).
#[tokio::test]
async fn zadarma_trigger_places_the_callback() {
    // The fake's signature is the one Zadarma's PHP library (user-api-v1 Client::getAuthHeader) sends.
    assert_eq!(
        zadarma_authorization("format=json&from=100&sip=100&to=79161234567"),
        "0123456789abcdef0123:Y2RmMGVkYzkxZWFkYTA2ODI2MjkxYTc5MzljM2ZmNDUyMzFlOTk3Ng=="
    );
    let w = World::start(Backend::Embedded).await;
    let mut tab = WsTab::open(w.node.addr, "zdm-public-key", ORIGIN).await;
    let hello = json!({"type": "hello", "v": 1, "visitor": unique("v"), "tab": unique("tab"), "ga_client_id": CLIENT_ID, "page": PAGE});
    tab.send_text(&hello.to_string()).await;
    loop {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback_form" => break,
            Heard::Json(_) => continue,
            other => panic!("expected the callback form, got {other:?}"),
        }
    }
    tab.send_text(&json!({"type": "callback_request", "number": "8 (916) 123-45-67"}).to_string()).await;
    let first = callback_msg(&mut tab).await;
    assert_eq!(first["status"], "accepted", "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(statuses_until(&mut tab, "calling").await, ["calling"]);
    let placed = w.pbx.accepted("/v1/request/callback/");
    assert_eq!(placed.len(), 1, "exactly one callback request");
    assert_eq!(w.pbx.violations(), Vec::<String>::new());
    // Asked once; nothing reports the call.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w.pbx.attempts("/v1/request/callback/"), 1);
    assert_eq!(w.status("zdm-public-key", &id).await["status"], "calling");
    w.node.stop().await;
}

/// Sipuni's callback API (`call_number`): one signed form POST (checked strictly by the fake), and
/// the widget hears `accepted`, then `calling`. Nothing links Sipuni's events to the request (its
/// answer names no call the events are known to carry), so the callback stays `calling` (docs/PBX.md).
#[tokio::test]
async fn sipuni_trigger_places_the_callback() {
    // The fake's hash is webasyst/crm's (plugins/sipuni initCall), as PHP computes it.
    let hash = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(format!("0+79161234567+0+201+{SIPUNI_USER}+{SIPUNI_KEY}")))
    };
    assert_eq!(hash, "33f9403254181d988220d804d8838db3");
    let w = World::start(Backend::Embedded).await;
    let mut tab = WsTab::open(w.node.addr, "spn-public-key", ORIGIN).await;
    let hello = json!({"type": "hello", "v": 1, "visitor": unique("v"), "tab": unique("tab"), "ga_client_id": CLIENT_ID, "page": PAGE});
    tab.send_text(&hello.to_string()).await;
    loop {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback_form" => break,
            Heard::Json(_) => continue,
            other => panic!("expected the callback form, got {other:?}"),
        }
    }
    tab.send_text(&json!({"type": "callback_request", "number": "8 (916) 123-45-67"}).to_string()).await;
    let first = callback_msg(&mut tab).await;
    assert_eq!(first["status"], "accepted", "{first}");
    let id = first["id"].as_str().unwrap().to_owned();
    assert_eq!(statuses_until(&mut tab, "calling").await, ["calling"]);
    let placed = w.pbx.accepted("/api/callback/call_number");
    assert_eq!(placed.len(), 1, "exactly one callback request");
    let fields: HashMap<String, String> = form_urlencoded::parse(&placed[0].body).into_owned().collect();
    assert_eq!((fields["phone"].as_str(), fields["hash"].as_str()), ("79161234567", hash.as_str()));
    assert_eq!(w.pbx.violations(), Vec::<String>::new());
    // Asked once; nothing reports the call.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(w.pbx.attempts("/api/callback/call_number"), 1);
    assert_eq!(w.status("spn-public-key", &id).await["status"], "calling");
    w.node.stop().await;
}

/// Mango Office's `commands/callback`: one signed command (checked strictly by the fake), named by
/// the callback's id. The events of the call Mango places carry that id as `command_id`: the
/// employee answering connects the callback, the visitor's leg ending after the talk completes it;
/// the call's summary (an outgoing call's, naming no command) and the command's result change
/// nothing.
#[tokio::test]
async fn mango_trigger_places_the_callback_and_its_events_report_it() {
    let w = World::start(Backend::Embedded).await;
    let (status, body) = w.ask("mng-public-key", "+79161234567", "v-mng", "10.0.0.3").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    eventually("Mango got the command", || async { w.pbx.accepted("/vpbx/commands/callback").len() == 1 }).await;
    let get = || w.status("mng-public-key", &id);
    eventually("the callback is calling", || async { get().await["status"] == "calling" }).await;
    let sent = w.pbx.accepted("/vpbx/commands/callback")[0].body.clone();
    let json = form_urlencoded::parse(&sent).find(|(k, _)| k == "json").unwrap().1.into_owned();
    let command: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (command["command_id"].as_str(), command["to_number"].as_str()),
        (Some(id.as_str()), Some("79161234567"))
    );

    let http = reqwest::Client::new();
    let post = |event: &str, json: String| {
        let sign = callpool::pbx::mango::sign(MANGO_KEY, &json, MANGO_SALT);
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("vpbx_api_key", MANGO_KEY), ("sign", sign.as_str()), ("json", json.as_str())])
            .finish();
        http.post(w.node.url(&format!("/v1/pbx/calls/mg/{event}")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let now = Ts::now().as_millis() / 1000;
    // The employee's leg (from the visitor to extension 101), then the visitor's (from 101).
    let leg = |visitor: bool, state: &str, seq: u32, reason: Option<u32>| {
        let (from, to) = if visitor {
            (json!({"extension": "101", "number": "74951230099"}), json!({"number": "79161234567"}))
        } else {
            (json!({"number": "79161234567"}), json!({"extension": "101", "number": "sip:op@vpbx1.mangosip.ru"}))
        };
        let mut e = json!({"entry_id": "bWctY2ItMQ==", "call_id": format!("leg-{}", u8::from(visitor)),
            "timestamp": now + i64::from(seq), "seq": seq, "call_state": state, "location": "abonent",
            "from": from, "to": to, "command_id": id});
        if let Some(r) = reason {
            e["disconnect_reason"] = json!(r);
        }
        e.to_string()
    };
    for json in [leg(false, "Appeared", 1, None), leg(false, "Connected", 2, None)] {
        assert_eq!(post("events/call", json).await.unwrap().status(), 200);
    }
    eventually("the employee answered", || async { get().await["status"] == "connected" }).await;
    for json in [
        leg(false, "Disconnected", 3, Some(1000)),
        leg(true, "Appeared", 4, None),
        leg(true, "Connected", 5, None),
        leg(true, "Disconnected", 6, Some(1120)),
    ] {
        assert_eq!(post("events/call", json).await.unwrap().status(), 200);
    }
    eventually("the talk is over", || async { get().await["status"] == "completed" }).await;
    let summary = json!({"entry_id": "bWctY2ItMQ==", "call_direction": 2,
        "from": {"extension": "101", "number": "74951230099"}, "to": {"number": "79161234567"},
        "line_number": "74951230013", "create_time": now, "forward_time": now, "talk_time": now + 5,
        "end_time": now + 6, "entry_result": 1, "disconnect_reason": 1120});
    assert_eq!(post("events/summary", summary.to_string()).await.unwrap().status(), 200);
    let result = json!({"command_id": id, "result": 1000});
    assert_eq!(post("result/callback", result.to_string()).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.pbx.attempts("/vpbx/commands/callback"), 1, "exactly one command");
    assert_eq!(get().await["status"], "completed");
    assert_eq!(w.pbx.violations(), Vec::<String>::new());
    w.node.stop().await;
}

/// Operators rung in turn: the first's call reported missed rings the second at once; the
/// second's ring time running out without a word rings the third; a late report of the second's
/// call changes nothing; the third answers, and the report names them.
async fn operators_are_rung_in_turn_until_one_answers(backend: Backend) {
    let pbx = FakePbx::default();
    let pbx_url = pbx.start().await;
    let ga = FakeAnalytics::default();
    let ga_url = ga.start().await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique("hunt");
    let cfg = config(backend, dir.path(), &prefix, (&pbx_url, &ga_url), "", &more_sites(&pbx_url));
    let clock = Arc::new(ManualClock::new(Ts::now()));
    let node = Node::start(cfg, clock.clone()).await;
    let w = World { node, pbx, ga, backend, dir, prefix, pbx_url, ga_url };
    let (status, body) = w.ask("hnt-public-key", "+79161234567", "v-hunt", "203.0.113.7").await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let rung = |n: usize| {
        let w = &w;
        async move {
            eventually(&format!("operator {n} is rung"), || async { w.pbx.accepted("/trigger").len() >= n }).await;
            let t = w.pbx.accepted("/trigger")[n - 1].json();
            (t["operator"].as_str().unwrap().to_owned(), t["call_id"].as_str().unwrap().to_owned())
        }
    };
    assert_eq!(rung(1).await, (OPERATOR.to_owned(), id.clone()));
    assert_eq!(w.status("hnt-public-key", &id).await["status"], "calling");

    // The PBX reports the first operator's call missed: the second is rung (no waiting for the ring time).
    w.report(&id, "missed").await;
    assert_eq!(rung(2).await, (OPERATOR_2.to_owned(), format!("{id}-2")));
    assert_eq!(w.status("hnt-public-key", &id).await["status"], "calling", "the visitor still waits");

    // Nothing is heard of the second: after its ring time (5 s, and 5 s for the PBX's report) the third.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.pbx.accepted("/trigger").len(), 2, "not before the ring time is over");
    clock.advance(Duration::from_secs(11));
    assert_eq!(rung(3).await, (OPERATOR_3.to_owned(), format!("{id}-3")));
    // The second's late "missed" is an old turn's: the third is still being rung.
    w.report(&format!("{id}-2"), "missed").await;
    w.report(&format!("{id}-3"), "answered").await;
    w.report(&format!("{id}-3"), "completed").await;
    assert_eq!(w.status("hnt-public-key", &id).await["status"], "completed");
    clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.pbx.accepted("/trigger").len(), 3, "no operator after the one who answered");
    assert_eq!(w.pbx.violations(), Vec::<String>::new());

    let report: Value = w.node.admin_get("/v1/reports/hnt/callbacks").await.json().await.unwrap();
    let row = &report["callbacks"][0];
    assert_eq!(
        (row["status"].as_str(), row["operators_rung"].as_u64(), row["answered_by"].as_str()),
        (Some("completed"), Some(3), Some(OPERATOR_3)),
        "{row}"
    );
    let page = w.node.admin_get("/v1/reports/hnt?lang=en").await.text().await.unwrap();
    assert!(page.contains(&format!("<td>completed</td><td>3</td><td>{OPERATOR_3}</td>")), "{page}");
    // The callback's call tells its request's story, in the calls report and on its page.
    let calls: Value = w.node.admin_get("/v1/reports/hnt/calls?match=callback").await.json().await.unwrap();
    let story = &calls["calls"][0]["callback"];
    assert_eq!(
        (story["operators_rung"].as_u64(), story["answered_by"].as_str()),
        (Some(3), Some(OPERATOR_3)),
        "{calls}"
    );
    let page = w.node.admin_get("/v1/reports/hnt/calls?format=html&lang=en").await.text().await.unwrap();
    assert!(page.contains(&format!("operators rung: 3; answered by {OPERATOR_3}")), "{page}");
    w.node.stop().await;
}

#[tokio::test]
async fn operators_are_rung_in_turn_until_one_answers_embedded() {
    operators_are_rung_in_turn_until_one_answers(Backend::Embedded).await;
}

#[tokio::test]
async fn operators_are_rung_in_turn_until_one_answers_redis() {
    operators_are_rung_in_turn_until_one_answers(Backend::Redis).await;
}

#[tokio::test]
async fn outside_working_hours_the_call_is_scheduled_for_the_next_opening() {
    let pbx = FakePbx::default();
    let pbx_url = pbx.start().await;
    let ga = FakeAnalytics::default();
    let ga_url = ga.start().await;
    let dir = tempfile::tempdir().unwrap();
    let hours = r#"hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }
holidays = ["2026-11-23"]"#;
    let cfg = config(Backend::Embedded, dir.path(), "", (&pbx_url, &ga_url), "timezone = \"Europe/Moscow\"", hours);
    // Friday 2026-11-20 21:30 in Moscow; Monday the 23rd is a holiday: Tuesday 09:00 is next.
    let friday =
        Ts::from_millis(chrono::DateTime::parse_from_rfc3339("2026-11-20T18:30:00Z").unwrap().timestamp_millis());
    let clock = Arc::new(ManualClock::new(friday));
    let node = Node::start(cfg, clock.clone()).await;
    let w = World { node, pbx, ga, backend: Backend::Embedded, dir, prefix: String::new(), pbx_url, ga_url };
    let mut tab = WsTab::open(w.node.addr, "shop-public-key", ORIGIN).await;
    tab.hello("v-late", PAGE).await;
    let form = loop {
        match tab.next().await {
            Heard::Json(v) if v["type"] == "callback_form" => break v,
            Heard::Json(_) => continue,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(form["open"], false);
    assert_eq!(form["notice"], "We are closed now; we will call you back on Tue 24 Nov at 09:00.");
    tab.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    let m = callback_msg(&mut tab).await;
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["message"], "Thank you! We will call you back on Tue 24 Nov at 09:00.");
    let tuesday = chrono::DateTime::parse_from_rfc3339("2026-11-24T06:00:00Z").unwrap().timestamp_millis();
    assert_eq!(m["at"].as_i64(), Some(tuesday));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.pbx.attempts("/trigger"), 0, "not before the opening");
    clock.set(Ts::from_millis(tuesday - 1_000));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.pbx.attempts("/trigger"), 0, "not a second early");
    clock.set(Ts::from_millis(tuesday));
    eventually("triggered at the opening", || async { w.pbx.accepted("/trigger").len() == 1 }).await;
    assert_eq!(statuses_until(&mut tab, "calling").await, ["calling"]);
    w.node.stop().await;
}

#[tokio::test]
async fn a_minimum_time_on_site_holds_the_form_back() {
    let pbx = FakePbx::default();
    let pbx_url = pbx.start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(Backend::Embedded, dir.path(), "", (&pbx_url, &pbx_url), "", "min_time_on_site = \"1m\"");
    let clock = Arc::new(ManualClock::new(T0));
    let node = Node::start(cfg, clock.clone()).await;
    let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    tab.hello("v-new", PAGE).await;
    tab.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    let m = callback_msg(&mut tab).await;
    assert_eq!((m["type"].as_str(), m["reason"].as_str()), (Some("callback_refused"), Some("too_soon")));
    // The visit is the hub's own record: a request through the API naming no visitor, or a
    // visitor the hub has never seen, has no time on the site at all.
    let ask = |visitor: Option<&str>| {
        let (url, visitor) = (node.url("/v1/callback"), visitor.map(str::to_owned));
        async move {
            let body = json!({"site": "shop-public-key", "number": "+79161234568", "visitor": visitor});
            let resp = reqwest::Client::new().post(url).header("origin", ORIGIN).json(&body).send().await.unwrap();
            resp.json::<Value>().await.unwrap()
        }
    };
    clock.set(T0.plus(Duration::from_secs(61)));
    assert_eq!(ask(None).await["error"]["code"], "too_soon");
    assert_eq!(ask(Some("v-never-seen")).await["error"]["code"], "too_soon");
    tab.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    assert_eq!(callback_msg(&mut tab).await["status"], "accepted");
    node.stop().await;
}

async fn old_callbacks_are_forgotten(backend: Backend) {
    let w = World::start(backend).await;
    let (status, body) = w.ask("lim-public-key", "+79161234567", "v-old", "10.0.0.1").await;
    assert_eq!(status, 202);
    let id = callpool::callback::CallbackId::parse(body["id"].as_str().unwrap()).unwrap();
    eventually("triggered", || async { w.pbx.accepted("/trigger").len() == 1 }).await;
    let (app, store) = (&w.node.app, &w.node.app.store);
    callpool::reaper::forget_before(app, Ts::now().minus(Duration::from_secs(60)), 1000).await.unwrap();
    assert!(store.callback(&id).await.unwrap().is_some(), "a recent callback stays");
    callpool::reaper::forget_before(app, Ts::now().plus(Duration::from_secs(60)), 1000).await.unwrap();
    assert!(store.callback(&id).await.unwrap().is_none(), "an old one is forgotten");
    let key = callpool::calls::CallKey::new("office", id.as_str()).unwrap();
    assert!(store.callback_for_call(&key).await.unwrap().is_none(), "a late report of its call finds nothing");
    let report: Value = w.node.admin_get("/v1/reports/lim/callbacks").await.json().await.unwrap();
    assert_eq!(report["callbacks"], json!([]));
    w.node.stop().await;
}

#[tokio::test]
async fn old_callbacks_are_forgotten_embedded() {
    old_callbacks_are_forgotten(Backend::Embedded).await;
}

#[tokio::test]
async fn old_callbacks_are_forgotten_redis() {
    old_callbacks_are_forgotten(Backend::Redis).await;
}

#[tokio::test]
async fn a_repeated_request_joins_the_open_one_and_never_rings_twice() {
    let w = World::start(Backend::Redis).await;
    w.pbx.down.store(true, Ordering::SeqCst);
    let (s1, first) = w.ask("shop-public-key", "+79161234567", "v-double", "10.0.0.1").await;
    let (s2, second) = w.ask("shop-public-key", "8 916 123-45-67", "v-double", "10.0.0.1").await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(first["id"], second["id"], "a double submit joins the open request");
    // Someone else asking for the same number is told a call comes, and nothing of the request.
    let (s_other, other) = w.ask("shop-public-key", "+79161234567", "v-stranger", "10.0.0.2").await;
    assert_eq!(s_other, 202);
    assert_eq!((other["id"].clone(), other["status"].as_str()), (Value::Null, Some("accepted")), "{other}");
    // The same from the widget: the asking tab alone is answered, without an id.
    let mut stranger = open_tab(&w.node, "v-stranger-ws").await;
    stranger.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    let told = callback_msg(&mut stranger).await;
    assert_eq!((told["id"].clone(), told["status"].as_str()), (Value::Null, Some("accepted")), "{told}");
    eventually("the open request failed for good", || async { w.pbx.attempts("/trigger") == 4 }).await;
    let id = first["id"].as_str().unwrap();
    eventually("failed", || async { w.status("shop-public-key", id).await["status"] == "failed" }).await;
    let (s3, third) = w.ask("shop-public-key", "+79161234567", "v-double", "10.0.0.1").await;
    assert_eq!(s3, 202);
    assert_ne!(third["id"], first["id"], "once it is over, the number may ask again");
    assert_eq!(w.node.metric("callpool_callback_requests_total{how=\"repeat\",site=\"shop\"}").await, 3.0);
    w.node.stop().await;
}

#[tokio::test]
async fn with_the_store_away_a_request_is_answered_503_and_nothing_rings() {
    let port = free_port();
    let redis = OwnRedis::start(port);
    let pbx = FakePbx::default();
    let pbx_url = pbx.start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(Backend::Redis, dir.path(), "cb-away", (&pbx_url, &pbx_url), "", "");
    cfg.store = callpool::config::StoreConfig::Redis {
        url: format!("redis://127.0.0.1:{port}/"),
        prefix: unique("cb"),
        tls: Default::default(),
        sentinel: None,
    };
    let node = Node::start_real(cfg).await;
    drop(redis);
    let resp = reqwest::Client::new()
        .post(node.url("/v1/callback"))
        .header("origin", ORIGIN)
        .json(&json!({"site": "shop-public-key", "number": "+79161234567"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("+74951234567"),
        "the form can offer the site's number"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(pbx.attempts("/trigger"), 0);
    node.stop().await;
}

#[tokio::test]
async fn a_retry_that_would_fall_after_closing_waits_for_the_next_opening() {
    let pbx = FakePbx::default();
    let pbx_url = pbx.start().await;
    let dir = tempfile::tempdir().unwrap();
    let hours = r#"hours = { mon = "09:00-18:00", tue = "09:00-18:00", wed = "09:00-18:00", thu = "09:00-18:00", fri = "09:00-18:00" }"#;
    let cfg = config(Backend::Embedded, dir.path(), "", (&pbx_url, &pbx_url), "timezone = \"Europe/Moscow\"", hours);
    let ms = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis();
    // Wednesday 17:59:59.950 in Moscow: open, for 50 ms more.
    let clock = Arc::new(ManualClock::new(Ts::from_millis(ms("2026-11-25T14:59:59.950Z"))));
    let node = Node::start(cfg, clock.clone()).await;
    pbx.failing.store(1, Ordering::SeqCst);
    let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    tab.hello("v-closing", PAGE).await;
    tab.send_text(&json!({"type": "callback_request", "number": "+79161234567"}).to_string()).await;
    assert_eq!(callback_msg(&mut tab).await["status"], "accepted");
    let retry = callback_msg(&mut tab).await;
    assert_eq!(retry["status"], "retrying");
    let thursday = ms("2026-11-26T06:00:00Z");
    assert_eq!(retry["at"].as_i64(), Some(thursday), "{retry}");
    assert_eq!(retry["message"], "Our phone line is busy; we will try again tomorrow at 09:00.");
    clock.set(Ts::from_millis(thursday));
    eventually("placed at the opening", || async { pbx.accepted("/trigger").len() == 1 }).await;
    assert_eq!(pbx.attempts("/trigger"), 2);
    node.stop().await;
}
