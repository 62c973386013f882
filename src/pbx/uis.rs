//! UIS (and CoMagic, the same platform): HTTP notifications.
//!
//! Webhook (`[[pbx]] kind = "uis"`, `timezone`): in UIS the user sets up notifications
//! (Notifications → Add; the HTTP method, the URL and a body of their own writing) for event types
//! UIS defines, and UIS fills the body's `{{variables}}` in when the event happens. UIS signs
//! nothing, so a `[[pbx]]` of this kind must set `token` (sent as `?token=` in the URL) or
//! `allow_from`, or both, which the web layer checks before this adapter; [`Adapter::verify`] has
//! nothing left to check.
//!
//! callpool documents one JSON shape, a template per event the user sets up ([`START_TEMPLATE`],
//! [`ANSWERED_TEMPLATE`], [`FINISHED_TEMPLATE`], [`LOST_TEMPLATE`], and [`RECORDED_TEMPLATE`]),
//! and reads exactly that: an `"event"` the user types into each notification names it; the same
//! five lines in each (`event`, `call_session_id`, `virtual_phone_number`,
//! `contact_phone_number`, `notification_time`), and the event's own lines. The templates are not
//! one text because a variable an event does not have may break the body; each template holds
//! only the variables the public templates we found use for that event type. Any other field is
//! refused, naming it.
//!
//! - `start` ("Входящий звонок на виртуальный номер", an incoming call on a virtual number): a
//!   ringing call started at `notification_time`.
//! - `answered` ("Начало разговора", talk started): answered at `notification_time`.
//! - `finished` ("Завершение звонка", the call finished): final; `talk_time_duration` (whole
//!   seconds) is its duration, completed when someone talked, missed when nobody did (0 or null;
//!   UIS sends the end of unanswered calls too); it started at `start_time`.
//! - `lost` ("Потерянный звонок", a lost call): missed.
//! - `recorded` ("Записанный разговор", a recorded talk): answered, with `file_link` as the
//!   recording's URL.
//!
//! `answered`, `finished` and `recorded` happen for outgoing calls too, so their templates carry
//! `direction` (`in` or `out`); outgoing calls are answered and not recorded. The tracking number
//! is `virtual_phone_number` and the caller `contact_phone_number`, digits with the country code
//! and no `+` (`74951234567`); the call is keyed by `call_session_id` (a number). Times come as
//! the account's local time without an offset (`2019-12-16 14:40:47.234`), read in `timezone`
//! (default Europe/Moscow); a time with an offset is taken as it is.
//!
//! UIS renders each variable as a JSON value (strings quoted, numbers bare, `null` when empty),
//! so the variables stand unquoted in the templates, as in every public template we found; a
//! quoted text variable (`"{{virtual_phone_number}}"`) makes the body invalid JSON, and the
//! refusal says so. The answer is callpool's JSON with a 200 (an outgoing call's:
//! `{"result": "ignored"}`).
//!
//! Sources: UIS, "Уведомления о событиях"
//! (<https://uiscom.ru/academiya/spravochnyj-centr/uvedomleniya/uvedomleniya-o-sobytiyakh>: the
//! HTTP notifications need the "API Базовый" option; Notifications → Add); Planfix's UIS and
//! CallGear/CoMagic integration guides (<https://planfix.ru/wiki/index.php?title=Интеграция_с_UIS>:
//! a template per event type, with the variables each uses, unquoted); an integration's settings
//! page for "Завершение звонка" (<http://mgdemo.ru:5555/doku.php?id=uis:settings:lk:notifications:callended>:
//! its variables, `start_time` among them); a UIS "Завершение звонка" notification as UIS rendered
//! it, in a public PHP script (2019: `"call_session_id": 998677427`, `"notification_time":
//! "2019-12-16 14:40:47.234"`, `"direction": "in"`, `"external_id": null`).

use callpool_pool::{PhoneNumber, Ts};
use chrono::TimeZone;
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::adapter::{
    called_number, not_in_future, recording_url, Adapter, Inbound, Received, Refusal, Reply, LONGEST_CALL_S,
};
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section};

