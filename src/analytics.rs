//! What a call becomes in the marketer's tools: a GA4 Measurement Protocol event (built and
//! checked against GA4's documented limits before it is sent) and a row of Yandex Metrica's
//! offline-calls CSV. Pure functions; the sending lives in [`crate::outbox`].

use std::fmt::Write as _;
use std::time::Duration;

use callpool_pool::{SessionAttrs, Ts};
use serde_json::{json, Map, Value};

use crate::calls::matcher::Directory;
use crate::calls::{Call, CallStatus, MatchKind, NumberKind};

/// GA4 accepts events back-dated at most 72 hours; older ones would be clamped (wrong) or dropped.
pub const GA4_BACKDATE_LIMIT: Duration = Duration::from_secs(72 * 3600);
const GA4_MAX_PARAMS: usize = 25;
const GA4_MAX_NAME: usize = 40;
const GA4_MAX_VALUE: usize = 100;
const GA4_MAX_BODY: usize = 130_000;
const GA4_RESERVED_EVENTS: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_clear_data",
    "app_exception",
    "app_install",
    "app_remove",
    "app_store_refund",
    "app_update",
    "app_upgrade",
    "error",
    "firebase_campaign",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "os_update",
    "screen_view",
    "session_start",
    "user_engagement",
];
const GA4_RESERVED_PREFIXES: &[&str] = &["_", "firebase_", "ga_", "google_", "gtag.", "dynamic_link_", "notification_"];

/// An event or parameter name GA4 accepts: 1–40 of `[A-Za-z0-9_]`, starting with a letter.
fn name_ok(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > GA4_MAX_NAME {
        return Err(format!("must be 1 to {GA4_MAX_NAME} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err("must start with a letter".into());
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err("may contain only letters, digits and '_'".into());
    }
    if let Some(p) = GA4_RESERVED_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        return Err(format!("uses the reserved prefix {p:?}"));
    }
    Ok(())
}

/// Whether GA4 accepts `name` as an event name.
pub fn ga4_name_ok(name: &str) -> Result<(), String> {
    name_ok(name)?;
    if GA4_RESERVED_EVENTS.contains(&name) {
        return Err("is reserved by Google Analytics".into());
    }
    Ok(())
}

/// A GA4 web client id: two positive integers joined by '.', as the `_ga` cookie carries it.
pub fn ga4_client_id_ok(id: &str) -> bool {
    let positive = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()) && s != "0";
    matches!(id.split_once('.'), Some((a, b)) if positive(a) && positive(b))
}

/// How GA4 shows an event parameter once it is registered: a custom dimension (text) or a
/// custom metric (a number, in this unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ga4Shown {
    Dimension,
    /// GA4's `measurementUnit` (`STANDARD`, `SECONDS`).
    Metric(&'static str),
}

/// An event parameter callpool sends to GA4: its name, the name GA4 shows it under once
/// registered, what it means, and how it is registered.
#[derive(Clone, Copy, Debug)]
pub struct Ga4Param {
    pub name: &'static str,
    pub display: &'static str,
    pub description: &'static str,
    pub shown: Ga4Shown,
}

const fn dim(name: &'static str, display: &'static str, description: &'static str) -> Ga4Param {
    Ga4Param { name, display, description, shown: Ga4Shown::Dimension }
}

/// Every parameter of callpool's events beside GA4's own (`session_id`,
/// `engagement_time_msec`): what `callpool analytics setup` registers, and what the marketer's
/// guide lists (a test holds both to this list and the payloads to it).
pub const GA4_PARAMS: &[Ga4Param] = &[
    dim("call_id", "Call ID", "The PBX's id of the call"),
    Ga4Param {
        name: "call_duration",
        display: "Call duration",
        description: "Talk time of the call, in seconds",
        shown: Ga4Shown::Metric("SECONDS"),
    },
    dim("call_answered", "Call answered", "1 when the call was answered, 0 when it was missed"),
    dim("call_status", "Call status", "completed, missed, busy, failed or answered"),
    dim("match_kind", "Call match kind", "How callpool tied the call to the visit (active, recent, callback, ...)"),
    dim("first_time_caller", "First time caller", "1 for a caller callpool had not seen before, else 0"),
    dim("number_kind", "Called number kind", "tracking, default_before, default_after, static or unknown"),
    dim("source", "Call source", "The visit's utm_source, or the referring host"),
    dim("medium", "Call medium", "The visit's utm_medium, or referral"),
    dim("campaign", "Call campaign", "The visit's utm_campaign"),
    dim("term", "Call term", "The visit's utm_term"),
    dim("content", "Call content", "The visit's utm_content"),
    dim("gclid", "Call gclid", "The Google Ads click id of the visit"),
    dim("callback_id", "Callback ID", "callpool's id of the callback request"),
    dim(
        "scheduled",
        "Callback scheduled",
        "1 when the callback was scheduled for working hours, 0 when called at once",
    ),
];

