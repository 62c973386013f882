//! Bitrix24, `[site.bitrix24]`, through the portal's inbound webhook (scopes `telephony`, `crm`):
//! - the moment a call is first reported (kind `b24_call_start`), `telephony.externalcall.register`
//!   (inbound, the caller's number, the line = the tracking number, `EXTERNAL_CALL_ID` = callpool's
//!   call key, a lead made when the number is unknown), its `CALL_ID` and lead kept as the
//!   delivery's receipt; then (`b24_lead`) that lead gets the visit's source (`crm.lead.update`,
//!   the site's field mapping);
//! - when it ends, or `finalize_after` its start if no final report comes (`b24_call_end`, after
//!   the start), `telephony.externalcall.finish` with the duration, the status code and the
//!   responsible user; a finish Bitrix24 answers "Call is not found" was done before (finishing
//!   removes the open call);
//! - its recording, once the call has ended and the PBX reported one (`b24_record`, after the end),
//!   `telephony.externalCall.attachRecord` with `RECORD_URL` (a repeat replaces the file);
//! - a callback request (`b24_callback`): `crm.lead.add` with the visit's source and
//!   `ORIGINATOR_ID`/`ORIGIN_ID` = callpool/the request's id, looked up first (`crm.lead.list`), so
//!   a retry never makes a second lead.
//!
//! A later job waits for the earlier one of its call without spending attempts and reads what it
//! needs from its receipt; when the earlier one is a dead letter, so is the later one (put back
//! in order, they go). Requests are paced to the portal's limit (2 a second);
//! 503 `QUERY_LIMIT_EXCEEDED`, 429 and 5xx are retried; other refusals are dead letters with
//! Bitrix24's words. Sources: docs/CRM.md.

use std::collections::BTreeMap;

use callpool_pool::Ts;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::crm::{self, Attr, Facts, Mapping};
use super::{
    dead, no_answer, one_by_one, sent_with, skipped, state_of, wait_for_earlier, Ctx, Event, Handler, Outcome,
};
use crate::app::App;
use crate::callback::Callback;
use crate::calls::{Call, CallStatus};
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, JobState, Plan, Planned, Record, Records};

pub struct Bitrix24Calls;
pub struct Bitrix24Callbacks;

pub const START: &str = "b24_call_start";
pub const LEAD: &str = "b24_lead";
pub const END: &str = "b24_call_end";
pub const RECORD: &str = "b24_record";
pub const CALLBACK: &str = "b24_callback";

/// The portal a site's calls go to: `[site.bitrix24]`.
pub struct Portal {
    /// `https://<portal>` (no trailing '/').
    pub url: String,
    /// The inbound webhook's user and code: requests go to `<url>/rest/<user_id>/<token>/<method>`.
    pub user_id: u64,
    pub token: String,
    /// Whose calls they are in Bitrix24 (`USER_ID` of register and finish, `ASSIGNED_BY_ID` of a
    /// callback's lead); the webhook's user by default.
    pub responsible_user_id: u64,
    /// Whether an unknown number's call makes a lead (`CRM_CREATE`).
    pub create_leads: bool,
    /// Whether the responsible user's Bitrix24 shows the call's card (`SHOW`).
    pub show_card: bool,
    /// `CRM_SOURCE` of a call's lead, `SOURCE_ID` of a callback's (`crm.status.list`, `SOURCE`).
    pub call_source: String,
    pub callback_source: String,
    pub mapping: Mapping,
    pub requests_per_second: u32,
}

/// A lead's fields by default (Bitrix24's UTM fields; leads have no tags, so the match kind goes
/// to the source's description).
const DEFAULT_FIELDS: [(&str, Attr); 6] = [
    ("UTM_SOURCE", Attr::Source),
    ("UTM_MEDIUM", Attr::Medium),
    ("UTM_CAMPAIGN", Attr::Campaign),
    ("UTM_TERM", Attr::Term),
    ("UTM_CONTENT", Attr::Content),
    ("SOURCE_DESCRIPTION", Attr::Match),
];

/// Reads `[site.bitrix24]`.
pub struct SiteReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: String,
    user_id: u64,
    token: Option<String>,
    responsible_user_id: Option<u64>,
    create_leads: Option<bool>,
    show_card: Option<bool>,
    call_source: Option<String>,
    callback_source: Option<String>,
    fields: Option<BTreeMap<String, String>>,
    requests_per_second: Option<u32>,
}

