//! The zadarma vendor's unit tests: its documented examples, signatures, answers and settings.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, HeaderValue};

use super::*;
use crate::config::Config;
use crate::pbx::adapter::{callback_config, form_trigger};

/// 2027-01-15T08:00:00Z.
const NOW: Ts = Ts::from_millis(1_800_000_000_000);
/// The shape of Zadarma's API secrets (its own examples' placeholder).
const SECRET: &str = "8a8e91d214fb728889c7";

fn zadarma() -> Zadarma {
    Zadarma { secret: SECRET.into(), timezone: chrono_tz::Europe::Moscow, api: None }
}

/// With the API's user key: recordings are kept.
fn with_api() -> Zadarma {
    Zadarma { api: Some(Api { base_url: "http://zd.test".into(), key: KEY.into() }), ..zadarma() }
}

fn headers(signature: Option<&str>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
    if let Some(s) = signature {
        h.insert("Signature", HeaderValue::from_str(s).unwrap());
    }
    h
}

/// A request at [`NOW`] (the one place the tests build an [`Inbound`]).
fn inbound<'a>(headers: &'a HeaderMap, query: &'a str, body: &'a [u8]) -> Inbound<'a> {
    Inbound { headers, query, body, now: NOW, path_tail: "" }
}

fn body(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// Verifies and reads a form signed as Zadarma signs it.
fn receive(fields: &[(&str, &str)]) -> Result<Received, Refusal> {
    receive_by(&zadarma(), fields)
}

/// As [`receive`], by the PBX `z`.
fn receive_by(z: &Zadarma, fields: &[(&str, &str)]) -> Result<Received, Refusal> {
    let b = body(fields);
    let map: HashMap<String, String> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sig = signed_text(&map).map(|s| sign(&s, SECRET));
    let h = headers(sig.as_deref());
    let req = inbound(&h, "pbx=zd", b.as_bytes());
    z.verify(&req)?;
    z.read("zd", &req)
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

fn refusal(fields: &[(&str, &str)]) -> String {
    match receive(fields) {
        Err(Refusal::Malformed(m)) => m,
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("accepted: {fields:?}"),
    }
}

const START_FIELDS: [(&str, &str); 5] = [
    ("event", "NOTIFY_START"),
    ("call_start", "2027-01-15 10:59:00"),
    ("pbx_call_id", "in_0123abcd"),
    ("caller_id", "79161234567"),
    ("called_did", "74951230001"),
];

fn end_fields(disposition: &'static str, duration: &'static str) -> Vec<(&'static str, &'static str)> {
    let mut f = START_FIELDS.to_vec();
    f[0] = ("event", "NOTIFY_END");
    f.extend([
        ("internal", "100"),
        ("duration", duration),
        ("disposition", disposition),
        ("status_code", "16"),
        ("is_recorded", "1"),
        ("call_id_with_rec", "1700000000.123456"),
    ]);
    f
}

#[test]
fn signatures_are_base64_of_the_hex_hmac_of_each_events_fields() {
    // Zadarma publishes no worked example with values. The expected values were computed
    // the way its PHP does (`base64_encode(hash_hmac('sha1', $s, $secret))`, hex text) with
    // Python's hmac: base64.b64encode(hmac.new(secret, s, sha1).hexdigest().encode()).
    let start = "79161234567749512300012027-01-15 10:59:00";
    assert_eq!(sign(start, SECRET), "MWQ1N2RiYmU5MGQzMTJmYzFjMDhkZDFkZDIzNmMyY2QyMTM3NTdkMA==");
    assert_eq!(verify(start, SECRET, "MWQ1N2RiYmU5MGQzMTJmYzFjMDhkZDFkZDIzNmMyY2QyMTM3NTdkMA=="), Ok(()));
    let record = "in_0123abcd1700000000.123456";
    assert_eq!(sign(record, SECRET), "OTUxNWJjZDgyYzM0ZDAzYjYwOTQ3NGZkYmY1MzRmMDZjYzRmNzc4Yg==");
    // Base64 of the raw digest (what some third-party code computes) is not what Zadarma sends.
    assert_eq!(verify(start, SECRET, "HVfbvpDTEvwcCN0d0jbCzSE3V9A=").unwrap_err().reason(), "bad_signature");
    assert_eq!(verify(start, "another-secret-0123", &sign(start, SECRET)).unwrap_err().reason(), "bad_signature");

    // The fields each event signs (zadarma/user-api-v1 lib/Webhook/Notify*.php).
    let text =
        |pairs: &[(&str, &str)]| signed_text(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    assert_eq!(text(&START_FIELDS).as_deref(), Some(start));
    assert_eq!(text(&end_fields("answered", "63")).as_deref(), Some(start));
    let answer = [
        ("event", "NOTIFY_ANSWER"),
        ("caller_id", "79161234567"),
        ("destination", "100"),
        ("call_start", "2027-01-15 10:59:00"),
        ("pbx_call_id", "in_0123abcd"),
    ];
    assert_eq!(text(&answer).as_deref(), Some("791612345671002027-01-15 10:59:00"));
    let rec = [("event", "NOTIFY_RECORD"), ("pbx_call_id", "in_0123abcd"), ("call_id_with_rec", "1700000000.123456")];
    assert_eq!(text(&rec).as_deref(), Some(record));
    assert_eq!(text(&[("event", "NOTIFY_INTERNAL")]), None);
}

#[test]
fn unsigned_or_tampered_notifications_are_refused() {
    let z = zadarma();
    let b = body(&START_FIELDS);
    let check = |h: &HeaderMap, b: &str| z.verify(&inbound(h, "pbx=zd", b.as_bytes())).map_err(|e| e.reason());
    let good = sign("79161234567749512300012027-01-15 10:59:00", SECRET);
    assert_eq!(check(&headers(Some(&good)), &b), Ok(()));
    assert_eq!(check(&headers(None), &b), Err("no_signature"));
    assert_eq!(check(&headers(Some("not-it")), &b), Err("bad_signature"));
    let moved = b.replace("74951230001", "74951230002");
    assert_eq!(check(&headers(Some(&good)), &moved), Err("bad_signature"), "another tracking number");
    // Every event callpool checks needs its signature.
    for event in ["NOTIFY_END", "NOTIFY_ANSWER", "NOTIFY_RECORD"] {
        let b = b.replace("NOTIFY_START", event);
        assert_eq!(check(&headers(None), &b), Err("no_signature"), "{event}");
        assert_eq!(check(&headers(Some(&good.replace('M', "N"))), &b), Err("bad_signature"), "{event}");
    }
}

#[test]
fn a_start_is_a_ringing_call_at_its_local_start_time() {
    let r = report(&START_FIELDS);
    assert_eq!((r.key.as_str(), r.called.as_str(), r.status), ("zd:in_0123abcd", "+74951230001", CallStatus::Ringing));
    assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("79161234567"));
    assert_eq!(r.started_at.to_string(), "2027-01-15T07:59:00.000Z", "10:59 in Moscow (UTC+3)");
    assert_eq!((r.ended_at, r.duration, r.answered_at, r.recording_url), (None, None, None, None));

    // The '+' may come with the numbers; a hidden caller is no caller.
    let mut f = START_FIELDS.to_vec();
    f[3] = ("caller_id", "anonymous");
    f[4] = ("called_did", "+74951230001");
    let r = report(&f);
    assert_eq!((r.called.as_str(), r.caller), ("+74951230001", None));
    f[3] = ("caller_id", "0");
    assert_eq!(report(&f).caller, None);

    // The account's time zone comes from the configuration.
    let b = body(&START_FIELDS);
    let h = headers(Some(&sign("79161234567749512300012027-01-15 10:59:00", SECRET)));
    let req = inbound(&h, "", b.as_bytes());
    let utc = Zadarma { timezone: chrono_tz::UTC, ..zadarma() };
    let err = utc.read("zd", &req).err().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(err.contains("more than 5 minutes in the future"), "10:59 UTC is after NOW: {err}");
    let yekaterinburg = Zadarma { timezone: chrono_tz::Asia::Yekaterinburg, ..zadarma() };
    let Ok(Received::Reports(r)) = yekaterinburg.read("zd", &req) else { panic!("not read") };
    assert_eq!(r[0].started_at.to_string(), "2027-01-15T05:59:00.000Z", "10:59 at UTC+5");
}

#[test]
fn an_end_is_final_with_its_disposition_and_duration() {
    let r = report(&end_fields("answered", "63"));
    assert_eq!((r.key.as_str(), r.status, r.duration), ("zd:in_0123abcd", CallStatus::Completed, Some(63)));
    assert_eq!((r.ended_at, r.recording_url.as_deref()), (Some(NOW), None));
    assert_eq!(r.started_at.to_string(), "2027-01-15T07:59:00.000Z");
    for (disposition, status) in [
        ("busy", CallStatus::Busy),
        ("cancel", CallStatus::Missed),
        ("no answer", CallStatus::Missed),
        ("failed", CallStatus::Failed),
        ("no money", CallStatus::Failed),
        ("unallocated number", CallStatus::Failed),
        ("no limit", CallStatus::Failed),
        ("no day limit", CallStatus::Failed),
        ("line limit", CallStatus::Failed),
        ("no money, no limit", CallStatus::Failed),
    ] {
        let r = report(&end_fields(disposition, "0"));
        assert_eq!((r.status, r.duration), (status, Some(0)), "{disposition}");
    }
}

#[test]
fn answers_records_and_other_events_are_answered_without_a_report() {
    let answer = [
        ("event", "NOTIFY_ANSWER"),
        ("caller_id", "79161234567"),
        ("destination", "100"),
        ("call_start", "2027-01-15 10:59:00"),
        ("pbx_call_id", "in_0123abcd"),
        ("internal", "100"),
    ];
    let record = [("event", "NOTIFY_RECORD"), ("pbx_call_id", "in_0123abcd"), ("call_id_with_rec", "1700000000.1")];
    let internal = [("event", "NOTIFY_INTERNAL"), ("pbx_call_id", "in_0123abcd"), ("internal", "100")];
    let out = [("event", "NOTIFY_OUT_START"), ("internal", "100"), ("destination", "79161234567")];
    for fields in [&answer[..], &record, &internal, &out, &[("event", "SMS")]] {
        assert!(matches!(receive(fields), Ok(Received::Answer(Reply::Text(t))) if t.is_empty()), "{fields:?}");
    }
    // A recorded report is answered with an empty 200 too (NOTIFY_START's body would be routing).
    assert_eq!(zadarma().reply(&[]), Reply::Text(String::new()));
}

const RECORD: [(&str, &str); 3] =
    [("event", "NOTIFY_RECORD"), ("pbx_call_id", "in_0123abcd"), ("call_id_with_rec", "1700000000.123456")];

#[test]
fn with_the_api_key_a_record_or_a_recorded_end_is_the_calls_recording() {
    match receive_by(&with_api(), &RECORD) {
        Ok(Received::Recording { key, recording }) => {
            assert_eq!((key.as_str(), recording.as_str()), ("zd:in_0123abcd", "zadarma:1700000000.123456"));
        }
        other => panic!("not a recording: {:?}", other.err()),
    }
    // Without the key it is answered and nothing is kept: callpool could not fetch it.
    assert!(matches!(receive(&RECORD), Ok(Received::Answer(Reply::Text(t))) if t.is_empty()));

    // The end names the recording when `is_recorded` is 1.
    let end = |z: &Zadarma, is_recorded: &'static str| {
        let mut f = end_fields("answered", "63");
        f.retain(|(k, _)| *k != "is_recorded");
        f.push(("is_recorded", is_recorded));
        match receive_by(z, &f) {
            Ok(Received::Reports(r)) => r[0].recording_url.clone(),
            other => panic!("not a report: {:?}", other.err()),
        }
    };
    assert_eq!(end(&with_api(), "1").as_deref(), Some("zadarma:1700000000.123456"));
    assert_eq!(end(&with_api(), "0"), None);
    assert_eq!(end(&zadarma(), "1"), None, "not without the key");

    // Its signature covers pbx_call_id . call_id_with_rec.
    let b = body(&RECORD);
    let check = |sig: &str| with_api().verify(&inbound(&headers(Some(sig)), "", b.as_bytes())).map_err(|e| e.reason());
    assert_eq!(check(&sign("in_0123abcd1700000000.123456", SECRET)), Ok(()));
    assert_eq!(check(&sign("in_0123abcd1700000000.999999", SECRET)), Err("bad_signature"));
    assert_eq!(check(&sign("in_0123abcd1700000000.123456", "another-secret-0123")), Err("bad_signature"));
}

#[test]
fn malformed_records_name_the_field() {
    let refused = |fields: &[(&str, &str)]| match receive_by(&with_api(), fields) {
        Err(Refusal::Malformed(m)) => m,
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("accepted: {fields:?}"),
    };
    let long = "1".repeat(129);
    for bad in ["1700000000.1 2", "../1.mp3", "<b>", "zadarma:1", long.as_str()] {
        let m = refused(&[RECORD[0], RECORD[1], ("call_id_with_rec", bad)]);
        assert!(m.starts_with("call_id_with_rec: expected 1 to 128 letters"), "{bad}: {m}");
    }
    assert!(refused(&RECORD[..2]).contains("call_id_with_rec: required"));
    assert!(refused(&[RECORD[0], RECORD[2]]).contains("pbx_call_id: required"));
    assert!(refused(&[RECORD[0], ("pbx_call_id", "in 1"), RECORD[2]]).contains("pbx_call_id: call_id must be"));
    let mut end = end_fields("answered", "63");
    end.retain(|(k, _)| *k != "call_id_with_rec");
    end.push(("call_id_with_rec", "1/2"));
    assert!(refused(&end).starts_with("call_id_with_rec: expected"));
    // The longest id taken, and the shape of a recording file's name.
    let longest = "1".repeat(128);
    for good in [longest.as_str(), "1-1458313316.343456-100-2016-01-11-100155"] {
        assert!(
            matches!(
                receive_by(&with_api(), &[RECORD[0], RECORD[1], ("call_id_with_rec", good)]),
                Ok(Received::Recording { .. })
            ),
            "{good}"
        );
    }
}

#[test]
fn a_recordings_link_is_asked_of_the_api_signed_as_zadarmas_library_signs() {
    // The expected header was computed as for the callback (Python's hmac, base64 of the hex digest
    // of method . query . md5(query)), for the query the library's getPbxRecord($callId, null) sends.
    let http = reqwest::Client::new();
    let params = [("call_id", "1700000000.123456"), ("format", "json")];
    let req = api_get(&http, "http://zd.test", KEY, SECRET, RECORD_METHOD, &params).build().unwrap();
    assert_eq!(req.method(), reqwest::Method::GET);
    assert_eq!(req.url().as_str(), "http://zd.test/v1/pbx/record/request/?call_id=1700000000.123456&format=json");
    assert_eq!(
        req.headers()[reqwest::header::AUTHORIZATION],
        "a248a6a984459935b569:YzE3ODExNDAxOTk1ODdjZjg3OTUwMDk3Njk5ZGRmNTM3ODYyZmFmYg=="
    );

    // What is not a Zadarma id is fetched as a link, or not at all; nothing is asked without the key.
    use futures_util::FutureExt;
    let url = |z: &Zadarma, rec: &str| {
        z.recording(&http, rec).now_or_never().map(|r| r.map(|b| b.build().unwrap().url().to_string()))
    };
    assert_eq!(url(&with_api(), "https://pbx.example/1.mp3"), Some(Ok("https://pbx.example/1.mp3".into())));
    assert_eq!(url(&with_api(), "1700000000.1"), Some(Err(RecordingError::NotFetchable)));
    assert_eq!(url(&with_api(), "zadarma:../x"), Some(Err(RecordingError::NotFetchable)));
    assert_eq!(url(&zadarma(), "zadarma:1700000000.1"), Some(Err(RecordingError::NotFetchable)));
}

#[test]
fn the_apis_answers_give_a_link_or_say_why_not() {
    use reqwest::StatusCode;
    let ok = StatusCode::OK;
    let link = "https://api.zadarma.com/v1/pbx/record/download/NjM3M/1-1458313316.343456-100.mp3";
    // Zadarma's OpenAPI document's two answers: by call_id, and by pbx_call_id.
    let one = format!(r#"{{"status":"success","link":"{link}","lifetime_till":"2027-01-15 11:30:00"}}"#);
    assert_eq!(record_answer(ok, &one), Ok(link.to_owned()));
    let many = format!(
        r#"{{"status":"success","links":["{link}","https://x.test/2.mp3"],"lifetime_till":"2027-01-15 11:30:00"}}"#
    );
    assert_eq!(record_answer(ok, &many), Ok(link.to_owned()));

    // A recording that is not there, however it is answered.
    for gone in ["Record not found", "File does not exist", "record doesn't exist", "The recording was deleted"] {
        let body = format!(r#"{{"status":"error","message":"{gone}"}}"#);
        assert_eq!(record_answer(ok, &body), Err(RecordingError::Gone), "{gone}");
        assert_eq!(record_answer(StatusCode::NOT_FOUND, &body), Err(RecordingError::Gone), "{gone}");
    }
    let failed = |status: StatusCode, body: &str| match record_answer(status, body) {
        Err(RecordingError::Failed(m)) => m,
        other => panic!("not a failure: {other:?}"),
    };
    let m = failed(StatusCode::UNAUTHORIZED, r#"{"status":"error","message":"Not authorized"}"#);
    assert_eq!(m, "Zadarma's API gave no link: HTTP 401 Unauthorized Not authorized");
    assert!(failed(StatusCode::NOT_FOUND, "<html>").contains("HTTP 404"), "a wrong url is not a lost recording");
    assert!(failed(StatusCode::SERVICE_UNAVAILABLE, "").contains("HTTP 503"));
    assert!(failed(StatusCode::TOO_MANY_REQUESTS, "").contains("HTTP 429"));
    assert!(failed(ok, "<html>maintenance</html>").contains("not JSON"));
    assert!(failed(ok, r#"{"status":"error","message":"Wrong parameters"}"#).ends_with("Wrong parameters"));
    assert!(failed(ok, r#"{"status":"success"}"#).contains("not a success with a link"));
    assert!(failed(ok, r#"{"status":"success","links":[]}"#).contains("not a success with a link"));
    assert!(failed(ok, r#"{"status":"success","link":"javascript:alert(1)"}"#).contains("is not an http(s) URL"));
    let long = format!(r#"{{"status":"error","message":"{}"}}"#, "x".repeat(1000));
    assert_eq!(failed(ok, &long).len(), "Zadarma's API gave no link: ".len() + MAX_MESSAGE);
}

#[test]
fn local_times_around_daylight_saving_changes() {
    let berlin = Zadarma { timezone: chrono_tz::Europe::Berlin, ..zadarma() };
    // 02:30 on 28 March 2027 never happens in Berlin; 02:30 on 25 October 2026 happens twice.
    let gap = berlin.start("2027-03-28 02:30:00").unwrap_err();
    assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
    assert_eq!(berlin.start("2026-10-25 02:30:00").unwrap().to_string(), "2026-10-25T00:30:00.000Z");
}

#[test]
fn the_reader_takes_the_secret_and_time_zone() {
    let config = |pbx: &str, env: &[(&str, &str)]| {
        let text = format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"zd-1\"\nkind = \"zadarma\"\n{pbx}");
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::parse_with(&text, "test.toml", &env, &[&WEBHOOK])
    };
    let settings = |c: &Config| {
        let z = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        // The adapter is a Zadarma: it signs with the configured secret.
        let b = body(&START_FIELDS);
        let h = headers(Some(&sign("79161234567749512300012027-01-15 10:59:00", SECRET)));
        z.verify(&inbound(&h, "", b.as_bytes())).is_ok()
    };
    let c = config(&format!("secret = \"{SECRET}\""), &[]).unwrap();
    assert!(settings(&c), "the secret from the file");
    let c = config("secret = \"another-secret-0123\"", &[("CALLPOOL_PBX_SECRET_ZD_1", SECRET)]).unwrap();
    assert!(settings(&c), "the environment overrides the file");
    assert!(config(&format!("secret = \"{SECRET}\"\ntimezone = \"Asia/Almaty\""), &[]).is_ok());

    let problems = |pbx: &str| config(pbx, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
    assert!(problems("").contains("secret: required for kind = \"zadarma\""), "{}", problems(""));
    assert!(problems("secret = \"short\"").contains("secret: must be at least 16 characters"));
    let tz = problems(&format!("secret = \"{SECRET}\"\ntimezone = \"Moscow\""));
    assert!(tz.contains("timezone: \"Moscow\" is not an IANA time zone"), "{tz}");
    let unknown = problems(&format!("secret = \"{SECRET}\"\nsecrets = [\"{SECRET}\"]"));
    assert!(unknown.contains("unknown field `secrets`"), "{unknown}");

    // The API's user key (and its URL, for tests) keep recordings.
    let record = |c: &Config| {
        let z = c.pbxs[0].adapter.get::<Box<dyn Adapter>>().expect("an adapter");
        let b = body(&RECORD);
        let h = headers(Some(&sign("in_0123abcd1700000000.123456", SECRET)));
        matches!(z.read("zd", &inbound(&h, "", b.as_bytes())), Ok(Received::Recording { .. }))
    };
    assert!(!record(&config(&format!("secret = \"{SECRET}\""), &[]).unwrap()));
    let c = config(&format!("secret = \"{SECRET}\"\nkey = \"{KEY}\"\nurl = \"http://127.0.0.1:9/\""), &[]).unwrap();
    assert!(record(&c));
    assert!(problems(&format!("secret = \"{SECRET}\"\nkey = \"a:b\"")).contains("key: letters and digits only"));
    let url = problems(&format!("secret = \"{SECRET}\"\nkey = \"{KEY}\"\nurl = \"api.zadarma.com\""));
    assert!(url.contains("url: \"api.zadarma.com\" is not an http(s) URL"), "{url}");
}

#[test]
fn the_url_check_is_echoed_without_a_signature() {
    let z = zadarma();
    let h = HeaderMap::new();
    let echo = |query: &str| {
        let req = inbound(&h, query, b"");
        z.verify(&req).and_then(|()| z.read("zd", &req))
    };
    assert!(matches!(echo("pbx=zd&zd_echo=a1B2-c3"), Ok(Received::Answer(Reply::Text(t))) if t == "a1B2-c3"));
    assert!(matches!(echo("zd_echo=x&pbx=zd"), Ok(Received::Answer(Reply::Text(t))) if t == "x"));
    for bad in ["pbx=zd&zd_echo=", "zd_echo=%3Cscript%3E", &format!("zd_echo={}", "a".repeat(129))] {
        assert!(matches!(echo(bad), Err(Refusal::Malformed(m)) if m.starts_with("zd_echo:")), "{bad}");
    }
}

#[test]
fn malformed_notifications_name_the_field() {
    let without = |name: &str| START_FIELDS.iter().filter(|(k, _)| *k != name).copied().collect::<Vec<_>>();
    let with = |name: &str, value: &'static str| {
        START_FIELDS.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect::<Vec<_>>()
    };
    assert!(refusal(&without("pbx_call_id")).contains("pbx_call_id: required"));
    assert!(refusal(&with("pbx_call_id", "in 1")).contains("pbx_call_id: call_id must be"));
    assert!(refusal(&without("called_did")).contains("called_did: required"));
    assert!(refusal(&with("called_did", "100")).contains("called_did: \"100\" is not a number"));
    assert!(refusal(&without("call_start")).contains("call_start: required"));
    assert!(refusal(&with("call_start", "15.01.2027 10:59")).contains("call_start: \"15.01.2027 10:59\" is not a time"));
    assert!(refusal(&with("call_start", "2030-01-01 00:00:00")).contains("more than 5 minutes in the future"));
    assert!(refusal(&end_fields("hung up", "0")).contains("disposition: \"hung up\" is not a Zadarma disposition"));
    assert!(refusal(&end_fields("answered", "-1")).contains("duration: not whole seconds"));
    let mut no_disposition = end_fields("answered", "3");
    no_disposition.retain(|(k, _)| *k != "disposition");
    assert!(refusal(&no_disposition).contains("disposition: required"));
    assert!(refusal(&[("pbx_call_id", "in_1")]).contains("event: required"));
}

// The callback trigger.

/// Zadarma's own placeholder user key (its examples'), with [`SECRET`].
const KEY: &str = "a248a6a984459935b569";

fn request_callback(from: &str, sip: Option<&str>, predicted: bool) -> RequestCallback {
    RequestCallback {
        base_url: "http://zd.test".into(),
        key: KEY.into(),
        secret: SECRET.into(),
        from: from.into(),
        sip: sip.map(str::to_owned),
        predicted,
    }
}

fn callback(number: &str) -> Callback {
    crate::callback::example(number, NOW)
}

#[test]
fn api_requests_are_signed_as_zadarmas_php_library_signs_them() {
    // The expected headers are what zadarma/user-api-v1 itself sends: PHP 8.2 running its
    // lib/Client.php, `getAuthHeader('/v1/request/callback/', $params)` called by reflection
    // with the parameters `Api::requestCallback` builds and `Client::call` completes
    // (`format=json`). Python's hmac gives the same (base64 of the hex digest).
    let q = api_query(&[("format", "json"), ("from", "100"), ("to", "79161234567")]);
    assert_eq!(q, "format=json&from=100&to=79161234567");
    assert_eq!(
        api_authorization(KEY, SECRET, CALLBACK_METHOD, &q),
        "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
    );
    // requestCallback('74951230099', '+79161234567', '100', true).
    let q = api_query(&[
        ("format", "json"),
        ("from", "74951230099"),
        ("predicted", "1"),
        ("sip", "100"),
        ("to", "79161234567"),
    ]);
    assert_eq!(q, "format=json&from=74951230099&predicted=1&sip=100&to=79161234567");
    assert_eq!(
        api_authorization(KEY, SECRET, CALLBACK_METHOD, &q),
        "a248a6a984459935b569:YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="
    );
    // Another method signs another text; another secret another signature.
    assert_ne!(api_authorization(KEY, SECRET, "/v1/sip/", &q), api_authorization(KEY, SECRET, CALLBACK_METHOD, &q));
    assert_ne!(
        api_authorization(KEY, "another-secret-0123", CALLBACK_METHOD, &q),
        api_authorization(KEY, SECRET, CALLBACK_METHOD, &q)
    );
    // PHP's urlencode, byte for byte: http_build_query(['from' => 'a b+c*~é/.-_', 'to' => '1'],
    // '', '&', PHP_QUERY_RFC1738) in PHP 8.2.
    assert_eq!(api_query(&[("from", "a b+c*~é/.-_"), ("to", "1")]), "from=a+b%2Bc%2A%7E%C3%A9%2F.-_&to=1");
}

#[test]
fn the_callback_request_is_a_signed_get_with_the_visitors_digits() {
    let http = reqwest::Client::new();
    let cb = callback("+79161234567");
    let req = request_callback("100", None, false).request(&http, &Ring::one("cb-1", "100"), &cb, NOW).build().unwrap();
    assert_eq!(req.method(), reqwest::Method::GET);
    assert_eq!(req.url().as_str(), "http://zd.test/v1/request/callback/?format=json&from=100&to=79161234567");
    assert_eq!(
        req.headers()[reqwest::header::AUTHORIZATION],
        "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
    );
    assert!(req.body().is_none(), "a GET carries its parameters in the query");

    // A phone number as `from` (its '+' dropped when read), the caller id's line, predicted.
    let req = request_callback(&from_digits("+74951230099").unwrap(), Some("100"), true)
        .request(&http, &Ring::one("cb-1", "74951230099"), &cb, NOW)
        .build()
        .unwrap();
    assert_eq!(
        req.url().query(),
        Some("format=json&from=74951230099&predicted=1&sip=100&to=79161234567"),
        "sorted by name, as signed"
    );
    assert_eq!(
        req.headers()[reqwest::header::AUTHORIZATION],
        "a248a6a984459935b569:YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="
    );
}

#[test]
fn callback_answers_are_read() {
    use reqwest::StatusCode;
    let z = request_callback("100", None, false);
    let ok = StatusCode::OK;
    // The documented answer: no call id.
    let success = r#"{"status":"success","from":"100","to":"79161234567","time":1800000000}"#;
    assert_eq!(z.answer(ok, success), Answer::Placed { pbx_ref: None });
    assert_eq!(
        z.answer(ok, r#"{"status":"success","pbx_call_id":"out_0123abcd","time":1800000000}"#),
        Answer::Placed { pbx_ref: Some("out_0123abcd".into()) },
        "a call id, if the answer ever gives one"
    );
    let refused = |a: Answer| match a {
        Answer::Refused(m) => m,
        other => panic!("not refused: {other:?}"),
    };
    let again = |a: Answer| match a {
        Answer::Again(m) => m,
        other => panic!("not retried: {other:?}"),
    };
    let m = refused(z.answer(ok, r#"{"status":"error","message":"Wrong parameter 'to'"}"#));
    assert_eq!(m, "Zadarma refused the callback: Wrong parameter 'to'");
    let m = refused(z.answer(StatusCode::UNAUTHORIZED, r#"{"status":"error","message":"Not authorized"}"#));
    assert!(m.contains("HTTP 401") && m.contains("Not authorized"), "{m}");
    assert!(refused(z.answer(ok, r#"{"status":"pending"}"#)).contains("did not confirm"));
    let long = format!(r#"{{"status":"error","message":"{}"}}"#, "x".repeat(1000));
    assert_eq!(refused(z.answer(ok, &long)).len(), "Zadarma refused the callback: ".len() + MAX_MESSAGE);

    // Rate limits and failures on Zadarma's side are retried.
    assert!(again(z.answer(StatusCode::TOO_MANY_REQUESTS, "")).contains("429"));
    assert!(again(z.answer(StatusCode::BAD_GATEWAY, "<html>")).contains("502"));
    let m = again(z.answer(StatusCode::BAD_REQUEST, r#"{"status":"error","message":"Too many requests"}"#));
    assert!(m.contains("Too many requests"), "{m}");
    assert!(matches!(z.answer(ok, r#"{"status":"error","message":"API rate limit exceeded"}"#), Answer::Again(_)));
    assert!(again(z.answer(ok, "<html>maintenance</html>")).contains("not JSON"));
}

#[test]
fn the_trigger_reader_takes_the_key_pair_and_who_is_rung() {
    let config = |trigger: &str, env: &[(&str, &str)]| {
        let pbx = format!("id = \"zd\"\nkind = \"zadarma\"\nsecret = \"{SECRET}\"");
        callback_config(&pbx, "zadarma", trigger, env, &[&WEBHOOK, &TRIGGER])
    };
    // The trigger as read: its request for a callback to +79161234567.
    let request = |c: &Config| {
        let t = form_trigger(c);
        let ring = Ring::one("cb-0123456789abcdef01234567", t.own_operator().unwrap());
        t.request(&reqwest::Client::new(), &ring, &callback("+79161234567"), NOW).build().unwrap()
    };
    let c = config(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "100""#), &[]).unwrap();
    let req = request(&c);
    assert_eq!(req.url().as_str(), "https://api.zadarma.com/v1/request/callback/?format=json&from=100&to=79161234567");
    assert_eq!(
        req.headers()[reqwest::header::AUTHORIZATION],
        "a248a6a984459935b569:ZTBiMDFkNDY1ZGU5YzhjNzcwZThmOGE3OWM5NzkyYTJkOWY5NjVhOQ=="
    );
    // The secret from the environment (named by the site), the URL for tests, the line, predicted.
    let c = config(
            r#"key = "a248a6a984459935b569", secret = "file-secret-0123456", from = "+74951230099", sip = "100", predicted = true, url = "http://127.0.0.1:9/""#,
            &[("CALLPOOL_TRIGGER_SECRET_SHOP_1", SECRET)],
        )
        .unwrap();
    let req = request(&c);
    assert_eq!(
        req.url().as_str(),
        "http://127.0.0.1:9/v1/request/callback/?format=json&from=74951230099&predicted=1&sip=100&to=79161234567"
    );
    assert!(req.headers()[reqwest::header::AUTHORIZATION]
        .to_str()
        .unwrap()
        .ends_with(":YTA2MTA4MGUxMDY4NWRkM2VkNGFiMDQ4MTEwODU5YzdmN2I0NTQ0Mg=="));

    let problems = |trigger: &str| config(trigger, &[]).err().map(|e| e.problems.join("; ")).unwrap_or_default();
    let all = problems("");
    for field in ["key: required", "secret: required", "from: required"] {
        assert!(all.contains(&format!("callback.trigger.{field} for kind = \"zadarma\"")), "{field}: {all}");
    }
    assert!(all.contains("CALLPOOL_TRIGGER_SECRET_SHOP_1"), "{all}");
    let with = |extra: &str| problems(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "100", {extra}"#));
    assert!(problems(&format!(r#"key = "a:b", secret = "{SECRET}", from = "100""#))
        .contains("key: letters and digits only"));
    assert!(
        problems(&format!(r#"key = "{KEY}", secret = "short", from = "100""#)).contains("secret: must be at least 16")
    );
    for bad in ["10", "+100", "+123456", "7 495 123-00-99", "0-1", "1234567890123456"] {
        let p = problems(&format!(r#"key = "{KEY}", secret = "{SECRET}", from = "{bad}""#));
        assert!(p.contains(&format!("from: {bad:?} is neither an extension")), "{bad}: {p}");
    }
    for good in ["100", "123456", "74951230099", "+74951230099"] {
        assert!(from_digits(good).is_ok(), "{good}");
    }
    assert!(with(r#"sip = "1a0""#).contains("sip: \"1a0\" is not an extension or SIP number"));
    assert!(with(r#"url = "api.zadarma.com""#).contains("url: \"api.zadarma.com\" is not an http(s) URL"));
    assert!(with(r#"predicted = "yes""#).contains("invalid type"), "{}", with(r#"predicted = "yes""#));
    assert!(with(r#"pbx_call_id = "x""#).contains("unknown field `pbx_call_id`"));
}
