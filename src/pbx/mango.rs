//! Mango Office's Virtual PBX (ВАТС): its realtime events.
//!
//! Webhook (`[[pbx]] kind = "mango"`, `api_key`, `api_salt`): Mango posts every notification as a
//! form (`vpbx_api_key`, `sign`, `json`) to the external system's address it was given, followed
//! by the event's own path: `<base>/events/call`, `/events/summary`, `/events/recording`,
//! `/events/dtmf`, `/events/sms`, ... The web layer hands that path on as
//! [`Inbound::path_tail`] (`events/call`). `sign` is `hex(sha256(vpbx_api_key + json +
//! vpbx_api_salt))`, and the key must be this PBX's; Mango signs every request it sends, so every
//! one is checked, whatever its event.
//!
//! - `events/call`: one per change of one leg (`call_id`) of a call (`entry_id`), in any order
//!   (`seq` counts them). `Appeared` is ringing; `Connected` or `OnHold` with `location = "abonent"`
//!   (an employee took the call) is answered, while in the voice menu or the queue it is still
//!   ringing. `Disconnected` ends a leg, not the call, and is not recorded; nor are calls an
//!   employee makes (`from.extension`) or calls to a SIP line. These reports carry a status and the
//!   event's time only: a call's status only moves forward and a final one stays, so a late event
//!   can never move a call back, and the times and talk time come from the summary alone.
//! - `events/summary`: one per call, after it, the final word. Incoming calls only
//!   (`call_direction = 1`): missed when nobody talked (`talk_time` 0, or `entry_result` 0), else
//!   completed with the talk time `end_time - talk_time`; started at `create_time`.
//! - Everything else is answered 200 with nothing recorded: `events/recording` (it names the
//!   recording by `recording_id` only, without the dialled line or the call's start a report
//!   needs), DTMF, SMS, pings, command results.
//!
//! The dialled line is `to.line_number` (`line_number` in the summary) and the caller
//! `from.number`, digits without `+`; times are Unix seconds. Mango reads only the HTTP status of
//! an answer to its notifications.
//!
//! Source: MANGO OFFICE, "API Виртуальной АТС" (MangoOffice_VPBX_API_v1.9.pdf): §2.1.1 (requests
//! and answers), §2.4.3 (`sign`), §3.1.1–3.1.6 (the events, with the examples the tests use).

use callpool_pool::{PhoneNumber, Ts};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::adapter::{called_number, not_in_future, Adapter, Inbound, Received, Refusal, Reply, LONGEST_CALL_S};
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX};

/// A Mango VPBX's API key (its "unique code", `vpbx_api_key`) and signing key (`vpbx_api_salt`).
pub struct Mango {
    api_key: String,
    api_salt: String,
}

/// Reads a `[[pbx]] kind = "mango"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    api_key: Option<String>,
    api_salt: Option<String>,
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("mango")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawWebhook = f.parse()?;
        let env_name = format!("{ENV_PBX_SECRET_PREFIX}{}", f.owner().to_ascii_uppercase().replace('-', "_"));
        let salt = f.env().var(&env_name).or(raw.api_salt);
        let api_key = f.required(
            "api_key",
            raw.api_key,
            " for kind = \"mango\" (the VPBX's unique code, vpbx_api_key: Integrations, API connector)",
        );
        let why =
            format!(" for kind = \"mango\" (the signing key, vpbx_api_salt, on the same page; or set {env_name})");
        let api_salt = f.required("api_salt", salt, &why).map(|s| f.secret("api_salt", s));
        let adapter: Box<dyn Adapter> = Box::new(Mango { api_key: api_key?, api_salt: api_salt? });
        Some(Section::new("mango", adapter))
    }
}

