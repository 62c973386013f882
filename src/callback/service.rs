//! A callback request from the widget or `POST /v1/callback`, through the checks in order —
//! the number (region, validity, number type, blocklist), the time on the site, this node's
//! per-address and per-visitor limits, working hours — to the store, which counts the
//! per-number and per-site limits and stores the request with its jobs in one atomic step.
//! Also: what a callback's status tells the visitor's tabs, and how a call the PBX reports
//! moves its callback on.

use std::net::IpAddr;
use std::time::Duration;

use callpool_pool::{PoolError, SessionAttrs, Ts, VisitorId};

use super::{Callback, CallbackId, CallbackStatus, Origin};
use crate::app::App;
use crate::calls::store::{Created, Extra, JobKind};
use crate::calls::{Call, CallKey, CallStatus};
use crate::config::{CallbackConfig, SiteConfig};
use crate::live::bus::Event;
use crate::live::protocol::ServerMsg;

/// A request as it arrived.
pub struct Request {
    /// As the visitor typed it.
    pub number: String,
    pub visitor: Option<VisitorId>,
    pub attrs: SessionAttrs,
    pub ip: Option<IpAddr>,
    pub origin: Origin,
}

/// Why a request was refused: a stable reason (metrics, API) and a message safe to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// Refusals by a limit (the others are about the number or the visit).
    pub fn is_limit(&self) -> bool {
        matches!(self.reason, "ip" | "visitor" | "number" | "banned" | "site")
    }
}

/// How long a callback is kept (with its calls: the reports reach back as far).
pub fn keep(app: &App) -> Duration {
    app.config.analytics.calls_retention
}

/// Takes a request through the checks and stores it. A refusal's `reason` is one of the checks',
/// `disabled` (the site has no form) or `unavailable` (the store is away: nothing was stored).
pub async fn request(app: &App, site: &SiteConfig, req: Request) -> Result<Callback, Refusal> {
    let Some(cfg) = &site.callback else {
        return Err(Refusal {
            reason: "disabled",
            message: "this site has no callback form".into(),
            retry_after: None,
        });
    };
    stored(app, site, cfg, req).await.unwrap_or_else(|e| {
        app.metrics.store_errors.with_label_values(&["callback_create"]).inc();
        tracing::warn!(error = %e, "A callback request could not be stored.");
        Err(Refusal { reason: "unavailable", message: text(site, "failed"), retry_after: None })
    })
}

/// `key`'s text of the site's form with the site's own number in it.
pub fn text(site: &SiteConfig, key: &str) -> String {
    site.callback
        .as_ref()
        .map_or_else(String::new, |c| c.texts.get(key).replace("{number}", site.default_before.as_str()))
}

