//! The analytics outbox worker: claims due jobs from the calls store and delivers them — GA4
//! events one by one, Yandex Metrica calls in one CSV upload per site on a schedule. Every node
//! runs it; a claim hands each job to one node, and a claim a dead node never finished returns
//! to the queue after its hold.
//!
//! Retries: timeouts, connection errors, 5xx and 429 (Metrica also answers 420) back off
//! exponentially (`retry_base`, 10 s by default, doubling, at most an hour, with jitter) up to `max_attempts`, then the
//! job is dead-lettered. Other 4xx answers are refusals: GA4's guide says to fix, not repeat,
//! such a request, so the job is dead-lettered at once with the answer. A delivery marked sent
//! is never claimed again (dedupe before send); graceful shutdown finishes the batch in hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use callpool_pool::{SiteId, Ts};
use tokio_util::sync::CancellationToken;

use crate::analytics::{self, Ga4Refusal};
use crate::app::App;
use crate::calls::store::{Finish, Job, JobKind};
use crate::calls::Delivery;

/// How often each node looks for due jobs (a webhook that makes a call final wakes it at once).
const POLL: Duration = Duration::from_millis(500);
/// GA4 jobs claimed per round.
const GA4_BATCH: usize = 64;
/// Metrica rows per upload.
const YANDEX_BATCH: usize = 10_000;

/// What one delivery attempt came to.
enum Attempt {
    Done(Delivery),
    /// Worth trying again (the error says why).
    Again(String),
}

/// Runs until `shutdown`; the batch in hand is finished first.
pub async fn run(app: Arc<App>, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder().timeout(app.config.analytics.request_timeout).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the HTTP client; analytics delivery is off.");
            return;
        }
    };
    let mut next_yandex = app.clock.now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(POLL) => {}
            _ = app.outbox_wake.notified() => {}
        }
        deliver_ga4(&app, &client).await;
        let now = app.clock.now();
        if now >= next_yandex {
            next_yandex = now.plus(app.config.analytics.yandex_upload_interval);
            upload_yandex(&app, &client).await;
        }
    }
}

/// How long a claim holds its job: longer than any attempt can take.
pub(crate) fn hold(app: &App) -> Duration {
    app.config.analytics.request_timeout * 3 + Duration::from_secs(30)
}

/// Exponential backoff with jitter: `retry_base` (10 s), then twice as long each time, at most an hour.
pub(crate) fn backoff(first: Duration, attempts: u32) -> Duration {
    let base = first.saturating_mul(1 << attempts.min(16)).min(Duration::from_secs(3600));
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    // ±20 %, so nodes that failed together do not retry together.
    let jitter = f64::from(nanos % 4001) / 10_000.0 - 0.2;
    base.mul_f64(1.0 + jitter)
}

async fn deliver_ga4(app: &App, client: &reqwest::Client) {
    loop {
        let now = app.clock.now();
        let jobs = match app.calls.claim(JobKind::Ga4, now, GA4_BATCH, now.plus(hold(app))).await {
            Ok(j) => j,
            Err(e) => {
                app.metrics.store_errors.with_label_values(&["outbox_claim"]).inc();
                tracing::warn!(error = %e, "Cannot claim GA4 jobs; trying again shortly.");
                return;
            }
        };
        let full = jobs.len() == GA4_BATCH;
        let sends = jobs.iter().map(|job| async move { settle(app, job, send_ga4(app, client, job).await) });
        let done = futures_util::future::join_all(sends).await;
        finish(app, JobKind::Ga4, &done).await;
        if !full {
            return;
        }
    }
}

