//! `POST /v1/pbx/calls`: the PBX's call webhooks. Checks the signature (HMAC-SHA256 over
//! `timestamp.body`, header `Callpool-Signature: t=<unix s>,v1=<hex>[,v1=<hex>]`, five-minute
//! window, constant-time comparison, several `v1` while rotating secrets), rate-limits per PBX,
//! reads the body (callpool's JSON, or Twilio-style form fields through an adapter) into a
//! [`CallReport`], and records it. A 2xx means the call and its analytics jobs are durable.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use callpool_pool::{PhoneNumber, Ts};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use utoipa::{IntoParams, ToSchema};

use crate::app::App;
use crate::calls::ingest::{self, Recorded};
use crate::calls::{CallKey, CallReport, CallStatus, Caller, MatchKind};
use crate::http::Failure;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "callpool-signature";
/// Twilio's signature header (for a PBX configured with a Twilio auth token).
pub const TWILIO_SIGNATURE_HEADER: &str = "x-twilio-signature";
/// How far a signature's timestamp may be from our clock, either way.
pub const REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// The largest webhook body read.
pub const MAX_BODY: usize = 64 * 1024;

/// The webhook's shared state: the app and one rate limiter per PBX.
#[derive(Clone)]
pub struct PbxState {
    pub app: Arc<App>,
    limiters: Arc<HashMap<String, DefaultDirectRateLimiter>>,
}

impl PbxState {
    pub fn new(app: Arc<App>) -> PbxState {
        let limiters = app
            .config
            .pbxs
            .iter()
            .map(|p| {
                let n = NonZeroU32::new(p.requests_per_second).unwrap_or(NonZeroU32::MIN);
                (p.id.clone(), RateLimiter::direct(Quota::per_second(n).allow_burst(n)))
            })
            .collect();
        PbxState { app, limiters: Arc::new(limiters) }
    }
}

#[derive(Deserialize, IntoParams)]
pub struct PbxQuery {
    /// The PBX's id from the configuration; may be left out when only one PBX is configured.
    pub pbx: Option<String>,
}

/// The JSON a PBX posts (all times RFC 3339, or Unix seconds).
#[derive(Deserialize, Serialize, ToSchema)]
#[allow(dead_code)] // documents the contract for the OpenAPI document; the handler reads fields one by one for exact errors
pub struct CallWebhook {
    /// The PBX's id for the call; every report of one call carries the same id.
    #[schema(example = "a1b2c3")]
    call_id: String,
    /// The number dialled, E.164.
    #[schema(example = "+74951230001")]
    called: String,
    /// The caller's number; absent or "anonymous" when withheld.
    #[schema(example = "+79161234567")]
    caller: Option<String>,
    #[schema(example = "2026-11-22T10:15:00Z")]
    started_at: String,
    answered_at: Option<String>,
    ended_at: Option<String>,
    status: CallStatus,
    /// Talk time, seconds.
    duration: Option<u32>,
    recording_url: Option<String>,
}

/// The answer to an accepted report.
#[derive(Serialize, ToSchema)]
pub struct CallAccepted {
    /// The PBX's call id.
    call_id: String,
    /// `new`, `updated` or `unchanged` (a repeat of a report already recorded).
    result: &'static str,
    status: CallStatus,
    #[serde(rename = "match")]
    matched: MatchKind,
    site: Option<String>,
}

