//! Deliveries: one durable job runner and a [`Handler`] per destination — GA4 ([`ga4`]),
//! Yandex Metrica ([`metrica`]), the PBX callback trigger ([`trigger`]), Telegram
//! ([`telegram`]), the team's webhook ([`webhook`]), the site's own webhooks
//! ([`call_webhook`]), amoCRM ([`amocrm`]) and Bitrix24 ([`bitrix24`]), the CRMs sharing [`crm`],
//! and the sites' scheduled reports by mail and Telegram ([`digest`]).
//!
//! A record's write plans its jobs: each handler says, for an [`Event`] (a call recorded, a
//! callback requested or missed), whether it has a job for it and when it is due
//! ([`registry::plan`]); the store writes the record and its jobs in one atomic step. Every node
//! runs [`runner::run`]: it claims due jobs of each kind, hands the batch to its handler, and
//! records each [`Outcome`] — sent, skipped, dead (a dead letter the admin API lists and
//! re-queues), or a retry at a time from the backoff (`backon`, exponential with jitter) or the
//! handler's own. A claim a dead node never finished returns to the queue after its hold.
//!
//! Adding a destination is one file here (a `Handler`) and its line in [`registry::HANDLERS`];
//! ARCHITECTURE.md has the recipe.

pub mod amocrm;
pub mod bitrix24;
pub mod call_webhook;
pub mod crm;
pub mod digest;
pub mod ga4;
pub mod ga4_setup;
pub mod google_auth;
pub mod metrica;
pub mod registry;
pub mod runner;
pub mod telegram;
pub mod trigger;
pub mod webhook;

use std::time::Duration;

use callpool_pool::{SessionAttrs, Ts};
use futures_util::future::BoxFuture;

use crate::app::App;
use crate::callback::Callback;
use crate::calls::Call;
use crate::config::{Reader, SiteConfig};
use crate::store::jobs::{Claimed, JobState, Plan, Planned, Records};

/// Something that happened to a record, for which destinations may plan jobs.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A call's first report was matched; `due` is when its deliveries go out (now for a call
    /// already over, else when `finalize_after` has passed; a later final report hurries them).
    CallRecorded { call: &'a Call, site: Option<&'a SiteConfig>, due: Ts },
    /// A visitor asked for a callback; the PBX is to be asked at `due` (now, or the next opening).
    CallbackRequested { callback: &'a Callback, site: &'a SiteConfig, due: Ts, now: Ts },
    /// A callback was missed, or could not be placed.
    CallbackMissed { callback: &'a Callback, site: &'a SiteConfig, now: Ts },
    /// A call's report was recorded: its first (`before` is `None`) or one that changed it.
    CallChanged { call: &'a Call, before: Option<&'a Call>, site: Option<&'a SiteConfig>, now: Ts },
    /// A callback reached its final status (completed, missed or failed).
    CallbackFinished { callback: &'a Callback, site: &'a SiteConfig, now: Ts },
    /// A site's scheduled report fell due.
    DigestDue { digest: &'a crate::store::digests::DigestRecord, site: &'a SiteConfig, now: Ts },
}

/// What one job came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered, skipped (with the reason) or refused for good (a dead letter).
    Done(JobState),
    /// Worth trying again (the reason says why): after the backoff, or dead after the last attempt.
    Again(String),
    /// Try again at this time (the handler chose it; one more attempt counted).
    RetryAt(Ts),
    /// Not yet: an earlier delivery of the same record must go first. Back to the queue for this
    /// time; no attempt counted.
    Wait(Ts),
    /// The delivery's effect could not be recorded: the claim is left to expire and the job runs
    /// again then.
    Unrecorded,
}

/// How the runner paces a kind.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    /// Jobs claimed at once (run together).
    pub batch: usize,
    /// Full batches run back to back, at most this many before the runner rests.
    pub rounds: usize,
    /// Run at most this often (a kind that uploads in bulk); `None`: whenever jobs are due.
    pub every: Option<Duration>,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace { batch: 64, rounds: 8, every: None }
    }
}

/// What a handler's run gets: the app, the shared HTTP client, the planner (for the jobs a
/// delivery's outcome creates, e.g. "missed" notices after a failed trigger), and when the
/// batch's claims end (on this node's monotonic clock, less a margin).
pub struct Ctx<'a> {
    pub app: &'a App,
    /// The configuration the batch is delivered with (taken once, when the batch began).
    pub config: std::sync::Arc<crate::app::Running>,
    pub http: &'a reqwest::Client,
    pub plan: &'a (dyn Fn(&App, Event<'_>) -> Vec<Planned> + Sync),
    /// Every kind of job, with the records it delivers (the registry's).
    pub kinds: &'static [(&'static str, Records)],
    pub claims_end: std::time::Instant,
}

