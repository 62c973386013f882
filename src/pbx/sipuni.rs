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

use std::collections::HashMap;

use callpool_pool::{PhoneNumber, Ts};
use serde::Deserialize;
use serde_json::json;

use super::adapter::{
    called_number, not_in_future, recording_url, Adapter, CallAccepted, Inbound, Received, Refusal, Reply,
    LONGEST_CALL_S,
};
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section};

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
}
