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
    Received, Refusal, Reply, Trigger, LONGEST_CALL_S,
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
        let trigger: Box<dyn Trigger> = Box::new(CallNumber {
            base_url,
            user: user?,
            secret: secret?,
            sipnumber: sipnumber?,
            reverse: raw.reverse.unwrap_or(false),
        });
        Some(Section::new("sipuni", trigger))
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
    fn fields(&self, visitor: &PhoneNumber) -> Vec<(&'static str, String)> {
        let phone = visitor.as_str().trim_start_matches('+').to_owned();
        let reverse = if self.reverse { "1" } else { "0" };
        let hash = call_number_hash("0", &phone, reverse, &self.sipnumber, &self.user, &self.secret);
        vec![
            ("antiaon", "0".to_owned()),
            ("phone", phone),
            ("reverse", reverse.to_owned()),
            ("sipnumber", self.sipnumber.clone()),
            ("user", self.user.clone()),
            ("hash", hash),
        ]
    }
}

impl Trigger for CallNumber {
    /// Sipuni rings its own employee (`sipnumber`), not the form's `operator`.
    fn request(
        &self,
        http: &reqwest::Client,
        _operator: &PhoneNumber,
        cb: &Callback,
        _now: Ts,
    ) -> reqwest::RequestBuilder {
        http.post(format!("{}{CALL_NUMBER}", self.base_url)).form(&self.fields(&cb.number))
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
mod tests {
    use std::collections::HashMap;

    use axum::http::{header, HeaderMap, HeaderValue};

    use super::*;
    use crate::config::Config;

    /// 2027-01-15T08:00:00Z.
    const NOW: Ts = Ts::from_millis(1_800_000_000_000);
    /// NOW minus two minutes, in Unix seconds.
    const START: &str = "1799999880";

    // The fixtures have the shape of Sipuni's events as public integrations receive them (field
    // names and values: webasyst/crm plugins/sipuni, alexkasp/crmproxy crmproxy/Parser.cpp, and
    // events captured from a live account and published with an integration: `call_id` like
    // `1774373436.533962`, an incoming call's `pbxdstnum` the line without `+`, `dst_num` with an
    // `_id` suffix, `treeName=Входящая`, `treeNumber=000-1734442`, `call_record_link` on
    // sipuni.com/api/crm/record). The numbers are ours.

    /// Event 1 of an incoming call, as it rings the employee at extension 201.
    fn call_fields() -> Vec<(&'static str, &'static str)> {
        vec![
            ("event", "1"),
            ("call_id", "1799999880.533962"),
            ("src_num", "79161234567"),
            ("src_type", "1"),
            ("dst_num", "070196201"),
            ("dst_type", "2"),
            ("short_dst_num", "201"),
            ("pbxdstnum", "74951230001"),
            ("timestamp", START),
            ("treeName", "Входящая"),
            ("treeNumber", "000-1734442"),
            ("channel", "SIP/070196201-00047440"),
            ("user_id", "070196"),
        ]
    }

    fn answer_fields() -> Vec<(&'static str, &'static str)> {
        let mut f = with(&call_fields(), "event", "3");
        f = with(&f, "timestamp", "1799999890");
        f
    }

    /// Event 2 with `status`, answered 10 s after the start and ended at NOW minus 1 minute.
    fn end_fields(status: &'static str, answer: &'static str) -> Vec<(&'static str, &'static str)> {
        let mut f = with(&call_fields(), "event", "2");
        f = with(&f, "timestamp", "1799999940");
        f.extend([
            ("status", status),
            ("call_start_timestamp", START),
            ("call_answer_timestamp", answer),
            ("last_called", "201"),
            ("call_record_link", "https://sipuni.com/api/crm/record?id=1799999880.533962&hash=93247a3b"),
        ]);
        f
    }

    fn with(
        fields: &[(&'static str, &'static str)],
        name: &str,
        value: &'static str,
    ) -> Vec<(&'static str, &'static str)> {
        fields.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect()
    }

    fn without(fields: &[(&'static str, &'static str)], name: &str) -> Vec<(&'static str, &'static str)> {
        fields.iter().filter(|(k, _)| *k != name).copied().collect()
    }

    fn encoded(fields: &[(&str, &str)]) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
    }

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        h
    }

