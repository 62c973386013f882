//! The callback worker: every node claims due callback jobs from the store and runs them — the
//! PBX trigger, GA4's `callback_request` event, and the team's notifications (Telegram
//! `sendMessage`, a signed webhook) of each request and each missed callback.
//!
//! A trigger is sent at most once per claim, and a callback whose status shows the PBX was asked
//! (`calling` or later) is never triggered again: the worker first writes the outcome into the
//! callback (its status only moves forward), then ends the claim. If a node dies mid-request,
//! the claim expires and another node tries again with the same `Idempotency-Key` / callback id.

use std::sync::Arc;
use std::time::Duration;

use callpool_pool::Ts;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::trigger::{self, Answer};
use super::{service, Callback, CallbackStatus};
use crate::app::App;
use crate::calls::store::{CallbackJob, Extra, Finish, JobKind, Updated};
use crate::calls::{CallKey, Delivery};
use crate::outbox::{backoff, hold, without_url};

const POLL: Duration = Duration::from_millis(500);
/// Jobs claimed at once (run concurrently).
const BATCH: usize = 64;
/// Full batches of one kind run back to back, at most this many before the next kind's turn.
const ROUNDS: usize = 8;

/// Runs until `shutdown`; the batch in hand is finished first.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    if !app.config.sites.iter().any(|s| s.callback.is_some()) {
        return;
    }
    let client = match reqwest::Client::builder().timeout(app.config.analytics.request_timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the HTTP client; callbacks are off.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
            _ = app.callback_wake.notified() => {}
        }
        for kind in JobKind::CALLBACK {
            for _ in 0..ROUNDS {
                if round(&app, &client, kind).await < BATCH {
                    break;
                }
            }
        }
    }
}

/// Claims and runs one batch of `kind`; returns how many jobs it claimed.
async fn round(app: &App, client: &reqwest::Client, kind: JobKind) -> usize {
    let now = app.clock.now();
    let jobs = match app.calls.claim_callbacks(kind, now, BATCH, now.plus(hold(app))).await {
        Ok(j) => j,
        Err(e) => {
            app.metrics.store_errors.with_label_values(&["callback_claim"]).inc();
            tracing::warn!(error = %e, "Cannot claim callback jobs; trying again shortly.");
            return 0;
        }
    };
    let runs = jobs.iter().map(|job| run_job(app, client, job));
    let done: Vec<(String, Finish)> = futures_util::future::join_all(runs).await.into_iter().flatten().collect();
    if let Err(e) = app.calls.finish(kind, &done, app.clock.now()).await {
        // The claims expire and the jobs are tried again; the callbacks' statuses stop a second trigger.
        app.metrics.store_errors.with_label_values(&["callback_finish"]).inc();
        tracing::warn!(jobs = done.len(), error = %e, "Cannot record callback jobs' outcomes.");
    }
    jobs.len()
}

/// One job; `None` when its outcome could not be recorded (the claim expires and it runs again).
async fn run_job(app: &App, client: &reqwest::Client, job: &CallbackJob) -> Option<(String, Finish)> {
    let id = job.callback.id.to_string();
    let finish = match job.kind {
        JobKind::Trigger => trigger_job(app, client, job).await?,
        _ => notice_job(app, client, job).await,
    };
    Some((id, finish))
}

