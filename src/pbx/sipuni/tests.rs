//! The sipuni vendor's unit tests: its documented examples, signatures, answers and settings.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue};

use super::*;
use crate::config::Config;
use crate::pbx::adapter::{callback_config, form_trigger};

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

fn with(fields: &[(&'static str, &'static str)], name: &str, value: &'static str) -> Vec<(&'static str, &'static str)> {
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
        Ok(Received::Recording { key, recording }) => format!("a recording of {key}: {recording}"),
        Err(e) => format!("{e:?}"),
    }
}

fn report(fields: &[(&str, &str)]) -> CallReport {
    match receive(fields) {
        Ok(Received::Reports(mut r)) if r.len() == 1 => r.remove(0),
        Ok(Received::Answer(a)) => panic!("an answer instead of a report: {a:?}"),
        Ok(Received::Recording { key, recording }) => panic!("a recording of {key}: {recording}"),
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
    let sip_line = with(&with(&with(&call_fields(), "pbxdstnum", "100021"), "dst_type", "1"), "dst_num", "74951230001");
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
        let text = format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"sip\"\nkind = \"sipuni\"\n{pbx}");
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
    let ring = Ring::one("cb-0123456789abcdef01234567", t.own_operator().unwrap());
    let req = t.request(&reqwest::Client::new(), &ring, &callback("+79161234567"), NOW).build().unwrap();
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
    assert_eq!((req.method().as_str(), req.url().as_str()), ("POST", "http://sipuni.test/api/callback/call_number"));
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
        let pbx = "id = \"sip\"\nkind = \"sipuni\"\ntoken = \"sipuni-token-0123456789\"";
        callback_config(pbx, "sipuni", trigger, env, &[&WEBHOOK, &TRIGGER])
    };
    let form = |c: &Config| {
        let (req, fields) = posted(form_trigger(c));
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
