//! What every vendor file implements ([`Adapter`] for its webhook, [`Trigger`] for its callback
//! requests) and the readers they share (the called number, a recording's URL, a start time
//! that cannot be in the future).

use std::time::Duration;

use axum::http::HeaderMap;
use callpool_pool::{PhoneNumber, Ts};
use serde::Serialize;
use utoipa::ToSchema;

use crate::callback::Callback;
use crate::calls::{CallKey, CallReport, CallStatus, MatchKind};

/// How far a PBX's clock may be from ours, either way (a signature's replay window, a call's
/// start in the future).
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// A webhook request as an adapter sees it.
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    /// The URL's query string (without '?').
    pub query: &'a str,
    pub body: &'a [u8],
    pub now: Ts,
    /// The request path after the PBX's own webhook URL, without the leading '/' (e.g.
    /// `events/call`: a vendor that appends its event's path to the base URL it is given, as Mango
    /// Office does); empty when there is none.
    pub path_tail: &'a str,
}

impl Inbound<'_> {
    /// The request's media type, e.g. `application/x-www-form-urlencoded`.
    pub fn content_type(&self) -> &str {
        self.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// Why a webhook request was refused; nothing was recorded.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No signature (or token) where one is required.
    NoSignature(String),
    /// The signature (or token) is wrong.
    BadSignature(String),
    /// The signature's time is outside the replay window.
    StaleTimestamp(String),
    /// The request is not what the vendor sends; the message names the field.
    Malformed(String),
}

impl Refusal {
    /// A metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NoSignature(_) => "no_signature",
            Refusal::BadSignature(_) => "bad_signature",
            Refusal::StaleTimestamp(_) => "stale_timestamp",
            Refusal::Malformed(_) => "malformed",
        }
    }

    /// For the PBX's operator.
    pub fn message(&self) -> &str {
        match self {
            Refusal::NoSignature(m) | Refusal::BadSignature(m) | Refusal::StaleTimestamp(m) | Refusal::Malformed(m) => {
                m
            }
        }
    }
}

/// What a webhook request carries.
pub enum Received {
    /// Call reports, to record before answering.
    Reports(Vec<CallReport>),
    /// A recording of a call the PBX reported before (Mango's `events/recording`, Zadarma's
    /// NOTIFY_RECORD): `recording` is what [`Adapter::recording`] fetches it by (a link, or the
    /// vendor's id). Attached to the call if callpool has it, else ignored; answered as reports are.
    Recording { key: CallKey, recording: String },
    /// Nothing to record (a URL check, an event callpool does not use): answer this.
    Answer(Reply),
}

/// An answer to the PBX.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Json(serde_json::Value),
    Text(String),
}

/// The answer to an accepted report (callpool's own JSON, unless the vendor wants another).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallAccepted {
    /// The PBX's call id.
    pub call_id: String,
    /// `new`, `updated` or `unchanged` (a repeat of a report already recorded).
    pub result: &'static str,
    pub status: CallStatus,
    #[serde(rename = "match")]
    pub matched: MatchKind,
    pub site: Option<String>,
}

impl CallAccepted {
    /// The answer for `call` as stored, with what the report did to it (`result`).
    pub fn of(call: &crate::calls::Call, result: &'static str) -> CallAccepted {
        CallAccepted {
            call_id: call.key.call_id().to_owned(),
            result,
            status: call.status,
            matched: call.matched.kind,
            site: call.matched.site.as_ref().map(ToString::to_string),
        }
    }
}

/// Where a connection's call reports go: recorded as a webhook's are (matched, stored with their
/// deliveries, a callback moved on), or the store's error. Given by the service's top, so that
/// vendors need not know the services that record.
pub type Sink =
    std::sync::Arc<dyn Fn(CallReport) -> futures_util::future::BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A vendor's webhook: how its requests are checked and read.
