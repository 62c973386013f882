//! What the CRM destinations (`amocrm.rs`, `bitrix24.rs`) share: the session attributes a site
//! maps to the CRM's fields (`fields`, `tags`), each account's request pace on this node, and the
//! CRM's answer read for errors.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex};

use callpool_pool::SessionAttrs;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::callback::Callback;
use crate::calls::Call;
use crate::config::Fields;

/// What of a call or a callback request a CRM field can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attr {
    Source,
    Medium,
    Campaign,
    Term,
    Content,
    LandingPage,
    Referrer,
    Gclid,
    Yclid,
    GaClientId,
    YmClientId,
    /// How the call was tied to a visit (`active`, `recent`, ..., `callback` for a callback form).
    Match,
    /// The number the visitor was shown (or called).
    TrackingNumber,
    Site,
}

/// Every attribute by its name in the configuration.
pub const ATTRS: [(&str, Attr); 14] = [
    ("source", Attr::Source),
    ("medium", Attr::Medium),
    ("campaign", Attr::Campaign),
    ("term", Attr::Term),
    ("content", Attr::Content),
    ("landing_page", Attr::LandingPage),
    ("referrer", Attr::Referrer),
    ("gclid", Attr::Gclid),
    ("yclid", Attr::Yclid),
    ("ga_client_id", Attr::GaClientId),
    ("ym_client_id", Attr::YmClientId),
    ("match", Attr::Match),
    ("tracking_number", Attr::TrackingNumber),
    ("site", Attr::Site),
];

/// The facts a record gives its CRM fields.
pub struct Facts<'a> {
    pub attrs: &'a SessionAttrs,
    pub match_kind: &'a str,
    pub number: Option<&'a str>,
    pub site: &'a str,
}

impl<'a> Facts<'a> {
    pub fn of_call(call: &'a Call) -> Facts<'a> {
        let m = &call.matched;
        Facts {
            attrs: &m.attrs,
            match_kind: m.kind.as_str(),
            // On a callback's call the PBX dialled the visitor: no tracking number.
            number: (m.kind != crate::calls::MatchKind::Callback).then(|| call.called.as_str()),
            site: m.site.as_ref().map_or("", |s| s.as_str()),
        }
    }

    pub fn of_callback(cb: &'a Callback) -> Facts<'a> {
        Facts { attrs: &cb.attrs, match_kind: "callback", number: None, site: cb.site.as_str() }
    }

    fn value(&self, attr: Attr) -> Option<String> {
        let a = self.attrs;
        let v = match attr {
            Attr::Source => a.utm_source.clone(),
            Attr::Medium => a.utm_medium.clone(),
            Attr::Campaign => a.utm_campaign.clone(),
            Attr::Term => a.utm_term.clone(),
            Attr::Content => a.utm_content.clone(),
            Attr::LandingPage => a.landing_page.clone(),
            Attr::Referrer => a.referrer.clone(),
            Attr::Gclid => a.gclid.clone(),
            Attr::Yclid => a.yclid.clone(),
            Attr::GaClientId => a.ga_client_id.clone(),
            Attr::YmClientId => a.ym_uid.clone(),
            Attr::Match => Some(self.match_kind.to_owned()),
            Attr::TrackingNumber => self.number.map(str::to_owned),
            Attr::Site => Some(self.site.to_owned()),
        };
        v.filter(|v| !v.is_empty())
    }
}

/// The customer's number on a call, and whether callpool's side dialled it: the caller's, or on a
/// callback's call (the PBX dialled the visitor) the number called. `None`: the caller's number is
/// hidden.
pub fn customer(call: &Call) -> Option<(&str, bool)> {
    if call.matched.kind == crate::calls::MatchKind::Callback {
        Some((call.called.as_str(), true))
    } else {
        call.caller.as_ref().map(|c| (c.as_str(), false))
    }
}

/// A site's mapping from attributes to a CRM's fields (by the CRM's name or code for the field)
/// and its tags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub fields: Vec<(String, Attr)>,
    pub tags: Vec<Attr>,
}

impl Mapping {
    /// The site's `fields` (a table: CRM field → attribute name) and `tags` (attribute names),
    /// or the CRM's defaults for those left out; `field_ok` checks a field's name for the CRM.
    pub fn read(
        f: &mut Fields<'_>,
        fields: Option<BTreeMap<String, String>>,
        tags: Option<Vec<String>>,
        defaults: (&[(&str, Attr)], &[Attr]),
        field_ok: fn(&str) -> Result<(), &'static str>,
    ) -> Mapping {
        let names = || ATTRS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        let attr = |f: &mut Fields<'_>, at: &str, name: &str| {
            let found = ATTRS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
            if found.is_none() {
                f.fail(at, format!("{name:?} is not one of {}", names()));
            }
            found
        };
        let fields = match fields {
            None => defaults.0.iter().map(|(k, a)| ((*k).to_owned(), *a)).collect(),
            Some(map) => {
                let mut out = Vec::new();
                for (field, name) in map {
                    if let Err(why) = field_ok(&field) {
                        f.fail(&format!("fields.{field}"), why);
                    }
                    if let Some(a) = attr(f, &format!("fields.{field}"), &name) {
                        out.push((field, a));
                    }
                }
                out
            }
        };
        let tags = match tags {
            None => defaults.1.to_vec(),
            Some(list) => list.iter().filter_map(|name| attr(f, "tags", name)).collect(),
        };
        Mapping { fields, tags }
    }

    /// The fields with a value, in order.
    pub fn fields(&self, facts: &Facts<'_>) -> Vec<(&str, String)> {
        self.fields.iter().filter_map(|(k, a)| facts.value(*a).map(|v| (k.as_str(), v))).collect()
    }

