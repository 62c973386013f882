//! The operator's API (`Authorization: Bearer <[server] admin_token>`): the pool of each site,
//! the dead letters of the job runner — deliveries given up, listed with their error and put
//! back in the queue once the cause is fixed — and the node's status: whether calls still flow
//! in from each PBX and out to each destination.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use callpool_pool::{SiteId, SiteStatus};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Admin;
use super::error::{ApiError, ErrorBody};
use super::extract::{Path, Query};
use crate::app::App;
use crate::jobs::registry;

/// A site's working set now.
#[derive(Serialize, ToSchema)]
pub struct SitePoolStatus {
    site: String,
    /// The most numbers the site may hold (dedicated ones included).
    max_numbers: u32,
    /// Numbers in the site's working set now.
    working: u32,
    /// Of those, dedicated to the site.
    dedicated: u32,
    /// Held by a visitor now.
    leased: u32,
    /// In the working set, not held.
    free: u32,
    /// Given back by this site and still in cooldown (no other site may take them yet).
    cooling: u32,
    /// Lease requests that found nothing free, since the pool was created.
    exhausted_total: u64,
}

impl SitePoolStatus {
    fn new(site: &SiteId, st: SiteStatus) -> SitePoolStatus {
        SitePoolStatus {
            site: site.to_string(),
            max_numbers: st.max_numbers,
            working: st.working,
            dedicated: st.dedicated,
            leased: st.leased,
            free: st.free,
            cooling: st.cooling,
            exhausted_total: st.exhausted_total,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PoolStatus {
    sites: Vec<SitePoolStatus>,
}

/// The pool of every configured site.
#[utoipa::path(get, path = "/v1/admin/pool", security(("admin_token" = [])), responses(
    (status = 200, body = PoolStatus),
    (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    (status = 503, description = "The store does not answer", body = ErrorBody),
))]
pub async fn pool_all(_: Admin, State(app): State<Arc<App>>) -> Result<Json<PoolStatus>, ApiError> {
    let now = app.clock.now();
    let mut sites = Vec::with_capacity(app.config().sites.len());
    for site in &app.config().sites {
        if let Some(st) = app.pool.status(&site.id, now).await? {
            sites.push(SitePoolStatus::new(&site.id, st));
        }
    }
    Ok(Json(PoolStatus { sites }))
}

/// One site's pool.
#[utoipa::path(get, path = "/v1/admin/pool/{site}", security(("admin_token" = [])),
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = SitePoolStatus),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn pool_site(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
) -> Result<Json<SitePoolStatus>, ApiError> {
    let unknown = || ApiError::not_found(format!("unknown site {site:?}"));
    let id = SiteId::new(site.clone()).map_err(|_| unknown())?;
    if app.config().site(&id).is_none() {
        return Err(unknown());
    }
    match app.pool.status(&id, app.clock.now()).await? {
        Some(st) => Ok(Json(SitePoolStatus::new(&id, st))),
        None => Err(unknown()),
    }
}

#[derive(Deserialize, IntoParams)]
pub struct DeadQuery {
    /// Only this kind of job (`ga4`, `yandex`, `trigger`, `cb_ga4`, `tg_request`, `tg_missed`,
    /// `hook_request`, `hook_missed`, `wh_call_started`, `wh_call_answered`, `wh_call_ended`, `wh_cb_requested`, `wh_cb_finished`); default: every kind.
    kind: Option<String>,
    /// At most this many per kind, oldest first (default 100, at most 10,000).
    limit: Option<usize>,
}

/// A delivery given up.
#[derive(Serialize, ToSchema)]
pub struct DeadLetter {
    /// The kind of job: its destination.
    kind: &'static str,
    /// The record it delivers: a call (`<pbx>:<call id>`) or a callback (`cb-...`).
    id: String,
    /// When it was given up (RFC 3339).
    since: String,
    /// Why: the destination's answer, or the last error after every attempt.
    error: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetters {
    dead_letters: Vec<DeadLetter>,
}

/// The kind of job `name` names.
fn kind(name: &str) -> Result<&'static str, ApiError> {
    registry::kinds()
        .map(|(k, _)| k)
        .find(|k| *k == name)
        .ok_or_else(|| ApiError::bad_request(format!("kind: {name:?} is not a kind of job")))
}