/// The time zone of UIS's times unless `timezone` says otherwise.
pub const DEFAULT_TIMEZONE: &str = "Europe/Moscow";

/// The body of the "Входящий звонок на виртуальный номер" notification (event type: an incoming
/// call on a virtual number).
pub const START_TEMPLATE: &str = r#"{
  "event": "start",
  "call_session_id": {{call_session_id}},
  "virtual_phone_number": {{virtual_phone_number}},
  "contact_phone_number": {{contact_phone_number}},
  "notification_time": {{notification_time}}
}"#;

/// The body of the "Начало разговора" notification (talk started).
pub const ANSWERED_TEMPLATE: &str = r#"{
  "event": "answered",
  "call_session_id": {{call_session_id}},
  "virtual_phone_number": {{virtual_phone_number}},
  "contact_phone_number": {{contact_phone_number}},
  "notification_time": {{notification_time}},
  "direction": {{direction}}
}"#;

/// The body of the "Завершение звонка" notification (the call finished).
pub const FINISHED_TEMPLATE: &str = r#"{
  "event": "finished",
  "call_session_id": {{call_session_id}},
  "virtual_phone_number": {{virtual_phone_number}},
  "contact_phone_number": {{contact_phone_number}},
  "notification_time": {{notification_time}},
  "direction": {{direction}},
  "start_time": {{start_time}},
  "talk_time_duration": {{talk_time_duration}}
}"#;

/// The body of the "Потерянный звонок" notification (a lost call).
pub const LOST_TEMPLATE: &str = r#"{
  "event": "lost",
  "call_session_id": {{call_session_id}},
  "virtual_phone_number": {{virtual_phone_number}},
  "contact_phone_number": {{contact_phone_number}},
  "notification_time": {{notification_time}}
}"#;

/// The body of the "Записанный разговор" notification (a recorded talk; optional).
pub const RECORDED_TEMPLATE: &str = r#"{
  "event": "recorded",
  "call_session_id": {{call_session_id}},
  "virtual_phone_number": {{virtual_phone_number}},
  "contact_phone_number": {{contact_phone_number}},
  "notification_time": {{notification_time}},
  "direction": {{direction}},
  "file_link": {{file_link}}
}"#;

/// Every field a template may have.
const FIELDS: [&str; 9] = [
    "event",
    "call_session_id",
    "virtual_phone_number",
    "contact_phone_number",
    "notification_time",
    "direction",
    "start_time",
    "talk_time_duration",
    "file_link",
];

/// A UIS account's settings: its time zone.
pub struct Uis {
    timezone: Tz,
}

/// Reads a `[[pbx]] kind = "uis"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    timezone: Option<String>,
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("uis")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: RawWebhook = f.parse()?;
        f.require_guard("UIS");
        let name = raw.timezone.unwrap_or_else(|| DEFAULT_TIMEZONE.into());
        let timezone = match name.parse::<Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                f.fail("timezone", format!("{name:?} is not an IANA time zone such as {DEFAULT_TIMEZONE}"));
                return None;
            }
        };
        let adapter: Box<dyn Adapter> = Box::new(Uis { timezone });
        Some(Section::new("uis", adapter))
    }
}

impl Adapter for Uis {
    /// UIS signs nothing: the `[[pbx]]`'s token or address allowlist, checked before, is the check.
    fn verify(&self, _req: &Inbound<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal> {
        match self.notification(pbx, req.body, req.now).map_err(Refusal::Malformed)? {
            Some(report) => Ok(Received::Reports(vec![report])),
            None => Ok(Received::Answer(Reply::Json(json!({ "result": "ignored" })))),
        }
    }
}

/// Which notification it is: the `"event"` typed into its template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Start,
    Answered,
    Finished,
    Lost,
    Recorded,
}

