//! The mango vendor's unit tests: its documented examples, signatures, answers and settings.

use std::collections::HashMap;

use axum::http::HeaderMap;
use callpool_pool::SessionAttrs;

use super::trigger::*;
use super::*;
use crate::calls::{Call, Match, MatchKind, NumberKind};
use crate::config::Config;

const KEY: &str = "test-api-key-0001";
const SALT: &str = "test-api-salt-0001";
const NOW: Ts = Ts::from_millis(1_800_000_000_000);

fn mango() -> Mango {
    Mango { api_key: KEY.into(), api_salt: SALT.into(), api_url: "http://mango.test/vpbx".into() }
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
        Ok(Received::Recording { key, recording }) => panic!("a recording of {key}: {recording}"),
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
    assert_eq!((r.key.as_str(), r.called.as_str(), r.status), ("mg:1MN0Q1MDOQ==", "+74951230001", CallStatus::Ringing));
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
        assert_eq!(report("events/call", &call(state, location, "74951230001")).status, status, "{state} {location}");
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
    assert!(is_ignored("events/summary", &SUMMARY_ANSWERED.replace("\"call_direction\":1", "\"call_direction\":0")));
    assert!(is_ignored("events/summary", &SUMMARY_ANSWERED.replace("\"74951230001\"", "\"sip:line@x.mangosip.ru\"")));
}

#[test]
fn other_events_are_answered_and_not_recorded() {
    for event in ["events/dtmf", "events/sms", "events/ping", "events/record/tagged", "result/callback"] {
        assert!(is_ignored(event, "{}"), "{event}");
    }
    // Without the event's path callpool cannot tell what it is.
    assert!(malformed("", CALL_EXAMPLE).starts_with("path: "));
}

/// The call and the recording a recording event names, `None` when it records nothing.
fn recording(event: &str, json: &str) -> Option<(String, String)> {
    match receive(event, json) {
        Ok(Received::Recording { key, recording }) => Some((key.as_str().to_owned(), recording)),
        Ok(Received::Answer(Reply::Json(v))) if v == json!({"result": "ignored"}) => None,
        Ok(_) => panic!("{event} {json}: not a recording"),
        Err(e) => panic!("{event} {json}: refused: {e:?}"),
    }
}

#[test]
fn a_completed_recording_is_attached_to_its_call() {
    let completed =
        RECORDING_EXAMPLE.replace("\"Started\"", "\"Completed\", \"completion_code\":1000, \"recipient\":\"Cloud\"");
    let expected = Some(("mg:232wc3e3w3s222".to_owned(), "mango:r100:777:500:256".to_owned()));
    assert_eq!(recording("events/recording", &completed), expected);
    // Its start, its going on in another leg: nothing yet.
    assert_eq!(recording("events/recording", RECORDING_EXAMPLE), None);
    assert_eq!(recording("events/recording", &RECORDING_EXAMPLE.replace("Started", "Continued")), None);
    // Without the optional fields, a code of the "done" class as text, kept in the cloud and mailed.
    assert_eq!(recording("/events/recording/", &RECORDING_EXAMPLE.replace("Started", "Completed")), expected);
    assert_eq!(recording("events/recording", &completed.replace("1000", "\"1001\"")), expected);
    assert_eq!(recording("events/recording", &completed.replace("\"Cloud\"", "\"CloudAndMail\"")), expected);
    // Not kept: too short (4002), the account restricted (22xx), sent by e-mail only.
    for not_kept in [
        completed.replace("1000", "4002"),
        completed.replace("1000", "2200"),
        completed.replace("\"Cloud\"", "\"Mail\""),
    ] {
        assert_eq!(recording("events/recording", &not_kept), None, "{not_kept}");
    }
    // The documentation's example of events/record/added (§3.1.8).
    let added = r#"{"entry_id":"NTAwOTQxMTAyMg==","product_id":300022532,"user_id":300049012,"timestamp":1578664187,"recording_id":"MToxMDAwNjA4NTo1MDA5NDExMDIyOjE="}"#;
    assert_eq!(
        recording("events/record/added", added),
        Some(("mg:NTAwOTQxMTAyMg==".to_owned(), "mango:MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=".to_owned()))
    );
    let longest = completed.replace("r100:777:500:256", &"r".repeat(128));
    assert_eq!(recording("events/recording", &longest).map(|r| r.1.len()), Some(6 + 128));
}