    /// Reads an event sent as Sipuni sends it: a GET with the fields in the query (after
    /// callpool's own `token`), or a POST with them in the body.
    fn receive_as(get: bool, fields: &[(&str, &str)]) -> Result<Received, Refusal> {
        let h = form_headers();
        let (query, body) = if get {
            (format!("token=sipuni-token-0123456789&{}", encoded(fields)), String::new())
        } else {
            ("token=sipuni-token-0123456789".to_owned(), encoded(fields))
        };
        let req = Inbound { headers: &h, query: &query, body: body.as_bytes(), now: NOW, path_tail: "" };
        Sipuni.verify(&req)?;
        Sipuni.read("sip", &req)
    }

    fn receive(fields: &[(&str, &str)]) -> Result<Received, Refusal> {
        let (get, post) = (receive_as(true, fields), receive_as(false, fields));
        assert_eq!(describe(&get), describe(&post), "GET and POST read alike");
        get
    }

    fn describe(r: &Result<Received, Refusal>) -> String {
        match r {
            Ok(Received::Reports(r)) => format!("{r:?}"),
            Ok(Received::Answer(a)) => format!("{a:?}"),
            Err(e) => format!("{e:?}"),
        }
    }

    fn report(fields: &[(&str, &str)]) -> CallReport {
        match receive(fields) {
            Ok(Received::Reports(mut r)) if r.len() == 1 => r.remove(0),
            Ok(Received::Answer(a)) => panic!("an answer instead of a report: {a:?}"),
            Ok(Received::Reports(r)) => panic!("{} reports", r.len()),
            Err(e) => panic!("refused: {e:?}"),
        }
    }

    fn ignored(fields: &[(&str, &str)]) -> bool {
        matches!(receive(fields), Ok(Received::Answer(a)) if a == success())
    }

    fn refusal(fields: &[(&str, &str)]) -> String {
        match receive(fields) {
            Err(Refusal::Malformed(m)) => m,
            Err(other) => panic!("refused for another reason: {other:?}"),
            Ok(_) => panic!("accepted: {fields:?}"),
        }
    }

