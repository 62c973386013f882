//! The site's own webhooks (`[[site.webhooks]]`): every call and callback as signed JSON events,
//! for whatever the business runs (Zapier, Make, n8n, a CRM of its own): `call.started`,
//! `call.answered`, `call.completed` or `call.missed`, `callback.requested` and
//! `callback.finished`. Each event is one job (kinds `wh_*`) delivered to every URL of the site
//! that takes it, signed as callpool's own PBX webhook is (`Callpool-Signature`, one `v1` per
//! secret while they rotate), with a delivery id that stays the same across retries; a call's
//! events go out in order (a later one waits, without spending attempts, until the earlier ones
//! are done).

use callpool_pool::Ts;
use futures_util::future::{join_all, BoxFuture};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{earlier_pending, no_answer, skipped, wait_for_earlier, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::callback::Callback;
use crate::calls::{Call, Caller};
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, JobState, Plan, Planned, Record, Records};

/// What a webhook is told of a caller's (or a callback visitor's) number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shown {
    /// In full (the business's own system: the default).
    #[default]
    Full,
    /// `+7********67`.
    Masked,
    /// Left out.
    None,
}

impl Shown {
    fn number(self, n: &str) -> Option<String> {
        match self {
            Shown::Full => Some(n.to_owned()),
            Shown::Masked => Some(Caller::parse(n).map_or_else(|| "*".repeat(n.len()), |c| c.masked())),
            Shown::None => None,
        }
    }
}

/// One URL of a site's webhooks.
pub struct Endpoint {
    pub url: String,
    /// Each signs the body (`v1=` per secret): the receiver may check with either while rotating.
    pub secrets: Vec<String>,
    pub caller: Shown,
    /// The event types it takes (all by default).
    pub events: Vec<String>,
}

/// A site's webhooks: `[[site.webhooks]]`.
pub struct Endpoints(pub Vec<Endpoint>);

/// Every event type, in a call's or a callback's order.
pub const EVENTS: [&str; 6] =
    ["call.started", "call.answered", "call.completed", "call.missed", "callback.requested", "callback.finished"];
/// The most URLs a site may have.
const MAX_ENDPOINTS: usize = 5;

/// Reads `[[site.webhooks]]`.
pub struct SiteReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    url: String,
    secrets: Vec<String>,
    #[serde(default)]
    caller: Shown,
    events: Option<Vec<String>>,
}

impl Reader for SiteReader {
    fn place(&self) -> Place {
        Place::Site("webhooks")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: Vec<RawEndpoint> = f.parse()?;
        if raw.is_empty() || raw.len() > MAX_ENDPOINTS {
            f.fail("url", format!("give 1 to {MAX_ENDPOINTS} [[site.webhooks]]"));
            return None;
        }
        let mut out = Vec::new();
        for (i, r) in raw.into_iter().enumerate() {
            let url = f.url(&format!("[{i}] url"), r.url);
            if r.secrets.is_empty() || r.secrets.len() > 4 {
                f.fail(&format!("[{i}] secrets"), "list 1 to 4 secrets (two while rotating)");
            }
            let secrets = r.secrets.into_iter().map(|s| f.secret(&format!("[{i}] secrets"), s)).collect();
            let events = r.events.unwrap_or_else(|| EVENTS.iter().map(|e| (*e).to_owned()).collect());
            if events.is_empty() {
                f.fail(&format!("[{i}] events"), "list at least one event (or leave it out: all of them)");
            }
            for e in events.iter().filter(|e| !EVENTS.contains(&e.as_str())) {
                f.fail(&format!("[{i}] events"), format!("{e:?} is not one of {}", EVENTS.join(", ")));
            }
            out.push(Endpoint { url, secrets, caller: r.caller, events });
        }
        Some(Section::new("webhooks", Endpoints(out)))
    }
}

/// The site's webhooks, if it has any.
pub fn endpoints(site: &SiteConfig) -> Option<&Endpoints> {
    site.sections.get::<Endpoints>("webhooks")
}

/// A call's events and a callback's.
pub struct CallHooks;
pub struct CallbackHooks;

