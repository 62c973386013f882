//! Sipuni's cloud PBX (Сипуни).
//!
//! Webhook (`[[pbx]] kind = "sipuni"`, with `token` or `allow_from`): Sipuni's "events on the
//! PBX" (Настройки → API → События на АТС), one request per event, sent as a GET (the fields are
//! the query) or a POST (the fields are the urlencoded body), UTF-8, in any order. Sipuni signs
//! nothing, so the reader requires a `token` (`?token=` in the URL it is given) or `allow_from`;
//! the web layer checks both before this adapter, whose `verify` has nothing left to check.
//!
//! `event` is a number, and every event names the call (`call_id`), its source and destination
//! (`src_num`, `src_type`, `dst_num`, `dst_type`: type 1 an external number, 2 an employee's
//! extension) and its time (`timestamp`, Unix seconds):
//!
//! - 1, a call (or a new leg of one: Sipuni sends it again for each employee it rings): ringing;
//! - 3, an answer: answered (its `timestamp` is the answer's time);
//! - 2, the call's end, with `status` (ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL),
//!   `call_start_timestamp`, `call_answer_timestamp` (0 when nobody answered) and
//!   `call_record_link`: final. ANSWER is completed, with the talk time from the answer to the
//!   end; NOANSWER, CANCEL (the caller hung up) and CHANUNAVAIL (no employee's phone could
//!   ring) are missed; BUSY is busy; CONGESTION failed;
//! - 4, the end of a secondary leg (a transfer): not the call's end, not read; nor is any other
//!   event.
//!
//! Only incoming calls are recorded (`src_type` 1, an outside caller): a call an employee makes
//! (`src_type` 2), outgoing or internal, is answered and not read.
//!
//! The number dialled: Sipuni's events describe legs, so `dst_num` is often the employee being
//! rung (`dst_type` 2), and `treeName`/`treeNumber` name the routing scheme (`Входящая`,
//! `000-1734442`), not a phone number. The dialled line is read from `pbxdstnum` (the call's
//! own destination, sent besides a leg's: the external line for an incoming call), else from
//! `dst_num` when it is an external number (`dst_type` 1); an `_id<digits>` suffix Sipuni adds to
//! a line is dropped, and a `+` added when missing. An incoming event that names no external
//! line (a leg to an extension alone) records nothing: the call's first report must carry the
//! tracking number, since a call is matched once, at its first report.
//!
//! Every answer, recorded or not, is `{"success":true}`: Sipuni may suspend delivery to an
//! address that does not answer so. A refusal (a bad token: 401; a malformed field: 400, naming
//! it) is answered with callpool's error instead, and nothing is recorded.
//!
//! Sources: Sipuni's "Отправка событий HTTP" (https://doc.sipuni.com/articles/626-636-640--otpravka-sobytij-http,
//! the same text as https://help.sipuni.com/articles/134-182-110--otpravka-sobytij-ats-na-skript-http-api/):
//! where to enable it, GET or POST, urlencoded UTF-8, the `{"success": true}` answer. The
//! events' fields are those public integrations read (webasyst/crm `plugins/sipuni`, and
//! Sipuni's AMI event proxy alexkasp/crmproxy `crmproxy/Parser.cpp`, which numbers the events,
//! types numbers 1 external / 2 internal, and adds `pbxdstnum`); docs/PBX.md has the details
//! and what is not confirmed.
//!
//! Trigger (`[site.callback] trigger = { kind = "sipuni", user, secret, sipnumber, reverse?, url?
//! }`): the callback API's "call to a number" (`POST <url>/api/callback/call_number`, a form):
//! Sipuni rings the employee's internal number `sipnumber` first, then, once it answers, the
//! visitor's `phone` (digits, no `+`); `reverse=1` rings the visitor first. The fields are
//! `antiaon` (always 0: the visitor sees the line's number), `phone`, `reverse`, `sipnumber`,
//! `user` (the account's id) and `hash`: the MD5 (hex) of the values in the order of their names,
//! then the integration key, joined with `+`: `antiaon+phone+reverse+sipnumber+user+secret`.
//!
//! The answer is JSON with `success` (public integrations read `success` and `message`); `true`
//! places the call (with `callId` or `id` as Sipuni's reference, if the answer has one), `false`
//! or an error (`result`/`status` "error", `error`) refuses it, unless its message is about the
//! request rate. Nothing links the call's events to the callback: the request cannot carry
//! callpool's id, no published source says that the events of the call Sipuni places carry the
//! answer's id, and the events of a call an employee makes are not recorded (above). The callback
//! stays `calling`; docs/PBX.md says so.
//!
//! Sources for the trigger: Sipuni's article "Создание звонка на номер с помощью API"
//! (https://help.sipuni.com/articles/134-182-113--sozdanie-zvonka-na-nomer-s-pomoshyu-api/, not
//! readable here), as public code implements it: webasyst/crm `plugins/sipuni/lib/classes/
//! crmSipuniPluginApi.class.php` (`initCall`: the fields, the hash's order, a POST, the answer's
//! `success`), edwardstock/php-sipuni `Callback/CallTypes/CallFromInternal.php` (the order "as the
//! API says", `reverse`, `antiaon`, "Sipuni recommends POST"), bzdvdn/sipuni-go
//! `sipuni/call_service.go` and `request.go` (the values sorted by name, then `user` and the key;
//! the answer's `id` and `callId`).