impl Ctx<'_> {
    /// Writes what a delivery that was made changed (`op`, a store write), retrying while the
    /// store does not answer (50 ms, doubling to 1 s) until it sticks or the batch's claims are
    /// about to end: a delivery made is never answered by making it again. `None` when the
    /// claims ran out first; the jobs will then be delivered again (only a store away for
    /// that long, or a node that dies in between, leads to a repeat).
    pub async fn until_recorded<T, Fut>(&self, what: &'static str, mut op: impl FnMut() -> Fut) -> Option<T>
    where
        Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
    {
        let mut wait = Duration::from_millis(50);
        let mut failures = 0u32;
        loop {
            let e = match op().await {
                Ok(v) => {
                    if failures > 0 {
                        tracing::info!(what, failures, "Recorded after all.");
                    }
                    return Some(v);
                }
                Err(e) => e,
            };
            self.app.metrics.store_errors.with_label_values(&[what]).inc();
            failures += 1;
            if std::time::Instant::now() + wait >= self.claims_end {
                tracing::error!(what, error = %e, "Not recorded before the claims end; the jobs will be delivered again.");
                return None;
            }
            if failures == 1 {
                tracing::warn!(what, error = %e, "Cannot record what a delivery did yet; retrying.");
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

/// One destination.
pub trait Handler: Send + Sync + 'static {
    /// The kinds of job it runs: queue names, stored with every job (never rename one).
    fn kinds(&self) -> &'static [&'static str];
    /// The records its jobs deliver.
    fn records(&self) -> Records;
    /// The reader of its own settings (its table in the configuration), if it has one.
    fn reader(&self) -> Option<&'static dyn Reader> {
        None
    }
    /// Whether its queued jobs of `kind` go out at once when the call becomes final (those it
    /// plans for a call's end time, as analytics do).
    fn hurried_when_final(&self, _kind: &str) -> bool {
        true
    }
    /// The jobs it wants for `event` (none if it is not this destination's business).
    fn plan(&self, app: &App, event: Event<'_>) -> Vec<Planned>;
    /// How the runner paces its jobs.
    fn pace(&self, _app: &App) -> Pace {
        Pace::default()
    }
    /// Whether a dead letter of this destination may be put back in the queue, and if not, why.
    fn requeue(&self) -> Result<(), &'static str> {
        Ok(())
    }
    /// Attempts (and the first retry's wait) before an `Again` becomes a dead letter.
    fn retries(&self, app: &App) -> Retries {
        Retries { attempts: app.config().analytics.max_attempts, first: app.config().analytics.retry_base }
    }
    /// Runs a claimed batch of `kind`: one outcome per job, in order.
    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>>;
}

/// How often an `Again` is retried.
#[derive(Clone, Copy, Debug)]
pub struct Retries {
    pub attempts: u32,
    pub first: Duration,
}

/// The wait before retry `attempts + 1`: `first`, doubling each time up to half an hour, plus a
/// random jitter of up to as much again (so nodes that failed together do not retry together):
/// between the delay and twice it, at most an hour.
pub fn backoff(first: Duration, attempts: u32) -> Duration {
    use backon::BackoffBuilder;
    const CAP: Duration = Duration::from_secs(1800);
    backon::ExponentialBuilder::default()
        .with_min_delay(first.min(CAP))
        .with_max_delay(CAP)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempts.min(32) as usize)
        .unwrap_or(CAP)
}

/// A 2xx is delivered; 5xx and 429 (and Metrica's 420) are worth retrying; any other answer
/// is a refusal (GA4's guide: fix such a request, do not repeat it).
pub fn http_outcome(status: reqwest::StatusCode, who: &str, now: Ts) -> Outcome {
    if status.is_success() {
        Outcome::Done(JobState::sent(now))
    } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 420 {
        Outcome::Again(format!("{who} answered HTTP {status}"))
    } else {
        Outcome::Done(JobState::Dead { error: format!("{who} refused it: HTTP {status}") })
    }
}

/// A request that did not get an answer: worth retrying. The error is told without its URL
/// (which may carry a secret: GA4's api_secret, a bot token).
pub fn no_answer(who: &str, e: &reqwest::Error) -> Outcome {
    Outcome::Again(format!("{who} did not answer: {}", without_url(e)))
}

/// A reqwest error without its URL.
pub fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind} ({detail})")
    }
}

/// A call's job for a destination of attributed calls: skipped, with the reason reports show,
/// when the call has no site, the site does not use `destination` (`configured`), the call is
/// not attributed to a visitor, or the visitor's session lacks the id the destination needs
/// (`visitor_id`); else due with the call.
pub fn plan_call(
    event: Event<'_>,
    kind: &'static str,
    destination: &str,
    configured: fn(&SiteConfig) -> bool,
    visitor_id: fn(&SessionAttrs) -> Result<(), &'static str>,
) -> Vec<Planned> {
    let Event::CallRecorded { call, site, due } = event else { return Vec::new() };
    let skip = |reason: String| Plan::Skip(reason);
    let plan = match site {
        None => skip("the call belongs to no configured site".into()),
        Some(s) if !configured(s) => skip(format!("{destination} is not configured for the site")),
        Some(_) if !call.matched.kind.is_tracked() => skip("the call is not attributed to a visitor".into()),
        Some(_) => visitor_id(&call.matched.attrs).map_or_else(|why| skip(why.into()), |()| Plan::Due(due)),
    };
    vec![Planned { kind, plan }]
}

