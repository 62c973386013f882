//! Google Analytics 4 through the Measurement Protocol: one `phone_call` event (the name is
//! `[analytics] ga4_event_name`) per call attributed to a visitor with a GA client id (kind
//! `ga4`), and one `callback_request` event per callback request (kind `cb_ga4`). The payloads
//! and GA4's limits are in `analytics.rs`; with `ga4_debug` the events go to GA4's validation
//! server instead and its messages are logged.

use callpool_pool::{SessionAttrs, Ts};
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::Value;

use super::{http_outcome, no_answer, plan_call, skipped, Ctx, Event, Handler, Outcome};
use crate::analytics::{self, Ga4Refusal};
use crate::app::App;
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, JobState, Plan, Planned, Record, Records};

/// A site's GA4 web stream: `[site.ga4]`.
pub struct Ga4Site {
    /// `G-XXXXXXX`
    pub measurement_id: String,
    pub api_secret: String,
    /// The property's id (digits), for `callpool analytics setup`.
    pub property_id: Option<String>,
    /// A service account that may edit the property (its key file, usually given as
    /// `service_account_key_file`), for `callpool analytics setup`.
    pub service_account: Option<super::google_auth::ServiceAccount>,
}

/// Reads `[site.ga4]`.
pub struct SiteReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGa4 {
    measurement_id: String,
    api_secret: String,
    property_id: Option<String>,
    service_account_key: Option<String>,
}

impl Reader for SiteReader {
    fn place(&self) -> Place {
        Place::Site("ga4")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let g: RawGa4 = f.parse()?;
        let id_ok = g.measurement_id.starts_with("G-")
            && g.measurement_id.len() > 2
            && g.measurement_id[2..].bytes().all(|b| b.is_ascii_alphanumeric());
        if !id_ok {
            f.fail("measurement_id", format!("{:?} is not a GA4 measurement id such as G-ABC123", g.measurement_id));
        }
        if g.api_secret.is_empty() {
            f.fail("api_secret", "is empty (Admin > Data streams > Measurement Protocol API secrets)");
        }
        let property_ok = |p: &String| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if let Some(p) = g.property_id.as_ref().filter(|p| !property_ok(p)) {
            f.fail("property_id", format!("{p:?} is not a GA4 property id (digits: Admin > Property details)"));
        }
        let service_account = match g.service_account_key.as_deref().map(super::google_auth::ServiceAccount::parse) {
            Some(Err(why)) => {
                f.fail("service_account_key", why);
                None
            }
            other => other.and_then(Result::ok),
        };
        if service_account.is_some() && g.property_id.is_none() {
            f.fail("property_id", "name the GA4 property the service account sets up (Admin > Property details)");
        }
        id_ok.then(|| {
            Section::new(
                "ga4",
                Ga4Site {
                    measurement_id: g.measurement_id,
                    api_secret: g.api_secret,
                    property_id: g.property_id,
                    service_account,
                },
            )
        })
    }
}

/// The site's GA4 stream, if it has one.
pub fn stream(site: &SiteConfig) -> Option<&Ga4Site> {
    site.sections.get::<Ga4Site>("ga4")
}

/// A call's event.
pub struct Ga4Calls;
/// A callback request's event.
pub struct Ga4Callbacks;

/// The kind of a call's GA4 event (the reports show where each stands).
pub const CALLS: &str = "ga4";
const CALLBACKS: &str = "cb_ga4";

