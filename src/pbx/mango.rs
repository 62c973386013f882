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
//! Calls Mango places for callpool's callback trigger (below) carry its `command_id`, the
//! callback's id, in every `events/call`: those are reported under the callback's own link,
//! `<pbx>:<callback id>`, so the callback is matched and moves on with them (`command_call`).
//!
//! Trigger (`[site.callback] trigger = { kind = "mango", api_key, api_salt, extension, number?,
//! line_number?, url? }`): `POST <url>/vpbx/commands/callback` with the same three form fields,
//! `json` = `{"command_id": <callback id>, "from": {"extension", "number"?}, "to_number": <the
//! visitor's digits>, "line_number"?}`, signed as the events are. Mango rings the employee
//! `extension` first (on `number` if given, else on the employee's own devices), then the
//! visitor; the form's `operator` is not used. Mango answers `{"result": <code>}`: 1000 is done,
//! a server or limit code is worth retrying, any other is a refusal ([`CallbackCommand`]).
//!
//! Source: MANGO OFFICE, "API Виртуальной АТС" (MangoOffice_VPBX_API_v1.9.pdf): §2.1.1 (requests
//! and answers), §2.4.3 (`sign`), §3.1.1–3.1.6 (the events, with the examples the tests use),
//! §3.2.1 (`commands/callback`), "Список кодов результатов" (result and disconnect codes), the
//! example "Инициирование исходящего вызова" (the events of a call placed by a command).

