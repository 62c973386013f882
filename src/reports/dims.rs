//! How reports group visits and calls: by source, medium, campaign, term or landing page, a visit
//! (as the hub recorded it) and a call (by its session) the same way.

use callpool_pool::SessionAttrs;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::visits::VisitRecord;

/// A filter's value for visits without a source (medium, ...), as Google Analytics writes it.
pub const NOT_SET: &str = "(not set)";

/// Where a visit came from, as reports group visits and calls: its `utm_source`, else the
/// referrer's host, else "direct".
pub fn visit_source(a: &callpool_pool::SessionAttrs) -> String {
    a.utm_source
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| a.referrer.as_deref().and_then(crate::config::referrer_host).map(str::to_owned))
        .unwrap_or_else(|| "direct".into())
}

/// A landing page as reports group it: its address without the query and fragment (which carry
/// the UTM tags and click ids of each visit).
pub fn landing_path(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or(url).to_owned()
}

/// What rows group by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    #[default]
    Source,
    Medium,
    Campaign,
    Term,
    LandingPage,
}

impl Dimension {
    pub const ALL: [Dimension; 5] =
        [Dimension::Source, Dimension::Medium, Dimension::Campaign, Dimension::Term, Dimension::LandingPage];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Source => "source",
            Dimension::Medium => "medium",
            Dimension::Campaign => "campaign",
            Dimension::Term => "term",
            Dimension::LandingPage => "landing_page",
        }
    }

    pub fn of_visit(self, v: &VisitRecord) -> Option<String> {
        match self {
            Dimension::Source => Some(v.source.clone()),
            Dimension::Medium => v.medium.clone(),
            Dimension::Campaign => v.campaign.clone(),
            Dimension::Term => v.term.clone(),
            Dimension::LandingPage => v.landing_page.clone(),
        }
        .filter(|s| !s.is_empty())
    }

    /// The row a tracked call's session belongs to.
    pub fn of_session(self, a: &SessionAttrs) -> Option<String> {
        match self {
            Dimension::Source => Some(visit_source(a)),
            Dimension::Medium => a.utm_medium.clone(),
            Dimension::Campaign => a.utm_campaign.clone(),
            Dimension::Term => a.utm_term.clone(),
            Dimension::LandingPage => a.landing_page.as_deref().map(landing_path),
        }
        .filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_visits_source_is_its_utm_source_else_the_referrers_host_else_direct() {
        let mut a = SessionAttrs { referrer: Some("https://www.google.com/search?q=x".into()), ..Default::default() };
        assert_eq!(visit_source(&a), "www.google.com");
        a.utm_source = Some("yandex".into());
        assert_eq!(visit_source(&a), "yandex");
        assert_eq!(visit_source(&SessionAttrs::default()), "direct");
        assert_eq!(landing_path("https://shop.example/a?utm_source=x#top"), "https://shop.example/a");
    }
}
