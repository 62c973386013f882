//! amoCRM (Kommo outside Russia), `[site.amocrm]`: every call of the site goes to the account
//! when it ends (kind `amo_call`). A caller amoCRM knows gets the call logged on the card that has
//! the number (`POST /api/v4/calls`, `uniq` = callpool's call key); for an unknown one amoCRM
//! answers "Entity not found", and the call becomes an incoming lead in "Unsorted"
//! (`POST /api/v4/leads/unsorted/sip`, `source_uid` = the call key) with the visit's source in
//! the lead's fields and tags. Before making one, "Unsorted" is looked through for the call key,
//! so a retry after a lost answer never makes a second lead (and once a manager accepted the lead,
//! its contact has the number: the call is logged on it); a caller whose earlier lead still waits
//! there gets the call as a note on that lead. Due when the call is final, or `finalize_after`
//! its start if no final report comes. Requests are paced to amoCRM's limit (7 a second
//! per integration); a 429 or 5xx is retried; a refusal is a dead letter with amoCRM's words.
//! Sources: docs/CRM.md.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{json, Value};

use super::crm::{self, Attr, Facts, Mapping};
use super::{dead, no_answer, one_by_one, sent_with, skipped, Ctx, Event, Handler, Outcome};
use crate::app::App;
use crate::calls::{Call, CallStatus};
use crate::config::{Fields, Place, Reader, Section, SiteConfig};
use crate::store::jobs::{Claimed, Plan, Planned, Record, Records};

pub struct AmoCrm;

/// A call, when it has ended.
pub const CALL: &str = "amo_call";

/// The account a site's calls go to: `[site.amocrm]`.
pub struct Account {
    /// `https://<subdomain>.amocrm.ru` (or `.kommo.com`), without a trailing '/'.
    pub base_url: String,
    /// A long-lived token (or an OAuth access token kept fresh outside callpool).
    pub token: String,
    /// Who the calls and leads are assigned to (the account's default when left out).
    pub responsible_user_id: Option<u64>,
    /// The pipeline whose "Unsorted" takes the leads (the main one when left out).
    pub pipeline_id: Option<u64>,
    /// Whether an unknown caller becomes a lead (`unknown_callers = "lead"`, the default) or is
    /// left out (`"ignore"`).
    pub leads: bool,
    /// The calls' `source` and the leads' `source_name` (default "callpool").
    pub source: String,
    pub mapping: Mapping,
    /// Requests a second this node sends the account (amoCRM allows 7 per integration).
    pub requests_per_second: u32,
}

/// The fields a lead gets by default: amoCRM's tracking-data fields, by their codes.
const DEFAULT_FIELDS: [(&str, Attr); 5] = [
    ("UTM_SOURCE", Attr::Source),
    ("UTM_MEDIUM", Attr::Medium),
    ("UTM_CAMPAIGN", Attr::Campaign),
    ("UTM_TERM", Attr::Term),
    ("UTM_CONTENT", Attr::Content),
];

/// Reads `[site.amocrm]`.
pub struct SiteReader;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    subdomain: Option<String>,
    base_url: Option<String>,
    token: Option<String>,
    responsible_user_id: Option<u64>,
    pipeline_id: Option<u64>,
    #[serde(default)]
    unknown_callers: Unknown,
    source: Option<String>,
    fields: Option<BTreeMap<String, String>>,
    tags: Option<Vec<String>>,
    requests_per_second: Option<u32>,
}

#[derive(Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Unknown {
    #[default]
    Lead,
    Ignore,
}

/// A lead's field: one of amoCRM's field codes (upper case) or a custom field's numeric id.
fn field_ok(name: &str) -> Result<(), &'static str> {
    let code = !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if code {
        Ok(())
    } else {
        Err("a field's code in upper case (UTM_SOURCE) or a custom field's numeric id")
    }
}

impl Reader for SiteReader {
    fn place(&self) -> Place {
        Place::Site("amocrm")
    }