use callpool_pool::{PhoneNumber, Ts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::adapter::{
    called_number, http_answer, json_text, not_in_future, Adapter, Answer, Inbound, Received, Refusal, Reply, Trigger,
    LONGEST_CALL_S,
};
use crate::callback::{Callback, CallbackId};
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX, ENV_TRIGGER_SECRET_PREFIX};

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
        let (env_name, from_env) = f.owner_var(ENV_PBX_SECRET_PREFIX);
        let salt = from_env.or(raw.api_salt);
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
    // Another system's command (any id, of any type) leaves the call to be read as any other.
    if let Some(id) = get(obj, "command_id").and_then(Value::as_str).and_then(CallbackId::parse) {
        return command_call(pbx, &id, obj, &state, at, (from, to), now);
    }
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
    if has_extension(from) {
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

/// A leg of a call Mango placed on callpool's `commands/callback` (`command_id` is the callback's
/// id), reported under the callback's own link, `<pbx>:<callback id>`: the callback listens on it
/// from the moment it is stored, as it does for the generic trigger's PBX, so no answer of
/// Mango's needs to name the call.
///
/// Mango rings the employee first, on a leg from the visitor's number to the employee
/// (`to.extension`), then puts the employee through to the visitor on a leg the employee places
/// (`from.extension`), as Mango's own example of a command's call shows. A leg appearing rings;
/// a leg talking (`Connected`, `OnHold`) answers: the employee took it, and the visitor's tabs say
/// "please pick up". A leg's end ([`leg_end`], by `disconnect_reason`) ends the call when it says
/// that someone could not be reached (missed, busy, failed), or, on the visitor's leg, that a
/// talk ended normally (completed); the employee's leg ending normally is Mango putting them
/// through. The call's summary names the entry only, never the command, so it cannot be told
/// from any other outgoing call and is not recorded (see `summary`).
fn command_call(
    pbx: &str,
    id: &CallbackId,
    obj: &Obj,
    state: &str,
    at: Ts,
    (from, to): (Option<&Obj>, Option<&Obj>),
    now: Ts,
) -> Result<Option<CallReport>, String> {
    let key = CallKey::new(pbx, id.as_str()).map_err(|e| format!("command_id: {e}"))?;
    let visitor_leg = has_extension(from);
    let status = match state {
        "Appeared" => CallStatus::Ringing,
        "Connected" | "OnHold" => CallStatus::Answered,
        "Disconnected" => match leg_end(int(obj, "disconnect_reason")?, visitor_leg) {
            Some(status) => status,
            None => return Ok(None),
        },
        other => return Err(format!("call_state: {other:?} is not one of Appeared, Connected, OnHold, Disconnected")),
    };
    // The visitor and the employee: on the employee's leg the visitor is the caller.
    let ((visitor, visitor_field), (employee, employee_field)) = if visitor_leg {
        ((to, "to.number"), (from, "from.number"))
    } else {
        ((from, "from.number"), (to, "to.number"))
    };
    let called = match line(visitor, "number", visitor_field)? {
        Some(number) => number,
        None => line(employee, "number", employee_field)?
            .ok_or_else(|| format!("{visitor_field}: the number Mango called for the callback is required"))?,
    };
    in_the_past(at, now, "timestamp")?;
    Ok(Some(CallReport {
        key,
        called,
        caller: caller(employee)?,
        started_at: at,
        answered_at: (visitor_leg && status == CallStatus::Answered).then_some(at),
        ended_at: status.is_final().then_some(at),
        status,
        duration: None,
        recording_url: None,
    }))
}

/// How the end of a leg of a callback's call ends the call, by its `disconnect_reason` (Mango's
/// result codes; a code it does not list reads as its class, as the documentation asks); `None`
/// when it does not: the employee's leg ending normally (Mango putting them through to the
/// visitor), a transfer or an interception, a code that says nothing of the call.
fn leg_end(reason: Option<i64>, visitor_leg: bool) -> Option<CallStatus> {
    match reason? {
        // 1121: busy.
        1121 => Some(CallStatus::Busy),
        // 1111: not answered in time; 1122–1125: rejected, "do not disturb"; 119x: the number is
        // inactive or out of its schedule; 42xx: the subscriber cannot be reached now.
        1111 | 1122..=1125 | 1190..=1199 | 4200..=4299 => Some(CallStatus::Missed),
        // A talk that ended normally: 110x, 111x by the caller, 112x by the called party, 1180 and
        // 1181 by a user's or an external system's command.
        1100..=1129 | 1180 | 1181 => visitor_leg.then_some(CallStatus::Completed),
        // 113x–115x: the number is unavailable, not served or does not exist, or calls to it
        // are barred; 2xxx: billing; 32xx: a wrong number; 5xxx: Mango's own trouble.
        1130..=1159 | 2000..=2999 | 3200..=3299 | 5000..=5999 => Some(CallStatus::Failed),
        _ => None,
    }
}

/// Whether the party (`from`, `to`) is one of the PBX's employees.
fn has_extension(party: Option<&Obj>) -> bool {
    party.and_then(|p| p.get("extension")).is_some_and(|e| !e.is_null())
}

/// `events/summary`: the call's outcome; `None` for calls that are not incoming (a callback's
/// call is outgoing, and its summary does not name the command: [`command_call`]).
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

/// Mango's API, unless the trigger's `url` says otherwise (tests point it at a fake).
pub const DEFAULT_API_URL: &str = "https://app.mango-office.ru";
/// The command that has an employee call a number: Mango rings the employee, then the number.
pub const CALLBACK_COMMAND: &str = "/vpbx/commands/callback";

/// The callback trigger's settings: the VPBX's key and salt (the same as its `[[pbx]]`'s), the
/// employee who calls, and optionally the device Mango rings them on and the line the visitor sees.
pub struct CallbackCommand {
    base_url: String,
    api_key: String,
    api_salt: String,
    /// The employee's extension (internal number), digits.
    extension: String,
    /// The employee's device to ring instead of their default: a number's digits or a SIP address.
    number: Option<String>,
    /// The line the call goes out on: a number's digits, or a SIP line's name.
    line_number: Option<String>,
}

/// Reads `trigger = { kind = "mango", api_key, api_salt, extension, number?, line_number?, url? }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    url: Option<String>,
    api_key: Option<String>,
    api_salt: Option<String>,
    extension: Option<Digits>,
    number: Option<String>,
    line_number: Option<Digits>,
}

/// A setting that may be written as a string or as a bare number (`extension = 101`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Digits {
    Text(String),
    Number(u64),
}

