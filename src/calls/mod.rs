//! Calls: what the PBX reported about each call, which visitor session it was matched to, and
//! where its analytics deliveries stand.
//!
//! [`matcher`] is the pure core (the order of DESIGN.md, over data handed in); `store::calls`
//! keeps calls and the per-caller memory durably; [`ingest`] is the adapter between them: one
//! PBX report in, one stored call out, with its deliveries planned.

pub mod ingest;
pub mod matcher;

use std::fmt;

use callpool_pool::{LeaseId, PhoneNumber, SessionAttrs, SiteId, Ts, VisitorId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A call as the PBX names it, prefixed with the PBX's configured id so two PBXs cannot collide:
/// `<pbx>:<pbx call id>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CallKey(String);

impl CallKey {
    /// Checks the PBX's call id (1–128 printable ASCII characters, no spaces) and prefixes it.
    pub fn new(pbx: &str, call_id: &str) -> Result<CallKey, String> {
        if call_id.is_empty() || call_id.len() > 128 || !call_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("call_id must be 1 to 128 printable ASCII characters without spaces".into());
        }
        Ok(CallKey(format!("{pbx}:{call_id}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The configured id of the PBX that reported the call (before the first `:`).
    pub fn pbx(&self) -> &str {
        self.0.split_once(':').map_or("", |(pbx, _)| pbx)
    }

    /// The PBX's own call id (after the `<pbx>:` prefix).
    pub fn call_id(&self) -> &str {
        self.0.split_once(':').map_or(&self.0, |(_, id)| id)
    }
}

impl fmt::Display for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a call stands. The order is the order a call goes through; the last four are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    Ringing,
    Answered,
    Completed,
    Missed,
    Busy,
    Failed,
}

impl CallStatus {
    pub fn is_final(self) -> bool {
        self >= CallStatus::Completed
    }

    /// Whether someone picked up (a completed call was answered; the others were not).
    pub fn answered(self) -> bool {
        matches!(self, CallStatus::Answered | CallStatus::Completed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Answered => "answered",
            CallStatus::Completed => "completed",
            CallStatus::Missed => "missed",
            CallStatus::Busy => "busy",
            CallStatus::Failed => "failed",
        }
    }
}

/// How a call was attributed (DESIGN.md, "Matching a call"), first that applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MatchKind {
    /// To the number in the page's HTML, before any tracking number was shown (untracked).
    DefaultBefore,
    /// To the number shown after a tracking number was taken back (untracked).
    DefaultAfter,
    /// To the number shown to traffic the site does not track (untracked).
    Static,
    /// To a tracking number someone held at the moment of the call.
    Active,
    /// To a tracking number whose last lease ended within the site's `recent_window`.
    Recent,
    /// From a caller matched to a visitor of this site within `repeat_window`.
    RepeatCaller,
    /// None of the above.
    Unmatched,
    /// A call the PBX placed for a callback request: attributed to the session that asked.
    Callback,
}

impl MatchKind {
    pub const ALL: [MatchKind; 8] = [
        MatchKind::DefaultBefore,
        MatchKind::DefaultAfter,
        MatchKind::Static,
        MatchKind::Active,
        MatchKind::Recent,
        MatchKind::RepeatCaller,
        MatchKind::Unmatched,
        MatchKind::Callback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatchKind::DefaultBefore => "default_before",
            MatchKind::DefaultAfter => "default_after",
            MatchKind::Static => "static",
            MatchKind::Active => "active",
            MatchKind::Recent => "recent",
            MatchKind::RepeatCaller => "repeat_caller",
            MatchKind::Unmatched => "unmatched",
            MatchKind::Callback => "callback",
        }
    }

    /// Attributed to a visitor session.
    pub fn is_tracked(self) -> bool {
        matches!(self, MatchKind::Active | MatchKind::Recent | MatchKind::RepeatCaller | MatchKind::Callback)
    }
}

/// What kind of number was dialled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NumberKind {
    /// One of the pool's numbers.
    Tracking,
    /// A site's `default_before`, `default_after` or `static_number`.
    Default,
    /// A number callpool does not know.
    Unknown,
}

impl NumberKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NumberKind::Tracking => "tracking",
            NumberKind::Default => "default",
            NumberKind::Unknown => "unknown",
        }
    }
}