use std::collections::HashMap;

use callpool_pool::{PhoneNumber, Ts};
use serde::Deserialize;
use serde_json::json;

use super::adapter::{
    called_number, http_answer, json_text, not_in_future, recording_url, Adapter, Answer, CallAccepted, Inbound,
    Received, Refusal, Reply, Ring, Trigger, LONGEST_CALL_S,
};
use crate::callback::Callback;
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_TRIGGER_SECRET_PREFIX};

/// A Sipuni PBX: nothing of its own to configure (the token or addresses are every `[[pbx]]`'s).
pub struct Sipuni;

/// Reads a `[[pbx]] kind = "sipuni"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("sipuni")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let RawWebhook {} = f.parse()?;
        f.require_guard("Sipuni");
        let adapter: Box<dyn Adapter> = Box::new(Sipuni);
        Some(Section::new("sipuni", adapter))
    }
}

impl Adapter for Sipuni {
    /// Sipuni signs nothing; the token and the addresses were checked by the web layer.
    fn verify(&self, _req: &Inbound<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        let form = Form::of(req);
        let event = match form.get("event") {
            Some(e) => e,
            // A request with neither (a check of the address when it is saved) is answered.
            None if form.get("call_id").is_none() => return Ok(answered()),
            None => {
                return Err(Refusal::Malformed(
                    "event: required (1 a call, 2 its end, 3 an answer, 4 the end of a secondary leg)".into(),
                ))
            }
        };
        let event = match event {
            CALL => Event::Call,
            ANSWER => Event::Answer,
            END => Event::End,
            // SECONDARY_END and anything newer.
            _ => return Ok(answered()),
        };
        match report(pbx, event, &form, req.now).map_err(Refusal::Malformed)? {
            Some(r) => Ok(Received::Reports(vec![r])),
            None => Ok(answered()),
        }
    }

    /// Sipuni wants `{"success": true}` for every event, recorded or not.
    fn reply(&self, _accepted: &[CallAccepted]) -> Reply {
        success()
    }
}

const CALL: &str = "1";
const END: &str = "2";
const ANSWER: &str = "3";
/// The end of a secondary leg (a transfer): not read.
pub const SECONDARY_END: &str = "4";

/// `src_type` and `dst_type`.
const EXTERNAL: &str = "1";
const INTERNAL: &str = "2";

/// The events callpool records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Call,
    Answer,
    End,
}

/// The answer Sipuni expects to every event.
pub fn success() -> Reply {
    Reply::Json(json!({ "success": true }))
}

fn answered() -> Received {
    Received::Answer(success())
}

