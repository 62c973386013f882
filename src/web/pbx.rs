//! `POST /v1/pbx/calls?pbx=<id>`: the PBXs' call webhooks. The PBX's vendor adapter checks the
//! request (signature or token) before anything else reads it, the PBX's rate limit applies,
//! the adapter reads the request into call reports, each is recorded (matched, stored with its
//! deliveries), and the adapter says what to answer. A 2xx means the calls and their deliveries
//! are durable.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::ClientIp;
use super::error::{ApiError, ErrorBody};
use super::extract::Path;
use crate::app::App;
use crate::calls::ingest::{self, Recorded};
use crate::calls::{CallKey, Caller, MatchKind};
use crate::pbx::{self, CallAccepted, Inbound, Received, Reply};
use crate::store::StoreError;

/// The largest webhook body read.
pub const MAX_BODY: usize = 64 * 1024;

/// Each PBX's rate (`requests_per_second`, and as a burst), counted twice: per client address
/// before the request is verified (so that no one can spend a PBX's budget, or the node's CPU,
/// with requests the PBX never signed), and for the PBX as a whole once it is; and the last
/// requests it sent this node, for its operator ([`activity`]).
/// Kept per configuration: when another starts running, the table is made again for it, and a
/// PBX whose rate stays the same keeps its limiters and its requests.
#[derive(Clone)]
pub struct Limiters(Arc<ArcSwap<PerConfig>>);

struct PerConfig {
    version: String,
    pbxs: HashMap<String, Arc<PerPbx>>,
}

struct PerPbx {
    requests_per_second: u32,
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    whole: DefaultDirectRateLimiter,
    seen: Mutex<VecDeque<Seen>>,
}

/// How many requests of each PBX a node remembers.
const REMEMBERED: usize = 50;

impl Limiters {
    pub fn new(app: &App) -> Limiters {
        let limiters =
            Limiters(Arc::new(ArcSwap::from_pointee(PerConfig { version: String::new(), pbxs: HashMap::new() })));
        limiters.of(app);
        limiters
    }

    /// The table of the configuration running now, made now if it is not the one kept (never
    /// for an older configuration a request in flight still holds: that would undo the new one).
    fn of(&self, app: &App) -> Arc<PerConfig> {
        let config = app.config();
        let kept = self.0.load_full();
        if kept.version == config.version {
            return kept;
        }
        let pbxs = config
            .pbxs
            .iter()
            .map(|p| {
                let same = kept.pbxs.get(&p.id).filter(|k| k.requests_per_second == p.requests_per_second);
                let per = same.cloned().unwrap_or_else(|| {
                    let n = NonZeroU32::new(p.requests_per_second).unwrap_or(NonZeroU32::MIN);
                    let quota = Quota::per_second(n).allow_burst(n);
                    Arc::new(PerPbx {
                        requests_per_second: p.requests_per_second,
                        by_address: RateLimiter::keyed(quota),
                        whole: RateLimiter::direct(quota),
                        seen: Mutex::new(VecDeque::with_capacity(REMEMBERED)),
                    })
                });
                (p.id.clone(), per)
            })
            .collect();
        let made = Arc::new(PerConfig { version: config.version.clone(), pbxs });
        self.0.store(made.clone());
        made
    }

    /// Forgets addresses that have been quiet for a while.
    pub fn retain_recent(&self) {
        for per in self.0.load().pbxs.values() {
            per.by_address.retain_recent();
        }
    }

    fn note(&self, pbx: &str, seen: Seen) {
        if let Some(per) = self.0.load().pbxs.get(pbx) {
            let mut list = per.seen.lock().unwrap_or_else(|p| p.into_inner());
            if list.len() == REMEMBERED {
                list.pop_back();
            }
            list.push_front(seen);
        }
    }
}

