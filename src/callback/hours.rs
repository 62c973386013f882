//! A site's working hours: per weekday opening intervals in the site's time zone, and holiday
//! dates on which it stays closed. Pure: given an instant, says whether the site is open and
//! when it opens next, correct across weekends, holidays and daylight-saving changes (a local
//! opening time that a spring-forward skips opens at the first instant after the gap).

use std::collections::{BTreeMap, BTreeSet};

use callpool_pool::Ts;
use chrono::{Datelike, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;

const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// When a site takes calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkingHours {
    tz: Tz,
    /// Monday first: the day's opening intervals `[open, close)`, sorted, not overlapping.
    days: [Vec<(NaiveTime, NaiveTime)>; 7],
    holidays: BTreeSet<NaiveDate>,
}

impl WorkingHours {
    /// Always open (a site that gives no hours).
    pub fn always(tz: Tz) -> WorkingHours {
        let all = vec![(NaiveTime::MIN, NaiveTime::MIN)];
        WorkingHours { tz, days: std::array::from_fn(|_| all.clone()), holidays: BTreeSet::new() }
    }

    /// Reads `{"mon": "09:00-18:00", "sat": "10:00-14:00, 15:00-17:00", ...}` (a day left out or
    /// given as "closed" is closed; "00:00-24:00" is the whole day) and holiday dates
    /// (`YYYY-MM-DD`). Every problem is listed, naming the day or date.
    pub fn parse(tz: Tz, spec: &BTreeMap<String, String>, holidays: &[String]) -> Result<WorkingHours, Vec<String>> {
        let mut problems = Vec::new();
        let mut days: [Vec<(NaiveTime, NaiveTime)>; 7] = Default::default();
        for (day, text) in spec {
            let Some(i) = WEEKDAYS.iter().position(|d| d == &day.to_ascii_lowercase().as_str()) else {
                problems.push(format!("{day:?} is not a weekday (mon, tue, wed, thu, fri, sat, sun)"));
                continue;
            };
            if text.trim().eq_ignore_ascii_case("closed") {
                continue;
            }
            for part in text.split(',') {
                let part = part.trim();
                let parsed = part.split_once('-').and_then(|(a, b)| {
                    let open = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
                    let close = match b.trim() {
                        "24:00" => NaiveTime::MIN,
                        b => NaiveTime::parse_from_str(b, "%H:%M").ok()?,
                    };
                    Some((open, close))
                });
                match parsed {
                    // A close of 00:00 means the end of the day.
                    Some((open, close)) if close == NaiveTime::MIN || open < close => days[i].push((open, close)),
                    Some(_) => problems.push(format!("{day}: {part:?} closes before it opens")),
                    None => problems.push(format!("{day}: {part:?} is not HH:MM-HH:MM")),
                }
            }
            days[i].sort();
            let overlapping = days[i].windows(2).any(|w| w[0].1 == NaiveTime::MIN || w[0].1 > w[1].0);
            if overlapping {
                problems.push(format!("{day}: the intervals overlap"));
            }
        }
        let mut dates = BTreeSet::new();
        for h in holidays {
            match NaiveDate::parse_from_str(h, "%Y-%m-%d") {
                Ok(d) => {
                    dates.insert(d);
                }
                Err(_) => problems.push(format!("holiday {h:?} is not a date such as 2027-01-01")),
            }
        }
        if problems.is_empty() {
            Ok(WorkingHours { tz, days, holidays: dates })
        } else {
            Err(problems)
        }
    }

    /// The opening intervals of a local date, as instants (none on a holiday).
    fn intervals(&self, date: NaiveDate) -> Vec<(Ts, Ts)> {
        if self.holidays.contains(&date) {
            return Vec::new();
        }
        let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
        self.days[date.weekday().num_days_from_monday() as usize]
            .iter()
            .map(|(open, close)| {
                let end = if *close == NaiveTime::MIN { next.and_time(NaiveTime::MIN) } else { date.and_time(*close) };
                (self.instant(date.and_time(*open)), self.instant(end))
            })
            .filter(|(a, b)| a < b)
            .collect()
    }

