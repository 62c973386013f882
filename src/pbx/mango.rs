//! Mango Office's Virtual PBX (ВАТС): its realtime events, and its call recordings.
//!
//! Webhook (`[[pbx]] kind = "mango"`, `api_key`, `api_salt`, `url?`): Mango posts every
//! notification as a form (`vpbx_api_key`, `sign`, `json`) to the external system's address it was
//! given, followed by the event's own path: `<base>/events/call`, `/events/summary`,
//! `/events/recording`, `/events/dtmf`, `/events/sms`, ... The web layer hands that path on as
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
//! - `events/recording` with `recording_state` `Completed` and the recording kept
//!   (`completion_code` 1000, `recipient` not `Mail` alone), and `events/record/added` (the
//!   recording is in the cloud storage, ready for the API): [`Received::Recording`] of the call
//!   `entry_id`, kept on it as `mango:<recording_id>` (either event, or both: the same recording
//!   twice changes nothing). `Started` and `Continued` are answered and not recorded.
//! - Everything else is answered 200 with nothing recorded: DTMF, SMS, pings, command results.
//!
//! Recordings ([`Adapter::recording`]): `POST <url>/queries/recording/post` (`url` default
//! `https://app.mango-office.ru/vpbx`) with the three form fields, `json` = `{"recording_id",
//! "action": "play"}`, signed as the events are. Mango answers `302 Found` to a temporary link on
//! its file service, good for one fetch, which the recordings client follows (with the report
//! user's `Range`); every play asks again, and no link is stored.
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
//! a server or limit code is worth retrying, any other is a refusal ([`trigger::CallbackCommand`]).
//!
//! Source: MANGO OFFICE, "API Виртуальной АТС" (MangoOffice_VPBX_API_v1.9.pdf): §2.1.1 (requests
//! and answers), §2.4.3 (`sign`), §3.1.1–3.1.6 and §3.1.8 (the events, with the examples the tests
//! use), §3.2.1 (`commands/callback`), §3.5.1 (`queries/recording/post`), "Список кодов
//! результатов" (result and disconnect codes), the example "Инициирование исходящего вызова" (the
//! events of a call placed by a command).

use callpool_pool::{PhoneNumber, Ts};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::adapter::{
    called_number, http_answer, json_text, not_in_future, plain_get, Adapter, Answer, Inbound, Received,
    RecordingError, Refusal, Reply, Ring, Trigger, LONGEST_CALL_S,
};
use crate::callback::{Callback, CallbackId};
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX, ENV_TRIGGER_SECRET_PREFIX};

/// Mango's VPBX API, unless the webhook's `url` says otherwise (tests point it at a fake).
pub const DEFAULT_VPBX_URL: &str = "https://app.mango-office.ru/vpbx";
/// The query that hands out a recording by its id (§3.5.1).
pub const RECORDING_QUERY: &str = "/queries/recording/post";
/// How a recording Mango reported is kept on its call: `mango:<recording_id>`.
pub const RECORDING_PREFIX: &str = "mango:";

/// A Mango VPBX's API key (its "unique code", `vpbx_api_key`), signing key (`vpbx_api_salt`), and
/// the API's base URL, that recordings are fetched from.
pub struct Mango {
    api_key: String,
    api_salt: String,
    api_url: String,
}

/// Reads a `[[pbx]] kind = "mango"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    api_key: Option<String>,
    api_salt: Option<String>,
    url: Option<String>,
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
        let api_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_VPBX_URL.into()));
        let adapter: Box<dyn Adapter> = Box::new(Mango { api_key: api_key?, api_salt: api_salt?, api_url });
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
        let read: fn(&str, &Obj, Ts) -> Result<Received, String> = match event {
            "events/call" => |pbx, obj, now| call_event(pbx, obj, now).map(reported),
            "events/summary" => |pbx, obj, now| summary(pbx, obj, now).map(reported),
            "events/recording" => |pbx, obj, _| recording_event(pbx, obj),
            "events/record/added" => |pbx, obj, _| record_added(pbx, obj),
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
        read(pbx, obj, req.now).map_err(Refusal::Malformed)
    }

    /// A recording Mango reported (`mango:<recording_id>`) through `queries/recording/post`
    /// ([`Mango::recording_request`]); another http(s) link as it is.
    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        let request = match recording.strip_prefix(RECORDING_PREFIX) {
            Some(id) if recording_id_ok(id) => Ok(self.recording_request(http, id)),
            Some(_) => Err(RecordingError::NotFetchable),
            None => plain_get(http, recording),
        };
        Box::pin(std::future::ready(request))
    }
}

