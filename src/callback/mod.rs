//! The callback widget's server side: a visitor leaves a number, callpool asks the site's PBX to
//! ring the operator and then the visitor, tells GA4 and the site's team, and keeps the visitor's
//! tabs informed.
//!
//! The pure parts: [`hours`] (working hours, the next opening), [`number`] (reading and refusing
//! the number typed), [`limits`] (the abuse limits' specs and the per-node limiters), [`text`]
//! (what the form says, per language). The service: [`service`] takes a request through the
//! checks and stores it with its jobs in one atomic step (the widget asks over the websocket,
//! a site's own form through `web/callback.rs`); [`status`] tells the visitor's tabs
//! how it stands; each PBX vendor's trigger (`src/pbx/`) asks the PBX. The jobs themselves
//! (the trigger, GA4 `callback_request`, the team's notices) are destinations in `src/jobs/`.

pub mod hours;
pub mod limits;
pub mod number;
pub mod service;
pub mod status;
pub mod text;

use std::fmt;

use callpool_pool::{PhoneNumber, SessionAttrs, SiteId, Ts, VisitorId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calls::CallKey;

/// A callback request's id: `cb-` and 24 hex digits (random). The generic and VoxImplant
/// adapters hand it to the PBX as the call id to report the outcome under.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallbackId(String);

impl CallbackId {
    pub fn random() -> CallbackId {
        use rand::RngCore;
        let mut bytes = [0u8; 12];
        rand::rng().fill_bytes(&mut bytes);
        CallbackId(format!("cb-{}", hex::encode(bytes)))
    }

    /// Reads an id given back to us (a URL, a PBX report).
    pub fn parse(s: &str) -> Option<CallbackId> {
        let hex = s.strip_prefix("cb-")?;
        (hex.len() == 24 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
            .then(|| CallbackId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id the PBX is to report the callback's call to the operator of `turn` (from 0) under:
    /// the callback's own id for the first, `<id>-<turn + 1>` for the next ones of a hunt (each
    /// operator's call is a call of its own).
    pub fn call_id(&self, turn: u32) -> String {
        if turn == 0 {
            self.0.clone()
        } else {
            format!("{}-{}", self.0, turn + 1)
        }
    }

    /// Whether `s` is an id [`CallbackId::call_id`] gives.
    pub fn is_call_id(s: &str) -> bool {
        let (id, turn) = match s.get(..27).zip(s.get(27..)) {
            Some((id, rest)) => (id, rest),
            None => (s, ""),
        };
        CallbackId::parse(id).is_some()
            && (turn.is_empty()
                || turn.strip_prefix('-').is_some_and(|n| n.len() <= 3 && n.parse::<u32>().is_ok_and(|n| n >= 2)))
    }
}

impl fmt::Display for CallbackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a callback stands, as the visitor's tabs show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallbackStatus {
    /// Outside working hours: the PBX is asked at the next opening (`at`).
    Scheduled,
    /// Accepted in working hours; the PBX is asked now.
    Accepted,
    /// The PBX could not be reached; the next attempt is at `at`.
    Retrying,
    /// The PBX accepted the request and is ringing the operator.
    Calling,
    /// The PBX reports the call answered.
    Connected,
    /// The call took place and ended.
    Completed,
    /// The PBX reports the call missed, busy or failed.
    Missed,
    /// The PBX could not be reached after every attempt, or refused the request.
    Failed,
}

impl CallbackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackStatus::Scheduled => "scheduled",
            CallbackStatus::Accepted => "accepted",
            CallbackStatus::Retrying => "retrying",
            CallbackStatus::Calling => "calling",
            CallbackStatus::Connected => "connected",
            CallbackStatus::Completed => "completed",
            CallbackStatus::Missed => "missed",
            CallbackStatus::Failed => "failed",
        }
    }

    /// The order statuses go through; a write never moves a callback back (a PBX that reports
    /// the answer before the trigger's own response arrived keeps `connected`).
    pub fn rank(self) -> u8 {
        match self {
            CallbackStatus::Scheduled | CallbackStatus::Accepted => 1,
            CallbackStatus::Retrying => 2,
            CallbackStatus::Calling => 3,
            CallbackStatus::Connected => 4,
            CallbackStatus::Completed | CallbackStatus::Missed | CallbackStatus::Failed => 5,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 5
    }

    /// Whether the PBX has been asked (or the callback is over): the trigger is never sent again.
    pub fn triggered(self) -> bool {
        self.rank() >= 3
    }
}

/// Why a callback request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Not a phone number that can be called, with its area code.
    Invalid,
    /// Premium-rate, shared-cost or a pager: a company's PBX must not dial it.
    NotCallable,
    /// In a country the site does not call (`countries`).
    Abroad,
    /// On the site's blocklist.
    Blocked,
    /// The visitor has not been on the site for `min_time_on_site` yet.
    TooSoon,
    /// The form is never open (no working hours on any day).
    Closed,
    /// A limit is used up.
    Limited(limits::Scope),
    /// The site has no callback form.
    Disabled,
    /// The store is away: nothing was stored.
    Unavailable,
}

