//! `callpool analytics setup` and `check` against a strict local Google: its OAuth token endpoint
//! verifies the service account's signed JWT (signature with the test key, audience, scope,
//! lifetime), its Admin API refuses duplicates and keeps the documented limits, and its
//! validation server answers as GA4's does. Setup run twice creates everything once; a dry run
//! creates nothing; a property the account may not edit is reported, not hidden; the key and the
//! access token never show.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::*;
use callpool::config::Config;

/// A 2048-bit RSA key made for these tests only (`openssl genpkey -algorithm RSA`).
const TEST_KEY: &str = include_str!("data/google-test-service-account.pem");
const CLIENT_EMAIL: &str = "callpool@test-project.iam.gserviceaccount.com";
const PROPERTY: &str = "123456789";
const FORBIDDEN: &str = "987654321";
/// A property that already has 45 event-scoped custom dimensions of its own.
const CROWDED: &str = "555555555";
const ACCESS_TOKEN: &str = "ya29.test-access-token-0123456789";

/// What the fake Google holds and saw.
#[derive(Default)]
struct Google {
    /// Per property and collection: the entries, as the Admin API returns them.
    entries: BTreeMap<(String, String), Vec<Value>>,
    /// Every create that went through.
    created: Vec<String>,
    violations: Vec<String>,
    tokens_issued: usize,
}

#[derive(Clone, Default)]
struct FakeGoogle(Arc<Mutex<Google>>);

fn b64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()
}

impl FakeGoogle {
    async fn start(&self) -> String {
        let me = self.clone();
        let base = Arc::new(Mutex::new(String::new()));
        let b = base.clone();
        let url = serve_fake(move |req| {
            let (me, b) = (me.clone(), b.clone());
            async move {
                let base = b.lock().unwrap().clone();
                me.handle(req, &base).await
            }
        })
        .await;
        *base.lock().unwrap() = url.clone();
        url
    }

    fn violation(&self, v: String) -> (axum::http::StatusCode, String) {
        self.0.lock().unwrap().violations.push(v.clone());
        (
            axum::http::StatusCode::BAD_REQUEST,
            json!({"error": {"code": 400, "message": v, "status": "INVALID_ARGUMENT"}}).to_string(),
        )
    }

