//! The asterisk vendor's unit tests: its documented examples, signatures, answers and settings.

use super::*;

fn ami() -> Ami {
    Ami {
        address: "127.0.0.1:5038".into(),
        username: "callpool".into(),
        secret: "s".into(),
        contexts: vec!["from-pstn".into()],
        region: "RU".parse().unwrap(),
        recordings: None,
    }
}

/// An Asterisk whose recordings a web server serves at `https://pbx.example/rec/`.
fn recorded() -> Ami {
    let recordings = Recordings {
        url: "https://pbx.example/rec/".into(),
        dir: ["var", "spool", "asterisk", "monitor"].map(str::to_owned).to_vec(),
        auth: Some(("callpool".into(), "pw".into())),
    };
    Ami { recordings: Some(recordings), ..ami() }
}

fn ev(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const T: Ts = Ts::from_millis(1_800_000_000_000);

fn at(s: i64) -> Ts {
    Ts::from_millis(T.as_millis() + s * 1000)
}

#[test]
fn an_inbound_call_rings_is_answered_and_ends() {
    let (a, mut calls) = (ami(), Calls::default());
    let new = ev(&[
        ("Event", "Newchannel"),
        ("Channel", "PJSIP/trunk-00000001"),
        ("CallerIDNum", "79161234567"),
        ("Context", "from-pstn"),
        ("Exten", "74951230001"),
        ("Uniqueid", "1700000000.1"),
        ("Linkedid", "1700000000.1"),
    ]);
    let r = calls.on_event(&a, "ast", &new, at(0)).unwrap();
    assert_eq!(
        (r.key.as_str(), r.called.as_str(), r.status),
        ("ast:1700000000.1", "+74951230001", CallStatus::Ringing)
    );
    assert_eq!(r.caller.as_ref().map(Caller::as_str), Some("79161234567"));
    assert!(calls.on_event(&a, "ast", &new, at(0)).is_none(), "a repeat changes nothing");
    // The agent's channel: same call, not its first channel.
    let agent = ev(&[
        ("Event", "Newchannel"),
        ("Context", "from-internal"),
        ("Exten", "101"),
        ("Uniqueid", "1700000000.2"),
        ("Linkedid", "1700000000.1"),
    ]);
    assert!(calls.on_event(&a, "ast", &agent, at(1)).is_none());
    let bridged = ev(&[("Event", "BridgeEnter"), ("Uniqueid", "1700000000.2"), ("Linkedid", "1700000000.1")]);
    let r = calls.on_event(&a, "ast", &bridged, at(5)).unwrap();
    assert_eq!((r.status, r.answered_at), (CallStatus::Answered, Some(at(5))));
    assert!(calls.on_event(&a, "ast", &bridged, at(6)).is_none(), "the second channel entering the bridge");
    let agent_gone =
        ev(&[("Event", "Hangup"), ("Uniqueid", "1700000000.2"), ("Linkedid", "1700000000.1"), ("Cause", "16")]);
    assert!(calls.on_event(&a, "ast", &agent_gone, at(60)).is_none(), "only the first channel's hangup ends the call");
    let gone = ev(&[("Event", "Hangup"), ("Uniqueid", "1700000000.1"), ("Linkedid", "1700000000.1"), ("Cause", "16")]);
    let r = calls.on_event(&a, "ast", &gone, at(65)).unwrap();
    assert_eq!((r.status, r.duration, r.ended_at), (CallStatus::Completed, Some(60), Some(at(65))));
    assert!(calls.0.is_empty());
}

#[test]
fn unanswered_busy_internal_and_odd_calls() {
    let (a, mut calls) = (ami(), Calls::default());
    let new = |id: &str, ctx: &str, exten: &str| {
        ev(&[
            ("Event", "Newchannel"),
            ("Context", ctx),
            ("Exten", exten),
            ("CallerIDNum", "<unknown>"),
            ("Uniqueid", id),
            ("Linkedid", id),
        ])
    };
    let hangup =
        |id: &str, cause: &str| ev(&[("Event", "Hangup"), ("Uniqueid", id), ("Linkedid", id), ("Cause", cause)]);
    calls.on_event(&a, "ast", &new("1.1", "from-pstn", "84951230001"), at(0)).unwrap();
    let r = calls.on_event(&a, "ast", &hangup("1.1", "16"), at(20)).unwrap();
    assert_eq!((r.called.as_str(), r.status, r.caller.is_none()), ("+74951230001", CallStatus::Missed, true));
    calls.on_event(&a, "ast", &new("1.2", "from-pstn", "+74951230001"), at(0)).unwrap();
    assert_eq!(calls.on_event(&a, "ast", &hangup("1.2", "17"), at(3)).unwrap().status, CallStatus::Busy);
    assert!(calls.on_event(&a, "ast", &new("1.3", "from-internal", "74951230001"), at(0)).is_none(), "not inbound");
    assert!(calls.on_event(&a, "ast", &new("1.4", "from-pstn", "s"), at(0)).is_none(), "no DID");
    assert!(calls.on_event(&a, "ast", &hangup("9.9", "16"), at(0)).is_none(), "a call never seen");
    let stamped = ev(&[
        ("Event", "Newchannel"),
        ("Context", "from-pstn"),
        ("Exten", "74951230001"),
        ("Uniqueid", "1.5"),
        ("Linkedid", "1.5"),
        ("Timestamp", "1800000010.250000"),
    ]);
    assert_eq!(
        calls.on_event(&a, "ast", &stamped, at(20)).unwrap().started_at,
        Ts::from_millis(1_800_000_010_250),
        "timestampevents"
    );
}

use proptest::strategy::Strategy as _;

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 256, failure_persistence: None, ..Default::default() })]
    /// Any sequence of events, with fields from AMI's vocabulary and any values: no panic, a
    /// report keyed to this PBX, its times in order and never in the future, a recording only
    /// under recordings_url.
    #[test]
    fn any_events_are_read_without_harm(events in proptest::collection::vec(
        proptest::collection::vec((
            proptest::sample::select(vec!["Event", "Uniqueid", "Linkedid", "Context", "Exten", "CallerIDNum", "Cause", "Timestamp", "Variable", "Value"]),
            proptest::prop_oneof![
                proptest::sample::select(vec!["Newchannel", "BridgeEnter", "Hangup", "DialBegin", "VarSet", "MIXMONITOR_FILENAME", "/var/spool/asterisk/monitor/a.wav", "/var/spool/asterisk/monitor/../a.wav", "1.1", "1.2", "from-pstn", "74951230001", "s", "17", "1800000000.5", "-1e300", "NaN", ""]).prop_map(str::to_owned),
                "\\PC{0,20}",
            ],
        ), 0..8),
        0..40,
    )) {
        use proptest::prelude::*;
        let (a, mut calls) = (recorded(), Calls::default());
        for (i, pairs) in events.iter().enumerate() {
            let msg: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            if let Some(r) = calls.on_event(&a, "ast", &msg, at(i as i64)) {
                prop_assert!(r.key.as_str().starts_with("ast:"));
                prop_assert!(r.answered_at.is_none_or(|t| t >= r.started_at && r.ended_at.is_none_or(|e| e >= t)));
                prop_assert!(r.started_at <= at(i as i64), "never in the future");
                prop_assert!(r.recording_url.is_none_or(|u| u.starts_with("https://pbx.example/rec/") && !u.contains("..")));
            }
        }
    }
}

