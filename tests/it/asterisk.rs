//! Asterisk through its Manager Interface: callpool connects to a fake AMI that speaks the real
//! line protocol (the banner, `Action: Login` answered `Response: Success` or `Error`, events as
//! `Key: Value` blocks, `Action: Ping`, `Action: Filter`), logs in, and records the calls its events
//! describe; when the Asterisk restarts (the connection drops) callpool connects and logs in again.
//! A call's recording (MixMonitor's `VarSet`) is streamed from a fake of the PBX's web server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use callpool::config::Config;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const ORIGIN: &str = "https://shop.example";
const REPORT_TOKEN: &str = "shop-report-token-0123";
const AMI_USER: &str = "callpool";
const AMI_SECRET: &str = "ami-secret-42";

/// A fake Asterisk: each connection gets the banner, must log in with the right user and secret
/// (asking for call events), then receives what the test sends (only the events its `Filter`s
/// name, taken as plain text, once it sent any); `drop_all` closes every connection (an Asterisk
/// restart).
#[derive(Clone)]
struct FakeAmi {
    port: u16,
    /// Logins seen: (username, secret, events).
    logins: Arc<Mutex<Vec<(String, String, String)>>>,
    /// The writer of the current logged-in connection that asked for events.
    current: Arc<Mutex<Option<mpsc::UnboundedSender<Option<String>>>>>,
    /// `Originate` actions received (their fields).
    originates: Arc<Mutex<Vec<std::collections::HashMap<String, String>>>>,
    /// `Filter` actions received (their `Filter`).
    filters: Arc<Mutex<Vec<String>>>,
}