#[test]
fn malformed_recording_events_name_the_field() {
    let completed = RECORDING_EXAMPLE.replace("Started", "Completed");
    for (json, expected) in [
        (completed.replace("\"r100:777:500:256\"", "\"\""), "recording_id: must be 1 to 128 characters"),
        (completed.replace("r100:777:500:256", "r100 777"), "recording_id: must be"),
        (completed.replace("r100:777:500:256", "../x?y"), "recording_id: must be"),
        (completed.replace("r100:777:500:256", &"r".repeat(129)), "recording_id: must be"),
        (completed.replace("\"recording_id\"", "\"recording\""), "recording_id: required"),
        (completed.replace("\"r100:777:500:256\"", "[]"), "recording_id: expected a string"),
        (completed.replace("\"entry_id\"", "\"entry\""), "entry_id: required"),
        (completed.replace("\"Completed\"", "\"Stopped\""), "recording_state: \"Stopped\" is not one of"),
        (completed.replace("\"recording_state\"", "\"state\""), "recording_state: required"),
        (completed.replace("\"seq\"", "\"completion_code\":\"done\", \"seq\""), "completion_code: "),
    ] {
        check_malformed("events/recording", &json, expected);
    }
    check_malformed("events/record/added", r#"{"entry_id":"NTAw","recording_id":"a b"}"#, "recording_id: must be");
    check_malformed("events/record/added", r#"{"recording_id":"NTAw"}"#, "entry_id: required");
}

/// The request a recording is fetched by, built at once (Mango's needs no API call first).
fn fetch(adapter: &dyn Adapter, recording: &str) -> Result<reqwest::Request, RecordingError> {
    let http = reqwest::Client::new();
    let built = futures_util::FutureExt::now_or_never(adapter.recording(&http, recording)).expect("ready at once");
    built.map(|r| r.build().expect("a request"))
}

#[test]
fn a_recording_is_asked_of_mangos_api_signed_as_its_events_are() {
    let req = fetch(&mango(), "mango:MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=").unwrap();
    assert_eq!((req.method().as_str(), req.url().as_str()), ("POST", "http://mango.test/vpbx/queries/recording/post"));
    assert_eq!(req.headers()[reqwest::header::CONTENT_TYPE], "application/x-www-form-urlencoded");
    let body = req.body().and_then(reqwest::Body::as_bytes).expect("a form body");
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    // The json in the order of Mango's example (§3.5.1); the sign computed independently:
    // printf '%s' "$KEY$JSON$SALT" | sha256sum
    let json = r#"{"recording_id":"MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=","action":"play"}"#;
    let expected = "1cd62efe643a270d55a9b0f9f7f68fc160cc2955e298859d606deaaf25e6ed01";
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(fields, [("vpbx_api_key", KEY), ("sign", expected), ("json", json)]);
    // Another link as it is; anything else callpool cannot fetch.
    let link = fetch(&mango(), "https://pbx.example/rec/1.mp3").unwrap();
    assert_eq!((link.method().as_str(), link.url().as_str()), ("GET", "https://pbx.example/rec/1.mp3"));
    for other in ["mango:", "mango:a b", "mango:../../x?y", "r100:777", "ftp://pbx.example/1.mp3"] {
        assert_eq!(fetch(&mango(), other).err(), Some(RecordingError::NotFetchable), "{other}");
    }
}

#[test]
fn the_reader_takes_the_apis_url_for_recordings() {
    let config = |url: &str| {
        let text = format!(
            "[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"mg\"\nkind = \"mango\"\napi_key = \"{KEY}\"\n\
             api_salt = \"{SALT}\"\n{url}"
        );
        Config::parse_with(&text, "test.toml", &HashMap::new(), &[&WEBHOOK])
    };
    let url = |c: Config| {
        let adapter = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        fetch(adapter.as_ref(), "mango:r1").unwrap().url().to_string()
    };
    assert_eq!(url(config("").unwrap()), "https://app.mango-office.ru/vpbx/queries/recording/post");
    let local = config("url = \"http://127.0.0.1:9/vpbx/\"").unwrap();
    assert_eq!(url(local), "http://127.0.0.1:9/vpbx/queries/recording/post");
    let problems = config("url = \"ftp://x\"").err().map(|e| e.problems.join("; ")).unwrap_or_default();
    assert!(problems.contains("url: "), "{problems}");
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
    check("events/call", &appeared.replace("1558422128", "1900000000"), "timestamp: more than 5 minutes in the future");
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
    let req = Inbound { headers: &h, query: "", body: unsigned_json.as_bytes(), now: NOW, path_tail: "events/call" };
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
    assert!(none.contains("api_key: required for kind = \"mango\"") && none.contains("api_salt: required"), "{none}");
    assert!(problems(&format!("api_key = \"{KEY}\"\napi_salt = \"short\""))
        .contains("api_salt: must be at least 16 characters"));
    let unknown = problems(&format!("api_key = \"{KEY}\"\napi_salt = \"{SALT}\"\nsecret = \"{SALT}\""));
    assert!(unknown.contains("unknown field `secret`"), "{unknown}");
}

fn check_malformed(event: &str, json: &str, expected: &str) {
    let m = malformed(event, json);
    assert!(m.starts_with(expected), "{json}: {m:?} does not start with {expected:?}");
}

// The callback trigger and the calls it places.
mod callback;