/// An event's fields: the query's, then the body's (a POST's; its values win). The query also
/// holds callpool's own `pbx` and `token`, which no event field is named like.
struct Form(HashMap<String, String>);

impl Form {
    fn of(req: &Inbound<'_>) -> Form {
        let query = form_urlencoded::parse(req.query.as_bytes()).into_owned();
        Form(query.chain(form_urlencoded::parse(req.body).into_owned()).collect())
    }

    /// A field's value, trimmed; `None` when missing or empty.
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }
}

/// An event as a report; `None` for what is not recorded (an employee's call, a leg that names
/// no external line, an answer without the numbers).
fn report(pbx: &str, event: Event, f: &Form, now: Ts) -> Result<Option<CallReport>, String> {
    let key = CallKey::new(pbx, f.get("call_id").ok_or("call_id: required")?).map_err(|e| format!("call_id: {e}"))?;
    match f.get("src_type") {
        Some(EXTERNAL) => {}
        // An employee's call: outgoing or internal.
        Some(INTERNAL) => return Ok(None),
        Some(other) => return Err(format!("src_type: {other:?} is not 1 (an external number) or 2 (an extension)")),
        // An answer tells nothing the call's end does not; one without the numbers is not read.
        None if event == Event::Answer => return Ok(None),
        None => return Err("src_type: required (1 an external number, 2 an extension)".into()),
    }
    let Some(called) = dialled_line(f)? else { return Ok(None) };
    let at = seconds("timestamp", f.get("timestamp").ok_or("timestamp: required (Unix seconds)")?)?;
    let caller = f.get("src_num").and_then(Caller::parse);
    let mut report = CallReport {
        key,
        called,
        caller,
        started_at: at,
        answered_at: None,
        ended_at: None,
        status: CallStatus::Ringing,
        duration: None,
        recording_url: None,
    };
    match event {
        Event::Call => {}
        // Only the call's first report sets its start: an answer that comes first starts it then.
        Event::Answer => {
            report.answered_at = Some(at);
            report.status = CallStatus::Answered;
        }
        Event::End => end(&mut report, f, at)?,
    }
    not_in_future(report.started_at, now)?;
    Ok(Some(report))
}

/// The call's end (at `at`): its status, start, answer, talk time and recording.
fn end(report: &mut CallReport, f: &Form, at: Ts) -> Result<(), String> {
    let status = end_status(
        f.get("status").ok_or("status: required (ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL)")?,
    )?;
    let started_at = optional_seconds(f, "call_start_timestamp")?.unwrap_or(at).min(at);
    if u64::try_from((at.as_millis() - started_at.as_millis()) / 1000).unwrap_or(0) > LONGEST_CALL_S {
        return Err(format!("call_start_timestamp: the call would have lasted more than {LONGEST_CALL_S} s"));
    }
    // Sipuni sends 0 when nobody answered, and has been seen sending the call's start (or a
    // second before it) for calls it placed itself: an answer is believed between start and end.
    let answered_at = optional_seconds(f, "call_answer_timestamp")?
        .filter(|a| status == CallStatus::Completed && started_at <= *a && *a <= at);
    let duration = match (status, answered_at) {
        (CallStatus::Completed, Some(a)) => Some(whole_seconds(at.as_millis() - a.as_millis())),
        (CallStatus::Completed, None) => None,
        _ => Some(0),
    };
    report.started_at = started_at;
    report.answered_at = answered_at;
    report.ended_at = Some(at);
    report.status = status;
    report.duration = duration;
    report.recording_url = f.get("call_record_link").and_then(record_link);
    Ok(())
}

/// `status` of the call's end (the values Sipuni's documentation lists; Asterisk's DIALSTATUS).
fn end_status(raw: &str) -> Result<CallStatus, String> {
    match raw.to_ascii_uppercase().as_str() {
        "ANSWER" => Ok(CallStatus::Completed),
        // Nobody picked up, the caller hung up first, or no employee's phone could ring.
        "NOANSWER" | "CANCEL" | "CHANUNAVAIL" => Ok(CallStatus::Missed),
        "BUSY" => Ok(CallStatus::Busy),
        "CONGESTION" => Ok(CallStatus::Failed),
        _ => Err(format!("status: {raw:?} is not one of ANSWER, BUSY, NOANSWER, CANCEL, CONGESTION, CHANUNAVAIL")),
    }
}