async fn send_ga4(app: &App, client: &reqwest::Client, job: &Job) -> Attempt {
    let call = &job.call;
    let cfg = &app.config.analytics;
    let Some(site) = call.matched.site.as_ref().and_then(|s| app.config.site(s)) else {
        return Attempt::Done(Delivery::Skipped { reason: "the call's site is no longer configured".into() });
    };
    let Some(ga4) = &site.ga4 else {
        return Attempt::Done(Delivery::Skipped { reason: "GA4 is no longer configured for the site".into() });
    };
    let now = app.clock.now();
    let body = match analytics::ga4_payload(call, &cfg.ga4_event_name, now) {
        Ok(b) => b,
        Err(Ga4Refusal::TooOld) => {
            app.metrics.analytics_refused.with_label_values(&["ga4", "too_old"]).inc();
            tracing::warn!(call = %call.key, "A call is older than GA4's 72-hour back-dating limit; not sent.");
            return Attempt::Done(Delivery::Skipped {
                reason: "older than GA4's 72-hour back-dating limit; not sent".into(),
            });
        }
        Err(Ga4Refusal::Invalid(why)) => {
            app.metrics.analytics_refused.with_label_values(&["ga4", "invalid"]).inc();
            tracing::warn!(call = %call.key, error = %why, "A call's GA4 event breaks GA4's limits; not sent.");
            return Attempt::Done(Delivery::Dead { error: format!("not sent: {why}") });
        }
    };
    let path = if cfg.ga4_debug { "debug/mp/collect" } else { "mp/collect" };
    let url = format!("{}/{path}", cfg.ga4_base_url);
    let sent = client
        .post(&url)
        .query(&[("measurement_id", ga4.measurement_id.as_str()), ("api_secret", ga4.api_secret.as_str())])
        .json(&body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return Attempt::Again(format!("GA4 did not answer: {}", without_url(&e))),
    };
    let status = resp.status();
    if status.is_success() && cfg.ga4_debug {
        let text = resp.text().await.unwrap_or_default();
        let messages = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("validationMessages").cloned())
            .unwrap_or(serde_json::Value::Null);
        let valid = messages.as_array().is_some_and(Vec::is_empty);
        tracing::info!(call = %call.key, valid, messages = %messages, "GA4 validation server answered (debug mode: nothing is recorded).");
        return Attempt::Done(if valid {
            Delivery::Skipped { reason: "debug mode: validated by GA4, not recorded".into() }
        } else {
            Delivery::Dead { error: format!("GA4 validation messages: {messages}") }
        });
    }
    classify_http(status, "GA4", now)
}

/// A 2xx is delivered; 5xx, 429 and Metrica's 420 are worth retrying; other answers are refusals.
fn classify_http(status: reqwest::StatusCode, who: &str, now: Ts) -> Attempt {
    if status.is_success() {
        Attempt::Done(Delivery::Sent { at: now })
    } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 420 {
        Attempt::Again(format!("{who} answered HTTP {status}"))
    } else {
        Attempt::Done(Delivery::Dead { error: format!("{who} refused it: HTTP {status}") })
    }
}