impl Adapter for Mango {
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal> {
        let form = Form::parse(req.body);
        match form.sign.as_deref().filter(|s| !s.is_empty()) {
            Some(sign) => verify(
                &self.api_key,
                &self.api_salt,
                form.key.as_deref().unwrap_or(""),
                form.json.as_deref().unwrap_or(""),
                sign,
            ),
            None => Err(Refusal::NoSignature("send Mango's form fields vpbx_api_key, sign and json".into())),
        }
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        let event = req.path_tail.trim_matches('/');
        let read: fn(&str, &Obj, Ts) -> Result<Option<CallReport>, String> = match event {
            "events/call" => call_event,
            "events/summary" => summary,
            "" => {
                return Err(Refusal::Malformed(
                    "path: Mango posts each event to its base address followed by /events/<event>, and this \
                     request has none: give Mango the PBX's base URL (docs/PBX.md, Mango Office)"
                        .into(),
                ))
            }
            _ => return Ok(ignored()),
        };
        let json = Form::parse(req.body).json.ok_or_else(|| Refusal::Malformed("json: required".into()))?;
        let value: Value =
            serde_json::from_str(&json).map_err(|e| Refusal::Malformed(format!("json: not JSON: {e}")))?;
        let obj = value.as_object().ok_or_else(|| Refusal::Malformed("json: must be a JSON object".into()))?;
        match read(pbx, obj, req.now).map_err(Refusal::Malformed)? {
            Some(report) => Ok(Received::Reports(vec![report])),
            None => Ok(ignored()),
        }
    }
}

/// The answer to an event callpool does not record (Mango reads only the status).
fn ignored() -> Received {
    Received::Answer(Reply::Json(json!({ "result": "ignored" })))
}

/// Checks a notification's key and `sign` (both compared in constant time).
pub fn verify(api_key: &str, api_salt: &str, given_key: &str, json: &str, given_sign: &str) -> Result<(), Refusal> {
    let key_ok: Choice = Sha256::digest(given_key).ct_eq(&Sha256::digest(api_key));
    let expected = digest(api_key, json, api_salt);
    let sign_ok = match hex::decode(given_sign.trim()) {
        Ok(given) => expected.as_slice().ct_eq(&given),
        Err(_) => Choice::from(0),
    };
    if !bool::from(key_ok) {
        return Err(Refusal::BadSignature("vpbx_api_key is not this PBX's api_key".into()));
    }
    if !bool::from(sign_ok) {
        return Err(Refusal::BadSignature(
            "sign is not sha256(vpbx_api_key + json + vpbx_api_salt) (check the configured api_salt)".into(),
        ));
    }
    Ok(())
}

fn digest(api_key: &str, json: &str, api_salt: &str) -> [u8; 32] {
    Sha256::new().chain_update(api_key).chain_update(json).chain_update(api_salt).finalize().into()
}

/// The `sign` Mango sends with `json` (for tests and tools).
pub fn sign(api_key: &str, json: &str, api_salt: &str) -> String {
    hex::encode(digest(api_key, json, api_salt))
}

/// Mango's three form fields (the first of each, for the check and the reading alike).
#[derive(Default)]
struct Form {
    key: Option<String>,
    sign: Option<String>,
    json: Option<String>,
}

impl Form {
    fn parse(body: &[u8]) -> Form {
        let mut form = Form::default();
        for (name, value) in form_urlencoded::parse(body) {
            let slot = match name.as_ref() {
                "vpbx_api_key" => &mut form.key,
                "sign" => &mut form.sign,
                "json" => &mut form.json,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.into_owned());
            }
        }
        form
    }
}

type Obj = Map<String, Value>;

/// `events/call`: ringing or answered; `None` for what is not recorded.
fn call_event(pbx: &str, obj: &Obj, now: Ts) -> Result<Option<CallReport>, String> {
    let key = call_key(pbx, obj)?;
    let state = text(obj, "call_state", "call_state")?.ok_or("call_state: required")?;
    let at = time(obj, "timestamp", "timestamp")?.ok_or("timestamp: required")?;
    let from = object(obj, "from")?;
    let to = object(obj, "to")?;
    let location = text(obj, "location", "location")?.unwrap_or_default();
    // "abonent": the call is with an employee; "ivr" and "queue": the voice menu or a group's queue.
    let with_employee = location == "abonent" || location.starts_with("abonent.");
    let status = match state.as_str() {
        "Appeared" => CallStatus::Ringing,
        "Connected" | "OnHold" if with_employee => CallStatus::Answered,
        "Connected" | "OnHold" => CallStatus::Ringing,
        // One leg ended; the call may go on in another (the summary says how it ended).
        "Disconnected" => return Ok(None),
        other => return Err(format!("call_state: {other:?} is not one of Appeared, Connected, OnHold, Disconnected")),
    };
    if from.and_then(|f| f.get("extension")).is_some_and(|e| !e.is_null()) {
        return Ok(None); // an employee's call: outgoing, internal, or a consultation
    }
    let Some(called) = line(to, "line_number", "to.line_number")? else {
        return Ok(None);
    };
    let caller = caller(from)?;
    in_the_past(at, now, "timestamp")?;
    Ok(Some(CallReport {
        key,
        called,
        caller,
        started_at: at,
        answered_at: None,
        ended_at: None,
        status,
        duration: None,
        recording_url: None,
    }))
}

