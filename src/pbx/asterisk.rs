//! Asterisk (FreePBX, Issabel and friends) through the Asterisk Manager Interface: rather than
//! waiting for webhooks, callpool connects to AMI (TCP), logs in, and reads the call events.
//!
//! `[[pbx]] kind = "asterisk"`: `ami` (`host:port`, usually port 5038), `username`, `secret`
//! (`CALLPOOL_PBX_SECRET_<ID>` overrides it), `contexts` (the dialplan contexts inbound calls
//! enter, default FreePBX's `from-pstn` and `from-trunk`) and `region` (for DIDs written without
//! a country code, default `RU`).
//!
//! A call is keyed by `Linkedid` (the Uniqueid of its first channel). Its first channel's
//! `Newchannel` in one of `contexts` gives the dialled number (`Exten`, the DID) and the caller
//! (`CallerIDNum`): a ringing report. A `BridgeEnter` of any of its channels: answered. The first
//! channel's `Hangup`: completed with the talk time, or busy (cause 17) or missed. Other calls
//! (internal, outbound) are not inbound-context calls and are left alone. The connection is
//! pinged every 20 s and dropped when silent for a minute; it is made again (after 1 s,
//! doubling to 30 s) whenever it drops or Asterisk restarts, and the login is made again.
//! Every node connects: they record the same reports, which the store takes once.
//!
//! Recordings, with `recordings_url` (the http(s) base under which a web server on the PBX
//! serves `recordings_dir`, default `/var/spool/asterisk/monitor/`; `recordings_user` and
//! `recordings_password` for its basic authentication): the login then asks for `dialplan`
//! events too, and `Filter` actions keep only the events read here (refused without the AMI
//! user's write `system`: then every dialplan event arrives, unless manager.conf filters them).
//! `MixMonitor` sets `MIXMONITOR_FILENAME` to the absolute path it records to, which Asterisk
//! reports as a `VarSet` event of the channel (stock FreePBX records through `MixMonitor`); the
//! call its `Linkedid` names gets `recordings_url` + the path below `recordings_dir`, each
//! segment percent-encoded, on its next report. [`Adapter::recording`] fetches it with the
//! credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use callpool_pool::{PhoneNumber, Ts};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::adapter::{plain_get, Adapter, Inbound, Received, RecordingError, Refusal, Sink, LONGEST_CALL_S};
use crate::app::App;
use crate::calls::{CallKey, CallReport, CallStatus, Caller};
use crate::config::{Fields, Place, Reader, Section, ENV_PBX_SECRET_PREFIX};

/// The contexts FreePBX routes calls from trunks into.
const DEFAULT_CONTEXTS: [&str; 2] = ["from-pstn", "from-trunk"];
/// How often the connection is pinged, and how long silence means it is gone.
const PING_EVERY: Duration = Duration::from_secs(20);
const SILENT_FOR: Duration = Duration::from_secs(60);
/// The longest line and message read (a runaway peer is dropped).
const MAX_LINE: usize = 8 * 1024;
const MAX_FIELDS: usize = 256;
/// Where Asterisk records to unless asterisk.conf's `astspooldir` says otherwise.
const DEFAULT_RECORDINGS_DIR: &str = "/var/spool/asterisk/monitor/";
/// `CALLPOOL_PBX_RECORDINGS_PASSWORD_<PBX ID>`: overrides `recordings_password`.
pub const ENV_RECORDINGS_PASSWORD_PREFIX: &str = "CALLPOOL_PBX_RECORDINGS_PASSWORD_";
/// The events the connection reads, as AMI's (legacy, since Asterisk 10) `Filter` regular
/// expressions over the whole event: sent when it also asks for the chatty `dialplan` class.
const FILTERS: [&str; 5] = [
    "Event: Newchannel",
    "Event: BridgeEnter",
    "Event: Hangup",
    "Event: OriginateResponse",
    "Variable: MIXMONITOR_FILENAME",
];
const FILTER_ID: &str = "callpool-filter";

/// How to reach and read an Asterisk.
#[derive(Clone)]
pub struct Ami {
    pub address: String,
    pub username: String,
    pub secret: String,
    pub contexts: Vec<String>,
    pub region: phonenumber::country::Id,
    /// Where its recordings are fetched from; `None`: they are not attached.
    pub recordings: Option<Recordings>,
}

/// Where a web server on the Asterisk serves its recordings directory, and its credentials.
#[derive(Clone)]
pub struct Recordings {
    /// `recordings_url`, ending in '/'.
    pub url: String,
    /// `recordings_dir`, as its path's segments (`var`, `spool`, `asterisk`, `monitor`).
    pub dir: Vec<String>,
    /// `recordings_user` and `recordings_password` (HTTP basic authentication).
    pub auth: Option<(String, String)>,
}