/// The external line the caller dialled: `pbxdstnum`, else `dst_num` when it is an external
/// number; `None` when the event names none (a leg to an extension).
fn dialled_line(f: &Form) -> Result<Option<PhoneNumber>, String> {
    let dst_external = match f.get("dst_type") {
        None | Some(INTERNAL) => false,
        Some(EXTERNAL) => true,
        Some(other) => return Err(format!("dst_type: {other:?} is not 1 (an external number) or 2 (an extension)")),
    };
    let candidates = [("pbxdstnum", f.get("pbxdstnum")), ("dst_num", f.get("dst_num").filter(|_| dst_external))];
    Ok(candidates.into_iter().find_map(|(field, raw)| raw.and_then(|r| line_number(field, r).ok())))
}

/// A line as Sipuni writes it (`74951230001`, `+74951230001`, `998783337125_id265648`).
fn line_number(field: &str, raw: &str) -> Result<PhoneNumber, String> {
    let line = match raw.split_once("_id") {
        Some((number, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => number,
        _ => raw,
    };
    let with_plus = if line.starts_with('+') { line.to_owned() } else { format!("+{line}") };
    called_number(field, &with_plus)
}

/// Unix seconds (whole, as Sipuni sends them).
fn seconds(field: &str, raw: &str) -> Result<Ts, String> {
    match raw.parse::<u32>() {
        Ok(s) if raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Ts::from_millis(i64::from(s) * 1000)),
        _ => Err(format!("{field}: {raw:?} is not Unix seconds")),
    }
}

/// An optional time; Sipuni's 0 is none.
fn optional_seconds(f: &Form, field: &str) -> Result<Option<Ts>, String> {
    let at = f.get(field).map(|raw| seconds(field, raw)).transpose()?;
    Ok(at.filter(|t| *t != Ts::EPOCH))
}

fn whole_seconds(ms: i64) -> u32 {
    u32::try_from(ms / 1000).unwrap_or(u32::MAX)
}

/// `call_record_link` as a recording's URL, if it is one. Some integrations decode it a second
/// time (Sipuni may encode it twice), so a link that is still percent-encoded is decoded once.
fn record_link(raw: &str) -> Option<String> {
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let link = if lower.starts_with("http%3a") || lower.starts_with("https%3a") {
        percent_decoded(raw)?
    } else {
        raw.to_owned()
    };
    recording_url("call_record_link", &link).ok()
}

fn percent_decoded(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.extend(hex::decode(hex).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// The callback API's "call to a number": an internal number first, then a phone number.
pub const CALL_NUMBER: &str = "/api/callback/call_number";
/// Sipuni's API, unless the trigger's `url` says otherwise.
pub const DEFAULT_API_URL: &str = "https://sipuni.com";
/// The longest message of Sipuni's kept with the callback.
const MAX_MESSAGE: usize = 200;
/// The shortest integration key believed (Sipuni's are `0.` and about ten letters and digits,
/// shorter than the 16 characters asked of callpool's own secrets).
const MIN_KEY: usize = 8;

/// The callback trigger's settings.
pub struct CallNumber {
    base_url: String,
    /// The account's id (digits, leading zeros kept: `070196`).
    user: String,
    /// The integration key.
    secret: String,
    /// The employee's internal number, rung first.
    sipnumber: String,
    /// Ring the visitor first.
    reverse: bool,
}

/// Reads `trigger = { kind = "sipuni", user, secret, sipnumber, reverse?, url? }`.
pub struct TriggerReader;
pub static TRIGGER: TriggerReader = TriggerReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    url: Option<String>,
    user: Option<Digits>,
    secret: Option<String>,
    sipnumber: Option<Digits>,
    reverse: Option<bool>,
}

/// A setting written as a string or a bare number (`sipnumber = 201`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Digits {
    Text(String),
    Number(u64),
}

impl Reader for TriggerReader {
    fn place(&self) -> Place {
        Place::Trigger("sipuni")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawTrigger = f.parse()?;
        let base_url = f.base_url("url", raw.url.unwrap_or_else(|| DEFAULT_API_URL.into()));
        let user = match raw.user {
            Some(Digits::Text(u)) => account_id(u.trim()).map_err(|e| f.fail("user", e)).ok(),
            Some(Digits::Number(n)) => {
                f.fail(
                    "user",
                    format!("write the account's id as a string (user = \"{n:06}\"?): a bare number loses its leading zeros"),
                );
                None
            }
            None => {
                f.fail(
                    "user",
                    "required for kind = \"sipuni\": the account's id (Настройки → API: \"user\", e.g. \"070196\")",
                );
                None
            }
        };
        let (env_name, from_env) = f.owner_var(ENV_TRIGGER_SECRET_PREFIX);
        let secret = from_env.or(raw.secret.map(|s| s.trim().to_owned()));
        let why = format!(" for kind = \"sipuni\": the integration key (Настройки → API; or set {env_name})");
        let secret =
            f.required("secret", secret, &why).and_then(|s| integration_key(s).map_err(|e| f.fail("secret", e)).ok());
        let sipnumber = match raw.sipnumber {
            Some(Digits::Text(s)) => internal_number(s.trim()).map_err(|e| f.fail("sipnumber", e)).ok(),
            Some(Digits::Number(n)) => internal_number(&n.to_string()).map_err(|e| f.fail("sipnumber", e)).ok(),
            None => {
                f.fail(
                    "sipnumber",
                    "required for kind = \"sipuni\": the internal number of the employee Sipuni rings first (\"201\")",
                );
                None
            }
        };
        let trigger = CallNumber {
            base_url,
            user: user?,
            secret: secret?,
            sipnumber: sipnumber?,
            reverse: raw.reverse.unwrap_or(false),
        };
        Some(super::adapter::trigger_section("sipuni", trigger))
    }
}

/// The account's id: digits, as Sipuni shows it (`070196`).
fn account_id(raw: &str) -> Result<String, String> {
    if (1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not a Sipuni account id: digits, as Настройки → API shows it (\"070196\")"))
    }
}

