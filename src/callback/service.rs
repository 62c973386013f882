//! A callback request from the widget or `POST /v1/callback`, through the checks in order —
//! the number (region, validity, number type, blocklist), the time on the site, this node's
//! per-address and per-visitor limits, working hours — to the store, which counts the
//! per-number and per-site limits and stores the request with its jobs in one atomic step.
//! Also: how a call the PBX reports moves its callback on.

use std::net::IpAddr;
use std::time::Duration;

use callpool_pool::{SessionAttrs, Ts, VisitorId};

use super::{status, Callback, CallbackId, CallbackStatus, Channel, Reason};
use crate::app::App;
use crate::calls::{Call, CallKey, CallStatus};
use crate::config::{CallbackConfig, SiteConfig};
use crate::jobs::{registry, Event};
use crate::store::callbacks::{Created, Updated};
use crate::store::jobs::{Plan, Planned};
use crate::store::StoreError;

/// A request as it arrived.
pub struct Request {
    /// As the visitor typed it.
    pub number: String,
    pub visitor: Option<VisitorId>,
    pub attrs: SessionAttrs,
    pub ip: Option<IpAddr>,
    pub channel: Channel,
}

/// Why a request was refused, with a message safe to show (in the site's language) and, for a
/// limit kept in the store, when the number may ask again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// What a request that was not refused got.
#[derive(Debug)]
pub enum Answer {
    /// Stored; or the requester's own request (same visitor) that is still open.
    Mine(Callback),
    /// The number already has an open request of another visitor's (or of a request without a
    /// visitor): it will be called once, and nothing of that request (its id, its status) is
    /// told to this requester. Holds what a new request would have been (never stored).
    Joined(Callback),
}