impl Recordings {
    /// The URL of the file `MixMonitor` records to (its absolute path): `url` and the path below
    /// `dir`, each segment percent-encoded; why not, for a path outside `dir` or with `.` or `..`.
    pub fn url_of(&self, file: &str) -> Result<String, &'static str> {
        if !file.starts_with('/') || file.contains(char::is_control) {
            return Err("the file's path is not absolute, or has control characters");
        }
        let segments: Vec<&str> = file.split('/').filter(|s| !s.is_empty()).collect();
        if segments.iter().any(|s| *s == "." || *s == "..") {
            return Err("the file's path has a '.' or '..' segment");
        }
        let under = segments.len() > self.dir.len() && segments.iter().zip(&self.dir).all(|(s, d)| s == d);
        if !under {
            return Err("the file is not under recordings_dir");
        }
        let path: Vec<String> = segments[self.dir.len()..].iter().map(|s| crate::config::percent_encode(s)).collect();
        let url = format!("{}{}", self.url, path.join("/"));
        if url.len() > 2048 {
            return Err("the file's URL would be longer than 2048 characters");
        }
        Ok(url)
    }
}

/// Reads a `[[pbx]] kind = "asterisk"`.
pub struct WebhookReader;
pub static WEBHOOK: WebhookReader = WebhookReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmi {
    ami: Option<String>,
    username: Option<String>,
    secret: Option<String>,
    contexts: Option<Vec<String>>,
    region: Option<String>,
    recordings_url: Option<String>,
    recordings_dir: Option<String>,
    recordings_user: Option<String>,
    recordings_password: Option<String>,
}

/// `recordings_url` and its companions; `None` without `recordings_url`.
fn recordings(f: &mut Fields<'_>, raw: &mut RawAmi) -> Option<Recordings> {
    let dir_text = raw.recordings_dir.take();
    let user = raw.recordings_user.take();
    let (_, from_env) = f.owner_var(ENV_RECORDINGS_PASSWORD_PREFIX);
    let written_password = raw.recordings_password.take();
    let Some(url) = raw.recordings_url.take() else {
        if dir_text.is_some() || user.is_some() || written_password.is_some() {
            f.fail("recordings_url", "required with recordings_dir, recordings_user or recordings_password: the http(s) base the PBX's web server serves recordings_dir under");
        }
        return None;
    };
    let url = f.base_url("recordings_url", url);
    if url.contains(['?', '#']) {
        f.fail(
            "recordings_url",
            "a base URL without a query or fragment, e.g. \"https://pbx.example.com/recordings/\"",
        );
    }
    let dir_text = dir_text.unwrap_or_else(|| DEFAULT_RECORDINGS_DIR.into());
    let dir: Vec<String> = dir_text.split('/').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if !dir_text.starts_with('/') || dir.iter().any(|s| s == "." || s == "..") || dir_text.contains(char::is_control) {
        f.fail("recordings_dir", format!("{dir_text:?} is not an absolute path such as \"{DEFAULT_RECORDINGS_DIR}\""));
    }
    let auth = match (user, from_env.or(written_password)) {
        (None, None) => None,
        (Some(u), Some(p)) if !u.is_empty() && !u.contains(':') && !p.is_empty() => Some((u, p)),
        _ => {
            f.fail("recordings_user", "set both recordings_user (without ':') and recordings_password, or neither");
            None
        }
    };
    Some(Recordings { url: format!("{url}/"), dir, auth })
}

/// `ami`: the AMI's `host:port` (required).
fn address(f: &mut Fields<'_>, raw: Option<String>) -> Option<String> {
    let a = f.required("ami", raw, " for kind = \"asterisk\": host:port of its AMI, e.g. \"10.0.0.5:5038\"")?;
    let port_ok =
        a.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok {
        f.fail("ami", format!("{a:?} is not host:port, e.g. \"10.0.0.5:5038\""));
    }
    Some(a)
}