/// The dead letters of every kind of job (or of one), oldest first.
#[utoipa::path(get, path = "/v1/admin/dead-letters", security(("admin_token" = [])),
    params(DeadQuery),
    responses(
        (status = 200, body = DeadLetters),
        (status = 400, description = "An unknown kind", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn dead_letters(
    _: Admin,
    State(app): State<Arc<App>>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<DeadLetters>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let mut out = Vec::new();
    let kinds = match q.kind.as_deref() {
        Some(name) => vec![kind(name)?],
        None => registry::kinds().map(|(k, _)| k).collect(),
    };
    for kind in kinds {
        for d in app.store.dead_jobs(kind, limit).await? {
            let since = d.since.to_chrono().map(|t| t.to_rfc3339()).unwrap_or_default();
            out.push(DeadLetter { kind, id: d.id, since, error: d.error });
        }
    }
    Ok(Json(DeadLetters { dead_letters: out }))
}

/// Dead letters to put back in the queue.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requeue {
    kind: String,
    /// The records whose job of `kind` to try again.
    ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Requeued {
    /// Back in the queue, due now, their attempts forgotten.
    requeued: Vec<String>,
    /// Not dead letters of that kind (never were, already re-queued, or forgotten).
    not_found: Vec<String>,
}

/// Puts dead letters back in the queue (after the cause — a wrong token, a refused payload —
/// was fixed); each is tried again at once by the first node that claims it.
#[utoipa::path(post, path = "/v1/admin/dead-letters/requeue", security(("admin_token" = [])),
    request_body = Requeue,
    responses(
        (status = 200, body = Requeued),
        (status = 400, description = "An unknown kind, or a malformed body", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ))]
pub async fn requeue(
    _: Admin,
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Json<Requeued>, ApiError> {
    let req: Requeue =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("the body is not a requeue: {e}")))?;
    let kind = kind(&req.kind)?;
    if let Some(Err(why)) = registry::handler(kind).map(|h| h.requeue()) {
        return Err(ApiError::bad_request(format!("kind: {kind} cannot be re-queued: {why}")));
    }
    let now = app.clock.now();
    let (mut requeued, mut not_found) = (Vec::new(), Vec::new());
    for id in req.ids {
        if app.store.requeue_job(kind, &id, now).await? {
            requeued.push(id);
        } else {
            not_found.push(id);
        }
    }
    if !requeued.is_empty() {
        tracing::info!(kind, jobs = requeued.len(), "Dead letters were put back in the queue.");
        app.job_wake.wake(kind);
    }
    Ok(Json(Requeued { requeued, not_found }))
}

/// The node's store.
#[derive(Serialize, ToSchema)]
pub struct StoreStatus {
    /// `embedded` or `redis`.
    kind: &'static str,
    /// `up`, or `unavailable` (it did not answer a ping now; the reason is in the node's log).
    state: &'static str,
    /// This node's store errors since it started, by operation (`calls_record`, `jobs_claim`, ...).
    errors: BTreeMap<String, u64>,
}

/// The node's bus to the other nodes' tabs.
#[derive(Serialize, ToSchema)]
pub struct BusStatus {
    /// `in_process` (one node) or `rabbitmq`.
    kind: &'static str,
    /// `connected` or `unavailable` (RabbitMQ), `in_process`.
    state: &'static str,
    /// When the RabbitMQ connection last came up or went down (RFC 3339).
    since: Option<String>,
    /// The last error of the RabbitMQ connection, and when.
    last_error: Option<Noted>,
    /// Reconnections since the node started (each followed by a resync of the tabs).
    reconnects: u64,
    /// Events dropped because RabbitMQ was away too long.
    dropped: u64,
}

/// Something that happened, and when.
#[derive(Serialize, ToSchema)]
pub struct Noted {
    /// RFC 3339, UTC.
    at: String,
    message: String,
}