    fn read(&self, f: &mut Fields<'_>) -> Option<Section> {
        let raw: Raw = f.parse()?;
        let base_url = match (raw.subdomain, raw.base_url) {
            (Some(sub), None) => {
                let ok = !sub.is_empty() && sub.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !ok {
                    f.fail(
                        "subdomain",
                        "the account's subdomain: letters, digits and '-' (example for example.amocrm.ru)",
                    );
                }
                format!("https://{sub}.amocrm.ru")
            }
            (None, Some(url)) => f.base_url("base_url", url),
            _ => {
                f.fail("subdomain", "give the account's subdomain, or base_url (https://example.kommo.com), not both");
                String::new()
            }
        };
        let (env_name, from_env) = f.owner_var(crate::config::ENV_AMOCRM_TOKEN_PREFIX);
        let token = from_env.or(raw.token).map(|t| t.trim().to_owned()).unwrap_or_default();
        if token.is_empty() {
            f.fail(
                "token",
                format!("is empty (a long-lived token of the account's private integration; or {env_name})"),
            );
        }
        let source = raw.source.unwrap_or_else(|| "callpool".into());
        if source.trim().is_empty() || source.chars().count() > 100 {
            f.fail("source", "1 to 100 characters");
        }
        let requests_per_second = raw.requests_per_second.unwrap_or(7);
        if !(1..=7).contains(&requests_per_second) {
            f.fail("requests_per_second", "1 to 7 (amoCRM's limit per integration)");
        }
        let mapping = Mapping::read(f, raw.fields, raw.tags, (&DEFAULT_FIELDS, &[Attr::Match]), field_ok);
        Some(Section::new(
            "amocrm",
            Account {
                base_url,
                token,
                responsible_user_id: raw.responsible_user_id,
                pipeline_id: raw.pipeline_id,
                leads: raw.unknown_callers == Unknown::Lead,
                source,
                mapping,
                requests_per_second,
            },
        ))
    }
}

/// The site's amoCRM account, if it has one.
pub fn account(site: &SiteConfig) -> Option<&Account> {
    site.sections.get::<Account>("amocrm")
}

impl Handler for AmoCrm {
    fn kinds(&self) -> &'static [&'static str] {
        &[CALL]
    }

    fn records(&self) -> Records {
        Records::Calls
    }

    fn reader(&self) -> Option<&'static dyn Reader> {
        Some(&SiteReader)
    }

    /// Due when the call is final (a final report hurries it), or `finalize_after` its start
    /// when no final report comes: then it goes with what is known.
    fn plan(&self, _app: &App, event: Event<'_>) -> Vec<Planned> {
        match event {
            Event::CallRecorded { site: Some(site), due, .. } if account(site).is_some() => {
                vec![Planned { kind: CALL, plan: Plan::Due(due) }]
            }
            _ => Vec::new(),
        }
    }

    fn run<'a>(&'a self, ctx: &'a Ctx<'a>, _kind: &'static str, jobs: &'a [Claimed]) -> BoxFuture<'a, Vec<Outcome>> {
        one_by_one(ctx, jobs, move |job| deliver(ctx, job))
    }

    fn pace(&self, _app: &App) -> super::Pace {
        super::Pace { batch: 8, ..Default::default() }
    }
}

async fn deliver(ctx: &Ctx<'_>, job: &Claimed) -> Outcome {
    let Record::Call(call) = &job.record else { return skipped("not a call") };
    let Some(site) = call.matched.site.as_ref().and_then(|s| ctx.config.site(s)) else {
        return skipped("the call's site is no longer configured");
    };
    let Some(acc) = account(site) else { return skipped("amoCRM is not configured for the site") };
    let Some((phone, outbound)) = crm::customer(call) else { return skipped("the caller's number is hidden") };
    let api = Api { ctx, acc };
    let uniq = call.key.to_string();
    let result = async {
        match api.log_call(call, &uniq, phone, outbound).await? {
            Logged::Call(id) => return Ok(format!("call {id}")),
            Logged::Repeat => return Ok("call logged before".into()),
            Logged::NoContact => {}
        }
        if !acc.leads {
            return Err(skipped("the caller is not in amoCRM, and unknown_callers is \"ignore\""));
        }
        // A lead made before (its answer lost) is still in "Unsorted", or was accepted: then its
        // contact has the number and the call was logged on it above. A caller whose earlier
        // call's lead still waits in "Unsorted" (its contact is not found until a manager accepts
        // it) gets this call on that lead.
        match api.in_unsorted(&uniq, phone).await? {
            Unsorted::Mine(lead) => Ok(format!("lead {lead}")),
            Unsorted::Callers(lead) => api.note_call(call, lead, &uniq, phone, outbound).await,
            Unsorted::None => api.unsorted_lead(call, &uniq, phone).await.map(|id| format!("lead {id}")),
        }
    };
    result.await.map_or_else(|o| o, |receipt| sent_with(ctx, receipt))
}

/// What "Unsorted" holds of a call.
enum Unsorted {
    /// The lead an earlier attempt made for this call.
    Mine(u64),
    /// The lead of an earlier call from the same number, not yet accepted.
    Callers(u64),
    None,
}

/// What `POST /api/v4/calls` did with the call.
enum Logged {
    Call(u64),
    /// amoCRM has a call of this `uniq` already.
    Repeat,
    /// No contact, company or lead has the number ("Entity not found").
    NoContact,
}

struct Api<'a> {
    ctx: &'a Ctx<'a>,
    acc: &'a Account,
}