pub const STARTED: &str = "wh_call_started";
pub const ANSWERED: &str = "wh_call_answered";
/// `call.completed` or `call.missed`, by the call's final status.
pub const ENDED: &str = "wh_call_ended";
pub const CB_REQUESTED: &str = "wh_cb_requested";
pub const CB_FINISHED: &str = "wh_cb_finished";

fn answered(c: &Call) -> bool {
    c.status.answered() || c.answered_at.is_some()
}

impl Handler for CallHooks {
    fn kinds(&self) -> &'static [&'static str] {
        &[STARTED, ANSWERED, ENDED]
    }

    fn records(&self) -> Records {
        Records::Calls
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&SiteReader)
    }

    fn hurried_when_final(&self, _kind: &str) -> bool {
        // Due at once anyway; hurrying would cut a backing-off retry short.
        false
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let Event::CallChanged { call, before, site: Some(site), now } = event else { return Vec::new() };
        if endpoints(site).is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let due = |kind| Planned { kind, plan: Plan::Due(now) };
        if before.is_none() {
            out.push(due(STARTED));
        }
        // An answer time a PBX reports after the call's end would come after the final event:
        // the final event says whether the call was answered.
        if answered(call) && !before.is_some_and(|b| answered(b) || b.status.is_final()) {
            out.push(due(ANSWERED));
        }
        if call.status.is_final() && !before.is_some_and(|b| b.status.is_final()) {
            out.push(due(ENDED));
        }
        out
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(move |job| async move {
            let Record::Call(call) = &job.record else { return skipped("not a call") };
            // The call's earlier events first.
            let earlier: &[&str] = match kind {
                ANSWERED => &[STARTED],
                ENDED => &[STARTED, ANSWERED],
                _ => &[],
            };
            if earlier_pending(ctx, earlier, &job.id).await {
                return wait_for_earlier(ctx);
            }
            let Some(site) = call.matched.site.as_ref().and_then(|s| ctx.config.site(s)) else {
                return skipped("the call's site is no longer configured");
            };
            let Some(hooks) = endpoints(site) else { return skipped("no webhooks are configured for the site") };
            let event = match kind {
                STARTED => "call.started",
                ANSWERED => "call.answered",
                _ if call.status.answered() => "call.completed",
                _ => "call.missed",
            };
            deliver(ctx, hooks, event, &format!("{kind}|{}", job.id), |shown, e| call_body(call, site, shown, e)).await
        }))
        .boxed()
    }
}

impl Handler for CallbackHooks {
    fn kinds(&self) -> &'static [&'static str] {
        &[CB_REQUESTED, CB_FINISHED]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        plan_callback(event)
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        join_all(jobs.iter().map(move |job| async move {
            let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
            if kind == CB_FINISHED && earlier_pending(ctx, &[CB_REQUESTED], &job.id).await {
                return wait_for_earlier(ctx);
            }
            let Some(site) = ctx.config.site(&cb.site) else { return skipped("the site is no longer configured") };
            let Some(hooks) = endpoints(site) else { return skipped("no webhooks are configured for the site") };
            let event = if kind == CB_REQUESTED { "callback.requested" } else { "callback.finished" };
            deliver(ctx, hooks, event, &format!("{kind}|{}", job.id), |shown, e| callback_body(cb, shown, e)).await
        }))
        .boxed()
    }
}

/// A callback's event, for a site with webhooks.
fn plan_callback(event: Event<'_>) -> Vec<Planned> {
    let (site, kind, now) = match event {
        Event::CallbackRequested { site, now, .. } => (site, CB_REQUESTED, now),
        Event::CallbackFinished { site, now, .. } => (site, CB_FINISHED, now),
        _ => return Vec::new(),
    };
    if endpoints(site).is_none() {
        return Vec::new();
    }
    vec![Planned { kind, plan: Plan::Due(now) }]
}

