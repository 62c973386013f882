//! The operator's API (`Authorization: Bearer <[server] admin_token>`): the pool of each site,
//! and the dead letters of the job runner — deliveries given up, listed with their error and
//! put back in the queue once the cause is fixed.

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
    let mut sites = Vec::with_capacity(app.config.sites.len());
    for site in &app.config.sites {
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
    if app.config.site(&id).is_none() {
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
    /// `hook_request`, `hook_missed`); default: every kind.
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