    /// A local time as an instant: the earlier of two in a fall-back hour, the first instant
    /// after the gap in a spring-forward hour.
    fn instant(&self, local: NaiveDateTime) -> Ts {
        let mut t = local;
        for _ in 0..180 {
            match self.tz.from_local_datetime(&t) {
                LocalResult::Single(x) | LocalResult::Ambiguous(x, _) => return Ts::from_millis(x.timestamp_millis()),
                LocalResult::None => t += chrono::Duration::minutes(1),
            }
        }
        Ts::from_millis(local.and_utc().timestamp_millis())
    }

    fn local_date(&self, t: Ts) -> NaiveDate {
        t.to_chrono().map_or(NaiveDate::MIN, |u| u.with_timezone(&self.tz).date_naive())
    }

    /// Whether the site takes calls at `t`.
    pub fn is_open(&self, t: Ts) -> bool {
        let today = self.local_date(t);
        // No interval runs past its day's 24:00, so today's intervals decide.
        self.intervals(today).iter().any(|(a, b)| *a <= t && t < *b)
    }

    /// `t` if the site is open then, else the next moment it opens (within a year), else `None`.
    pub fn next_open(&self, t: Ts) -> Option<Ts> {
        let mut date = self.local_date(t);
        for _ in 0..=366 {
            for (a, b) in self.intervals(date) {
                if t < b {
                    return Some(a.max(t));
                }
            }
            date = date.checked_add_days(Days::new(1))?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(tz: Tz, spec: &[(&str, &str)], holidays: &[&str]) -> WorkingHours {
        let spec: BTreeMap<String, String> = spec.iter().map(|(d, h)| (d.to_string(), h.to_string())).collect();
        let holidays: Vec<String> = holidays.iter().map(|h| h.to_string()).collect();
        WorkingHours::parse(tz, &spec, &holidays).unwrap()
    }

    fn at(tz: Tz, local: &str) -> Ts {
        let t = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M").unwrap();
        Ts::from_millis(tz.from_local_datetime(&t).earliest().unwrap().timestamp_millis())
    }

    fn utc(s: &str) -> Ts {
        Ts::from_millis(chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis())
    }

    /// Checks `next_open` from local `from` is local `expected` (`None`: open never).
    fn check(h: &WorkingHours, from: &str, expected: Option<&str>) {
        let tz = h.tz;
        assert_eq!(h.next_open(at(tz, from)), expected.map(|e| at(tz, e)), "from {from}");
    }

    const WEEKDAYS_9_18: [(&str, &str); 5] = [
        ("mon", "09:00-18:00"),
        ("tue", "09:00-18:00"),
        ("wed", "09:00-18:00"),
        ("thu", "09:00-18:00"),
        ("fri", "09:00-18:00"),
    ];

    #[test]
    fn weekdays_weekends_and_holidays() {
        let tz = chrono_tz::Europe::Moscow;
        let h = hours(tz, &WEEKDAYS_9_18, &["2027-01-01", "2027-01-04"]);
        // 2026-12-28 is a Monday.
        check(&h, "2026-12-28 10:00", Some("2026-12-28 10:00"));
        check(&h, "2026-12-28 08:00", Some("2026-12-28 09:00"));
        check(&h, "2026-12-28 18:00", Some("2026-12-29 09:00"));
        // Thursday evening → Friday is a holiday, then the weekend, then Monday is a holiday too.
        check(&h, "2026-12-31 19:00", Some("2027-01-05 09:00"));
        assert!(h.is_open(at(tz, "2026-12-28 17:59")) && !h.is_open(at(tz, "2026-12-28 18:00")));
        assert!(!h.is_open(at(tz, "2027-01-01 12:00")), "a holiday");
        assert!(!h.is_open(at(tz, "2027-01-02 12:00")), "a Saturday");
    }

    #[test]
    fn the_same_instant_is_judged_in_each_sites_own_time_zone() {
        // 06:30 UTC on a Monday: 09:30 in Moscow (open), 22:30 the day before in Los Angeles.
        let t = utc("2026-12-28T06:30:00Z");
        let moscow = hours(chrono_tz::Europe::Moscow, &WEEKDAYS_9_18, &[]);
        let la = hours(chrono_tz::America::Los_Angeles, &WEEKDAYS_9_18, &[]);
        assert!(moscow.is_open(t));
        assert!(!la.is_open(t));
        assert_eq!(la.next_open(t), Some(utc("2026-12-28T17:00:00Z")), "09:00 PST");
    }

    #[test]
    fn split_days_and_whole_days() {
        let tz = chrono_tz::UTC;
        let h = hours(tz, &[("sat", "10:00-13:00, 14:00-17:00"), ("sun", "00:00-24:00")], &[]);
        // 2027-01-02 is a Saturday.
        check(&h, "2027-01-02 13:30", Some("2027-01-02 14:00"));
        check(&h, "2027-01-02 17:00", Some("2027-01-03 00:00"));
        assert!(h.is_open(at(tz, "2027-01-03 23:59")));
        check(&h, "2027-01-04 00:00", Some("2027-01-09 10:00"));
        assert_eq!(WorkingHours::always(tz).next_open(at(tz, "2027-01-04 03:00")), Some(at(tz, "2027-01-04 03:00")));
        let closed = WorkingHours::parse(tz, &BTreeMap::new(), &[]).unwrap();
        assert_eq!(closed.next_open(at(tz, "2027-01-04 03:00")), None, "never open");
    }

    #[test]
    fn daylight_saving_changes() {
        let tz = chrono_tz::Europe::Berlin;
        // 2027-03-28 (Sunday): 02:00 → 03:00. An opening at 02:30 opens at 03:00 local.
        let h = hours(tz, &[("sun", "02:30-05:00")], &[]);
        assert_eq!(h.next_open(at(tz, "2027-03-28 00:00")), Some(utc("2027-03-28T01:00:00Z")));
        // 2027-10-31 (Sunday): 03:00 → 02:00. An opening at 02:30 opens at the first 02:30 (CEST).
        let h = hours(tz, &[("sun", "02:30-05:00")], &[]);
        assert_eq!(h.next_open(at(tz, "2027-10-31 00:00")), Some(utc("2027-10-31T00:30:00Z")));
        // Opening 09:00 the day after the change is 09:00 local, not 08:00 or 10:00.
        let h = hours(tz, &[("mon", "09:00-18:00")], &[]);
        assert_eq!(h.next_open(utc("2027-03-28T12:00:00Z")), Some(utc("2027-03-29T07:00:00Z")));
    }

    #[test]
    fn bad_hours_are_named() {
        let spec: BTreeMap<String, String> = [
            ("mon".to_string(), "9-18".to_string()),
            ("tue".to_string(), "18:00-09:00".to_string()),
            ("wed".to_string(), "09:00-13:00, 12:00-18:00".to_string()),
            ("funday".to_string(), "09:00-18:00".to_string()),
        ]
        .into();
        let e = WorkingHours::parse(chrono_tz::UTC, &spec, &["2027-13-01".to_string()]).unwrap_err();
        assert_eq!(e.len(), 5, "{e:?}");
        assert!(e.iter().any(|p| p.starts_with("mon:")) && e.iter().any(|p| p.contains("closes before it opens")));
        assert!(e.iter().any(|p| p.contains("overlap")) && e.iter().any(|p| p.contains("\"funday\"")));
        assert!(e.iter().any(|p| p.contains("2027-13-01")));
    }
}
