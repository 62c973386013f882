//! Zadarma's cloud PBX.
//!
//! Webhook (`[[pbx]] kind = "zadarma"`, `secret`, `timezone`, `key?`, `url?`): the PBX's call
//! notifications (Settings → Integrations and API → notifications), one form-urlencoded POST per
//! event, each with a `Signature` header: base64 of the *hex text* of HMAC-SHA1, keyed with the API
//! secret of the account's API keys, over the event's fields concatenated without separators
//! (Zadarma's own library, zadarma/user-api-v1: `Client::encodeSignature` is
//! `base64_encode(hash_hmac('sha1', $string, $secret))`, and PHP's `hash_hmac` returns hex unless
//! told otherwise; each `lib/Webhook/Notify*.php` names its fields):
//!
//! - NOTIFY_START (pbx_call_id, caller_id, called_did, call_start), signed
//!   `caller_id . called_did . call_start`: a ringing call;
//! - NOTIFY_END (the same, and duration, disposition, status_code, is_recorded,
//!   call_id_with_rec), signed like NOTIFY_START: the call's end (and its recording, if any);
//! - NOTIFY_ANSWER (pbx_call_id, caller_id, destination, call_start, internal), signed
//!   `caller_id . destination . call_start`: checked, nothing recorded;
//! - NOTIFY_RECORD (pbx_call_id, call_id_with_rec), signed `pbx_call_id . call_id_with_rec`: the
//!   call's recording.
//!
//! NOTIFY_ANSWER names who answered (`destination`), not the number dialled, so it cannot be a
//! report of its own (the first report of a call is matched by the number dialled); the end's
//! `disposition` says whether the call was answered. Other events (NOTIFY_INTERNAL, NOTIFY_OUT_*,
//! NOTIFY_IVR, ...) are answered and not read. Zadarma signs no timestamp: a replayed
//! notification only repeats a report of a call already recorded (idempotent by pbx_call_id).
//!
//! Recordings carry only ids: a recording is fetched through Zadarma's authenticated API, so only
//! a PBX with the API's user key (`key`; `secret` is the same key pair's secret) records them.
//! NOTIFY_RECORD's `call_id_with_rec`, or NOTIFY_END's when `is_recorded` is 1, becomes the call's
//! recording `zadarma:<call_id_with_rec>`; without `key` both are answered and no recording is
//! kept. Played from a report, it is asked for as `GET <url>/v1/pbx/record/request/?call_id=<id>
//! &format=json` (signed as below; `call_id` is the recording's id, `pbx_call_id` would name every
//! recording of the call: zadarma/user-api-v1 `Api::getPbxRecord`, zadarma/openapi
//! `/v1/pbx/record/request`), which answers `{"status":"success","link":..,"lifetime_till":..}`
//! (the link lives 30 minutes by default) or `{"status":"error","message":..}`; the link is then
//! fetched as it is.
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

use futures_util::future::BoxFuture;

use super::adapter::{
    called_number, http_answer, json_text, not_in_future, plain_get, recording_url, Adapter, Answer, CallAccepted,
    Inbound, Received, RecordingError, Refusal, Reply, Ring, Trigger, LONGEST_CALL_S,
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

/// A Zadarma PBX's settings: its API secret, its account's time zone, and its API (for recordings).
pub struct Zadarma {
    secret: String,
    timezone: Tz,
    /// Set with `key`: recordings are kept and fetched through the API.
    api: Option<Api>,
}

/// Zadarma's API as a webhook PBX calls it: its base URL and the key pair's user key (the secret
/// is the webhook's).
struct Api {
    base_url: String,
    key: String,
}

/// Reads a `[[pbx]] kind = "zadarma"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    secret: Option<String>,
    timezone: Option<String>,
    key: Option<String>,
    url: Option<String>,
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
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_API_URL.into()));
        let api = match raw.key {
            None => Some(None),
            Some(k) => user_key(f, k).map(|key| Some(Api { base_url, key })),
        };
        let adapter: Box<dyn Adapter> = Box::new(Zadarma { secret: secret?, timezone: timezone?, api: api? });
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
            Some(RECORD) if self.api.is_some() => recording_of(pbx, &fields).map_err(Refusal::Malformed),
            Some(_) => Ok(Received::Answer(empty())),
            None => Err(Refusal::Malformed("event: required (NOTIFY_START, NOTIFY_END, ...)".into())),
        }
    }

    /// `zadarma:<id>` through the API (not fetchable without `key`); a link as it is.
    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        match (recording.strip_prefix(RECORDING_PREFIX), &self.api) {
            (None, _) => Box::pin(std::future::ready(plain_get(http, recording))),
            (Some(id), Some(api)) if record_id(id).is_ok() => Box::pin(self.record_link(http, api, id)),
            (Some(_), _) => Box::pin(std::future::ready(Err(RecordingError::NotFetchable))),
        }
    }

    /// Zadarma needs only the 200; a body on NOTIFY_START would be read as routing instructions.
    fn reply(&self, _accepted: &[CallAccepted]) -> Reply {
        empty()
    }
}

