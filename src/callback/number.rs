//! The number a visitor leaves in the callback form: read with libphonenumber's rules against
//! the site's default region (so "8 (916) 123-45-67" works on a Russian site), refused with a
//! message safe to show in the form, and checked against the site's blocklist (numbers and
//! prefixes) and against premium-rate and other number types a company's PBX must not dial.

use std::collections::HashSet;

use callpool_pool::PhoneNumber;

use super::Reason;

/// Why a number was refused, in words for the form (never an internal detail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// `Invalid`, `NotCallable` or `Blocked`.
    pub reason: Reason,
    pub message: String,
}

/// Reads a callback number typed by a visitor; `region` is the site's ISO country code (`RU`).
pub fn read(raw: &str, region: phonenumber::country::Id) -> Result<PhoneNumber, Refused> {
    let invalid = || Refused {
        reason: Reason::Invalid,
        message: "Please enter a phone number we can call, with its area code.".into(),
    };
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 40 || raw.chars().any(|c| c.is_alphabetic()) {
        return Err(invalid());
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    // The E.164 spellings the visitor may have meant, most likely first. (Built here rather than
    // with the phonenumber crate's parser, which drops a leading 8 from Russian numbers such as
    // 8 (812) ... and +7 800 ...; validity is then checked by `PhoneNumber::parse`.)
    let mut candidates = Vec::new();
    if raw.starts_with('+') {
        candidates.push(format!("+{digits}"));
    } else if let Some(meta) = phonenumber::metadata::DATABASE.by_id(region.as_ref()) {
        let code = meta.country_code().to_string();
        if let Some(national) = meta.national_prefix().and_then(|p| digits.strip_prefix(p)) {
            candidates.push(format!("+{code}{national}"));
        }
        candidates.push(format!("+{code}{digits}"));
        if digits.starts_with(&code) {
            candidates.push(format!("+{digits}"));
        }
    }
    let number = candidates.iter().find_map(|c| PhoneNumber::parse(c).ok()).ok_or_else(invalid)?;
    if not_callable(&number) {
        return Err(Refused {
            reason: Reason::NotCallable,
            message: "We cannot call this kind of number; please enter a mobile or landline number.".into(),
        });
    }
    Ok(number)
}

/// Premium-rate, shared-cost and pager numbers: a company's PBX must not dial them for a stranger.
fn not_callable(n: &PhoneNumber) -> bool {
    n.in_ranges(|d| vec![d.premium_rate(), d.shared_cost(), d.pager()])
}

/// Numbers and prefixes a site never calls back (abuse reports, premium ranges of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blocklist {
    numbers: HashSet<PhoneNumber>,
    /// E.164 prefixes such as "+7809".
    prefixes: Vec<String>,
}

impl Blocklist {
    /// Entries are E.164 numbers, or prefixes ending in `*` (`+7809*`); every bad entry is named.
    pub fn parse(entries: &[String]) -> Result<Blocklist, Vec<String>> {
        let mut list = Blocklist::default();
        let mut problems = Vec::new();
        for e in entries {
            if let Some(prefix) = e.strip_suffix('*') {
                let digits = prefix.strip_prefix('+').unwrap_or("");
                if digits.is_empty() || digits.len() > 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    problems.push(format!("{e:?} is not a prefix such as \"+7809*\""));
                } else {
                    list.prefixes.push(prefix.to_owned());
                }
            } else {
                match PhoneNumber::parse(e) {
                    Ok(n) => {
                        list.numbers.insert(n);
                    }
                    Err(_) => problems.push(format!("{e:?} is neither an E.164 number nor a prefix ending in '*'")),
                }
            }
        }
        if problems.is_empty() {
            Ok(list)
        } else {
            Err(problems)
        }
    }

    pub fn check(&self, n: &PhoneNumber) -> Result<(), Refused> {
        if self.numbers.contains(n) || self.prefixes.iter().any(|p| n.as_str().starts_with(p.as_str())) {
            Err(Refused { reason: Reason::Blocked, message: "We cannot call this number back.".into() })
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use phonenumber::country::Id;

    use super::*;

    fn check(raw: &str, region: Id, expected: Result<&str, &str>) {
        let got = read(raw, region).map(|n| n.to_string()).map_err(|r| r.reason.as_str());
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "{raw:?} in {region:?}");
    }

    #[test]
    fn numbers_are_read_with_the_sites_region() {
        check("8 (916) 123-45-67", Id::RU, Ok("+79161234567"));
        check("+7 916 123 45 67", Id::RU, Ok("+79161234567"));
        check("9161234567", Id::RU, Ok("+79161234567"));
        check("8 (812) 123-45-67", Id::RU, Ok("+78121234567"));
        check("+7 800 123-45-67", Id::RU, Ok("+78001234567"));
        check("020 7946 0958", Id::GB, Ok("+442079460958"));
        check("+44 20 7946 0958", Id::RU, Ok("+442079460958"));
        check("123", Id::RU, Err("invalid"));
        check("call me", Id::RU, Err("invalid"));
        check("", Id::RU, Err("invalid"));
        check("8 (916) 123-45-67-89-01-23-45-67-89-01-23-45", Id::RU, Err("invalid"));
        // Premium-rate ranges: a form must not make the PBX dial them.
        check("0901 234 5678", Id::GB, Err("not_callable"));
        check("8 809 123 45 67", Id::RU, Err("not_callable"));
    }

    #[test]
    fn blocklists_hold_numbers_and_prefixes() {
        let list = Blocklist::parse(&["+79161234567".into(), "+7495*".into()]).unwrap();
        let n = |s: &str| PhoneNumber::parse(s).unwrap();
        assert_eq!(list.check(&n("+79161234567")).unwrap_err().reason, Reason::Blocked);
        assert_eq!(list.check(&n("+74951234567")).unwrap_err().reason, Reason::Blocked);
        assert_eq!(list.check(&n("+79161234568")), Ok(()));
        let e = Blocklist::parse(&["7916".into(), "+7a*".into()]).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
    }
}