    #[test]
    fn a_call_is_a_ringing_call_on_the_dialled_line() {
        let r = report(&call_fields());
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("sip:1799999880.533962", "+74951230001", CallStatus::Ringing)
        );
        assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("79161234567"));
        assert_eq!(r.started_at.to_string(), "2027-01-15T07:58:00.000Z");
        assert_eq!((r.answered_at, r.ended_at, r.duration, r.recording_url), (None, None, None, None));

        // The line with its '+', or with the suffix Sipuni adds to a line.
        assert_eq!(report(&with(&call_fields(), "pbxdstnum", "+74951230001")).called.as_str(), "+74951230001");
        assert_eq!(report(&with(&call_fields(), "pbxdstnum", "74951230001_id265648")).called.as_str(), "+74951230001");
        // Without pbxdstnum, an external dst_num is the line (the call entering the PBX).
        let entering =
            with(&with(&without(&call_fields(), "pbxdstnum"), "dst_type", "1"), "dst_num", "74951230001_id265648");
        assert_eq!(report(&entering).called.as_str(), "+74951230001");
        // A pbxdstnum that is no phone number (a SIP line's id) gives way to an external dst_num.
        let sip_line =
            with(&with(&with(&call_fields(), "pbxdstnum", "100021"), "dst_type", "1"), "dst_num", "74951230001");
        assert_eq!(report(&sip_line).called.as_str(), "+74951230001");
        // A hidden caller is no caller.
        assert_eq!(report(&with(&call_fields(), "src_num", "anonymous")).caller, None);
        assert_eq!(report(&without(&call_fields(), "src_num")).caller, None);
    }

    #[test]
    fn an_answer_is_answered_at_its_time() {
        let r = report(&answer_fields());
        assert_eq!(
            (r.key.as_str(), r.called.as_str(), r.status),
            ("sip:1799999880.533962", "+74951230001", CallStatus::Answered)
        );
        assert_eq!(r.answered_at.map(|t| t.to_string()).as_deref(), Some("2027-01-15T07:58:10.000Z"));
        assert_eq!((r.ended_at, r.duration), (None, None));
        // One without the numbers (as captured answers sometimes are) is answered and not read.
        let bare = [("event", "3"), ("call_id", "1799999880.533962"), ("timestamp", "1799999890")];
        assert!(ignored(&bare));
    }

    #[test]
    fn an_end_is_final_with_its_status_talk_time_and_recording() {
        let r = report(&end_fields("ANSWER", "1799999890"));
        assert_eq!((r.status, r.duration), (CallStatus::Completed, Some(50)), "from the answer to the end");
        assert_eq!(r.started_at.to_string(), "2027-01-15T07:58:00.000Z");
        assert_eq!(r.answered_at.map(|t| t.to_string()).as_deref(), Some("2027-01-15T07:58:10.000Z"));
        assert_eq!(r.ended_at.map(|t| t.to_string()).as_deref(), Some("2027-01-15T07:59:00.000Z"));
        assert_eq!(
            r.recording_url.as_deref(),
            Some("https://sipuni.com/api/crm/record?id=1799999880.533962&hash=93247a3b")
        );
        assert_eq!(r.called.as_str(), "+74951230001");

        for (status, expected) in [
            ("NOANSWER", CallStatus::Missed),
            ("CANCEL", CallStatus::Missed),
            ("CHANUNAVAIL", CallStatus::Missed),
            ("BUSY", CallStatus::Busy),
            ("CONGESTION", CallStatus::Failed),
            ("noanswer", CallStatus::Missed),
        ] {
            let r = report(&end_fields(status, "0"));
            assert_eq!((r.status, r.duration, r.answered_at), (expected, Some(0), None), "{status}");
        }
        // An answer time outside the call (Sipuni's own callbacks have shown one) is not believed.
        let r = report(&end_fields("ANSWER", "1799999879"));
        assert_eq!((r.status, r.answered_at, r.duration), (CallStatus::Completed, None, None));
        let r = report(&end_fields("NOANSWER", START));
        assert_eq!((r.answered_at, r.duration), (None, Some(0)), "an answer time on a missed call");
        // Without the start, the end's time is the start.
        let r = report(&without(&end_fields("NOANSWER", "0"), "call_start_timestamp"));
        assert_eq!(r.started_at, r.ended_at.unwrap());
    }

    #[test]
    fn a_recording_link_is_kept_only_if_it_is_a_url() {
        let link =
            |l: &'static str| report(&with(&end_fields("ANSWER", "1799999890"), "call_record_link", l)).recording_url;
        assert_eq!(link("not a link"), None);
        assert_eq!(link("javascript:alert(1)"), None);
        assert_eq!(
            link("https%3A%2F%2Fsipuni.com%2Fapi%2Fcrm%2Frecord%3Fid%3D1.2%26hash%3Dab").as_deref(),
            Some("https://sipuni.com/api/crm/record?id=1.2&hash=ab"),
            "encoded twice"
        );
        assert_eq!(report(&without(&end_fields("ANSWER", "1799999890"), "call_record_link")).recording_url, None);
    }

    #[test]
    fn calls_employees_make_and_legs_without_a_line_are_not_recorded() {
        // An employee calls out: src_type 2 (as captured: src_num with the account's prefix).
        let outgoing = [
            ("event", "1"),
            ("call_id", "1774372584.533596"),
            ("src_type", "2"),
            ("src_num", "070196201"),
            ("short_src_num", "201"),
            ("dst_type", "1"),
            ("dst_num", "998948867473"),
            ("pbxdstnum", "+998948867473"),
            ("timestamp", START),
            ("treeName", "Исходящая"),
            ("treeNumber", "000-1734445"),
        ];
        assert!(ignored(&outgoing));
        assert!(ignored(&with(&with(&outgoing, "event", "2"), "status", "ANSWER")));
        // Internal: both ends extensions.
        assert!(ignored(&with(&with(&outgoing, "dst_type", "2"), "dst_num", "070196202")));
        // An incoming leg to an extension that names no line.
        assert!(ignored(&without(&call_fields(), "pbxdstnum")));
        assert!(ignored(&with(&call_fields(), "pbxdstnum", "100021")));
    }

    #[test]
    fn other_events_and_address_checks_get_the_success_answer() {
        for event in [SECONDARY_END, "5", "6", "ping"] {
            assert!(ignored(&with(&end_fields("ANSWER", "1799999890"), "event", event)), "event {event}");
        }
        assert!(ignored(&[]), "an empty check of the address");
        // Whatever is recorded is answered the same.
        assert_eq!(Sipuni.reply(&[]), Reply::Json(json!({"success": true})));
        assert_eq!(serde_json::to_string(&json!({"success": true})).unwrap(), r#"{"success":true}"#);
    }

    #[test]
    fn malformed_events_name_the_field() {
        assert!(refusal(&without(&call_fields(), "event")).contains("event: required"));
        assert!(refusal(&without(&call_fields(), "call_id")).contains("call_id: required"));
        assert!(refusal(&with(&call_fields(), "call_id", "1 2")).contains("call_id: call_id must be"));
        assert!(refusal(&without(&call_fields(), "src_type")).contains("src_type: required"));
        assert!(refusal(&with(&call_fields(), "src_type", "3")).contains("src_type: \"3\" is not 1"));
        assert!(refusal(&with(&call_fields(), "dst_type", "x")).contains("dst_type: \"x\" is not 1"));
        assert!(refusal(&without(&call_fields(), "timestamp")).contains("timestamp: required"));
        assert!(refusal(&with(&call_fields(), "timestamp", "2027-01-15 10:58:00"))
            .contains("timestamp: \"2027-01-15 10:58:00\" is not Unix seconds"));
        assert!(refusal(&with(&call_fields(), "timestamp", "-1")).contains("timestamp: \"-1\" is not Unix seconds"));
        assert!(refusal(&with(&call_fields(), "timestamp", "1800001000")).contains("more than 5 minutes in the future"));
        assert!(refusal(&with(&call_fields(), "timestamp", "1800000000000")).contains("timestamp:"), "milliseconds");
        assert!(refusal(&without(&end_fields("ANSWER", "0"), "status")).contains("status: required"));
        assert!(refusal(&end_fields("HANGUP", "0")).contains("status: \"HANGUP\" is not one of"));
        assert!(refusal(&end_fields("ANSWER", "soon")).contains("call_answer_timestamp: \"soon\" is not Unix seconds"));
        assert!(refusal(&with(&end_fields("ANSWER", "0"), "call_start_timestamp", "1"))
            .contains("call_start_timestamp: the call would have lasted"));
        // The event is read from the body of a POST even when the query has other fields.
        let h = form_headers();
        let body = encoded(&call_fields());
        let req = Inbound { headers: &h, query: "pbx=sip&event=9", body: body.as_bytes(), now: NOW, path_tail: "" };
        assert!(matches!(Sipuni.read("sip", &req), Ok(Received::Reports(_))), "the body's event wins");
    }

    #[test]
    fn the_reader_requires_a_token_or_addresses() {
        let config = |pbx: &str| {
            let text =
                format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"sip\"\nkind = \"sipuni\"\n{pbx}");
            let env: HashMap<String, String> = HashMap::new();
            Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK])
        };
        let c = config("token = \"sipuni-token-0123456789\"").unwrap();
        let adapter = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        let h = form_headers();
        let body = encoded(&call_fields());
        let req = Inbound { headers: &h, query: "", body: body.as_bytes(), now: NOW, path_tail: "" };
        assert!(matches!(adapter.read("sip", &req), Ok(Received::Reports(_))), "the adapter is Sipuni's");
        assert!(config("allow_from = [\"185.45.152.0/24\"]").is_ok());

        let problems = |pbx: &str| config(pbx).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        assert!(problems("").contains("Sipuni signs nothing: set token"), "{}", problems(""));
        let unknown = problems("token = \"sipuni-token-0123456789\"\nsecret = \"x\"");
        assert!(unknown.contains("unknown field `secret`"), "{unknown}");
    }

    // The callback trigger.

    /// An integration key of the shape Sipuni's have (`0.` and letters and digits); ours.
    const KEY: &str = "0.k4n2xq8wz1ab";

    fn call_number(reverse: bool) -> CallNumber {
        CallNumber {
            base_url: "http://sipuni.test".into(),
            user: "070196".into(),
            secret: KEY.into(),
            sipnumber: "201".into(),
            reverse,
        }
    }

    fn callback(number: &str) -> Callback {
        crate::callback::example(number, NOW)
    }

    fn posted(t: &dyn Trigger) -> (reqwest::Request, Vec<(String, String)>) {
        let operator = PhoneNumber::parse("+74951230099").unwrap();
        let req = t.request(&reqwest::Client::new(), &operator, &callback("+79161234567"), NOW).build().unwrap();
        let body = req.body().and_then(reqwest::Body::as_bytes).expect("a form body").to_vec();
        let fields = form_urlencoded::parse(&body).into_owned().collect();
        (req, fields)
    }

    #[test]
    fn the_hash_is_the_one_sipunis_integrations_compute() {
        // webasyst/crm plugins/sipuni crmSipuniPluginApi::initCall, run with PHP 8.2:
        // md5(join('+', array($antiaon, $phone, $reverse, $sipnumber, $user, $secret))) with
        // '0', intval('79161234567'), '0', '201', '070196', KEY; the same as
        // printf '%s' '0+79161234567+0+201+070196+0.k4n2xq8wz1ab' | md5sum.
        assert_eq!(call_number_hash("0", "79161234567", "0", "201", "070196", KEY), "7f6808738c3a2cb1104996bfc8947603");
        // reverse = '1'.
        assert_eq!(call_number_hash("0", "79161234567", "1", "201", "070196", KEY), "7068f0defb5b36add3496ce13c9d895a");
        assert_ne!(
            call_number_hash("0", "79161234567", "0", "201", "070196", "0.another-key"),
            call_number_hash("0", "79161234567", "0", "201", "070196", KEY)
        );
    }

    #[test]
    fn the_callback_is_a_form_post_of_the_documented_fields() {
        let (req, fields) = posted(&call_number(false));
        assert_eq!(
            (req.method().as_str(), req.url().as_str()),
            ("POST", "http://sipuni.test/api/callback/call_number")
        );
        assert_eq!(req.headers()[reqwest::header::CONTENT_TYPE], "application/x-www-form-urlencoded");
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            fields,
            [
                ("antiaon", "0"),
                ("phone", "79161234567"),
                ("reverse", "0"),
                ("sipnumber", "201"),
                ("user", "070196"),
                ("hash", "7f6808738c3a2cb1104996bfc8947603"),
            ],
            "the body http_build_query writes in webasyst's initCall"
        );
        let (_, fields) = posted(&call_number(true));
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!((get("reverse"), get("hash")), (Some("1"), Some("7068f0defb5b36add3496ce13c9d895a")));
    }

    #[test]
    fn sipunis_answers_are_read() {
        use reqwest::StatusCode;
        let t = call_number(false);
        let ok = StatusCode::OK;
        assert_eq!(t.answer(ok, r#"{"success":true}"#), Answer::Placed { pbx_ref: None });
        assert_eq!(
            t.answer(ok, r#"{"success":true,"id":"05578a253f510b1840c67016426218c1"}"#),
            Answer::Placed { pbx_ref: Some("05578a253f510b1840c67016426218c1".into()) },
            "Sipuni's reference, if the answer has one"
        );
        assert_eq!(
            t.answer(ok, r#"{"success":"true","callId":"1799999880.533962","id":"x"}"#),
            Answer::Placed { pbx_ref: Some("1799999880.533962".into()) }
        );
        assert_eq!(t.answer(ok, r#"{"success":true,"id":"a b<c>"}"#), Answer::Placed { pbx_ref: None }, "not an id");
        assert_eq!(t.answer(ok, r#"{"result":"success"}"#), Answer::Placed { pbx_ref: None });

        let refused = |status: u16, body: &str| match t.answer(StatusCode::from_u16(status).unwrap(), body) {
            Answer::Refused(m) => m,
            other => panic!("{status} {body}: not refused: {other:?}"),
        };
        let again = |status: u16, body: &str| match t.answer(StatusCode::from_u16(status).unwrap(), body) {
            Answer::Again(m) => m,
            other => panic!("{status} {body}: not retried: {other:?}"),
        };
        assert_eq!(
            refused(200, r#"{"success":false,"message":"Неверный hash"}"#),
            "Sipuni refused the callback: Неверный hash"
        );
        assert_eq!(refused(200, r#"{"success":false}"#), "Sipuni refused the callback: no message");
        assert_eq!(
            refused(200, r#"{"result":"error","data":"user not found"}"#),
            "Sipuni refused the callback: user not found"
        );
        assert_eq!(refused(200, r#"{"status":"error","error":"bad hash"}"#), "Sipuni refused the callback: bad hash");
        assert_eq!(refused(200, r#"{"success":true,"error":"bad hash"}"#), "Sipuni refused the callback: bad hash");
        assert_eq!(refused(200, "Error: wrong hash"), "Sipuni refused the callback: Error: wrong hash");
        assert!(refused(200, r#"{"ok":1}"#).starts_with("Sipuni did not confirm the callback: "));
        let m = refused(403, r#"{"success":false,"message":"Access denied"}"#);
        assert_eq!(m, "Sipuni refused the callback: HTTP 403 Forbidden Access denied");
        assert!(refused(404, "").contains("HTTP 404"));
        let long = format!(r#"{{"success":false,"message":"{}"}}"#, "я".repeat(1000));
        assert_eq!(refused(200, &long).chars().count(), "Sipuni refused the callback: ".len() + MAX_MESSAGE);

        // Rate limits and trouble on Sipuni's side are retried.
        assert!(again(429, "").contains("429"));
        assert!(again(502, "<html>").contains("502"));
        assert!(again(200, r#"{"success":false,"message":"Too many requests"}"#).contains("Too many requests"));
        assert!(again(400, r#"{"success":false,"message":"Слишком много запросов"}"#).starts_with("Sipuni's API limit"));
        assert!(again(200, "<html>maintenance</html>").contains("not JSON"));
        assert!(again(200, "").contains("not JSON"));
    }

    #[test]
    fn the_trigger_reader_takes_the_account_the_key_and_the_employee() {
        let config = |trigger: &str, env: &[(&str, &str)]| {
            let text = format!(
                r#"
[[pbx]]
id = "sip"
kind = "sipuni"
token = "sipuni-token-0123456789"

[[site]]
id = "shop-1"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]

[site.callback]
operator = "+74951230099"
pbx = "sip"
trigger = {{ kind = "sipuni", {trigger} }}
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
        let c = config(&format!(r#"user = "070196", secret = "{KEY}", sipnumber = "201""#), &[]).unwrap();
        let (url, fields) = form(&c);
        assert_eq!(url, "https://sipuni.com/api/callback/call_number");
        assert_eq!(fields, ["0", "79161234567", "0", "201", "070196", "7f6808738c3a2cb1104996bfc8947603"]);

        // The key from the environment (named by the site), a bare internal number, reverse, the URL for tests.
        let c = config(
            r#"user = "070196", secret = "0.file-key-123", sipnumber = 201, reverse = true, url = "http://127.0.0.1:9/""#,
            &[("CALLPOOL_TRIGGER_SECRET_SHOP_1", KEY)],
        )
        .unwrap();
        let (url, fields) = form(&c);
        assert_eq!(url, "http://127.0.0.1:9/api/callback/call_number");
        assert_eq!(fields, ["0", "79161234567", "1", "201", "070196", "7068f0defb5b36add3496ce13c9d895a"]);

        let problems = |trigger: &str| config(trigger, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        let none = problems("");
        for field in ["user: required", "secret: required", "sipnumber: required"] {
            assert!(none.contains(&format!("callback.trigger.{field} for kind = \"sipuni\"")), "{field}: {none}");
        }
        assert!(none.contains("CALLPOOL_TRIGGER_SECRET_SHOP_1"), "the variable is named: {none}");
        let with = |more: &str| problems(&format!(r#"user = "070196", secret = "{KEY}", sipnumber = "201", {more}"#));
        let bare = problems(&format!(r#"user = 70196, secret = "{KEY}", sipnumber = "201""#));
        assert!(bare.contains("user: write the account's id as a string (user = \"070196\"?)"), "{bare}");
        assert!(problems(&format!(r#"user = "shop", secret = "{KEY}", sipnumber = "201""#))
            .contains("user: \"shop\" is not a Sipuni account id"));
        assert!(problems(&format!(r#"user = "070196", secret = "{KEY}", sipnumber = "2 01""#))
            .contains("sipnumber: \"2 01\" is not an internal number"));
        assert!(problems(r#"user = "070196", secret = "0.short", sipnumber = "201""#)
            .contains("secret: must be Sipuni's integration key: at least 8 characters"));
        assert!(with(r#"url = "sipuni.com""#).contains("url: \"sipuni.com\" is not an http(s) URL"));
        assert!(with(r#"reverse = "yes""#).contains("invalid type"));
        assert!(with(r#"antiaon = true"#).contains("unknown field `antiaon`"));
    }
}