/// A PBX's last request to this node.
#[derive(Serialize, ToSchema)]
pub struct LastRequest {
    /// RFC 3339, UTC.
    at: String,
    /// `recorded` (a call or its update was stored), `answered` (a URL check or an event callpool
    /// does not use) or `refused`.
    outcome: &'static str,
}

/// A PBX's last refused request.
#[derive(Serialize, ToSchema)]
pub struct LastRefusal {
    /// RFC 3339, UTC.
    at: String,
    /// `bad_signature`, `forbidden_address`, `bad_request`, `rate_limited`, `unavailable`, ...
    code: String,
    message: String,
}

/// Requests a PBX sent this node since it started, by outcome.
#[derive(Serialize, ToSchema)]
pub struct PbxCounts {
    recorded: u64,
    answered: u64,
    refused: u64,
}

/// What one PBX sent this node.
#[derive(Serialize, ToSchema)]
pub struct PbxStatus {
    pbx: String,
    kind: String,
    /// Whether a site it serves is within its working hours now (as `callpool_pbx_open`).
    open: bool,
    /// Its last request (for a PBX callpool connects to, Asterisk: its last call event recorded).
    last_request: Option<LastRequest>,
    /// The last request callpool took (recorded or answered), RFC 3339.
    last_accepted: Option<String>,
    last_refusal: Option<LastRefusal>,
    requests: PbxCounts,
}

/// One kind of job: the deliveries to one destination.
#[derive(Serialize, ToSchema)]
pub struct DestinationStatus {
    /// The kind of job (`ga4`, `yandex` for Metrica, `trigger`, `cb_ga4`, `tg_request`, `tg_missed`,
    /// `hook_request`, `hook_missed`, `wh_call_started`, `wh_call_answered`, `wh_call_ended`, `wh_cb_requested`, `wh_cb_finished`), as the dead-letter API names it.
    kind: &'static str,
    /// The last delivery this node made, RFC 3339.
    last_sent: Option<String>,
    /// This node's last failed attempt.
    last_error: Option<DeliveryError>,
    /// Jobs waiting or in flight, store-wide (`null` while the store does not answer).
    pending: Option<u64>,
    /// Dead letters, store-wide (`GET /v1/admin/dead-letters?kind=` lists them).
    dead: Option<u64>,
}

/// A failed delivery attempt.
#[derive(Serialize, ToSchema)]
pub struct DeliveryError {
    /// RFC 3339, UTC.
    at: String,
    /// The destination's answer, or why there was none.
    error: String,
    /// Whether the job was given up (dead-lettered) rather than left to retry.
    dead_lettered: bool,
}

/// What one node sees of the service now.
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// The node that answered: the record of requests and deliveries is each node's own.
    node: String,
    /// callpool's version.
    version: &'static str,
    /// The configuration file the node runs.
    config: String,
    /// Now, by the node's clock (RFC 3339).
    at: String,
    store: StoreStatus,
    bus: BusStatus,
    pbxs: Vec<PbxStatus>,
    destinations: Vec<DestinationStatus>,
}