/// A notice to the site's team, due now: `kinds[0]` for a callback request, `kinds[1]` for a
/// missed one, when the site's form has the destination (`configured`).
pub fn plan_notice(event: Event<'_>, kinds: [&'static str; 2], configured: fn(&SiteConfig) -> bool) -> Vec<Planned> {
    let (site, kind, now) = match event {
        Event::CallbackRequested { site, now, .. } => (site, kinds[0], now),
        Event::CallbackMissed { site, now, .. } => (site, kinds[1], now),
        _ => return Vec::new(),
    };
    if configured(site) {
        vec![Planned { kind, plan: Plan::Due(now) }]
    } else {
        Vec::new()
    }
}

/// Whether an earlier delivery of record `id` (of `kinds`) still waits to go out; a store that
/// does not answer counts as yes (look again shortly).
pub async fn earlier_pending(ctx: &Ctx<'_>, kinds: &[&'static str], id: &str) -> bool {
    for kind in kinds {
        match ctx.app.store.job_states(kind, &[id.to_owned()]).await {
            Ok(states) if matches!(states.first(), Some(Some(JobState::Pending))) => return true,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "Cannot read a record's earlier deliveries; trying again shortly.");
                return true;
            }
        }
    }
    false
}

/// How long a record's later delivery waits before looking again whether the earlier ones are
/// done: `[analytics] retry_base` (10 s), at least this.
const ORDER_WAIT: Duration = Duration::from_secs(2);

/// A later delivery of a record whose earlier one is not done: back to the queue for a while,
/// no attempt counted.
pub fn wait_for_earlier(ctx: &Ctx<'_>) -> Outcome {
    Outcome::Wait(ctx.app.clock.now().plus(ctx.config.analytics.retry_base.max(ORDER_WAIT)))
}

/// Delivered now, with what the destination made of it (a later delivery of the record reads it).
pub fn sent_with(ctx: &Ctx<'_>, receipt: String) -> Outcome {
    Outcome::Done(JobState::Sent { at: ctx.app.clock.now(), receipt: Some(receipt) })
}

/// Runs `one` for each job of a batch in turn (a destination paced per account gains nothing from
/// running them together). A job not begun while its claim still leaves room for a few requests
/// goes back to the queue, due now, no attempt counted: a claim that ran out would let another
/// node deliver it too.
pub fn one_by_one<'a, Fut>(
    ctx: &'a Ctx<'a>,
    jobs: &'a [Claimed],
    one: impl Fn(&'a Claimed) -> Fut + Send + 'a,
) -> BoxFuture<'a, Vec<Outcome>>
where
    Fut: std::future::Future<Output = Outcome> + Send + 'a,
{
    use futures_util::FutureExt;
    async move {
        let room = ctx.config.analytics.request_timeout * 4;
        let mut out = Vec::with_capacity(jobs.len());
        for job in jobs {
            if std::time::Instant::now() + room >= ctx.claims_end {
                out.push(Outcome::Wait(ctx.app.clock.now()));
                continue;
            }
            out.push(one(job).await);
        }
        out
    }
    .boxed()
}

/// Where record `id`'s job of `kind` stands (`None`: it has none); `Err` when the store did not
/// answer (look again shortly).
pub async fn state_of(ctx: &Ctx<'_>, kind: &'static str, id: &str) -> Result<Option<JobState>, ()> {
    match ctx.app.store.job_states(kind, &[id.to_owned()]).await {
        Ok(mut states) => Ok(states.pop().flatten()),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read a record's earlier delivery; trying again shortly.");
            Err(())
        }
    }
}

/// A refusal's outcome: a dead letter with `error`.
pub fn dead(error: String) -> Outcome {
    Outcome::Done(JobState::Dead { error })
}

/// A skipped job's outcome.
pub fn skipped(reason: &str) -> Outcome {
    Outcome::Done(JobState::Skipped { reason: reason.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_up_to_as_much_jitter_and_never_waits_more_than_an_hour() {
        let first = Duration::from_secs(10);
        for attempts in 0..4 {
            let base = first * (1 << attempts);
            let wait = backoff(first, attempts);
            assert!(wait >= base && wait <= base * 2, "attempt {attempts}: {wait:?}");
        }
        let late = backoff(first, 30);
        assert!(late >= Duration::from_secs(1800) && late <= Duration::from_secs(3600), "{late:?}");
    }
}