async fn trigger_job(app: &App, client: &reqwest::Client, job: &CallbackJob) -> Option<Finish> {
    let mut cb = job.callback.clone();
    if cb.status.triggered() {
        return Some(Finish::Done(Delivery::Skipped { reason: "already triggered".into() }));
    }
    let Some((site, cfg)) = app.config.site(&cb.site).and_then(|s| s.callback.as_ref().map(|c| (s, c))) else {
        return Some(Finish::Done(Delivery::Skipped { reason: "the site no longer has a callback form".into() }));
    };
    let now = app.clock.now();
    let sent = trigger::request(client, &cfg.trigger, &cfg.operator, &cb, now).send().await;
    let answer = match sent {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            trigger::answer(&cfg.trigger, status, &body)
        }
        Err(e) => Answer::Again(format!("the PBX did not answer: {}", without_url(&e))),
    };
    let adapter = cfg.trigger.kind();
    let now = app.clock.now();
    cb.updated_at = now;
    let mut jobs = Vec::new();
    let finish = match answer {
        Answer::Placed { pbx_ref } => {
            cb.status = CallbackStatus::Calling;
            cb.next_attempt_at = None;
            cb.error = None;
            if let Some(r) = pbx_ref.as_deref().and_then(|r| CallKey::new(&cfg.pbx, r).ok()) {
                cb.links.push(r);
            }
            cb.pbx_ref = pbx_ref;
            app.metrics.callback_triggers.with_label_values(&[adapter, "sent"]).inc();
            tracing::info!(callback = %cb.id, site = %site.id, adapter, "The PBX was asked to place a callback.");
            Finish::Done(Delivery::Sent { at: now })
        }
        Answer::Again(why) if job.attempts + 1 < cfg.attempts => {
            // A retry that would fall after closing time waits for the next opening.
            let at = now.plus(backoff(cfg.retry_base, job.attempts));
            let at = if cfg.hours.is_open(at) { at } else { cfg.hours.next_open(at).unwrap_or(at) };
            cb.status = CallbackStatus::Retrying;
            cb.attempts = job.attempts + 1;
            cb.next_attempt_at = Some(at);
            cb.error = Some(why.clone());
            app.metrics.callback_triggers.with_label_values(&[adapter, "retried"]).inc();
            tracing::warn!(callback = %cb.id, site = %site.id, adapter, error = %why, retry_at = %at, "A callback trigger failed; it will be retried.");
            Finish::Retry(at)
        }
        Answer::Again(why) | Answer::Refused(why) => {
            cb.status = CallbackStatus::Failed;
            cb.attempts = job.attempts + 1;
            cb.next_attempt_at = None;
            cb.error = Some(why.clone());
            jobs = service::missed_jobs(app, &cb);
            app.metrics.callback_triggers.with_label_values(&[adapter, "failed"]).inc();
            tracing::warn!(callback = %cb.id, site = %site.id, adapter, error = %why, "A callback could not be placed; given up.");
            Finish::Done(Delivery::Dead { error: why })
        }
    };
    // What the PBX answered must be recorded before the claim ends: a callback left `accepted` would
    // be triggered again once the claim expired. The store gets a few tries.
    let mut written = None;
    for pause in [0, 200, 1000, 3000] {
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let extra = Extra { jobs: &jobs, keep: service::keep(app) };
        match app.calls.update_callback(&cb, extra).await {
            Ok(u) => {
                written = Some(u);
                break;
            }
            Err(e) => {
                app.metrics.store_errors.with_label_values(&["callback_update"]).inc();
                tracing::warn!(callback = %cb.id, error = %e, "A callback's trigger outcome could not be recorded yet.");
            }
        }
    }
    match written {
        Some(Updated::Written) => service::publish(app, &cb),
        // The PBX already reported the call (a later status): keep it.
        Some(Updated::Stale | Updated::Missing) => {}
        None => return None,
    }
    if !jobs.is_empty() {
        app.callback_wake.notify_one();
    }
    Some(finish)
}