/// GA4's own parameters callpool sets (not registered: GA4 knows them).
pub const GA4_OWN_PARAMS: &[&str] = &["session_id", "engagement_time_msec"];

/// The event a callback request becomes.
pub const GA4_CALLBACK_EVENT: &str = "callback_request";

/// Cuts a text parameter to GA4's value limit (at a character boundary).
fn cap(s: &str) -> String {
    s.chars().take(GA4_MAX_VALUE).collect()
}

/// Why a call's GA4 event was not built.
#[derive(Debug, PartialEq, Eq)]
pub enum Ga4Refusal {
    /// Older than GA4's back-dating limit: sending it would record it at the wrong time.
    TooOld,
    /// The payload breaks a GA4 limit (a bug or an odd session value): never sent wrong.
    Invalid(String),
}

/// The Measurement Protocol body for a matched call. `now` decides the back-dating check.
pub fn ga4_payload(call: &Call, event_name: &str, now: Ts) -> Result<Value, Ga4Refusal> {
    if call.started_at < now.minus(GA4_BACKDATE_LIMIT) {
        return Err(Ga4Refusal::TooOld);
    }
    let attrs: &SessionAttrs = &call.matched.attrs;
    let client_id = attrs.ga_client_id.clone().unwrap_or_default();
    let mut params = Map::new();
    if let Some(sid) = attrs.ga_session_id.as_deref().filter(|s| s.parse::<u64>().is_ok_and(|n| n > 0)) {
        params.insert("session_id".into(), json!(sid));
    }
    // Needed (with session_id) for the event to show in Realtime.
    params.insert("engagement_time_msec".into(), json!(1));
    params.insert("call_id".into(), json!(cap(call.key.call_id())));
    params.insert("call_duration".into(), json!(call.duration.unwrap_or(0)));
    params.insert("call_answered".into(), json!(u8::from(call.status.answered() || call.answered_at.is_some())));
    params.insert("call_status".into(), json!(call.status.as_str()));
    params.insert("match_kind".into(), json!(call.matched.kind.as_str()));
    params.insert("first_time_caller".into(), json!(u8::from(call.first_time_caller)));
    params.insert("number_kind".into(), json!(call.matched.number_kind.as_str()));
    session_params(attrs, &mut params);
    let body = json!({
        "client_id": client_id,
        "timestamp_micros": call.started_at.as_millis().saturating_mul(1000),
        "events": [{ "name": event_name, "params": Value::Object(params) }],
    });
    ga4_check(&body, now).map_err(Ga4Refusal::Invalid)?;
    Ok(body)
}

/// The session's source, medium, campaign, term, content and gclid as event parameters.
fn session_params(attrs: &SessionAttrs, params: &mut Map<String, Value>) {
    for (name, value) in [
        ("source", &attrs.utm_source),
        ("medium", &attrs.utm_medium),
        ("campaign", &attrs.utm_campaign),
        ("term", &attrs.utm_term),
        ("content", &attrs.utm_content),
    ] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            params.insert(name.into(), json!(cap(v)));
        }
    }
    if attrs.utm_source.is_none() {
        if let Some(host) = attrs.referrer.as_deref().and_then(referrer_host) {
            params.insert("source".into(), json!(cap(host)));
            params.insert("medium".into(), json!("referral"));
        }
    }
    if let Some(g) = attrs.gclid.as_deref() {
        params.insert("gclid".into(), json!(cap(g)));
    }
}

