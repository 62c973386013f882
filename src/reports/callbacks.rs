//! The site's callback requests of a period, as the reports list them (numbers and the PBX's
//! words masked for the report token).

use serde::Serialize;
use utoipa::ToSchema;

use super::{rfc3339, Access, Period, MAX_ROWS};
use crate::app::App;
use crate::callback::{CallbackStatus, Channel};
use crate::calls::Caller;
use crate::config::SiteConfig;
use crate::store::StoreError;

/// One callback request in a report.
#[derive(Serialize, ToSchema)]
pub struct CallbackRow {
    pub(super) id: String,
    /// RFC 3339, UTC.
    pub(super) requested_at: String,
    /// When the PBX was (first) asked: at once, or the next opening.
    pub(super) due_at: String,
    pub(super) status: CallbackStatus,
    /// Masked (`+7********67`) unless the token is the site's admin token.
    pub(super) number: String,
    /// `widget` or `api`.
    pub(super) origin: String,
    pub(super) attempts: u32,
    /// Why the last trigger attempt failed (a PBX's words may name the number: masked as it is).
    pub(super) error: Option<String>,
    /// The PBX's call id of the callback's call, once reported.
    pub(super) call_id: Option<String>,
    /// How many operators the PBX was asked to ring (more than one: the form's operators were
    /// rung in turn); 0 before it was asked.
    pub(super) operators_rung: u32,
    /// The operator who answered (a number, an extension or a channel, as the form lists them),
    /// when callpool can tell.
    pub(super) answered_by: Option<String>,
    pub(super) visitor: Option<String>,
    pub(super) source: Option<String>,
    pub(super) medium: Option<String>,
    pub(super) campaign: Option<String>,
    pub(super) landing_page: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackList {
    pub(super) site: String,
    pub(super) from: String,
    pub(super) to: String,
    pub(super) callbacks: Vec<CallbackRow>,
    /// True when the period held more requests than one report returns (50,000).
    pub(super) truncated: bool,
}

/// The site's callback requests of a period, oldest first, with where each stands.
pub async fn callbacks(app: &App, site: &SiteConfig, p: &Period, access: Access) -> Result<CallbackList, StoreError> {
    let list = app.store.callbacks(&site.id, p.from, p.to, MAX_ROWS).await?;
    let truncated = list.len() >= MAX_ROWS;
    let callbacks = list
        .into_iter()
        .map(|cb| {
            let number = Caller::parse(cb.number.as_str()).map_or_else(String::new, |c| access.show(&c));
            let operators_rung = cb.operators_rung();
            let a = cb.attrs;
            CallbackRow {
                id: cb.id.to_string(),
                requested_at: rfc3339(cb.requested_at),
                due_at: rfc3339(cb.due_at),
                status: cb.status,
                number,
                origin: match cb.channel {
                    Channel::Widget => "widget".into(),
                    Channel::Api => "api".into(),
                },
                attempts: cb.attempts,
                error: cb.error.map(|e| access.text(&e)),
                call_id: cb.call.map(|c| c.call_id().to_owned()),
                operators_rung,
                answered_by: cb.answered_by,
                visitor: cb.visitor.map(|v| v.to_string()),
                source: a.utm_source,
                medium: a.utm_medium,
                campaign: a.utm_campaign,
                landing_page: a.landing_page,
            }
        })
        .collect();
    Ok(CallbackList {
        site: site.id.to_string(),
        from: p.first.to_string(),
        to: p.last.to_string(),
        callbacks,
        truncated,
    })
}