impl FakeAmi {
    async fn start() -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeAmi {
            port: listener.local_addr().unwrap().port(),
            logins: Arc::default(),
            current: Arc::default(),
            originates: Arc::default(),
            filters: Arc::default(),
        };
        let me = fake.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move { me.serve(socket).await });
            }
        });
        fake
    }

    async fn serve(&self, socket: tokio::net::TcpStream) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"Asterisk Call Manager/9.0.0\r\n").await.unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<String>>();
        let mut action: Vec<(String, String)> = Vec::new();
        let mut filters: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                out = rx.recv() => match out.flatten() {
                    Some(text) if filters.is_empty() || filters.iter().any(|f| text.contains(f.as_str())) => {
                        if write.write_all(text.as_bytes()).await.is_err() { return }
                    }
                    Some(_) => {} // filtered out
                    None => return, // dropped: an Asterisk restart
                },
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { return };
                    if !line.is_empty() {
                        if let Some((k, v)) = line.split_once(':') {
                            action.push((k.trim().to_owned(), v.trim().to_owned()));
                        }
                        continue;
                    }
                    let get = |k: &str| action.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
                    let id = get("ActionID");
                    match get("Action").as_str() {
                        "Login" => {
                            self.logins.lock().unwrap().push((get("Username"), get("Secret"), get("Events")));
                            if get("Username") == AMI_USER && get("Secret") == AMI_SECRET {
                                let ok = format!("Response: Success\r\nActionID: {id}\r\nMessage: Authentication accepted\r\n\r\n");
                                write.write_all(ok.as_bytes()).await.unwrap();
                                if get("Events") != "off" {
                                    *self.current.lock().unwrap() = Some(tx.clone());
                                }
                            } else {
                                let no = format!("Response: Error\r\nActionID: {id}\r\nMessage: Authentication failed\r\n\r\n");
                                write.write_all(no.as_bytes()).await.unwrap();
                                return;
                            }
                        }
                        "Originate" => {
                            self.originates.lock().unwrap().push(action.iter().cloned().collect());
                            let queued = format!("Response: Success\r\nActionID: {id}\r\nMessage: Originate successfully queued\r\n\r\n");
                            write.write_all(queued.as_bytes()).await.unwrap();
                        }
                        "Logoff" => {
                            let bye = format!("Response: Goodbye\r\nActionID: {id}\r\nMessage: Thanks for all the fish.\r\n\r\n");
                            let _ = write.write_all(bye.as_bytes()).await;
                            return;
                        }
                        "Filter" if get("Operation") == "Add" => {
                            filters.push(get("Filter"));
                            self.filters.lock().unwrap().push(get("Filter"));
                            let ok = format!("Response: Success\r\nActionID: {id}\r\nMessage: Filter Added Successfully\r\n\r\n");
                            write.write_all(ok.as_bytes()).await.unwrap();
                        }
                        "Ping" => {
                            let pong = format!("Response: Success\r\nActionID: {id}\r\nPing: Pong\r\n\r\n");
                            write.write_all(pong.as_bytes()).await.unwrap();
                        }
                        _ => {}
                    }
                    action.clear();
                }
            }
        }
    }

    /// Sends an event (its `Key: Value` pairs) on the logged-in connection.
    fn event(&self, pairs: &[(&str, &str)]) {
        let mut text: String = pairs.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        text.push_str("\r\n");
        self.current.lock().unwrap().as_ref().expect("a logged-in connection").send(Some(text)).unwrap();
    }

    /// Closes the logged-in connection, as an Asterisk restart does.
    fn drop_all(&self) {
        if let Some(tx) = self.current.lock().unwrap().take() {
            let _ = tx.send(None);
        }
    }

    /// Logins with the right user and secret that asked for call events (`call`, or
    /// `call,dialplan` where recordings are attached).
    fn good_logins(&self) -> usize {
        let logins = self.logins.lock().unwrap();
        logins.iter().filter(|(u, s, e)| u == AMI_USER && s == AMI_SECRET && e.split(',').any(|c| c == "call")).count()
    }

    /// The events of one inbound call, stamped as `timestampevents = yes` stamps them: it rang
    /// 3.2 s ago, was answered 0.1 s later, and hung up 3 s after that.
    fn call(&self, linked: &str, did: &str, caller: &str, answered: bool) {
        self.recorded_call(linked, did, caller, answered, None)
    }

    /// The same, MixMonitor recording it to `file` (as stock FreePBX does, on the trunk's channel
    /// once the inbound route is entered), with some of the dialplan's other events around.
    fn recorded_call(&self, linked: &str, did: &str, caller: &str, answered: bool, file: Option<&str>) {
        let agent = format!("{linked}9");
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() - 3.2;
        let ts = |s: f64| format!("{:.6}", t + s);
        self.event(&[
            ("Event", "Newchannel"),
            ("Privilege", "call,all"),
            ("Channel", "PJSIP/trunk-0000001a"),
            ("ChannelState", "0"),
            ("ChannelStateDesc", "Down"),
            ("CallerIDNum", caller),
            ("CallerIDName", "<unknown>"),
            ("Context", "from-pstn"),
            ("Exten", did),
            ("Priority", "1"),
            ("Uniqueid", linked),
            ("Linkedid", linked),
            ("Timestamp", &ts(0.0)),
        ]);
        self.event(&[
            ("Event", "Newchannel"),
            ("Channel", "PJSIP/101-0000001b"),
            ("Context", "from-internal"),
            ("Exten", "101"),
            ("Uniqueid", &agent),
            ("Linkedid", linked),
            ("Timestamp", &ts(0.05)),
        ]);
        if let Some(file) = file {
            let step = |more: &[(&str, &str)]| {
                let mut pairs = vec![
                    ("Privilege", "dialplan,all"),
                    ("Channel", "PJSIP/trunk-0000001a"),
                    ("Context", "sub-record-check"),
                    ("Exten", "recordcheck"),
                    ("Uniqueid", linked),
                    ("Linkedid", linked),
                ];
                pairs.splice(0..0, more.iter().copied());
                self.event(&pairs);
            };
            step(&[("Event", "Newexten"), ("Application", "MixMonitor"), ("AppData", file)]);
            step(&[("Event", "VarSet"), ("Variable", "__CALLFILENAME"), ("Value", "in-noise")]);
            step(&[("Event", "VarSet"), ("Variable", "MIXMONITOR_FILENAME"), ("Value", file)]);
        }
        self.event(&[("Event", "DialBegin"), ("Uniqueid", linked), ("Linkedid", linked), ("DestUniqueid", &agent)]);
        if answered {
            for id in [linked, agent.as_str()] {
                self.event(&[
                    ("Event", "BridgeEnter"),
                    ("Uniqueid", id),
                    ("Linkedid", linked),
                    ("Timestamp", &ts(0.1)),
                ]);
            }
        }
        for id in [agent.as_str(), linked] {
            let cause = if answered { "16" } else { "19" };
            self.event(&[
                ("Event", "Hangup"),
                ("Uniqueid", id),
                ("Linkedid", linked),
                ("Cause", cause),
                ("Timestamp", &ts(3.1)),
            ]);
        }
    }
}

fn config(dir: &std::path::Path, ami_port: u16, secret: &str, ga: &str) -> Config {
    config_with(dir, ami_port, secret, ga, "", "")
}

