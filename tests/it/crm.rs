//! The CRM destinations against strict local fakes of amoCRM's API v4 and Bitrix24's REST
//! (every request checked for its path, its auth and its fields as the vendors document them;
//! the requests' pace too): a tracked call becomes exactly one CRM record with the visit's source,
//! also while the CRM answers 429, 500 or 503 for a while, when an answer is lost after the CRM
//! acted, and across a callpool restart; a refusal is a dead letter that a requeue delivers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use callpool::config::Config;

const PBX_SECRET: &str = "office-secret-0123456789";
const ORIGIN: &str = "https://shop.example";
const PAGE: &str = "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=winter";
const AMO_TOKEN: &str = "amo-long-lived-token-0123456789";
const B24_TOKEN: &str = "b24webhookcode0123";
/// A caller the CRM knows (a contact has the number).
const KNOWN: &str = "+79160000001";

/// Polls `f` for up to 40 s (CRM jobs wait for each other in steps of 2 s, and the pace is slow).
async fn until<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_for(what, Duration::from_secs(40), f).await;
}

/// What every fake shares: the requests' times (for the pace), violations, faults to answer.
#[derive(Default)]
struct Common {
    times: Vec<Instant>,
    violations: Vec<String>,
    /// Statuses to answer the next requests with, before looking at them.
    faults: VecDeque<u16>,
    /// Answer every request with this status while set.
    down: Option<u16>,
}

impl Common {
    /// Records a request; a violation when more than `per_second` + 1 came within a second.
    fn arrived(&mut self, per_second: usize) {
        let now = Instant::now();
        self.times.push(now);
        let recent = self.times.iter().filter(|t| now.duration_since(**t) < Duration::from_secs(1)).count();
        if recent > per_second + 1 {
            self.violations.push(format!("{recent} requests within a second"));
        }
    }

    fn fault(&mut self) -> Option<u16> {
        self.down.or_else(|| self.faults.pop_front())
    }
}

async fn body_of(req: axum::extract::Request) -> (axum::http::request::Parts, Value, bool) {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let json_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json");
    (parts, serde_json::from_slice(&bytes).unwrap_or(Value::Null), json_type)
}

fn query(parts: &axum::http::request::Parts) -> Vec<(String, String)> {
    let url = reqwest::Url::parse(&format!("http://x/?{}", parts.uri.query().unwrap_or(""))).unwrap();
    url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

// ---------------------------------------------------------------------------------------------
// amoCRM

#[derive(Default)]
struct AmoState {
    common: Common,
    /// Numbers a contact has (accepted contacts only: "Unsorted" contacts are not found).
    contacts: Vec<String>,
    /// Calls logged: (uniq, the request's call).
    calls: Vec<(String, Value)>,
    /// "Unsorted" items made: the request's item.
    unsorted: Vec<Value>,
    /// Notes added to leads: (lead id, the note).
    notes: Vec<(u64, Value)>,
    /// Make the next unsorted item, then answer 500 (the answer lost).
    lose_unsorted: bool,
    /// Answer 401 (a revoked token) while set.
    revoked: bool,
}

#[derive(Clone, Default)]
struct Amo(Arc<Mutex<AmoState>>);

/// A fake CRM: serves its `handle` on a loopback port.
trait Fake: Clone + Send + Sync + 'static {
    fn handle(&self, req: axum::extract::Request) -> impl std::future::Future<Output = (StatusCode, String)> + Send;

    async fn start(&self) -> String {
        let me = self.clone();
        serve_fake(move |req| {
            let me = me.clone();
            async move { me.handle(req).await }
        })
        .await
    }
}