/// `events/summary`: the call's outcome; `None` for calls that are not incoming.
fn summary(pbx: &str, obj: &Obj, now: Ts) -> Result<Option<CallReport>, String> {
    let key = call_key(pbx, obj)?;
    match int(obj, "call_direction")?.ok_or("call_direction: required")? {
        1 => {}
        0 | 2 => return Ok(None), // internal, outgoing
        other => return Err(format!("call_direction: {other} is not 0 (internal), 1 (incoming) or 2 (outgoing)")),
    }
    let created = seconds(obj, "create_time", "create_time")?.ok_or("create_time: required")?;
    let talk = seconds(obj, "talk_time", "talk_time")?.ok_or("talk_time: required")?;
    let end = seconds(obj, "end_time", "end_time")?.ok_or("end_time: required")?;
    let talked = match int(obj, "entry_result")?.ok_or("entry_result: required")? {
        0 => false,
        1 => talk > 0,
        other => return Err(format!("entry_result: {other} is not 0 (missed) or 1 (answered)")),
    };
    if end < created {
        return Err(format!("end_time: {end} is before create_time {created}"));
    }
    let line = text(obj, "line_number", "line_number")?.ok_or("line_number: required for an incoming call")?;
    let Some(called) = phone_line(&line, "line_number")? else {
        return Ok(None);
    };
    let caller = caller(object(obj, "from")?)?;
    let (status, answered_at, duration) = if talked {
        if end < talk {
            return Err(format!("end_time: {end} is before talk_time {talk}"));
        }
        let d = u64::try_from(end - talk).unwrap_or(0);
        if d > LONGEST_CALL_S {
            return Err(format!("talk_time: a talk of {d} s is longer than a week"));
        }
        (CallStatus::Completed, Some(unix(talk)), Some(d as u32))
    } else {
        (CallStatus::Missed, None, Some(0))
    };
    let started_at = unix(created);
    in_the_past(started_at, now, "create_time")?;
    Ok(Some(CallReport {
        key,
        called,
        caller,
        started_at,
        answered_at,
        ended_at: Some(unix(end)),
        status,
        duration,
        recording_url: None,
    }))
}

fn call_key(pbx: &str, obj: &Obj) -> Result<CallKey, String> {
    let entry_id = text(obj, "entry_id", "entry_id")?.ok_or("entry_id: required")?;
    CallKey::new(pbx, &entry_id).map_err(|e| format!("entry_id: {e}"))
}

/// The dialled line, `None` when there is none or it is a SIP address (no tracking number).
fn line(obj: Option<&Obj>, name: &str, field: &str) -> Result<Option<PhoneNumber>, String> {
    match obj.map(|o| text(o, name, field)).transpose()?.flatten() {
        Some(raw) => phone_line(&raw, field),
        None => Ok(None),
    }
}

/// A line as Mango writes it (`74951234567`, digits with the country code, no `+`).
fn phone_line(raw: &str, field: &str) -> Result<Option<PhoneNumber>, String> {
    let raw = raw.trim();
    if raw.is_empty() || raw.starts_with("sip:") || raw.starts_with("sips:") || raw.contains('@') {
        return Ok(None);
    }
    let e164 = if raw.starts_with('+') { raw.to_owned() } else { format!("+{raw}") };
    called_number(field, &e164)
        .map(Some)
        .map_err(|_| format!("{field}: {raw:?} is not a phone number with its country code (74951234567)"))
}

/// `from.number`: Mango's international numbers get their `+`; SIP addresses and withheld
/// numbers are no caller.
fn caller(from: Option<&Obj>) -> Result<Option<Caller>, String> {
    let Some(raw) = from.map(|f| text(f, "number", "from.number")).transpose()?.flatten() else {
        return Ok(None);
    };
    let raw = raw.trim();
    if (11..=15).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Caller::parse(&format!("+{raw}")));
    }
    Ok(Caller::parse(raw))
}

