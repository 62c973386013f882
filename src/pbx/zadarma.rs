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
mod tests {
    use std::collections::HashMap;

    use axum::http::{header, HeaderMap, HeaderValue};

    use super::*;
    use crate::config::Config;

    /// 2027-01-15T08:00:00Z.
    const NOW: Ts = Ts::from_millis(1_800_000_000_000);
    /// The shape of Zadarma's API secrets (its own examples' placeholder).
    const SECRET: &str = "8a8e91d214fb728889c7";

    fn zadarma() -> Zadarma {
        Zadarma { secret: SECRET.into(), timezone: chrono_tz::Europe::Moscow }
    }

    fn headers(signature: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        if let Some(s) = signature {
            h.insert("Signature", HeaderValue::from_str(s).unwrap());
        }
        h
    }

    /// A request at [`NOW`] (the one place the tests build an [`Inbound`]).
    fn inbound<'a>(headers: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> Inbound<'a> {
        Inbound { headers, query, body, now: NOW, path_tail: "" }
    }

    fn body(fields: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
    }

    /// Verifies and reads a form signed as Zadarma signs it.
    fn receive(fields: &[(&str, &str)]) -> Result<Received, Refusal> {
        let b = body(fields);
        let map: HashMap<String, String> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let sig = signed_text(&map).map(|s| sign(&s, SECRET));
        let h = headers(sig.as_deref());
        let req = inbound(&h, "pbx=zd", b.as_bytes());
        let z = zadarma();
        z.verify(&req)?;
        z.read("zd", &req)
    }