/// What a call's recording is kept as: this, then the recording's id (`call_id_with_rec`).
pub const RECORDING_PREFIX: &str = "zadarma:";
/// The longest recording id taken.
const MAX_RECORD_ID: usize = 128;
/// The API's method that gives a recording's link.
pub const RECORD_METHOD: &str = "/v1/pbx/record/request/";
/// How long callpool waits for the API's answer with a recording's link.
const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// The longest answer of the API read (a link and its lifetime are a few hundred bytes).
const MAX_API_ANSWER: usize = 64 * 1024;

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

/// A form field, trimmed; `None` when missing or blank.
fn field<'f>(fields: &'f HashMap<String, String>, name: &str) -> Option<&'f str> {
    fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
}

/// The call's key, from its `pbx_call_id`.
fn call_key(pbx: &str, fields: &HashMap<String, String>) -> Result<CallKey, String> {
    CallKey::new(pbx, field(fields, "pbx_call_id").ok_or("pbx_call_id: required")?)
        .map_err(|e| format!("pbx_call_id: {e}"))
}

/// NOTIFY_RECORD as the recording of its call.
fn recording_of(pbx: &str, fields: &HashMap<String, String>) -> Result<Received, String> {
    let key = call_key(pbx, fields)?;
    let id = field(fields, "call_id_with_rec").ok_or("call_id_with_rec: required")?;
    Ok(Received::Recording { key, recording: recording_ref(id)? })
}

/// The reference a call keeps to its recording: `zadarma:<call_id_with_rec>`.
fn recording_ref(id: &str) -> Result<String, String> {
    record_id(id)?;
    Ok(format!("{RECORDING_PREFIX}{id}"))
}

/// A recording's id (`call_id_with_rec`, such as `1585913205.75283`): 1 to [`MAX_RECORD_ID`]
/// letters, digits, '.', '-' or '_'.
fn record_id(id: &str) -> Result<(), String> {
    if (1..=MAX_RECORD_ID).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        Ok(())
    } else {
        Err(format!("call_id_with_rec: expected 1 to {MAX_RECORD_ID} letters, digits, '.', '-' or '_'"))
    }
}

