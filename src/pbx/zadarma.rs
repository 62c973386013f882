//! Zadarma's cloud PBX.
//!
//! Webhook (`[[pbx]] kind = "zadarma"`, `secret`, `timezone`): the PBX's call notifications
//! (Settings → Integrations and API → notifications), one form-urlencoded POST per event, each
//! with a `Signature` header: base64 of the *hex text* of HMAC-SHA1, keyed with the API secret of
//! the account's API keys, over the event's fields concatenated without separators (Zadarma's own
//! library, zadarma/user-api-v1: `Client::encodeSignature` is `base64_encode(hash_hmac('sha1',
//! $string, $secret))`, and PHP's `hash_hmac` returns hex unless told otherwise; each
//! `lib/Webhook/Notify*.php` names its fields):
//!
//! - NOTIFY_START (pbx_call_id, caller_id, called_did, call_start), signed
//!   `caller_id . called_did . call_start`: a ringing call;
//! - NOTIFY_END (the same, and duration, disposition, status_code, is_recorded,
//!   call_id_with_rec), signed like NOTIFY_START: the call's end;
//! - NOTIFY_ANSWER (pbx_call_id, caller_id, destination, call_start, internal), signed
//!   `caller_id . destination . call_start`: checked, nothing recorded;
//! - NOTIFY_RECORD (pbx_call_id, call_id_with_rec), signed `pbx_call_id . call_id_with_rec`:
//!   checked, nothing recorded.
//!
//! NOTIFY_ANSWER names who answered (`destination`), not the number dialled, so it cannot be a
//! report of its own (the first report of a call is matched by the number dialled); the end's
//! `disposition` says whether the call was answered. NOTIFY_RECORD carries only ids: the
//! recording is fetched through Zadarma's authenticated API (`/v1/pbx/record/request/`), so
//! there is no URL a report could carry. Other events (NOTIFY_INTERNAL, NOTIFY_OUT_*,
//! NOTIFY_IVR, ...) are answered and not read. Zadarma signs no timestamp: a replayed
//! notification only repeats a report of a call already recorded (idempotent by pbx_call_id).
//!
//! `call_start` is `YYYY-MM-DD HH:MM:SS` in the account's time zone (`timezone`, default
//! Europe/Moscow). Numbers come in international format, with or without the `+`.
//!
//! URL check: when the URL is saved, Zadarma requests it with `?zd_echo=<string>` and expects the
//! string back as the body. Every other answer is an empty 200: NOTIFY_START's answer may carry
//! routing instructions, and callpool gives none.
//!
//! Trigger (`[site.callback] trigger = { kind = "zadarma", key, secret, from, sip?, predicted?,
//! url? }`): the API's callback method, `GET <url>/v1/request/callback/` with `from` (who is rung
//! first: an extension, a SIP number or a phone number), `to` (the visitor, international digits),
//! `sip` (the line whose caller id the visitor sees) and `predicted` (ring the visitor first), and
//! `format=json`, as the official library sends it. The request is signed as Zadarma's library
//! signs every API call (zadarma/user-api-v1 `Client::getAuthHeader`): the parameters sorted by
//! name and written by PHP's `http_build_query` (RFC 1738), then `Authorization: <key>:<base64 of
//! the hex HMAC-SHA1, keyed with the secret, of method . query . md5(query)>`. The answer is
//! `{"status":"success","from":..,"to":..,"time":..}` or `{"status":"error","message":..}`.
//!
//! The callback's outcome is not linked back: Zadarma's answer names no call, the request cannot
//! carry callpool's id, and whether (and as what) its notifications report a callback's legs is
//! not documented. The callback stays `calling`; docs/PBX.md says what linking it would take.

use std::collections::HashMap;

use callpool_pool::{PhoneNumber, Ts};
use chrono::TimeZone;
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::adapter::{
    called_number, http_answer, json_text, not_in_future, Adapter, Answer, CallAccepted, Inbound, Received, Refusal,
    Reply, Trigger, LONGEST_CALL_S,
};
use crate::callback::Callback;
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX, ENV_TRIGGER_SECRET_PREFIX};