/// The `json` of `queries/recording/post`, its fields in the order of Mango's example (§3.5.1).
#[derive(Serialize)]
struct RecordingQuery<'a> {
    recording_id: &'a str,
    action: &'a str,
}

impl Mango {
    /// `POST <url>/queries/recording/post` for the recording `id`, `action` `play`, signed as
    /// Mango's events are. Mango answers `302 Found` to a temporary link that serves the file once
    /// (the client follows it, a `Range` with it); a new request gets a new link.
    pub fn recording_request(&self, http: &reqwest::Client, id: &str) -> reqwest::RequestBuilder {
        let json =
            serde_json::to_string(&RecordingQuery { recording_id: id, action: "play" }).expect("the query serializes");
        signed(http, format!("{}{RECORDING_QUERY}", self.api_url), &self.api_key, &self.api_salt, &json)
    }
}

/// A request to Mango's API: `json` posted as a form with the key and its `sign`.
fn signed(http: &reqwest::Client, url: String, api_key: &str, api_salt: &str, json: &str) -> reqwest::RequestBuilder {
    let sign = sign(api_key, json, api_salt);
    http.post(url).form(&[("vpbx_api_key", api_key), ("sign", sign.as_str()), ("json", json)])
}

/// A report to record, or nothing to.
fn reported(report: Option<CallReport>) -> Received {
    report.map_or_else(ignored, |r| Received::Reports(vec![r]))
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
    if let Some(id) = get(obj, "command_id").and_then(Value::as_str).filter(|id| CallbackId::is_call_id(id)) {
        return command_call(pbx, id, obj, &state, at, (from, to), now);
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
    id: &str,
    obj: &Obj,
    state: &str,
    at: Ts,
    (from, to): (Option<&Obj>, Option<&Obj>),
    now: Ts,
) -> Result<Option<CallReport>, String> {
    let key = CallKey::new(pbx, id).map_err(|e| format!("command_id: {e}"))?;
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

/// `events/recording`: a recording that is complete and kept in Mango's cloud storage, for the
/// call `entry_id`; its start, its continuing in another leg, and a recording that was not kept
/// (too short, `completion_code` 4002; the account restricted, 22xx; sent by e-mail only,
/// `recipient` `Mail`) are not recorded.
fn recording_event(pbx: &str, obj: &Obj) -> Result<Received, String> {
    let key = call_key(pbx, obj)?;
    let id = recording_id(obj)?;
    match text(obj, "recording_state", "recording_state")?.ok_or("recording_state: required")?.as_str() {
        "Completed" => {}
        "Started" | "Continued" => return Ok(ignored()),
        other => return Err(format!("recording_state: {other:?} is not one of Started, Continued, Completed")),
    }
    // 1000 is done; a code Mango does not list reads as its class.
    let kept = int(obj, "completion_code")?.is_none_or(|code| (1000..=1099).contains(&code));
    let in_cloud = text(obj, "recipient", "recipient")?.is_none_or(|r| r != "Mail");
    if !(kept && in_cloud) {
        return Ok(ignored());
    }
    Ok(Received::Recording { key, recording: format!("{RECORDING_PREFIX}{id}") })
}

/// `events/record/added`: a recording of the call `entry_id` is in the cloud storage, ready for
/// the API.
fn record_added(pbx: &str, obj: &Obj) -> Result<Received, String> {
    let key = call_key(pbx, obj)?;
    Ok(Received::Recording { key, recording: format!("{RECORDING_PREFIX}{}", recording_id(obj)?) })
}

/// `recording_id`: Mango's id of a recording (up to 128 bytes, §3.1.4), kept as given.
fn recording_id(obj: &Obj) -> Result<String, String> {
    let id = text(obj, "recording_id", "recording_id")?.ok_or("recording_id: required")?;
    if recording_id_ok(&id) {
        Ok(id)
    } else {
        Err("recording_id: must be 1 to 128 characters of A-Z, a-z, 0-9 and + / = : . _ -".into())
    }
}

/// Whether `id` looks like a recording id of Mango's (its examples:
/// `MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=`, `r100:777:500:256`): safe in a form and in a log.
fn recording_id_ok(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=:._-".contains(&b))
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

pub mod trigger;

#[cfg(test)]
mod tests;