/// Posts `event` to every endpoint that takes it; sent when all took it, else tried again (a
/// receiver dedupes by the delivery id, which stays the same).
async fn deliver(
    ctx: &Ctx<'_>,
    hooks: &Endpoints,
    event: &str,
    delivery: &str,
    body: impl Fn(Shown, Envelope) -> Value,
) -> Outcome {
    let now = ctx.app.clock.now();
    let mut failed = Vec::new();
    let mut refused = Vec::new();
    let mut sent_any = false;
    for (i, hook) in hooks.0.iter().enumerate().filter(|(_, h)| h.events.iter().any(|e| e == event)) {
        let who = format!("webhook #{} ({})", i + 1, host(&hook.url));
        // Signed at the moment it is sent (the URLs before it may have taken a while).
        match post(ctx.http, hook, event, delivery, ctx.app.clock.now(), &body).await {
            Ok(s) if s.is_success() => sent_any = true,
            Ok(s) if s.is_server_error() || s.as_u16() == 429 => failed.push(format!("{who} answered HTTP {s}")),
            Ok(s) => refused.push(format!("{who} refused it: HTTP {s}")),
            Err(e) => {
                if let Outcome::Again(why) = no_answer(&who, &e) {
                    failed.push(why);
                }
            }
        }
    }
    if !failed.is_empty() {
        Outcome::Again(failed.into_iter().chain(refused).collect::<Vec<_>>().join("; "))
    } else if !refused.is_empty() {
        Outcome::Done(JobState::Dead { error: refused.join("; ") })
    } else if sent_any {
        Outcome::Done(JobState::sent(now))
    } else {
        skipped("no webhook of the site takes this event")
    }
}

/// Posts one event to one endpoint, signed; the status it answered.
async fn post(
    http: &reqwest::Client,
    hook: &Endpoint,
    event: &str,
    delivery: &str,
    now: Ts,
    body: &impl Fn(Shown, Envelope) -> Value,
) -> Result<reqwest::StatusCode, reqwest::Error> {
    let envelope = Envelope { id: delivery.to_owned(), kind: event.to_owned(), created_at: rfc3339(now) };
    let bytes = serde_json::to_vec(&body(hook.caller, envelope)).expect("JSON values serialize");
    let t = now.as_millis().div_euclid(1000);
    let signature = hook
        .secrets
        .iter()
        .map(|s| crate::pbx::signature::sign(s, t, &bytes))
        .map(|h| h.split_once(",v1=").map(|(_, v)| format!("v1={v}")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",");
    let resp = http
        .post(&hook.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(crate::pbx::signature::SIGNATURE_HEADER, format!("t={t},{signature}"))
        .header("Callpool-Delivery", delivery)
        .header("Callpool-Event", event)
        .body(bytes)
        .send()
        .await?;
    Ok(resp.status())
}

/// How one URL took a sample event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TestDelivery {
    /// The URL's host (its path or query may carry a token).
    pub host: String,
    /// Its HTTP answer, or null when none came.
    pub status: Option<u16>,
    /// Whether it took it (2xx).
    pub taken: bool,
    /// Why there was no answer.
    pub error: Option<String>,
}

/// Sends a sample `call.completed` (a made-up call, delivery id `test|<time>`) to each of the
/// site's URLs at once, and says how each answered. `None`: the site has no webhooks.
pub async fn send_test(http: &reqwest::Client, site: &SiteConfig, now: Ts) -> Option<Vec<TestDelivery>> {
    let hooks = endpoints(site)?;
    let mut call = Call::example(now);
    call.matched.site = Some(site.id.clone());
    call.caller = Caller::parse("+79990000000");
    let delivery = format!("test|{}", now.as_millis());
    let body = |shown, e| call_body(&call, site, shown, e);
    let mut out = Vec::new();
    for hook in &hooks.0 {
        let sent = post(http, hook, "call.completed", &delivery, now, &body).await;
        out.push(match sent {
            Ok(s) => TestDelivery {
                host: host(&hook.url).to_owned(),
                status: Some(s.as_u16()),
                taken: s.is_success(),
                error: None,
            },
            Err(e) => TestDelivery {
                host: host(&hook.url).to_owned(),
                status: None,
                taken: false,
                error: Some(super::without_url(&e)),
            },
        });
    }
    Some(out)
}

/// A URL's host, for errors (its path or query may carry a token).
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Without credentials (user:password@).
    authority.rsplit('@').next().unwrap_or(authority)
}