impl Fake for Amo {
    async fn handle(&self, req: axum::extract::Request) -> (StatusCode, String) {
        let (parts, body, json_type) = body_of(req).await;
        let mut s = self.0.lock().unwrap();
        s.common.arrived(7);
        let auth = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if auth != format!("Bearer {AMO_TOKEN}") || s.revoked {
            let body = json!({"title": "Unauthorized", "type": "https://httpstatus.es/401", "status": 401, "detail": "Неверный логин или пароль"});
            return (StatusCode::UNAUTHORIZED, body.to_string());
        }
        if let Some(status) = s.common.fault() {
            return (StatusCode::from_u16(status).unwrap(), String::new());
        }
        let path = parts.uri.path().to_owned();
        let mut problems = Vec::new();
        let answer = match (parts.method.as_str(), path.as_str()) {
            ("POST", "/api/v4/calls") => {
                let item = single(&body, json_type, &mut problems);
                check_call(&item, &mut problems);
                if !problems.is_empty() {
                    (StatusCode::BAD_REQUEST, String::new())
                } else if !s.contacts.iter().any(|c| c == item["phone"].as_str().unwrap()) {
                    let body = json!({"_total_items": 0, "errors": [{"request_id": "0", "title": "Entity not found", "status": 400, "detail": "Entity not found"}]});
                    (StatusCode::BAD_REQUEST, body.to_string())
                } else {
                    s.calls.push((item["uniq"].as_str().unwrap().to_owned(), item.clone()));
                    let id = s.calls.len() as u64 + 100;
                    let body = json!({"_total_items": 1, "errors": [], "_embedded": {"calls": [
                        {"id": id, "entity_id": 13032525, "entity_type": "contacts", "account_id": 28805383, "request_id": "0"}]}});
                    (StatusCode::OK, body.to_string())
                }
            }
            ("GET", "/api/v4/leads/unsorted") => {
                let q = query(&parts);
                if !q.contains(&("filter[category][]".into(), "sip".into())) {
                    problems.push(format!("the unsorted list without the sip category: {q:?}"));
                }
                let items: Vec<Value> = s.unsorted.iter().enumerate().map(|(i, u)| unsorted_item(i, u)).collect();
                if items.is_empty() {
                    (StatusCode::NO_CONTENT, String::new())
                } else {
                    (StatusCode::OK, json!({"_page": 1, "_embedded": {"unsorted": items}}).to_string())
                }
            }
            ("POST", "/api/v4/leads/unsorted/sip") => {
                let item = single(&body, json_type, &mut problems);
                check_unsorted(&item, &mut problems);
                // "Unsorted" cannot hold the same contact twice.
                let phone = &item["metadata"]["phone"];
                if problems.is_empty() && s.unsorted.iter().any(|u| u["metadata"]["phone"] == *phone) {
                    let e = json!({"title": "Bad Request", "status": 400, "detail": "Request validation failed",
                        "validation-errors": [{"request_id": "0", "errors": [{"code": "NotUnique", "path": "_embedded.contacts.0", "detail": "The contact is already in Unsorted"}]}]});
                    return (StatusCode::BAD_REQUEST, e.to_string());
                }
                if problems.is_empty() {
                    s.unsorted.push(item);
                    let made = unsorted_item(s.unsorted.len() - 1, s.unsorted.last().unwrap());
                    if std::mem::take(&mut s.lose_unsorted) {
                        (StatusCode::INTERNAL_SERVER_ERROR, String::new())
                    } else {
                        (StatusCode::OK, json!({"_total_items": 1, "_embedded": {"unsorted": [made]}}).to_string())
                    }
                } else {
                    (StatusCode::BAD_REQUEST, String::new())
                }
            }
            (m, p) if p.starts_with("/api/v4/leads/") && p.ends_with("/notes") => {
                let lead: u64 = p["/api/v4/leads/".len()..p.len() - "/notes".len()].parse().unwrap_or(0);
                let known = (0..s.unsorted.len()).any(|i| 4_217_119 + i as u64 == lead);
                if !known {
                    return (StatusCode::NOT_FOUND, String::new());
                }
                if m == "GET" {
                    let notes: Vec<Value> = s.notes.iter().filter(|n| n.0 == lead).map(|n| n.1.clone()).collect();
                    if notes.is_empty() {
                        return (StatusCode::NO_CONTENT, String::new());
                    }
                    return (StatusCode::OK, json!({"_embedded": {"notes": notes}}).to_string());
                }
                let note = single(&body, json_type, &mut problems);
                let p = &note["params"];
                let ok = matches!(note["note_type"].as_str(), Some("call_in" | "call_out"))
                    && p["uniq"].is_string()
                    && p["duration"].is_u64()
                    && p["source"].is_string()
                    && p["phone"].is_string();
                if !ok {
                    problems.push(format!("a note amoCRM would refuse: {note}"));
                }
                s.notes.push((lead, note));
                let id = s.notes.len() as u64;
                (
                    StatusCode::OK,
                    json!({"_embedded": {"notes": [{"id": id, "entity_id": lead, "request_id": "0"}]}}).to_string(),
                )
            }
            (m, p) => {
                problems.push(format!("{m} {p} is not a method callpool uses"));
                (StatusCode::NOT_FOUND, String::new())
            }
        };
        s.common.violations.extend(problems);
        answer
    }
}

