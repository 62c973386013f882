//! The job runner: on every node, one task per kind of job claims due jobs from the store, hands
//! them to the kind's handler, and records the outcomes in one store operation per batch.
//! A kind's task wakes every half second, when a producer on this node wakes it (a call became
//! final, a callback was requested), or on its handler's schedule. Graceful shutdown finishes
//! the batch in hand.

use std::sync::Arc;
use std::time::Duration;

use callpool_pool::Ts;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{backoff, registry, Ctx, Handler, Outcome};
use crate::app::App;
use crate::store::jobs::{Claimed, JobState, Records, Settle};

/// How often each node looks for due jobs without being woken.
const POLL: Duration = Duration::from_millis(500);

/// Runs every kind's task until `shutdown`.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let http = match reqwest::Client::builder().timeout(app.config().analytics.request_timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the HTTP client; no deliveries on this node.");
            return;
        }
    };
    let tasks = TaskTracker::new();
    for handler in registry::HANDLERS.iter() {
        for kind in handler.kinds() {
            app.metrics.watch_job(kind);
            tasks.spawn(run_kind(app.clone(), http.clone(), *handler, kind, handler.records(), shutdown.clone()));
        }
    }
    // Digests' records are written by the clock, not by a webhook: each node looks for due ones.
    tasks.spawn(super::digest::schedule(app.clone(), registry::plan, shutdown.clone()));
    tasks.close();
    tasks.wait().await;
}

/// How long a claim holds its job: longer than any attempt can take, plus [`RECORDING`].
pub fn hold(app: &App) -> Duration {
    app.config().analytics.request_timeout * 3 + Duration::from_secs(30) + RECORDING
}

/// How long a node keeps trying to record the outcomes of a batch it delivered while the store
/// does not answer, before the claims could expire (another node may then claim the jobs and
/// deliver them again). A store restart takes well under this.
const RECORDING: Duration = Duration::from_secs(90);
/// What is left of a claim when its node stops trying to record: the margin against clocks.
const MARGIN: Duration = Duration::from_secs(5);

async fn run_kind(
    app: Arc<App>,
    http: reqwest::Client,
    handler: &'static dyn Handler,
    kind: &'static str,
    records: Records,
    shutdown: CancellationToken,
) {
    let mut next = app.clock.now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
            _ = app.job_wake.notified(kind) => {}
        }
        let now = app.clock.now();
        if now < next {
            continue;
        }
        // Read each time: a reload may change it.
        let pace = handler.pace(&app);
        if let Some(every) = pace.every {
            next = now.plus(every);
        }
        for _ in 0..pace.rounds {
            if round(&app, &http, handler, kind, records, pace.batch).await < pace.batch {
                break;
            }
        }
    }
}

/// Claims and runs one batch of `kind`; returns how many jobs it claimed.
async fn round(
    app: &App,
    http: &reqwest::Client,
    handler: &dyn Handler,
    kind: &'static str,
    records: Records,
    batch: usize,
) -> usize {
    let now = app.clock.now();
    // The claims' end on this node's monotonic clock (the store's copy uses the wall clock).
    let ctx = Ctx {
        app,
        config: app.config(),
        http,
        plan: &registry::plan,
        kinds: registry::all_kinds(),
        claims_end: std::time::Instant::now() + hold(app) - MARGIN,
    };
    // Callbacks' jobs exist only where a site has a callback form, digests' where one has a
    // digest; elsewhere their kinds stay idle.
    if records == Records::Callbacks && !ctx.config.sites.iter().any(|s| s.callback.is_some()) {
        return 0;
    }
    if records == Records::Digests && !ctx.config.sites.iter().any(|s| s.digest.is_some()) {
        return 0;
    }
    let jobs = match app.store.claim_jobs(kind, records, now, batch, now.plus(hold(app))).await {
        Ok(j) => j,
        Err(e) => {
            app.metrics.store_errors.with_label_values(&["jobs_claim"]).inc();
            tracing::warn!(kind, error = %e, "Cannot claim jobs; trying again shortly.");
            return 0;
        }
    };
    if jobs.is_empty() {
        return 0;
    }
    let outcomes = handler.run(&ctx, kind, &jobs).await;
    let retries = handler.retries(app);
    let done: Vec<(String, Settle)> = jobs
        .iter()
        .zip(outcomes)
        .filter_map(|(job, outcome)| settle(app, kind, job, outcome, retries).map(|f| (job.id.clone(), f)))
        .collect();
    // Outcomes of deliveries that were made: kept in memory until the store takes them.
    let _ = ctx.until_recorded("jobs_settle", || app.store.settle_jobs(kind, &done, app.clock.now())).await;
    jobs.len()
}

/// What to record of one outcome (and its metrics and logs); `None` leaves the claim to expire.
fn settle(app: &App, kind: &'static str, job: &Claimed, outcome: Outcome, retries: super::Retries) -> Option<Settle> {
    let record = job.id.as_str();
    let attempts = job.attempts + 1;
    let now: Ts = app.clock.now();
    Some(match outcome {
        Outcome::Done(state) => {
            match &state {
                JobState::Sent { .. } => app.metrics.job_sent(kind, now),
                JobState::Dead { error } => {
                    app.metrics.job_failed(kind, now, error, true);
                    tracing::warn!(record, kind, error = %error, "A delivery was refused; dead-lettered.");
                }
                JobState::Skipped { .. } | JobState::Pending => {}
            }
            Settle::Done(state)
        }
        Outcome::Again(why) if attempts >= retries.attempts => {
            let error = format!("{attempts} attempts; last: {why}");
            app.metrics.job_failed(kind, now, &error, true);
            tracing::warn!(record, kind, error = %why, attempts, "A delivery failed too often; dead-lettered.");
            Settle::Done(JobState::Dead { error })
        }
        Outcome::Again(why) => {
            app.metrics.job_failed(kind, now, &why, false);
            let wait = backoff(retries.first, job.attempts);
            tracing::info!(record, kind, error = %why, retry_in_s = wait.as_secs(), "A delivery failed; it will be retried.");
            Settle::Retry(now.plus(wait))
        }
        Outcome::RetryAt(at) => {
            app.metrics.analytics_retried.with_label_values(&[kind]).inc();
            Settle::Retry(at)
        }
        Outcome::Wait(at) => Settle::Wait(at),
        Outcome::Unrecorded => return None,
    })
}