/// Takes a request through the checks and stores it.
pub async fn request(app: &App, site: &SiteConfig, req: Request) -> Result<Answer, Refusal> {
    let Some(cfg) = &site.callback else {
        return Err(Refusal {
            reason: Reason::Disabled,
            message: "this site has no callback form".into(),
            retry_after: None,
        });
    };
    stored(app, site, cfg, req).await.unwrap_or_else(|e| {
        app.metrics.store_errors.with_label_values(&["callback_create"]).inc();
        tracing::warn!(error = %e, "A callback request could not be stored.");
        Err(Refusal { reason: Reason::Unavailable, message: text(site, "failed"), retry_after: None })
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
) -> Result<Result<Answer, Refusal>, StoreError> {
    let now = app.clock.now();
    let checked = check(app, site, cfg, &req, now).await?;
    let refuse = |r: Refusal| {
        app.metrics.callback_refused.with_label_values(&[site.id.as_str(), r.reason.as_str()]).inc();
        tracing::info!(site = %site.id, reason = r.reason.as_str(), "A callback request was refused.");
        Ok(Err(r))
    };
    let (number, due) = match checked {
        Ok(v) => v,
        Err(r) => return refuse(r),
    };
    let id = CallbackId::random();
    let status = if due > now { CallbackStatus::Scheduled } else { CallbackStatus::Accepted };
    let link = CallKey::new(&cfg.pbx, id.as_str()).expect("a callback id is a valid call id (cb- and 24 hex digits)");
    let cb = Callback {
        id: id.clone(),
        site: site.id.clone(),
        number,
        visitor: req.visitor,
        attrs: req.attrs,
        channel: req.channel,
        requested_at: now,
        due_at: due,
        status,
        attempts: 0,
        next_attempt_at: None,
        error: None,
        pbx_ref: None,
        call: None,
        links: vec![link],
        turn: 0,
        turn_until: None,
        answered_by: None,
        updated_at: now,
    };
    let jobs = registry::plan(app, Event::CallbackRequested { callback: &cb, site, due, now });
    // The source whose share of the site's windows this request uses: the client's address,
    // unless it is one of the trusted proxies (then the proxy did not name the client).
    let source = req
        .ip
        .filter(|ip| !app.config().server.trusted_proxies.iter().any(|net| net.contains(ip)))
        .map(|ip| super::limits::client_key(ip).to_string());
    match app.store.create_callback(&cb, &cfg.limits, source.as_deref(), &jobs, status::keep(app)).await? {
        Created::Stored => {
            app.metrics.callback_requests.with_label_values(&[site.id.as_str(), cb.status.as_str()]).inc();
            tracing::info!(site = %site.id, callback = %cb.id, status = cb.status.as_str(), due = %cb.due_at, "A callback was requested.");
            app.job_wake.wake_all(&jobs);
            status::publish(app, &cb);
            Ok(Ok(Answer::Mine(cb)))
        }
        Created::Open(id) => match app.store.callback(&id).await? {
            Some(open) => {
                app.metrics.callback_requests.with_label_values(&[site.id.as_str(), "repeat"]).inc();
                tracing::info!(site = %site.id, callback = %open.id, "A repeated callback request joined the open one.");
                if open.visitor.is_some() && open.visitor == cb.visitor {
                    status::publish(app, &open);
                    Ok(Ok(Answer::Mine(open)))
                } else {
                    Ok(Ok(Answer::Joined(cb)))
                }
            }
            None => Err(StoreError::Failed(format!("callback {id} vanished while it was open"))),
        },
        Created::Refused { scope, retry_after } => refuse(Refusal {
            reason: Reason::Limited(scope),
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
) -> Result<Result<(callpool_pool::PhoneNumber, Ts), Refusal>, StoreError> {
    let refusal =
        |reason: Reason| Refusal { reason, message: cfg.texts.get(reason.as_str()).to_owned(), retry_after: None };
    let number = match super::number::read(&req.number, cfg.region).and_then(|n| cfg.blocklist.check(&n).map(|()| n)) {
        Ok(n) => n,
        Err(r) => return Ok(Err(refusal(r.reason))),
    };
    // A satellite phone or a far country costs the site's PBX dearly for a stranger's click.
    if !number.region().is_some_and(|r| cfg.countries.contains(&r)) {
        return Ok(Err(refusal(Reason::Abroad)));
    }
    if !cfg.min_time_on_site.is_zero() {
        let first_seen = match &req.visitor {
            Some(v) => app.pool.current_visit(&site.id, v, now).await?.map(|visit| visit.first_seen),
            None => None,
        };
        if first_seen.is_none_or(|t| now < t.plus(cfg.min_time_on_site)) {
            return Ok(Err(refusal(Reason::TooSoon)));
        }
    }
    if let Err(scope) =
        app.config().callback_limiters.check(&site.id, req.ip, req.visitor.as_ref().map(VisitorId::as_str))
    {
        return Ok(Err(Refusal {
            reason: Reason::Limited(scope),
            message: cfg.texts.get("limited").to_owned(),
            retry_after: None,
        }));
    }
    let due = if cfg.hours.is_open(now) { Some(now) } else { cfg.hours.next_open(now) };
    match due {
        Some(due) => Ok(Ok((number, due))),
        None => Ok(Err(Refusal { reason: Reason::Closed, message: text(site, "failed"), retry_after: None })),
    }
}

/// A call the PBX reported for a callback: moves the callback on (connected, completed,
/// missed), queues the "missed" notifications, and tells the visitor's tabs. While operators are
/// rung in turn, the current operator's call missed rings the next one instead (the trigger's
/// job, brought forward), and an answer names who answered.
pub async fn on_call(app: &App, call: &Call) -> Result<(), StoreError> {
    let config = app.config();
    for _ in 0..8 {
        let Some(mut cb) = app.store.callback_for_call(&call.key).await? else { return Ok(()) };
        let site = config.site(&cb.site);
        let form = site.and_then(|s| s.callback.as_ref());
        let turn = turn_of(&cb, &call.key);
        let status = match call.status {
            CallStatus::Ringing => return Ok(()),
            CallStatus::Answered => CallbackStatus::Connected,
            CallStatus::Completed => CallbackStatus::Completed,
            CallStatus::Missed | CallStatus::Busy | CallStatus::Failed => CallbackStatus::Missed,
        };
        if cb.status == status || cb.status.is_final() {
            return Ok(());
        }
        let now = app.clock.now();
        let mut jobs = Vec::new();
        if status == CallbackStatus::Missed && cb.turn_until.is_some() {
            // A hunt: only the current operator's call missed moves it on; the last one's ends it.
            let operators = form.map_or(0, |f| f.operators.len());
            if turn != Some(cb.turn) {
                return Ok(());
            }
            if (cb.turn as usize) + 1 < operators {
                if cb.turn_until.is_some_and(|until| until <= now) {
                    return Ok(());
                }
                cb.turn_until = Some(now);
                cb.updated_at = now;
                let hurry = Planned { kind: crate::jobs::trigger::KIND, plan: Plan::Hurry(now) };
                match app.store.update_callback(&cb, std::slice::from_ref(&hurry), status::keep(app)).await? {
                    Updated::Written => {
                        app.job_wake.wake_all(std::slice::from_ref(&hurry));
                        tracing::info!(callback = %cb.id, call = %call.key, turn = cb.turn, "A callback's operator did not answer; the next is rung.");
                        return Ok(());
                    }
                    Updated::Missing => return Ok(()),
                    Updated::Stale => continue,
                }
            }
        }
        if status != CallbackStatus::Missed {
            let who = turn.and_then(|t| form.and_then(|f| f.operators.get(t as usize)));
            if let (Some(who), Some(f)) = (who, form) {
                if cb.answered_by.is_none() && f.hunt == crate::config::Hunt::InTurn {
                    cb.answered_by = Some(who.clone());
                }
            }
        }
        cb.status = status;
        cb.call = Some(call.key.clone());
        cb.turn_until = None;
        cb.updated_at = now;
        if let Some(site) = site.filter(|_| status == CallbackStatus::Missed) {
            jobs = registry::plan(app, Event::CallbackMissed { callback: &cb, site, now });
        }
        if let Some(site) = site.filter(|_| status.is_final()) {
            jobs.extend(registry::plan(app, Event::CallbackFinished { callback: &cb, site, now }));
        }
        match app.store.update_callback(&cb, &jobs, status::keep(app)).await? {
            Updated::Written => {
                app.metrics.callback_outcomes.with_label_values(&[status.as_str()]).inc();
                tracing::info!(callback = %cb.id, call = %call.key, status = status.as_str(), "A callback's call was reported.");
                app.job_wake.wake_all(&jobs);
                status::publish(app, &cb);
                return Ok(());
            }
            Updated::Missing => return Ok(()),
            // Another writer came first: read again.
            Updated::Stale => continue,
        }
    }
    Ok(())
}

/// Which operator's call `key` is: by the id the PBX was given for each turn, or, for the
/// current turn, the PBX's own id from its answer.
fn turn_of(cb: &Callback, key: &CallKey) -> Option<u32> {
    (0..=cb.turn)
        .find(|t| key.call_id() == cb.id.call_id(*t))
        .or_else(|| (cb.pbx_ref.as_deref() == Some(key.call_id())).then_some(cb.turn))
}