#[test]
fn a_callbacks_originated_call_is_reported_under_the_callback() {
    let (a, mut calls) = (ami(), Calls::default());
    let cb = "cb-0123456789abcdef01234567";
    let response = |result: &str, uid: &str| {
        ev(&[
            ("Event", "OriginateResponse"),
            ("Response", result),
            ("ActionID", cb),
            ("Exten", "79161234567"),
            ("Uniqueid", uid),
        ])
    };
    let r = calls.on_event(&a, "ast", &response("Failure", "2.1"), at(0)).unwrap();
    assert_eq!(
        (r.key.as_str(), r.status),
        ("ast:cb-0123456789abcdef01234567", CallStatus::Missed),
        "the operator did not answer"
    );
    let r = calls.on_event(&a, "ast", &response("Success", "2.2"), at(1)).unwrap();
    assert_eq!((r.called.as_str(), r.status), ("+79161234567", CallStatus::Ringing));
    let bridged = ev(&[("Event", "BridgeEnter"), ("Uniqueid", "2.3"), ("Linkedid", "2.2")]);
    assert_eq!(calls.on_event(&a, "ast", &bridged, at(5)).unwrap().status, CallStatus::Answered);
    let gone = ev(&[("Event", "Hangup"), ("Uniqueid", "2.2"), ("Linkedid", "2.2"), ("Cause", "16")]);
    let r = calls.on_event(&a, "ast", &gone, at(65)).unwrap();
    assert_eq!((r.status, r.duration), (CallStatus::Completed, Some(60)));
    let foreign = ev(&[
        ("Event", "OriginateResponse"),
        ("Response", "Success"),
        ("ActionID", "someone-else-1"),
        ("Exten", "79161234567"),
        ("Uniqueid", "2.9"),
    ]);
    assert!(calls.on_event(&a, "ast", &foreign, at(0)).is_none(), "another program's originate");
}

