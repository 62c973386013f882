//! One PBX report in, one stored call out: the first report of a call is matched (pool history
//! and caller memory, through [`super::matcher`]) and stored with its analytics jobs; later
//! reports of the same call only advance its status. Each write names the version it read, so two nodes that
//! receive reports of one call at once never lose either (the loser re-reads and retries).

use std::time::Duration;

use callpool_pool::Ts;

use super::{Call, CallReport, CallerMemory};
use crate::app::App;
use crate::jobs::{registry, Event};
use crate::store::calls::CallWrite;
use crate::store::StoreError;

/// How long a caller is remembered per site (for first-time callers; `repeat_caller` uses the
/// site's shorter window).
const REMEMBER_CALLERS: Duration = Duration::from_secs(400 * 86_400);

/// What a report did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// The first report of the call: matched and stored, jobs queued.
    New(Call),
    /// A later report that advanced the call.
    Updated(Call),
    /// A report that told nothing new (a retry).
    Unchanged(Call),
}

impl Recorded {
    pub fn call(&self) -> &Call {
        match self {
            Recorded::New(c) | Recorded::Updated(c) | Recorded::Unchanged(c) => c,
        }
    }
}

/// Records `report`. Returns once the call and its jobs are durable in the store.
pub async fn record(app: &App, report: &CallReport) -> Result<Recorded, StoreError> {
    let config = app.config();
    // Each round re-reads; a conflict means another node wrote the call between our read and write.
    for _ in 0..16 {
        let now = app.clock.now();
        let stored = app.store.call(&report.key).await?;
        match stored {
            Some(mut call) => {
                let expected = call.version;
                let before = call.clone();
                if !call.absorb(report, now) {
                    return Ok(Recorded::Unchanged(call));
                }
                call.version += 1;
                // A call that became final goes out now.
                let hurry: Vec<(&'static str, Ts)> = if call.status.is_final() && !before.status.is_final() {
                    registry::hurried_when_final().into_iter().map(|k| (k, now)).collect()
                } else {
                    Vec::new()
                };
                let site = call.matched.site.clone();
                let site_config = site.as_ref().and_then(|s| config.site(s));
                let jobs = registry::plan(
                    app,
                    Event::CallChanged { call: &call, before: Some(&before), site: site_config, now },
                );
                let write = CallWrite { call: &call, expected, caller: None, jobs: &jobs, hurry: &hurry };
                if app.store.save_call(site.as_ref(), write).await? {
                    for (kind, _) in &hurry {
                        app.job_wake.wake(kind);
                    }
                    app.job_wake.wake_all(&jobs);
                    return Ok(Recorded::Updated(call));
                }
            }
            None => {
                let (call, memory) = first_report(app, report, now).await?;
                let site = call.matched.site.clone();
                let site_config = site.as_ref().and_then(|s| config.site(s));
                let keep_caller = site_config.map_or(REMEMBER_CALLERS, |s| s.windows.repeat.max(REMEMBER_CALLERS));
                let due = if call.status.is_final() {
                    now
                } else {
                    call.started_at.plus(config.analytics.finalize_after).max(now)
                };
                let mut jobs = registry::plan(app, Event::CallRecorded { call: &call, site: site_config, due });
                jobs.extend(registry::plan(
                    app,
                    Event::CallChanged { call: &call, before: None, site: site_config, now },
                ));
                let write = CallWrite {
                    call: &call,
                    expected: 0,
                    caller: call.caller.as_ref().zip(memory.as_ref()).map(|(c, m)| (c, m, keep_caller)),
                    jobs: &jobs,
                    hurry: &[],
                };
                if app.store.save_call(site.as_ref(), write).await? {
                    // Those due later are found by the runner's poll.
                    app.job_wake.wake_all(&jobs);
                    return Ok(Recorded::New(call));
                }
            }
        }
    }
    Err(StoreError::Failed(format!("call {} kept changing under us; giving up this report", report.key)))
}

/// Attaches a recording to a call already recorded: the call and whether it changed, or `None`
/// when callpool has no such call.
pub async fn attach_recording(
    app: &App,
    key: &super::CallKey,
    recording: &str,
) -> Result<Option<(Call, bool)>, StoreError> {
    for _ in 0..16 {
        let Some(mut call) = app.store.call(key).await? else { return Ok(None) };
        if call.recording_url.as_deref() == Some(recording) {
            return Ok(Some((call, false)));
        }
        let expected = call.version;
        call.recording_url = Some(recording.to_owned());
        call.updated_at = app.clock.now();
        call.version += 1;
        let site = call.matched.site.clone();
        let write = CallWrite { call: &call, expected, caller: None, jobs: &[], hurry: &[] };
        if app.store.save_call(site.as_ref(), write).await? {
            return Ok(Some((call, true)));
        }
    }
    Err(StoreError::Failed(format!("call {key} kept changing under us; giving up this recording")))
}

/// Matches the first report of a call and builds the record, and the caller's updated memory.
async fn first_report(app: &App, report: &CallReport, now: Ts) -> Result<(Call, Option<CallerMemory>), StoreError> {
    // A PBX clock ahead of ours must not put the call after the leases we know of.
    let at = report.started_at.min(now);
    // Only a PBX that reports callbacks' outcomes costs the lookup (a webhook's hot path).
    let pbx = report.key.pbx();
    if app.config().sites.iter().any(|s| s.callback.as_ref().is_some_and(|c| c.pbx == pbx)) {
        if let Some(cb) = app.store.callback_for_call(&report.key).await? {
            return Ok((callback_call(report, &cb, at, now), None));
        }
    }
    let dir = &app.config().directory;
    let leases = app.pool.leases_before(&report.called, at, dir.lookup_window()).await?;
    let site = dir.site_of(&report.called, &leases);
    let memory = match (&site, &report.caller) {
        (Some(s), Some(c)) => app.store.caller(s, c).await?,
        _ => None,
    };
    let matched = dir.decide(&report.called, at, &leases, memory.as_ref());
    let first_time_caller = report.caller.is_some() && memory.is_none();
    let new_memory = report.caller.as_ref().map(|_| CallerMemory::after(memory.as_ref(), &report.called, at, &matched));
    let call = new_call(report, at, now, matched, first_time_caller);
    Ok((call, new_memory))
}

/// A call the PBX placed for a callback request: attributed to the session that asked (the
/// caller is the site's own line, so nothing is remembered of it).
fn callback_call(report: &CallReport, cb: &crate::callback::Callback, at: Ts, now: Ts) -> Call {
    let matched = super::Match {
        kind: super::MatchKind::Callback,
        site: Some(cb.site.clone()),
        number_kind: super::NumberKind::Unknown,
        visitor: cb.visitor.clone(),
        lease: None,
        attrs: cb.attrs.clone(),
    };
    new_call(report, at, now, matched, false)
}

/// The record of a call's first report, started at `at`, received at `now`.
fn new_call(report: &CallReport, at: Ts, now: Ts, matched: super::Match, first_time_caller: bool) -> Call {
    Call {
        key: report.key.clone(),
        called: report.called.clone(),
        caller: report.caller.clone(),
        started_at: at,
        answered_at: report.answered_at,
        ended_at: report.ended_at,
        status: report.status,
        duration: report.duration,
        recording_url: report.recording_url.clone(),
        received_at: now,
        updated_at: now,
        matched,
        first_time_caller,
        version: 1,
    }
}