impl Event {
    fn parse(raw: &str) -> Result<Event, String> {
        match raw.trim() {
            "start" => Ok(Event::Start),
            "answered" => Ok(Event::Answered),
            "finished" => Ok(Event::Finished),
            "lost" => Ok(Event::Lost),
            "recorded" => Ok(Event::Recorded),
            other => Err(format!("event: {other:?} is not one of start, answered, finished, lost, recorded")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Answered => "answered",
            Event::Finished => "finished",
            Event::Lost => "lost",
            Event::Recorded => "recorded",
        }
    }

    /// UIS sends these for outgoing calls too, so they say which way the call went.
    fn needs_direction(self) -> bool {
        matches!(self, Event::Answered | Event::Finished | Event::Recorded)
    }
}

type Obj = Map<String, Value>;

impl Uis {
    /// The notification as a report; `None` for an outgoing call.
    fn notification(&self, pbx: &str, body: &[u8], now: Ts) -> Result<Option<CallReport>, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err("body: empty; UIS sends the notification's template, filled in, as the body".into());
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            format!(
                "body: not JSON ({e}); paste the template as documented, the variables unquoted \
                 ({{{{virtual_phone_number}}}}, not \"{{{{virtual_phone_number}}}}\"); a {{{{name}}}} left in the body is a \
                 variable this event type does not have"
            )
        })?;
        let obj = value.as_object().ok_or("body: must be a JSON object (the template)")?;
        if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!("{unknown}: unknown field; the templates have only {}", FIELDS.join(", ")));
        }
        let event =
            Event::parse(&text(obj, "event")?.ok_or("event: required (start, answered, finished, lost or recorded)")?)?;
        match text(obj, "direction")?.map(|d| d.to_ascii_lowercase()).as_deref() {
            Some("in") => {}
            Some("out") => return Ok(None),
            Some(other) => return Err(format!("direction: {other:?} is not in or out")),
            None if event.needs_direction() => {
                return Err(format!(
                    "direction: required for event \"{}\" (\"direction\": {{{{direction}}}}: UIS sends it for outgoing \
                     calls too)",
                    event.name()
                ))
            }
            None => {}
        }
        let id = text(obj, "call_session_id")?.ok_or("call_session_id: required")?;
        let key = CallKey::new(pbx, &id).map_err(|e| format!("call_session_id: {e}"))?;
        let raw_called = text(obj, "virtual_phone_number")?.ok_or("virtual_phone_number: required")?;
        let called = virtual_number(&raw_called)?;
        let caller = text(obj, "contact_phone_number")?.and_then(|raw| caller(&raw));
        let raw_at = text(obj, "notification_time")?.ok_or("notification_time: required")?;
        let at = self.time("notification_time", &raw_at)?;
        not_in_future(at, now).map_err(|_| {
            format!("notification_time: more than 5 minutes in the future (check `timezone`: {})", self.timezone)
        })?;
        // The call's start: `start_time` where the template has it, else the notification's time
        // (for `start`, the same moment).
        let started_at = match text(obj, "start_time")? {
            Some(raw) => self.time("start_time", &raw)?.min(at),
            None => at,
        };
        let recording = text(obj, "file_link")?.map(|u| recording_url("file_link", &u)).transpose()?;
        let mut report = CallReport {
            key,
            called,
            caller,
            started_at,
            answered_at: None,
            ended_at: None,
            status: CallStatus::Ringing,
            duration: None,
            recording_url: recording,
        };
        match event {
            Event::Start => {}
            Event::Answered => {
                report.status = CallStatus::Answered;
                report.answered_at = Some(at);
            }
            Event::Finished => {
                if !obj.contains_key("talk_time_duration") {
                    return Err("talk_time_duration: required for event \"finished\" (\"talk_time_duration\": \
                                {{talk_time_duration}})"
                        .into());
                }
                // Null: nobody talked.
                let talk = seconds(obj, "talk_time_duration")?.unwrap_or(0);
                report.status = if talk > 0 { CallStatus::Completed } else { CallStatus::Missed };
                report.ended_at = Some(at);
                report.duration = Some(talk);
            }
            Event::Lost => {
                report.status = CallStatus::Missed;
                report.ended_at = Some(at);
                report.duration = Some(0);
            }
            Event::Recorded => {
                if report.recording_url.is_none() {
                    return Err("file_link: required for event \"recorded\" (\"file_link\": {{file_link}})".into());
                }
                // A recorded talk: someone answered (its end and duration come with `finished`).
                report.status = CallStatus::Answered;
            }
        }
        Ok(Some(report))
    }

    /// A UIS time: the account's local time (`2019-12-16 14:40:47.234`, the fraction optional) in
    /// `timezone`, or a time with its offset. A local time repeated when the clocks go back is
    /// taken as its first occurrence.
    fn time(&self, field: &str, raw: &str) -> Result<Ts, String> {
        let raw = raw.trim();
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
            return Ok(Ts::from_millis(t.timestamp_millis()));
        }
        let local = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
            .iter()
            .find_map(|f| chrono::NaiveDateTime::parse_from_str(raw, f).ok())
            .ok_or_else(|| format!("{field}: {raw:?} is not a time such as 2026-11-22 10:15:00.123"))?;
        let at =
            self.timezone.from_local_datetime(&local).earliest().ok_or_else(|| {
                format!("{field}: {raw:?} does not exist in {} (the clocks went forward)", self.timezone)
            })?;
        Ok(Ts::from_millis(at.timestamp_millis()))
    }
}