/// A lead's field: upper case, digits and '_' (`UTM_SOURCE`, `UF_CRM_1700000000`).
fn field_ok(name: &str) -> Result<(), &'static str> {
    let ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err("a lead field's name in upper case (UTM_SOURCE, UF_CRM_…)")
    }
}

impl Reader for SiteReader {
    fn place(&self) -> Place {
        Place::Site("bitrix24")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: Raw = f.parse()?;
        let url = f.base_url("url", raw.url);
        if url.contains("/rest/") {
            f.fail("url", "the portal's address only (https://example.bitrix24.ru): the webhook's user and code go to user_id and token");
        }
        let (env_name, from_env) = f.owner_var(crate::config::ENV_BITRIX24_TOKEN_PREFIX);
        let token = from_env.or(raw.token).map(|t| t.trim().trim_matches('/').to_owned()).unwrap_or_default();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
            f.fail(
                "token",
                format!(
                    "the inbound webhook's code (letters and digits, from .../rest/<user_id>/<code>/; or {env_name})"
                ),
            );
        }
        let source = |f: &mut Fields<'_>, name: &str, v: Option<String>, default: &str| {
            let v = v.unwrap_or_else(|| default.into());
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                f.fail(name, "a source's STATUS_ID (CALL, CALLBACK, WEB, or one of the portal's own)");
            }
            v
        };
        let call_source = source(f, "call_source", raw.call_source, "CALL");
        let callback_source = source(f, "callback_source", raw.callback_source, "CALLBACK");
        let requests_per_second = raw.requests_per_second.unwrap_or(2);
        if !(1..=5).contains(&requests_per_second) {
            f.fail("requests_per_second", "1 to 5 (Bitrix24 lets 2 a second through, 5 on Enterprise plans)");
        }
        let mapping = Mapping::read(f, raw.fields, None, (&DEFAULT_FIELDS, &[]), field_ok);
        Some(Section::new(
            "bitrix24",
            Portal {
                url,
                user_id: raw.user_id,
                token,
                responsible_user_id: raw.responsible_user_id.unwrap_or(raw.user_id),
                create_leads: raw.create_leads.unwrap_or(true),
                show_card: raw.show_card.unwrap_or(false),
                call_source,
                callback_source,
                mapping,
                requests_per_second,
            },
        ))
    }
}

/// The site's Bitrix24 portal, if it has one.
pub fn portal(site: &SiteConfig) -> Option<&Portal> {
    site.sections.get::<Portal>("bitrix24")
}

impl Handler for Bitrix24Calls {
    fn kinds(&self) -> &'static [&'static str] {
        &[START, LEAD, END, RECORD]
    }

    fn records(&self) -> Records {
        Records::Calls
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&SiteReader)
    }

    fn hurried_when_final(&self, kind: &str) -> bool {
        // The end is due when the call is final, or `finalize_after` its start if no final report
        // comes; the others are due at once.
        kind == END
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let job = |kind, due| Planned { kind, plan: Plan::Due(due) };
        match event {
            Event::CallRecorded { site: Some(site), due, .. } if portal(site).is_some() => vec![job(END, due)],
            Event::CallChanged { call, before, site: Some(site), now } if portal(site).is_some() => {
                let mut out = Vec::new();
                if before.is_none() {
                    out.extend([job(START, now), job(LEAD, now)]);
                }
                // A recording goes once the call has ended: with the end, or when reported after it.
                let was_final = before.is_some_and(|b| b.status.is_final());
                let had_recording = was_final && before.is_some_and(|b| b.recording_url.is_some());
                if call.status.is_final() && call.recording_url.is_some() && !had_recording {
                    out.push(job(RECORD, now));
                }
                out
            }
            _ => Vec::new(),
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        one_by_one(ctx, jobs, move |job| deliver_call(ctx, kind, job))
    }

    fn pace(&self, _app: &App) -> super::Pace {
        super::Pace { batch: 8, ..Default::default() }
    }
}

impl Handler for Bitrix24Callbacks {
    fn kinds(&self) -> &'static [&'static str] {
        &[CALLBACK]
    }

    fn records(&self) -> Records {
        Records::Callbacks
    }

    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        let Event::CallbackRequested { site, now, .. } = event else { return Vec::new() };
        if portal(site).is_none() {
            return Vec::new();
        }
        vec![Planned { kind: CALLBACK, plan: Plan::Due(now) }]
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        one_by_one(ctx, jobs, move |job| async move {
            let Record::Callback(cb) = &job.record else { return skipped("not a callback") };
            let Some(portal) = ctx.config.site(&cb.site).and_then(portal) else {
                return skipped("Bitrix24 is not configured for the site");
            };
            Api { ctx, portal }.callback_lead(cb).await.unwrap_or_else(|o| o)
        })
    }

    fn pace(&self, _app: &App) -> super::Pace {
        super::Pace { batch: 8, ..Default::default() }
    }
}