/// Receives a call report from a PBX.
#[utoipa::path(
    post,
    path = "/v1/pbx/calls",
    params(PbxQuery),
    request_body(
        description = "callpool's JSON call report, or Twilio-style form fields (CallSid, From, To, CallStatus, CallDuration, RecordingUrl, Timestamp)",
        content(
            (CallWebhook = "application/json"),
            (String = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Recorded (and its analytics queued) before this answer", body = CallAccepted),
        (status = 400, description = "The body is malformed; the message names the field", body = crate::http::ApiError),
        (status = 401, description = "Unknown PBX, missing or wrong signature, or a timestamp outside the replay window; nothing recorded", body = crate::http::ApiError),
        (status = 429, description = "Too many reports from this PBX; retry after a second", body = crate::http::ApiError),
        (status = 503, description = "The store is unavailable; retry", body = crate::http::ApiError),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn receive(
    State(state): State<PbxState>,
    Query(q): Query<PbxQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallAccepted>, Failure> {
    let app = &state.app;
    let timer = app.metrics.pbx_seconds.start_timer();
    let reject = |reason: &str| app.metrics.pbx_rejected.with_label_values(&[reason]).inc();
    let pbx = match q.pbx.as_deref() {
        Some(id) => app.config.pbx(id),
        None if app.config.pbxs.len() == 1 => app.config.pbxs.first(),
        None => None,
    };
    let Some(pbx) = pbx else {
        reject("unknown_pbx");
        return Err(Failure::BadSignature("unknown PBX: name it with ?pbx=<id> as configured in [[pbx]]".into()));
    };
    let now = app.clock.now();
    let twilio_signed = headers.get(TWILIO_SIGNATURE_HEADER).and_then(|v| v.to_str().ok());
    let verified = match (&pbx.twilio, twilio_signed) {
        (Some(tw), Some(sig)) => verify_twilio(&tw.url, &body, &tw.auth_token, sig),
        _ => verify(&headers, &body, &pbx.secrets, now),
    };
    if let Err(why) = verified {
        reject(why.reason);
        tracing::info!(pbx = %pbx.id, reason = why.reason, "A call webhook was refused.");
        return Err(Failure::BadSignature(why.message));
    }
    if state.limiters.get(&pbx.id).is_some_and(|l| l.check().is_err()) {
        reject("rate_limited");
        return Err(Failure::RateLimited);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let parsed = if content_type.starts_with("application/x-www-form-urlencoded") {
        twilio_report(&pbx.id, &body, now)
    } else {
        json_report(&pbx.id, &body, now)
    };
    let report = parsed.inspect_err(|_| reject("malformed")).map_err(Failure::BadRequest)?;
    let recorded = ingest::record(app, &report).await.inspect_err(|e| {
        app.metrics.store_errors.with_label_values(&["calls_record"]).inc();
        tracing::warn!(error = %e, "A call webhook could not be recorded; the PBX will retry.");
    })?;
    let call = recorded.call();
    let site_label = call.matched.site.as_ref().map_or("-", |s| s.as_str());
    let result = match &recorded {
        Recorded::New(_) => {
            app.metrics.calls_recorded.with_label_values(&[site_label, call.matched.kind.as_str()]).inc();
            tracing::info!(call = %call.key, site = site_label, kind = call.matched.kind.as_str(), status = call.status.as_str(), "A call was recorded.");
            tracing::debug!(call = %call.key, called = %call.called, caller = ?call.caller.as_ref().map(Caller::as_str), "Call numbers.");
            "new"
        }
        Recorded::Updated(_) => "updated",
        Recorded::Unchanged(_) => "unchanged",
    };
    // Also for a repeated report: the callback may not have been moved on the first time.
    if call.matched.kind == MatchKind::Callback {
        crate::callback::service::on_call(app, call).await.inspect_err(|e| {
            app.metrics.store_errors.with_label_values(&["callback_outcome"]).inc();
            tracing::warn!(error = %e, call = %call.key, "A callback's outcome could not be recorded; the PBX will retry.");
        })?;
    }
    timer.observe_duration();
    Ok(Json(CallAccepted {
        call_id: call.key.call_id().to_owned(),
        result,
        status: call.status,
        matched: call.matched.kind,
        site: call.matched.site.as_ref().map(ToString::to_string),
    }))
}

/// Why a signature was refused: a metric label and a message for the PBX's operator.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Checks `Callpool-Signature: t=<unix s>,v1=<hex>[,v1=<hex>...]` against every secret.
pub fn verify(headers: &HeaderMap, body: &[u8], secrets: &[String], now: Ts) -> Result<(), Refusal> {
    let refuse = |reason, message: &str| Refusal { reason, message: message.to_owned() };
    let Some(value) = headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(refuse(
            "no_signature",
            "send the Callpool-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256>",
        ));
    };
    let mut t: Option<i64> = None;
    let mut given: Vec<Vec<u8>> = Vec::new();
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse().ok(),
            Some(("v1", v)) => given.extend(hex::decode(v).ok()),
            _ => {}
        }
    }
    let Some(t) = t else { return Err(refuse("bad_signature", "the signature has no valid t=<unix seconds>")) };
    if given.is_empty() {
        return Err(refuse("bad_signature", "the signature has no valid v1=<hex>"));
    }
    let age = now.as_millis().div_euclid(1000).abs_diff(t);
    if age > REPLAY_WINDOW.as_secs() {
        return Err(refuse("stale_timestamp", "the signature's timestamp is more than 5 minutes from our clock"));
    }
    for secret in secrets {
        for sig in &given {
            // verify_slice compares in constant time.
            if signature_mac(secret, t, body).verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(refuse("bad_signature", "the signature does not match the body"))
}

/// Checks Twilio's `X-Twilio-Signature`: base64 HMAC-SHA1, keyed with the auth token, of the
/// webhook URL followed by every form field's name and value, sorted by name (then value). The URL
/// is tried as configured and with its default port added or removed, as Twilio's libraries do.
/// Twilio signs no timestamp, so there is no replay window; a replay only repeats a report of a
/// call already recorded (idempotent by CallSid).
pub fn verify_twilio(url: &str, body: &[u8], auth_token: &str, given: &str) -> Result<(), Refusal> {
    let refuse = |reason, message: &str| Refusal { reason, message: message.to_owned() };
    let Ok(given) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, given.trim()) else {
        return Err(refuse("bad_signature", "X-Twilio-Signature is not base64"));
    };
    for candidate in url_variants(url) {
        // verify_slice compares in constant time.
        if twilio_mac(&candidate, body, auth_token).verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(refuse("bad_signature", "X-Twilio-Signature does not match the URL and fields (check twilio_url)"))
}

fn twilio_mac(url: &str, body: &[u8], auth_token: &str) -> Hmac<sha1::Sha1> {
    let mut fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    fields.sort();
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(url.as_bytes());
    for (k, v) in &fields {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac
}

/// The `X-Twilio-Signature` Twilio sends for a form `body` posted to `url` (for tests and tools).
pub fn sign_twilio(url: &str, body: &[u8], auth_token: &str) -> String {
    base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        twilio_mac(url, body, auth_token).finalize().into_bytes(),
    )
}

/// `url`, and `url` with its scheme's default port added (or removed if present).
fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_owned()];
    let (scheme, port) = if url.starts_with("https://") { ("https://", ":443") } else { ("http://", ":80") };
    if let Some(rest) = url.strip_prefix(scheme) {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(end);
        if let Some(bare) = host.strip_suffix(port) {
            out.push(format!("{scheme}{bare}{tail}"));
        } else if !host.contains(':') {
            out.push(format!("{scheme}{host}{port}{tail}"));
        }
    }
    out
}

/// The header value a PBX sends for `body` at `t` (for PBX integrations and tests).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(signature_mac(secret, t, body).finalize().into_bytes()))
}

/// HMAC-SHA256 of `<t>.<body>` keyed with `secret`: what `v1` carries.
fn signature_mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The longest call duration believed (a week).
const LONGEST_CALL_S: u64 = 7 * 86_400;

fn json_report(pbx: &str, body: &[u8], now: Ts) -> Result<CallReport, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let obj = v.as_object().ok_or("the body must be a JSON object")?;
    let text = |field: &str| -> Result<Option<String>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) if field == "call_id" => Ok(Some(n.to_string())),
            Some(other) => Err(format!("{field}: expected a string, got {other}")),
        }
    };
    let required = |field: &str| text(field)?.ok_or_else(|| format!("{field}: required"));
    let time = |field: &str| -> Result<Option<Ts>, String> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .filter(|s| (0..=32_503_680_000).contains(s))
                .map(|s| Some(Ts::from_millis(s * 1000)))
                .ok_or_else(|| format!("{field}: {n} is not Unix seconds")),
            Some(Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|t| Some(Ts::from_millis(t.timestamp_millis())))
                .map_err(|_| format!("{field}: {s:?} is not an RFC 3339 time such as 2026-11-22T10:15:00Z")),
            Some(other) => Err(format!("{field}: expected an RFC 3339 time or Unix seconds, got {other}")),
        }
    };
    let key = CallKey::new(pbx, &required("call_id")?).map_err(|e| format!("call_id: {e}"))?;
    let called = called_number(&required("called")?)?;
    let caller = text("caller")?.and_then(|c| Caller::parse(&c));
    let status_text = required("status")?;
    let status = serde_json::from_value::<CallStatus>(Value::String(status_text.clone())).map_err(|_| {
        format!("status: {status_text:?} is not one of ringing, answered, completed, missed, busy, failed")
    })?;
    let started_at = time("started_at")?.ok_or("started_at: required")?;
    let duration = match obj.get("duration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_u64()
                .filter(|d| *d <= LONGEST_CALL_S)
                .ok_or_else(|| format!("duration: {n} is not whole seconds between 0 and {LONGEST_CALL_S}"))?
                as u32,
        ),
        Some(other) => return Err(format!("duration: expected whole seconds, got {other}")),
    };
    let recording_url = text("recording_url")?.map(|u| url_ok(&u).map(|()| u)).transpose()?;
    future_check(started_at, now)?;
    Ok(CallReport {
        key,
        called,
        caller,
        started_at,
        answered_at: time("answered_at")?,
        ended_at: time("ended_at")?,
        status,
        duration,
        recording_url,
    })
}