#[test]
fn the_settings_are_checked() {
    use std::collections::HashMap as Env;
    let parse = |fields: &str| {
        let text =
            format!("[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"ast\"\nkind = \"asterisk\"\n{fields}\n");
        crate::config::Config::parse_with(&text, "t.toml", &Env::<String, String>::new(), &[&WEBHOOK])
    };
    assert!(parse("ami = \"10.0.0.5:5038\"\nusername = \"callpool\"\nsecret = \"x\"").is_ok());
    let e = parse("ami = \"10.0.0.5\"\nusername = \"callpool\"\nsecret = \"x\"\nregion = \"XX\"").unwrap_err();
    assert_eq!(e.problems.len(), 2, "{:?}", e.problems);
    let e = parse("").unwrap_err();
    assert!(e.problems.iter().any(|p| p.contains("ami: required")), "{:?}", e.problems);
}

/// Stock FreePBX's file for an inbound call (`sub-record-check`: `MixMonitor(${MIXMON_DIR}${YEAR}/
/// ${MONTH}/${DAY}/${CALLFILENAME}.${MON_FMT})`, a relative path that MixMonitor puts under the
/// monitor directory), as `MIXMONITOR_FILENAME` reports it.
const FREEPBX_FILE: &str =
    "/var/spool/asterisk/monitor/2026/06/01/in-74951230001-+79161234567-20260601-101500-1764670000.41.wav";

#[test]
fn a_recordings_file_becomes_its_url_below_recordings_dir() {
    let r = recorded().recordings.unwrap();
    assert_eq!(
        r.url_of(FREEPBX_FILE).unwrap(),
        "https://pbx.example/rec/2026/06/01/in-74951230001-%2B79161234567-20260601-101500-1764670000.41.wav"
    );
    assert_eq!(
        r.url_of("/var/spool/asterisk//monitor/q/a b%?#ü.WAV").unwrap(),
        "https://pbx.example/rec/q/a%20b%25%3F%23%C3%BC.WAV",
        "every segment percent-encoded; doubled slashes are one"
    );
    for refused in [
        "/var/spool/asterisk/monitor/../../../etc/passwd",
        "/var/spool/asterisk/monitor/2026/./x.wav",
        "/var/spool/asterisk/monitor/",
        "/var/spool/asterisk/monitor",
        "/var/spool/asterisk/monitorx/a.wav",
        "/tmp/a.wav",
        "var/spool/asterisk/monitor/a.wav",
        "/var/spool/asterisk/monitor/a\r\nb.wav",
        "",
    ] {
        assert!(r.url_of(refused).is_err(), "{refused:?}");
    }
    let long = format!("/var/spool/asterisk/monitor/{}", "ü".repeat(400));
    assert!(r.url_of(&long).is_err(), "no URL beyond 2048 characters");
}