    /// The tags with a value.
    pub fn tags(&self, facts: &Facts<'_>) -> Vec<String> {
        self.tags.iter().filter_map(|a| facts.value(*a)).collect()
    }
}

/// Waits for this node's turn to send a request to `account` (a CRM's base URL), at most
/// `per_second` requests a second across every job of this node; nodes of a cluster pace
/// themselves each, and a CRM's 429 retries the job.
pub async fn pace(account: &str, per_second: u32) {
    type Limiters = HashMap<(String, u32), Arc<DefaultDirectRateLimiter>>;
    static LIMITERS: LazyLock<Mutex<Limiters>> = LazyLock::new(Default::default);
    let limiter = {
        let mut all = LIMITERS.lock().unwrap_or_else(|e| e.into_inner());
        let quota = Quota::per_second(std::num::NonZeroU32::new(per_second.max(1)).expect("at least 1"));
        // One request at a time: no burst.
        let quota = quota.allow_burst(std::num::NonZeroU32::MIN);
        all.entry((account.to_owned(), per_second)).or_insert_with(|| Arc::new(RateLimiter::direct(quota))).clone()
    };
    limiter.until_ready().await;
}

/// An answer's body as text: at most 64 KiB of it read, at most 300 characters kept (for an
/// error message; a CRM's error bodies do not echo the token).
pub async fn error_text(resp: reqwest::Response) -> String {
    let body = read_limited(resp, 64 * 1024).await.unwrap_or_default();
    clip(String::from_utf8_lossy(&body).trim())
}

/// At most 300 characters of `text`, for an error kept with a dead letter and logged.
pub fn clip(text: &str) -> String {
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text.to_owned()
    }
}

/// An answer's JSON body (at most 1 MiB), or why it is not one.
pub async fn json(resp: reqwest::Response) -> Result<serde_json::Value, String> {
    let body = read_limited(resp, 1 << 20).await?;
    serde_json::from_slice(&body).map_err(|e| format!("its answer is not JSON: {e}"))
}

async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) =
        resp.chunk().await.map_err(|e| format!("its answer broke off: {}", super::without_url(&e)))?
    {
        if out.len() + chunk.len() > limit {
            return Err(format!("its answer is longer than {limit} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_tags_carry_only_what_the_visit_had() {
        let attrs = SessionAttrs {
            utm_source: Some("google".into()),
            utm_medium: Some("cpc".into()),
            utm_campaign: Some(String::new()),
            ..Default::default()
        };
        let facts = Facts { attrs: &attrs, match_kind: "active", number: Some("+74951230001"), site: "shop" };
        let m = Mapping {
            fields: vec![
                ("UTM_SOURCE".into(), Attr::Source),
                ("UTM_CAMPAIGN".into(), Attr::Campaign),
                ("NUMBER".into(), Attr::TrackingNumber),
            ],
            tags: vec![Attr::Match, Attr::Term],
        };
        assert_eq!(m.fields(&facts), [("UTM_SOURCE", "google".into()), ("NUMBER", "+74951230001".into())]);
        assert_eq!(m.tags(&facts), ["active"]);
    }

    #[test]
    fn the_customer_of_a_callbacks_call_is_the_number_the_pbx_dialled() {
        let mut call = Call::example(callpool_pool::Ts::from_millis(1_767_225_600_000));
        assert_eq!(customer(&call), None, "a hidden number");
        call.caller = crate::calls::Caller::parse("+79161234567");
        assert_eq!(customer(&call), Some(("+79161234567", false)));
        call.matched.kind = crate::calls::MatchKind::Callback;
        assert_eq!(customer(&call), Some(("+74951230001", true)));
    }

    /// The CRMs' tables: every problem named, the field mapping's included; a token from the
    /// environment, named by the site.
    #[test]
    fn the_crms_tables_name_every_problem() {
        use crate::config::tests::{check, env, GOOD};
        let site = |table: &str| format!("{GOOD}\n{table}\n");
        // The CRMs' tables: every problem named, the field mapping's included.
        check(
            &site("[site.amocrm]\nsubdomain = \"x.y\"\ntoken = \"\"\nfields = { utm = \"source\", UTM_TERM = \"keyword\" }"),
            &[
                "site \"shop\": amocrm.subdomain: the account's subdomain",
                "site \"shop\": amocrm.token: is empty",
                "site \"shop\": amocrm.fields.UTM_TERM: \"keyword\" is not one of source, medium",
                "site \"shop\": amocrm.fields.utm: a field's code in upper case",
            ],
        );
        check(
            &site("[site.bitrix24]\nurl = \"https://b.bitrix24.ru/rest/1/abc/\"\nuser_id = 1\ntoken = \"abc\"\nrequests_per_second = 9"),
            &["site \"shop\": bitrix24.url: the portal's address only", "bitrix24.requests_per_second: 1 to 5"],
        );
        // A CRM's token from the environment, named by the site.
        let text = site("[site.amocrm]\nsubdomain = \"example\"");
        let c = crate::config::Config::parse(&text, "test.toml", &env(&[("CALLPOOL_AMOCRM_TOKEN_SHOP", " from-env ")]))
            .unwrap();
        let acc = crate::jobs::amocrm::account(&c.sites[0]).unwrap();
        assert_eq!((acc.token.as_str(), acc.base_url.as_str()), ("from-env", "https://example.amocrm.ru"));
        check(&text, &["amocrm.token: is empty (a long-lived token of the account's private integration; or CALLPOOL_AMOCRM_TOKEN_SHOP)"]);
    }
}