/// The GA4 `callback_request` event of a callback request, at the time it was made.
pub fn ga4_callback_payload(cb: &crate::callback::Callback, now: Ts) -> Result<Value, Ga4Refusal> {
    if cb.requested_at < now.minus(GA4_BACKDATE_LIMIT) {
        return Err(Ga4Refusal::TooOld);
    }
    let attrs = &cb.attrs;
    let mut params = Map::new();
    if let Some(sid) = attrs.ga_session_id.as_deref().filter(|s| s.parse::<u64>().is_ok_and(|n| n > 0)) {
        params.insert("session_id".into(), json!(sid));
    }
    params.insert("engagement_time_msec".into(), json!(1));
    params.insert("callback_id".into(), json!(cb.id.as_str()));
    params.insert("scheduled".into(), json!(u8::from(cb.due_at > cb.requested_at)));
    session_params(attrs, &mut params);
    let body = json!({
        "client_id": attrs.ga_client_id.clone().unwrap_or_default(),
        "timestamp_micros": cb.requested_at.as_millis().saturating_mul(1000),
        "events": [{ "name": GA4_CALLBACK_EVENT, "params": Value::Object(params) }],
    });
    ga4_check(&body, now).map_err(Ga4Refusal::Invalid)?;
    Ok(body)
}

/// Checks a Measurement Protocol body against GA4's documented limits.
pub fn ga4_check(body: &Value, now: Ts) -> Result<(), String> {
    let client_id = body["client_id"].as_str().unwrap_or_default();
    if !ga4_client_id_ok(client_id) {
        return Err(format!("client_id {client_id:?} is not two positive numbers joined by '.'"));
    }
    if let Some(t) = body.get("timestamp_micros") {
        let t = t.as_i64().ok_or("timestamp_micros is not an integer")?;
        if t > now.as_millis().saturating_add(60_000).saturating_mul(1000) {
            return Err("timestamp_micros is in the future".into());
        }
    }
    let events = body["events"].as_array().ok_or("events is missing")?;
    if events.is_empty() || events.len() > 25 {
        return Err(format!("{} events; GA4 takes 1 to 25 per request", events.len()));
    }
    for e in events {
        let name = e["name"].as_str().unwrap_or_default();
        ga4_name_ok(name).map_err(|why| format!("event name {name:?} {why}"))?;
        let params = e["params"].as_object().ok_or("event params is not an object")?;
        if params.len() > GA4_MAX_PARAMS {
            return Err(format!("{} params; GA4 takes at most {GA4_MAX_PARAMS}", params.len()));
        }
        for (k, v) in params {
            name_ok(k).map_err(|why| format!("param name {k:?} {why}"))?;
            if k == "firebase_conversion" {
                return Err("param name \"firebase_conversion\" is reserved".into());
            }
            match v {
                Value::String(s) if s.chars().count() > GA4_MAX_VALUE => {
                    return Err(format!("param {k:?} is longer than {GA4_MAX_VALUE} characters"));
                }
                Value::String(_) | Value::Number(_) => {}
                other => return Err(format!("param {k:?} is {other}, not a string or number")),
            }
        }
    }
    let size = serde_json::to_vec(body).map_or(usize::MAX, |b| b.len());
    if size >= GA4_MAX_BODY {
        return Err(format!("the body is {size} bytes; GA4 takes less than {GA4_MAX_BODY}"));
    }
    Ok(())
}

fn referrer_host(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"))?;
    let host = rest.split(['/', '?', '#', ':']).next()?;
    (!host.is_empty()).then_some(host)
}

/// The header line of Metrica's offline-calls upload (only the columns callpool fills).
pub const YANDEX_CSV_HEADER: &str =
    "ClientId,DateTime,StaticCall,PhoneNumber,TalkDuration,HoldDuration,CallMissed,Tag,FirstTimeCaller,URL";

/// What a Metrica row's `PhoneNumber` carries: a site's choice (`[site.yandex] phone_number`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricaPhone {
    /// The tracking number that was dialled (nothing on a callback's call: none was dialled).
    #[default]
    Tracking,
    /// The client's own number: the caller's, or on a callback's call the visitor's (only an
    /// E.164 number; Metrica can then match the call to the client's other calls).
    Client,
    /// Nothing.
    None,
}

