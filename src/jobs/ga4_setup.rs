//! Making a site's calls goals in GA4 from callpool's side (`callpool analytics setup`, `POST
//! /v1/admin/analytics/{site}/setup`): with a Google service account that may edit the property,
//! the site's call event and `callback_request` become key events (counted once per event), and
//! every parameter callpool sends ([`analytics::GA4_PARAMS`]) is registered as an event-scoped
//! custom dimension or metric. Idempotent: what exists is left alone. `check` sends a sample event
//! to GA4's validation server with the site's real settings.
//!
//! Google's side: OAuth 2.0 for service accounts (a JWT signed RS256 with the account's key,
//! exchanged at its `token_uri` for an access token, scope `analytics.edit`), and the Admin API
//! v1beta (`properties.keyEvents`, `properties.customDimensions`, `properties.customMetrics`).

use std::time::Duration;

use callpool_pool::Ts;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::analytics::{self, Ga4Shown, GA4_CALLBACK_EVENT, GA4_PARAMS};
use crate::config::{Config, SiteConfig};
use crate::jobs::google_auth::{json_body, ServiceAccount};

/// The scope that lets the account edit the property's configuration.
pub const SCOPE: &str = "https://www.googleapis.com/auth/analytics.edit";
/// The most pages of one list read.
const MAX_PAGES: usize = 10;

/// What one thing came to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Made now.
    Created,
    /// There already (left as it is).
    Exists,
    /// Missing; a dry run made nothing.
    WouldCreate,
    /// Missing; the destination makes it itself (Metrica's calls goal, with the next upload).
    Pending,
    /// Not made: `detail` says why (Google's answer, or a limit).
    Failed,
}

/// One key event, custom dimension or custom metric.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Item {
    /// `key_event`, `custom_dimension` or `custom_metric`.
    pub kind: &'static str,
    /// The event name or the parameter name.
    pub name: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
}

/// What `setup` did for a site's GA4 property.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SetupReport {
    pub site: String,
    /// The GA4 property set up (none when the site has only Metrica).
    pub property: Option<String>,
    pub dry_run: bool,
    pub items: Vec<Item>,
    pub created: usize,
    pub existing: usize,
    pub failed: usize,
}

impl SetupReport {
    fn new(site: &SiteConfig, property: Option<&str>, dry_run: bool) -> SetupReport {
        SetupReport {
            site: site.id.to_string(),
            property: property.map(str::to_owned),
            dry_run,
            items: Vec::new(),
            created: 0,
            existing: 0,
            failed: 0,
        }
    }

    /// Adds `item`, counted by its outcome.
    fn push(&mut self, item: Item) {
        match item.outcome {
            Outcome::Created => self.created += 1,
            Outcome::Exists => self.existing += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::WouldCreate | Outcome::Pending => {}
        }
        self.items.push(item);
    }
}

/// What setup wants for a site: the key events, then every parameter.
pub fn wanted(site: &SiteConfig, call_event: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![("key_event", call_event.to_owned())];
    if site.callback.is_some() {
        out.push(("key_event", GA4_CALLBACK_EVENT.to_owned()));
    }
    for p in GA4_PARAMS {
        let kind = match p.shown {
            Ga4Shown::Dimension => "custom_dimension",
            Ga4Shown::Metric(_) => "custom_metric",
        };
        out.push((kind, p.name.to_owned()));
    }
    out
}

/// The Admin API, for one property, with an access token.
struct Admin<'a> {
    http: &'a reqwest::Client,
    base: String,
    token: String,
}

/// Google's error answer, read: `STATUS: message`.
fn google_error(status: reqwest::StatusCode, body: &Value) -> String {
    let e = &body["error"];
    match (e["status"].as_str(), e["message"].as_str()) {
        (Some(s), Some(m)) => format!("{s}: {m}"),
        _ => format!("HTTP {}", status.as_u16()),
    }
}

impl Admin<'_> {
    /// Every entry of a list (`field` of each page), following `nextPageToken` for at most
    /// [`MAX_PAGES`] pages (200 entries each: beyond any property's limits).
    async fn list(&self, collection: &str, field: &str) -> Result<Vec<Value>, String> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = self.http.get(format!("{}/{collection}", self.base)).bearer_auth(&self.token);
            req = req.query(&[("pageSize", "200")]);
            if let Some(t) = &page {
                req = req.query(&[("pageToken", t)]);
            }
            let resp = req.send().await.map_err(|e| format!("the Admin API did not answer: {}", e.without_url()))?;
            let status = resp.status();
            let body = json_body(resp).await;
            if !status.is_success() {
                return Err(format!("cannot list {collection}: {}", google_error(status, &body)));
            }
            out.extend(body[field].as_array().cloned().unwrap_or_default());
            match body["nextPageToken"].as_str().filter(|t| !t.is_empty()) {
                Some(t) if page.as_deref() == Some(t) => {
                    return Err(format!("the Admin API repeated a page of {collection}"))
                }
                Some(t) => page = Some(t.to_owned()),
                None => return Ok(out),
            }
        }
        Err(format!("the Admin API's list of {collection} goes on for more than {MAX_PAGES} pages"))
    }

    async fn create(&self, collection: &str, body: Value) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{}/{collection}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("the Admin API did not answer: {}", e.without_url()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(google_error(status, &json_body(resp).await))
    }
}