impl Reason {
    /// Stable: the API's error code, the metric label, and the key of the form's text.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::NotCallable => "not_callable",
            Reason::Abroad => "abroad",
            Reason::Blocked => "blocked",
            Reason::TooSoon => "too_soon",
            Reason::Closed => "closed",
            Reason::Limited(scope) => scope.as_str(),
            Reason::Disabled => "disabled",
            Reason::Unavailable => "unavailable",
        }
    }
}

/// Where a request came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The snippet's form, over the websocket.
    Widget,
    /// `POST /v1/callback` from the site's own form.
    Api,
}

/// A callback as callpool keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callback {
    pub id: CallbackId,
    pub site: SiteId,
    /// The visitor's number (E.164).
    pub number: PhoneNumber,
    pub visitor: Option<VisitorId>,
    /// The visitor's session: what the GA4 events carry.
    pub attrs: SessionAttrs,
    #[serde(rename = "origin")]
    pub channel: Channel,
    pub requested_at: Ts,
    /// When the PBX is (first) asked: at once, or the next opening time.
    pub due_at: Ts,
    pub status: CallbackStatus,
    /// Trigger attempts that failed.
    #[serde(default)]
    pub attempts: u32,
    /// The next trigger attempt (while `retrying`).
    #[serde(default)]
    pub next_attempt_at: Option<Ts>,
    /// Why the last attempt failed (for the operator; the visitor sees the status only).
    #[serde(default)]
    pub error: Option<String>,
    /// The PBX's own id for the call it placed (Twilio's CallSid), when it gave one.
    #[serde(default)]
    pub pbx_ref: Option<String>,
    /// The call the PBX reported for it.
    #[serde(default)]
    pub call: Option<CallKey>,
    /// The call keys the PBX may report the outcome under (`<pbx>:<callback id>`, and
    /// `<pbx>:<its own id>` when the trigger's answer gave one).
    #[serde(default)]
    pub links: Vec<CallKey>,
    /// The operator of the form's `operators` the PBX was last asked to ring (from 0).
    #[serde(default)]
    pub turn: u32,
    /// While operators are rung in turn: when the one asked counts as not answering.
    #[serde(default)]
    pub turn_until: Option<Ts>,
    /// The operator who answered, as the trigger names them (when callpool can tell).
    #[serde(default)]
    pub answered_by: Option<String>,
    pub updated_at: Ts,
}

impl Callback {
    /// How many operators the PBX was asked to ring.
    pub fn operators_rung(&self) -> u32 {
        match self.status {
            CallbackStatus::Scheduled | CallbackStatus::Accepted | CallbackStatus::Retrying => 0,
            // Given up: on the operator whose turn it was, the PBX could not be asked.
            CallbackStatus::Failed => self.turn,
            CallbackStatus::Calling
            | CallbackStatus::Connected
            | CallbackStatus::Completed
            | CallbackStatus::Missed => self.turn + 1,
        }
    }

    /// The time the visitor's tabs are told about with the status: the scheduled opening or the
    /// next attempt.
    pub fn at(&self) -> Option<Ts> {
        match self.status {
            CallbackStatus::Scheduled => Some(self.due_at),
            CallbackStatus::Retrying => self.next_attempt_at,
            _ => None,
        }
    }
}

/// A callback as a trigger's tests need one: `cb-0123456789abcdef01234567` of site `shop`, to
/// `number`, accepted at `at`.
#[cfg(test)]
pub fn example(number: &str, at: callpool_pool::Ts) -> Callback {
    Callback {
        id: CallbackId::parse("cb-0123456789abcdef01234567").expect("a callback id"),
        site: callpool_pool::SiteId::new("shop").expect("a site id"),
        number: callpool_pool::PhoneNumber::parse(number).expect("an E.164 number"),
        visitor: None,
        attrs: Default::default(),
        channel: Channel::Widget,
        requested_at: at,
        due_at: at,
        status: CallbackStatus::Accepted,
        attempts: 0,
        next_attempt_at: None,
        error: None,
        pbx_ref: None,
        call: None,
        links: Vec::new(),
        turn: 0,
        turn_until: None,
        answered_by: None,
        updated_at: at,
    }
}