impl Reader for WebhookReader {
    fn place(&self) -> Place {
        Place::Pbx("asterisk")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let mut raw: RawAmi = f.parse()?;
        const WHY: &str = " for kind = \"asterisk\" (the AMI user of manager.conf)";
        let recordings = recordings(f, &mut raw);
        let address = address(f, raw.ami);
        let username = f.required("username", raw.username, WHY);
        let (_, from_env) = f.owner_var(ENV_PBX_SECRET_PREFIX);
        let secret = from_env.or(raw.secret);
        let secret = f.required("secret", secret, WHY);
        let contexts = raw.contexts.unwrap_or_else(|| DEFAULT_CONTEXTS.map(str::to_owned).to_vec());
        if contexts.is_empty() || contexts.iter().any(String::is_empty) {
            f.fail("contexts", "list the dialplan contexts inbound calls enter, e.g. [\"from-pstn\"]");
        }
        let region_text = raw.region.unwrap_or_else(|| "RU".into());
        let region = region_text.to_ascii_uppercase().parse::<phonenumber::country::Id>().ok();
        if region.is_none() {
            f.fail("region", format!("{region_text:?} is not an ISO 3166 country code such as \"RU\""));
        }
        let ami =
            Ami { address: address?, username: username?, secret: secret?, contexts, region: region?, recordings };
        let adapter: Box<dyn Adapter> = Box::new(ami);
        Some(Section::new("asterisk", adapter))
    }
}

impl Adapter for Ami {
    fn verify(&self, _req: &Inbound<'_>) -> Result<(), Refusal> {
        Err(Refusal::BadSignature("this PBX reports over AMI (callpool connects to it); it takes no webhooks".into()))
    }

    fn read(&self, _pbx: &str, _req: &Inbound<'_>) -> Result<Received, Refusal> {
        Err(Refusal::Malformed("this PBX reports over AMI; it takes no webhooks".into()))
    }

    /// A recording under `recordings_url` with its basic credentials, if set; another link as it is.
    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        let request = plain_get(http, recording).map(|get| match &self.recordings {
            Some(Recordings { url, auth: Some((user, password)), .. }) if recording.starts_with(url.as_str()) => {
                get.basic_auth(user, Some(password))
            }
            _ => get,
        });
        Box::pin(std::future::ready(request))
    }

    fn connector(
        &self,
        app: Arc<App>,
        pbx: &str,
        sink: Sink,
        stop: CancellationToken,
    ) -> Option<BoxFuture<'static, ()>> {
        Some(Box::pin(run(app, self.clone(), pbx.to_owned(), sink, stop)))
    }
}

/// Keeps a connection to the Asterisk until `stop`: connects, logs in, records what it reports;
/// after a drop, waits (1 s, doubling to 30 s; back to 1 s once a login succeeds) and again.
async fn run(app: Arc<App>, ami: Ami, pbx: String, sink: Sink, stop: CancellationToken) {
    let mut wait = Duration::from_secs(1);
    let connected = app.metrics.pbx_connected.with_label_values(&[pbx.as_str()]);
    connected.set(0);
    loop {
        let mut logged_in = false;
        let ended = tokio::select! {
            _ = stop.cancelled() => return,
            r = session(&app, &ami, &pbx, &sink, &mut logged_in) => r,
        };
        connected.set(0);
        if logged_in {
            wait = Duration::from_secs(1);
        }
        match ended {
            Ok(()) => tracing::warn!(pbx = %pbx, "The Asterisk closed the AMI connection; connecting again."),
            Err(e) => {
                tracing::warn!(pbx = %pbx, error = %e, retry_in_s = wait.as_secs(), "No AMI connection to the Asterisk.")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// One connection: login, then events until it drops.
async fn session(app: &App, ami: &Ami, pbx: &str, sink: &Sink, logged_in: &mut bool) -> Result<(), String> {
    let stream = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&ami.address))
        .await
        .map_err(|_| format!("connecting to {} timed out", ami.address))?
        .map_err(|e| format!("cannot connect to {}: {e}", ami.address))?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let banner = within(SILENT_FOR, line(&mut read)).await?.ok_or("closed before its banner")?;
    if !banner.starts_with("Asterisk Call Manager") {
        return Err(format!(
            "{} is not an AMI (it said {:?})",
            ami.address,
            banner.chars().take(60).collect::<String>()
        ));
    }
    write.write_all(login(ami).as_bytes()).await.map_err(|e| e.to_string())?;
    loop {
        let msg = within(SILENT_FOR, message(&mut read)).await?.ok_or("closed during the login")?;
        if msg.get("ActionID").map(String::as_str) != Some("callpool-login") {
            continue;
        }
        match msg.get("Response").map(String::as_str) {
            Some("Success") => break,
            _ => {
                let why = msg.get("Message").cloned().unwrap_or_default();
                tracing::error!(pbx = %pbx, message = %why, "The Asterisk refused callpool's AMI login: check username and secret (manager.conf).");
                return Err(format!("login refused: {why}"));
            }
        }
    }
    *logged_in = true;
    app.metrics.pbx_connected.with_label_values(&[pbx]).set(1);
    tracing::info!(pbx = %pbx, address = %ami.address, "Connected to the Asterisk's AMI.");
    if ami.recordings.is_some() {
        write.write_all(filters().as_bytes()).await.map_err(|e| e.to_string())?;
    }
    let mut filter_refused = false;
    let mut calls = Calls::default();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = ping.tick() => {
                write.write_all(b"Action: Ping\r\nActionID: callpool-ping\r\n\r\n").await.map_err(|e| e.to_string())?;
            }
            msg = within(SILENT_FOR, message(&mut read)) => {
                let Some(msg) = msg? else { return Ok(()) };
                let said = |k: &str| msg.get(k).map(String::as_str);
                if said("ActionID") == Some(FILTER_ID) && said("Response") != Some("Success") && !filter_refused {
                    filter_refused = true;
                    tracing::info!(pbx = %pbx, message = said("Message").unwrap_or(""), "The Asterisk refused callpool's AMI event filter (it needs write 'system'): every dialplan event arrives, unless manager.conf's eventfilter lines for this user narrow them (docs/PBX.md, Recordings).");
                }
                if let Some(report) = calls.on_event(ami, pbx, &msg, app.clock.now()) {
                    record(app, pbx, sink, report).await;
                }
            }
        }
    }
}