    async fn handle(&self, req: axum::extract::Request, base: &str) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode;
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
        let path = parts.uri.path().to_owned();
        let query: HashMap<String, String> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if path == "/token" {
            return self.token(parts.method.as_str(), &body, &format!("{base}/token"));
        }
        if path == format!("/management/v1/counter/{YM_COUNTER}/goals") {
            // Metrica's goals: no calls goal yet (it comes with the first upload).
            if auth != format!("OAuth {YM_TOKEN}") || parts.method != "GET" {
                return self.violation(format!("goals: {} with {auth:?}", parts.method));
            }
            return (StatusCode::OK, json!({"goals": [{"id": 1, "name": "Корзина", "type": "url"}]}).to_string());
        }
        if path == "/debug/mp/collect" {
            // GA4's validation server: 200 with what is wrong.
            let mut messages = Vec::new();
            if query.get("measurement_id").map(String::as_str) != Some(GA4_MEASUREMENT_ID) {
                messages.push(json!({"fieldPath": "measurement_id", "description": "Measurement ID not found.", "validationCode": "VALUE_INVALID"}));
            }
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            if v["events"][0]["name"].as_str().is_none() {
                messages.push(
                    json!({"fieldPath": "events", "description": "no event", "validationCode": "VALUE_REQUIRED"}),
                );
            }
            return (StatusCode::OK, json!({"validationMessages": messages}).to_string());
        }
        let Some(rest) = path.strip_prefix("/v1beta/properties/") else {
            return self.violation(format!("unexpected path {path}"));
        };
        let Some((property, collection)) = rest.split_once('/') else {
            return self.violation(format!("unexpected path {path}"));
        };
        if auth != format!("Bearer {ACCESS_TOKEN}") {
            return (StatusCode::UNAUTHORIZED, json!({"error": {"code": 401, "message": "Request is missing required authentication credential.", "status": "UNAUTHENTICATED"}}).to_string());
        }
        if property == FORBIDDEN {
            return (StatusCode::FORBIDDEN, json!({"error": {"code": 403, "message": "User does not have sufficient permissions for this property.", "status": "PERMISSION_DENIED"}}).to_string());
        }
        let field = match collection {
            "keyEvents" | "customDimensions" | "customMetrics" => collection,
            _ => return self.violation(format!("unexpected collection {collection}")),
        };
        let key = (property.to_owned(), collection.to_owned());
        if property == CROWDED && collection == "customDimensions" {
            let mut g = self.0.lock().unwrap();
            let list = g.entries.entry(key.clone()).or_default();
            while list.len() < 45 {
                let n = list.len();
                list.push(json!({"parameterName": format!("theirs_{n}"), "displayName": format!("Theirs {n}"), "scope": "EVENT"}));
            }
        }
        match parts.method.as_str() {
            "GET" => {
                let all = self.0.lock().unwrap().entries.get(&key).cloned().unwrap_or_default();
                let size: usize = query.get("pageSize").and_then(|s| s.parse().ok()).unwrap_or(50).min(200);
                // Pages of at most 5 here (the API's own may be shorter than asked), to make the
                // client follow nextPageToken.
                let size = size.min(5);
                let from: usize = query.get("pageToken").and_then(|t| t.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = all.iter().skip(from).take(size).cloned().collect();
                let mut answer = json!({ field: page });
                if from + size < all.len() {
                    answer["nextPageToken"] = json!((from + size).to_string());
                }
                (StatusCode::OK, answer.to_string())
            }
            "POST" => {
                let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                    return self.violation("create: not JSON".into());
                };
                if let Err(why) = check_create(collection, &v) {
                    return self.violation(format!("{collection}: {why}"));
                }
                let name_field = if collection == "keyEvents" { "eventName" } else { "parameterName" };
                let name = v[name_field].as_str().unwrap_or_default().to_owned();
                let mut g = self.0.lock().unwrap();
                let list = g.entries.entry(key).or_default();
                if list.iter().any(|e| e[name_field] == name.as_str()) {
                    return (StatusCode::CONFLICT, json!({"error": {"code": 409, "message": format!("{name} already exists"), "status": "ALREADY_EXISTS"}}).to_string());
                }
                // GA4: 30 key events, 50 event-scoped custom dimensions, 50 custom metrics.
                let limit = if collection == "keyEvents" { 30 } else { 50 };
                if list.len() >= limit {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}).to_string(),
                    );
                }
                let mut stored = v.clone();
                stored["name"] = json!(format!("properties/{property}/{collection}/{}", list.len() + 1));
                list.push(stored.clone());
                g.created.push(format!("{collection}/{name}"));
                (StatusCode::OK, stored.to_string())
            }
            m => self.violation(format!("{m} {path}")),
        }
    }

    /// Google's token endpoint for the JWT bearer grant: checks the assertion strictly.
    fn token(&self, method: &str, body: &[u8], audience: &str) -> (axum::http::StatusCode, String) {
        use axum::http::StatusCode;
        let refuse = |why: &str| {
            self.0.lock().unwrap().violations.push(format!("token: {why}"));
            (StatusCode::BAD_REQUEST, json!({"error": "invalid_grant", "error_description": why}).to_string())
        };
        if method != "POST" {
            return refuse("not a POST");
        }
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        if form.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
            return refuse("grant_type is not the JWT bearer grant");
        }
        let Some(jwt) = form.get("assertion") else { return refuse("no assertion") };
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, s] = parts.as_slice() else { return refuse("the assertion is not a JWT") };
        let (Some(header), Some(claims), Some(sig)) = (b64(h), b64(c), b64(s)) else { return refuse("not base64url") };
        let header: Value = serde_json::from_slice(&header).unwrap_or_default();
        let claims: Value = serde_json::from_slice(&claims).unwrap_or_default();
        if header["alg"] != "RS256" || header["typ"] != "JWT" || header["kid"] != "test-key-id" {
            return refuse(&format!("header {header}"));
        }
        let public = test_public_key();
        let key = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, public);
        if key.verify(format!("{h}.{c}").as_bytes(), &sig).is_err() {
            return refuse("the signature does not verify with the service account's key");
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let (iat, exp) = (claims["iat"].as_i64().unwrap_or(0), claims["exp"].as_i64().unwrap_or(0));
        if claims["iss"] != CLIENT_EMAIL || claims["aud"] != audience {
            return refuse(&format!("iss or aud: {claims}"));
        }
        if !claims["scope"]
            .as_str()
            .unwrap_or("")
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/analytics.edit")
        {
            return refuse("the scope is not analytics.edit");
        }
        if (iat - now).abs() > 60 || exp <= now || exp - iat > 3600 {
            return refuse("iat/exp: not issued now, or valid for more than an hour");
        }
        self.0.lock().unwrap().tokens_issued += 1;
        (StatusCode::OK, json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}).to_string())
    }

    fn created(&self) -> Vec<String> {
        self.0.lock().unwrap().created.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.0.lock().unwrap().violations.clone()
    }
}

