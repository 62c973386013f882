//! The reaper: on every node, every `reaper_interval`, ends the leases that expired and gives
//! numbers unused for `shrink_after` back to the inventory. Each lease is ended exactly once
//! however many nodes run it, because each pass is atomic in the store. Every [`USAGE_EVERY`] it
//! also samples each site's pool (leased numbers, exhausted requests) for the reports, and every
//! [`FORGET_EVERY`] forgets calls older than `[analytics] calls_retention`.

use std::sync::Arc;
use std::time::Duration;

use callpool_pool::{Lease, Ts};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::jobs::registry;
use crate::store::jobs::Records;
use crate::store::StoreError;

/// How often each node samples every site's pool for the reports' daily peak.
pub const USAGE_EVERY: Duration = Duration::from_secs(30);
/// How often each node forgets calls past their retention. Retention is counted in days, and the
/// embedded store reads every caller memory to find stale ones, so this is not done every pass.
pub const FORGET_EVERY: Duration = Duration::from_secs(3600);

/// Runs a pass every `reaper_interval`; every lease it ends goes to `ended` (the hub announces it).
pub async fn run(app: Arc<App>, ended: mpsc::Sender<Lease>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(app.config().pool.reaper_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_sample = Ts::EPOCH;
    let mut next_forget = Ts::EPOCH;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let now = app.clock.now();
        if now >= next_sample {
            next_sample = now.plus(USAGE_EVERY);
            sample_usage(&app, now).await;
        }
        if now >= next_forget {
            next_forget = now.plus(FORGET_EVERY);
            forget_expired(&app, now).await;
        }
        for lease in reap_and_shrink(&app).await {
            if ended.send(lease).await.is_err() {
                return;
            }
        }
    }
}

/// Records each site's leased numbers and exhausted counter for its local day.
async fn sample_usage(app: &App, now: Ts) {
    for site in &app.config().sites {
        let day = now.to_chrono().map(|t| t.with_timezone(&site.timezone).date_naive().to_string()).unwrap_or_default();
        let sampled = async {
            if let Some(st) = app.pool.status(&site.id, now).await? {
                app.store.record_usage(&site.id, &day, st.leased, st.exhausted_total).await?;
            }
            Ok::<_, StoreError>(())
        };
        if let Err(e) = sampled.await {
            app.metrics.store_errors.with_label_values(&["usage_sample"]).inc();
            tracing::warn!(error = %e, site = %site.id, "Cannot sample the pool's use.");
        }
    }
}

/// Forgets the calls, callbacks, visits and digests of every site that began before `before` (up to
/// `limit` of each per site), with every trace of their jobs; returns how many calls it removed.
pub async fn forget_before(app: &App, before: Ts, limit: usize) -> Result<usize, StoreError> {
    // Every site the pool has known: a site a reload removed keeps records until they expire too.
    let mut sites = app.pool.sites().await?;
    for s in &app.config().sites {
        if !sites.contains(&s.id) {
            sites.push(s.id.clone());
        }
    }
    let calls = app.store.forget_calls(&sites, before, limit, &registry::kinds_of(Records::Calls)).await?;
    app.store.forget_callbacks(&sites, before, limit, &registry::kinds_of(Records::Callbacks)).await?;
    app.store.forget_visits(&sites, before, limit).await?;
    app.store.forget_digests(&sites, before, limit, &registry::kinds_of(Records::Digests)).await?;
    Ok(calls)
}

/// Forgets what is older than `[analytics] calls_retention` (a batch per run; any node may do it).
async fn forget_expired(app: &App, now: Ts) {
    match forget_before(app, now.minus(app.config().analytics.calls_retention), 1000).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(calls = n, "Forgot calls older than the retention period."),
        Err(e) => {
            app.metrics.store_errors.with_label_values(&["calls_trim"]).inc();
            tracing::warn!(error = %e, "Cannot forget old calls.");
        }
    }
}

/// One pass: check the store still holds the configuration, reap, then shrink. Returns the
/// leases it ended.
pub async fn reap_and_shrink(app: &App) -> Vec<Lease> {
    let timer = app.metrics.reaper_duration.start_timer();
    let now = app.clock.now();
    let outcome = async {
        // A site this node serves that the store does not know means the store lost its data
        // (a Redis restart without persistence): write the configuration again.
        let first = app.config().sites.first().map(|s| s.id.clone());
        if let Some(first) = first {
            // One key look-up (a status would read the whole inventory every pass).
            if !app.pool.knows_site(&first).await? {
                tracing::warn!("The store has lost the pool configuration (a Redis restart without persistence?); configuring it again.");
                app.configure_pool_again().await?;
            }
        }
        let ended = app.pool.reap(now).await?;
        for lease in &ended {
            let reason = lease.end_reason.map_or("unknown", |r| r.as_str());
            app.metrics.leases_ended.with_label_values(&[lease.site.as_str(), reason]).inc();
            tracing::debug!(site = %lease.site, visitor = %lease.visitor, lease = %lease.id, reason, "Lease ended.");
        }
        for (site, _number) in app.pool.shrink(now).await? {
            app.metrics.numbers_returned.with_label_values(&[site.as_str()]).inc();
        }
        Ok::<_, callpool_pool::PoolError>(ended)
    }
    .await;
    timer.observe_duration();
    match outcome {
        Ok(ended) => {
            app.metrics.reaper_runs.with_label_values(&["ok"]).inc();
            ended
        }
        Err(e) => {
            app.metrics.reaper_runs.with_label_values(&["error"]).inc();
            tracing::warn!(error = %e, "The reaper pass failed; it runs again at the next interval.");
            Vec::new()
        }
    }
}
