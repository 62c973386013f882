//! Identifiers and values that cross module boundaries: each is validated once, on construction.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::PoolError;

/// A point in time as whole milliseconds since the Unix epoch (UTC).
///
/// The pool's rules never read a clock: every operation is handed `now`, so the same code runs
/// under a wall clock in the service and under a virtual clock in tests and the simulator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ts(i64);

impl Ts {
    pub const EPOCH: Ts = Ts(0);

    pub const fn from_millis(ms: i64) -> Ts {
        Ts(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time. Only the service's clock calls this; the rules never do.
    pub fn now() -> Ts {
        Ts(chrono::Utc::now().timestamp_millis())
    }

    pub fn plus(self, d: Duration) -> Ts {
        Ts(self.0.saturating_add(millis(d)))
    }

    pub fn minus(self, d: Duration) -> Ts {
        Ts(self.0.saturating_sub(millis(d)))
    }

    pub fn to_chrono(self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.0)
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_chrono() {
            Some(t) => write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// A duration as whole milliseconds, saturating at `i64::MAX` (no configured duration comes close).
pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A site's identifier: 1 to 64 characters of `a-z`, `0-9`, `_` and `-`.
///
/// The charset keeps ids safe inside Redis keys, file names, metric labels and URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteId(String);

impl SiteId {
    pub fn new(s: impl Into<String>) -> Result<SiteId, PoolError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(SiteId(s))
        } else {
            Err(PoolError::Invalid(format!("site id {s:?} must be 1 to 64 characters of a-z, 0-9, '_' and '-'")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A visitor's identifier: 1 to 128 characters of ASCII letters, digits, `.`, `_` and `-`
/// (a GA client id such as `1197596843.1673515099`, or the snippet's own first-party id).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VisitorId(String);

impl VisitorId {
    pub fn new(s: impl Into<String>) -> Result<VisitorId, PoolError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(VisitorId(s))
        } else {
            Err(PoolError::Invalid(format!(
                "visitor id {s:?} must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form (`+` and 7 to 15 digits), checked against libphonenumber's
/// rules for its country when parsed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Accepts only the canonical E.164 spelling (no spaces, dashes or brackets), so that the
    /// number written in a config file is exactly the one stored and compared.
    pub fn parse(s: &str) -> Result<PhoneNumber, PoolError> {
        let digits = s.strip_prefix('+').unwrap_or("");
        if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.starts_with('0') {
            return Err(PoolError::Invalid(format!(
                "{s:?} is not an E.164 number: write '+', the country code and the number, digits only (e.g. +74951234567)"
            )));
        }
        if valid_numbers::known(s) {
            return Ok(PhoneNumber(s.to_owned()));
        }
        let valid = match phonenumber::parse(None, s) {
            Ok(n) if n.format().mode(phonenumber::Mode::E164).to_string() == s => phonenumber::is_valid(&n),
            // The phonenumber crate (0.3.10) drops a leading national digit that looks like the
            // trunk prefix from some international numbers (+7 800 ..., +7 812 ... come out as
            // +7 00 ..., +7 12 ...): check those against the metadata directly.
            _ => valid_by_metadata(s),
        };
        if valid {
            valid_numbers::remember(s);
            Ok(PhoneNumber(s.to_owned()))
        } else {
            Err(PoolError::Invalid(format!("{s:?} is not a valid phone number for its country code")))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the number lies in one of the ranges `pick` chooses from its country's
    /// libphonenumber metadata (e.g. `|d| vec![d.premium_rate()]`).
    pub fn in_ranges(
        &self,
        pick: impl Fn(&phonenumber::metadata::Descriptors) -> Vec<Option<&phonenumber::metadata::Descriptor>>,
    ) -> bool {
        in_ranges(&self.0, pick)
    }

    /// The region whose numbering plan holds this number: libphonenumber's id, an ISO 3166 code
    /// (`RU`, `KZ`: the two share +7) or `001` for non-geographic numbers (satellite phones,
    /// international services). `None` when no plan's number types hold it.
    pub fn region(&self) -> Option<String> {
        region_in_ranges(&self.0, every_type)
    }

    /// The national significant number: the digits after the country code, as dialled inside the
    /// country without its trunk prefix (`4951234567` for `+74951234567`).
    pub fn national_digits(&self) -> String {
        match phonenumber::parse(None, &self.0) {
            Ok(n) if n.format().mode(phonenumber::Mode::E164).to_string() == self.0 => {
                format!("{}{}", "0".repeat(n.national().zeros() as usize), n.national().value())
            }
            // See `parse`: numbers the crate misreads; their national part follows the country code.
            _ => split_code(&self.0).map_or_else(|| self.0.trim_start_matches('+').to_owned(), |(_, n)| n.to_owned()),
        }
    }
}

/// The country calling code (1–3 digits, the first the metadata knows) and the national number.
fn split_code(e164: &str) -> Option<(u16, &str)> {
    let digits = e164.strip_prefix('+')?;
    (1..=3).filter(|n| *n < digits.len()).find_map(|n| {
        let code: u16 = digits[..n].parse().ok()?;
        phonenumber::metadata::DATABASE.by_code(&code).map(|_| (code, &digits[n..]))
    })
}

/// libphonenumber's validity (the national number matches one of its country's number types),
/// read from the metadata without the crate's parser.
fn valid_by_metadata(e164: &str) -> bool {
    in_ranges(e164, every_type)
}

/// Every number type libphonenumber's metadata describes.
fn every_type(d: &phonenumber::metadata::Descriptors) -> Vec<Option<&phonenumber::metadata::Descriptor>> {
    vec![
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ]
}

/// Whether the national number of `e164` is a number of its country (libphonenumber's general
/// pattern) and lies in one of the ranges `pick` chooses from that country's metadata.
fn in_ranges(
    e164: &str,
    pick: impl Fn(&phonenumber::metadata::Descriptors) -> Vec<Option<&phonenumber::metadata::Descriptor>>,
) -> bool {
    region_in_ranges(e164, pick).is_some()
}

/// The region (libphonenumber's id: ISO 3166 `RU`, `KZ`, or `001` for non-geographic numbers
/// such as satellite phones) whose plan holds `e164` in one of the ranges `pick` chooses.
fn region_in_ranges(
    e164: &str,
    pick: impl Fn(&phonenumber::metadata::Descriptors) -> Vec<Option<&phonenumber::metadata::Descriptor>>,
) -> Option<String> {
    let (code, national) = split_code(e164)?;
    let whole = |d: &phonenumber::metadata::Descriptor| {
        d.is_match(national) && d.national_number().find(national).is_some_and(|m| m.end() == national.len())
    };
    phonenumber::metadata::DATABASE.by_code(&code)?.iter().find_map(|meta| {
        let d = meta.descriptors();
        (whole(d.general()) && pick(d).into_iter().flatten().any(whole)).then(|| meta.id().to_owned())
    })
}

/// Numbers that passed libphonenumber's check. Checking costs tens of microseconds (regexes), and
/// the same few thousand pool numbers are parsed again every time a lease or a call is read back
/// from the store; a number's validity never changes, so the answer is kept. Bounded: when full it
/// starts over.
mod valid_numbers {
    use std::collections::HashSet;
    use std::sync::{LazyLock, RwLock};

    const CAPACITY: usize = 100_000;

    static KNOWN: LazyLock<RwLock<HashSet<Box<str>>>> = LazyLock::new(Default::default);

    pub(super) fn known(s: &str) -> bool {
        KNOWN.read().unwrap_or_else(|p| p.into_inner()).contains(s)
    }

    pub(super) fn remember(s: &str) {
        let mut set = KNOWN.write().unwrap_or_else(|p| p.into_inner());
        if set.len() >= CAPACITY {
            set.clear();
        }
        set.insert(s.into());
    }
}

/// Identifies one lease (one visitor holding one number for one stretch of time), unique per pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub u64);

macro_rules! string_newtype_impls {
    ($($t:ident),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    )*};
}
string_newtype_impls!(SiteId, VisitorId, PhoneNumber);

impl TryFrom<String> for SiteId {
    type Error = PoolError;
    fn try_from(s: String) -> Result<Self, PoolError> {
        SiteId::new(s)
    }
}

impl TryFrom<String> for VisitorId {
    type Error = PoolError;
    fn try_from(s: String) -> Result<Self, PoolError> {
        VisitorId::new(s)
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PoolError;
    fn try_from(s: String) -> Result<Self, PoolError> {
        PhoneNumber::parse(&s)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the visitor's session looked like when the lease was granted. The pool stores it with
/// the lease and never reads it; the call matcher and the analytics senders do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionAttrs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ga_session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ym_uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utm_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yclid: Option<String>,
}

/// A visitor's visit to a site. It begins at the first page view (the delay to show a
/// tracking number counts from here, in every tab and across reconnects), stays alive while the
/// visitor is active, and ends `reclaim_after_idle` after the last activity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub first_seen: Ts,
    pub last_seen: Ts,
    /// When the visit's tracking number was taken back for idleness or `max_hold`; from then on
    /// the visit shows `default_after` and gets no new number. Not set when the visitor left
    /// (closed every tab): one who comes back gets a number again.
    pub ended_at: Option<Ts>,
}

/// Why a lease ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No activity in any tab for `reclaim_after_idle`.
    Idle,
    /// The lease reached `max_hold` since it started.
    MaxHold,
    /// The visitor left (closed every tab) and `release_grace` passed.
    Left,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Idle => "idle",
            EndReason::MaxHold => "max_hold",
            EndReason::Left => "left",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<EndReason> {
        match s {
            "idle" => Some(EndReason::Idle),
            "max_hold" => Some(EndReason::MaxHold),
            "left" => Some(EndReason::Left),
            _ => None,
        }
    }
}

/// One lease, live or ended: who held which number, from when to when, with which session.
/// The history is a set of these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub id: LeaseId,
    pub site: SiteId,
    pub visitor: VisitorId,
    pub number: PhoneNumber,
    pub attrs: SessionAttrs,
    pub started_at: Ts,
    /// When the lease ends unless activity extends it (never past `started_at + max_hold`).
    pub expires_at: Ts,
    /// Set once the lease has ended (then equal to the final `expires_at`).
    pub ended_at: Option<Ts>,
    pub end_reason: Option<EndReason>,
    /// The visitor closed every tab; the lease ends at `expires_at` unless they come back.
    pub left: bool,
}

impl Lease {
    /// When the number stops (or stopped) being this visitor's, as far as is known now.
    pub fn end(&self) -> Ts {
        self.ended_at.unwrap_or(self.expires_at)
    }

    /// Whether the visitor held the number at `t` (from `started_at`, up to but not including the end).
    pub fn covers(&self, t: Ts) -> bool {
        self.started_at <= t && t < self.end()
    }

    /// Whether the lease ended (or will have ended) within `[from, before]`.
    pub fn ended_within(&self, from: Ts, before: Ts) -> bool {
        from <= self.end() && self.end() <= before
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `input` and checks it is accepted as `expected`, or refused when `expected` is `None`.
    fn check(input: &str, expected: Option<&str>) {
        let got = PhoneNumber::parse(input).ok();
        assert_eq!(got.as_ref().map(PhoneNumber::as_str), expected, "{input:?}");
    }

    #[test]
    fn a_number_names_its_region() {
        let region = |n: &str| PhoneNumber::parse(n).unwrap().region();
        assert_eq!(region("+79161234567").as_deref(), Some("RU"));
        assert_eq!(region("+77012345678").as_deref(), Some("KZ"), "+7 is shared");
        assert_eq!(region("+442079460958").as_deref(), Some("GB"));
        assert_eq!(region("+881612345678").as_deref(), Some("001"), "Iridium satellite phones belong to no country");
    }

    #[test]
    fn phone_numbers_must_be_canonical_e164_and_valid() {
        check("+74951234567", Some("+74951234567"));
        check("+442079460958", Some("+442079460958"));
        check("+12025550143", Some("+12025550143"));
        // Russian toll-free and St Petersburg numbers (the phonenumber crate misreads +78...).
        check("+78001234567", Some("+78001234567"));
        check("+78123456789", Some("+78123456789"));
        check("+76001234567", None); // no Russian number starts with 6
        check("74951234567", None); // no '+'
        check("+7 495 123-45-67", None); // formatting
        check("+7495123456", None); // too short for Moscow
        check("+0495123456", None); // no country code 0
        check("+7495123456789012", None); // longer than 15 digits
        check("+74951234567\n", None);
        check("", None);
    }

    #[test]
    fn national_digits_drop_the_country_code() {
        assert_eq!(PhoneNumber::parse("+74951234567").unwrap().national_digits(), "4951234567");
        assert_eq!(PhoneNumber::parse("+442079460958").unwrap().national_digits(), "2079460958");
        assert_eq!(PhoneNumber::parse("+390612345678").unwrap().national_digits(), "0612345678");
        assert_eq!(PhoneNumber::parse("+78001234567").unwrap().national_digits(), "8001234567");
    }

    #[test]
    fn ids_are_checked_on_construction() {
        assert!(SiteId::new("shop-1_a").is_ok());
        for bad in ["", "Shop", "a:b", "a b", &"x".repeat(65)] {
            assert!(SiteId::new(bad).is_err(), "{bad:?}");
        }
        assert!(VisitorId::new("1197596843.1673515099").is_ok());
        for bad in ["", "a:b", "a/b", "é", &"x".repeat(129)] {
            assert!(VisitorId::new(bad).is_err(), "{bad:?}");
        }
        // Deserializing goes through the same checks.
        assert!(serde_json::from_str::<SiteId>("\"a:b\"").is_err());
        assert!(serde_json::from_str::<PhoneNumber>("\"+7495\"").is_err());
    }

    #[test]
    fn a_lease_covers_its_start_but_not_its_end() {
        let lease = Lease {
            id: LeaseId(1),
            site: SiteId::new("a").unwrap(),
            visitor: VisitorId::new("v").unwrap(),
            number: PhoneNumber::parse("+74951234567").unwrap(),
            attrs: SessionAttrs::default(),
            started_at: Ts(100),
            expires_at: Ts(200),
            ended_at: None,
            end_reason: None,
            left: false,
        };
        assert!(!lease.covers(Ts(99)) && lease.covers(Ts(100)) && lease.covers(Ts(199)) && !lease.covers(Ts(200)));
        assert!(lease.ended_within(Ts(150), Ts(200)) && !lease.ended_within(Ts(201), Ts(300)));
    }
}