/// Everything `setup` needs of the site and the server.
pub struct Target<'a> {
    pub site: &'a SiteConfig,
    pub property: &'a str,
    pub account: &'a ServiceAccount,
    /// `[analytics] ga4_admin_base_url`.
    pub admin_base_url: &'a str,
    /// `[analytics] ga4_event_name`.
    pub call_event: &'a str,
}

/// Creates what is missing (nothing with `dry_run`) and reports every item.
pub async fn setup(http: &reqwest::Client, t: &Target<'_>, dry_run: bool, now: Ts) -> SetupReport {
    let wanted = wanted(t.site, t.call_event);
    let mut report = SetupReport::new(t.site, Some(t.property), dry_run);
    let fail_all = |report: &mut SetupReport, why: String| {
        for (kind, name) in &wanted {
            report.push(Item { kind, name: name.clone(), outcome: Outcome::Failed, detail: Some(why.clone()) });
        }
    };
    let token = match t.account.access_token(http, SCOPE, now).await {
        Ok(token) => token,
        Err(why) => {
            fail_all(&mut report, why);
            return report;
        }
    };
    let admin = Admin {
        http,
        base: format!("{}/v1beta/properties/{}", t.admin_base_url.trim_end_matches('/'), t.property),
        token,
    };
    let lists = async {
        let events = admin.list("keyEvents", "keyEvents").await?;
        let dims = admin.list("customDimensions", "customDimensions").await?;
        let metrics = admin.list("customMetrics", "customMetrics").await?;
        Ok::<_, String>((events, dims, metrics))
    };
    let (events, dims, metrics) = match lists.await {
        Ok(l) => l,
        Err(why) => {
            fail_all(&mut report, why);
            return report;
        }
    };
    let names = |list: &[Value], field: &str| -> Vec<String> {
        list.iter().filter_map(|v| v[field].as_str().map(str::to_owned)).collect()
    };
    let events = names(&events, "eventName");
    let event_dims =
        dims.iter().filter(|d| d["scope"].as_str().is_none_or(|s| s == "EVENT")).cloned().collect::<Vec<_>>();
    let (dims, metrics) = (names(&event_dims, "parameterName"), names(&metrics, "parameterName"));
    for (kind, name) in wanted {
        let param = GA4_PARAMS.iter().find(|p| p.name == name);
        // A property's limits (50 event-scoped custom dimensions and 50 custom metrics on a
        // standard property, more on GA4 360) are Google's to tell: its refusal is reported.
        let (exists, collection, body) = match (kind, param) {
            ("key_event", _) => {
                (events.contains(&name), "keyEvents", json!({"eventName": name, "countingMethod": "ONCE_PER_EVENT"}))
            }
            ("custom_metric", Some(p)) => (
                metrics.contains(&name),
                "customMetrics",
                json!({
                    "parameterName": p.name, "displayName": p.display, "description": p.description,
                    "measurementUnit": match p.shown { Ga4Shown::Metric(unit) => unit, Ga4Shown::Dimension => "STANDARD" },
                    "scope": "EVENT",
                }),
            ),
            (_, Some(p)) => (
                dims.contains(&name),
                "customDimensions",
                json!({"parameterName": p.name, "displayName": p.display, "description": p.description, "scope": "EVENT"}),
            ),
            (_, None) => continue,
        };
        let (outcome, detail) = if exists {
            (Outcome::Exists, None)
        } else if dry_run {
            (Outcome::WouldCreate, None)
        } else {
            match admin.create(collection, body).await {
                Ok(()) => (Outcome::Created, None),
                Err(why) => (Outcome::Failed, Some(why)),
            }
        };
        report.push(Item { kind, name, outcome, detail });
    }
    report
}

/// One of GA4's validation messages.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Validation {
    pub field_path: String,
    pub description: String,
    pub code: String,
}

/// What GA4's validation server said of a sample event with the site's settings.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CheckReport {
    pub site: String,
    pub measurement_id: String,
    /// True when GA4 found nothing wrong (its validation server does not check `api_secret`).
    pub valid: bool,
    pub messages: Vec<Validation>,
}