#[test]
fn a_varset_of_mixmonitor_filename_goes_with_the_calls_next_report() {
    let (a, mut calls) = (recorded(), Calls::default());
    let new = ev(&[
        ("Event", "Newchannel"),
        ("Context", "from-pstn"),
        ("Exten", "74951230001"),
        ("Uniqueid", "1764670000.41"),
        ("Linkedid", "1764670000.41"),
    ]);
    calls.on_event(&a, "ast", &new, at(0)).unwrap();
    let varset = |linked: &str, variable: &str, value: &str| {
        ev(&[
            ("Event", "VarSet"),
            ("Channel", "PJSIP/101-0000001b"),
            ("Uniqueid", "1764670000.42"),
            ("Linkedid", linked),
            ("Variable", variable),
            ("Value", value),
        ])
    };
    assert!(calls.on_event(&a, "ast", &varset("1764670000.41", "CALLFILENAME", "x"), at(1)).is_none());
    assert!(calls.on_event(&a, "ast", &varset("9.9", "MIXMONITOR_FILENAME", FREEPBX_FILE), at(1)).is_none());
    let outside = varset("1764670000.41", "MIXMONITOR_FILENAME", "/etc/passwd");
    assert!(calls.on_event(&a, "ast", &outside, at(1)).is_none(), "refused, logged, and no report");
    assert!(calls.0["1764670000.41"].report.recording_url.is_none());
    assert!(calls.on_event(&a, "ast", &varset("1764670000.41", "MIXMONITOR_FILENAME", FREEPBX_FILE), at(1)).is_none());
    let bridged = ev(&[("Event", "BridgeEnter"), ("Uniqueid", "1764670000.42"), ("Linkedid", "1764670000.41")]);
    let r = calls.on_event(&a, "ast", &bridged, at(5)).unwrap();
    let url = "https://pbx.example/rec/2026/06/01/in-74951230001-%2B79161234567-20260601-101500-1764670000.41.wav";
    assert_eq!(r.recording_url.as_deref(), Some(url));
    let gone =
        ev(&[("Event", "Hangup"), ("Uniqueid", "1764670000.41"), ("Linkedid", "1764670000.41"), ("Cause", "16")]);
    assert_eq!(calls.on_event(&a, "ast", &gone, at(65)).unwrap().recording_url.as_deref(), Some(url));

    // Without recordings_url, nothing is attached.
    let (a, mut calls) = (ami(), Calls::default());
    calls.on_event(&a, "ast", &new, at(0)).unwrap();
    calls.on_event(&a, "ast", &varset("1764670000.41", "MIXMONITOR_FILENAME", FREEPBX_FILE), at(1));
    assert!(calls.on_event(&a, "ast", &gone, at(65)).unwrap().recording_url.is_none());
}

#[test]
fn the_login_asks_for_dialplan_events_and_filters_them_only_with_recordings() {
    assert_eq!(
        login(&ami()),
        "Action: Login\r\nActionID: callpool-login\r\nUsername: callpool\r\nSecret: s\r\nEvents: call\r\n\r\n"
    );
    assert!(login(&recorded()).contains("\r\nEvents: call,dialplan\r\n"));
    assert_eq!(
        filters(),
        "Action: Filter\r\nActionID: callpool-filter\r\nOperation: Add\r\nFilter: Event: Newchannel\r\n\r\n\
         Action: Filter\r\nActionID: callpool-filter\r\nOperation: Add\r\nFilter: Event: BridgeEnter\r\n\r\n\
         Action: Filter\r\nActionID: callpool-filter\r\nOperation: Add\r\nFilter: Event: Hangup\r\n\r\n\
         Action: Filter\r\nActionID: callpool-filter\r\nOperation: Add\r\nFilter: Event: OriginateResponse\r\n\r\n\
         Action: Filter\r\nActionID: callpool-filter\r\nOperation: Add\r\nFilter: Variable: MIXMONITOR_FILENAME\r\n\r\n"
    );
}

