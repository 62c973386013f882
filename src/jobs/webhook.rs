//! The team's own webhook (`[site.callback.notify]`): a signed JSON POST (`Callpool-Signature`,
//! like callpool's PBX webhook) for each callback request (kind `hook_request`,
//! `callback.requested`) and each missed callback (kind `hook_missed`, `callback.missed`).

use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::json;

use super::{http_outcome, no_answer, plan_notice, skipped, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::callback::Callback;
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, Planned, Record, Records};

pub struct Webhook;

/// A site's team webhook: `[site.callback.notify]`.
pub struct Hook {
    pub url: String,
    pub secret: String,
}

/// Reads `[site.callback.notify]`.
pub struct CallbackReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotify {
    url: String,
    secret: String,
}

impl Reader for CallbackReader {
    fn place(&self) -> Place {
        Place::Callback("notify")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let n: RawNotify = f.parse()?;
        let url = f.url("url", n.url);
        let secret = f.secret("secret", n.secret);
        Some(Section::new("notify", Hook { url, secret }))
    }
}

/// The site's team webhook, if its callback form has one.
fn hook(site: &SiteConfig) -> Option<&Hook> {
    site.callback.as_ref()?.sections.get::<Hook>("notify")
}

const REQUEST: &str = "hook_request";
const MISSED: &str = "hook_missed";

impl Handler for Webhook {
    fn kinds(&self) -> &'static [&'static str] {
        &[REQUEST, MISSED]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&CallbackReader)
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        plan_notice(event, [REQUEST, MISSED], |s| hook(s).is_some())
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(move |job| async move {
            let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
            let app = ctx.app;
            let Some(hook) = ctx.config.site(&cb.site).and_then(hook) else {
                return skipped("no longer configured for the site");
            };
            let event = if kind == MISSED { "callback.missed" } else { "callback.requested" };
            let body =
                serde_json::to_vec(&json!({ "event": event, "callback": view(cb) })).expect("JSON values serialize");
            let now = app.clock.now();
            let sent = ctx
                .http
                .post(&hook.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(
                    crate::pbx::signature::SIGNATURE_HEADER,
                    crate::pbx::signature::sign(&hook.secret, now.as_millis().div_euclid(1000), &body),
                )
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) => http_outcome(resp.status(), "the team's webhook", now),
                Err(e) => no_answer("the team's webhook", &e),
            }
        }))
        .boxed()
    }
}

/// The callback as the webhook carries it.
fn view(cb: &Callback) -> serde_json::Value {
    json!({
        "id": cb.id.as_str(),
        "site": cb.site.as_str(),
        "number": cb.number.as_str(),
        "status": cb.status.as_str(),
        "requested_at": cb.requested_at.to_chrono().map(|t| t.to_rfc3339()),
        "due_at": cb.due_at.to_chrono().map(|t| t.to_rfc3339()),
        "attempts": cb.attempts,
        "error": cb.error,
        "visitor": cb.visitor.as_ref().map(|v| v.as_str()),
        "session": cb.attrs,
        "call_id": cb.call.as_ref().map(|c| c.call_id()),
    })
}