    fn report(fields: &[(&str, &str)]) -> CallReport {
        match receive(fields) {
            Ok(Received::Reports(mut r)) if r.len() == 1 => r.remove(0),
            Ok(Received::Answer(a)) => panic!("an answer instead of a report: {a:?}"),
            Ok(Received::Reports(r)) => panic!("{} reports", r.len()),
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    fn refusal(fields: &[(&str, &str)]) -> String {
        match receive(fields) {
            Err(Refusal::Malformed(m)) => m,
            Err(other) => panic!("refused for another reason: {other:?}"),
            Ok(_) => panic!("accepted: {fields:?}"),
        }
    }

    const START_FIELDS: [(&str, &str); 5] = [
        ("event", "NOTIFY_START"),
        ("call_start", "2027-01-15 10:59:00"),
        ("pbx_call_id", "in_0123abcd"),
        ("caller_id", "79161234567"),
        ("called_did", "74951230001"),
    ];

    fn end_fields(disposition: &'static str, duration: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut f = START_FIELDS.to_vec();
        f[0] = ("event", "NOTIFY_END");
        f.extend([
            ("internal", "100"),
            ("duration", duration),
            ("disposition", disposition),
            ("status_code", "16"),
            ("is_recorded", "1"),
            ("call_id_with_rec", "1700000000.123456"),
        ]);
        f
    }

    #[test]
    fn signatures_are_base64_of_the_hex_hmac_of_each_events_fields() {
        // Zadarma publishes no worked example with values. The expected values were computed
        // the way its PHP does (`base64_encode(hash_hmac('sha1', $s, $secret))`, hex text) with
        // Python's hmac: base64.b64encode(hmac.new(secret, s, sha1).hexdigest().encode()).
        let start = "79161234567749512300012027-01-15 10:59:00";
        assert_eq!(sign(start, SECRET), "MWQ1N2RiYmU5MGQzMTJmYzFjMDhkZDFkZDIzNmMyY2QyMTM3NTdkMA==");
        assert_eq!(verify(start, SECRET, "MWQ1N2RiYmU5MGQzMTJmYzFjMDhkZDFkZDIzNmMyY2QyMTM3NTdkMA=="), Ok(()));
        let record = "in_0123abcd1700000000.123456";
        assert_eq!(sign(record, SECRET), "OTUxNWJjZDgyYzM0ZDAzYjYwOTQ3NGZkYmY1MzRmMDZjYzRmNzc4Yg==");
        // Base64 of the raw digest (what some third-party code computes) is not what Zadarma sends.
        assert_eq!(verify(start, SECRET, "HVfbvpDTEvwcCN0d0jbCzSE3V9A=").unwrap_err().reason(), "bad_signature");
        assert_eq!(verify(start, "another-secret-0123", &sign(start, SECRET)).unwrap_err().reason(), "bad_signature");

        // The fields each event signs (zadarma/user-api-v1 lib/Webhook/Notify*.php).
        let text =
            |pairs: &[(&str, &str)]| signed_text(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
        assert_eq!(text(&START_FIELDS).as_deref(), Some(start));
        assert_eq!(text(&end_fields("answered", "63")).as_deref(), Some(start));
        let answer = [
            ("event", "NOTIFY_ANSWER"),
            ("caller_id", "79161234567"),
            ("destination", "100"),
            ("call_start", "2027-01-15 10:59:00"),
            ("pbx_call_id", "in_0123abcd"),
        ];
        assert_eq!(text(&answer).as_deref(), Some("791612345671002027-01-15 10:59:00"));
        let rec =
            [("event", "NOTIFY_RECORD"), ("pbx_call_id", "in_0123abcd"), ("call_id_with_rec", "1700000000.123456")];
        assert_eq!(text(&rec).as_deref(), Some(record));
        assert_eq!(text(&[("event", "NOTIFY_INTERNAL")]), None);
    }

    #[test]
    fn unsigned_or_tampered_notifications_are_refused() {
        let z = zadarma();
        let b = body(&START_FIELDS);
        let check = |h: &HeaderMap, b: &str| z.verify(&inbound(h, "pbx=zd", b.as_bytes())).map_err(|e| e.reason());
        let good = sign("79161234567749512300012027-01-15 10:59:00", SECRET);
        assert_eq!(check(&headers(Some(&good)), &b), Ok(()));
        assert_eq!(check(&headers(None), &b), Err("no_signature"));
        assert_eq!(check(&headers(Some("not-it")), &b), Err("bad_signature"));
        let moved = b.replace("74951230001", "74951230002");
        assert_eq!(check(&headers(Some(&good)), &moved), Err("bad_signature"), "another tracking number");
        // Every event callpool checks needs its signature.
        for event in ["NOTIFY_END", "NOTIFY_ANSWER", "NOTIFY_RECORD"] {
            let b = b.replace("NOTIFY_START", event);
            assert_eq!(check(&headers(None), &b), Err("no_signature"), "{event}");
            assert_eq!(check(&headers(Some(&good.replace('M', "N"))), &b), Err("bad_signature"), "{event}");
        }
    }

    #[test]
    fn a_start_is_a_ringing_call_at_its_local_start_time() {
        let r = report(&START_FIELDS);
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("zd:in_0123abcd", "+74951230001", CallStatus::Ringing)
        );
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("79161234567"));
        assert_eq!(r.started_at.to_string(), "2027-01-15T07:59:00.000Z", "10:59 in Moscow (UTC+3)");
        assert_eq!((r.ended_at, r.duration, r.answered_at, r.recording_url), (None, None, None, None));

        // The '+' may come with the numbers; a hidden caller is no caller.
        let mut f = START_FIELDS.to_vec();
        f[3] = ("caller_id", "anonymous");
        f[4] = ("called_did", "+74951230001");
        let r = report(&f);
        assert_eq!((r.called.as_str(), r.caller), ("+74951230001", None));
        f[3] = ("caller_id", "0");
        assert_eq!(report(&f).caller, None);

        // The account's time zone comes from the configuration.
        let b = body(&START_FIELDS);
        let h = headers(Some(&sign("79161234567749512300012027-01-15 10:59:00", SECRET)));
        let req = inbound(&h, "", b.as_bytes());
        let utc = Zadarma { secret: SECRET.into(), timezone: chrono_tz::UTC };
        let err = utc.read("zd", &req).err().map(|e| e.message().to_owned()).unwrap_or_default();
        assert!(err.contains("more than 5 minutes in the future"), "10:59 UTC is after NOW: {err}");
        let yekaterinburg = Zadarma { secret: SECRET.into(), timezone: chrono_tz::Asia::Yekaterinburg };
        let Ok(Received::Reports(r)) = yekaterinburg.read("zd", &req) else { panic!("not read") };
        assert_eq!(r[0].started_at.to_string(), "2027-01-15T05:59:00.000Z", "10:59 at UTC+5");
    }

    #[test]
    fn an_end_is_final_with_its_disposition_and_duration() {
        let r = report(&end_fields("answered", "63"));
        assert_eq!((r.key.as_str(), r.status, r.duration), ("zd:in_0123abcd", CallStatus::Completed, Some(63)));
        assert_eq!((r.ended_at, r.recording_url.as_deref()), (Some(NOW), None));
        assert_eq!(r.started_at.to_string(), "2027-01-15T07:59:00.000Z");
        for (disposition, status) in [
            ("busy", CallStatus::Busy),
            ("cancel", CallStatus::Missed),
            ("no answer", CallStatus::Missed),
            ("failed", CallStatus::Failed),
            ("no money", CallStatus::Failed),
            ("unallocated number", CallStatus::Failed),
            ("no limit", CallStatus::Failed),
            ("no day limit", CallStatus::Failed),
            ("line limit", CallStatus::Failed),
            ("no money, no limit", CallStatus::Failed),
        ] {
            let r = report(&end_fields(disposition, "0"));
            assert_eq!((r.status, r.duration), (status, Some(0)), "{disposition}");
        }
    }

    #[test]
    fn answers_records_and_other_events_are_answered_without_a_report() {
        let answer = [
            ("event", "NOTIFY_ANSWER"),
            ("caller_id", "79161234567"),
            ("destination", "100"),
            ("call_start", "2027-01-15 10:59:00"),
            ("pbx_call_id", "in_0123abcd"),
            ("internal", "100"),
        ];
        let record = [("event", "NOTIFY_RECORD"), ("pbx_call_id", "in_0123abcd"), ("call_id_with_rec", "1700000000.1")];
        let internal = [("event", "NOTIFY_INTERNAL"), ("pbx_call_id", "in_0123abcd"), ("internal", "100")];
        let out = [("event", "NOTIFY_OUT_START"), ("internal", "100"), ("destination", "79161234567")];
        for fields in [&answer[..], &record, &internal, &out, &[("event", "SMS")]] {
            assert!(matches!(receive(fields), Ok(Received::Answer(Reply::Text(t))) if t.is_empty()), "{fields:?}");
        }
        // A recorded report is answered with an empty 200 too (NOTIFY_START's body would be routing).
        assert_eq!(zadarma().reply(&[]), Reply::Text(String::new()));
    }

    #[test]
    fn local_times_around_daylight_saving_changes() {
        let berlin = Zadarma { secret: SECRET.into(), timezone: chrono_tz::Europe::Berlin };
        // 02:30 on 28 March 2027 never happens in Berlin; 02:30 on 25 October 2026 happens twice.
        let gap = berlin.start("2027-03-28 02:30:00").unwrap_err();
        assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
        assert_eq!(berlin.start("2026-10-25 02:30:00").unwrap().to_string(), "2026-10-25T00:30:00.000Z");
    }

    #[test]
    fn the_reader_takes_the_secret_and_time_zone() {
        let config = |pbx: &str, env: &[(&str, &str)]| {
            let text =
                format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"zd-1\"\nkind = \"zadarma\"\n{pbx}");
            let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK])
        };
        let settings = |c: &Config| {
            let z = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
            // The adapter is a Zadarma: it signs with the configured secret.
            let b = body(&START_FIELDS);
            let h = headers(Some(&sign("79161234567749512300012027-01-15 10:59:00", SECRET)));
            z.verify(&inbound(&h, "", b.as_bytes())).is_ok()
        };
        let c = config(&format!("secret = \"{SECRET}\""), &[]).unwrap();
        assert!(settings(&c), "the secret from the file");
        let c = config("secret = \"another-secret-0123\"", &[("CALLPOOL_PBX_SECRET_ZD_1", SECRET)]).unwrap();
        assert!(settings(&c), "the environment overrides the file");
        assert!(config(&format!("secret = \"{SECRET}\"\ntimezone = \"Asia/Almaty\""), &[]).is_ok());

        let problems = |pbx: &str| config(pbx, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        assert!(problems("").contains("secret: required for kind = \"zadarma\""), "{}", problems(""));
        assert!(problems("secret = \"short\"").contains("secret: must be at least 16 characters"));
        let tz = problems(&format!("secret = \"{SECRET}\"\ntimezone = \"Moscow\""));
        assert!(tz.contains("timezone: \"Moscow\" is not an IANA time zone"), "{tz}");
        let unknown = problems(&format!("secret = \"{SECRET}\"\nsecrets = [\"{SECRET}\"]"));
        assert!(unknown.contains("unknown field `secrets`"), "{unknown}");
    }

    #[test]
    fn the_url_check_is_echoed_without_a_signature() {
        let z = zadarma();
        let h = HeaderMap::new();
        let echo = |query: &str| {
            let req = inbound(&h, query, b"");
            z.verify(&req).and_then(|()| z.read("zd", &req))
        };
        assert!(matches!(echo("pbx=zd&zd_echo=a1B2-c3"), Ok(Received::Answer(Reply::Text(t))) if t == "a1B2-c3"));
        assert!(matches!(echo("zd_echo=x&pbx=zd"), Ok(Received::Answer(Reply::Text(t))) if t == "x"));
        for bad in ["pbx=zd&zd_echo=", "zd_echo=%3Cscript%3E", &format!("zd_echo={}", "a".repeat(129))] {
            assert!(matches!(echo(bad), Err(Refusal::Malformed(m)) if m.starts_with("zd_echo:")), "{bad}");
        }
    }

    #[test]
    fn malformed_notifications_name_the_field() {
        let without = |name: &str| START_FIELDS.iter().filter(|(k, _)| *k != name).copied().collect::<Vec<_>>();
        let with = |name: &str, value: &'static str| {
            START_FIELDS.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect::<Vec<_>>()
        };
        assert!(refusal(&without("pbx_call_id")).contains("pbx_call_id: required"));
        assert!(refusal(&with("pbx_call_id", "in 1")).contains("pbx_call_id: call_id must be"));
        assert!(refusal(&without("called_did")).contains("called_did: required"));
        assert!(refusal(&with("called_did", "100")).contains("called_did: \"100\" is not a number"));
        assert!(refusal(&without("call_start")).contains("call_start: required"));
        assert!(
            refusal(&with("call_start", "15.01.2027 10:59")).contains("call_start: \"15.01.2027 10:59\" is not a time")
        );
        assert!(refusal(&with("call_start", "2030-01-01 00:00:00")).contains("more than 5 minutes in the future"));
        assert!(refusal(&end_fields("hung up", "0")).contains("disposition: \"hung up\" is not a Zadarma disposition"));
        assert!(refusal(&end_fields("answered", "-1")).contains("duration: not whole seconds"));
        let mut no_disposition = end_fields("answered", "3");
        no_disposition.retain(|(k, _)| *k != "disposition");
        assert!(refusal(&no_disposition).contains("disposition: required"));
        assert!(refusal(&[("pbx_call_id", "in_1")]).contains("event: required"));
    }

    // The callback trigger.

    /// Zadarma's own placeholder user key (its examples'), with [`SECRET`].
    const KEY: &str = "a248a6a984459935b569";

    fn request_callback(from: &str, sip: Option<&str>, predicted: bool) -> RequestCallback {
        RequestCallback {
            base_url: "http://zd.test".into(),
            key: KEY.into(),
            secret: SECRET.into(),
            from: from.into(),
            sip: sip.map(str::to_owned),
            predicted,
        }
    }

    fn callback(number: &str) -> Callback {
        crate::callback::example(number, NOW)
    }

    #[test]
    fn api_requests_are_signed_as_zadarmas_php_library_signs_them() {
        // The expected headers are what zadarma/user-api-v1 itself sends: PHP 8.2 running its
        // lib/Client.php, `getAuthHeader('/v1/request/callback/', $params)` called by reflection
        // with the parameters `Api::requestCallback` builds and `Client::call` completes
        // (`format=json`). Python's hmac gives the same (base64 of the hex digest).
        let q = api_query(&[("format", "json"), ("from", "100"), ("to", "79161234567")]);
        assert_eq!(q, "format=json&from=100&to=79161234567");
        assert_eq!(
            api_authorization(KEY, SECRET, CALLBACK_METHOD, &q),
            "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
        );
        // requestCallback('74951230099', '+79161234567', '100', true).
        let q = api_query(&[
            ("format", "json"),
            ("from", "74951230099"),
            ("predicted", "1"),
            ("sip", "100"),
            ("to", "79161234567"),
        ]);
        assert_eq!(q, "format=json&from=74951230099&predicted=1&sip=100&to=79161234567");
        assert_eq!(
            api_authorization(KEY, SECRET, CALLBACK_METHOD, &q),
            "a248a6a984459935b569:YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="
        );
        // Another method signs another text; another secret another signature.
        assert_ne!(api_authorization(KEY, SECRET, "/v1/sip/", &q), api_authorization(KEY, SECRET, CALLBACK_METHOD, &q));
        assert_ne!(
            api_authorization(KEY, "another-secret-0123", CALLBACK_METHOD, &q),
            api_authorization(KEY, SECRET, CALLBACK_METHOD, &q)
        );
        // PHP's urlencode, byte for byte: http_build_query(['from' => 'a b+c*~é/.-_', 'to' => '1'],
        // '', '&', PHP_QUERY_RFC1738) in PHP 8.2.
        assert_eq!(api_query(&[("from", "a b+c*~é/.-_"), ("to", "1")]), "from=a+b%2Bc%2A%7E%C3%A9%2F.-_&to=1");
    }

    #[test]
    fn the_callback_request_is_a_signed_get_with_the_visitors_digits() {
        let http = reqwest::Client::new();
        let operator = PhoneNumber::parse("+74951230099").unwrap();
        let req = request_callback("100", None, false)
            .request(&http, &operator, &callback("+79161234567"), NOW)
            .build()
            .unwrap();
        assert_eq!(req.method(), reqwest::Method::GET);
        assert_eq!(req.url().as_str(), "http://zd.test/v1/request/callback/?format=json&from=100&to=79161234567");
        assert_eq!(
            req.headers()[reqwest::header::AUTHORIZATION],
            "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
        );
        assert!(req.body().is_none(), "a GET carries its parameters in the query");

        // A phone number as `from` (its '+' dropped when read), the caller id's line, predicted.
        let req = request_callback(&from_digits("+74951230099").unwrap(), Some("100"), true)
            .request(&http, &operator, &callback("+79161234567"), NOW)
            .build()
            .unwrap();
        assert_eq!(
            req.url().query(),
            Some("format=json&from=74951230099&predicted=1&sip=100&to=79161234567"),
            "sorted by name, as signed"
        );
        assert_eq!(
            req.headers()[reqwest::header::AUTHORIZATION],
            "a248a6a984459935b569:YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="
        );
    }

    #[test]
    fn callback_answers_are_read() {
        use reqwest::StatusCode;
        let z = request_callback("100", None, false);
        let ok = StatusCode::OK;
        // The documented answer: no call id.
        let success = r#"{"status":"success","from":"100","to":"79161234567","time":1800000000}"#;
        assert_eq!(z.answer(ok, success), Answer::Placed { pbx_ref: None });
        assert_eq!(
            z.answer(ok, r#"{"status":"success","pbx_call_id":"out_0123abcd","time":1800000000}"#),
            Answer::Placed { pbx_ref: Some("out_0123abcd".into()) },
            "a call id, if the answer ever gives one"
        );
        let refused = |a: Answer| match a {
            Answer::Refused(m) => m,
            other => panic!("not refused: {other:?}"),
        };
        let again = |a: Answer| match a {
            Answer::Again(m) => m,
            other => panic!("not retried: {other:?}"),
        };
        let m = refused(z.answer(ok, r#"{"status":"error","message":"Wrong parameter 'to'"}"#));
        assert_eq!(m, "Zadarma refused the callback: Wrong parameter 'to'");
        let m = refused(z.answer(StatusCode::UNAUTHORIZED, r#"{"status":"error","message":"Not authorized"}"#));
        assert!(m.contains("HTTP 401") && m.contains("Not authorized"), "{m}");
        assert!(refused(z.answer(ok, r#"{"status":"pending"}"#)).contains("did not confirm"));
        let long = format!(r#"{{"status":"error","message":"{}"}}"#, "x".repeat(1000));
        assert_eq!(refused(z.answer(ok, &long)).len(), "Zadarma refused the callback: ".len() + MAX_MESSAGE);

        // Rate limits and failures on Zadarma's side are retried.
        assert!(again(z.answer(StatusCode::TOO_MANY_REQUESTS, "")).contains("429"));
        assert!(again(z.answer(StatusCode::BAD_GATEWAY, "<html>")).contains("502"));
        let m = again(z.answer(StatusCode::BAD_REQUEST, r#"{"status":"error","message":"Too many requests"}"#));
        assert!(m.contains("Too many requests"), "{m}");
        assert!(matches!(z.answer(ok, r#"{"status":"error","message":"API rate limit exceeded"}"#), Answer::Again(_)));
        assert!(again(z.answer(ok, "<html>maintenance</html>")).contains("not JSON"));
    }

    #[test]
    fn the_trigger_reader_takes_the_key_pair_and_who_is_rung() {
        let config = |trigger: &str, env: &[(&str, &str)]| {
            let text = format!(
                r#"
[[pbx]]
id = "zd"
kind = "zadarma"
secret = "{SECRET}"

[[site]]
id = "shop-1"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]

[site.callback]
operator = "+74951230099"
pbx = "zd"
trigger = {{ kind = "zadarma", {trigger} }}
"#
            );
            let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK, &TRIGGER])
        };
        // The trigger as read: its request for a callback to +79161234567.
        let request = |c: &Config| {
            let section = &c.sites[0].callback.as_ref().expect("a callback form").trigger;
            let t = section.get::<Box<dyn Trigger>>().expect("a trigger");
            let operator = PhoneNumber::parse("+74951230099").unwrap();
            t.request(&reqwest::Client::new(), &operator, &callback("+79161234567"), NOW).build().unwrap()
        };
        let c = config(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "100""#), &[]).unwrap();
        let req = request(&c);
        assert_eq!(
            req.url().as_str(),
            "https://api.zadarma.com/v1/request/callback/?format=json&from=100&to=79161234567"
        );
        assert_eq!(
            req.headers()[reqwest::header::AUTHORIZATION],
            "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
        );
        // The secret from the environment (named by the site), the URL for tests, the line, predicted.
        let c = config(
            r#"key = "a248a6a984459935b569", secret = "file-secret-0123456", from = "+74951230099", sip = "100", predicted = true, url = "http://127.0.0.1:9/""#,
            &[("CALLPOOL_TRIGGER_SECRET_SHOP_1", SECRET)],
        )
        .unwrap();
        let req = request(&c);
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:9/v1/request/callback/?format=json&from=74951230099&predicted=1&sip=100&to=79161234567"
        );
        assert!(req.headers()[reqwest::header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .ends_with(":YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="));

        let problems = |trigger: &str| config(trigger, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        let all = problems("");
        for field in ["key: required", "secret: required", "from: required"] {
            assert!(all.contains(&format!("callback.trigger.{field} for kind = \"zadarma\"")), "{field}: {all}");
        }
        assert!(all.contains("CALLPOOL_TRIGGER_SECRET_SHOP_1"), "{all}");
        let with = |extra: &str| problems(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "100", {extra}"#));
        assert!(problems(&format!(r#"key = "a:b", secret = "{SECRET}", from = "100""#))
            .contains("key: letters and digits only"));
        assert!(problems(&format!(r#"key = "{KEY}", secret = "short", from = "100""#))
            .contains("secret: must be at least 16"));
        for bad in ["10", "+100", "+123456", "7 495 123-00-99", "0-1", "1234567890123456"] {
            let p = problems(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "{bad}""#));
            assert!(p.contains(&format!("from: {bad:?} is neither an extension")), "{bad}: {p}");
        }
        for good in ["100", "123456", "74951230099", "+74951230099"] {
            assert!(from_digits(good).is_ok(), "{good}");
        }
        assert!(with(r#"sip = "1a0""#).contains("sip: \"1a0\" is not an extension or SIP number"));
        assert!(with(r#"url = "api.zadarma.com""#).contains("url: \"api.zadarma.com\" is not an http(s) URL"));
        assert!(with(r#"predicted = "yes""#).contains("invalid type"), "{}", with(r#"predicted = "yes""#));
        assert!(with(r#"pbx_call_id = "x""#).contains("unknown field `pbx_call_id`"));
    }
}