/// The `Authorization` header `adapter` sends for a recording at `url`.
fn recording_auth(adapter: &dyn Adapter, url: &str) -> Result<Option<String>, RecordingError> {
    use futures_util::FutureExt as _;
    let http = reqwest::Client::new();
    let request = adapter.recording(&http, url).now_or_never().expect("no waiting")?.build().unwrap();
    Ok(request.headers().get("authorization").map(|v| v.to_str().unwrap().to_owned()))
}

#[test]
fn a_recording_is_fetched_with_basic_auth_only_under_recordings_url() {
    let a = recorded();
    // base64("callpool:pw")
    assert_eq!(
        recording_auth(&a, "https://pbx.example/rec/2026/06/01/a.wav"),
        Ok(Some("Basic Y2FsbHBvb2w6cHc=".into()))
    );
    assert_eq!(
        recording_auth(&a, "https://elsewhere.example/rec/a.wav"),
        Ok(None),
        "credentials stay with recordings_url"
    );
    assert_eq!(recording_auth(&a, "/rec/a.wav"), Err(RecordingError::NotFetchable));
    let open = Ami { recordings: Some(Recordings { auth: None, ..recorded().recordings.unwrap() }), ..ami() };
    assert_eq!(recording_auth(&open, "https://pbx.example/rec/a.wav"), Ok(None));
}

#[test]
fn the_recordings_settings_are_checked() {
    let parse = |fields: &str, env: &[(&str, &str)]| {
        let text = format!(
            "[pool]\nnumbers = [\"+74951230001\"]\n\n[[pbx]]\nid = \"ast\"\nkind = \"asterisk\"\nami = \"10.0.0.5:5038\"\nusername = \"callpool\"\nsecret = \"x\"\n{fields}\n"
        );
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        crate::config::Config::parse_with(&text, "t.toml", &env, &[&WEBHOOK])
    };
    let config = parse(
        "recordings_url = \"https://pbx.example/rec\"\nrecordings_user = \"u\"\nrecordings_password = \"written\"",
        &[("CALLPOOL_PBX_RECORDINGS_PASSWORD_AST", "env")],
    )
    .unwrap();
    let adapter = config.pbxs[0].adapter.get::<Box<dyn Adapter>>().unwrap().as_ref();
    // base64("u:env"): the environment's password wins.
    assert_eq!(recording_auth(adapter, "https://pbx.example/rec/a.wav"), Ok(Some("Basic dTplbnY=".into())));
    assert_eq!(recording_auth(adapter, "https://pbx.example/recx/a.wav"), Ok(None), "the base ends at its '/'");
    assert!(parse("recordings_url = \"https://pbx.example/rec/\"\nrecordings_dir = \"/srv/rec\"", &[]).is_ok());
    let problems = |fields: &str| parse(fields, &[]).unwrap_err().problems;
    let p = problems("recordings_user = \"u\"\nrecordings_password = \"p\"");
    assert!(p.len() == 1 && p[0].contains("recordings_url: required"), "{p:?}");
    let p = problems("recordings_url = \"ftp://pbx.example/\"\nrecordings_dir = \"rec/../x\"\nrecordings_user = \"u:v\"\nrecordings_password = \"p\"");
    assert_eq!(p.len(), 3, "{p:?}");
    let p = problems("recordings_url = \"https://pbx.example/rec/?a=1\"\nrecordings_password = \"p\"");
    assert_eq!(p.len(), 2, "{p:?}");
}