/// A time can be late, never early: no more than the allowed clock skew in the future.
fn in_the_past(t: Ts, now: Ts, field: &str) -> Result<(), String> {
    not_in_future(t, now).map_err(|_| format!("{field}: more than 5 minutes in the future (Unix seconds expected)"))
}

fn unix(s: i64) -> Ts {
    Ts::from_millis(s * 1000)
}

/// A field that is absent or null.
fn get<'a>(obj: &'a Obj, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A string (numbers Mango sometimes writes bare, e.g. ids, are taken as their text).
fn text(obj: &Obj, name: &str, field: &str) -> Result<Option<String>, String> {
    match get(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("{field}: expected a string, got {other}")),
    }
}

/// A whole number, bare or as text (Mango writes some as `"1399906976"`).
fn int(obj: &Obj, name: &str) -> Result<Option<i64>, String> {
    let whole = |v: &Value| match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    get(obj, name).map(|v| whole(v).ok_or_else(|| format!("{name}: {v} is not a whole number"))).transpose()
}

/// Unix seconds (0 allowed: Mango's "did not happen").
fn seconds(obj: &Obj, name: &str, field: &str) -> Result<Option<i64>, String> {
    match int(obj, name) {
        Ok(Some(s)) if (0..=32_503_680_000).contains(&s) => Ok(Some(s)),
        Ok(None) => Ok(None),
        _ => Err(format!("{field}: {} is not Unix seconds", get(obj, name).map_or(Value::Null, Value::clone))),
    }
}

/// A time in Unix seconds that must be one (not 0).
fn time(obj: &Obj, name: &str, field: &str) -> Result<Option<Ts>, String> {
    match seconds(obj, name, field)? {
        Some(0) => Err(format!("{field}: 0 is not a time")),
        s => Ok(s.map(unix)),
    }
}