/// GA4 `callback_request` and the team's notifications.
async fn notice_job(app: &App, client: &reqwest::Client, job: &CallbackJob) -> Finish {
    let cb = &job.callback;
    let kind = job.kind.as_str();
    let now = app.clock.now();
    let Some(site) = app.config.site(&cb.site) else {
        return Finish::Done(Delivery::Skipped { reason: "the site is no longer configured".into() });
    };
    let cfg = site.callback.as_ref();
    let req = match job.kind {
        JobKind::CallbackGa4 => {
            let payload = match crate::analytics::ga4_callback_payload(cb, now) {
                Ok(p) => p,
                Err(why) => {
                    app.metrics.analytics_refused.with_label_values(&[kind, "invalid"]).inc();
                    return Finish::Done(Delivery::Dead { error: format!("not sent: {why:?}") });
                }
            };
            site.ga4.as_ref().map(|ga4| {
                let cfg = &app.config.analytics;
                let path = if cfg.ga4_debug { "debug/mp/collect" } else { "mp/collect" };
                client
                    .post(format!("{}/{path}", cfg.ga4_base_url))
                    .query(&[("measurement_id", ga4.measurement_id.as_str()), ("api_secret", ga4.api_secret.as_str())])
                    .json(&payload)
            })
        }
        JobKind::TelegramRequest | JobKind::TelegramMissed => cfg.and_then(|c| c.telegram.as_ref()).map(|tg| {
            let missed = job.kind == JobKind::TelegramMissed;
            client.post(format!("{}/bot{}/sendMessage", tg.base_url, tg.bot_token)).json(
                &json!({ "chat_id": tg.chat_id, "text": team_text(app, cb, missed), "disable_web_page_preview": true }),
            )
        }),
        JobKind::HookRequest | JobKind::HookMissed => cfg.and_then(|c| c.notify.as_ref()).map(|hook| {
            let event = if job.kind == JobKind::HookMissed { "callback.missed" } else { "callback.requested" };
            let body = serde_json::to_vec(&json!({ "event": event, "callback": hook_view(cb) }))
                .expect("JSON values serialize");
            client
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    crate::pbx::SIGNATURE_HEADER,
                    crate::pbx::sign(&hook.secret, now.as_millis().div_euclid(1000), &body),
                )
                .body(body)
        }),
        _ => None,
    };
    let Some(req) = req else {
        return Finish::Done(Delivery::Skipped { reason: "no longer configured for the site".into() });
    };
    let why = match req.send().await {
        Ok(resp) if resp.status().is_success() => {
            app.metrics.analytics_sent.with_label_values(&[kind]).inc();
            return Finish::Done(Delivery::Sent { at: now });
        }
        Ok(resp) if resp.status().is_server_error() || resp.status().as_u16() == 429 => {
            format!("answered HTTP {}", resp.status())
        }
        Ok(resp) => {
            app.metrics.analytics_dead.with_label_values(&[kind]).inc();
            tracing::warn!(callback = %cb.id, kind, status = %resp.status(), "A callback notice was refused.");
            return Finish::Done(Delivery::Dead { error: format!("refused: HTTP {}", resp.status()) });
        }
        Err(e) => without_url(&e),
    };
    if job.attempts + 1 >= app.config.analytics.max_attempts {
        app.metrics.analytics_dead.with_label_values(&[kind]).inc();
        tracing::warn!(callback = %cb.id, kind, error = %why, "A callback notice failed too often; dead-lettered.");
        return Finish::Done(Delivery::Dead { error: why });
    }
    app.metrics.analytics_retried.with_label_values(&[kind]).inc();
    Finish::Retry(now.plus(backoff(app.config.analytics.retry_base, job.attempts)))
}

/// What the team's chat reads: the number in full (it is the team's own lead), the status, the
/// source, the page.
fn team_text(app: &App, cb: &Callback, missed: bool) -> String {
    let site = app.config.site(&cb.site);
    let tz = site.map_or(chrono_tz::UTC, |s| s.timezone);
    let local = |t: Ts| {
        use chrono::TimeZone;
        tz.timestamp_millis_opt(t.as_millis())
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    let mut lines = vec![
        if missed { format!("Missed callback on {}", cb.site) } else { format!("Callback request on {}", cb.site) },
        format!("Number: {}", cb.number),
        format!("Requested: {} ({tz})", local(cb.requested_at)),
    ];
    if missed {
        lines.push(format!("Status: {}", cb.status.as_str()));
        if let Some(e) = &cb.error {
            lines.push(format!("Why: {e}"));
        }
    } else if cb.status == CallbackStatus::Scheduled {
        lines.push(format!("Scheduled for: {}", local(cb.due_at)));
    }
    let a = &cb.attrs;
    let source = [a.utm_source.as_deref(), a.utm_medium.as_deref(), a.utm_campaign.as_deref()]
        .iter()
        .flatten()
        .copied()
        .collect::<Vec<_>>()
        .join(" / ");
    if !source.is_empty() {
        lines.push(format!("Source: {source}"));
    } else if let Some(r) = &a.referrer {
        lines.push(format!("Referrer: {r}"));
    }
    if let Some(p) = &a.landing_page {
        lines.push(format!("Page: {p}"));
    }
    lines.push(format!("Id: {}", cb.id));
    lines.join("\n")
}

/// The callback as the notification webhook carries it.
fn hook_view(cb: &Callback) -> serde_json::Value {
    json!({
        "id": cb.id.as_str(),
        "site": cb.site.as_str(),
        "number": cb.number.as_str(),
        "status": cb.status.as_str(),
        "requested_at": cb.requested_at.to_chrono().map(|t| t.to_rfc3339()),
        "due_at": cb.due_at.to_chrono().map(|t| t.to_rfc3339()),
        "attempts": cb.attempts,
        "error": cb.error,
        "visitor": cb.visitor.as_ref().map(|v| v.as_str()),
        "session": cb.attrs,
        "call_id": cb.call.as_ref().map(|c| c.call_id()),
    })
}