/// Whether calls still flow, as this node saw them: per PBX its last request, the last it took
/// and the last it refused; per kind of delivery the last sent and the last error, and the
/// store-wide queue and dead letters; the store and the bus. Answers while the store is away.
#[utoipa::path(get, path = "/v1/admin/status", security(("admin_token" = [])), responses(
    (status = 200, body = Status),
    (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
))]
pub async fn status(_: Admin, State(app): State<Arc<App>>) -> Json<Status> {
    let now = app.clock.now();
    let m = &app.metrics;
    m.set_hours(&app.config(), now);
    let store_up = match app.pool.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "Status: the store does not answer.");
            false
        }
    };
    let store = StoreStatus {
        kind: app.pool.kind(),
        state: if store_up { "up" } else { "unavailable" },
        errors: m.store_error_counts(),
    };
    let changes = m.bus.changes.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let bus = match app.config().bus {
        crate::config::BusConfig::InProcess => BusStatus {
            kind: "in_process",
            state: "in_process",
            since: None,
            last_error: None,
            reconnects: 0,
            dropped: 0,
        },
        crate::config::BusConfig::RabbitMq { .. } => BusStatus {
            kind: "rabbitmq",
            state: if m.bus.connected.get() == 1 { "connected" } else { "unavailable" },
            since: changes.since.map(|t| t.to_string()),
            last_error: changes.error.map(|(at, message)| Noted { at: at.to_string(), message }),
            reconnects: m.bus.reconnects.get(),
            dropped: m.bus.dropped.get(),
        },
    };
    let pbxs = app
        .config()
        .pbxs
        .iter()
        .map(|p| {
            let last = m.journal.pbx(&p.id).unwrap_or_default();
            PbxStatus {
                pbx: p.id.clone(),
                kind: p.adapter.name().to_owned(),
                open: m.pbx_open.with_label_values(&[p.id.as_str()]).get() == 1,
                last_request: last.request.map(|(at, outcome)| LastRequest { at: at.to_string(), outcome }),
                last_accepted: last.accepted.map(|t| t.to_string()),
                last_refusal: last.refusal.map(|(at, code, message)| LastRefusal { at: at.to_string(), code, message }),
                requests: PbxCounts { recorded: last.counts[0], answered: last.counts[1], refused: last.counts[2] },
            }
        })
        .collect();
    let mut destinations = Vec::new();
    for (kind, _) in registry::kinds() {
        let last = m.journal.job(kind);
        let depth = if store_up { app.store.job_depth(kind).await.ok() } else { None };
        destinations.push(DestinationStatus {
            kind,
            last_sent: last.sent.map(|t| t.to_string()),
            last_error: last.error.map(|(at, error, dead_lettered)| DeliveryError {
                at: at.to_string(),
                error,
                dead_lettered,
            }),
            pending: depth.map(|d| d.0),
            dead: depth.map(|d| d.1),
        });
    }
    Json(Status {
        node: app.config().server.node_id.clone(),
        version: env!("CARGO_PKG_VERSION"),
        config: app.config().source.clone(),
        at: now.to_string(),
        store,
        bus,
        pbxs,
        destinations,
    })
}

/// A reload that went through.
#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    /// The node that reloaded (it passed the reload on to every other node over the bus).
    node: String,
    /// The configuration version running now (a fingerprint of the file and its `sites.d/`).
    version: String,
    /// The version that ran before.
    previous: String,
    /// False when the files had not changed (nothing was applied).
    changed: bool,
}

/// Reads the configuration file and its `sites.d/` again and runs them, on this node and (over
/// the bus) every other: sites, numbers, PBXs and destinations change without a restart; open
/// tabs stay; numbers removed from a pool are retired as their leases end. A configuration with
/// problems, or one that changes a setting read only at start (`[store]`, `[bus]`, `listen`, ...),
/// is refused with every problem listed, and the running one stays. `SIGHUP` does the same.
#[utoipa::path(post, path = "/v1/admin/reload", security(("admin_token" = [])), responses(
    (status = 200, body = Reloaded),
    (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
    (status = 422, description = "Refused (`config_invalid`): `error.problems` lists every problem; the running configuration stays", body = ErrorBody),
))]
pub async fn reload(_: Admin, State(app): State<Arc<App>>) -> Result<Json<Reloaded>, ApiError> {
    // A task of its own: a client that goes away, or the request's timeout, must not stop a
    // reload half-way (the store configured, the node not yet running it).
    let task = {
        let app = app.clone();
        tokio::spawn(async move { crate::reload::reload(&app, crate::reload::Origin::Request).await })
    };
    let outcome = task.await.map_err(|e| ApiError::internal(format!("the reload failed: {e}")))?;
    match outcome {
        Ok(r) => Ok(Json(Reloaded {
            node: app.config().server.node_id.clone(),
            version: r.version,
            previous: r.previous,
            changed: r.changed,
        })),
        Err(refused) => {
            let n = refused.problems.len();
            let message = format!(
                "the configuration was refused ({n} problem{}); the running one stays",
                if n == 1 { "" } else { "s" }
            );
            Err(ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "config_invalid", message)
                .problems(refused.problems))
        }
    }
}