impl Handler for Ga4Calls {
    fn kinds(&self) -> &'static [&'static str] {
        &[CALLS]
    }

    fn records(&self) -> Records {
        Records::Calls
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&SiteReader)
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let client_id = |a: &SessionAttrs| match a.ga_client_id.as_deref() {
            Some(id) if analytics::ga4_client_id_ok(id) => Ok(()),
            _ => Err("the visitor's session has no GA client id"),
        };
        plan_call(event, CALLS, "GA4", |s| stream(s).is_some(), client_id)
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(|job| async move {
            let Record::Call(call) = &job.record else { return skipped("not a call") };
            let app = ctx.app;
            let Some(site) = call.matched.site.as_ref().and_then(|s| ctx.config.site(s)) else {
                return skipped("the call's site is no longer configured");
            };
            let now = app.clock.now();
            match analytics::ga4_payload(call, &ctx.config.analytics.ga4_event_name, now) {
                Ok(body) => send(ctx, site, &body, &call.key.to_string(), now).await,
                Err(why) => refused(app, CALLS, &call.key.to_string(), why),
            }
        }))
        .boxed()
    }
}

impl Handler for Ga4Callbacks {
    fn kinds(&self) -> &'static [&'static str] {
        &[CALLBACKS]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let Event::CallbackRequested { callback, site, now, .. } = event else { return Vec::new() };
        let ga_ok = callback.attrs.ga_client_id.as_deref().is_some_and(analytics::ga4_client_id_ok);
        if stream(site).is_some() && ga_ok {
            vec![Planned { kind: CALLBACKS, plan: Plan::Due(now) }]
        } else {
            Vec::new()
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(|job| async move {
            let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
            let app = ctx.app;
            let Some(site) = ctx.config.site(&cb.site) else { return skipped("the site is no longer configured") };
            let now = app.clock.now();
            match analytics::ga4_callback_payload(cb, now) {
                Ok(body) => send(ctx, site, &body, cb.id.as_str(), now).await,
                Err(why) => refused(app, CALLBACKS, cb.id.as_str(), why),
            }
        }))
        .boxed()
    }
}

/// An event callpool will not send: too old for GA4 (skipped) or breaking its limits (dead).
fn refused(app: &App, kind: &str, record: &str, why: Ga4Refusal) -> Outcome {
    match why {
        Ga4Refusal::TooOld => {
            app.metrics.analytics_refused.with_label_values(&[kind, "too_old"]).inc();
            tracing::warn!(record, kind, "An event is older than GA4's 72-hour back-dating limit; not sent.");
            skipped("older than GA4's 72-hour back-dating limit; not sent")
        }
        Ga4Refusal::Invalid(why) => {
            app.metrics.analytics_refused.with_label_values(&[kind, "invalid"]).inc();
            tracing::warn!(record, kind, error = %why, "An event breaks GA4's limits; not sent.");
            Outcome::Done(JobState::Dead { error: format!("not sent: {why}") })
        }
    }
}

/// Posts one event to the site's GA4 stream (or, in debug mode, to the validation server).
async fn send(ctx: &Ctx<'_>, site: &SiteConfig, body: &Value, record: &str, now: Ts) -> Outcome {
    let Some(ga4) = stream(site) else { return skipped("GA4 is no longer configured for the site") };
    let cfg = &ctx.app.config().analytics;
    let path = if cfg.ga4_debug { "debug/mp/collect" } else { "mp/collect" };
    let sent = ctx
        .http
        .post(format!("{}/{path}", cfg.ga4_base_url))
        .query(&[("measurement_id", ga4.measurement_id.as_str()), ("api_secret", ga4.api_secret.as_str())])
        .json(body)
        .send()
        .await;
    let resp = match sent {
        Ok(r) => r,
        Err(e) => return no_answer("GA4", &e),
    };
    let status = resp.status();
    if status.is_success() && cfg.ga4_debug {
        let text = resp.text().await.unwrap_or_default();
        let messages = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("validationMessages").cloned())
            .unwrap_or(Value::Null);
        let valid = messages.as_array().is_some_and(Vec::is_empty);
        tracing::info!(record, valid, messages = %messages, "GA4 validation server answered (debug mode: nothing is recorded).");
        return Outcome::Done(if valid {
            JobState::Skipped { reason: "debug mode: validated by GA4, not recorded".into() }
        } else {
            JobState::Dead { error: format!("GA4 validation messages: {messages}") }
        });
    }
    http_outcome(status, "GA4", now)
}