async fn deliver_call(ctx: &Ctx<'_>, kind: &'static str, job: &Claimed) -> Outcome {
    let Record::Call(call) = &job.record else { return skipped("not a call") };
    let Some(portal) = call.matched.site.as_ref().and_then(|s| ctx.config.site(s)).and_then(portal) else {
        return skipped("Bitrix24 is not configured for the call's site");
    };
    let Some((caller, _)) = crm::customer(call) else { return skipped("the caller's number is hidden") };
    let api = Api { ctx, portal };
    let result = match kind {
        START => match earlier(ctx, END, &job.id).await {
            // Put back after its call was registered and finished (a dead letter re-queued late).
            Earlier::Sent(_) => Ok(skipped("the call was registered and finished before")),
            _ => api.register(call, caller).await.map(|r| sent_with(ctx, r)),
        },
        // Each after the one before it, with the receipt it left.
        LEAD => match earlier(ctx, START, &job.id).await {
            Earlier::Sent(receipt) => match receipt.split_once(" lead ").and_then(|(_, l)| l.parse::<u64>().ok()) {
                Some(lead) => api.tag_lead(call, lead).await.map(|()| sent_with(ctx, format!("lead {lead}"))),
                None => Ok(skipped("Bitrix24 made no lead: the number was known")),
            },
            other => other.outcome(ctx, START),
        },
        END => match earlier(ctx, START, &job.id).await {
            Earlier::Sent(receipt) => {
                let call_id = receipt.split_whitespace().next().unwrap_or_default().to_owned();
                api.finish(call, &call_id).await.map(|()| sent_with(ctx, call_id))
            }
            other => other.outcome(ctx, START),
        },
        _ => match earlier(ctx, END, &job.id).await {
            Earlier::Sent(call_id) => api.attach_record(call, &call_id).await.map(|r| sent_with(ctx, r)),
            other => other.outcome(ctx, END),
        },
    };
    result.unwrap_or_else(|o| o)
}

/// How a call's earlier job stands.
enum Earlier {
    Wait,
    /// Sent, with its receipt.
    Sent(String),
    /// A dead letter: so is the later job (put both back to deliver them).
    Dead,
    /// Skipped, or never planned (the call began before the site had Bitrix24).
    Not,
}

impl Earlier {
    /// A later job's outcome when the earlier one (`kind`) did not leave what it needs.
    fn outcome(self, ctx: &Ctx<'_>, kind: &str) -> Result<Outcome, Outcome> {
        Ok(match self {
            Earlier::Wait => wait_for_earlier(ctx),
            Earlier::Sent(_) | Earlier::Not => skipped(&format!("{kind} did not reach Bitrix24")),
            Earlier::Dead => dead(format!("{kind} of this call is a dead letter: put it back first, then this")),
        })
    }
}

async fn earlier(ctx: &Ctx<'_>, kind: &'static str, id: &str) -> Earlier {
    // One read: still queued (or a store that does not answer) is a wait.
    match state_of(ctx, kind, id).await {
        Err(()) | Ok(Some(JobState::Pending)) => Earlier::Wait,
        Ok(Some(JobState::Sent { receipt: Some(r), .. })) => Earlier::Sent(r),
        Ok(Some(JobState::Dead { .. })) => Earlier::Dead,
        Ok(_) => Earlier::Not,
    }
}

struct Api<'a> {
    ctx: &'a Ctx<'a>,
    portal: &'a Portal,
}

/// What Bitrix24 answered a method with.
enum Answer {
    Result(Value),
    /// An error Bitrix24 gave as final (HTTP 400, 401, 403, 404): its words.
    Refused(String),
}