async fn stored(
    app: &App,
    site: &SiteConfig,
    cfg: &CallbackConfig,
    req: Request,
) -> Result<Result<Callback, Refusal>, PoolError> {
    let now = app.clock.now();
    let checked = check(app, site, cfg, &req, now).await?;
    let refuse = |r: Refusal| {
        app.metrics.callback_refused.with_label_values(&[site.id.as_str(), r.reason]).inc();
        tracing::info!(site = %site.id, reason = r.reason, "A callback request was refused.");
        Ok(Err(r))
    };
    let (number, due) = match checked {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    let id = CallbackId::random();
    let status = if due > now { CallbackStatus::Scheduled } else { CallbackStatus::Accepted };
    let link = CallKey::new(&cfg.pbx, id.as_str()).map_err(PoolError::Invalid)?;
    let cb = Callback {
        id: id.clone(),
        site: site.id.clone(),
        number,
        visitor: req.visitor,
        attrs: req.attrs,
        origin: req.origin,
        requested_at: now,
        due_at: due,
        status,
        attempts: 0,
        next_attempt_at: None,
        error: None,
        pbx_ref: None,
        call: None,
        links: vec![link],
        updated_at: now,
    };
    let mut jobs = vec![(JobKind::Trigger, due)];
    let ga_ok = cb.attrs.ga_client_id.as_deref().is_some_and(crate::analytics::ga4_client_id_ok);
    if site.ga4.is_some() && ga_ok {
        jobs.push((JobKind::CallbackGa4, now));
    }
    if cfg.telegram.is_some() {
        jobs.push((JobKind::TelegramRequest, now));
    }
    if cfg.notify.is_some() {
        jobs.push((JobKind::HookRequest, now));
    }
    let extra = Extra { jobs: &jobs, keep: keep(app) };
    match app.calls.create_callback(&cb, &cfg.limits, extra).await? {
        Created::Stored => {
            app.metrics.callback_requests.with_label_values(&[site.id.as_str(), cb.status.as_str()]).inc();
            tracing::info!(site = %site.id, callback = %cb.id, status = cb.status.as_str(), due = %cb.due_at, "A callback was requested.");
            app.callback_wake.notify_one();
            publish(app, &cb);
            Ok(Ok(cb))
        }
        Created::Open(id) => match app.calls.callback(&id).await? {
            Some(open) => {
                app.metrics.callback_requests.with_label_values(&[site.id.as_str(), "repeat"]).inc();
                tracing::info!(site = %site.id, callback = %open.id, "A repeated callback request joined the open one.");
                publish(app, &open);
                Ok(Ok(open))
            }
            None => Err(PoolError::Storage(format!("callback {id} vanished while it was open"))),
        },
        Created::Refused { scope, retry_after } => refuse(Refusal {
            reason: scope.as_str(),
            message: cfg.texts.get("limited").to_owned(),
            retry_after: Some(retry_after),
        }),
    }
}

/// Everything before the store: the number as E.164 and when the trigger is due.
async fn check(
    app: &App,
    site: &SiteConfig,
    cfg: &CallbackConfig,
    req: &Request,
    now: Ts,
) -> Result<Result<(callpool_pool::PhoneNumber, Ts), Refusal>, PoolError> {
    let refusal =
        |reason: &'static str| Refusal { reason, message: cfg.texts.get(reason).to_owned(), retry_after: None };
    let number = match super::number::read(&req.number, cfg.region).and_then(|n| cfg.blocklist.check(&n).map(|()| n)) {
        Ok(n) => n,
        Err(r) => return Ok(Err(refusal(r.reason))),
    };
    if !cfg.min_time_on_site.is_zero() {
        let first_seen = match &req.visitor {
            Some(v) => app.pool.current_visit(&site.id, v, now).await?.map(|visit| visit.first_seen),
            None => None,
        };
        if first_seen.is_none_or(|t| now < t.plus(cfg.min_time_on_site)) {
            return Ok(Err(refusal("too_soon")));
        }
    }
    if let Err(scope) = app.callback_limiters.check(&site.id, req.ip, req.visitor.as_ref().map(VisitorId::as_str)) {
        return Ok(Err(Refusal {
            reason: scope.as_str(),
            message: cfg.texts.get("limited").to_owned(),
            retry_after: None,
        }));
    }
    let due = if cfg.hours.is_open(now) { Some(now) } else { cfg.hours.next_open(now) };
    match due {
        Some(due) => Ok(Ok((number, due))),
        None => Ok(Err(Refusal { reason: "closed", message: text(site, "failed"), retry_after: None })),
    }
}

/// What a callback's status says to the visitor, in the site's language.
pub fn status_text(app: &App, cb: &Callback) -> Option<String> {
    let site = app.config.site(&cb.site)?;
    let cfg = site.callback.as_ref()?;
    Some(cfg.texts.render(cb.status.as_str(), cb.at(), app.clock.now(), site.timezone, site.default_before.as_str()))
}

/// The message a status shows in the visitor's tabs.
pub fn status_message(app: &App, cb: &Callback) -> Option<ServerMsg> {
    let message = status_text(app, cb)?;
    Some(ServerMsg::Callback { id: cb.id.to_string(), status: cb.status, at: cb.at().map(Ts::as_millis), message })
}

/// Tells every tab of the callback's visitor (on every node) how it stands.
pub fn publish(app: &App, cb: &Callback) {
    let (Some(visitor), Some(message)) = (cb.visitor.clone(), status_message(app, cb)) else { return };
    app.bus.publish(Event::Callback { site: cb.site.clone(), visitor, message });
}

/// The form's state for a site now: open, or the notice of when a call would come.
pub fn form(app: &App, site: &SiteConfig) -> Option<ServerMsg> {
    let cfg = site.callback.as_ref()?;
    let now = app.clock.now();
    let open = cfg.hours.is_open(now);
    let notice = (!open).then(|| {
        cfg.texts.render("closed_now", cfg.hours.next_open(now), now, site.timezone, site.default_before.as_str())
    });
    Some(ServerMsg::CallbackForm { texts: cfg.texts.form(site.default_before.as_str()), open, notice })
}

/// A call the PBX reported for a callback: moves the callback on (connected, completed,
/// missed), queues the "missed" notifications, and tells the visitor's tabs.
pub async fn on_call(app: &App, call: &Call) -> Result<(), PoolError> {
    for _ in 0..8 {
        let Some(mut cb) = app.calls.callback_for_call(&call.key).await? else { return Ok(()) };
        let status = match call.status {
            CallStatus::Ringing => return Ok(()),
            CallStatus::Answered => CallbackStatus::Connected,
            CallStatus::Completed => CallbackStatus::Completed,
            CallStatus::Missed | CallStatus::Busy | CallStatus::Failed => CallbackStatus::Missed,
        };
        if cb.status == status || cb.status.is_final() {
            return Ok(());
        }
        cb.status = status;
        cb.call = Some(call.key.clone());
        cb.updated_at = app.clock.now();
        let jobs = if status == CallbackStatus::Missed { missed_jobs(app, &cb) } else { Vec::new() };
        let extra = Extra { jobs: &jobs, keep: keep(app) };
        match app.calls.update_callback(&cb, extra).await? {
            crate::calls::store::Updated::Written => {
                app.metrics.callback_outcomes.with_label_values(&[status.as_str()]).inc();
                tracing::info!(callback = %cb.id, call = %call.key, status = status.as_str(), "A callback's call was reported.");
                if !jobs.is_empty() {
                    app.callback_wake.notify_one();
                }
                publish(app, &cb);
                return Ok(());
            }
            crate::calls::store::Updated::Missing => return Ok(()),
            // Another writer came first: read again.
            crate::calls::store::Updated::Stale => continue,
        }
    }
    Ok(())
}

/// The "missed" notifications the callback's site wants.
pub fn missed_jobs(app: &App, cb: &Callback) -> Vec<(JobKind, Ts)> {
    let now = app.clock.now();
    let cfg = app.config.site(&cb.site).and_then(|s| s.callback.as_ref());
    let mut jobs = Vec::new();
    if cfg.is_some_and(|c| c.telegram.is_some()) {
        jobs.push((JobKind::TelegramMissed, now));
    }
    if cfg.is_some_and(|c| c.notify.is_some()) {
        jobs.push((JobKind::HookMissed, now));
    }
    jobs
}