/// Zadarma's signature header.
pub const SIGNATURE_HEADER: &str = "signature";
/// The time zone of `call_start` unless `timezone` says otherwise.
pub const DEFAULT_TIMEZONE: &str = "Europe/Moscow";

/// The longest `zd_echo` answered.
const MAX_ECHO: usize = 128;

/// A Zadarma PBX's settings: its API secret and its account's time zone.
pub struct Zadarma {
    secret: String,
    timezone: Tz,
}

/// Reads a `[[pbx]] kind = "zadarma"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    secret: Option<String>,
    timezone: Option<String>,
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("zadarma")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawWebhook = f.parse()?;
        let (env_name, from_env) = f.owner_var(ENV_PBX_SECRET_PREFIX);
        let secret = from_env.or(raw.secret);
        let why = format!(" for kind = \"zadarma\": the secret of the account's API keys (or set {env_name})");
        let secret = f.required("secret", secret, &why).map(|s| f.secret("secret", s));
        let name = raw.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.into());
        let timezone = match name.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                f.fail("timezone", format!("{name:?} is not an IANA time zone such as {DEFAULT_TIMEZONE}"));
                None
            }
        };
        let adapter: Box<dyn Adapter> = Box::new(Zadarma { secret: secret?, timezone: timezone? });
        Some(Section::new("zadarma", adapter))
    }
}

impl Adapter for Zadarma {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        // The URL check carries no signature; it is answered with its own string and reads nothing else.
        if has_echo(req.query) {
            return Ok(());
        }
        // Events callpool does not read are answered without reading them.
        let Some(signed) = signed_text(&form(req.body)) else { return Ok(()) };
        match req.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) {
            Some(given) => verify(&signed, &self.secret, given),
            None => Err(Refusal::NoSignature(
                "send the Signature header (Zadarma signs notifications once the account has API keys)".into(),
            )),
        }
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        if has_echo(req.query) {
            return echo(req.query).map(|e| Received::Answer(Reply::Text(e))).map_err(Refusal::Malformed);
        }
        let fields = form(req.body);
        let event = fields.get("event").map(|e| e.trim()).filter(|e| !e.is_empty());
        match event {
            Some(START | END) => {
                self.report(pbx, &fields, req.now).map(|r| Received::Reports(vec![r])).map_err(Refusal::Malformed)
            }
            Some(_) => Ok(Received::Answer(empty())),
            None => Err(Refusal::Malformed("event: required (NOTIFY_START, NOTIFY_END, ...)".into())),
        }
    }

    /// Zadarma needs only the 200; a body on NOTIFY_START would be read as routing instructions.
    fn reply(&self, _accepted: &[CallAccepted]) -> Reply {
        empty()
    }
}

const START: &str = "NOTIFY_START";
const END: &str = "NOTIFY_END";
const ANSWER: &str = "NOTIFY_ANSWER";
const RECORD: &str = "NOTIFY_RECORD";

fn empty() -> Reply {
    Reply::Text(String::new())
}

/// The form's fields (a repeated field: its last value, as PHP reads it).
fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// What Zadarma signs for the form's event; `None` for events callpool neither reads nor checks.
/// Missing fields count as empty, as in PHP.
pub fn signed_text(fields: &HashMap<String, String>) -> Option<String> {
    let f = |name: &str| fields.get(name).map_or("", String::as_str);
    let parts = match fields.get("event").map(|e| e.trim())? {
        START | END => [f("caller_id"), f("called_did"), f("call_start")].concat(),
        ANSWER => [f("caller_id"), f("destination"), f("call_start")].concat(),
        RECORD => [f("pbx_call_id"), f("call_id_with_rec")].concat(),
        _ => return None,
    };
    Some(parts)
}

/// The `Signature` Zadarma sends for `signed` (for tests and tools): base64 of the hex HMAC-SHA1.
pub fn sign(signed: &str, secret: &str) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(signed.as_bytes());
    let hex_text = hex::encode(mac.finalize().into_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex_text)
}