/// The employee's internal number: digits (`201`, or the long form `070196201`).
fn internal_number(raw: &str) -> Result<String, String> {
    if (1..=16).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(format!("{raw:?} is not an internal number: the employee's number in the PBX, digits (\"201\")"))
    }
}

/// The integration key: printable, no spaces, at least [`MIN_KEY`] characters.
fn integration_key(raw: String) -> Result<String, String> {
    if raw.chars().count() >= MIN_KEY && !raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Ok(raw)
    } else {
        Err(format!("must be Sipuni's integration key: at least {MIN_KEY} characters, no spaces"))
    }
}

/// The `hash` of a call to a number: MD5 (hex) of `antiaon+phone+reverse+sipnumber+user+secret`,
/// the values in the order of their names, then the integration key.
pub fn call_number_hash(
    antiaon: &str,
    phone: &str,
    reverse: &str,
    sipnumber: &str,
    user: &str,
    secret: &str,
) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest([antiaon, phone, reverse, sipnumber, user, secret].join("+")))
}

impl CallNumber {
    /// The form: the fields in the order of their names, then `hash`.
    fn fields(&self, sipnumber: &str, visitor: &PhoneNumber) -> Vec<(&'static str, String)> {
        let phone = visitor.as_str().trim_start_matches('+').to_owned();
        let reverse = if self.reverse { "1" } else { "0" };
        let hash = call_number_hash("0", &phone, reverse, sipnumber, &self.user, &self.secret);
        vec![
            ("antiaon", "0".to_owned()),
            ("phone", phone),
            ("reverse", reverse.to_owned()),
            ("sipnumber", sipnumber.to_owned()),
            ("user", self.user.clone()),
            ("hash", hash),
        ]
    }
}