/// The configuration a node runs: what it holds (never a secret) and which version every node
/// of the cluster runs.
#[derive(Serialize, ToSchema)]
pub struct RunningConfig {
    /// The node that answered.
    node: String,
    /// The file it read (its `sites.d/` beside it).
    source: String,
    /// Its configuration version (the first 12 hex digits of the SHA-256 of the files read).
    version: String,
    /// When the node began running it (RFC 3339).
    since: String,
    /// `embedded` or `redis`.
    store: &'static str,
    /// `in_process` or `rabbitmq`.
    bus: &'static str,
    /// Numbers of the shared pool.
    shared_numbers: usize,
    sites: Vec<ConfiguredSite>,
    pbxs: Vec<ConfiguredPbx>,
    /// Every node heard from in the last 95 seconds (each says which version it runs every 30 s
    /// and after each reload), this one first.
    nodes: Vec<NodeVersion>,
    /// Whether every node listed runs this node's version.
    consistent: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConfiguredSite {
    id: String,
    /// Numbers dedicated to the site.
    numbers: usize,
    max_numbers: u32,
    /// The `[[pbx]]` its callback form goes through, when it has one.
    callback_pbx: Option<String>,
    /// The destinations of its calls and callbacks (`ga4`, `yandex`, `telegram`, `webhook`, ...).
    destinations: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConfiguredPbx {
    id: String,
    kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct NodeVersion {
    node: String,
    version: String,
    /// When it began running that version (RFC 3339).
    since: String,
    /// Why its last reload was refused (it runs the version before), if it was.
    refused: Option<String>,
    /// When this node last heard from it (RFC 3339).
    heard: String,
}

/// This node's configuration and every node's version.
#[utoipa::path(get, path = "/v1/admin/config", security(("admin_token" = [])), responses(
    (status = 200, body = RunningConfig),
    (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
))]
pub async fn config(_: Admin, State(app): State<Arc<App>>) -> Json<RunningConfig> {
    let c = app.config();
    let nodes: Vec<NodeVersion> = crate::reload::nodes(&app)
        .into_iter()
        .map(|(node, n)| NodeVersion {
            node,
            version: n.config.version,
            since: n.config.since.to_string(),
            refused: n.config.refused,
            heard: n.heard.to_string(),
        })
        .collect();
    let sites = c
        .sites
        .iter()
        .map(|s| ConfiguredSite {
            id: s.id.to_string(),
            numbers: s.numbers.len(),
            max_numbers: s.rules.max_numbers,
            callback_pbx: s.callback.as_ref().map(|cb| cb.pbx.clone()),
            destinations: s.sections.names().map(str::to_owned).collect(),
        })
        .collect();
    Json(RunningConfig {
        node: c.server.node_id.clone(),
        source: c.source.clone(),
        version: c.version.clone(),
        since: c.since.to_string(),
        store: app.pool.kind(),
        bus: match c.bus {
            crate::config::BusConfig::InProcess => "in_process",
            crate::config::BusConfig::RabbitMq { .. } => "rabbitmq",
        },
        shared_numbers: c.pool.numbers.len(),
        sites,
        pbxs: c.pbxs.iter().map(|p| ConfiguredPbx { id: p.id.clone(), kind: p.adapter.name().to_owned() }).collect(),
        consistent: nodes.iter().all(|n| n.version == c.version),
        nodes,
    })
}

#[derive(Deserialize, IntoParams)]
pub struct SetupQuery {
    /// Only report what would be created.
    #[serde(default)]
    dry_run: bool,
}

fn not_ready(e: crate::jobs::ga4_setup::NotReady) -> ApiError {
    use crate::jobs::ga4_setup::NotReady;
    match e {
        NotReady::UnknownSite(_) => ApiError::not_found(e.to_string()),
        NotReady::NotConfigured(_) => ApiError::not_configured(e.to_string()),
    }
}

/// Makes the site's calls goals in its GA4 property: the call event (and `callback_request` with a
/// callback form) as key events counted once per event, every parameter callpool sends as an
/// event-scoped custom dimension or metric; what exists is left alone. Needs `[site.ga4]
/// property_id` and `service_account_key_file`. `failed` counts what could not be made (each
/// item's `detail` says why: Google's answer, or the property's limit).
#[utoipa::path(post, path = "/v1/admin/analytics/{site}/setup", security(("admin_token" = [])),
    params(("site" = String, Path, description = "Site id"), SetupQuery),
    responses(
        (status = 200, body = crate::jobs::ga4_setup::SetupReport),
        (status = 400, description = "A bad parameter (`dry_run` is `true` or `false`)", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 422, description = "`not_configured`: the site has no GA4 property or service account", body = ErrorBody),
        (status = 503, description = "Google took longer than two minutes: what was made stays; run it again (or `callpool analytics setup`, which has no limit)", body = ErrorBody),
    ))]