/// Checks a `Signature` header against `signed`, in constant time.
pub fn verify(signed: &str, secret: &str, given: &str) -> Result<(), Refusal> {
    let expected = sign(signed, secret);
    if bool::from(expected.as_bytes().ct_eq(given.trim().as_bytes())) {
        Ok(())
    } else {
        Err(Refusal::BadSignature(
            "the Signature does not match the notification's fields (check `secret`: the API keys' secret)".into(),
        ))
    }
}

fn has_echo(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "zd_echo")
}

/// The URL check's string: URL-safe characters only (what Zadarma sends), so that the answer
/// never carries markup.
fn echo(query: &str) -> Result<String, String> {
    let value = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "zd_echo").map(|(_, v)| v.into_owned());
    match value {
        Some(v)
            if !v.is_empty()
                && v.len() <= MAX_ECHO
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')) =>
        {
            Ok(v)
        }
        _ => Err(format!("zd_echo: expected 1 to {MAX_ECHO} letters, digits, '-', '_', '.' or '~'")),
    }
}

impl Zadarma {
    /// NOTIFY_START (ringing) or NOTIFY_END (final) as a report.
    fn report(&self, pbx: &str, fields: &HashMap<String, String>, now: Ts) -> Result<CallReport, String> {
        let get = |f: &str| fields.get(f).map(|v| v.trim()).filter(|v| !v.is_empty());
        let key = CallKey::new(pbx, get("pbx_call_id").ok_or("pbx_call_id: required")?)
            .map_err(|e| format!("pbx_call_id: {e}"))?;
        let called = called_did(get("called_did").ok_or("called_did: required")?)?;
        // Hidden numbers come as "anonymous", "0" or empty: no caller.
        let caller = get("caller_id").and_then(Caller::parse);
        let started_at = self.start(get("call_start").ok_or("call_start: required")?)?;
        let ended = get("event") == Some(END);
        let (status, duration) = if ended {
            let status = disposition(get("disposition").ok_or("disposition: required")?)?;
            let duration = get("duration")
                .map(|d| d.parse::<u32>().ok().filter(|d| u64::from(*d) <= LONGEST_CALL_S))
                .map(|d| d.ok_or(format!("duration: not whole seconds between 0 and {LONGEST_CALL_S}")))
                .transpose()?;
            (status, duration)
        } else {
            (CallStatus::Ringing, None)
        };
        not_in_future(started_at, now)?;
        Ok(CallReport {
            key,
            called,
            caller,
            started_at,
            answered_at: None,
            // NOTIFY_END is sent as the call ends and carries no end time: its arrival is the end.
            ended_at: ended.then_some(now.max(started_at)),
            status,
            duration,
            recording_url: None,
        })
    }

    /// `call_start` (`YYYY-MM-DD HH:MM:SS` in the account's time zone); a time repeated when the
    /// clocks go back is taken as its first occurrence.
    fn start(&self, raw: &str) -> Result<Ts, String> {
        let local = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%d %H:%M:%S")
            .map_err(|_| format!("call_start: {raw:?} is not a time such as 2026-11-22 10:15:00"))?;
        let at = self.timezone.from_local_datetime(&local).earliest().ok_or_else(|| {
            format!("call_start: {raw:?} does not exist in {} (the clocks went forward)", self.timezone)
        })?;
        Ok(Ts::from_millis(at.timestamp_millis()))
    }
}

/// The number dialled, international format with or without the `+`.
fn called_did(raw: &str) -> Result<PhoneNumber, String> {
    let with_plus = if raw.starts_with('+') { raw.to_owned() } else { format!("+{raw}") };
    called_number("called_did", &with_plus)
        .map_err(|_| format!("called_did: {raw:?} is not a number in international format (74951234567)"))
}