impl Digits {
    fn text(self) -> String {
        match self {
            Digits::Text(s) => s.trim().to_owned(),
            Digits::Number(n) => n.to_string(),
        }
    }
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("mango")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawTrigger = f.parse()?;
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_API_URL.into()));
        let api_key = f.required(
            "api_key",
            raw.api_key,
            " for kind = \"mango\" (the VPBX's unique code, vpbx_api_key: Integrations, API connector)",
        );
        let (env_name, from_env) = f.owner_var(ENV_TRIGGER_SECRET_PREFIX);
        let salt = from_env.or(raw.api_salt);
        let why =
            format!(" for kind = \"mango\" (the signing key, vpbx_api_salt, on the same page; or set {env_name})");
        let api_salt = f.required("api_salt", salt, &why).map(|s| f.secret("api_salt", s));
        let extension = match raw.extension.map(Digits::text) {
            Some(e) => extension(&e).map_err(|e| f.fail("extension", e)).ok(),
            None => {
                f.fail(
                    "extension",
                    "required for kind = \"mango\": the extension (internal number) of the employee Mango rings first",
                );
                None
            }
        };
        let number = match raw.number {
            None => Some(None),
            Some(n) => employee_number(n.trim()).map(Some).map_err(|e| f.fail("number", e)).ok(),
        };
        let line_number = match raw.line_number.map(Digits::text) {
            None => Some(None),
            Some(l) => line_name(&l).map(Some).map_err(|e| f.fail("line_number", e)).ok(),
        };
        let trigger: Box<dyn Trigger> = Box::new(CallbackCommand {
            base_url,
            api_key: api_key?,
            api_salt: api_salt?,
            extension: extension?,
            number: number?,
            line_number: line_number?,
        });
        Some(Section::new("mango", trigger))
    }
}

/// An employee's extension: their internal number in the VPBX, digits.
fn extension(raw: &str) -> Result<String, String> {
    if (1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not an extension: the employee's internal number in the VPBX, digits (\"101\")"))
    }
}

/// A number as Mango writes it: the digits with the country code, without `+`.
fn mango_digits(raw: &str) -> Option<String> {
    let digits = raw.strip_prefix('+').unwrap_or(raw);
    ((7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())).then(|| digits.to_owned())
}

/// The employee's device Mango rings: a phone number (international, `+` optional) or a SIP
/// address; not an extension or a group (Mango refuses those here).
fn employee_number(raw: &str) -> Result<String, String> {
    if let Some(digits) = mango_digits(raw) {
        return Ok(digits);
    }
    let sip = raw.strip_prefix("sip:").filter(|a| a.contains('@'));
    match sip {
        Some(_) if raw.len() <= 128 && !raw.contains(char::is_whitespace) => Ok(raw.to_owned()),
        _ => Err(format!(
            "{raw:?} is neither a phone number in international format (\"+74951230099\") nor a SIP address \
             (\"sip:user@vpbx400000000.mangosip.ru\")"
        )),
    }
}

/// The line the call goes out on: a line's number (international, `+` optional), or the name a
/// SIP line has in Mango's personal account (not its SIP address).
fn line_name(raw: &str) -> Result<String, String> {
    if let Some(digits) = mango_digits(raw) {
        return Ok(digits);
    }
    if raw.is_empty() || raw.len() > 128 || raw.contains(char::is_control) || raw.starts_with("sip:") {
        return Err(format!(
            "{raw:?} is neither a line's number (\"+74951230001\") nor a SIP line's name as Mango's personal \
             account shows it (up to 128 bytes)"
        ));
    }
    Ok(raw.to_owned())
}

/// The `json` of `commands/callback`, its fields in the order of Mango's example (§3.2.1).
#[derive(Serialize)]
struct Command<'a> {
    command_id: &'a str,
    from: CommandFrom<'a>,
    to_number: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line_number: Option<&'a str>,
}

#[derive(Serialize)]
struct CommandFrom<'a> {
    extension: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    number: Option<&'a str>,
}

impl CallbackCommand {
    /// The command's `json`: the callback's id as `command_id` (Mango hands it back in every
    /// event of the call), the employee, the visitor's digits, the line.
    fn command(&self, cb: &Callback) -> String {
        serde_json::to_string(&Command {
            command_id: cb.id.as_str(),
            from: CommandFrom { extension: &self.extension, number: self.number.as_deref() },
            to_number: cb.number.as_str().trim_start_matches('+'),
            line_number: self.line_number.as_deref(),
        })
        .expect("the command serializes")
    }
}