/// One request a PBX sent (no body, no numbers: what came of it).
#[derive(Clone, Serialize, ToSchema)]
pub struct Seen {
    /// When it came (RFC 3339, UTC, with milliseconds).
    at: String,
    /// The client address, as read through `[server] trusted_proxies`.
    from: String,
    /// The path after the PBX's id (a vendor's event path), if any.
    path: Option<String>,
    /// `recorded` (its calls below), `answered` (a URL check or an event callpool does not use) or
    /// `refused`.
    outcome: &'static str,
    /// For a refusal: its code (`bad_signature`, `forbidden_address`, `bad_request`, `rate_limited`, ...) and message.
    code: Option<String>,
    message: Option<String>,
    /// The calls it reported: the PBX's call id and `new`, `updated` or `unchanged`.
    calls: Vec<String>,
}

/// What one PBX sent this node lately.
#[derive(Serialize, ToSchema)]
pub struct PbxActivity {
    pbx: String,
    kind: String,
    /// This node's last requests from it, newest first (at most 50; each node keeps its own).
    requests: Vec<Seen>,
}

#[derive(Serialize, ToSchema)]
pub struct PbxActivityList {
    node: String,
    pbxs: Vec<PbxActivity>,
}

/// The last requests each PBX sent this node and what came of them: for setting a PBX up, and
/// for finding why its calls do not arrive.
#[utoipa::path(get, path = "/v1/admin/pbx", security(("admin_token" = [])), responses(
    (status = 200, body = PbxActivityList),
    (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
))]
pub async fn activity(
    _: super::auth::Admin,
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
) -> Json<PbxActivityList> {
    let config = app.config();
    let table = limiters.of(&app);
    let pbxs = config
        .pbxs
        .iter()
        .map(|p| PbxActivity {
            pbx: p.id.clone(),
            kind: p.adapter.name().to_owned(),
            requests: table.pbxs.get(&p.id).map_or_else(Vec::new, |per| {
                per.seen.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
            }),
        })
        .collect();
    Json(PbxActivityList { node: app.config().server.node_id.clone(), pbxs })
}

#[derive(Deserialize, IntoParams)]
pub struct PbxQuery {
    /// The PBX's id from the configuration; may be left out when only one PBX is configured.
    pub pbx: Option<String>,
    /// The PBX's static `token`, when it has one and cannot send it in `Authorization: Bearer`.
    pub token: Option<String>,
}