/// NOTIFY_END's `disposition` (the values zadarma/user-api-v1 `NotifyEnd.php` lists).
fn disposition(raw: &str) -> Result<CallStatus, String> {
    match raw.to_ascii_lowercase().as_str() {
        "answered" => Ok(CallStatus::Completed),
        "busy" => Ok(CallStatus::Busy),
        // The caller hung up while it rang, or no one picked up.
        "cancel" | "no answer" => Ok(CallStatus::Missed),
        // The call could not go through: a network failure, or the account's balance or limits.
        "failed" | "no money" | "unallocated number" | "no limit" | "no day limit" | "line limit"
        | "no money, no limit" => Ok(CallStatus::Failed),
        _ => Err(format!("disposition: {raw:?} is not a Zadarma disposition")),
    }
}

/// The API's callback method, as Zadarma's library names and signs it (version and trailing '/').
pub const CALLBACK_METHOD: &str = "/v1/request/callback/";
/// Zadarma's API, unless the trigger's `url` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.zadarma.com";
/// The longest error message of Zadarma's kept with the callback.
const MAX_MESSAGE: usize = 200;

/// The callback trigger's settings.
pub struct RequestCallback {
    base_url: String,
    key: String,
    secret: String,
    /// Digits: an extension or SIP number, or a phone number in international format.
    from: String,
    sip: Option<String>,
    predicted: bool,
}

/// Reads `trigger = { kind = "zadarma", key, secret, from, sip?, predicted?, url? }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    url: Option<String>,
    key: Option<String>,
    secret: Option<String>,
    from: Option<String>,
    sip: Option<String>,
    predicted: Option<bool>,
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("zadarma")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawTrigger = f.parse()?;
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_API_URL.into()));
        let key = f.required("key", raw.key, " for kind = \"zadarma\": the user key of the account's API keys");
        let key = match key {
            Some(k) if k.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(k),
            Some(_) => {
                f.fail("key", "letters and digits only (the user key of the account's API keys)");
                None
            }
            None => None,
        };
        let (env_name, from_env) = f.owner_var(ENV_TRIGGER_SECRET_PREFIX);
        let secret = from_env.or(raw.secret);
        let why = format!(" for kind = \"zadarma\": the secret of the account's API keys (or set {env_name})");
        let secret = f.required("secret", secret, &why).map(|s| f.secret("secret", s));
        let from = f.required(
            "from",
            raw.from,
            " for kind = \"zadarma\": who is rung first, an extension (\"100\") or a number (\"74951230099\")",
        );
        let from = from.and_then(|v| from_digits(&v).map_err(|e| f.fail("from", e)).ok());
        let sip = match raw.sip {
            None => Some(None),
            Some(v) => sip_digits(&v).map(Some).map_err(|e| f.fail("sip", e)).ok(),
        };
        let trigger: Box<dyn Trigger> = Box::new(RequestCallback {
            base_url,
            key: key?,
            secret: secret?,
            from: from?,
            sip: sip?,
            predicted: raw.predicted.unwrap_or(false),
        });
        Some(Section::new("zadarma", trigger))
    }
}

/// `from` as Zadarma takes it: an extension (100) or SIP number (Zadarma's are 6 digits; its
/// OpenAPI document says 3 to 5), or a phone number in international format (7 to 15 digits; a
/// leading '+' is dropped, as Zadarma writes numbers).
fn from_digits(raw: &str) -> Result<String, String> {
    let plus = raw.starts_with('+');
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    let all = digits.bytes().all(|b| b.is_ascii_digit());
    match digits.len() {
        3..=6 if all && !plus => Ok(digits.to_owned()),
        7..=15 if all => Ok(digits.to_owned()),
        _ => Err(format!(
            "{raw:?} is neither an extension or SIP number (\"100\") nor a number in international format (\"74951230099\")"
        )),
    }
}

/// `sip`: the extension or SIP number whose caller id the visitor sees, digits only.
fn sip_digits(raw: &str) -> Result<String, String> {
    if (3..=10).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not an extension or SIP number (3 to 10 digits, such as \"100\")"))
    }
}