impl Trigger for CallbackCommand {
    /// Mango rings its own employee (`extension`), not the form's `operator`.
    fn request(
        &self,
        http: &reqwest::Client,
        _operator: &PhoneNumber,
        cb: &Callback,
        _now: Ts,
    ) -> reqwest::RequestBuilder {
        let json = self.command(cb);
        let sign = sign(&self.api_key, &json, &self.api_salt);
        http.post(format!("{}{CALLBACK_COMMAND}", self.base_url)).form(&[
            ("vpbx_api_key", self.api_key.as_str()),
            ("sign", sign.as_str()),
            ("json", json.as_str()),
        ])
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        let json: Option<Value> = serde_json::from_str(body).ok();
        let result =
            json.as_ref().and_then(|j| j.get("result")).and_then(json_text).and_then(|r| r.parse::<i64>().ok());
        let message: String = json
            .as_ref()
            .and_then(|j| j.get("message"))
            .and_then(json_text)
            .map(|m| m.chars().take(200).collect())
            .unwrap_or_default();
        let said = |code: i64| format!("{code} ({}) {message}", meaning(code)).trim_end().to_owned();
        if status.as_u16() == 401 {
            // Mango blocks a key for two minutes after its second bad request in two minutes.
            return Answer::Again(
                "Mango answered HTTP 401 (the key is blocked for 2 minutes after bad requests)".into(),
            );
        }
        if let Some(answer) = http_answer(status, body) {
            return match (answer, result) {
                (Answer::Refused(_), Some(code)) => {
                    Answer::Refused(format!("Mango refused the callback command: HTTP {status}, {}", said(code)))
                }
                (answer, _) => answer,
            };
        }
        match (result, json.is_some()) {
            (Some(1000..=1099), _) => Answer::Placed { pbx_ref: None },
            (Some(code), _) if retriable(code) => {
                Answer::Again(format!("Mango could not take the callback command now: {}", said(code)))
            }
            (Some(code), _) => Answer::Refused(format!("Mango refused the callback command: {}", said(code))),
            // Mango's asynchronous requests may be answered with the status alone.
            (None, false) if body.trim().is_empty() => Answer::Placed { pbx_ref: None },
            (None, false) => Answer::Again("Mango answered something that is not JSON".into()),
            (None, true) => Answer::Refused(format!(
                "Mango's answer has no result code: {}",
                body.chars().take(200).collect::<String>()
            )),
        }
    }
}

/// Result codes worth another try: a limit on calls at once (2220), the rate limit (4290), and
/// Mango's own trouble (50xx: overload, restart, technical problems, the service unavailable,
/// "pause or send fewer requests"), except 5009 and 5010 (a service that cannot be added, no
/// money to add it).
fn retriable(code: i64) -> bool {
    matches!(code, 2220..=2229 | 4290 | 5000..=5008 | 5011..=5099)
}