/// Records a report, retrying while the store does not answer (the AMI stream waits meanwhile).
async fn record(app: &App, pbx: &str, sink: &Sink, report: CallReport) {
    let mut wait = Duration::from_millis(100);
    for _ in 0..12 {
        match sink(report.clone()).await {
            Ok(()) => return,
            Err(e) => {
                app.metrics.store_errors.with_label_values(&["calls_record"]).inc();
                tracing::warn!(pbx = %pbx, call = %report.key, error = %e, "An AMI call report could not be recorded yet.");
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
    tracing::error!(pbx = %pbx, call = %report.key, "An AMI call report was dropped: the store did not answer for a minute.");
}

/// The event connection's login: call events, and with recordings the dialplan's (`VarSet`).
fn login(ami: &Ami) -> String {
    let events = if ami.recordings.is_some() { "call,dialplan" } else { "call" };
    format!(
        "Action: Login\r\nActionID: callpool-login\r\nUsername: {}\r\nSecret: {}\r\nEvents: {events}\r\n\r\n",
        clean(&ami.username),
        clean(&ami.secret)
    )
}

/// The `Filter` actions that keep the session to [`FILTERS`] (once logged in).
fn filters() -> String {
    FILTERS
        .iter()
        .map(|f| format!("Action: Filter\r\nActionID: {FILTER_ID}\r\nOperation: Add\r\nFilter: {f}\r\n\r\n"))
        .collect()
}

/// A value for an AMI header: no line breaks.
fn clean(s: &str) -> String {
    s.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

async fn within<T>(d: Duration, f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    tokio::time::timeout(d, f).await.map_err(|_| format!("no word from the Asterisk for {} s", d.as_secs()))?
}

/// One line without its end; `None` at the end of the stream.
async fn line(read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<Option<String>, String> {
    let mut buf = Vec::new();
    let n = (&mut *read).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE {
        return Err("a line longer than 8 KiB".into());
    }
    Ok(Some(String::from_utf8_lossy(&buf).trim_end_matches(['\r', '\n']).to_owned()))
}

/// One message (`Key: Value` lines up to an empty line); `None` at the end of the stream.
async fn message(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
) -> Result<Option<HashMap<String, String>>, String> {
    let mut fields = HashMap::new();
    loop {
        let Some(l) = line(read).await? else { return Ok(None) };
        if l.is_empty() {
            if fields.is_empty() {
                continue;
            }
            return Ok(Some(fields));
        }
        if fields.len() >= MAX_FIELDS {
            return Err("a message of more than 256 lines".into());
        }
        if let Some((k, v)) = l.split_once(':') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
}

/// What callpool knows of a call in progress.
struct Track {
    report: CallReport,
    /// When it was seen first here (for forgetting calls whose end never came).
    seen: Ts,
}

/// The inbound calls in progress on one connection, by `Linkedid`.
#[derive(Default)]
struct Calls(HashMap<String, Track>);

impl Calls {
    /// What `msg` changes, as a report to record.
    fn on_event(&mut self, ami: &Ami, pbx: &str, msg: &HashMap<String, String>, now: Ts) -> Option<CallReport> {
        let get = |k: &str| msg.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let at = get("Timestamp")
            .and_then(|t| t.parse::<f64>().ok())
            .map_or(now, |t| Ts::from_millis((t * 1000.0) as i64))
            .min(now);
        let event = get("Event")?;
        let linked = match (get("Linkedid"), event) {
            (Some(l), _) => l,
            (None, "OriginateResponse") => get("Uniqueid").unwrap_or(""),
            _ => return None,
        };
        match event {
            "Newchannel" => {
                // The call's first channel, entering an inbound context with the DID as its extension.
                if get("Uniqueid") != Some(linked) || self.0.contains_key(linked) {
                    return None;
                }
                if !ami.contexts.iter().any(|c| Some(c.as_str()) == get("Context")) {
                    return None;
                }
                let called = did(get("Exten")?, ami.region)?;
                let key = CallKey::new(pbx, linked).ok()?;
                let caller = get("CallerIDNum").and_then(Caller::parse);
                let report = CallReport {
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
                // Calls whose end never came (a restart of the Asterisk) are forgotten after a week.
                let horizon = now.as_millis() - (LONGEST_CALL_S as i64) * 1000;
                self.0.retain(|_, t| t.seen.as_millis() > horizon);
                self.0.insert(linked.to_owned(), Track { report: report.clone(), seen: now });
                Some(report)
            }
            // The call a callback trigger placed: the operator's leg (its first channel) answered
            // or not; its reports carry the callback's own key, which links them to it.
            "OriginateResponse" => {
                let id = get("ActionID").filter(|a| crate::callback::CallbackId::is_call_id(a))?;
                let key = CallKey::new(pbx, id).ok()?;
                let called = did(get("Exten")?, ami.region)?;
                let mut report = CallReport {
                    key,
                    called,
                    caller: None,
                    started_at: at,
                    answered_at: None,
                    ended_at: None,
                    status: CallStatus::Ringing,
                    duration: None,
                    recording_url: None,
                };
                if get("Response") != Some("Success") {
                    // The operator did not take it: nobody called the visitor.
                    report.status = CallStatus::Missed;
                    report.ended_at = Some(at);
                    report.duration = Some(0);
                    return Some(report);
                }
                let uniqueid = get("Uniqueid").unwrap_or(linked);
                self.0.insert(uniqueid.to_owned(), Track { report: report.clone(), seen: now });
                Some(report)
            }
            "BridgeEnter" => {
                let t = self.0.get_mut(linked)?;
                if t.report.answered_at.is_some() {
                    return None;
                }
                t.report.answered_at = Some(at.max(t.report.started_at));
                t.report.status = CallStatus::Answered;
                Some(t.report.clone())
            }
            // MixMonitor started recording on one of the call's channels: its file goes with the
            // call's next report (the recording is whole once the call ends).
            "VarSet" if get("Variable") == Some("MIXMONITOR_FILENAME") => {
                let (Some(recordings), Some(t)) = (&ami.recordings, self.0.get_mut(linked)) else { return None };
                match recordings.url_of(get("Value")?) {
                    Ok(url) => t.report.recording_url = Some(url),
                    Err(why) => {
                        tracing::warn!(pbx = %pbx, call = %t.report.key, problem = why, "A call's recording is not attached: its file cannot be served from recordings_url.")
                    }
                }
                None
            }
            "Hangup" if get("Uniqueid") == Some(linked) => {
                let mut t = self.0.remove(linked)?;
                let end = at.max(t.report.started_at);
                t.report.ended_at = Some(end);
                match t.report.answered_at {
                    Some(answered) => {
                        t.report.status = CallStatus::Completed;
                        t.report.duration =
                            Some(u32::try_from((end.as_millis() - answered.as_millis()) / 1000).unwrap_or(0));
                    }
                    None => {
                        // Q.850 cause 17: user busy.
                        t.report.status =
                            if get("Cause") == Some("17") { CallStatus::Busy } else { CallStatus::Missed };
                        t.report.duration = Some(0);
                    }
                }
                Some(t.report)
            }
            _ => None,
        }
    }
}

/// The DID as Asterisk's dialplan has it (`74951230001`, `84951230001`, `+74951230001`,
/// `4951230001`), as E.164; `None` for an extension that is not a phone number (`s`, `100`).
fn did(exten: &str, region: phonenumber::country::Id) -> Option<PhoneNumber> {
    if !exten.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit()) || exten.len() < 6 {
        return None;
    }
    crate::callback::number::read(exten, region)
        .ok()
        .or_else(|| PhoneNumber::parse(&format!("+{}", exten.trim_start_matches('+'))).ok())
}

pub mod trigger;

#[cfg(test)]
mod tests;