pub async fn analytics_setup(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
    Query(q): Query<SetupQuery>,
) -> Result<Json<crate::jobs::ga4_setup::SetupReport>, ApiError> {
    // A task of its own: a client that goes away does not stop it half-way.
    let task = tokio::spawn(async move {
        let config = app.config();
        crate::jobs::ga4_setup::setup_site(&config, &site, q.dry_run, app.clock.now()).await
    });
    let outcome = task.await.map_err(|e| ApiError::internal(format!("the setup failed: {e}")))?;
    outcome.map(Json).map_err(not_ready)
}

/// Sends a sample call event with the site's measurement id and API secret to GA4's validation
/// server (nothing is recorded) and answers what it said; `valid` is false with its messages.
#[utoipa::path(post, path = "/v1/admin/analytics/{site}/check", security(("admin_token" = [])),
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = crate::jobs::ga4_setup::CheckReport),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 422, description = "`not_configured`: the site has no [site.ga4]", body = ErrorBody),
        (status = 502, description = "GA4's validation server did not answer", body = ErrorBody),
    ))]
pub async fn analytics_check(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
) -> Result<Json<crate::jobs::ga4_setup::CheckReport>, ApiError> {
    let config = app.config();
    match crate::jobs::ga4_setup::check_site(&config, &site, app.clock.now()).await.map_err(not_ready)? {
        Ok(report) => Ok(Json(report)),
        Err(why) => Err(ApiError::new(axum::http::StatusCode::BAD_GATEWAY, "upstream", why)),
    }
}

/// How each of a site's webhook URLs took a sample event.
#[derive(Serialize, ToSchema)]
pub struct WebhookTest {
    site: String,
    deliveries: Vec<crate::jobs::call_webhook::TestDelivery>,
}

/// Sends a sample `call.completed` event (a made-up call; its delivery id starts `test|`) to each
/// of the site's `[[site.webhooks]]` URLs now, signed as the real ones are, and answers how each
/// took it: for setting a receiver up.
#[utoipa::path(post, path = "/v1/admin/webhooks/{site}/test", security(("admin_token" = [])),
    params(("site" = String, Path, description = "Site id")),
    responses(
        (status = 200, body = WebhookTest),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Unknown site", body = ErrorBody),
        (status = 422, description = "`not_configured`: the site has no [[site.webhooks]]", body = ErrorBody),
    ))]
pub async fn webhook_test(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(site): Path<String>,
) -> Result<Json<WebhookTest>, ApiError> {
    let config = app.config();
    let Some(s) = config.sites.iter().find(|s| s.id.as_str() == site) else {
        return Err(ApiError::not_found(format!("no site {site:?} in the configuration")));
    };
    let http = crate::jobs::ga4_setup::client(&config);
    match crate::jobs::call_webhook::send_test(&http, s, app.clock.now()).await {
        Some(deliveries) => Ok(Json(WebhookTest { site, deliveries })),
        None => Err(ApiError::not_configured(format!("site {site:?} has no [[site.webhooks]]"))),
    }
}