/// Sends a sample call event (never recorded: the validation server keeps nothing) with the
/// site's measurement id and API secret to `{ga4_base_url}/debug/mp/collect`.
pub async fn check(
    http: &reqwest::Client,
    site: &SiteConfig,
    ga4_base_url: &str,
    call_event: &str,
    now: Ts,
) -> Result<CheckReport, String> {
    let stream = super::ga4::stream(site).ok_or("the site has no [site.ga4]")?;
    let mut call = crate::calls::Call::example(now);
    call.matched.attrs.ga_client_id = Some("1234567890.1234567890".into());
    let body = analytics::ga4_payload(&call, call_event, now).map_err(|e| format!("the sample event: {e:?}"))?;
    let resp = http
        .post(format!("{}/debug/mp/collect", ga4_base_url.trim_end_matches('/')))
        .query(&[("measurement_id", stream.measurement_id.as_str()), ("api_secret", stream.api_secret.as_str())])
        .json(&body)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GA4's validation server did not answer: {}", e.without_url()))?;
    let status = resp.status();
    let answer = json_body(resp).await;
    if !answer.is_object() {
        return Err(format!("GA4 answered HTTP {} without JSON", status.as_u16()));
    }
    let messages: Vec<Validation> = answer["validationMessages"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|v| Validation {
                    field_path: v["fieldPath"].as_str().unwrap_or_default().to_owned(),
                    description: v["description"].as_str().unwrap_or_default().to_owned(),
                    code: v["validationCode"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(CheckReport {
        site: site.id.to_string(),
        measurement_id: stream.measurement_id.clone(),
        valid: status.is_success() && messages.is_empty(),
        messages,
    })
}

/// Why a site cannot be set up or checked.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("no site {0:?} in the configuration")]
    UnknownSite(String),
    #[error("{0}")]
    NotConfigured(String),
}

/// Sets up the GA4 property of `site` in `config` (an HTTP client with the configured timeout).
pub async fn setup_site(config: &Config, site: &str, dry_run: bool, now: Ts) -> Result<SetupReport, NotReady> {
    let site = config.sites.iter().find(|s| s.id.as_str() == site).ok_or_else(|| NotReady::UnknownSite(site.into()))?;
    let ga4 = super::ga4::stream(site).and_then(|g| g.property_id.as_deref().zip(g.service_account.as_ref()));
    let counter = super::metrica::counter(site);
    if ga4.is_none() && counter.is_none() {
        return Err(NotReady::NotConfigured(format!(
            "site {:?}: nothing to set up: give [site.ga4] property_id and service_account_key_file (a service account with the Editor role on the property), or [site.yandex]",
            site.id.as_str()
        )));
    }
    let http = client(config);
    let mut report = match ga4 {
        Some((property, account)) => {
            let target = Target {
                site,
                property,
                account,
                admin_base_url: &config.analytics.ga4_admin_base_url,
                call_event: &config.analytics.ga4_event_name,
            };
            setup(&http, &target, dry_run, now).await
        }
        None => SetupReport::new(site, None, dry_run),
    };
    if let Some(ym) = counter {
        let (outcome, detail) = match super::metrica::has_calls_goal(&http, &config.analytics.yandex_base_url, ym).await
        {
            Ok(true) => (Outcome::Exists, None),
            Ok(false) => {
                (Outcome::Pending, Some("Metrica makes it with the next upload of calls (new_goal_name)".to_owned()))
            }
            Err(why) => (Outcome::Failed, Some(why)),
        };
        report.push(Item { kind: "metrica_goal", name: ym.goal_name.clone(), outcome, detail });
    }
    Ok(report)
}

/// Checks the GA4 settings of `site` in `config` against GA4's validation server.
pub async fn check_site(config: &Config, site: &str, now: Ts) -> Result<Result<CheckReport, String>, NotReady> {
    let site = config.sites.iter().find(|s| s.id.as_str() == site).ok_or_else(|| NotReady::UnknownSite(site.into()))?;
    if super::ga4::stream(site).is_none() {
        return Err(NotReady::NotConfigured(format!("site {:?} has no [site.ga4]", site.id.as_str())));
    }
    let a = &config.analytics;
    Ok(check(&client(config), site, &a.ga4_base_url, &a.ga4_event_name, now).await)
}

/// An HTTP client with the configured request timeout, for the admin API's one-off calls out
/// (setup, check, a webhook's test).
pub fn client(config: &Config) -> reqwest::Client {
    reqwest::Client::builder().timeout(config.analytics.request_timeout).build().unwrap_or_default()
}