/// Twilio's voice webhook fields (CallSid, From, To, CallStatus, CallDuration, RecordingUrl,
/// Timestamp) as a report.
fn twilio_report(pbx: &str, body: &[u8], now: Ts) -> Result<CallReport, String> {
    let fields: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let get = |f: &str| fields.get(f).map(String::as_str).filter(|v| !v.is_empty());
    let key = CallKey::new(pbx, get("CallSid").ok_or("CallSid: required")?).map_err(|e| format!("CallSid: {e}"))?;
    let called = called_number(get("To").ok_or("To: required")?).map_err(|e| e.replacen("called", "To", 1))?;
    let caller = get("From").and_then(Caller::parse);
    let status = match get("CallStatus").ok_or("CallStatus: required")? {
        "queued" | "initiated" | "ringing" => CallStatus::Ringing,
        "in-progress" => CallStatus::Answered,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" | "canceled" => CallStatus::Missed,
        other => return Err(format!("CallStatus: {other:?} is not a Twilio call status")),
    };
    let duration = get("CallDuration")
        .map(|d| d.parse::<u32>().ok().filter(|d| u64::from(*d) <= LONGEST_CALL_S))
        .map(|d| d.ok_or("CallDuration: not whole seconds"))
        .transpose()?;
    let at = match get("Timestamp") {
        Some(t) => chrono::DateTime::parse_from_rfc2822(t)
            .map(|t| Ts::from_millis(t.timestamp_millis()))
            .map_err(|_| format!("Timestamp: {t:?} is not an RFC 2822 time"))?,
        None => now,
    };
    // A status callback's Timestamp is when the call ended; the call started its duration earlier.
    let started_at = match (status.is_final(), duration) {
        (true, Some(d)) => at.minus(Duration::from_secs(u64::from(d))),
        _ => at,
    };
    let recording_url = get("RecordingUrl").map(|u| url_ok(u).map(|()| u.to_owned())).transpose()?;
    future_check(started_at, now)?;
    Ok(CallReport {
        key,
        called,
        caller,
        started_at,
        answered_at: None,
        ended_at: status.is_final().then_some(at),
        status,
        duration,
        recording_url,
    })
}

