//! The PBX callback trigger (kind `trigger`): asks the site's PBX to ring the operator and then
//! the visitor, through the trigger adapter the site's form names (`[site.callback] trigger`).
//!
//! The PBX is asked at most once per claim, and a callback whose status shows the PBX was asked
//! (`calling` or later) is never triggered again: the outcome is written into the callback (its
//! status only moves forward) before the claim ends. If a node dies mid-request, the claim
//! expires and another node asks again with the same `Idempotency-Key` / callback id. A failed
//! attempt is retried after the form's own backoff (a retry that would fall after closing time
//! waits for the next opening); after the last one the callback is `failed` and the team's
//! "missed" notices are planned with that write.

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;

use super::{backoff, skipped, without_url, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::callback::{status, CallbackStatus};
use crate::calls::CallKey;
use crate::config::Hunt;
use crate::pbx::{self, Answer, Ring};
use crate::store::callbacks::Updated;
use crate::store::jobs::{Claimed, JobState, Plan, Planned, Record, Records};

pub struct Trigger;

/// The trigger job's kind (one per callback).
pub const KIND: &str = "trigger";

impl Handler for Trigger {
    fn kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn requeue(&self) -> Result<(), &'static str> {
        Err("a callback that could not be placed is over (the visitor was told and the team notified); the visitor may ask again")
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        match event {
            Event::CallbackRequested { due, .. } => vec![Planned { kind: KIND, plan: Plan::Due(due) }],
            _ => Vec::new(),
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(|job| place(ctx, job))).boxed()
    }
}

/// How long after an operator's ring time callpool waits for the PBX's report of it before
/// ringing the next.
const REPORT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

async fn place(ctx: &Ctx<'_>, job: &Claimed) -> Outcome {
    let app = ctx.app;
    let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
    let mut cb = (**cb).clone();
    let Some((site, cfg)) = ctx.config.site(&cb.site).and_then(|s| s.callback.as_ref().map(|c| (s, c))) else {
        return skipped("the site no longer has a callback form");
    };
    let Some(trigger) = pbx::trigger(&cfg.trigger) else { return skipped("the form has no trigger") };
    let hunting = cfg.hunt == Hunt::InTurn && cfg.operators.len() > 1;
    let now = app.clock.now();
    if cb.status.triggered() {
        // The PBX was asked: only a hunt whose operator's ring time is over goes on.
        match cb.turn_until {
            _ if !hunting || cb.status != CallbackStatus::Calling => {
                return if cb.turn_until.is_some() {
                    Outcome::Done(JobState::sent(now))
                } else {
                    skipped("already triggered")
                };
            }
            Some(until) if now < until => return Outcome::RetryAt(until),
            // Not answered in time: the next operator, unless that was the last (then the PBX's
            // report of the call says how it ended).
            Some(_) if cb.turn as usize + 1 >= cfg.operators.len() => {
                cb.turn_until = None;
                cb.updated_at = now;
                return match ctx
                    .until_recorded("callback_update", || app.store.update_callback(&cb, &[], status::keep(app)))
                    .await
                {
                    Some(_) => Outcome::Done(JobState::sent(now)),
                    None => Outcome::Unrecorded,
                };
            }
            Some(_) => {
                cb.turn += 1;
                cb.turn_until = None;
            }
            // The operator's turn came, but the PBX could not be asked: again.
            None => {}
        }
    }
    let Some(operator) = cfg.operators.get(cb.turn as usize) else {
        return Outcome::Done(JobState::sent(now));
    };
    let call_id = cb.id.call_id(cb.turn);
    let ring = Ring {
        call_id: &call_id,
        operator,
        all: if cfg.hunt == Hunt::All { &cfg.operators } else { &[] },
        ring_for: cfg.ring_for,
    };
    let answer = match trigger.place(&ring, &cb) {
        Some(placing) => placing.await,
        None => match trigger.request(ctx.http, &ring, &cb, now).send().await {
            Ok(resp) => {
                let status = resp.status();
                let body = resp.text().await.unwrap_or_default();
                trigger.answer(status, &body)
            }
            Err(e) => Answer::Again(format!("the PBX did not answer: {}", without_url(&e))),
        },
    };
    let adapter = cfg.trigger.name();
    let now = app.clock.now();
    cb.updated_at = now;
    let mut jobs = Vec::new();
    let outcome = match answer {
        Answer::Placed { pbx_ref } => {
            cb.status = CallbackStatus::Calling;
            cb.next_attempt_at = None;
            cb.error = None;
            for link in [Some(call_id.as_str()), pbx_ref.as_deref()].into_iter().flatten() {
                if let Ok(key) = CallKey::new(&cfg.pbx, link) {
                    if !cb.links.contains(&key) {
                        cb.links.push(key);
                    }
                }
            }
            cb.pbx_ref = pbx_ref;
            app.metrics.callback_triggers.with_label_values(&[adapter, "sent"]).inc();
            tracing::info!(callback = %cb.id, site = %site.id, adapter, turn = cb.turn, "The PBX was asked to place a callback.");
            if hunting {
                let until = now.plus(cfg.ring_for + REPORT_GRACE);
                cb.turn_until = Some(until);
                Outcome::RetryAt(until)
            } else {
                Outcome::Done(JobState::sent(now))
            }
        }
        Answer::Again(why) if cb.attempts + 1 < cfg.attempts => {
            // A retry that would fall after closing time waits for the next opening.
            let at = now.plus(backoff(cfg.retry_base, cb.attempts));
            let at = if cfg.hours.is_open(at) { at } else { cfg.hours.next_open(at).unwrap_or(at) };
            // A hunt under way keeps showing "calling".
            if !cb.status.triggered() {
                cb.status = CallbackStatus::Retrying;
            }
            cb.attempts += 1;
            cb.next_attempt_at = Some(at);
            cb.error = Some(why.clone());
            app.metrics.callback_triggers.with_label_values(&[adapter, "retried"]).inc();
            tracing::warn!(callback = %cb.id, site = %site.id, adapter, error = %why, retry_at = %at, "A callback trigger failed; it will be retried.");
            Outcome::RetryAt(at)
        }
        Answer::Again(why) | Answer::Refused(why) => {
            cb.status = CallbackStatus::Failed;
            cb.attempts += 1;
            cb.next_attempt_at = None;
            cb.turn_until = None;
            cb.error = Some(why.clone());
            jobs = (ctx.plan)(app, Event::CallbackMissed { callback: &cb, site, now });
            jobs.extend((ctx.plan)(app, Event::CallbackFinished { callback: &cb, site, now }));
            app.metrics.callback_triggers.with_label_values(&[adapter, "failed"]).inc();
            tracing::warn!(callback = %cb.id, site = %site.id, adapter, error = %why, "A callback could not be placed; given up.");
            Outcome::Done(JobState::Dead { error: why })
        }
    };
    // What the PBX answered must be recorded before the claim ends: a callback left `accepted` would
    // be triggered again once the claim expired.
    let written =
        ctx.until_recorded("callback_update", || app.store.update_callback(&cb, &jobs, status::keep(app))).await;
    match written {
        Some(Updated::Written) => status::publish(app, &cb),
        // The PBX already reported the call (a later status): keep it.
        Some(Updated::Stale | Updated::Missing) => {}
        None => return Outcome::Unrecorded,
    }
    app.job_wake.wake_all(&jobs);
    outcome
}