/// The test's configuration, with more lines for the `[[pbx]]` and for the site.
fn config_with(
    dir: &std::path::Path,
    ami_port: u16,
    secret: &str,
    ga: &str,
    pbx_extra: &str,
    site_extra: &str,
) -> Config {
    let text = format!(
        r#"
[server]
admin_token = "{ADMIN_TOKEN}"

[store]
kind = "embedded"
data_dir = {data:?}

[analytics]
ga4_base_url = "{ga}"
retry_base = "200ms"

[[pbx]]
id = "ast"
kind = "asterisk"
ami = "127.0.0.1:{ami_port}"
username = "{AMI_USER}"
secret = "{secret}"
{pbx_extra}

{site}
report_token = "{REPORT_TOKEN}"

[site.ga4]
measurement_id = "{GA4_MEASUREMENT_ID}"
api_secret = "{GA4_API_SECRET}"
{site_extra}
"#,
        data = dir.join("data").display().to_string(),
        site = shop_site(ORIGIN, "0s", "30m", "30m"),
    );
    // Written to a file, as an operator's is (a test may edit it and reload).
    let file = dir.join("callpool.toml");
    std::fs::write(&file, text).unwrap();
    Config::load(&file, &std::collections::HashMap::new()).expect("test config")
}

async fn calls(node: &Node) -> Vec<Value> {
    let resp =
        reqwest::Client::new().get(node.url("/v1/reports/shop/calls")).bearer_auth(REPORT_TOKEN).send().await.unwrap();
    resp.json::<Value>().await.unwrap()["calls"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn ami_events_become_calls_and_the_connection_comes_back_after_a_restart() {
    let ami = FakeAmi::start().await;
    let ga = FakeAnalytics::default();
    let ga_url = ga.start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(config(dir.path(), ami.port, AMI_SECRET, &ga_url)).await;
    eventually("callpool logged in to the AMI", || async { ami.good_logins() == 1 }).await;
    let connected = || node.metric("callpool_pbx_connected{pbx=\"ast\"}");
    eventually("the connection counts as up", || async { connected().await == 1.0 }).await;

    // A visitor with a number calls it (once it has been shown a while: the events say it rang
    // 3.2 s ago); the agent answers.
    let (_tab, number) = visitor_with_number(&node).await;
    ami.call("1764670000.41", number.trim_start_matches('+'), "79161234567", true);
    eventually("the call is recorded, completed", || async {
        calls(&node).await.iter().any(|c| c["call_id"] == "1764670000.41" && c["status"] == "completed")
    })
    .await;
    let call = calls(&node).await.into_iter().find(|c| c["call_id"] == "1764670000.41").unwrap();
    assert_eq!(
        (call["match"].as_str(), call["duration"].as_u64(), call["called"].as_str()),
        (Some("active"), Some(3), Some(number.as_str()))
    );
    eventually("one GA4 event", || async { ga.ga4_accepted().len() == 1 }).await;

    // The Asterisk restarts: callpool connects and logs in again, and the next call arrives.
    ami.drop_all();
    eventually("callpool logged in again", || async { ami.good_logins() == 2 }).await;
    ami.call("1764670100.42", number.trim_start_matches('+'), "79169876543", false);
    eventually("the missed call is recorded", || async {
        calls(&node).await.iter().any(|c| c["call_id"] == "1764670100.42" && c["status"] == "missed")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ga.ga4_accepted().len(), 2, "one event per call");
    assert!(ga.violations().is_empty(), "{:?}", ga.violations());
    node.stop().await;
}

#[tokio::test]
async fn a_wrong_ami_secret_is_refused_and_tried_again_without_harm() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_real(config(dir.path(), ami.port, "not-the-secret", "http://127.0.0.1:9")).await;
    eventually("two refused logins (it tries again)", || async { ami.logins.lock().unwrap().len() >= 2 }).await;
    assert_eq!(ami.good_logins(), 0);
    assert_eq!(node.metric("callpool_pbx_connected{pbx=\"ast\"}").await, 0.0, "not connected (the alert's gauge)");
    assert_eq!(node.get("/readyz").await.status(), 200, "the node serves meanwhile");
    // A webhook to an AMI PBX is refused: it reports over AMI.
    let resp = reqwest::Client::new().post(node.url("/v1/pbx/calls?pbx=ast")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    // The operator fixes the secret and reloads: the connection opens again with it.
    let file = dir.path().join("callpool.toml");
    std::fs::write(&file, std::fs::read_to_string(&file).unwrap().replace("not-the-secret", AMI_SECRET)).unwrap();
    let resp = reqwest::Client::new().post(node.url("/v1/admin/reload")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    eventually("callpool logged in with the new secret", || async { ami.good_logins() == 1 }).await;
    eventually("connected (the alert's gauge)", || async {
        node.metric("callpool_pbx_connected{pbx=\"ast\"}").await == 1.0
    })
    .await;
    node.stop().await;
}

/// A callback through the same Asterisk: callpool logs in on a connection of its own and asks
/// for an `Originate` (the operator's channel first, then the visitor's number in the dialplan);
/// the call's events, read on the event connection, carry the callback's id and move it on.
#[tokio::test]
async fn a_callback_is_originated_over_ami_and_its_events_report_it() {
    let ami = FakeAmi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let callback = format!(
        r#"
[site.callback]
language = "en"
operator = "+74951230099"
pbx = "ast"
min_time_on_site = "0s"
trigger = {{ kind = "asterisk", ami = "127.0.0.1:{port}", username = "{AMI_USER}", secret = "{AMI_SECRET}", channel = "PJSIP/101", ring = "25s" }}
"#,
        port = ami.port
    );
    let node =
        Node::start_real(config_with(dir.path(), ami.port, AMI_SECRET, "http://127.0.0.1:9", "", &callback)).await;
    eventually("callpool listens to the AMI", || async { ami.good_logins() == 1 }).await;
    let asked = reqwest::Client::new()
        .post(node.url("/v1/callback"))
        .header("origin", ORIGIN)
        .json(&serde_json::json!({"site": "shop-public-key", "number": "+79161234567"}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 202);
    let id = asked.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    eventually("one Originate", || async { ami.originates.lock().unwrap().len() == 1 }).await;
    let o = ami.originates.lock().unwrap()[0].clone();
    let field = |k: &str| o.get(k).cloned().unwrap_or_default();
    assert_eq!(
        (field("ActionID"), field("Channel"), field("Context"), field("Exten"), field("Timeout"), field("Async")),
        (id.clone(), "PJSIP/101".into(), "from-internal".into(), "79161234567".into(), "25000".into(), "true".into())
    );
    let status = || async {
        let url = node.url(&format!("/v1/callback/{id}?site=shop-public-key"));
        let v: Value =
            reqwest::Client::new().get(url).header("origin", ORIGIN).send().await.unwrap().json().await.unwrap();
        v["status"].as_str().unwrap_or("").to_owned()
    };
    eventually("calling", || async { status().await == "calling" }).await;
    // The operator answers; the dialplan rings the visitor, who answers; the call ends.
    ami.event(&[
        ("Event", "OriginateResponse"),
        ("Response", "Success"),
        ("ActionID", &id),
        ("Channel", "PJSIP/101-00000031"),
        ("Context", "from-internal"),
        ("Exten", "79161234567"),
        ("Uniqueid", "1764670200.77"),
    ]);
    ami.event(&[
        ("Event", "Newchannel"),
        ("Context", "from-internal"),
        ("Exten", "79161234567"),
        ("Uniqueid", "1764670200.78"),
        ("Linkedid", "1764670200.77"),
    ]);
    ami.event(&[("Event", "BridgeEnter"), ("Uniqueid", "1764670200.78"), ("Linkedid", "1764670200.77")]);
    eventually("connected", || async { status().await == "connected" }).await;
    ami.event(&[("Event", "Hangup"), ("Uniqueid", "1764670200.77"), ("Linkedid", "1764670200.77"), ("Cause", "16")]);
    eventually("completed", || async { status().await == "completed" }).await;
    node.stop().await;
}

/// A visitor of the shop with a tracking number, shown long enough for a call that rang 3.2 s
/// ago to match: the tab (kept open) and the number.
async fn visitor_with_number(node: &Node) -> (WsTab, String) {
    let mut tab = WsTab::open(node.addr, "shop-public-key", ORIGIN).await;
    let hello = serde_json::json!({"type": "hello", "v": 1, "visitor": "1197596843.1673515099",
        "ga_client_id": "1197596843.1673515099", "tab": unique("tab"), "page": "https://shop.example/"});
    tab.send_text(&hello.to_string()).await;
    let number = loop {
        let (n, kind) = tab.number().await;
        if kind == "tracking" {
            break n;
        }
    };
    tokio::time::sleep(Duration::from_millis(3500)).await;
    (tab, number)
}

/// With `recordings_url`, callpool asks for dialplan events and filters them to the few it reads;
/// MixMonitor's `VarSet` of `MIXMONITOR_FILENAME` attaches the file to the call, and a report
/// user's player streams it from the PBX's web server (a fake that checks the basic credentials
/// and the path: the file's below `recordings_dir`, percent-encoded), a range passed on.
#[tokio::test]
async fn a_calls_recording_is_streamed_from_the_pbxs_web_server() {
    const PASSWORD: &str = "rec-pass-7";
    let ami = FakeAmi::start().await;
    let asked: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = asked.clone();
    let web = serve_fake(move |req: axum::extract::Request| {
        let seen = seen.clone();
        async move {
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
            seen.lock().unwrap().push(format!("{} {}", req.uri().path(), auth));
            // base64("callpool-rec:rec-pass-7")
            if auth != "Basic Y2FsbHBvb2wtcmVjOnJlYy1wYXNzLTc=" {
                return (axum::http::StatusCode::UNAUTHORIZED, String::new());
            }
            if req.uri().path() != "/monitor/2026/06/01/in-74951230001-%2B79161234567-20260601-101500-1764670300.51.wav"
            {
                return (axum::http::StatusCode::NOT_FOUND, String::new());
            }
            match req.headers().get("range").and_then(|v| v.to_str().ok()) {
                Some("bytes=0-3") => (axum::http::StatusCode::PARTIAL_CONTENT, "RIFF".into()),
                _ => (axum::http::StatusCode::OK, "RIFF....WAVEfmt recording".into()),
            }
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pbx = format!(
        "recordings_url = \"{web}/monitor\"\nrecordings_user = \"callpool-rec\"\nrecordings_password = \"{PASSWORD}\"\n\
         # The tests' fake web server is on loopback.\nrecordings_from = [\"127.0.0.0/8\"]"
    );
    let node = Node::start_real(config_with(dir.path(), ami.port, AMI_SECRET, "http://127.0.0.1:9", &pbx, "")).await;
    eventually("callpool logged in, filtering its events", || async {
        ami.good_logins() == 1 && ami.filters.lock().unwrap().len() == 5
    })
    .await;
    assert_eq!(ami.logins.lock().unwrap()[0].2, "call,dialplan");
    assert_eq!(
        *ami.filters.lock().unwrap(),
        [
            "Event: Newchannel",
            "Event: BridgeEnter",
            "Event: Hangup",
            "Event: OriginateResponse",
            "Variable: MIXMONITOR_FILENAME"
        ]
    );

    let (_tab, number) = visitor_with_number(&node).await;
    let file = "/var/spool/asterisk/monitor/2026/06/01/in-74951230001-+79161234567-20260601-101500-1764670300.51.wav";
    ami.recorded_call("1764670300.51", number.trim_start_matches('+'), "79161234567", true, Some(file));
    // Another call's file outside the recordings directory is not attached.
    ami.recorded_call("1764670300.61", number.trim_start_matches('+'), "79161234568", true, Some("/etc/passwd"));
    eventually("both calls are recorded, completed", || async {
        let calls = calls(&node).await;
        ["1764670300.51", "1764670300.61"]
            .iter()
            .all(|id| calls.iter().any(|c| c["call_id"] == *id && c["status"] == "completed"))
    })
    .await;
    let listed = calls(&node).await;
    let call = |id: &str| listed.iter().find(|c| c["call_id"] == id).unwrap().clone();
    assert_eq!(call("1764670300.51")["recording"], "/v1/reports/shop/recordings/ast:1764670300.51");
    assert!(call("1764670300.61")["recording"].is_null(), "{}", call("1764670300.61"));
    assert!(!listed.iter().any(|c| c.to_string().contains(PASSWORD) || c.to_string().contains(&web)));

    let get = |path: &str, range: Option<&str>| {
        let mut req = reqwest::Client::new().get(node.url(path)).bearer_auth(REPORT_TOKEN);
        if let Some(r) = range {
            req = req.header("range", r);
        }
        req.send()
    };
    let whole = get("/v1/reports/shop/recordings/ast:1764670300.51", None).await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.text().await.unwrap(), "RIFF....WAVEfmt recording");
    let part = get("/v1/reports/shop/recordings/ast:1764670300.51", Some("bytes=0-3")).await.unwrap();
    assert_eq!((part.status().as_u16(), part.text().await.unwrap()), (206, "RIFF".to_owned()));
    let none = get("/v1/reports/shop/recordings/ast:1764670300.61", None).await.unwrap();
    assert_eq!(none.status(), 404);
    assert_eq!(asked.lock().unwrap().len(), 2, "{:?}", asked.lock().unwrap());
    node.stop().await;
}