impl MetricaPhone {
    /// The `PhoneNumber` of `call`'s row; `ours` tells callpool's own numbers (the other end of a
    /// callback's call is the visitor's).
    pub fn of(self, call: &Call, ours: &Directory) -> String {
        let callback = call.matched.kind == MatchKind::Callback;
        let client = || {
            let called = Some(call.called.as_str()).filter(|_| callback && !ours.is_ours(&call.called));
            let caller = call.caller.as_ref().map(|c| c.as_str()).filter(|c| c.starts_with('+'));
            called.or(caller.filter(|_| !callback || called.is_none())).map(str::to_owned)
        };
        match self {
            MetricaPhone::Tracking if !callback => call.called.to_string(),
            MetricaPhone::Client => client().unwrap_or_default(),
            MetricaPhone::Tracking | MetricaPhone::None => String::new(),
        }
    }
}

/// One row of Metrica's offline-calls CSV, or `None` for a call without a Metrica client id;
/// `phone` is its `PhoneNumber` ([`MetricaPhone::of`]).
pub fn yandex_row(call: &Call, phone: &str) -> Option<String> {
    let client =
        call.matched.attrs.ym_uid.as_deref().filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))?;
    let hold = call.answered_at.map(|a| ((a.as_millis() - call.started_at.as_millis()).max(0) / 1000).to_string());
    let missed = !(call.status.answered() || call.answered_at.is_some()) && call.status != CallStatus::Ringing;
    let mut row = String::new();
    let _ = write!(
        row,
        "{client},{},{},{},{},{},{},{},{},{}",
        call.started_at.as_millis().div_euclid(1000),
        u8::from(call.matched.number_kind != NumberKind::Tracking),
        csv_field(phone),
        call.duration.unwrap_or(0),
        hold.unwrap_or_default(),
        u8::from(missed),
        csv_field(call.matched.kind.as_str()),
        u8::from(call.first_time_caller),
        csv_field(call.matched.attrs.landing_page.as_deref().unwrap_or("")),
    );
    Some(row)
}