/// Receives a call report from a PBX (the PBX named in the query).
#[utoipa::path(
    post,
    path = "/v1/pbx/calls",
    params(PbxQuery),
    request_body(
        description = "callpool's JSON call report, or Twilio-style form fields (CallSid, From, To, CallStatus, CallDuration, RecordingUrl, Timestamp), or the vendor's own body for a PBX of another kind (docs/PBX.md)",
        content(
            (crate::pbx::callpool::CallWebhook = "application/json"),
            (String = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "Recorded (and its analytics queued) before this answer; a vendor that expects its own answer gets it (plain text, or its JSON)",
            content((CallAccepted = "application/json"), (String = "text/plain"))),
        (status = 400, description = "The body is malformed; the message names the field", body = ErrorBody),
        (status = 401, description = "Unknown PBX, missing or wrong signature or token, or a timestamp outside the replay window; nothing recorded", body = ErrorBody),
        (status = 403, description = "The PBX has `allow_from` and the client address is not in it; nothing recorded", body = ErrorBody),
        (status = 429, description = "Too many reports from this PBX; retry after a second", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn receive(
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
    ClientIp(ip): ClientIp,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = Webhook { pbx: None, tail: String::new(), query, headers, body };
    handle(&app, &limiters, ip, request).await
}

/// A vendor's check of the URL or a report sent as a GET (Zadarma's `zd_echo`, Sipuni).
#[utoipa::path(
    get,
    path = "/v1/pbx/calls",
    params(PbxQuery),
    responses(
        (status = 200, description = "The vendor's answer (Zadarma: the `zd_echo` value as plain text), or a report recorded", 
            content((CallAccepted = "application/json"), (String = "text/plain"))),
        (status = 400, description = "Not what the PBX's vendor sends; the message names the field", body = ErrorBody),
        (status = 401, description = "Unknown PBX, or missing or wrong signature or token", body = ErrorBody),
        (status = 403, description = "The PBX has `allow_from` and the client address is not in it", body = ErrorBody),
        (status = 429, description = "Too many requests for this PBX; retry after a second", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn check_url(
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
    ClientIp(ip): ClientIp,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = Webhook { pbx: None, tail: String::new(), query, headers, body: Bytes::new() };
    handle(&app, &limiters, ip, request).await
}

#[derive(Deserialize, IntoParams)]
pub struct TokenQuery {
    /// The PBX's static `token`, when it has one and cannot send it in `Authorization: Bearer`.
    pub token: Option<String>,
}

/// Receives a PBX's event at a URL that names the PBX in its path: for a vendor that appends
/// its event's path to the address it is given (Mango Office: `<address>/events/call`).
#[utoipa::path(
    post,
    path = "/v1/pbx/calls/{pbx}/{event}",
    params(
        ("pbx" = String, Path, description = "The PBX's id from the configuration"),
        ("event" = String, Path, description = "What the vendor appended (Mango Office: `events/call`, `events/summary`, ...)"),
        TokenQuery,
    ),
    request_body(description = "The vendor's own body (docs/PBX.md)", content((String = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Recorded, or ignored as an event callpool does not use; the vendor's answer",
            content((CallAccepted = "application/json"), (String = "text/plain"))),
        (status = 400, description = "The body is malformed; the message names the field", body = ErrorBody),
        (status = 401, description = "Unknown PBX, or missing or wrong signature or token; nothing recorded", body = ErrorBody),
        (status = 403, description = "The PBX has `allow_from` and the client address is not in it; nothing recorded", body = ErrorBody),
        (status = 429, description = "Too many reports from this PBX; retry after a second", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn receive_event(
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
    ClientIp(ip): ClientIp,
    Path((pbx, tail)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = Webhook { pbx: Some(pbx), tail, query, headers, body };
    handle(&app, &limiters, ip, request).await
}

/// Receives a call report at a URL that names the PBX in its path (`/v1/pbx/calls/<id>`): for a
/// vendor that adds its own query to the address it is given (Zadarma's `?zd_echo=`).
#[utoipa::path(
    post,
    path = "/v1/pbx/calls/{pbx}",
    params(("pbx" = String, Path, description = "The PBX's id from the configuration"), TokenQuery),
    request_body(description = "As for `POST /v1/pbx/calls`", content((String = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "Recorded, or ignored as an event callpool does not use; the vendor's answer",
            content((CallAccepted = "application/json"), (String = "text/plain"))),
        (status = 400, description = "The body is malformed; the message names the field", body = ErrorBody),
        (status = 401, description = "Unknown PBX, or missing or wrong signature or token; nothing recorded", body = ErrorBody),
        (status = 403, description = "The PBX has `allow_from` and the client address is not in it; nothing recorded", body = ErrorBody),
        (status = 429, description = "Too many reports from this PBX; retry after a second", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn receive_named(
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
    ClientIp(ip): ClientIp,
    Path(pbx): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request = Webhook { pbx: Some(pbx), tail: String::new(), query, headers, body };
    handle(&app, &limiters, ip, request).await
}

/// A vendor's check of the URL `/v1/pbx/calls/<id>` (Zadarma's `?zd_echo=`), or a report sent as a GET.
#[utoipa::path(
    get,
    path = "/v1/pbx/calls/{pbx}",
    params(("pbx" = String, Path, description = "The PBX's id from the configuration"), TokenQuery),
    responses(
        (status = 200, description = "The vendor's answer (Zadarma: the `zd_echo` value as plain text), or a report recorded",
            content((CallAccepted = "application/json"), (String = "text/plain"))),
        (status = 400, description = "Not what the PBX's vendor sends; the message names the field", body = ErrorBody),
        (status = 401, description = "Unknown PBX, or missing or wrong signature or token", body = ErrorBody),
        (status = 403, description = "The PBX has `allow_from` and the client address is not in it", body = ErrorBody),
        (status = 429, description = "Too many requests for this PBX; retry after a second", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ),
    security(("pbx_signature" = [])),
)]
pub async fn check_named_url(
    State(app): State<Arc<App>>,
    State(limiters): State<Limiters>,
    ClientIp(ip): ClientIp,
    Path(pbx): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let request = Webhook { pbx: Some(pbx), tail: String::new(), query, headers, body: Bytes::new() };
    handle(&app, &limiters, ip, request).await
}

/// A webhook request, whichever URL form it came to.
struct Webhook {
    /// The PBX's id when the path names it (else `?pbx=`).
    pbx: Option<String>,
    /// The path after the PBX's id, without the leading '/'.
    tail: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Bytes,
}

/// Handles a webhook request and notes what came of it in the PBX's recent requests.
async fn handle(app: &App, limiters: &Limiters, ip: IpAddr, request: Webhook) -> Result<Response, ApiError> {
    let now = app.clock.now();
    let at = now.to_string();
    let path = Some(request.tail.clone()).filter(|t| !t.is_empty());
    let mut pbx_id = None;
    let mut calls = None;
    let result = process(app, limiters, ip, request, &mut pbx_id, &mut calls).await;
    if let Some(pbx) = pbx_id {
        let (outcome, code, message) = match (&result, &calls) {
            (Ok(_), Some(_)) => ("recorded", None, None),
            (Ok(_), None) => ("answered", None, None),
            (Err(e), _) => ("refused", Some(e.code().to_owned()), Some(e.message().to_owned())),
        };
        app.metrics.pbx_request(&pbx, now, outcome, code.as_deref().zip(message.as_deref()));
        let calls = calls.unwrap_or_default().iter().map(|c| format!("{}: {}", c.call_id, c.result)).collect();
        limiters.note(&pbx, Seen { at, from: ip.to_string(), path, outcome, code, message, calls });
    }
    result
}

async fn process(
    app: &App,
    limiters: &Limiters,
    ip: IpAddr,
    request: Webhook,
    pbx_id: &mut Option<String>,
    calls: &mut Option<Vec<CallAccepted>>,
) -> Result<Response, ApiError> {
    let config = app.config();
    let Webhook { pbx: in_path, tail, query, headers, body } = request;
    let query = query.unwrap_or_default();
    // `?pbx=` and `?token=` (read leniently: the rest of the query is the vendor's).
    let param =
        |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let named_pbx = in_path.or_else(|| param("pbx"));
    let token = param("token");
    let timer = app.metrics.pbx_seconds.start_timer();
    let reject = |reason: &str| app.metrics.pbx_rejected.with_label_values(&[reason]).inc();
    let pbx = match named_pbx {
        Some(id) => config.pbx(&id),
        None if config.pbxs.len() == 1 => config.pbxs.first(),
        None => None,
    };
    let Some((pbx, adapter)) = pbx.and_then(|p| pbx::adapter(p).map(|a| (p, a))) else {
        reject("unknown_pbx");
        return Err(ApiError::bad_signature("unknown PBX: name it with ?pbx=<id> as configured in [[pbx]]"));
    };
    *pbx_id = Some(pbx.id.clone());
    let table = limiters.of(app);
    let Some(PerPbx { by_address, whole, .. }) = table.pbxs.get(&pbx.id).map(Arc::as_ref) else {
        return Err(ApiError::unavailable("the PBX's configuration is changing; try again"));
    };
    if by_address.check_key(&crate::callback::limits::client_key(ip)).is_err() {
        reject("rate_limited");
        return Err(ApiError::rate_limited());
    }
    if !pbx.allow_from.is_empty() && !pbx.allow_from.iter().any(|net| net.contains(&ip)) {
        reject("address");
        tracing::info!(pbx = %pbx.id, %ip, "A call webhook from an address the PBX does not post from was refused.");
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden_address",
            "this PBX does not post from this address",
        ));
    }
    if pbx.token.is_some() {
        let given = token.as_deref().or_else(|| super::auth::bearer(&headers)).unwrap_or("");
        if !super::auth::same(given, pbx.token.as_ref()) {
            reject("bad_token");
            tracing::info!(pbx = %pbx.id, "A call webhook without the PBX's token was refused.");
            return Err(ApiError::bad_signature("send the PBX's token: ?token=<token> or Authorization: Bearer"));
        }
    }
    let req = Inbound { headers: &headers, query: &query, body: &body, now: app.clock.now(), path_tail: &tail };
    if let Err(why) = adapter.verify(&req) {
        reject(why.reason());
        tracing::info!(pbx = %pbx.id, reason = why.reason(), "A call webhook was refused.");
        return Err(why.into());
    }
    if whole.check().is_err() {
        reject("rate_limited");
        return Err(ApiError::rate_limited());
    }
    let reports = match adapter.read(&pbx.id, &req) {
        Ok(Received::Reports(r)) => r,
        Ok(Received::Answer(reply)) => return Ok(respond(reply)),
        Ok(Received::Recording { key, recording }) => {
            let accepted: Vec<CallAccepted> = attach_recording(app, &key, &recording).await?.into_iter().collect();
            timer.observe_duration();
            let reply = adapter.reply(&accepted);
            *calls = Some(accepted);
            return Ok(respond(reply));
        }
        Err(why) => {
            reject(why.reason());
            return Err(why.into());
        }
    };
    let mut accepted = Vec::with_capacity(reports.len());
    for report in &reports {
        accepted.push(record(app, report).await?);
    }
    timer.observe_duration();
    let reply = adapter.reply(&accepted);
    *calls = Some(accepted);
    Ok(respond(reply))
}

/// Records one report, as a webhook or a connection brought it (and moves a callback on, if the
/// call is one's): matched, stored with its deliveries, counted and logged.
pub async fn record(app: &App, report: &crate::calls::CallReport) -> Result<CallAccepted, StoreError> {
    let recorded = ingest::record(app, report).await.inspect_err(|e| {
        app.metrics.store_errors.with_label_values(&["calls_record"]).inc();
        tracing::warn!(error = %e, "A call webhook could not be recorded; the PBX will retry.");
    })?;
    let call = recorded.call();
    let site_label = call.matched.site.as_ref().map_or("-", |s| s.as_str());
    let result = match &recorded {
        Recorded::New(_) => {
            app.metrics.calls_recorded.with_label_values(&[site_label, call.matched.kind.as_str()]).inc();
            tracing::info!(call = %call.key, site = site_label, kind = call.matched.kind.as_str(), status = call.status.as_str(), "A call was recorded.");
            tracing::debug!(call = %call.key, called = %call.called, caller = ?call.caller.as_ref().map(Caller::as_str), "Call numbers.");
            "new"
        }
        Recorded::Updated(_) => "updated",
        Recorded::Unchanged(_) => "unchanged",
    };
    // Also for a repeated report: the callback may not have been moved on the first time.
    if call.matched.kind == MatchKind::Callback {
        crate::callback::service::on_call(app, call).await.inspect_err(|e| {
            app.metrics.store_errors.with_label_values(&["callback_outcome"]).inc();
            tracing::warn!(error = %e, call = %call.key, "A callback's outcome could not be recorded; the PBX will retry.");
        })?;
    }
    Ok(CallAccepted::of(call, result))
}

/// Attaches a recording to a call callpool recorded; `None` (logged) for a call it does not have
/// (one it never recorded: an employee's own call, an internal one).
async fn attach_recording(app: &App, key: &CallKey, recording: &str) -> Result<Option<CallAccepted>, StoreError> {
    let found = ingest::attach_recording(app, key, recording).await.inspect_err(|e| {
        app.metrics.store_errors.with_label_values(&["calls_record"]).inc();
        tracing::warn!(error = %e, "A recording could not be attached to its call; the PBX will retry.");
    })?;
    let Some((call, changed)) = found else {
        tracing::debug!(call = %key, "A recording of a call callpool did not record; ignored.");
        return Ok(None);
    };
    Ok(Some(CallAccepted::of(&call, if changed { "updated" } else { "unchanged" })))
}

fn respond(reply: Reply) -> Response {
    match reply {
        Reply::Json(v) => Json(v).into_response(),
        Reply::Text(t) => ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], t).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_vendors_answer_goes_out_as_it_asks() {
        let text = respond(Reply::Text("pong".into()));
        assert_eq!(text.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(&axum::body::to_bytes(text.into_body(), 100).await.unwrap()[..], b"pong");
        let json = respond(Reply::Json(serde_json::json!({"success": true})));
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(&axum::body::to_bytes(json.into_body(), 100).await.unwrap()[..], br#"{"success":true}"#);
    }
}