impl Api<'_> {
    /// Calls `method` with a JSON body.
    async fn call(&self, method: &str, body: Value) -> Result<Answer, Outcome> {
        let p = self.portal;
        crm::pace(&p.url, p.requests_per_second).await;
        let url = format!("{}/rest/{}/{}/{method}.json", p.url, p.user_id, p.token);
        let resp = self.ctx.http.post(url).json(&body).send().await.map_err(|e| no_answer("Bitrix24", &e))?;
        let status = resp.status();
        if status.is_success() {
            let v = crm::json(resp).await.map_err(|e| Outcome::Again(format!("Bitrix24's {method}: {e}")))?;
            return match v.get("result") {
                Some(r) => Ok(Answer::Result(r.clone())),
                None => Ok(Answer::Refused(crm::clip(&error_words(&v)))),
            };
        }
        let text = crm::error_text(resp).await;
        let words = serde_json::from_str::<Value>(&text).map_or(text, |v| crm::clip(&error_words(&v)));
        let why = format!("Bitrix24 answered {method} with HTTP {status}: {words}");
        if status.is_server_error() || status.as_u16() == 429 {
            // 503 QUERY_LIMIT_EXCEEDED (the portal's rate), 429 OPERATION_TIME_LIMIT, 500.
            return Err(Outcome::Again(why));
        }
        if status.as_u16() == 401 || status.as_u16() == 403 {
            // The webhook's code is wrong or gone, or it lacks a scope: every job would fail alike.
            return Err(dead(why));
        }
        Ok(Answer::Refused(why))
    }

    /// Registers the call: its `CALL_ID` for the receipt, with the lead Bitrix24 made (`<CALL_ID>
    /// lead <id>`).
    async fn register(&self, call: &Call, caller: &str) -> Result<String, Outcome> {
        let p = self.portal;
        let callback = call.matched.kind == crate::calls::MatchKind::Callback;
        let mut body = json!({
            "USER_ID": p.responsible_user_id,
            "PHONE_NUMBER": caller,
            // 2 inbound; 4 a callback (the PBX dialled the visitor).
            "TYPE": if callback { 4 } else { 2 },
            "CALL_START_DATE": iso(call.started_at),
            // A callback's lead is made with its request (b24_callback), not by its call.
            "CRM_CREATE": u8::from(p.create_leads && !callback),
            "CRM_SOURCE": p.call_source,
            "SHOW": u8::from(p.show_card),
            "EXTERNAL_CALL_ID": call.key.to_string(),
        });
        // On a callback's call the line is not one of the site's numbers.
        if !callback {
            body["LINE_NUMBER"] = call.called.as_str().into();
        }
        let r = match self.call("telephony.externalcall.register", body).await? {
            Answer::Result(r) => r,
            Answer::Refused(why) => return Err(dead(why)),
        };
        let Some(call_id) = r["CALL_ID"].as_str().filter(|s| !s.is_empty() && !s.contains(char::is_whitespace)) else {
            return Err(dead(format!("Bitrix24 registered no CALL_ID: {}", crm::clip(&r.to_string()))));
        };
        let lead = r["CRM_CREATED_LEAD"].as_u64().or_else(|| {
            let entities = r["CRM_CREATED_ENTITIES"].as_array()?;
            entities.iter().find(|e| e["ENTITY_TYPE"] == "LEAD").and_then(|e| id_of(&e["ENTITY_ID"]))
        });
        Ok(match lead {
            Some(lead) => format!("{call_id} lead {lead}"),
            None => call_id.to_owned(),
        })
    }

    /// Gives the lead the call made the visit's source (the site's mapping).
    async fn tag_lead(&self, call: &Call, lead: u64) -> Result<(), Outcome> {
        let fields: serde_json::Map<String, Value> = self
            .portal
            .mapping
            .fields(&Facts::of_call(call))
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.into()))
            .collect();
        if fields.is_empty() {
            return Ok(());
        }
        match self.call("crm.lead.update", json!({"id": lead, "fields": fields})).await? {
            Answer::Result(_) => Ok(()),
            Answer::Refused(why) => Err(dead(format!("lead {lead}: {why}"))),
        }
    }

    async fn finish(&self, call: &Call, call_id: &str) -> Result<(), Outcome> {
        let body = json!({
            "CALL_ID": call_id,
            "USER_ID": self.portal.responsible_user_id,
            "DURATION": call.duration.unwrap_or(0),
            "STATUS_CODE": status_code(call.status),
        });
        match self.call("telephony.externalcall.finish", body).await? {
            Answer::Result(_) => Ok(()),
            // Finishing removes the open call: a repeat (its answer lost, or a node that died after
            // it) finds none.
            Answer::Refused(why) if why.contains("Call is not found") => Ok(()),
            Answer::Refused(why) => Err(dead(why)),
        }
    }

    async fn attach_record(&self, call: &Call, call_id: &str) -> Result<String, Outcome> {
        let Some(url) = call.recording_url.as_deref().filter(|u| u.starts_with("http")) else {
            return Err(skipped("the PBX's recording is not at an http(s) address Bitrix24 can fetch"));
        };
        let name = format!("{}.mp3", call.key.call_id().replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"));
        let body = json!({"CALL_ID": call_id, "FILENAME": name, "RECORD_URL": url});
        match self.call("telephony.externalCall.attachRecord", body).await? {
            Answer::Result(r) => Ok(r["FILE_ID"].as_u64().map_or_else(|| "attached".into(), |id| format!("file {id}"))),
            // Bitrix24 could not download it ("Server returns HTTP error code 404"): a PBX often
            // has the file a while after the call.
            Answer::Refused(why) if why.contains("HTTP error") => Err(Outcome::Again(why)),
            Answer::Refused(why) => Err(dead(why)),
        }
    }

    /// A callback request's lead, made once: looked up by its origin id first.
    async fn callback_lead(&self, cb: &Callback) -> Result<Outcome, Outcome> {
        let p = self.portal;
        let origin = cb.id.to_string();
        let find = json!({
            "filter": {"=ORIGINATOR_ID": "callpool", "=ORIGIN_ID": origin},
            "select": ["ID", "ORIGINATOR_ID", "ORIGIN_ID"],
        });
        let found = match self.call("crm.lead.list", find).await? {
            // The filter's rows are checked too: a lead is only this request's if it says so.
            Answer::Result(r) => r
                .as_array()
                .and_then(|rows| {
                    rows.iter().find(|l| l["ORIGINATOR_ID"] == "callpool" && l["ORIGIN_ID"] == origin.as_str())
                })
                .and_then(|l| id_of(&l["ID"])),
            Answer::Refused(why) => return Err(dead(why)),
        };
        if let Some(id) = found {
            return Ok(sent_with(self.ctx, format!("lead {id}")));
        }
        let mut fields: serde_json::Map<String, Value> =
            p.mapping.fields(&Facts::of_callback(cb)).into_iter().map(|(k, v)| (k.to_owned(), v.into())).collect();
        let number = cb.number.as_str();
        fields.insert("TITLE".into(), format!("Callback request: {number}").into());
        fields.insert("PHONE".into(), json!([{"VALUE": number, "VALUE_TYPE": "WORK"}]));
        fields.insert("SOURCE_ID".into(), p.callback_source.clone().into());
        fields.insert("ASSIGNED_BY_ID".into(), p.responsible_user_id.into());
        fields.insert("ORIGINATOR_ID".into(), "callpool".into());
        fields.insert("ORIGIN_ID".into(), origin.into());
        let add = json!({"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}});
        match self.call("crm.lead.add", add).await? {
            Answer::Result(r) => Ok(sent_with(self.ctx, format!("lead {}", id_of(&r).unwrap_or_default()))),
            Answer::Refused(why) => Err(dead(why)),
        }
    }
}

/// An id Bitrix24 gives as a number or as a string of digits.
fn id_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Bitrix24's error body in a line (`error` is often empty; `error_description` says it).
fn error_words(v: &Value) -> String {
    let code = v["error"].as_str().unwrap_or_default();
    let text = v["error_description"].as_str().unwrap_or_default();
    match (code.is_empty(), text.is_empty()) {
        (true, true) => v.to_string(),
        (false, true) => code.to_owned(),
        (true, false) => text.to_owned(),
        (false, false) => format!("{code}: {text}"),
    }
}

/// `STATUS_CODE` of finish: 200 answered, 486 busy, 304 missed (and anything else unanswered).
fn status_code(status: CallStatus) -> &'static str {
    match status {
        CallStatus::Busy => "486",
        s if s.answered() => "200",
        _ => "304",
    }
}

/// ISO 8601 with its offset, as Bitrix24 reads `CALL_START_DATE`.
fn iso(t: Ts) -> Option<String> {
    t.to_chrono().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_and_dates_are_bitrix24s() {
        assert_eq!(status_code(CallStatus::Completed), "200");
        assert_eq!(status_code(CallStatus::Busy), "486");
        assert_eq!(status_code(CallStatus::Missed), "304");
        assert_eq!(iso(Ts::from_millis(1_767_225_600_000)).as_deref(), Some("2026-01-01T00:00:00+00:00"));
        assert_eq!(error_words(&json!({"error": "", "error_description": "Access denied."})), "Access denied.");
        assert_eq!(id_of(&json!("42")), Some(42));
    }
}