/// A CSV field, quoted when it holds a comma, quote or line break. A field a spreadsheet would
/// read as a formula (OWASP's rule: it begins with `=`, `+`, `-`, `@`, a tab or a carriage
/// return) gets a leading `'` so it is shown as text; a plain signed number such as a caller's
/// `+79161234567` is left as it is, since a spreadsheet can only read it as that number.
pub fn csv_field(s: &str) -> String {
    let number = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let formula = s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !number(&s[1..]);
    let s = if formula { std::borrow::Cow::Owned(format!("'{s}")) } else { std::borrow::Cow::Borrowed(s) };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use callpool_pool::{LeaseId, PhoneNumber, SiteId, VisitorId};

    use super::*;
    use crate::calls::{CallKey, Caller, Match, MatchKind};

    const NOW: Ts = Ts::from_millis(1_800_000_000_000);

    fn call() -> Call {
        Call {
            key: CallKey::new("pbx", "c-1").unwrap(),
            called: PhoneNumber::parse("+74951230001").unwrap(),
            caller: Caller::parse("+79161234567"),
            started_at: NOW.minus(Duration::from_secs(600)),
            answered_at: Some(NOW.minus(Duration::from_secs(590))),
            ended_at: Some(NOW.minus(Duration::from_secs(527))),
            status: CallStatus::Completed,
            duration: Some(63),
            recording_url: None,
            received_at: NOW,
            updated_at: NOW,
            matched: Match {
                kind: MatchKind::Active,
                site: Some(SiteId::new("shop").unwrap()),
                number_kind: NumberKind::Tracking,
                visitor: Some(VisitorId::new("v1").unwrap()),
                lease: Some(LeaseId(7)),
                attrs: SessionAttrs {
                    ga_client_id: Some("1197596843.1673515099".into()),
                    ga_session_id: Some("1747132561".into()),
                    ym_uid: Some("1628529640459314054".into()),
                    utm_source: Some("google".into()),
                    utm_medium: Some("cpc".into()),
                    utm_campaign: Some("x".repeat(300)),
                    landing_page: Some("https://shop.example/a,b".into()),
                    ..Default::default()
                },
            },
            first_time_caller: true,
            version: 1,
        }
    }

    #[test]
    fn a_matched_call_becomes_a_valid_event_without_the_callers_number() {
        let body = ga4_payload(&call(), "phone_call", NOW).unwrap();
        assert_eq!(body["client_id"], "1197596843.1673515099");
        assert_eq!(body["timestamp_micros"], json!(NOW.minus(Duration::from_secs(600)).as_millis() * 1000));
        let p = &body["events"][0]["params"];
        assert_eq!(
            (p["session_id"].as_str(), p["source"].as_str(), p["medium"].as_str()),
            (Some("1747132561"), Some("google"), Some("cpc"))
        );
        assert_eq!(
            (p["call_id"].as_str(), p["call_duration"].as_u64(), p["call_answered"].as_u64()),
            (Some("c-1"), Some(63), Some(1))
        );
        assert_eq!(p["campaign"].as_str().unwrap().len(), 100, "long values are cut to GA4's limit");
        let text = body.to_string();
        assert!(!text.contains("9161234567"), "the caller's number never goes to GA: {text}");
    }

    /// `PhoneNumber` per the site's choice: the tracking number, the client's, or nothing; on a
    /// callback's call no tracking number was dialled, and the visitor's number is the one that
    /// is not the site's.
    #[test]
    fn metricas_phone_number_is_the_sites_choice() {
        let n = |s: &str| PhoneNumber::parse(s).unwrap();
        let site = crate::calls::matcher::SiteNumbers {
            site: SiteId::new("shop").unwrap(),
            default_before: n("+74951234567"),
            default_after: n("+74951234568"),
            static_number: n("+74951234567"),
            dedicated: vec![n("+74951230001")],
            windows: crate::calls::matcher::MatchRules {
                recent: Duration::from_secs(60),
                repeat: Duration::from_secs(60),
                repeat_first: false,
            },
        };
        let ours = Directory::new(&[site], &[]);
        let tracked = call();
        assert_eq!(MetricaPhone::Tracking.of(&tracked, &ours), "+74951230001");
        assert_eq!(MetricaPhone::Client.of(&tracked, &ours), "+79161234567");
        assert_eq!(MetricaPhone::None.of(&tracked, &ours), "");
        // The PBX called the visitor (+79161112233) from the site's line.
        let mut callback = call();
        callback.matched.kind = MatchKind::Callback;
        callback.called = n("+79161112233");
        callback.caller = Caller::parse("+74951234567");
        assert_eq!(MetricaPhone::Tracking.of(&callback, &ours), "");
        assert_eq!(MetricaPhone::Client.of(&callback, &ours), "+79161112233");
        // ... or reported the legs the other way round.
        callback.called = n("+74951234567");
        callback.caller = Caller::parse("+79161112233");
        assert_eq!(MetricaPhone::Client.of(&callback, &ours), "+79161112233");
        assert_eq!(MetricaPhone::None.of(&callback, &ours), "");
    }

    /// Every parameter a payload carries is either GA4's own or one `callpool analytics setup`
    /// registers (and the guide lists).
    #[test]
    fn every_parameter_sent_is_listed() {
        let mut c = call();
        c.matched.attrs.utm_term = Some("t".into());
        c.matched.attrs.utm_content = Some("c".into());
        c.matched.attrs.gclid = Some("g".into());
        let mut cb = crate::callback::example("+79161234567", NOW);
        cb.attrs = c.matched.attrs.clone();
        let bodies = [ga4_payload(&c, "phone_call", NOW).unwrap(), ga4_callback_payload(&cb, NOW).unwrap()];
        for body in bodies {
            for name in body["events"][0]["params"].as_object().unwrap().keys() {
                assert!(
                    GA4_OWN_PARAMS.contains(&name.as_str()) || GA4_PARAMS.iter().any(|p| p.name == name),
                    "{name} is sent but not listed in GA4_PARAMS"
                );
            }
        }
    }

    /// The marketer's guide lists, in both languages, exactly the parameters callpool sends, each
    /// with the name `callpool analytics setup` gives it in GA4; and every match kind.
    #[test]
    fn the_marketers_guide_lists_what_the_code_sends() {
        let guide = include_str!("../docs/MARKETERS.md");
        let want: Vec<(String, String)> =
            GA4_PARAMS.iter().map(|p| (p.name.to_owned(), p.display.to_owned())).collect();
        let mut tables = 0;
        let mut rows: Vec<(String, String)> = Vec::new();
        for line in guide.lines() {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            if cells.len() == 5 && cells[1].starts_with('`') && cells[1].ends_with('`') {
                rows.push((cells[1].trim_matches('`').to_owned(), cells[2].to_owned()));
            } else if !rows.is_empty() {
                assert_eq!(rows, want, "a table of docs/MARKETERS.md against GA4_PARAMS");
                rows.clear();
                tables += 1;
            }
        }
        assert_eq!(tables, 2, "one table in English, one in Russian");
        for kind in crate::calls::MatchKind::ALL {
            assert_eq!(
                guide.matches(&format!("- `{}`", kind.as_str())).count(),
                2,
                "{} in both languages",
                kind.as_str()
            );
        }
    }

    #[test]
    fn calls_older_than_the_backdating_limit_are_refused() {
        let mut c = call();
        c.started_at = NOW.minus(GA4_BACKDATE_LIMIT).minus(Duration::from_millis(1));
        assert_eq!(ga4_payload(&c, "phone_call", NOW), Err(Ga4Refusal::TooOld));
    }

    #[test]
    fn payloads_breaking_ga4_limits_are_refused() {
        let mut c = call();
        c.matched.attrs.ga_client_id = Some("GA1.1.123.456".into());
        assert!(matches!(ga4_payload(&c, "phone_call", NOW), Err(Ga4Refusal::Invalid(m)) if m.contains("client_id")));
        let check = |body: Value| ga4_check(&body, NOW);
        let event =
            |name: &str, params: Value| json!({"client_id": "1.2", "events": [{"name": name, "params": params}]});
        assert!(check(event("phone_call", json!({}))).is_ok());
        assert!(check(event("session_start", json!({}))).unwrap_err().contains("reserved"));
        assert!(check(event("1call", json!({}))).unwrap_err().contains("start with a letter"));
        assert!(check(event(&"a".repeat(41), json!({}))).is_err());
        assert!(check(event("call", json!({"ga_x": 1}))).unwrap_err().contains("reserved prefix"));
        assert!(check(event("call", json!({"x": "y".repeat(101)}))).unwrap_err().contains("longer than 100"));
        let many: Map<String, Value> = (0..26).map(|i| (format!("p{i}"), json!(i))).collect();
        assert!(check(event("call", Value::Object(many))).unwrap_err().contains("26 params"));
        assert!(check(json!({"client_id": "1.2", "events": []})).is_err());
        assert!(ga4_name_ok("phone_call").is_ok() && ga4_name_ok("first_visit").is_err());
    }

    #[test]
    fn client_ids_are_two_positive_numbers() {
        assert!(ga4_client_id_ok("1197596843.1673515099"));
        for bad in ["", "1197596843", "a.b", "1.", ".1", "0.1", "1.2.3", "GA1.1.1.2"] {
            assert!(!ga4_client_id_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn metrica_rows_follow_the_upload_format() {
        let row = yandex_row(&call(), "+74951230001").unwrap();
        let t = NOW.minus(Duration::from_secs(600)).as_millis() / 1000;
        assert_eq!(
            row,
            format!("1628529640459314054,{t},0,+74951230001,63,10,0,active,1,\"https://shop.example/a,b\"")
        );
        assert_eq!(
            YANDEX_CSV_HEADER.split(',').count(),
            row.split(',').count() - 1,
            "one column per header (the URL holds a comma)"
        );
        let mut c = call();
        c.matched.attrs.ym_uid = None;
        assert_eq!(yandex_row(&c, ""), None);
    }

    #[test]
    fn cells_a_spreadsheet_would_run_are_text() {
        for (cell, out) in [
            ("=HYPERLINK(\"http://evil\",\"x\")", "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\""),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("+1+2", "'+1+2"),
            ("-2+3", "'-2+3"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("+79161234567", "+79161234567"),
            ("-5", "-5"),
            ("+", "'+"),
            ("google", "google"),
            ("", ""),
        ] {
            assert_eq!(csv_field(cell), out, "{cell:?}");
        }
        let mut c = call();
        c.matched.attrs.landing_page = Some("=cmd|' /C calc'!A0".into());
        assert!(yandex_row(&c, "").unwrap().ends_with(",'=cmd|' /C calc'!A0"), "the Metrica file too");
    }
}