/// What a result code means (Mango's list of result codes, by class when a code is not listed).
fn meaning(code: i64) -> &'static str {
    match code {
        1000..=1099 => "done",
        2100..=2199 => "the account cannot be used: blocked, closed or frozen",
        2210..=2219 => "the service's limit for the period is reached",
        2220..=2229 => "too many calls or actions at once",
        2230..=2239 => "the service is not available",
        2240..=2249 => "not enough money on the account",
        2300..=2399 => "calls in this direction are blocked",
        2000..=2999 => "refused by billing",
        3101 => "the request is not a POST",
        3102 => "the sign does not match: check api_key and api_salt",
        3103 => "a required parameter is missing",
        3104 => "a parameter is in the wrong format: check extension, number and line_number",
        3105 => "the key is wrong: check api_key",
        3124 => "the line cannot be used for outgoing calls: check line_number",
        3100..=3199 => {
            "wrong parameters, or the command cannot be done with them: check extension, number and line_number"
        }
        3200..=3299 => "the number is wrong",
        3300..=3399 => "no such object: check extension and line_number",
        3400..=3499 => "the json is not valid",
        3000..=3999 => "a wrong request",
        4001 => "the command is not supported",
        4290 => "too many requests",
        4000..=4999 => "the action cannot be done",
        5001 => "overload",
        5002 => "restart",
        5003 => "technical problems",
        5008 => "the service is unavailable: pause or send fewer requests",
        5009 => "the service cannot be added",
        5010 => "not enough money to add the service",
        5000..=5999 => "a server error",
        _ => "a code Mango does not list",
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

    // The callback trigger and the calls it places.

    fn callback(number: &str) -> Callback {
        crate::callback::example(number, NOW)
    }

    const CB: &str = "cb-0123456789abcdef01234567";

    fn command(number: Option<&str>, line_number: Option<&str>) -> CallbackCommand {
        CallbackCommand {
            base_url: "http://mango.test".into(),
            api_key: KEY.into(),
            api_salt: SALT.into(),
            extension: "101".into(),
            number: number.map(Into::into),
            line_number: line_number.map(Into::into),
        }
    }

    /// The form a trigger's request posts, field by field, in order.
    fn posted(t: &dyn Trigger) -> (reqwest::Request, Vec<(String, String)>) {
        let operator = PhoneNumber::parse("+74951230099").unwrap();
        let req = t.request(&reqwest::Client::new(), &operator, &callback("+79161234567"), NOW).build().unwrap();
        let body = req.body().and_then(reqwest::Body::as_bytes).expect("a form body").to_vec();
        let fields = form_urlencoded::parse(&body).into_owned().collect();
        (req, fields)
    }

    #[test]
    fn the_callback_command_is_signed_as_mangos_events_are() {
        let (req, fields) = posted(&command(None, Some("74951230001")));
        assert_eq!((req.method().as_str(), req.url().as_str()), ("POST", "http://mango.test/vpbx/commands/callback"));
        assert_eq!(req.headers()[reqwest::header::CONTENT_TYPE], "application/x-www-form-urlencoded");
        // The json in the order of Mango's example; the sign computed independently:
        // printf '%s' "$KEY$JSON$SALT" | sha256sum
        let json = r#"{"command_id":"cb-0123456789abcdef01234567","from":{"extension":"101"},"to_number":"79161234567","line_number":"74951230001"}"#;
        let expected = "95d3b4fe576353b92257b155f9d4bdad9ad3c749d6135aeccb746644922be589";
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["vpbx_api_key", "sign", "json"]);
        assert_eq!((fields[0].1.as_str(), fields[1].1.as_str(), fields[2].1.as_str()), (KEY, expected, json));
        // What Mango checks of it is what callpool checks of Mango's events.
        assert_eq!(verify(KEY, SALT, &fields[0].1, &fields[2].1, &fields[1].1), Ok(()));

        // The employee rung on a given device, the VPBX's default line.
        let (_, fields) = posted(&command(Some("sip:operator@vpbx400000000.mangosip.ru"), None));
        let json = r#"{"command_id":"cb-0123456789abcdef01234567","from":{"extension":"101","number":"sip:operator@vpbx400000000.mangosip.ru"},"to_number":"79161234567"}"#;
        assert_eq!(fields[2].1, json);
        assert_eq!(fields[1].1, "aae02fa57f89680eda462091198ae0a1da3ed78a9fe160a232793e0369656727");
    }

    #[test]
    fn mangos_answers_are_read() {
        let t = command(None, None);
        let ok = reqwest::StatusCode::OK;
        let placed = Answer::Placed { pbx_ref: None };
        // The callback id is the call's link already: Mango's answer names no call.
        assert_eq!(t.answer(ok, r#"{"result":1000}"#), placed);
        assert_eq!(t.answer(ok, r#"{"command_id":"cb-0123456789abcdef01234567","result":"1000"}"#), placed);
        assert_eq!(t.answer(ok, r#"{"result":1001}"#), placed, "done, with remarks");
        assert_eq!(t.answer(ok, ""), placed, "an asynchronous request may be answered by its status alone");

        let again = |status: u16, body: &str| match t.answer(reqwest::StatusCode::from_u16(status).unwrap(), body) {
            Answer::Again(why) => why,
            other => panic!("{status} {body}: {other:?}"),
        };
        let refused = |status: u16, body: &str| match t.answer(reqwest::StatusCode::from_u16(status).unwrap(), body) {
            Answer::Refused(why) => why,
            other => panic!("{status} {body}: {other:?}"),
        };
        for code in [5000, 5001, 5002, 5003, 5008, 5011, 4290, 2220] {
            let why = again(200, &format!(r#"{{"result":{code}}}"#));
            assert!(why.starts_with(&format!("Mango could not take the callback command now: {code} (")), "{why}");
        }
        assert!(again(200, r#"{"result":5001}"#).contains("overload"));
        assert!(again(503, "").contains("HTTP 503"));
        let limit = r#"{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}"#;
        assert!(again(429, limit).contains("HTTP 429"));
        assert!(again(401, "").contains("blocked for 2 minutes"));
        assert!(again(200, "<html>proxy</html>").contains("not JSON"));

        let why = refused(200, r#"{"result":3102}"#);
        assert_eq!(
            why,
            "Mango refused the callback command: 3102 (the sign does not match: check api_key and api_salt)"
        );
        assert!(refused(200, r#"{"result":"3100","message":"bad extension"}"#).ends_with("line_number) bad extension"));
        assert!(refused(200, r#"{"result":2240}"#).contains("2240 (not enough money on the account)"));
        assert!(
            refused(200, r#"{"result":2211}"#).contains("limit for the period"),
            "a day's limit outlasts the retries"
        );
        assert!(refused(200, r#"{"result":4001}"#).contains("not supported"));
        assert!(refused(200, r#"{"result":5010}"#).contains("5010 (not enough money to add the service)"));
        assert!(refused(200, r#"{"result":5104}"#).contains("5104 (a server error)"), "by its class");
        assert!(refused(200, r#"{"result":2219}"#).contains("2219 (the service's limit"), "by its class");
        let http = refused(400, r#"{"result":3104}"#);
        assert!(
            http.starts_with("Mango refused the callback command: HTTP 400 Bad Request, 3104 (a parameter"),
            "{http}"
        );
        assert!(refused(404, "").contains("HTTP 404"));
        assert!(refused(200, r#"{"ok":true}"#).contains("no result code"));
    }

    #[test]
    fn the_trigger_reader_takes_the_vpbx_key_and_the_employee() {
        let config = |trigger: &str, env: &[(&str, &str)]| {
            let text = format!(
                r#"
[[pbx]]
id = "mg"
kind = "mango"
api_key = "{KEY}"
api_salt = "{SALT}"

[[site]]
id = "shop-1"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]

[site.callback]
operator = "+74951230099"
pbx = "mg"
trigger = {{ kind = "mango", {trigger} }}
"#
            );
            let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK, &TRIGGER])
        };
        let form = |c: &Config| {
            let section = &c.sites[0].callback.as_ref().expect("a callback form").trigger;
            let (req, fields) = posted(section.get::<Box<dyn Trigger>>().expect("a trigger").as_ref());
            (req.url().to_string(), fields.into_iter().map(|(_, v)| v).collect::<Vec<_>>())
        };
        let c = config(&format!(r#"api_key = "{KEY}", api_salt = "{SALT}", extension = "101""#), &[]).unwrap();
        let (url, fields) = form(&c);
        assert_eq!(url, "https://app.mango-office.ru/vpbx/commands/callback");
        assert_eq!(
            fields[2],
            r#"{"command_id":"cb-0123456789abcdef01234567","from":{"extension":"101"},"to_number":"79161234567"}"#
        );
        assert_eq!(fields[1], sign(KEY, &fields[2], SALT));

        // A bare extension, a number and a line with their '+', the salt from the environment
        // (named by the site), the URL for tests.
        let c = config(
            r#"api_key = "test-api-key-0001", api_salt = "file-salt-0123456789", extension = 101, number = "+74951230099", line_number = "+74951230001", url = "http://127.0.0.1:9/""#,
            &[("CALLPOOL_TRIGGER_SECRET_SHOP_1", SALT)],
        )
        .unwrap();
        let (url, fields) = form(&c);
        assert_eq!(url, "http://127.0.0.1:9/vpbx/commands/callback");
        let json = r#"{"command_id":"cb-0123456789abcdef01234567","from":{"extension":"101","number":"74951230099"},"to_number":"79161234567","line_number":"74951230001"}"#;
        assert_eq!((fields[1].as_str(), fields[2].as_str()), (sign(KEY, json, SALT).as_str(), json));
        // A SIP line goes by its name in the personal account.
        let c = config(
            &format!(r#"api_key = "{KEY}", api_salt = "{SALT}", extension = "101", line_number = "Офис SIP""#),
            &[],
        );
        assert!(form(&c.unwrap()).1[2].ends_with(r#""line_number":"Офис SIP"}"#));

        let problems = |trigger: &str| config(trigger, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        let none = problems("");
        for field in ["api_key: required", "api_salt: required", "extension: required"] {
            assert!(none.contains(field), "{field}: {none}");
        }
        assert!(none.contains("CALLPOOL_TRIGGER_SECRET_SHOP_1"), "the variable is named: {none}");
        let with = |more: &str| problems(&format!(r#"api_key = "{KEY}", api_salt = "{SALT}", {more}"#));
        assert!(with(r#"extension = "ext-1""#).contains("extension: \"ext-1\" is not an extension"));
        assert!(with(r#"extension = "101", number = "102""#).contains("number: \"102\" is neither a phone number"));
        assert!(with(r#"extension = "101", line_number = "sip:line@x.mangosip.ru""#).contains("line_number: "));
        assert!(with(r#"extension = "101", url = "ftp://x""#).contains("url: "));
        assert!(with(r#"extension = "101", from = "101""#).contains("unknown field `from`"));
        assert!(problems(&format!(r#"api_key = "{KEY}", api_salt = "short", extension = "1""#))
            .contains("api_salt: must be at least 16 characters"));
    }

    /// A leg of the call Mango places for the callback (§ "Инициирование исходящего вызова"):
    /// the employee's leg (from the visitor to extension 101) or the visitor's (from 101).
    fn leg(visitor_leg: bool, state: &str, reason: Option<u32>) -> String {
        let (from, to) = if visitor_leg {
            (
                r#"{"extension":"101","number":"74951230099","taken_from_call_id":"MToxMDA6NTAwOjI1MQ=="}"#,
                r#"{"number":"79161234567"}"#,
            )
        } else {
            (r#"{"number":"79161234567"}"#, r#"{"extension":"101","number":"sip:operator@vpbx400000000.mangosip.ru"}"#)
        };
        let reason = reason.map(|r| format!(r#","disconnect_reason":{r}"#)).unwrap_or_default();
        format!(
            r#"{{"entry_id":"MjMyd2MzZTN3M3MyMjI=","call_id":"MToxMDA6NTAwOjI1{}","timestamp":1558422128,"seq":1,"location":"abonent","call_state":"{state}","from":{from},"to":{to}{reason},"command_id":"{CB}"}}"#,
            u8::from(visitor_leg)
        )
    }

    #[test]
    fn the_calls_of_a_callback_command_are_reported_under_the_callback() {
        // Ringing the employee, the employee answering: the callback's call rings, then is answered.
        let r = report("events/call", &leg(false, "Appeared", None));
        assert_eq!(
            (r.key.as_str(), r.status, r.called.as_str()),
            ("mg:cb-0123456789abcdef01234567", CallStatus::Ringing, "+79161234567")
        );
        assert_eq!((r.caller, r.answered_at, r.ended_at), (None, None, None), "the employee on SIP is no caller");
        assert_eq!(report("events/call", &leg(false, "Connected", None)).status, CallStatus::Answered);
        // Mango puts the employee through: their leg ends normally, which ends nothing.
        for reason in [None, Some(1000), Some(1100), Some(1110), Some(1120), Some(1182)] {
            assert!(is_ignored("events/call", &leg(false, "Disconnected", reason)), "{reason:?}");
        }
        // The visitor's leg: ringing, talking, a normal end completes the call.
        let r = report("events/call", &leg(true, "Appeared", None));
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("mg:cb-0123456789abcdef01234567", "+79161234567", CallStatus::Ringing)
        );
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+74951230099"), "the employee's number");
        let r = report("events/call", &leg(true, "Connected", None));
        assert_eq!((r.status, r.answered_at), (CallStatus::Answered, Some(at(1_558_422_128))));
        for reason in [1100, 1110, 1120, 1180] {
            let r = report("events/call", &leg(true, "Disconnected", Some(reason)));
            assert_eq!((r.status, r.ended_at), (CallStatus::Completed, Some(at(1_558_422_128))), "{reason}");
        }
        // Someone not reached, on either leg: the call is over.
        for (reason, status) in [
            (1111, CallStatus::Missed),
            (1121, CallStatus::Busy),
            (1122, CallStatus::Missed),
            (1124, CallStatus::Missed),
            (1192, CallStatus::Missed),
            (4200, CallStatus::Missed),
            (1131, CallStatus::Failed),
            (2240, CallStatus::Failed),
            (3200, CallStatus::Failed),
            (5003, CallStatus::Failed),
        ] {
            for visitor_leg in [false, true] {
                assert_eq!(
                    report("events/call", &leg(visitor_leg, "Disconnected", Some(reason))).status,
                    status,
                    "{reason}"
                );
            }
        }
        assert!(is_ignored("events/call", &leg(true, "Disconnected", None)), "an end that says nothing");

        // A command that is not one of callpool's: the call is read as any other (an employee's: not recorded).
        assert!(is_ignored(
            "events/call",
            &leg(true, "Appeared", None).replace(CB, "cmd.2.vpbx.12345.external.system.com.net")
        ));
        assert!(is_ignored("events/call", &leg(true, "Appeared", None).replace(CB, "cb-0123")));
        assert!(is_ignored("events/call", &leg(true, "Appeared", None).replace(&format!("\"{CB}\""), "{}")));
        // An incoming call carrying another system's command is recorded as before.
        let incoming = call("Appeared", "ivr", "74951230001").replace("\"seq\":2,", "\"seq\":2, \"command_id\":17,");
        assert_eq!(report("events/call", &incoming).key.as_str(), "mg:1MN0Q1MDOQ==");
        // The callback's summary is an outgoing call's, naming no command: not recorded.
        assert!(is_ignored("events/summary", SUMMARY_OUTGOING));
        check_malformed("events/call", &leg(true, "Ringing", None), "call_state: \"Ringing\" is not one of");
        check_malformed(
            "events/call",
            &leg(true, "Appeared", None).replace("1558422128", "1900000000"),
            "timestamp: more than 5 minutes",
        );
        check_malformed(
            "events/call",
            &leg(true, "Disconnected", Some(1120)).replace("1120", "\"x\""),
            "disconnect_reason: ",
        );
        let no_numbers = leg(true, "Appeared", None)
            .replace("\"79161234567\"", "\"sip:client@x.ru\"")
            .replace("\"74951230099\"", "null");
        check_malformed("events/call", &no_numbers, "to.number: the number Mango called for the callback is required");
    }

    fn check_malformed(event: &str, json: &str, expected: &str) {
        let m = malformed(event, json);
        assert!(m.starts_with(expected), "{json}: {m:?} does not start with {expected:?}");
    }

    #[test]
    fn a_callbacks_call_moves_on_as_its_legs_arrive_in_any_order() {
        // The visitor's leg ends before its answer arrives: the late answer adds its time only.
        let mut c = stored(&report("events/call", &leg(false, "Appeared", None)));
        for json in [leg(false, "Connected", None), leg(true, "Appeared", None), leg(true, "Disconnected", Some(1120))]
        {
            c.absorb(&report("events/call", &json), NOW);
        }
        assert_eq!((c.status, c.answered_at), (CallStatus::Completed, None));
        c.absorb(&report("events/call", &leg(true, "Connected", None)), NOW);
        assert_eq!((c.status, c.answered_at), (CallStatus::Completed, Some(at(1_558_422_128))));
        assert!(!c.absorb(&report("events/call", &leg(true, "Connected", None)), NOW), "a repeat changes nothing");
        // The employee never answers: missed, whatever comes after.
        let mut c = stored(&report("events/call", &leg(false, "Appeared", None)));
        assert!(c.absorb(&report("events/call", &leg(false, "Disconnected", Some(1111))), NOW));
        assert!(!c.absorb(&report("events/call", &leg(false, "Connected", None)), NOW));
        assert_eq!(c.status, CallStatus::Missed);
    }
}