impl Zadarma {
    /// NOTIFY_START (ringing) or NOTIFY_END (final) as a report.
    fn report(&self, pbx: &str, fields: &HashMap<String, String>, now: Ts) -> Result<CallReport, String> {
        let get = |f: &str| field(fields, f);
        let key = call_key(pbx, fields)?;
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
        // The end names the call's recording too (kept only when callpool can fetch it).
        let recording_url = match get("call_id_with_rec") {
            Some(id) if ended && self.api.is_some() && get("is_recorded") == Some("1") => Some(recording_ref(id)?),
            _ => None,
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
            recording_url,
        })
    }

    /// Asks Zadarma's API for a link to the recording `id`; the request that fetches it.
    async fn record_link(
        &self,
        http: &reqwest::Client,
        api: &Api,
        id: &str,
    ) -> Result<reqwest::RequestBuilder, RecordingError> {
        let failed = |e: reqwest::Error| RecordingError::Failed(format!("Zadarma's API did not answer: {e}"));
        let params = [("call_id", id), ("format", "json")];
        let mut answer = api_get(http, &api.base_url, &api.key, &self.secret, RECORD_METHOD, &params)
            .timeout(API_TIMEOUT)
            .send()
            .await
            .map_err(failed)?;
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_API_ANSWER {
                return Err(RecordingError::Failed(format!("Zadarma's API answered more than {MAX_API_ANSWER} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        record_answer(answer.status(), &String::from_utf8_lossy(&body)).map(|link| http.get(link))
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
        let key = key.and_then(|k| user_key(f, k));
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
        let trigger = RequestCallback {
            base_url,
            key: key?,
            secret: secret?,
            from: from?,
            sip: sip?,
            predicted: raw.predicted.unwrap_or(false),
        };
        Some(super::adapter::trigger_section("zadarma", trigger))
    }
}

/// `key`: the user key of the account's API keys, letters and digits.
fn user_key(f: &mut Fields<'_>, key: String) -> Option<String> {
    if key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Some(key)
    } else {
        f.fail("key", "letters and digits only (the user key of the account's API keys)");
        None
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
    fn params(&self, from: &str, visitor: &PhoneNumber) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("format", "json".to_owned()),
            ("from", from.to_owned()),
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
    /// Zadarma rings the operator first (its `from`: by default the trigger's own).
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, _now: Ts) -> reqwest::RequestBuilder {
        let params = self.params(ring.operator, &cb.number);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        api_get(http, &self.base_url, &self.key, &self.secret, CALLBACK_METHOD, &pairs)
    }

    /// As the trigger's own `from`.
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        from_digits(raw)
    }

    fn own_operator(&self) -> Option<&str> {
        Some(&self.from)
    }

    /// Zadarma's notifications do not name the callback's call (see above).
    fn follows_calls(&self) -> bool {
        false
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        let json = serde_json::from_str::<serde_json::Value>(body).ok();
        let message = json.as_ref().and_then(api_message);
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

/// An answer's `message`, trimmed to [`MAX_MESSAGE`] characters.
fn api_message(answer: &serde_json::Value) -> Option<String> {
    let m = json_text(answer.get("message")?)?;
    let m = m.trim();
    Some(m.char_indices().nth(MAX_MESSAGE).map_or(m, |(i, _)| &m[..i]).to_owned())
}

/// The link in the API's answer to [`RECORD_METHOD`] (`link`, or the first of `links`), or why
/// there is none: an error saying the recording is not found is [`RecordingError::Gone`] (its
/// wording is not documented), any other failure is for the operator.
pub fn record_answer(status: reqwest::StatusCode, body: &str) -> Result<String, RecordingError> {
    let json = serde_json::from_str::<serde_json::Value>(body).ok();
    let message = json.as_ref().and_then(api_message);
    let said = |j: &serde_json::Value| j.get("status").and_then(serde_json::Value::as_str).map(str::to_owned);
    let answer = json.as_ref().and_then(said);
    if answer.as_deref() == Some("error") && message.as_deref().is_some_and(not_found) {
        return Err(RecordingError::Gone);
    }
    let failed = |why: String| Err(RecordingError::Failed(format!("Zadarma's API gave no link: {why}")));
    if !status.is_success() {
        return failed(format!("HTTP {status} {}", message.unwrap_or_default()).trim_end().to_owned());
    }
    let Some(j) = json else { return failed("the answer is not JSON".into()) };
    if answer.as_deref() == Some("error") {
        return failed(message.unwrap_or_else(|| "an error without a message".into()));
    }
    let first = j.get("links").and_then(serde_json::Value::as_array).and_then(|l| l.first());
    match j.get("link").or(first).and_then(serde_json::Value::as_str) {
        Some(link) if answer.as_deref() == Some("success") => recording_url("link", link).or_else(failed),
        _ => failed("the answer is not a success with a link".into()),
    }
}

/// Whether an error message of Zadarma's API says the recording is not there.
fn not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["not found", "not exist", "n't exist", "no record", "deleted"].iter().any(|w| m.contains(w))
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

/// A GET of the API's `method` (such as [`CALLBACK_METHOD`]) at `base_url`, with `params` (sorted
/// by name) as its query, signed as Zadarma's library signs it.
fn api_get(
    http: &reqwest::Client,
    base_url: &str,
    key: &str,
    secret: &str,
    method: &str,
    params: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let query = api_query(params);
    http.get(format!("{base_url}{method}?{query}"))
        .header(reqwest::header::AUTHORIZATION, api_authorization(key, secret, method, &query))
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