impl Amo {
    fn unsorted(&self) -> Vec<Value> {
        self.0.lock().unwrap().unsorted.clone()
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.0.lock().unwrap().calls.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.0.lock().unwrap().common.violations.clone()
    }
}

/// The one item of a batch body (callpool sends one at a time).
fn single(body: &Value, json_type: bool, problems: &mut Vec<String>) -> Value {
    if !json_type {
        problems.push("not application/json".into());
    }
    match body.as_array().map(Vec::as_slice) {
        Some([item]) => item.clone(),
        _ => {
            problems.push(format!("not an array of one item: {body}"));
            Value::Null
        }
    }
}

/// `POST /api/v4/calls`: direction, duration, source and phone are required; call_status 1–7.
fn check_call(c: &Value, problems: &mut Vec<String>) {
    let ok = matches!(c["direction"].as_str(), Some("inbound" | "outbound"))
        && c["duration"].is_u64()
        && c["source"].as_str().is_some_and(|s| !s.is_empty())
        && c["phone"].as_str().is_some_and(|s| !s.is_empty())
        && c["uniq"].as_str().is_some_and(|s| !s.is_empty())
        && c["call_status"].as_u64().is_some_and(|s| (1..=7).contains(&s))
        && c["created_at"].is_i64();
    if !ok {
        problems.push(format!("a call amoCRM would refuse: {c}"));
    }
}

/// `POST /api/v4/leads/unsorted/sip`: source_uid, source_name, the call's metadata, a lead with
/// tracking-data fields by code, a contact with its phone.
fn check_unsorted(u: &Value, problems: &mut Vec<String>) {
    let m = &u["metadata"];
    let meta_ok =
        ["uniq", "service_code", "phone", "from"].iter().all(|k| m[k].as_str().is_some_and(|s| !s.is_empty()))
            && m["duration"].is_u64()
            && m["called_at"].is_i64()
            && m["is_call_event_needed"] == true;
    let lead = &u["_embedded"]["leads"][0];
    let fields_ok = lead["custom_fields_values"].as_array().is_some_and(|f| {
        f.iter().all(|f| {
            f["field_code"].as_str().is_some_and(|c| c.starts_with("UTM_")) && f["values"][0]["value"].is_string()
        })
    });
    let contact = &u["_embedded"]["contacts"][0]["custom_fields_values"][0];
    let contact_ok = contact["field_code"] == "PHONE" && contact["values"][0]["enum_code"] == "WORK";
    let ok = u["source_uid"].as_str().is_some_and(|s| !s.is_empty())
        && u["source_name"].as_str().is_some_and(|s| !s.is_empty())
        && meta_ok
        && lead["name"].is_string()
        && fields_ok
        && contact_ok;
    if !ok {
        problems.push(format!("an unsorted item amoCRM would refuse: {u}"));
    }
}

fn unsorted_item(i: usize, u: &Value) -> Value {
    json!({
        "uid": format!("f03c796f{i:04}"), "source_uid": u["source_uid"], "source_name": u["source_name"],
        "category": "sip", "metadata": u["metadata"], "request_id": "0",
        "_embedded": {"leads": [{"id": 4_217_119 + i}], "contacts": [{"id": 33_479_441 + i}], "companies": []},
    })
}