fn rfc3339(t: Ts) -> Option<String> {
    t.to_chrono().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What every event says of itself.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Envelope {
    /// The delivery id: the same on every retry of this event (dedupe by it).
    pub id: String,
    /// `call.started`, `call.answered`, `call.completed`, `call.missed`, `callback.requested` or
    /// `callback.finished`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was sent (RFC 3339, UTC).
    pub created_at: Option<String>,
}

/// The visit a call or a callback is attributed to.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Session {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
    pub landing_page: Option<String>,
    pub referrer: Option<String>,
    pub gclid: Option<String>,
    pub yclid: Option<String>,
    pub ga_client_id: Option<String>,
    pub ym_client_id: Option<String>,
}

impl Session {
    fn of(a: &callpool_pool::SessionAttrs) -> Session {
        Session {
            source: a.utm_source.clone(),
            medium: a.utm_medium.clone(),
            campaign: a.utm_campaign.clone(),
            term: a.utm_term.clone(),
            content: a.utm_content.clone(),
            landing_page: a.landing_page.clone(),
            referrer: a.referrer.clone(),
            gclid: a.gclid.clone(),
            yclid: a.yclid.clone(),
            ga_client_id: a.ga_client_id.clone(),
            ym_client_id: a.ym_uid.clone(),
        }
    }
}