impl RequestCallback {
    /// The request's parameters, sorted by name as Zadarma signs them: `format=json` (what its
    /// library adds to every call), `from`, `predicted` (`1`: PHP writes `true` so), `sip`, `to`
    /// (the visitor's digits, as the library's `filterNumber` leaves them).
    fn params(&self, visitor: &PhoneNumber) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("format", "json".to_owned()),
            ("from", self.from.clone()),
            ("to", visitor.as_str().trim_start_matches('+').to_owned()),
        ];
        if self.predicted {
            p.push(("predicted", "1".to_owned()));
        }
        if let Some(sip) = &self.sip {
            p.push(("sip", sip.clone()));
        }
        p.sort_by_key(|&(k, _)| k);
        p
    }
}

impl Trigger for RequestCallback {
    /// Zadarma rings its own `from`, not the form's `operator`.
    fn request(
        &self,
        http: &reqwest::Client,
        _operator: &PhoneNumber,
        cb: &Callback,
        _now: Ts,
    ) -> reqwest::RequestBuilder {
        let params = self.params(&cb.number);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let query = api_query(&pairs);
        http.get(format!("{}{CALLBACK_METHOD}?{query}", self.base_url))
            .header(reqwest::header::AUTHORIZATION, api_authorization(&self.key, &self.secret, CALLBACK_METHOD, &query))
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        let json = serde_json::from_str::<serde_json::Value>(body).ok();
        let message = json.as_ref().and_then(|j| j.get("message")).and_then(json_text).map(|m| {
            let m = m.trim();
            m.char_indices().nth(MAX_MESSAGE).map_or(m, |(i, _)| &m[..i]).to_owned()
        });
        let error = json.as_ref().and_then(|j| j.get("status")).and_then(serde_json::Value::as_str) == Some("error");
        // A rate limit is worth waiting for, whatever status it comes with (429 and 5xx are retried anyway).
        if let Some(m) = message.as_deref().filter(|m| error && rate_limited(m)) {
            return Answer::Again(format!("Zadarma's API limit: {m}"));
        }
        if let Some(a) = http_answer(status, body) {
            return a;
        }
        let Some(j) = json else {
            return Answer::Again("Zadarma answered something that is not JSON".into());
        };
        match j.get("status").and_then(serde_json::Value::as_str) {
            // The answer names no call (its fields are from, to and time); a call id, if it ever
            // gave one, would link the PBX's reports.
            Some("success") => Answer::Placed { pbx_ref: j.get("pbx_call_id").and_then(json_text) },
            Some("error") => {
                Answer::Refused(format!("Zadarma refused the callback: {}", message.as_deref().unwrap_or("no message")))
            }
            _ => Answer::Refused(format!("Zadarma did not confirm the callback: {j}")),
        }
    }
}

/// Whether an error message of Zadarma's API is about its request rate (documented only as 100
/// requests a minute answered 429; its wording is not).
fn rate_limited(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("too many") || m.contains("rate limit") || (m.contains("limit") && m.contains("request"))
}

/// The query string Zadarma signs and is sent: `params` (already sorted by name) written as PHP's
/// `http_build_query($params, '', '&', PHP_QUERY_RFC1738)` writes them (`urlencode`: letters,
/// digits, '-', '_' and '.' as they are, a space as '+', every other byte as %XX).
pub fn api_query(params: &[(&str, &str)]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        for (j, part) in [k, v].into_iter().enumerate() {
            if j > 0 {
                out.push('=');
            }
            for b in part.bytes() {
                match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
                    b' ' => out.push('+'),
                    _ => {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
            }
        }
    }
    out
}

/// The `Authorization` header of a call to Zadarma's API: `<key>:<signature>`, the signature
/// being base64 of the hex HMAC-SHA1, keyed with the secret, of `method . query . md5(query)`
/// (zadarma/user-api-v1 `Client::getAuthHeader` and `encodeSignature`).
pub fn api_authorization(key: &str, secret: &str, method: &str, query: &str) -> String {
    use md5::Digest;
    let md5 = hex::encode(md5::Md5::digest(query.as_bytes()));
    format!("{key}:{}", sign(&format!("{method}{query}{md5}"), secret))
}

#[cfg(test)]
mod tests;