/// A nested object (`from`, `to`).
fn object<'a>(obj: &'a Obj, name: &str) -> Result<Option<&'a Obj>, String> {
    match get(obj, name) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(other) => Err(format!("{name}: expected an object, got {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::HeaderMap;
    use callpool_pool::SessionAttrs;

    use super::*;
    use crate::calls::{Call, Match, MatchKind, NumberKind};
    use crate::config::Config;

    const KEY: &str = "test-api-key-0001";
    const SALT: &str = "test-api-salt-0001";
    const NOW: Ts = Ts::from_millis(1_800_000_000_000);

    fn mango() -> Mango {
        Mango { api_key: KEY.into(), api_salt: SALT.into() }
    }

    /// Mango's form for `json`, signed as Mango signs it.
    fn form(json: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("vpbx_api_key", KEY)
            .append_pair("sign", &sign(KEY, json, SALT))
            .append_pair("json", json)
            .finish()
    }

    /// What a signed `json` posted to `<base>/<event>` reads into.
    fn receive(event: &str, json: &str) -> Result<Received, Refusal> {
        let h = HeaderMap::new();
        let body = form(json);
        let req = Inbound { headers: &h, query: "", body: body.as_bytes(), now: NOW, path_tail: event };
        mango().verify(&req)?;
        mango().read("mg", &req)
    }

    fn report(event: &str, json: &str) -> CallReport {
        match receive(event, json) {
            Ok(Received::Reports(mut r)) if r.len() == 1 => r.remove(0),
            Ok(Received::Reports(r)) => panic!("{event} {json}: {} reports", r.len()),
            Ok(Received::Answer(a)) => panic!("{event} {json}: not recorded ({a:?})"),
            Err(e) => panic!("{event} {json}: refused: {e:?}"),
        }
    }

    fn is_ignored(event: &str, json: &str) -> bool {
        matches!(receive(event, json), Ok(Received::Answer(Reply::Json(v))) if v == json!({"result": "ignored"}))
    }

    fn malformed(event: &str, json: &str) -> String {
        match receive(event, json) {
            Err(Refusal::Malformed(m)) => m,
            other => panic!("{event} {json}: not refused as malformed: {:?}", other.map(|_| ())),
        }
    }

    fn at(s: i64) -> Ts {
        Ts::from_millis(s * 1000)
    }

    // The example notifications of §3.1.2 (events/call) and §3.1.6 (events/summary), with the
    // documentation's numbers (e.g. "7800123456789", 13 digits) replaced by numbers that exist.
    const CALL_EXAMPLE: &str = r#"{
        "entry_id":"1MN0Q1MDOQ==",
        "call_id":"MIxEyNTzTo6NDxkzNMMOzNQ==",
        "timestamp":1558422128,
        "seq":2,
        "call_state":"Disconnected",
        "location":"abonent",
        "from": { "number":"79001234567", "taken_from_call_id":"oMNTMyzTzNTo6NxNkDIxOxM3EMNTj" },
        "to": {
            "extension":"29", "number":"sip:user00000@tech.mangosip.ru",
            "line_number":"sip:line00000@tech.mangosip.ru", "acd_group":"303"
        },
        "disconnect_reason":1131,
        "dct": { "number":"74001234567", "type":1 }
    }"#;
    const SUMMARY_ANSWERED: &str = r#"{
        "entry_id":"232wc3e3w3s222",
        "call_direction":1,
        "from": { "number":"79161234567" },
        "to": { "extension":"123", "number":"74951230099" },
        "line_number":"74951230001",
        "create_time":1399906976,
        "forward_time":1399906978,
        "talk_time":1399906980,
        "end_time":1399906990,
        "entry_result":1,
        "disconnect_reason":1100
    }"#;
    const SUMMARY_IN_IVR: &str = r#"{
        "entry_id":"232wc3e3w3s222",
        "call_direction":1,
        "from": { "number":"79000000000" },
        "to": { },
        "line_number":"74951230001",
        "create_time":1399906976,
        "forward_time":1399906978,
        "talk_time":0,
        "end_time":1399906990,
        "entry_result":1,
        "disconnect_reason":1170
    }"#;
    const SUMMARY_OUTGOING: &str = r#"{
        "entry_id":"232wc3e3w3s222",
        "call_direction":2,
        "from": { "extension":"123", "number":"sip:user1@xyz.mangosip.ru" },
        "to": { "number":"79161234567" },
        "line_number":"74953333357",
        "create_time":1399906976,
        "forward_time":1399906976,
        "talk_time":1399906980,
        "entry_result":1,
        "end_time":1399906990,
        "disconnect_reason":1100
    }"#;
    // §3.1.4, example 1.
    const RECORDING_EXAMPLE: &str = r#"{
        "recording_id":"r100:777:500:256",
        "recording_state":"Started",
        "seq":1,
        "call_id":"100:500:256",
        "entry_id":"232wc3e3w3s222",
        "extension":"1234",
        "timestamp":"1399906976",
        "command_id":"cmd.12.vpbx.12345.external.system.com.net"
    }"#;

    /// The call example with another state, location and dialled line.
    fn call(state: &str, location: &str, line: &str) -> String {
        CALL_EXAMPLE
            .replace("\"Disconnected\"", &format!("{state:?}"))
            .replace("\"location\":\"abonent\"", &format!("\"location\":{location:?}"))
            .replace("\"sip:line00000@tech.mangosip.ru\"", &format!("{line:?}"))
    }

    #[test]
    fn the_sign_is_sha256_of_key_json_and_salt() {
        // Computed independently: printf '%s' "$KEY$JSON$SALT" | sha256sum
        let json = r#"{"entry_id":"MTAxMjM0NTY3OA==","call_id":"MToxMDA1NzU5Mzo1MDI6NjI1ODM4MzQ="}"#;
        let expected = "a3a5b4fccf1067895b68edf83e17ec89cf11bc71528f813dad99b86d5f174506";
        assert_eq!(sign(KEY, json, SALT), expected);
        assert_eq!(verify(KEY, SALT, KEY, json, expected), Ok(()));
        assert_eq!(verify(KEY, SALT, KEY, json, &expected.to_ascii_uppercase()), Ok(()), "hex in either case");

        let reason = |r: Result<(), Refusal>| r.map_err(|e| (e.reason(), e.message().to_owned()));
        let bad_key = reason(verify(KEY, SALT, "another-vpbx-key", json, expected)).unwrap_err();
        assert_eq!(bad_key, ("bad_signature", "vpbx_api_key is not this PBX's api_key".to_owned()));
        for (json, sign) in [
            (json, &sign(KEY, json, "another-salt-0001")[..]),
            (&json.replace("MTAx", "MTAy")[..], expected),
            (json, &expected[..62]),
            (json, "not hex"),
        ] {
            let (why, msg) = reason(verify(KEY, SALT, KEY, json, sign)).unwrap_err();
            assert_eq!(why, "bad_signature");
            assert!(msg.contains("check the configured api_salt"), "{msg}");
        }
    }

    #[test]
    fn requests_are_checked_before_anything_is_read() {
        let h = HeaderMap::new();
        let check = |body: &str| {
            mango()
                .verify(&Inbound { headers: &h, query: "", body: body.as_bytes(), now: NOW, path_tail: "events/call" })
                .map_err(|e| e.reason())
        };
        assert_eq!(check(&form(CALL_EXAMPLE)), Ok(()));
        assert_eq!(check(&form(CALL_EXAMPLE).replace("sign=", "signature=")), Err("no_signature"));
        assert_eq!(check(&form(CALL_EXAMPLE).replace(KEY, "another-vpbx-key")), Err("bad_signature"));
        assert_eq!(check(&format!("{}&json=%7B%7D", form("{}"))), Ok(()), "the first json is the one signed");
        assert_eq!(check(""), Err("no_signature"));
        // An event without json (a ping) is signed over the empty string.
        let ping = format!("vpbx_api_key={KEY}&sign={}", sign(KEY, "", SALT));
        assert_eq!(check(&ping), Ok(()));
    }

    #[test]
    fn call_events_ring_or_answer_and_a_leg_ending_is_not_recorded() {
        // The documentation's own example: a leg that ended, on a SIP line.
        assert!(is_ignored("events/call", CALL_EXAMPLE));
        assert!(is_ignored("/events/call/", &call("Disconnected", "abonent", "74951230001")), "any leg's end");

        let r = report("events/call", &call("Appeared", "ivr", "74951230001"));
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("mg:1MN0Q1MDOQ==", "+74951230001", CallStatus::Ringing)
        );
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+79001234567"));
        assert_eq!(r.started_at, at(1_558_422_128));
        assert_eq!((r.answered_at, r.ended_at, r.duration, &r.recording_url), (None, None, None, &None));

        for (state, location, status) in [
            ("Connected", "ivr", CallStatus::Ringing),
            ("Connected", "queue", CallStatus::Ringing),
            ("Connected", "abonent", CallStatus::Answered),
            ("OnHold", "abonent", CallStatus::Answered),
            ("Appeared", "abonent", CallStatus::Ringing),
        ] {
            assert_eq!(
                report("events/call", &call(state, location, "74951230001")).status,
                status,
                "{state} {location}"
            );
        }
        // A withheld caller, a caller on SIP, a caller with its +.
        let caller = |number: &str| {
            report("events/call", &call("Appeared", "ivr", "74951230001").replace("\"79001234567\"", number)).caller
        };
        assert_eq!(caller("\"sip:client@example.com\""), None);
        assert_eq!(caller("null"), None);
        assert_eq!(caller("\"+7 916 123-45-67\"").as_ref().map(Caller::as_str), Some("+79161234567"));

        // Not incoming to a line: an employee's call, no line, a SIP line.
        let employee =
            call("Appeared", "abonent", "74951230001").replace("\"from\": {", "\"from\": { \"extension\":\"101\",");
        assert!(is_ignored("events/call", &employee));
        assert!(is_ignored(
            "events/call",
            &call("Appeared", "abonent", "74951230001").replace("\"line_number\"", "\"line\"")
        ));
        assert!(is_ignored("events/call", &call("Connected", "abonent", "sip:line1@vpbx400000000.mangosip.ru")));
    }

    #[test]
    fn the_summary_is_the_calls_outcome() {
        let r = report("events/summary", SUMMARY_ANSWERED);
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("mg:232wc3e3w3s222", "+74951230001", CallStatus::Completed)
        );
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+79161234567"));
        assert_eq!(
            (r.started_at, r.answered_at, r.ended_at),
            (at(1_399_906_976), Some(at(1_399_906_980)), Some(at(1_399_906_990)))
        );
        assert_eq!(r.duration, Some(10), "end_time - talk_time");

        // The documentation's unanswered call: it ended in the voice menu (entry_result 1, talk_time 0).
        let r = report("events/summary", SUMMARY_IN_IVR);
        assert_eq!(
            (r.status, r.answered_at, r.duration, r.ended_at),
            (CallStatus::Missed, None, Some(0), Some(at(1_399_906_990)))
        );
        let r = report("events/summary", &SUMMARY_ANSWERED.replace("\"entry_result\":1", "\"entry_result\":0"));
        assert_eq!(r.status, CallStatus::Missed, "entry_result 0: no talk");
        // Times as text are read too.
        let r = report("events/summary", &SUMMARY_ANSWERED.replace("1399906990", "\"1399906990\""));
        assert_eq!(r.duration, Some(10));

        assert!(is_ignored("events/summary", SUMMARY_OUTGOING), "outgoing");
        assert!(is_ignored(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"call_direction\":1", "\"call_direction\":0")
        ));
        assert!(is_ignored(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"74951230001\"", "\"sip:line@x.mangosip.ru\"")
        ));
    }

    #[test]
    fn other_events_are_answered_and_not_recorded() {
        assert!(is_ignored("events/recording", RECORDING_EXAMPLE));
        assert!(is_ignored("events/recording", &RECORDING_EXAMPLE.replace("Started", "Completed")));
        for event in ["events/dtmf", "events/sms", "events/ping", "events/record/added", "result/callback"] {
            assert!(is_ignored(event, "{}"), "{event}");
        }
        // Without the event's path callpool cannot tell what it is.
        assert!(malformed("", CALL_EXAMPLE).starts_with("path: "));
    }

    /// A call as the store keeps it after its first report.
    fn stored(r: &CallReport) -> Call {
        Call {
            key: r.key.clone(),
            called: r.called.clone(),
            caller: r.caller.clone(),
            started_at: r.started_at,
            answered_at: r.answered_at,
            ended_at: r.ended_at,
            status: r.status,
            duration: r.duration,
            recording_url: r.recording_url.clone(),
            received_at: NOW,
            updated_at: NOW,
            matched: Match {
                kind: MatchKind::Unmatched,
                site: None,
                number_kind: NumberKind::Unknown,
                visitor: None,
                lease: None,
                attrs: SessionAttrs::default(),
            },
            first_time_caller: true,
            version: 1,
        }
    }

    #[test]
    fn events_arriving_after_the_summary_change_nothing() {
        let answered = call("Connected", "abonent", "74951230001").replace("1MN0Q1MDOQ==", "232wc3e3w3s222");
        let appeared = call("Appeared", "ivr", "74951230001").replace("1MN0Q1MDOQ==", "232wc3e3w3s222");
        for summary in [SUMMARY_ANSWERED, SUMMARY_IN_IVR] {
            let mut c = stored(&report("events/summary", summary));
            let before = c.clone();
            for late in [&answered, &appeared] {
                assert!(!c.absorb(&report("events/call", late), Ts::from_millis(NOW.as_millis() + 1)), "{late}");
            }
            assert_eq!(c, before, "a missed call stays missed, with no answer time");
        }
        // In order, each report moves the call on, and the summary finishes it.
        let mut c = stored(&report("events/call", &appeared));
        assert!(c.absorb(&report("events/call", &answered), NOW));
        assert_eq!(c.status, CallStatus::Answered);
        assert!(c.absorb(&report("events/summary", SUMMARY_ANSWERED), NOW));
        assert_eq!((c.status, c.duration, c.answered_at), (CallStatus::Completed, Some(10), Some(at(1_399_906_980))));
    }

    #[test]
    fn malformed_events_name_the_field() {
        let check = |event: &str, json: &str, expected: &str| {
            let m = malformed(event, json);
            assert!(m.starts_with(expected), "{json}: {m:?} does not start with {expected:?}");
        };
        let appeared = call("Appeared", "ivr", "74951230001");
        check("events/call", "not json", "json: not JSON");
        check("events/call", "[1]", "json: must be a JSON object");
        check("events/call", &appeared.replace("\"entry_id\"", "\"entry\""), "entry_id: required");
        check("events/call", &appeared.replace("\"1MN0Q1MDOQ==\"", "\"a b\""), "entry_id: call_id must be");
        check("events/call", &appeared.replace("\"1MN0Q1MDOQ==\"", "[]"), "entry_id: expected a string");
        check("events/call", &appeared.replace("\"Appeared\"", "\"Ringing\""), "call_state: \"Ringing\" is not one of");
        check("events/call", &appeared.replace("\"call_state\"", "\"state\""), "call_state: required");
        check(
            "events/call",
            &appeared.replace("1558422128", "\"yesterday\""),
            "timestamp: \"yesterday\" is not Unix seconds",
        );
        check("events/call", &appeared.replace("1558422128", "-5"), "timestamp: -5 is not Unix seconds");
        check(
            "events/call",
            &appeared.replace("1558422128", "1900000000"),
            "timestamp: more than 5 minutes in the future",
        );
        check(
            "events/call",
            &appeared.replace("\"74951230001\"", "\"12\""),
            "to.line_number: \"12\" is not a phone number",
        );
        check("events/call", &appeared.replace("\"to\": {", "\"to\": 5, \"x\": {"), "to: expected an object");
        check("events/call", &appeared.replace("\"79001234567\"", "{}"), "from.number: expected a string");

        check("events/summary", &SUMMARY_ANSWERED.replace("\"create_time\"", "\"created\""), "create_time: required");
        check(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"call_direction\":1", "\"call_direction\":7"),
            "call_direction: 7 is not",
        );
        check("events/summary", &SUMMARY_ANSWERED.replace("\"call_direction\":1,", ""), "call_direction: required");
        check(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"entry_result\":1", "\"entry_result\":2"),
            "entry_result: 2 is not",
        );
        check(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"talk_time\":1399906980", "\"talk_time\":1399906999"),
            "end_time: 1399906990 is before talk_time",
        );
        check(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"create_time\":1399906976", "\"create_time\":1399907000"),
            "end_time: 1399906990 is before create_time",
        );
        check("events/summary", &SUMMARY_ANSWERED.replace("\"line_number\"", "\"line\""), "line_number: required");
        check(
            "events/summary",
            &SUMMARY_ANSWERED.replace("\"end_time\":1399906990", "\"end_time\":2399906990"),
            "talk_time: a talk of",
        );

        let h = HeaderMap::new();
        let unsigned_json = format!("vpbx_api_key={KEY}&sign={}", sign(KEY, "", SALT));
        let req =
            Inbound { headers: &h, query: "", body: unsigned_json.as_bytes(), now: NOW, path_tail: "events/call" };
        assert_eq!(mango().verify(&req), Ok(()));
        assert_eq!(mango().read("mg", &req).map(|_| ()), Err(Refusal::Malformed("json: required".into())));
    }

    #[test]
    fn the_reader_takes_the_key_and_salt() {
        let config = |pbx: &str, env: &[(&str, &str)]| {
            let text =
                format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"mango-1\"\nkind = \"mango\"\n{pbx}");
            let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK])
        };
        let accepts_ours = |c: &Config| {
            let adapter = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
            let h = HeaderMap::new();
            let b = form(CALL_EXAMPLE);
            adapter
                .verify(&Inbound { headers: &h, query: "", body: b.as_bytes(), now: NOW, path_tail: "events/call" })
                .is_ok()
        };
        let c = config(&format!("api_key = \"{KEY}\"\napi_salt = \"{SALT}\""), &[]).unwrap();
        assert!(accepts_ours(&c), "the key and salt from the file");
        let c = config(
            &format!("api_key = \"{KEY}\"\napi_salt = \"another-salt-0123\""),
            &[("CALLPOOL_PBX_SECRET_MANGO_1", SALT)],
        )
        .unwrap();
        assert!(accepts_ours(&c), "the environment overrides the salt");
        let c = config(&format!("api_key = \"{KEY}\"\napi_salt = \"another-salt-0123\""), &[]).unwrap();
        assert!(!accepts_ours(&c), "another salt");

        let problems = |pbx: &str| config(pbx, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        let none = problems("");
        assert!(
            none.contains("api_key: required for kind = \"mango\"") && none.contains("api_salt: required"),
            "{none}"
        );
        assert!(problems(&format!("api_key = \"{KEY}\"\napi_salt = \"short\""))
            .contains("api_salt: must be at least 16 characters"));
        let unknown = problems(&format!("api_key = \"{KEY}\"\napi_salt = \"{SALT}\"\nsecret = \"{SALT}\""));
        assert!(unknown.contains("unknown field `secret`"), "{unknown}");
    }
}