/// A call event's body (`call.*`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallEvent {
    #[serde(flatten)]
    pub event: Envelope,
    pub site: String,
    pub call: CallFacts,
    #[serde(rename = "match")]
    pub matched: MatchFacts,
    pub session: Session,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallFacts {
    /// The `[[pbx]]` that reported it, and its id for the call.
    pub pbx: String,
    pub id: String,
    /// The number dialled: one of the site's; on a callback's call the visitor's, shown as
    /// `caller` is.
    pub called: Option<String>,
    /// In full, masked (`+7********67`) or absent, as the URL's `caller` says.
    pub caller: Option<String>,
    /// `ringing`, `answered`, `completed`, `missed`, `busy` or `failed`.
    pub status: String,
    pub started_at: Option<String>,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    /// Talk time, seconds.
    pub duration: Option<u32>,
    pub first_time_caller: bool,
    /// The recording's path on callpool (`/v1/reports/<site>/recordings/<pbx>:<id>`, with the
    /// site's report or admin token), when the PBX reported one.
    pub recording: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MatchFacts {
    /// How the call was tied to a visit (`active`, `recent`, `repeat_caller`, `callback`,
    /// `default_before`, `default_after`, `static`, `unmatched`).
    pub kind: String,
    pub number_kind: String,
    /// Whether it is attributed to a visit (the first four kinds).
    pub tracked: bool,
    pub visitor: Option<String>,
}

/// A callback event's body (`callback.*`).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallbackEvent {
    #[serde(flatten)]
    pub event: Envelope,
    pub site: String,
    pub callback: CallbackFacts,
    pub session: Session,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CallbackFacts {
    pub id: String,
    /// `scheduled`, `accepted`, `retrying`, `calling`, `connected`, `completed`, `missed` or `failed`.
    pub status: String,
    /// The visitor's number, as the URL's `caller` says.
    pub number: Option<String>,
    pub requested_at: Option<String>,
    pub due_at: Option<String>,
    pub attempts: u32,
    /// The PBX's id of the callback's call, once reported.
    pub call_id: Option<String>,
    /// The operator who answered, when operators were rung in turn.
    pub answered_by: Option<String>,
    pub visitor: Option<String>,
}

/// A call's event (`caller` as the endpoint takes it).
pub fn call_body(call: &Call, site: &SiteConfig, shown: Shown, event: Envelope) -> Value {
    let m = &call.matched;
    // On a callback's call the PBX dialled the visitor: `called` is theirs (see docs/PROTOCOL.md).
    let called = if m.kind == crate::calls::MatchKind::Callback {
        shown.number(call.called.as_str())
    } else {
        Some(call.called.to_string())
    };
    let body = CallEvent {
        event,
        site: site.id.to_string(),
        call: CallFacts {
            pbx: call.key.pbx().to_owned(),
            id: call.key.call_id().to_owned(),
            called,
            caller: call.caller.as_ref().and_then(|c| shown.number(c.as_str())),
            status: call.status.as_str().to_owned(),
            started_at: rfc3339(call.started_at),
            answered_at: call.answered_at.and_then(rfc3339),
            ended_at: call.ended_at.and_then(rfc3339),
            duration: call.duration,
            first_time_caller: call.first_time_caller,
            recording: call.recording_url.as_ref().map(|_| crate::reports::recording_path(&site.id, &call.key)),
        },
        matched: MatchFacts {
            kind: m.kind.as_str().to_owned(),
            number_kind: m.number_kind.as_str().to_owned(),
            tracked: m.kind.is_tracked(),
            visitor: m.visitor.as_ref().map(ToString::to_string),
        },
        session: Session::of(&m.attrs),
    };
    serde_json::to_value(body).expect("events serialize")
}

/// A callback's event.
pub fn callback_body(cb: &Callback, shown: Shown, event: Envelope) -> Value {
    let body = CallbackEvent {
        event,
        site: cb.site.to_string(),
        callback: CallbackFacts {
            id: cb.id.to_string(),
            status: cb.status.as_str().to_owned(),
            number: shown.number(cb.number.as_str()),
            requested_at: rfc3339(cb.requested_at),
            due_at: rfc3339(cb.due_at),
            attempts: cb.attempts,
            call_id: cb.call.as_ref().map(|c| c.call_id().to_owned()),
            answered_by: cb.answered_by.clone(),
            visitor: cb.visitor.as_ref().map(ToString::to_string),
        },
        session: Session::of(&cb.attrs),
    };
    serde_json::to_value(body).expect("events serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hooks: &str) -> crate::config::Config {
        let text = format!(
            r#"
[[site]]
id = "shop"
key = "shop-public-key"
allowed_origins = ["https://shop.example"]
default_before = "+74951234567"
default_after = "+74951234568"
numbers = ["+74951230001"]
{hooks}
"#
        );
        crate::config::Config::parse(&text, "test.toml", &std::collections::HashMap::new())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A callback's events: planned only for a site with webhooks; its number as the URL says.
    #[test]
    fn a_callbacks_events_follow_the_sites_webhooks() {
        let with = config("[[site.webhooks]]\nurl = \"https://crm.example/h\"\nsecrets = [\"hook-secret-0123456789\"]\ncaller = \"masked\"");
        let without = config("");
        let cb = crate::callback::example("+79161234567", Ts::from_millis(1_767_225_600_000));
        let now = cb.requested_at;
        let plan = |c: &crate::config::Config, finished: bool| {
            let site = &c.sites[0];
            let event = if finished {
                Event::CallbackFinished { callback: &cb, site, now }
            } else {
                Event::CallbackRequested { callback: &cb, site, due: now, now }
            };
            plan_callback(event).into_iter().map(|p| p.kind).collect::<Vec<_>>()
        };
        assert_eq!(plan(&with, false), [CB_REQUESTED]);
        assert_eq!(plan(&with, true), [CB_FINISHED]);
        assert!(plan(&without, true).is_empty());
        let hooks = endpoints(&with.sites[0]).unwrap();
        let envelope = Envelope { id: "x".into(), kind: "callback.requested".into(), created_at: None };
        let body = callback_body(&cb, hooks.0[0].caller, envelope);
        assert_eq!(body["callback"]["number"], "+7********67");
        assert_eq!((body["type"].as_str(), body["site"].as_str()), (Some("callback.requested"), Some("shop")));
        // A short secret and an unknown event are refused, each named.
        let text =
            "[[site.webhooks]]\nurl = \"https://crm.example/h\"\nsecrets = [\"short\"]\nevents = [\"call.ringing\"]";
        let site = "[[site]]\nid = \"shop\"\nkey = \"shop-public-key\"\nallowed_origins = [\"https://shop.example\"]\ndefault_before = \"+74951234567\"\ndefault_after = \"+74951234568\"\nnumbers = [\"+74951230001\"]";
        let e = crate::config::Config::parse(&format!("{site}\n{text}"), "t.toml", &std::collections::HashMap::new())
            .unwrap_err()
            .problems
            .join("\n");
        assert!(e.contains("[0] secrets: must be at least 16 characters"), "{e}");
        assert!(e.contains("\"call.ringing\" is not one of"), "{e}");
    }
}