/// The called number: E.164, formatting characters allowed (`+7 (495) 123-00-01`).
fn called_number(raw: &str) -> Result<PhoneNumber, String> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    PhoneNumber::parse(&compact)
        .map_err(|_| format!("called: {raw:?} is not an E.164 number (+, country code, number: +74951234567)"))
}

fn url_ok(u: &str) -> Result<(), String> {
    if u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(format!("recording_url: {u:?} is not an http(s) URL"))
    }
}

/// A call cannot start in the future (beyond the replay window's allowance for clock skew).
fn future_check(started_at: Ts, now: Ts) -> Result<(), String> {
    if started_at > now.plus(REPLAY_WINDOW) {
        Err("started_at: the call starts more than 5 minutes in the future".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const NOW: Ts = Ts::from_millis(1_800_000_000_000);
    const SECRET: &str = "0123456789abcdef-secret";

    fn headers(sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(SIGNATURE_HEADER, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn signatures_are_checked_with_a_replay_window() {
        let body = br#"{"call_id":"1"}"#;
        let t = NOW.as_millis() / 1000;
        let secrets = vec!["old-secret-0123456789".to_owned(), SECRET.to_owned()];
        assert_eq!(verify(&headers(&sign(SECRET, t, body)), body, &secrets, NOW), Ok(()));
        // Rotation: a header with two v1 values, one of them from a retired secret.
        let current = sign(SECRET, t, body);
        let two =
            format!("{},v1={}", sign("retired-secret-0123456789", t, body), current.split_once(",v1=").unwrap().1);
        assert_eq!(verify(&headers(&two), body, &secrets, NOW), Ok(()));
        let reason = |h: HeaderMap, b: &[u8]| verify(&h, b, &secrets, NOW).unwrap_err().reason;
        assert_eq!(reason(headers(&sign(SECRET, t, body)), br#"{"call_id":"2"}"#), "bad_signature");
        assert_eq!(reason(headers(&sign("wrong-secret-0123456789", t, body)), body), "bad_signature");
        assert_eq!(reason(headers(&sign(SECRET, t - 301, body)), body), "stale_timestamp");
        assert_eq!(reason(headers(&sign(SECRET, t + 301, body)), body), "stale_timestamp");
        assert_eq!(verify(&headers(&sign(SECRET, t - 300, body)), body, &secrets, NOW), Ok(()));
        assert_eq!(reason(HeaderMap::new(), body), "no_signature");
        assert_eq!(reason(headers("t=abc,v1=00"), body), "bad_signature");
        assert_eq!(reason(headers(&format!("t={t}")), body), "bad_signature");
    }

    fn check_json(body: &str, expected_error: &str) {
        let got = json_report("pbx", body.as_bytes(), NOW).map(|_| ()).unwrap_err();
        assert!(got.contains(expected_error), "{body}: {got:?} does not contain {expected_error:?}");
    }

    #[test]
    fn json_reports_are_read_with_errors_naming_the_field() {
        let ok = r#"{"call_id":"c1","called":"+7 (495) 123-00-01","caller":"anonymous","started_at":"2026-11-22T10:15:00+03:00","status":"completed","duration":63}"#;
        let r = json_report("pbx", ok.as_bytes(), NOW).unwrap();
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.caller, r.duration),
            ("pbx:c1", "+74951230001", None, Some(63))
        );
        assert_eq!(
            r.started_at,
            Ts::from_millis(chrono::DateTime::parse_from_rfc3339("2026-11-22T07:15:00Z").unwrap().timestamp_millis())
        );
        check_json("not json", "the body is not JSON");
        check_json("[]", "must be a JSON object");
        check_json(r#"{"called":"+74951230001","started_at":1,"status":"completed"}"#, "call_id: required");
        check_json(&ok.replace("+7 (495) 123-00-01", "84951230001"), "called: \"84951230001\" is not an E.164");
        check_json(&ok.replace("completed", "done"), "status: \"done\" is not one of");
        check_json(
            &ok.replace("2026-11-22T10:15:00+03:00", "yesterday"),
            "started_at: \"yesterday\" is not an RFC 3339",
        );
        check_json(&ok.replace("63", "-1"), "duration: -1 is not whole seconds");
        check_json(&ok.replace("\"duration\":63", "\"duration\":\"63\""), "duration: expected whole seconds");
        check_json(&ok.replace("\"c1\"", "\"c 1\""), "call_id: call_id must be");
        check_json(
            &ok.replace("2026-11-22T10:15:00+03:00", "2030-01-01T00:00:00Z"),
            "started_at: the call starts more than 5 minutes in the future",
        );
    }

    #[test]
    fn twilio_signatures_match_twilios_own_example() {
        // The example of Twilio's signature-validation snippet (TwilioDevEd/api-snippets).
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let body = "CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
        assert_eq!(verify_twilio(url, body.as_bytes(), "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc="), Ok(()));
        // Field order in the body does not matter; the port variant is accepted.
        let shuffled =
            "To=%2B18005551212&CallSid=CA1234567890ABCDE&Digits=1234&Caller=%2B14158675310&From=%2B14158675310";
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        assert_eq!(verify_twilio(with_port, shuffled.as_bytes(), "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc="), Ok(()));
        let reason = |r: Result<(), Refusal>| r.unwrap_err().reason;
        assert_eq!(
            reason(verify_twilio(url, body.as_bytes(), "54321", "GvWf1cFY/Q7PnoempGyD5oXAezc=")),
            "bad_signature"
        );
        assert_eq!(
            reason(verify_twilio(url, b"CallSid=CA1", "12345", "GvWf1cFY/Q7PnoempGyD5oXAezc=")),
            "bad_signature"
        );
        assert_eq!(reason(verify_twilio(url, body.as_bytes(), "12345", "not base64!")), "bad_signature");
    }

    #[test]
    fn twilio_fields_are_read_through_the_adapter() {
        let body = "CallSid=CA0123&From=%2B79161234567&To=%2B74951230001&CallStatus=completed&CallDuration=30&Timestamp=Fri%2C%2015%20Jan%202027%2008%3A00%3A30%20%2B0000";
        let r = twilio_report("tw", body.as_bytes(), Ts::from_millis(1_900_000_000_000)).unwrap();
        assert_eq!((r.key.as_str(), r.status, r.duration), ("tw:CA0123", CallStatus::Completed, Some(30)));
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+79161234567"));
        assert_eq!(
            r.started_at.to_string(),
            "2027-01-15T08:00:00.000Z",
            "a status callback's timestamp minus the duration"
        );
        let err = twilio_report("tw", b"CallSid=CA1&To=%2B74951230001&CallStatus=weird", NOW).unwrap_err();
        assert!(err.contains("CallStatus: \"weird\""), "{err}");
        assert!(twilio_report("tw", b"CallSid=CA1&CallStatus=ringing", NOW).unwrap_err().contains("To: required"));
    }
}