impl Api<'_> {
    /// Sends a request; the status and body of an answer that is not a retry (429, 5xx) nor
    /// a refusal of the account itself (401 token revoked or expired, 402 unpaid, 403 blocked).
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, Value), Outcome> {
        crm::pace(&self.acc.base_url, self.acc.requests_per_second).await;
        let resp = req.bearer_auth(&self.acc.token).send().await.map_err(|e| no_answer("amoCRM", &e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok((status, Value::Null));
        }
        if status.is_success() || status == reqwest::StatusCode::BAD_REQUEST {
            let v =
                crm::json(resp).await.map_err(|e| Outcome::Again(format!("amoCRM answered HTTP {status}, but {e}")))?;
            return Ok((status, v));
        }
        let why = format!("amoCRM answered HTTP {status}: {}", problem(&crm::error_text(resp).await));
        Err(if status.is_server_error() || status.as_u16() == 429 { Outcome::Again(why) } else { dead(why) })
    }

    /// Logs the call on the contact (or company, or its one open lead) that has the number.
    async fn log_call(&self, call: &Call, uniq: &str, phone: &str, outbound: bool) -> Result<Logged, Outcome> {
        let mut item = json!({
            "direction": if outbound { "outbound" } else { "inbound" },
            "uniq": uniq,
            "duration": call.duration.unwrap_or(0),
            "source": self.acc.source,
            "phone": phone,
            "call_status": call_status(call.status),
            "call_result": result_text(call),
            "created_at": call.started_at.as_millis().div_euclid(1000),
            "request_id": "0",
        });
        if let Some(link) = call.recording_url.as_deref().filter(|u| u.starts_with("http")) {
            item["link"] = link.into();
        }
        if let Some(user) = self.acc.responsible_user_id {
            item["responsible_user_id"] = user.into();
        }
        let url = format!("{}/api/v4/calls", self.acc.base_url);
        let (status, v) = self.send(self.ctx.http.post(url).json(&json!([item]))).await?;
        if let Some(id) = v["_embedded"]["calls"].get(0).and_then(|c| c["id"].as_u64()) {
            return Ok(Logged::Call(id));
        }
        let error = v["errors"].get(0).cloned().unwrap_or_else(|| v.clone());
        if error["title"].as_str().is_some_and(|t| t.eq_ignore_ascii_case("entity not found")) {
            return Ok(Logged::NoContact);
        }
        // A call of this uniq logged before (amoCRM's docs do not give the words: any error on
        // the uniq that says it is taken).
        let text = error.to_string().to_lowercase();
        if text.contains("uniq") && ["already", "exist", "duplicate", "not unique"].iter().any(|w| text.contains(w)) {
            return Ok(Logged::Repeat);
        }
        Err(dead(format!("amoCRM did not log the call (HTTP {status}): {}", problem(&error.to_string()))))
    }

    /// What "Unsorted" holds of the call or its caller (the newest 250 calls' items).
    async fn in_unsorted(&self, uniq: &str, phone: &str) -> Result<Unsorted, Outcome> {
        let url = format!("{}/api/v4/leads/unsorted", self.acc.base_url);
        let query = [("filter[category][]", "sip"), ("order[created_at]", "desc"), ("limit", "250")];
        let (status, v) = self.send(self.ctx.http.get(url).query(&query)).await?;
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(dead(format!("amoCRM refused the unsorted list: {}", problem(&v.to_string()))));
        }
        let items = v["_embedded"]["unsorted"].as_array().cloned().unwrap_or_default();
        let lead = |u: &Value| u["_embedded"]["leads"].get(0).and_then(|l| l["id"].as_u64());
        if let Some(id) = items.iter().find(|u| u["source_uid"] == uniq || u["metadata"]["uniq"] == uniq).and_then(lead)
        {
            return Ok(Unsorted::Mine(id));
        }
        let callers = items.iter().find(|u| u["metadata"]["phone"] == phone || u["metadata"]["from"] == phone);
        Ok(callers.and_then(lead).map_or(Unsorted::None, Unsorted::Callers))
    }

    /// The call as a note on `lead` (`call_in`/`call_out`), unless a note of its `uniq` is there.
    async fn note_call(
        &self,
        call: &Call,
        lead: u64,
        uniq: &str,
        phone: &str,
        outbound: bool,
    ) -> Result<String, Outcome> {
        let url = format!("{}/api/v4/leads/{lead}/notes", self.acc.base_url);
        let note_type = if outbound { "call_out" } else { "call_in" };
        let query = [("filter[note_type][]", note_type), ("limit", "250")];
        let (_, v) = self.send(self.ctx.http.get(&url).query(&query)).await?;
        let notes = v["_embedded"]["notes"].as_array().cloned().unwrap_or_default();
        if notes.iter().any(|n| n["params"]["uniq"] == uniq) {
            return Ok(format!("note on lead {lead}"));
        }
        let mut params = json!({
            "uniq": uniq,
            "duration": call.duration.unwrap_or(0),
            "source": self.acc.source,
            "phone": phone,
        });
        if let Some(link) = call.recording_url.as_deref().filter(|u| u.starts_with("http")) {
            params["link"] = link.into();
        }
        let body = json!([{"note_type": note_type, "params": params}]);
        let (status, v) = self.send(self.ctx.http.post(&url).json(&body)).await?;
        match v["_embedded"]["notes"].get(0).and_then(|n| n["id"].as_u64()) {
            Some(_) => Ok(format!("note on lead {lead}")),
            None => Err(dead(format!(
                "amoCRM did not add the call to lead {lead} (HTTP {status}): {}",
                problem(&v.to_string())
            ))),
        }
    }

    /// An incoming call's lead in "Unsorted", with its contact; the lead's id.
    async fn unsorted_lead(&self, call: &Call, uniq: &str, phone: &str) -> Result<u64, Outcome> {
        let facts = Facts::of_call(call);
        let at = call.started_at.as_millis().div_euclid(1000);
        // amoCRM's pages disagree on which of `phone` and `from` is the caller: both are.
        let mut metadata = json!({
            "is_call_event_needed": true,
            "uniq": uniq,
            "duration": call.duration.unwrap_or(0),
            "service_code": "callpool",
            "phone": phone,
            "called_at": at,
            "from": phone,
        });
        if let Some(link) = call.recording_url.as_deref().filter(|u| u.starts_with("http")) {
            metadata["link"] = link.into();
        }
        let tags: Vec<Value> = self.acc.mapping.tags(&facts).into_iter().map(|t| json!({"name": t})).collect();
        let mut lead = json!({
            "name": format!("Call from {phone}"),
            "custom_fields_values": custom_fields(&self.acc.mapping, &facts),
            "_embedded": {"tags": tags},
        });
        if let Some(user) = self.acc.responsible_user_id {
            lead["responsible_user_id"] = user.into();
        }
        let contact = json!({
            "name": phone,
            "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]}],
        });
        let mut item = json!({
            "source_uid": uniq,
            "source_name": self.acc.source,
            "created_at": at,
            "metadata": metadata,
            "_embedded": {"leads": [lead], "contacts": [contact]},
            "request_id": "0",
        });
        if let Some(p) = self.acc.pipeline_id {
            item["pipeline_id"] = p.into();
        }
        let url = format!("{}/api/v4/leads/unsorted/sip", self.acc.base_url);
        let (_, v) = self.send(self.ctx.http.post(url).json(&json!([item]))).await?;
        let made = v["_embedded"]["unsorted"].get(0).and_then(|u| u["_embedded"]["leads"].get(0));
        made.and_then(|l| l["id"].as_u64())
            .ok_or_else(|| dead(format!("amoCRM made no lead: {}", problem(&v.to_string()))))
    }
}