pub trait Adapter: Send + Sync {
    /// Checks that the request comes from the PBX (signature, token, address), before anything
    /// else reads it.
    fn verify(&self, req: &Inbound<'_>) -> Result<(), Refusal>;
    /// What the request carries; `pbx` (the PBX's configured id) prefixes its call ids.
    fn read(&self, pbx: &str, req: &Inbound<'_>) -> Result<Received, Refusal>;
    /// The request that fetches a recording this PBX reported (`recording`: what its report
    /// carried), with the PBX's credentials. A vendor that names recordings by id may first ask
    /// its API for a link (through `http`, which keeps to the addresses recordings may come
    /// from). By default a plain GET of an http(s) link.
    fn recording<'a>(
        &'a self,
        http: &'a reqwest::Client,
        recording: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<reqwest::RequestBuilder, RecordingError>> {
        Box::pin(std::future::ready(plain_get(http, recording)))
    }
    /// For a vendor that callpool connects to rather than one that posts webhooks (Asterisk's
    /// AMI): the task that keeps the connection and records what it reports, until `stop`.
    fn connector(
        &self,
        _app: std::sync::Arc<crate::app::App>,
        _pbx: &str,
        _sink: Sink,
        _stop: tokio_util::sync::CancellationToken,
    ) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        None
    }
    /// The answer once the reports are recorded (one per report, in order).
    fn reply(&self, accepted: &[CallAccepted]) -> Reply {
        let value = match accepted {
            [one] => serde_json::to_value(one),
            many => serde_json::to_value(many),
        };
        Reply::Json(value.expect("accepted reports serialize"))
    }
}

/// Why a recording cannot be fetched.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordingError {
    /// callpool cannot fetch what the report carried (not a link, or a vendor without an API).
    NotFetchable,
    /// The PBX says it no longer has the recording.
    Gone,
    /// The PBX's API did not give a link now (it did not answer, refused callpool's credentials,
    /// or answered an error): for the operator.
    Failed(String),
}

/// A plain GET of an http(s) link.
pub fn plain_get(http: &reqwest::Client, recording: &str) -> Result<reqwest::RequestBuilder, RecordingError> {
    if recording.starts_with("https://") || recording.starts_with("http://") {
        Ok(http.get(recording))
    } else {
        Err(RecordingError::NotFetchable)
    }
}

/// What the PBX answered a callback trigger.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Accepted; the PBX's own id for the call, if it gave one (its reports may use it).
    Placed { pbx_ref: Option<String> },
    /// Worth trying again (timeouts, 5xx, 429).
    Again(String),
    /// Refused for good (4xx, or an error in the answer).
    Refused(String),
}

/// Whom a callback rings first, and for how long.
pub struct Ring<'a> {
    /// The id the PBX is to report this call under, where it can carry one
    /// ([`crate::callback::CallbackId::call_id`]).
    pub call_id: &'a str,
    /// The operator to ring, as the trigger names one ([`Trigger::check_operator`]): a number,
    /// an extension, a channel.
    pub operator: &'a str,
    /// With `hunt = "all"` (a trigger that [`Trigger::rings_all`]): every operator, to be rung
    /// at once; otherwise empty (just `operator`).
    pub all: &'a [String],
    /// How long an operator's phone rings before it counts as not answered.
    pub ring_for: Duration,
}

impl<'a> Ring<'a> {
    /// One operator, rung for 25 s, the call reported under `call_id`.
    pub fn one(call_id: &'a str, operator: &'a str) -> Ring<'a> {
        Ring { call_id, operator, all: &[], ring_for: Duration::from_secs(25) }
    }

    /// Every operator to ring now: `all`, or just `operator`.
    pub fn operators(&self) -> Vec<&str> {
        if self.all.is_empty() {
            vec![self.operator]
        } else {
            self.all.iter().map(String::as_str).collect()
        }
    }
}

/// How a vendor is asked to place a callback: ring an operator first, then the visitor.
pub trait Trigger: Send + Sync {
    fn request(&self, http: &reqwest::Client, ring: &Ring<'_>, cb: &Callback, now: Ts) -> reqwest::RequestBuilder;
    /// Reads the PBX's answer (its status and body).
    fn answer(&self, status: reqwest::StatusCode, body: &str) -> Answer;
    /// For a vendor that is not asked over HTTP (Asterisk's AMI): places the call itself and
    /// says how it went; `request` and `answer` are then not used.
    fn place(&self, _ring: &Ring<'_>, _cb: &Callback) -> Option<futures_util::future::BoxFuture<'static, Answer>> {
        None
    }
    /// Reads an operator of the form's `operators` as this vendor names one; by default a phone
    /// number (E.164).
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        called_number("operators", raw)
            .map(|n| n.as_str().to_owned())
            .map_err(|_| format!("{raw:?} is not a phone number in E.164 (+74951230099)"))
    }
    /// The operator the trigger's own settings name (Mango's `extension`, Asterisk's `channel`),
    /// rung when the form lists no `operators`; `None`: the form's `operator` number.
    fn own_operator(&self) -> Option<&str> {
        None
    }
    /// Whether the PBX can be asked to ring every operator at once (`hunt = "all"`).
    fn rings_all(&self) -> bool {
        false
    }
    /// Whether the PBX's call reports follow the callback's call (answered, missed), so that
    /// callpool can tell an operator did not answer and ring the next (`hunt = "in_turn"`).
    fn follows_calls(&self) -> bool {
        true
    }
}

/// The answer to a trigger that got an HTTP answer, before the vendor reads its body: 5xx and
/// 429 are worth retrying, another non-2xx is a refusal (with the answer's `message`, if any).
pub fn http_answer(status: reqwest::StatusCode, body: &str) -> Option<Answer> {
    if status.is_server_error() || status.as_u16() == 429 {
        return Some(Answer::Again(format!("the PBX answered HTTP {status}")));
    }
    if !status.is_success() {
        let detail = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|j| j.get("message").and_then(json_text))
            .unwrap_or_default();
        return Some(Answer::Refused(
            format!("the PBX refused the request: HTTP {status} {detail}").trim_end().to_owned(),
        ));
    }
    None
}

