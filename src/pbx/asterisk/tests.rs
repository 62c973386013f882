//! The asterisk vendor's unit tests: its documented examples, signatures, answers and settings.

use super::*;

fn ami() -> Ami {
    Ami {
        address: "127.0.0.1:5038".into(),
        username: "callpool".into(),
        secret: "s".into(),
        contexts: vec!["from-pstn".into()],
        region: "RU".parse().unwrap(),
    }
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
    /// report keyed to this PBX, its times in order and never in the future.
    #[test]
    fn any_events_are_read_without_harm(events in proptest::collection::vec(
        proptest::collection::vec((
            proptest::sample::select(vec!["Event", "Uniqueid", "Linkedid", "Context", "Exten", "CallerIDNum", "Cause", "Timestamp"]),
            proptest::prop_oneof![
                proptest::sample::select(vec!["Newchannel", "BridgeEnter", "Hangup", "DialBegin", "1.1", "1.2", "from-pstn", "74951230001", "s", "17", "1800000000.5", "-1e300", "NaN", ""]).prop_map(str::to_owned),
                "\\PC{0,20}",
            ],
        ), 0..8),
        0..40,
    )) {
        use proptest::prelude::*;
        let (a, mut calls) = (ami(), Calls::default());
        for (i, pairs) in events.iter().enumerate() {
            let msg: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
            if let Some(r) = calls.on_event(&a, "ast", &msg, at(i as i64)) {
                prop_assert!(r.key.as_str().starts_with("ast:"));
                prop_assert!(r.answered_at.is_none_or(|t| t >= r.started_at && r.ended_at.is_none_or(|e| e >= t)));
                prop_assert!(r.started_at <= at(i as i64), "never in the future");
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