// ---------------------------------------------------------------------------------------------
// Bitrix24

#[derive(Default)]
struct B24State {
    common: Common,
    /// Numbers the CRM knows.
    known: Vec<String>,
    /// Open calls: CALL_ID → (EXTERNAL_CALL_ID, the lead made).
    open: HashMap<String, (String, Option<u64>)>,
    /// Finished calls: CALL_ID → the finish request.
    finished: HashMap<String, Value>,
    registered: usize,
    /// Leads: id → fields.
    leads: Vec<Value>,
    records: Vec<Value>,
    /// Finish the next call, then answer 500 (the answer lost).
    lose_finish: bool,
    /// Answer the next crm.lead.update with 503.
    fail_update: bool,
}

#[derive(Clone, Default)]
struct B24(Arc<Mutex<B24State>>);

impl Fake for B24 {
    async fn handle(&self, req: axum::extract::Request) -> (StatusCode, String) {
        let (parts, b, json_type) = body_of(req).await;
        let mut s = self.0.lock().unwrap();
        s.common.arrived(5);
        let path = parts.uri.path().to_owned();
        let Some(method) = path.strip_prefix(&format!("/rest/1/{B24_TOKEN}/")).and_then(|m| m.strip_suffix(".json"))
        else {
            let e = json!({"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"});
            return (StatusCode::UNAUTHORIZED, e.to_string());
        };
        if let Some(status) = s.common.fault() {
            let e = json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"});
            return (StatusCode::from_u16(status).unwrap(), e.to_string());
        }
        if parts.method != "POST" || !json_type {
            s.common.violations.push(format!("{} {method} without a JSON body", parts.method));
        }
        let error = |text: &str| (StatusCode::BAD_REQUEST, json!({"error": "", "error_description": text}).to_string());
        let ok = |result: Value| (StatusCode::OK, json!({"result": result, "time": {"start": 1.0}}).to_string());
        // Method names are not case-sensitive.
        match method.to_lowercase().as_str() {
            "telephony.externalcall.register" => {
                let valid = b["USER_ID"] == 1
                    && b["PHONE_NUMBER"].as_str().is_some_and(|p| !p.is_empty())
                    && b["CALL_START_DATE"].as_str().is_some_and(|d| chrono::DateTime::parse_from_rfc3339(d).is_ok())
                    && b["CRM_SOURCE"] == "CALL"
                    && b["SHOW"] == 0
                    && b["EXTERNAL_CALL_ID"].is_string()
                    // Inbound on the tracking line, leads for unknown numbers; a callback's call
                    // (4) makes none: its request did.
                    && match b["TYPE"].as_u64() {
                        Some(2) => b["LINE_NUMBER"].is_string() && b["CRM_CREATE"] == 1,
                        Some(4) => b["CRM_CREATE"] == 0,
                        _ => false,
                    };
                if !valid {
                    s.common.violations.push(format!("register: {b}"));
                    return error("Unknown TYPE");
                }
                let external = b["EXTERNAL_CALL_ID"].as_str().unwrap().to_owned();
                let phone = b["PHONE_NUMBER"].as_str().unwrap().to_owned();
                // The same call again while open: its CALL_ID and lead.
                if let Some((id, (_, lead))) = s.open.iter().find(|(_, (e, _))| *e == external) {
                    return ok(json!({"CALL_ID": id, "CRM_CREATED_LEAD": lead, "CRM_ENTITY_TYPE": "LEAD"}));
                }
                s.registered += 1;
                let id = format!("externalCall.716f1cb73def9700a23842adf9c4c568.{}", s.registered);
                let lead = if s.known.contains(&phone) || b["CRM_CREATE"] == 0 {
                    None
                } else {
                    s.known.push(phone.clone());
                    s.leads.push(json!({"TITLE": format!("{phone} - Incoming call"), "SOURCE_ID": "CALL"}));
                    Some(s.leads.len() as u64)
                };
                s.open.insert(id.clone(), (external, lead));
                ok(
                    json!({"CALL_ID": id, "CRM_CREATED_LEAD": lead, "CRM_CREATED_ENTITIES": [], "CRM_ENTITY_TYPE": "CONTACT", "CRM_ENTITY_ID": 797}),
                )
            }
            "crm.lead.update" => {
                if std::mem::take(&mut s.fail_update) {
                    let e = json!({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"});
                    return (StatusCode::SERVICE_UNAVAILABLE, e.to_string());
                }
                let Some(i) = b["id"].as_u64().filter(|i| *i >= 1 && *i as usize <= s.leads.len()) else {
                    return error("Not found");
                };
                let Some(fields) = b["fields"].as_object() else { return error("fields are required") };
                for (k, v) in fields {
                    s.leads[i as usize - 1][k] = v.clone();
                }
                ok(json!(true))
            }
            "telephony.externalcall.finish" => {
                let id = b["CALL_ID"].as_str().unwrap_or_default().to_owned();
                let codes =
                    ["200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER"];
                if b["USER_ID"] != 1
                    || !b["DURATION"].is_u64()
                    || !codes.contains(&b["STATUS_CODE"].as_str().unwrap_or(""))
                {
                    s.common.violations.push(format!("finish: {b}"));
                }
                if s.open.remove(&id).is_none() {
                    return error("Call is not found (call should be registered prior to finishing");
                }
                s.finished.insert(id.clone(), b.clone());
                if std::mem::take(&mut s.lose_finish) {
                    return (StatusCode::INTERNAL_SERVER_ERROR, String::new());
                }
                ok(
                    json!({"CALL_ID": id, "CALL_DURATION": b["DURATION"], "CALL_FAILED_CODE": b["STATUS_CODE"], "ID": 7}),
                )
            }
            "telephony.externalcall.attachrecord" => {
                let id = b["CALL_ID"].as_str().unwrap_or_default();
                if !s.finished.contains_key(id) {
                    return error("Call is not found in the statistic table. Looks like it is not finished yet.");
                }
                let name = b["FILENAME"].as_str().unwrap_or_default();
                if !(name.ends_with(".mp3") || name.ends_with(".wav")) {
                    return error("Wrong file extension. Only wav and mp3 are allowed");
                }
                if !b["RECORD_URL"].as_str().is_some_and(|u| u.starts_with("http")) {
                    s.common.violations.push(format!("attachRecord: {b}"));
                }
                s.records.push(b.clone());
                ok(json!({"FILE_ID": 9079}))
            }
            "crm.lead.list" => {
                let f = &b["filter"];
                let found: Vec<Value> = (1..=s.leads.len())
                    .filter(|i| {
                        let l = &s.leads[i - 1];
                        l["ORIGINATOR_ID"] == f["=ORIGINATOR_ID"] && l["ORIGIN_ID"] == f["=ORIGIN_ID"]
                    })
                    .map(|i| json!({"ID": i.to_string(), "ORIGINATOR_ID": s.leads[i - 1]["ORIGINATOR_ID"], "ORIGIN_ID": s.leads[i - 1]["ORIGIN_ID"]}))
                    .collect();
                if f["=ORIGIN_ID"].as_str().is_none() {
                    s.common.violations.push(format!("crm.lead.list without the origin: {b}"));
                }
                ok(json!(found))
            }
            "crm.lead.add" => {
                let f = &b["fields"];
                let phone_ok = f["PHONE"][0]["VALUE"].is_string() && f["PHONE"][0]["VALUE_TYPE"] == "WORK";
                if !f["TITLE"].is_string() || !phone_ok || f["SOURCE_ID"] != "CALLBACK" || f["ASSIGNED_BY_ID"] != 1 {
                    s.common.violations.push(format!("crm.lead.add: {b}"));
                    return error("Access denied.");
                }
                s.leads.push(f.clone());
                ok(json!(s.leads.len()))
            }
            other => {
                s.common.violations.push(format!("{other} is not a method callpool uses"));
                (StatusCode::BAD_REQUEST, json!({"error": "ERROR_METHOD_NOT_FOUND"}).to_string())
            }
        }
    }
}

impl B24 {
    fn with<T>(&self, f: impl FnOnce(&mut B24State) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

// ---------------------------------------------------------------------------------------------

fn config(dir: &std::path::Path, crm: &str, extra: &str) -> Config {
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[analytics]
retry_base = "100ms"
finalize_after = "3s"

[[pbx]]
id = "office"
secrets = ["{PBX_SECRET}"]

{site}
{crm}
{extra}
"#,
        data = dir.join("data").display().to_string(),
        site = shop_site(ORIGIN, "0s", "30m", "30m"),
    );
    Config::parse(&text, "crm-test.toml", &std::collections::HashMap::new()).expect("test config")
}

/// A visitor from Google Ads on the site: the tracking number they were shown.
async fn tracked_visitor(node: &Node) -> (WsTab, String) {
    let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    tab.hello(&unique("v"), PAGE).await;
    let number = tab.until_kind("tracking").await;
    (tab, number)
}

/// The PBX reports call `id` from `caller` to `called`.
async fn report(node: &Node, id: &str, called: &str, caller: &str, status: &str, recording: bool) {
    let mut call = json!({
        "call_id": id, "called": called, "caller": caller,
        "started_at": chrono::Utc::now().to_rfc3339(), "status": status, "duration": 42,
    });
    if recording {
        call["recording_url"] = format!("https://pbx.example/rec/{id}.mp3").into();
    }
    post_call(node, PBX_SECRET, &call).await;
}

async fn dead_letters(node: &Node, kind: &str) -> Vec<Value> {
    let v: Value = node.admin_get(&format!("/v1/admin/dead-letters?kind={kind}")).await.json().await.unwrap();
    v["dead_letters"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn amocrm_gets_each_call_once_as_an_unsorted_lead_or_on_the_contacts_card() {
    let amo = Amo::default();
    amo.0.lock().unwrap().contacts.push(KNOWN.into());
    let url = amo.start().await;
    let dir = tempfile::tempdir().unwrap();
    let crm = format!("[site.amocrm]\nbase_url = \"{url}\"\ntoken = \"{AMO_TOKEN}\"\nresponsible_user_id = 7");
    let node = Node::start_real(config(dir.path(), &crm, "")).await;

    // An unknown caller from Google Ads, while amoCRM answers 429, then 500 twice, and loses its
    // answer after making the lead: one lead, with the visit's source.
    {
        let mut s = amo.0.lock().unwrap();
        s.common.faults.extend([429, 500, 500]);
        s.lose_unsorted = true;
    }
    let (_tab, number) = tracked_visitor(&node).await;
    report(&node, "c-1", &number, "+79161234567", "ringing", false).await;
    report(&node, "c-1", &number, "+79161234567", "completed", true).await;
    until("amoCRM has the lead and callpool knows it", || async {
        let st = node.app.store.job_states(callpool::jobs::amocrm::CALL, &["office:c-1".into()]).await.unwrap();
        matches!(st.first(), Some(Some(callpool::store::jobs::JobState::Sent { .. })))
    })
    .await;
    let leads = amo.unsorted();
    assert_eq!(leads.len(), 1, "one lead, though its answer was lost once: {leads:#?}");
    let lead = &leads[0];
    assert_eq!(lead["source_uid"], "office:c-1");
    assert_eq!(lead["metadata"]["phone"], "+79161234567");
    assert_eq!(lead["metadata"]["link"], "https://pbx.example/rec/c-1.mp3");
    let fields: HashMap<&str, &str> = lead["_embedded"]["leads"][0]["custom_fields_values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field_code"].as_str().unwrap(), f["values"][0]["value"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, HashMap::from([("UTM_SOURCE", "google"), ("UTM_MEDIUM", "cpc"), ("UTM_CAMPAIGN", "winter")]));
    assert_eq!(lead["_embedded"]["leads"][0]["_embedded"]["tags"], json!([{"name": "active"}]));
    assert_eq!(lead["_embedded"]["leads"][0]["responsible_user_id"], 7);
    assert!(amo.calls().is_empty(), "an unknown caller's call is the lead's, not a card's");

    // The same caller again while their lead waits in "Unsorted": the call on that lead.
    report(&node, "c-5", &number, "+79161234567", "missed", false).await;
    until("the call is on the caller's lead", || async { !amo.0.lock().unwrap().notes.is_empty() }).await;
    let (lead, note) = amo.0.lock().unwrap().notes[0].clone();
    assert_eq!(
        (lead, note["note_type"].as_str(), note["params"]["uniq"].as_str()),
        (4_217_119, Some("call_in"), Some("office:c-5"))
    );
    assert_eq!(amo.unsorted().len(), 1);

    // A call whose end the PBX never reports: on the card `finalize_after` its start, unanswered.
    report(&node, "c-6", "+74951234567", KNOWN, "ringing", false).await;
    until("the unfinished call is on the card", || async { amo.calls().iter().any(|c| c.0 == "office:c-6") }).await;
    let c6 = amo.calls().into_iter().find(|c| c.0 == "office:c-6").unwrap().1;
    assert_eq!(c6["call_status"], 6);

    // A caller amoCRM knows: the call on the card, once.
    report(&node, "c-2", "+74951234567", KNOWN, "completed", false).await;
    until("the call is on the card", || async { amo.calls().iter().any(|c| c.0 == "office:c-2") }).await;

    // A call that ends while amoCRM is down, and callpool restarts in between: one lead.
    amo.0.lock().unwrap().common.down = Some(500);
    let before = amo.0.lock().unwrap().common.times.len();
    report(&node, "c-3", "+74951234567", "+79161110003", "missed", false).await;
    until("amoCRM refused it a few times", || async { amo.0.lock().unwrap().common.times.len() >= before + 3 }).await;
    node.stop().await;
    amo.0.lock().unwrap().common.down = None;
    let node = Node::restart_on(config(dir.path(), &crm, "")).await;
    until("the restarted node made the lead", || async { amo.unsorted().len() == 2 }).await;

    // A revoked token: a dead letter with amoCRM's words; put back once it works, delivered.
    amo.0.lock().unwrap().revoked = true;
    report(&node, "c-4", "+74951234567", KNOWN, "busy", false).await;
    until("a dead letter", || async { !dead_letters(&node, "amo_call").await.is_empty() }).await;
    let dead = dead_letters(&node, "amo_call").await;
    let error = dead[0]["error"].as_str().unwrap();
    assert!(error.contains("HTTP 401") && error.contains("Неверный логин или пароль"), "{error}");
    // The overview of every site says so.
    let o: Value = node.admin_get("/v1/reports").await.json().await.unwrap();
    assert_eq!(o["sites"][0]["dead_letters"], json!({"amo_call": 1}));
    assert_eq!(o["sites"][0]["attention"], json!(["deliveries_failing"]));
    amo.0.lock().unwrap().revoked = false;
    let resp = reqwest::Client::new()
        .post(node.url("/v1/admin/dead-letters/requeue"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"kind": "amo_call", "ids": [dead[0]["id"]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    until("the requeued call is on the card", || async { amo.calls().len() == 3 }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let calls = amo.calls();
    let uniqs: Vec<&str> = calls.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(uniqs, ["office:c-6", "office:c-2", "office:c-4"], "each call once: {calls:#?}");
    assert_eq!((calls[1].1["call_status"].as_u64(), calls[1].1["duration"].as_u64()), (Some(4), Some(42)));
    assert_eq!(calls[2].1["call_status"], 7, "busy");
    assert_eq!(amo.0.lock().unwrap().notes.len(), 1);
    let third = &amo.unsorted()[1];
    assert_eq!(third["source_uid"], "office:c-3");
    assert_eq!(third["_embedded"]["leads"][0]["_embedded"]["tags"], json!([{"name": "default_before"}]));
    assert_eq!(amo.unsorted().len(), 2);
    assert_eq!(amo.violations(), Vec::<String>::new());
    node.stop().await;
}

#[tokio::test]
async fn bitrix24_registers_a_call_as_it_rings_and_a_callback_request_as_one_lead() {
    let b24 = B24::default();
    let url = b24.start().await;
    // The callback trigger's PBX: takes every request.
    let pbx = serve_fake(|_req| async { (StatusCode::OK, "{}".to_owned()) }).await;
    let dir = tempfile::tempdir().unwrap();
    let crm =
        format!("[site.bitrix24]\nurl = \"{url}\"\nuser_id = 1\ntoken = \"{B24_TOKEN}\"\nrequests_per_second = 5");
    let callback = format!(
        "[site.callback]\nmin_time_on_site = \"0s\"\noperator = \"+74951230099\"\ntrigger = {{ kind = \"generic\", url = \"{pbx}/trigger\", secret = \"trigger-secret-0123456789\" }}\nlimits = {{ per_ip = [\"100/1h\"], per_visitor = [\"100/1h\"] }}"
    );
    let cfg = || config(dir.path(), &crm, &callback);
    let node = Node::start_real(cfg()).await;

    // An unknown caller from Google Ads: registered while it rings (the portal over its limit
    // twice first), a lead with the visit's source (its update refused once); finished (the
    // answer lost once), its recording attached.
    b24.with(|s| {
        s.common.faults.extend([503, 503]);
        s.lose_finish = true;
        s.fail_update = true;
    });
    let (_tab, number) = tracked_visitor(&node).await;
    report(&node, "c-1", &number, "+79161234567", "ringing", false).await;
    until("the call is registered", || async { b24.with(|s| s.open.len() == 1) }).await;
    until("its lead has the source", || async {
        b24.with(|s| s.leads.first().is_some_and(|l| l["UTM_SOURCE"] == "google"))
    })
    .await;
    report(&node, "c-1", &number, "+79161234567", "completed", true).await;
    until("the recording is attached", || async { b24.with(|s| s.records.len() == 1) }).await;
    b24.with(|s| {
        assert_eq!(s.registered, 1, "registered once");
        assert!(s.open.is_empty());
        let (id, finish) = s.finished.iter().next().unwrap();
        assert_eq!((finish["DURATION"].as_u64(), finish["STATUS_CODE"].as_str()), (Some(42), Some("200")));
        assert_eq!(s.records[0]["CALL_ID"], id.as_str());
        assert_eq!(s.records[0]["RECORD_URL"], "https://pbx.example/rec/c-1.mp3");
        let lead = &s.leads[0];
        assert_eq!((lead["UTM_MEDIUM"].as_str(), lead["UTM_CAMPAIGN"].as_str()), (Some("cpc"), Some("winter")));
        assert_eq!(lead["SOURCE_DESCRIPTION"], "active");
    });
    let st = node.app.store.job_states(callpool::jobs::bitrix24::END, &["office:c-1".into()]).await.unwrap();
    assert!(matches!(st.first(), Some(Some(callpool::store::jobs::JobState::Sent { .. }))), "{st:?}");

    // A callback request while the portal is down, and callpool restarts: one lead, with the source.
    b24.with(|s| s.common.down = Some(503));
    let resp = reqwest::Client::new()
        .post(node.url("/v1/callback"))
        .header("origin", ORIGIN)
        .json(&json!({"site": "shop-public-key", "number": "+79165550000", "visitor": unique("v"), "page": PAGE}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let before = b24.with(|s| s.common.times.len());
    until("the portal refused it", || async { b24.with(|s| s.common.times.len() >= before + 2) }).await;
    node.stop().await;
    b24.with(|s| s.common.down = None);
    let node = Node::restart_on(cfg()).await;
    until("the callback's lead", || async { b24.with(|s| s.leads.len() == 2) }).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    b24.with(|s| {
        assert_eq!(s.leads.len(), 2, "one lead per request");
        let lead = &s.leads[1];
        assert_eq!(lead["PHONE"][0]["VALUE"], "+79165550000");
        assert_eq!(
            (lead["UTM_SOURCE"].as_str(), lead["SOURCE_DESCRIPTION"].as_str()),
            (Some("google"), Some("callback"))
        );
        assert_eq!(lead["ORIGINATOR_ID"], "callpool");
        assert_eq!(s.common.violations, Vec::<String>::new());
    });
    node.stop().await;
}
