//! Yandex Metrica offline calls (kind `yandex`): every `[analytics] yandex_upload_interval`, the
//! due calls of each site go up in one CSV upload (`offline_conversions/upload_calls`); the row
//! format is in `analytics.rs`.

use std::collections::BTreeMap;

use callpool_pool::{SessionAttrs, SiteId};
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::Deserialize;

use super::{http_outcome, no_answer, plan_call, skipped, Ctx, Event, Handler, Outcome, Pace};
use crate::analytics;
use crate::app::App;
use crate::calls::Call;
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, Planned, Record, Records};

pub struct Metrica;

/// A site's Metrica counter: `[site.yandex]`.
pub struct Counter {
    pub counter_id: u64,
    /// OAuth token with Metrica write access.
    pub token: String,
    /// What a row's `PhoneNumber` carries (`phone_number`: `tracking`, the default; `client`;
    /// `none`).
    pub phone: crate::analytics::MetricaPhone,
    /// The name of the calls goal Metrica makes with the first upload if the counter has none
    /// (`goal_name`, default "Звонок"; Metrica ignores it once a calls goal exists).
    pub goal_name: String,
}

/// Reads `[site.yandex]`.
pub struct SiteReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYandex {
    counter_id: u64,
    token: String,
    #[serde(default)]
    phone_number: crate::analytics::MetricaPhone,
    goal_name: Option<String>,
}

impl Reader for SiteReader {
    fn place(&self) -> Place {
        Place::Site("yandex")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let y: RawYandex = f.parse()?;
        if y.token.is_empty() {
            f.fail("token", "is empty (an OAuth token with Metrica write access)");
            return None;
        }
        let goal_name = y.goal_name.unwrap_or_else(|| "Звонок".into());
        if goal_name.trim().is_empty() || goal_name.chars().count() > 255 {
            f.fail("goal_name", "1 to 255 characters: the name of the calls goal Metrica makes");
            return None;
        }
        Some(Section::new(
            "yandex",
            Counter { counter_id: y.counter_id, token: y.token, phone: y.phone_number, goal_name },
        ))
    }
}

/// The site's Metrica counter, if it has one.
pub fn counter(site: &SiteConfig) -> Option<&Counter> {
    site.sections.get::<Counter>("yandex")
}

/// Whether the counter has a calls goal (type `call`: Metrica makes it with a calls upload; a
/// phone-click goal of the same name is not one), by the Management API's list of goals.
pub async fn has_calls_goal(http: &reqwest::Client, base_url: &str, ym: &Counter) -> Result<bool, String> {
    let resp = http
        .get(format!("{}/management/v1/counter/{}/goals", base_url.trim_end_matches('/'), ym.counter_id))
        .header("Authorization", format!("OAuth {}", ym.token))
        .send()
        .await
        .map_err(|e| format!("Metrica did not answer: {}", e.without_url()))?;
    let status = resp.status();
    let body = super::google_auth::json_body(resp).await;
    if !status.is_success() {
        let message = body["message"].as_str().unwrap_or_default();
        return Err(format!("Metrica refused to list the counter's goals (HTTP {}): {message}", status.as_u16()));
    }
    let goals = body["goals"].as_array().cloned().unwrap_or_default();
    Ok(goals.iter().any(|g| g["type"] == "call"))
}

/// The kind of a call's Metrica row (the reports show where each stands).
pub const KIND: &str = "yandex";
/// Rows per upload.
const BATCH: usize = 10_000;

impl Handler for Metrica {
    fn kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    fn records(&self) -> Records {
        Records::Calls
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&SiteReader)
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let ym_uid = |a: &SessionAttrs| match a.ym_uid.as_deref() {
            Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
            _ => Err("the visitor's session has no Metrica client id (_ym_uid)"),
        };
        plan_call(event, KIND, "Yandex Metrica", |s| counter(s).is_some(), ym_uid)
    }

    fn pace(&self, app: &App) -> Pace {
        Pace { batch: BATCH, rounds: 1, every: Some(app.config().analytics.yandex_upload_interval) }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        async move {
            let mut by_site: BTreeMap<Option<&SiteId>, Vec<(usize, &Call)>> = BTreeMap::new();
            for (i, job) in jobs.iter().enumerate() {
                if let Record::Call(call) = &job.record {
                    by_site.entry(call.matched.site.as_ref()).or_default().push((i, call));
                }
            }
            // Every site's upload at once: the batch's claims hold for one request's time, not the sum.
            let uploads = join_all(by_site.iter().map(|(site, calls)| upload(ctx, *site, calls))).await;
            let mut outcomes = vec![skipped("not a call"); jobs.len()];
            for ((_, calls), outcome) in by_site.iter().zip(uploads) {
                for (i, _) in calls {
                    outcomes[*i] = outcome.clone();
                }
            }
            outcomes
        }
        .boxed()
    }
}

/// One site's calls in one upload.
async fn upload(ctx: &Ctx<'_>, site: Option<&SiteId>, calls: &[(usize, &Call)]) -> Outcome {
    let app = ctx.app;
    let Some(site) = site.and_then(|s| ctx.config.site(s)) else {
        return skipped("the call's site is no longer configured");
    };
    let Some(ym) = counter(site) else { return skipped("Yandex Metrica is no longer configured for the site") };
    let mut csv = format!("{}\n", analytics::YANDEX_CSV_HEADER);
    for (_, call) in calls {
        if let Some(row) = analytics::yandex_row(call, &ym.phone.of(call, &ctx.config.directory)) {
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
        ctx.config.analytics.yandex_base_url, ym.counter_id
    );
    let sent = ctx
        .http
        .post(&url)
        .query(&[("client_id_type", "CLIENT_ID"), ("comment", "callpool"), ("new_goal_name", ym.goal_name.as_str())])
        .header(reqwest::header::AUTHORIZATION, format!("OAuth {}", ym.token))
        .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                tracing::info!(site = %site.id, rows = calls.len(), "Uploaded calls to Yandex Metrica.");
            }
            http_outcome(status, "Yandex Metrica", app.clock.now())
        }
        Err(e) => no_answer("Yandex Metrica", &e),
    }
}