/// The outcome of matching one call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub kind: MatchKind,
    /// The site the called number belongs to, if callpool knows it.
    pub site: Option<SiteId>,
    pub number_kind: NumberKind,
    /// The visitor the call is attributed to (tracked kinds only).
    pub visitor: Option<VisitorId>,
    /// The lease it was attributed through (`active`, `recent`; for `repeat_caller` the lease of
    /// the earlier call).
    pub lease: Option<LeaseId>,
    /// The attributed session (source, medium, campaign, landing page, click ids, GA and Metrica ids).
    pub attrs: SessionAttrs,
}

/// A caller's phone number as the PBX sent it, normalised to its digits (with the leading `+`
/// when it had one). Withheld numbers ("anonymous", "client:alice", empty) are `None`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Caller(String);

impl Caller {
    pub fn parse(raw: &str) -> Option<Caller> {
        let raw = raw.trim();
        if raw.contains(|c: char| c.is_ascii_alphabetic()) {
            return None;
        }
        // The digits are the identity; formatting goes. (No libphonenumber check: a caller's number
        // is only compared and shown, and it must be kept even when its country's rules reject it.)
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        let plus = if raw.starts_with('+') { "+" } else { "" };
        (3..=20).contains(&digits.len()).then(|| Caller(format!("{plus}{digits}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For reports read without the site's admin token: the country code and the last two digits.
    pub fn masked(&self) -> String {
        let s = &self.0;
        let n = s.chars().count();
        if n <= 4 {
            return "*".repeat(n);
        }
        let keep_front = if s.starts_with('+') { 2 } else { 1 };
        let front: String = s.chars().take(keep_front).collect();
        let back: String = s.chars().skip(n - 2).collect();
        format!("{front}{}{back}", "*".repeat(n - keep_front - 2))
    }
}

/// One report from the PBX about a call, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallReport {
    pub key: CallKey,
    pub called: PhoneNumber,
    pub caller: Option<Caller>,
    pub started_at: Ts,
    pub answered_at: Option<Ts>,
    pub ended_at: Option<Ts>,
    pub status: CallStatus,
    /// Talk time in seconds.
    pub duration: Option<u32>,
    pub recording_url: Option<String>,
}

/// A call as callpool keeps it: the PBX's facts (updated as its status advances) and the match
/// (made once, at the first report). Its deliveries are jobs kept beside it by the store, so a
/// delivery never races a status update.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    pub key: CallKey,
    pub called: PhoneNumber,
    pub caller: Option<Caller>,
    pub started_at: Ts,
    pub answered_at: Option<Ts>,
    pub ended_at: Option<Ts>,
    pub status: CallStatus,
    pub duration: Option<u32>,
    pub recording_url: Option<String>,
    pub received_at: Ts,
    pub updated_at: Ts,
    #[serde(rename = "match")]
    pub matched: Match,
    /// No earlier call from this caller to this site is remembered.
    pub first_time_caller: bool,
    /// Bumped on every write; a write names the version it read (optimistic concurrency).
    pub version: u64,
}

impl Call {
    /// A sample call (a tracked, answered two-minute call from Google Ads, ten minutes ago), for
    /// checking a destination's settings without a real call.
    pub fn example(now: Ts) -> Call {
        let at = |ago: u64| now.minus(std::time::Duration::from_secs(ago));
        Call {
            key: CallKey::new("callpool", "sample-call").expect("a call key"),
            called: PhoneNumber::parse("+74951230001").expect("a number"),
            caller: None,
            started_at: at(600),
            answered_at: Some(at(590)),
            ended_at: Some(at(470)),
            status: CallStatus::Completed,
            duration: Some(120),
            recording_url: None,
            received_at: at(470),
            updated_at: at(470),
            matched: Match {
                kind: MatchKind::Active,
                site: None,
                number_kind: NumberKind::Tracking,
                visitor: None,
                lease: None,
                attrs: SessionAttrs {
                    utm_source: Some("google".into()),
                    utm_medium: Some("cpc".into()),
                    utm_campaign: Some("callpool-check".into()),
                    ..Default::default()
                },
            },
            first_time_caller: true,
            version: 0,
        }
    }

    /// Folds a later report of the same call in: the status only moves forward (a final status
    /// stays), and facts the PBX adds later (answer and end times, duration, recording) are
    /// kept. Returns whether anything changed.
    pub fn absorb(&mut self, r: &CallReport, now: Ts) -> bool {
        let before = self.clone();
        if r.status > self.status && !self.status.is_final() {
            self.status = r.status;
        }
        self.answered_at = self.answered_at.or(r.answered_at);
        self.ended_at = self.ended_at.or(r.ended_at);
        if r.duration.is_some() && (self.duration.is_none() || r.status == self.status) {
            self.duration = r.duration;
        }
        if r.recording_url.is_some() {
            self.recording_url.clone_from(&r.recording_url);
        }
        self.caller = self.caller.take().or_else(|| r.caller.clone());
        let changed = *self != before;
        if changed {
            self.updated_at = now;
        }
        changed
    }
}

/// What callpool remembers of a caller per site, for `repeat_caller` and first-time callers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerMemory {
    pub last_call_at: Ts,
    /// The last call of this caller that was attributed to a visitor.
    pub last_match: Option<PriorMatch>,
}

impl CallerMemory {
    /// What is remembered of a caller after a call at `at` matched as `m`. Only direct evidence
    /// (the number's own lease: `active`, `recent`) is remembered as the caller's match, so a
    /// repeat window counts from the last call that proved who the caller is.
    pub fn after(prev: Option<&CallerMemory>, number: &PhoneNumber, at: Ts, m: &Match) -> CallerMemory {
        let direct = matches!(m.kind, MatchKind::Active | MatchKind::Recent);
        CallerMemory {
            last_call_at: at,
            last_match: match (&m.visitor, direct) {
                (Some(visitor), true) => Some(PriorMatch {
                    at,
                    visitor: visitor.clone(),
                    lease: m.lease,
                    number: Some(number.clone()),
                    attrs: m.attrs.clone(),
                }),
                _ => prev.and_then(|p| p.last_match.clone()),
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriorMatch {
    pub at: Ts,
    pub visitor: VisitorId,
    pub lease: Option<LeaseId>,
    /// The number that call dialled.
    #[serde(default)]
    pub number: Option<PhoneNumber>,
    pub attrs: SessionAttrs,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expected: Option<&str>) {
        assert_eq!(Caller::parse(raw).as_ref().map(Caller::as_str), expected, "{raw:?}");
    }

    #[test]
    fn callers_are_normalised_and_withheld_numbers_dropped() {
        check("+79161234567", Some("+79161234567"));
        check(" +7 (916) 123-45-67 ", Some("+79161234567"));
        check("89161234567", Some("89161234567"));
        check("anonymous", None);
        check("client:alice", None);
        check("", None);
        check("12", None);
    }

    #[test]
    fn masked_callers_keep_the_country_code_and_last_two_digits() {
        assert_eq!(Caller::parse("+79161234567").unwrap().masked(), "+7********67");
        assert_eq!(Caller::parse("89161234567").unwrap().masked(), "8********67");
        assert_eq!(Caller::parse("1234").unwrap().masked(), "****");
    }

    #[test]
    fn statuses_only_move_forward_and_final_ones_stay() {
        let key = CallKey::new("pbx", "c1").unwrap();
        let report = |status, duration| CallReport {
            key: key.clone(),
            called: PhoneNumber::parse("+74951230001").unwrap(),
            caller: None,
            started_at: Ts::from_millis(1_000),
            answered_at: None,
            ended_at: None,
            status,
            duration,
            recording_url: None,
        };
        let mut call = Call {
            key: key.clone(),
            called: PhoneNumber::parse("+74951230001").unwrap(),
            caller: None,
            started_at: Ts::from_millis(1_000),
            answered_at: None,
            ended_at: None,
            status: CallStatus::Ringing,
            duration: None,
            recording_url: None,
            received_at: Ts::from_millis(1_000),
            updated_at: Ts::from_millis(1_000),
            matched: Match {
                kind: MatchKind::Unmatched,
                site: None,
                number_kind: NumberKind::Unknown,
                visitor: None,
                lease: None,
                attrs: SessionAttrs::default(),
            },
            first_time_caller: true,
            version: 1,
        };
        assert!(call.absorb(&report(CallStatus::Completed, Some(63)), Ts::from_millis(2_000)));
        assert_eq!((call.status, call.duration), (CallStatus::Completed, Some(63)));
        assert!(!call.absorb(&report(CallStatus::Answered, None), Ts::from_millis(3_000)), "a late 'answered'");
        assert!(!call.absorb(&report(CallStatus::Failed, Some(0)), Ts::from_millis(3_000)), "final stays final");
        assert_eq!(
            (call.status, call.duration, call.updated_at),
            (CallStatus::Completed, Some(63), Ts::from_millis(2_000))
        );
        assert_eq!(
            CallKey::new("pbx", "c 1").map(|_| ()),
            Err("call_id must be 1 to 128 printable ASCII characters without spaces".into())
        );
    }
}