/// The answer of a PBX that names the call it placed in its JSON answer's `field` (if at all).
pub fn placed_with(status: reqwest::StatusCode, body: &str, field: &str) -> Answer {
    if let Some(a) = http_answer(status, body) {
        return a;
    }
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    Answer::Placed { pbx_ref: json.as_ref().and_then(|j| j.get(field).and_then(json_text)) }
}

/// A JSON string or number as text.
pub fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The longest call duration believed (a week).
pub const LONGEST_CALL_S: u64 = 7 * 86_400;

/// The called number: E.164, formatting characters allowed (`+7 (495) 123-00-01`). `field`
/// names it in the error.
pub fn called_number(field: &str, raw: &str) -> Result<PhoneNumber, String> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.')).collect();
    PhoneNumber::parse(&compact)
        .map_err(|_| format!("{field}: {raw:?} is not an E.164 number (+, country code, number: +74951234567)"))
}

/// A recording's http(s) URL.
pub fn recording_url(field: &str, u: &str) -> Result<String, String> {
    if u.len() <= 2048 && (u.starts_with("https://") || u.starts_with("http://")) && !u.contains(char::is_whitespace) {
        Ok(u.to_owned())
    } else {
        Err(format!("{field}: {u:?} is not an http(s) URL"))
    }
}

/// A call cannot start in the future (beyond the replay window's allowance for clock skew).
pub fn not_in_future(started_at: Ts, now: Ts) -> Result<(), String> {
    if started_at > now.plus(CLOCK_SKEW) {
        Err("started_at: the call starts more than 5 minutes in the future".into())
    } else {
        Ok(())
    }
}

/// A trigger reader's section: the trigger, which the callback form that names it also sees as
/// the rules of its operators ([`crate::config::Operators`]).
pub fn trigger_section(name: &'static str, trigger: impl Trigger + 'static) -> crate::config::Section {
    let trigger: std::sync::Arc<dyn Trigger> = std::sync::Arc::new(trigger);
    let rules: std::sync::Arc<dyn crate::config::Operators> = std::sync::Arc::new(Rules(trigger.clone()));
    crate::config::Section::new(name, trigger).with_facet(rules)
}

/// A trigger's operator rules, for the configuration.
struct Rules(std::sync::Arc<dyn Trigger>);

impl crate::config::Operators for Rules {
    fn check_operator(&self, raw: &str) -> Result<String, String> {
        self.0.check_operator(raw)
    }
    fn own_operator(&self) -> Option<&str> {
        self.0.own_operator()
    }
    fn rings_all(&self) -> bool {
        self.0.rings_all()
    }
    fn follows_calls(&self) -> bool {
        self.0.follows_calls()
    }
}

/// For a vendor's tests: a configuration with the `[[pbx]]` of `pbx` (its fields, `id` first)
/// and a site whose callback form is reported by it and asks its PBX with a trigger of `kind`
/// (the trigger's fields in `trigger`), read by the vendor's `readers`, with `env`'s overrides.
#[cfg(test)]
pub fn callback_config(
    pbx: &str,
    kind: &str,
    trigger: &str,
    env: &[(&str, &str)],
    readers: &[&'static dyn crate::config::Reader],
) -> Result<crate::config::Config, crate::config::ConfigError> {
    let id = pbx.lines().next().and_then(|l| l.strip_prefix("id = ")).expect("the pbx's fields start with its id");
    let text = format!(
        r#"
[[pbx]]
{pbx}

[[site]]
id = "shop-1"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]

[site.callback]
operator = "+74951230099"
pbx = {id}
trigger = {{ kind = "{kind}", {trigger} }}
"#
    );
    let env: std::collections::HashMap<String, String> =
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    crate::config::Config::parse_with(&text, "test.toml", &env, readers)
}

/// For a vendor's tests: the trigger of the first site's callback form.
#[cfg(test)]
pub fn form_trigger(c: &crate::config::Config) -> &dyn Trigger {
    let section = &c.sites[0].callback.as_ref().expect("a callback form").trigger;
    crate::pbx::trigger(section).expect("a trigger")
}
