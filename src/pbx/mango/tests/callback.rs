//! The mango callback trigger's unit tests: the command, Mango's answers, the trigger's
//! settings, and the calls the command places.

use super::*;
use crate::pbx::adapter::{callback_config, form_trigger};

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
    let ring = Ring::one("cb-0123456789abcdef01234567", t.own_operator().unwrap());
    let req = t.request(&reqwest::Client::new(), &ring, &callback("+79161234567"), NOW).build().unwrap();
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
    assert_eq!(why, "Mango refused the callback command: 3102 (the sign does not match: check api_key and api_salt)");
    assert!(refused(200, r#"{"result":"3100","message":"bad extension"}"#).ends_with("line_number) bad extension"));
    assert!(refused(200, r#"{"result":2240}"#).contains("2240 (not enough money on the account)"));
    assert!(refused(200, r#"{"result":2211}"#).contains("limit for the period"), "a day's limit outlasts the retries");
    assert!(refused(200, r#"{"result":4001}"#).contains("not supported"));
    assert!(refused(200, r#"{"result":5010}"#).contains("5010 (not enough money to add the service)"));
    assert!(refused(200, r#"{"result":5104}"#).contains("5104 (a server error)"), "by its class");
    assert!(refused(200, r#"{"result":2219}"#).contains("2219 (the service's limit"), "by its class");
    let http = refused(400, r#"{"result":3104}"#);
    assert!(http.starts_with("Mango refused the callback command: HTTP 400 Bad Request, 3104 (a parameter"), "{http}");
    assert!(refused(404, "").contains("HTTP 404"));
    assert!(refused(200, r#"{"ok":true}"#).contains("no result code"));
}

#[test]
fn the_trigger_reader_takes_the_vpbx_key_and_the_employee() {
    let config = |trigger: &str, env: &[(&str, &str)]| {
        let pbx = format!("id = \"mg\"\nkind = \"mango\"\napi_key = \"{KEY}\"\napi_salt = \"{SALT}\"");
        callback_config(&pbx, "mango", trigger, env, &[&WEBHOOK, &TRIGGER])
    };
    let form = |c: &Config| {
        let (req, fields) = posted(form_trigger(c));
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
    let c =
        config(&format!(r#"api_key = "{KEY}", api_salt = "{SALT}", extension = "101", line_number = "Офис SIP""#), &[]);
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

#[test]
fn a_callbacks_call_moves_on_as_its_legs_arrive_in_any_order() {
    // The visitor's leg ends before its answer arrives: the late answer adds its time only.
    let mut c = stored(&report("events/call", &leg(false, "Appeared", None)));
    for json in [leg(false, "Connected", None), leg(true, "Appeared", None), leg(true, "Disconnected", Some(1120))] {
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