/// What the Admin API documents for a create's body.
fn check_create(collection: &str, v: &Value) -> Result<(), String> {
    let name_ok = |n: &str, max: usize| {
        !n.is_empty()
            && n.len() <= max
            && n.starts_with(|c: char| c.is_ascii_alphabetic())
            && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    let display_ok = |d: &str| {
        !d.is_empty()
            && d.len() <= 82
            && d.starts_with(|c: char| c.is_ascii_alphabetic())
            && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b' ')
    };
    match collection {
        "keyEvents" => {
            let e = v["eventName"].as_str().unwrap_or("");
            if !name_ok(e, 40) {
                return Err(format!("eventName {e:?}"));
            }
            if !matches!(v["countingMethod"].as_str(), Some("ONCE_PER_EVENT" | "ONCE_PER_SESSION")) {
                return Err("countingMethod".into());
            }
        }
        _ => {
            let p = v["parameterName"].as_str().unwrap_or("");
            if !name_ok(p, 40) {
                return Err(format!("parameterName {p:?}"));
            }
            let d = v["displayName"].as_str().unwrap_or("");
            if !display_ok(d) {
                return Err(format!("displayName {d:?}"));
            }
            if v["description"].as_str().is_some_and(|d| d.len() > 150) {
                return Err("description longer than 150".into());
            }
            if v["scope"] != "EVENT" {
                return Err("scope is not EVENT".into());
            }
            if collection == "customMetrics"
                && !matches!(
                    v["measurementUnit"].as_str(),
                    Some("STANDARD" | "SECONDS" | "MILLISECONDS" | "MINUTES" | "HOURS")
                )
            {
                return Err("measurementUnit".into());
            }
        }
    }
    Ok(())
}

/// The test key's public half, DER (PKCS#1), as the fake verifies with.
fn test_public_key() -> Vec<u8> {
    let pem: String = TEST_KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(pem).unwrap();
    let pair = ring::rsa::KeyPair::from_pkcs8(&der).unwrap();
    use ring::signature::KeyPair as _;
    pair.public_key().as_ref().to_vec()
}

/// The service account's key file, as Google gives it, pointing at the fake's token endpoint.
fn key_file(dir: &std::path::Path, google: &str) -> std::path::PathBuf {
    let path = dir.join("ga-service-account.json");
    let key = json!({
        "type": "service_account", "project_id": "test-project", "private_key_id": "test-key-id",
        "private_key": TEST_KEY, "client_email": CLIENT_EMAIL, "client_id": "1",
        "token_uri": format!("{google}/token"),
    });
    std::fs::write(&path, key.to_string()).unwrap();
    path
}

fn config_file(dir: &std::path::Path, google: &str, property: &str) -> std::path::PathBuf {
    let key = key_file(dir, google);
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[analytics]
ga4_base_url = "{google}"
ga4_admin_base_url = "{google}"
yandex_base_url = "{google}"

[[pbx]]
id = "office"
secrets = ["office-secret-0123456789"]

{site}

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"
property_id = "{property}"
service_account_key_file = {key:?}

[site.yandex]
counter_id = {YM_COUNTER}
token = "{YM_TOKEN}"

[site.callback]
operator = "+74951230099"
trigger = {{ kind = "generic", url = "http://127.0.0.1:9/cb", secret = "trigger-secret-0123456789" }}
"#,
        data = dir.join("data").display().to_string(),
        site = shop_site("https://shop.example", "0s", "30m", "30m"),
        key = key.display().to_string(),
    );
    let file = dir.join("callpool.toml");
    std::fs::write(&file, text).unwrap();
    file
}