impl Trigger for CallNumber {
    /// Sipuni rings an employee first (a `sipnumber`: by default the trigger's own).
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, _now: Ts) -> reqwest::RequestBuilder {
        http.post(format!("{}{CALL_NUMBER}", self.base_url)).form(&self.fields(ring.operator, &cb.number))
    }

    /// As the trigger's own `sipnumber`.
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        internal_number(raw)
    }

    fn own_operator(&self) -> Option<&str> {
        Some(&self.sipnumber)
    }

    /// Sipuni's events do not name the callback's call (see above).
    fn follows_calls(&self) -> bool {
        false
    }

    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer {
        let json = serde_json::from_str::<serde_json::Value>(body).ok().filter(serde_json::Value::is_object);
        let text = body.trim();
        let lower = text.to_lowercase();
        // Sipuni's other methods answer errors as text ("Error: ..."); a JSON answer names it in a field.
        let message = match &json {
            Some(j) => ["message", "msg", "error", "data"]
                .iter()
                .find_map(|k| j.get(*k).and_then(json_text).filter(|m| !m.trim().is_empty())),
            None if lower.starts_with("error") || lower.starts_with("ошибка") => Some(text.to_owned()),
            None => None,
        }
        .map(|m| short(m.trim()));
        // A rate limit is worth waiting for, whatever status it comes with (429 and 5xx are retried anyway).
        if let Some(m) = message.as_deref().filter(|m| rate_limited(m)) {
            return Answer::Again(format!("Sipuni's API limit: {m}"));
        }
        if let Some(a) = http_answer(status, body) {
            return match (a, &message) {
                (Answer::Refused(_), Some(m)) => {
                    Answer::Refused(format!("Sipuni refused the callback: HTTP {status} {m}"))
                }
                (a, _) => a,
            };
        }
        let Some(j) = json else {
            return match message {
                Some(m) => Answer::Refused(format!("Sipuni refused the callback: {m}")),
                None => Answer::Again("Sipuni answered something that is not JSON".into()),
            };
        };
        let word = |k: &str| j.get(k).and_then(json_text).map(|v| v.trim().to_ascii_lowercase());
        let success = match j.get("success") {
            Some(serde_json::Value::Bool(b)) => Some(*b),
            Some(v) => json_text(v).map(|v| matches!(v.trim(), "true" | "1")),
            None => None,
        };
        let said_error = ["result", "status"]
            .iter()
            .any(|k| word(k).is_some_and(|w| matches!(w.as_str(), "error" | "fail" | "failed" | "false")))
            || j.get("error").is_some_and(|e| !e.is_null() && e != &serde_json::Value::Bool(false));
        let said_ok =
            ["result", "status"].iter().any(|k| word(k).is_some_and(|w| matches!(w.as_str(), "success" | "ok")));
        if said_error || success == Some(false) {
            Answer::Refused(format!("Sipuni refused the callback: {}", message.as_deref().unwrap_or("no message")))
        } else if success == Some(true) || said_ok {
            Answer::Placed { pbx_ref: reference(&j) }
        } else {
            Answer::Refused(format!("Sipuni did not confirm the callback: {}", short(&j.to_string())))
        }
    }
}

/// Sipuni's reference for the call it placed, if its answer gives one (`callId`, else `id`): kept
/// with the callback. No published source says that the call's events carry it.
fn reference(j: &serde_json::Value) -> Option<String> {
    ["callId", "id"].iter().find_map(|k| {
        j.get(*k).and_then(json_text).map(|v| v.trim().to_owned()).filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        })
    })
}

/// At most [`MAX_MESSAGE`] characters.
fn short(m: &str) -> String {
    m.chars().take(MAX_MESSAGE).collect()
}

/// Whether a message of Sipuni's is about its request rate (not documented; the usual wordings).
fn rate_limited(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("too many")
        || m.contains("rate limit")
        || (m.contains("limit") && m.contains("request"))
        || m.contains("слишком много")
        || m.contains("лимит запросов")
}

#[cfg(test)]
mod tests;
