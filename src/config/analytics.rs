//! `[analytics]`: where call events go out (GA4's and Metrica's base URLs, the event name),
//! and how deliveries are retried and how long calls are kept.

use std::time::Duration;

use serde::Deserialize;

use super::env::Env;
use super::env::*;
use super::validate::Validator;

/// Where and how call events go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// `https://www.google-analytics.com` (or the EU host); tests point it at a local collector.
    pub ga4_base_url: String,
    /// The event each matched call sends (default `phone_call`).
    pub ga4_event_name: String,
    /// GA4's Admin API, for `callpool analytics setup` (`https://analyticsadmin.googleapis.com`).
    pub ga4_admin_base_url: String,
    /// Send to GA4's validation endpoint instead and log its messages (nothing reaches reports).
    pub ga4_debug: bool,
    /// `https://api-metrika.yandex.net`.
    pub yandex_base_url: String,
    /// How often each site's Metrica calls are uploaded.
    pub yandex_upload_interval: Duration,
    /// A call the PBX never reports as final is sent this long after it started.
    pub finalize_after: Duration,
    /// Attempts before a job is dead-lettered.
    pub max_attempts: u32,
    /// The first retry waits this long to twice as long; each further one twice that (at most an hour).
    pub retry_base: Duration,
    /// Timeout of one request to GA or Metrica.
    pub request_timeout: Duration,
    /// Calls (with their deliveries) older than this are forgotten; reports reach back this far.
    pub calls_retention: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnalytics {
    ga4_base_url: Option<String>,
    ga4_event_name: Option<String>,
    ga4_admin_base_url: Option<String>,
    ga4_debug: Option<bool>,
    yandex_base_url: Option<String>,
    yandex_upload_interval: Option<String>,
    finalize_after: Option<String>,
    max_attempts: Option<u32>,
    retry_base: Option<String>,
    request_timeout: Option<String>,
    calls_retention: Option<String>,
}

impl Validator {
    pub(super) fn analytics(&mut self, raw: RawAnalytics, env: &dyn Env) -> AnalyticsConfig {
        let mut url = |field: &str, value: Option<String>, default: &str| {
            self.base_url(&format!("[analytics] {field}"), value.unwrap_or_else(|| default.into()))
        };
        let ga4_base_url =
            url("ga4_base_url", env.var(ENV_GA4_BASE_URL).or(raw.ga4_base_url), "https://www.google-analytics.com");
        let ga4_admin_base_url =
            url("ga4_admin_base_url", raw.ga4_admin_base_url, "https://analyticsadmin.googleapis.com");
        let yandex_base_url = url(
            "yandex_base_url",
            env.var(ENV_YANDEX_BASE_URL).or(raw.yandex_base_url),
            "https://api-metrika.yandex.net",
        );
        let ga4_event_name = raw.ga4_event_name.unwrap_or_else(|| "phone_call".into());
        if let Err(why) = crate::analytics::ga4_name_ok(&ga4_event_name) {
            self.fail("[analytics] ga4_event_name", format!("{ga4_event_name:?} {why}"));
        }
        let max_attempts = raw.max_attempts.unwrap_or(12);
        if max_attempts == 0 {
            self.fail("[analytics] max_attempts", "must be at least 1");
        }
        AnalyticsConfig {
            ga4_base_url,
            ga4_event_name,
            ga4_admin_base_url,
            ga4_debug: raw.ga4_debug.unwrap_or(false),
            yandex_base_url,
            yandex_upload_interval: self.duration(
                "[analytics] yandex_upload_interval",
                raw.yandex_upload_interval.as_deref(),
                "10m",
                false,
            ),
            finalize_after: self.duration("[analytics] finalize_after", raw.finalize_after.as_deref(), "1h", true),
            max_attempts,
            retry_base: self.duration("[analytics] retry_base", raw.retry_base.as_deref(), "10s", false),
            request_timeout: self.duration("[analytics] request_timeout", raw.request_timeout.as_deref(), "10s", false),
            calls_retention: self.duration(
                "[analytics] calls_retention",
                raw.calls_retention.as_deref(),
                "400d",
                false,
            ),
        }
    }
}