async fn setup(node: &Node, query: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(node.url(&format!("/v1/admin/analytics/shop/setup{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(!text.contains(ACCESS_TOKEN) && !text.contains("PRIVATE KEY"), "a secret in the answer: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn setup_makes_key_events_and_dimensions_once_and_reports_what_it_cannot() {
    let google = FakeGoogle::default();
    let url = google.start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), &url, PROPERTY);
    let node = Node::start_real(Config::load(&file, &HashMap::new()).unwrap()).await;
    let params = callpool::analytics::GA4_PARAMS.len();

    // A dry run says what it would make and makes nothing.
    let (status, dry) = setup(&node, "?dry_run=true").await;
    assert_eq!(status, 200, "{dry}");
    let items = dry["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2 + params + 1, "{dry}");
    assert!(items[..2 + params].iter().all(|i| i["outcome"] == "would_create"), "{dry}");
    // Metrica's calls goal is not there yet: Metrica makes it with the first upload.
    let goal = &items[2 + params];
    assert_eq!((goal["kind"].as_str(), goal["outcome"].as_str()), (Some("metrica_goal"), Some("pending")), "{dry}");
    assert!(google.created().is_empty());

    // The first run makes the two key events and every parameter.
    let (status, first) = setup(&node, "").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["created"].as_u64(), first["failed"].as_u64()), (Some(2 + params as u64), Some(0)), "{first}");
    let created = google.created();
    assert!(
        created.contains(&"keyEvents/phone_call".to_owned())
            && created.contains(&"keyEvents/callback_request".to_owned())
    );
    assert!(created.contains(&"customMetrics/call_duration".to_owned()));
    assert!(created.contains(&"customDimensions/match_kind".to_owned()));
    // Run again (the lists span several pages now): everything is there, nothing is made twice.
    let (_, second) = setup(&node, "").await;
    assert_eq!(
        (second["created"].as_u64(), second["existing"].as_u64()),
        (Some(0), Some(2 + params as u64)),
        "{second}"
    );
    assert_eq!(second["failed"], 0);
    assert_eq!(google.created().len(), 2 + params);
    assert_eq!(google.violations(), Vec::<String>::new());

    // The validation server: the site's settings pass; a wrong measurement id is reported.
    let check = |node: &Node| {
        let url = node.url("/v1/admin/analytics/shop/check");
        async move { reqwest::Client::new().post(url).bearer_auth(ADMIN_TOKEN).send().await.unwrap() }
    };
    let ok: Value = check(&node).await.json().await.unwrap();
    assert_eq!((ok["valid"].as_bool(), ok["measurement_id"].as_str()), (Some(true), Some(GA4_MEASUREMENT_ID)), "{ok}");
    node.stop().await;

    // A property near its limit of custom dimensions: as many as fit are made, the rest reported.
    let crowded = config_file(dir.path(), &url, CROWDED);
    let node = Node::start_real(Config::load(&crowded, &HashMap::new()).unwrap()).await;
    let (_, full) = setup(&node, "").await;
    let failed: Vec<&Value> = full["items"].as_array().unwrap().iter().filter(|i| i["outcome"] == "failed").collect();
    let dimensions =
        callpool::analytics::GA4_PARAMS.iter().filter(|p| p.shown == callpool::analytics::Ga4Shown::Dimension).count();
    assert_eq!(failed.len(), dimensions - 5, "{full}");
    assert!(
        failed
            .iter()
            .all(|i| i["kind"] == "custom_dimension"
                && i["detail"].as_str().unwrap().starts_with("RESOURCE_EXHAUSTED")),
        "{full}"
    );
    node.stop().await;

    // The property the account may not edit: every item failed, with Google's reason; the CLI
    // says so and exits 1; the key and the token appear nowhere.
    let file = config_file(dir.path(), &url, FORBIDDEN);
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace(GA4_MEASUREMENT_ID, "G-WRONG1")).unwrap();
    let out = run_cli(&file, &["analytics", "setup", "--site", "shop"]).await;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("FAILED: cannot list keyEvents: PERMISSION_DENIED"), "{said}");
    assert!(!said.contains(ACCESS_TOKEN) && !said.contains("PRIVATE KEY"), "{said}");
    let out = run_cli(&file, &["analytics", "check", "--site", "shop"]).await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("VALUE_INVALID measurement_id: Measurement ID not found."), "{said}");
}

/// Runs the `callpool` binary on `file` with `args`.
async fn run_cli(file: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config".to_owned(), file.display().to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_callpool")).args(all).output().unwrap()
    })
    .await
    .unwrap()
}

/// A key file that is not one is refused when the configuration is read, saying why and never
/// what the file holds.
#[test]
fn a_bad_key_file_is_refused_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "http://127.0.0.1:9", PROPERTY);
    std::fs::write(dir.path().join("ga-service-account.json"), "{\"client_email\": \"x\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0LWJ5dGVz\\n-----END PRIVATE KEY-----\"}").unwrap();
    let e = Config::load(&file, &HashMap::new()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("service_account_key: its private_key is not an RSA key"), "{text}");
    assert!(!text.contains("c2VjcmV0"), "{text}");
}