/// A lead's `custom_fields_values`: by field code, or by id for a numeric name.
fn custom_fields(mapping: &Mapping, facts: &Facts<'_>) -> Vec<Value> {
    mapping
        .fields(facts)
        .into_iter()
        .map(|(field, value)| match field.parse::<u64>() {
            Ok(id) => json!({"field_id": id, "values": [{"value": value}]}),
            Err(_) => json!({"field_code": field, "values": [{"value": value}]}),
        })
        .collect()
}

/// amoCRM's `call_status`: 4 talked, 6 no answer, 7 busy.
fn call_status(status: CallStatus) -> u8 {
    match status {
        CallStatus::Busy => 7,
        s if s.answered() => 4,
        _ => 6,
    }
}

/// The call's result line on the card: its source, as the marketer reads it.
fn result_text(call: &Call) -> String {
    let a = &call.matched.attrs;
    let parts: Vec<&str> =
        [&a.utm_source, &a.utm_medium, &a.utm_campaign].into_iter().filter_map(|v| v.as_deref()).collect();
    let source = if parts.is_empty() { "no source".to_owned() } else { parts.join(" / ") };
    format!("{source} ({})", call.matched.kind.as_str())
}

/// amoCRM's problem body (`title`, `detail`, `validation-errors`) in a line, at most 300
/// characters.
fn problem(text: &str) -> String {
    crm::clip(&problem_words(text))
}

fn problem_words(text: &str) -> String {
    let Ok(v) = serde_json::from_str::<Value>(text) else { return text.to_owned() };
    let mut parts: Vec<String> = ["title", "detail"].iter().filter_map(|k| v[*k].as_str().map(str::to_owned)).collect();
    if let Some(errors) = v.get("validation-errors") {
        parts.push(errors.to_string());
    }
    if parts.is_empty() {
        text.to_owned()
    } else {
        parts.join(": ")
    }
}