/// The tracking number: digits with the country code, with or without the `+`.
fn virtual_number(raw: &str) -> Result<PhoneNumber, String> {
    let e164 = if raw.starts_with('+') { raw.to_owned() } else { format!("+{raw}") };
    called_number("virtual_phone_number", &e164)
        .map_err(|_| format!("virtual_phone_number: {raw:?} is not a phone number with its country code (74951234567)"))
}

/// The caller: UIS's international numbers get their `+`; a hidden number is no caller.
fn caller(raw: &str) -> Option<Caller> {
    if (11..=15).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_digit()) {
        return Caller::parse(&format!("+{raw}"));
    }
    Caller::parse(raw)
}

/// A field that is absent or null.
fn get<'a>(obj: &'a Obj, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

/// A string or a number as its trimmed text; `None` when absent, null or empty.
fn text(obj: &Obj, name: &str) -> Result<Option<String>, String> {
    let s = match get(obj, name) {
        None => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("{name}: expected a string or a number, got {other}")),
    };
    Ok(Some(s).filter(|s| !s.is_empty()))
}

/// Whole seconds, as a number or its text.
fn seconds(obj: &Obj, name: &str) -> Result<Option<u32>, String> {
    let bad = || format!("{name}: not whole seconds between 0 and {LONGEST_CALL_S}");
    let n = match get(obj, name) {
        None => return Ok(None),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.trim().parse::<u64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if n > LONGEST_CALL_S {
        return Err(bad());
    }
    u32::try_from(n).map(Some).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::http::HeaderMap;

    use super::*;
    use crate::config::Config;

    /// 2027-01-15T08:00:00Z (11:00 in Moscow).
    const NOW: Ts = Ts::from_millis(1_800_000_000_000);
    const RECORD: &str = "https://app.uiscom.ru/system/media/talk/1347145563/3dd1e8815bde5e7f9bb15831e1f51e63/";

    fn uis() -> Uis {
        Uis { timezone: chrono_tz::Europe::Moscow }
    }

    /// A template as UIS fills it in: each `{{name}}` becomes the variable's JSON value (strings
    /// quoted, numbers bare, null for an empty one), as UIS's own notifications show it.
    fn render(template: &str, vars: &[(&str, Value)]) -> String {
        let mut body = template.to_owned();
        for (name, value) in vars {
            body = body.replace(&format!("{{{{{name}}}}}"), &value.to_string());
        }
        assert!(!body.contains("{{"), "a variable left: {body}");
        body
    }

    /// The variables of one incoming call, as UIS sends them.
    fn vars(time: &str) -> Vec<(&'static str, Value)> {
        vec![
            ("call_session_id", json!(998677427)),
            ("virtual_phone_number", json!("74951230001")),
            ("contact_phone_number", json!("79161234567")),
            ("notification_time", json!(time)),
            ("direction", json!("in")),
            ("start_time", json!("2027-01-15 10:59:00")),
            ("talk_time_duration", json!(42)),
            ("file_link", json!(RECORD)),
        ]
    }

    fn with(mut vars: Vec<(&'static str, Value)>, name: &str, value: Value) -> Vec<(&'static str, Value)> {
        vars.iter_mut().filter(|(n, _)| *n == name).for_each(|(_, v)| *v = value.clone());
        vars
    }

    /// Verifies and reads a body at [`NOW`].
    fn receive(body: &str) -> Result<Received, Refusal> {
        let headers = HeaderMap::new();
        let req = Inbound { headers: &headers, query: "token=x", body: body.as_bytes(), now: NOW, path_tail: "" };
        let u = uis();
        u.verify(&req)?;
        u.read("uis", &req)
    }

    fn report(body: &str) -> CallReport {
        match receive(body) {
            Ok(Received::Reports(mut r)) if r.len() == 1 => r.remove(0),
            Ok(Received::Answer(a)) => panic!("an answer instead of a report: {a:?}"),
            Ok(Received::Recording { key, recording }) => panic!("a recording of {key}: {recording}"),
            Ok(Received::Reports(r)) => panic!("{} reports", r.len()),
            Err(e) => panic!("refused: {e:?}\n{body}"),
        }
    }

    fn refusal(body: &str) -> String {
        match receive(body) {
            Err(Refusal::Malformed(m)) => m,
            Err(other) => panic!("refused for another reason: {other:?}"),
            Ok(_) => panic!("accepted: {body}"),
        }
    }

    fn ts(rfc3339: &str) -> Ts {
        Ts::from_millis(chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap().timestamp_millis())
    }

    #[test]
    fn the_documented_templates_filled_in_as_uis_does() {
        // The start template, exactly as docs/PBX.md gives it:
        //
        // {
        //   "event": "start",
        //   "call_session_id": {{call_session_id}},
        //   "virtual_phone_number": {{virtual_phone_number}},
        //   "contact_phone_number": {{contact_phone_number}},
        //   "notification_time": {{notification_time}}
        // }
        //
        // and as UIS posts it.
        let body = render(START_TEMPLATE, &vars("2027-01-15 10:59:00.123"));
        assert_eq!(
            body,
            "{\n  \"event\": \"start\",\n  \"call_session_id\": 998677427,\n  \"virtual_phone_number\": \
             \"74951230001\",\n  \"contact_phone_number\": \"79161234567\",\n  \"notification_time\": \
             \"2027-01-15 10:59:00.123\"\n}"
        );
        for template in [START_TEMPLATE, ANSWERED_TEMPLATE, FINISHED_TEMPLATE, LOST_TEMPLATE, RECORDED_TEMPLATE] {
            // Each template is the same five lines, then its event's own.
            assert!(template.starts_with("{\n  \"event\": \""), "{template}");
            for line in [
                "\"call_session_id\": {{call_session_id}},",
                "\"virtual_phone_number\": {{virtual_phone_number}},",
                "\"contact_phone_number\": {{contact_phone_number}},",
                "\"notification_time\": {{notification_time}}",
            ] {
                assert!(template.contains(line), "{line} in {template}");
            }
            let filled = render(template, &vars("2027-01-15 10:59:30"));
            let r = report(&filled);
            assert_eq!((r.key.as_str(), r.called.as_str()), ("uis:998677427", "+74951230001"), "{template}");
            assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("+79161234567"));
        }
    }

    #[test]
    fn a_start_is_a_ringing_call_at_its_local_time() {
        let r = report(&render(START_TEMPLATE, &vars("2027-01-15 10:59:00.123")));
        let expected = CallReport {
            key: CallKey::new("uis", "998677427").unwrap(),
            called: PhoneNumber::parse("+74951230001").unwrap(),
            caller: Caller::parse("+79161234567"),
            started_at: ts("2027-01-15T07:59:00.123Z"),
            answered_at: None,
            ended_at: None,
            status: CallStatus::Ringing,
            duration: None,
            recording_url: None,
        };
        assert_eq!(r, expected, "10:59 in Moscow (UTC+3)");
        // Without the fraction, with an offset, in another zone.
        let r = report(&render(START_TEMPLATE, &vars("2027-01-15 10:59:00")));
        assert_eq!(r.started_at, ts("2027-01-15T07:59:00Z"));
        let r = report(&render(START_TEMPLATE, &vars("2027-01-15T09:59:00+02:00")));
        assert_eq!(r.started_at, ts("2027-01-15T07:59:00Z"), "an offset is taken as it is");
        let body = render(START_TEMPLATE, &vars("2027-01-15 12:59:00"));
        let headers = HeaderMap::new();
        let req = Inbound { headers: &headers, query: "", body: body.as_bytes(), now: NOW, path_tail: "" };
        let Ok(Received::Reports(r)) = Uis { timezone: chrono_tz::Asia::Yekaterinburg }.read("uis", &req) else {
            panic!("not read")
        };
        assert_eq!(r[0].started_at, ts("2027-01-15T07:59:00Z"), "12:59 at UTC+5");

        // The '+' may come with the numbers; a hidden or empty caller is no caller.
        let plus = with(vars("2027-01-15 10:59:00"), "virtual_phone_number", json!("+74951230001"));
        let hidden = with(plus, "contact_phone_number", json!(null));
        let r = report(&render(START_TEMPLATE, &hidden));
        assert_eq!((r.called.as_str(), r.caller), ("+74951230001", None));
        let anonymous = with(vars("2027-01-15 10:59:00"), "contact_phone_number", json!("anonymous"));
        assert_eq!(report(&render(START_TEMPLATE, &anonymous)).caller, None);
        let number = with(vars("2027-01-15 10:59:00"), "virtual_phone_number", json!(74951230001_u64));
        assert_eq!(report(&render(START_TEMPLATE, &number)).called.as_str(), "+74951230001", "a bare number");
    }

    #[test]
    fn each_event_moves_the_call_forward() {
        let r = report(&render(ANSWERED_TEMPLATE, &vars("2027-01-15 10:59:12.500")));
        assert_eq!(
            (r.status, r.answered_at, r.ended_at),
            (CallStatus::Answered, Some(ts("2027-01-15T07:59:12.5Z")), None)
        );
        assert_eq!((r.started_at, r.duration), (ts("2027-01-15T07:59:12.5Z"), None));

        let r = report(&render(FINISHED_TEMPLATE, &vars("2027-01-15 11:00:00.250")));
        let expected = CallReport {
            key: CallKey::new("uis", "998677427").unwrap(),
            called: PhoneNumber::parse("+74951230001").unwrap(),
            caller: Caller::parse("+79161234567"),
            started_at: ts("2027-01-15T07:59:00Z"),
            answered_at: None,
            ended_at: Some(ts("2027-01-15T08:00:00.25Z")),
            status: CallStatus::Completed,
            duration: Some(42),
            recording_url: None,
        };
        assert_eq!(r, expected, "started at start_time, ended at the notification, the talk time");
        // Nobody talked (UIS sends the end of unanswered calls too): missed.
        for talk in [json!(0), json!(null), json!("0")] {
            let v = with(vars("2027-01-15 11:00:00"), "talk_time_duration", talk.clone());
            let r = report(&render(FINISHED_TEMPLATE, &v));
            assert_eq!((r.status, r.duration), (CallStatus::Missed, Some(0)), "{talk}");
        }
        // Without start_time (or with null): the notification's time.
        let v = with(vars("2027-01-15 11:00:00"), "start_time", json!(null));
        assert_eq!(report(&render(FINISHED_TEMPLATE, &v)).started_at, ts("2027-01-15T08:00:00Z"));

        let r = report(&render(LOST_TEMPLATE, &vars("2027-01-15 10:59:40")));
        assert_eq!((r.status, r.duration, r.ended_at), (CallStatus::Missed, Some(0), Some(ts("2027-01-15T07:59:40Z"))));

        let r = report(&render(RECORDED_TEMPLATE, &vars("2027-01-15 11:00:05")));
        assert_eq!((r.status, r.recording_url.as_deref(), r.ended_at), (CallStatus::Answered, Some(RECORD), None));
        // callpool's own answer.
        assert!(matches!(uis().reply(&[]), Reply::Json(_)));
    }

    #[test]
    fn outgoing_calls_are_answered_and_not_recorded() {
        for template in [ANSWERED_TEMPLATE, FINISHED_TEMPLATE, RECORDED_TEMPLATE] {
            let out = with(vars("2027-01-15 10:59:30"), "direction", json!("out"));
            let got = receive(&render(template, &out));
            assert!(
                matches!(&got, Ok(Received::Answer(Reply::Json(v))) if *v == json!({"result": "ignored"})),
                "{template}: {:?}",
                got.as_ref().err()
            );
        }
        // An event that is always incoming may carry the direction too.
        let with_direction = START_TEMPLATE.replace("}}\n}", "}},\n  \"direction\": {{direction}}\n}");
        assert_eq!(report(&render(&with_direction, &vars("2027-01-15 10:59:30"))).status, CallStatus::Ringing);
        let out = with(vars("2027-01-15 10:59:30"), "direction", json!("out"));
        assert!(matches!(receive(&render(&with_direction, &out)), Ok(Received::Answer(_))));
    }

    #[test]
    fn malformed_notifications_name_the_field() {
        let start = |v: &[(&'static str, Value)]| render(START_TEMPLATE, v);
        let base = || vars("2027-01-15 10:59:00");
        // Not the template.
        assert!(refusal("").starts_with("body: empty"));
        // A quoted variable: harmless for a number, broken JSON for a string.
        let quoted = START_TEMPLATE.replace("{{call_session_id}}", "\"{{call_session_id}}\"");
        assert_eq!(report(&render(&quoted, &base())).key.as_str(), "uis:998677427");
        let quoted = START_TEMPLATE.replace("{{virtual_phone_number}}", "\"{{virtual_phone_number}}\"");
        let m = refusal(&render(&quoted, &base()));
        assert!(m.starts_with("body: not JSON") && m.contains("unquoted"), "{m}");
        let m = refusal(
            &START_TEMPLATE.replace("{{call_session_id}}", "998677427").replace("{{", "\"").replace("}}", "\""),
        );
        assert!(m.starts_with("virtual_phone_number: "), "{m}");
        assert!(refusal("[1, 2]").starts_with("body: must be a JSON object"));
        let extra = START_TEMPLATE.replace("\"event\"", "\"notification_name\": {{notification_name}},\n  \"event\"");
        let m = refusal(&render(&extra, &[base(), vec![("notification_name", json!("callpool"))]].concat()));
        assert!(m.starts_with("notification_name: unknown field"), "{m}");
        // Each field.
        let without = |name: &str| {
            let mut obj: Obj = serde_json::from_str(&start(&base())).unwrap();
            obj.remove(name);
            Value::Object(obj).to_string()
        };
        for name in ["event", "call_session_id", "virtual_phone_number", "notification_time"] {
            assert!(refusal(&without(name)).starts_with(&format!("{name}: required")), "{name}");
        }
        let m = refusal(&start(&base()).replace("\"start\"", "\"ringing\""));
        assert!(m.starts_with("event: \"ringing\" is not one of start, answered"), "{m}");
        assert!(refusal(&start(&with(base(), "call_session_id", json!("a b"))))
            .starts_with("call_session_id: call_id must be"));
        let m = refusal(&start(&with(base(), "call_session_id", json!([1]))));
        assert!(m.starts_with("call_session_id: expected a string or a number"), "{m}");
        let m = refusal(&start(&with(base(), "virtual_phone_number", json!("100"))));
        assert!(m.starts_with("virtual_phone_number: \"100\" is not a phone number"), "{m}");
        let m = refusal(&start(&with(base(), "notification_time", json!("15.01.2027 10:59"))));
        assert!(m.starts_with("notification_time: \"15.01.2027 10:59\" is not a time"), "{m}");
        let m = refusal(&start(&with(base(), "notification_time", json!("2027-01-15 11:30:00"))));
        assert!(m.contains("more than 5 minutes in the future (check `timezone`"), "{m}");
        // The event's own fields.
        let finished = |v: &[(&'static str, Value)]| render(FINISHED_TEMPLATE, v);
        let m = refusal(&finished(&with(base(), "direction", json!(null))));
        assert!(m.starts_with("direction: required for event \"finished\""), "{m}");
        assert!(refusal(&finished(&with(base(), "direction", json!("both"))))
            .starts_with("direction: \"both\" is not in or out"));
        let no_talk = FINISHED_TEMPLATE.replace(",\n  \"talk_time_duration\": {{talk_time_duration}}", "");
        assert!(refusal(&render(&no_talk, &base())).starts_with("talk_time_duration: required for event \"finished\""));
        for talk in [json!(-1), json!(1.5), json!("many"), json!(8 * 86_400)] {
            let m = refusal(&finished(&with(base(), "talk_time_duration", talk.clone())));
            assert!(m.starts_with("talk_time_duration: not whole seconds"), "{talk}: {m}");
        }
        let m = refusal(&finished(&with(base(), "start_time", json!("yesterday"))));
        assert!(m.starts_with("start_time: \"yesterday\" is not a time"), "{m}");
        let recorded = |v: &[(&'static str, Value)]| render(RECORDED_TEMPLATE, v);
        let m = refusal(&recorded(&with(base(), "file_link", json!("talk/1347145563"))));
        assert!(m.starts_with("file_link: \"talk/1347145563\" is not an http(s) URL"), "{m}");
        assert!(refusal(&recorded(&with(base(), "file_link", json!(null)))).starts_with("file_link: required"));
    }

    #[test]
    fn local_times_around_daylight_saving_changes() {
        let berlin = Uis { timezone: chrono_tz::Europe::Berlin };
        let gap = berlin.time("notification_time", "2027-03-28 02:30:00").unwrap_err();
        assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
        assert_eq!(berlin.time("start_time", "2026-10-25 02:30:00.5").unwrap(), ts("2026-10-25T00:30:00.5Z"));
    }

    #[test]
    fn the_reader_requires_a_token_or_addresses_and_takes_the_time_zone() {
        let config = |pbx: &str| {
            let text = format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"uis\"\nkind = \"uis\"\n{pbx}");
            Config::parse_with(&text, "test.toml", &HashMap::<String, String>::new(), &[&WEBHOOK])
        };
        let problems = |pbx: &str| config(pbx).err().map(|e| e.problems.join("; ")).unwrap_or_default();
        let none = problems("");
        assert!(none.contains("token: UIS signs nothing: set token"), "{none}");
        assert!(problems("timezone = \"Asia/Almaty\"").contains("UIS signs nothing"));

        let c = config("token = \"uis-static-token-0123\"").unwrap();
        let adapter = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        let body = render(START_TEMPLATE, &vars("2027-01-15 10:59:00"));
        let headers = HeaderMap::new();
        let req = Inbound { headers: &headers, query: "", body: body.as_bytes(), now: NOW, path_tail: "" };
        assert_eq!(adapter.verify(&req), Ok(()), "nothing of its own to check");
        let Ok(Received::Reports(r)) = adapter.read("uis", &req) else { panic!("not read") };
        assert_eq!(r[0].started_at, ts("2027-01-15T07:59:00Z"), "Moscow by default");
        assert!(config("allow_from = [\"203.0.113.0/24\"]").is_ok(), "addresses alone");
        let c = config("token = \"uis-static-token-0123\"\ntimezone = \"Asia/Yekaterinburg\"").unwrap();
        let adapter = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        let Ok(Received::Reports(r)) = adapter.read("uis", &req) else { panic!("not read") };
        assert_eq!(r[0].started_at, ts("2027-01-15T05:59:00Z"), "10:59 at UTC+5");

        let tz = problems("token = \"uis-static-token-0123\"\ntimezone = \"Moscow\"");
        assert!(tz.contains("timezone: \"Moscow\" is not an IANA time zone"), "{tz}");
        let unknown = problems("token = \"uis-static-token-0123\"\nsecret = \"uis-secret-0123456789\"");
        assert!(unknown.contains("unknown field `secret`"), "{unknown}");
    }
}