/// A reqwest error without its URL (which carries the GA4 api_secret).
pub(crate) fn without_url(e: &reqwest::Error) -> String {
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

/// What to record of one attempt (and its metrics and logs).
fn settle(app: &App, job: &Job, attempt: Attempt) -> (String, Finish) {
    let kind = job.kind.as_str();
    let now = app.clock.now();
    let how = match attempt {
        Attempt::Done(d) => {
            match &d {
                Delivery::Sent { .. } => app.metrics.analytics_sent.with_label_values(&[kind]).inc(),
                Delivery::Dead { error } => {
                    app.metrics.analytics_dead.with_label_values(&[kind]).inc();
                    tracing::warn!(call = %job.call.key, kind, error = %error, "An analytics delivery was dead-lettered.");
                }
                Delivery::Skipped { .. } | Delivery::Pending => {}
            }
            Finish::Done(d)
        }
        Attempt::Again(why) if job.attempts + 1 >= app.config.analytics.max_attempts => {
            app.metrics.analytics_dead.with_label_values(&[kind]).inc();
            tracing::warn!(call = %job.call.key, kind, error = %why, attempts = job.attempts + 1, "An analytics delivery failed too often; dead-lettered.");
            Finish::Done(Delivery::Dead { error: format!("{} attempts; last: {why}", job.attempts + 1) })
        }
        Attempt::Again(why) => {
            app.metrics.analytics_retried.with_label_values(&[kind]).inc();
            let wait = backoff(app.config.analytics.retry_base, job.attempts);
            tracing::info!(call = %job.call.key, kind, error = %why, retry_in_s = wait.as_secs(), "An analytics delivery failed; it will be retried.");
            Finish::Retry(now.plus(wait))
        }
    };
    (job.call.key.to_string(), how)
}

/// Records the outcomes of a batch in one store operation.
async fn finish(app: &App, kind: JobKind, done: &[(String, Finish)]) {
    if let Err(e) = app.calls.finish(kind, done, app.clock.now()).await {
        // The claims expire and the jobs are tried again: at worst duplicates, never a loss.
        app.metrics.store_errors.with_label_values(&["outbox_finish"]).inc();
        tracing::warn!(jobs = done.len(), error = %e, "Cannot record analytics deliveries' outcomes.");
    }
}

async fn upload_yandex(app: &App, client: &reqwest::Client) {
    let now = app.clock.now();
    let jobs = match app.calls.claim(JobKind::Yandex, now, YANDEX_BATCH, now.plus(hold(app))).await {
        Ok(j) => j,
        Err(e) => {
            app.metrics.store_errors.with_label_values(&["outbox_claim"]).inc();
            tracing::warn!(error = %e, "Cannot claim Metrica jobs; trying at the next upload.");
            return;
        }
    };
    let mut by_site: BTreeMap<Option<SiteId>, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        by_site.entry(job.call.matched.site.clone()).or_default().push(job);
    }
    for (site, jobs) in by_site {
        let attempt = upload_site(app, client, site.as_ref(), &jobs).await;
        let done: Vec<_> = jobs
            .iter()
            .map(|job| {
                let each = match &attempt {
                    Attempt::Done(d) => Attempt::Done(d.clone()),
                    Attempt::Again(why) => Attempt::Again(why.clone()),
                };
                settle(app, job, each)
            })
            .collect();
        finish(app, JobKind::Yandex, &done).await;
    }
}

async fn upload_site(app: &App, client: &reqwest::Client, site: Option<&SiteId>, jobs: &[Job]) -> Attempt {
    let Some(site) = site.and_then(|s| app.config.site(s)) else {
        return Attempt::Done(Delivery::Skipped { reason: "the call's site is no longer configured".into() });
    };
    let Some(ym) = &site.yandex else {
        return Attempt::Done(Delivery::Skipped {
            reason: "Yandex Metrica is no longer configured for the site".into(),
        });
    };
    let mut csv = format!("{}\n", analytics::YANDEX_CSV_HEADER);
    for job in jobs {
        if let Some(row) = analytics::yandex_row(&job.call) {
            csv.push_str(&row);
            csv.push('\n');
        }
    }
    let boundary = format!("callpool-{:x}", std::process::id() as u64 ^ app.clock.now().as_millis() as u64);
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"calls.csv\"\r\nContent-Type: text/csv\r\n\r\n{csv}\r\n--{boundary}--\r\n"
    );
    let url = format!(
        "{}/management/v1/counter/{}/offline_conversions/upload_calls",
        app.config.analytics.yandex_base_url, ym.counter_id
    );
    let sent = client
        .post(&url)
        .query(&[("client_id_type", "CLIENT_ID"), ("comment", "callpool")])
        .header(reqwest::header::AUTHORIZATION, format!("OAuth {}", ym.token))
        .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            let attempt = classify_http(status, "Yandex Metrica", app.clock.now());
            if status.is_success() {
                tracing::info!(site = %site.id, rows = jobs.len(), "Uploaded calls to Yandex Metrica.");
            }
            attempt
        }
        Err(e) => Attempt::Again(format!("Yandex Metrica did not answer: {}", without_url(&e))),
    }
}
