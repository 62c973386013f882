//! The abuse limits. A limit is written `"N/period"` (`"7/15m"`: at most 7 requests in any 15
//! minutes). Per phone number and per site they are exact sliding windows kept in the store, so
//! they hold across every node of a cluster (checked and counted in the same atomic step that
//! stores the request); per client address and per visitor they are `governor` limiters on each
//! node (GCRA: a burst of N, refilled at N per period), a cheap first line that never touches
//! the store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use callpool_pool::SiteId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// At most `count` requests in any `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub count: u32,
    pub period: Duration,
}

impl Window {
    /// Reads `"N/period"` (`"7/15m"`, `"15/24h"`).
    pub fn parse(s: &str) -> Result<Window, String> {
        let (n, p) = s.split_once('/').ok_or_else(|| format!("{s:?} is not N/period such as \"7/15m\""))?;
        let count = n
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{s:?}: {n:?} is not a count of at least 1"))?;
        let period = humantime::parse_duration(p.trim())
            .ok()
            .filter(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(366 * 86_400))
            .ok_or_else(|| format!("{s:?}: {p:?} is not a period between 1s and 366d such as \"15m\""))?;
        Ok(Window { count, period })
    }

    fn quota(self) -> Quota {
        let count = NonZeroU32::new(self.count).unwrap_or(NonZeroU32::MIN);
        let every = (self.period / self.count).max(Duration::from_nanos(1));
        Quota::with_period(every).map_or_else(|| Quota::per_second(count), |q| q.allow_burst(count))
    }
}

/// A site's limits, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Per phone number (exact, shared by the cluster); default 7/15m, 9/1h, 15/24h.
    pub per_number: Vec<Window>,
    /// A number that uses up its longest `per_number` window is refused this long (default 24h).
    pub number_ban: Duration,
    /// Per site (exact, shared by the cluster); default 100/1h.
    pub per_site: Vec<Window>,
    /// Per client address on each node; default 5/15m, 20/24h.
    pub per_ip: Vec<Window>,
    /// Per visitor on each node; default 3/15m, 10/24h.
    pub per_visitor: Vec<Window>,
}

impl Limits {
    /// What one source (a client address; IPv6: its /64) may use of the site's windows, across
    /// the cluster: half of each `per_site` window (rounded up), so that no one source alone can
    /// close the form for everyone.
    pub fn per_source(&self) -> Vec<Window> {
        self.per_site.iter().map(|w| Window { count: w.count.div_ceil(2), period: w.period }).collect()
    }

    /// The longest per-site window: how long a site's (and a source's) requests are remembered.
    pub fn site_memory(&self) -> Duration {
        self.per_site.iter().map(|w| w.period).max().unwrap_or(Duration::ZERO)
    }

    /// The longest per-number window: how long a number's requests are remembered.
    pub fn number_memory(&self) -> Duration {
        self.per_number.iter().map(|w| w.period).max().unwrap_or(Duration::ZERO)
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Ip,
    Visitor,
    Number,
    /// The number used up its longest window and is refused for `number_ban`.
    Banned,
    Site,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ip => "ip",
            Scope::Visitor => "visitor",
            Scope::Number => "number",
            Scope::Banned => "banned",
            Scope::Site => "site",
        }
    }
}

struct SiteLimiters {
    limits: Limits,
    per_ip: Vec<DefaultKeyedRateLimiter<IpAddr>>,
    per_visitor: Vec<DefaultKeyedRateLimiter<String>>,
}

/// This node's per-address and per-visitor limiters, per site.
pub struct NodeLimiters {
    sites: HashMap<SiteId, Arc<SiteLimiters>>,
}

impl NodeLimiters {
    /// The limiters of `sites`; a site whose limits are the same as in `before` keeps its
    /// limiters (and what they have counted).
    pub fn new<'a>(
        sites: impl Iterator<Item = (&'a SiteId, &'a Limits)>,
        before: Option<&NodeLimiters>,
    ) -> NodeLimiters {
        let sites = sites
            .map(|(id, l)| {
                let kept = before.and_then(|b| b.sites.get(id)).filter(|k| &k.limits == l);
                let limiters = kept.cloned().unwrap_or_else(|| {
                    let per_ip = l.per_ip.iter().map(|w| RateLimiter::keyed(w.quota())).collect();
                    let per_visitor = l.per_visitor.iter().map(|w| RateLimiter::keyed(w.quota())).collect();
                    Arc::new(SiteLimiters { limits: l.clone(), per_ip, per_visitor })
                });
                (id.clone(), limiters)
            })
            .collect();
        NodeLimiters { sites }
    }

    /// Counts a request from `ip` (and `visitor`, when known); refuses it when a limit is used up.
    pub fn check(&self, site: &SiteId, ip: Option<IpAddr>, visitor: Option<&str>) -> Result<(), Scope> {
        let Some(l) = self.sites.get(site) else { return Ok(()) };
        if let Some(ip) = ip.map(client_key) {
            if l.per_ip.iter().any(|r| r.check_key(&ip).is_err()) {
                return Err(Scope::Ip);
            }
        }
        if let Some(v) = visitor {
            let v = v.to_owned();
            if l.per_visitor.iter().any(|r| r.check_key(&v).is_err()) {
                return Err(Scope::Visitor);
            }
        }
        Ok(())
    }

    /// Forgets keys that have been quiet long enough to be full again.
    pub fn retain_recent(&self) {
        for l in self.sites.values() {
            l.per_ip.iter().for_each(|r| r.retain_recent());
            l.per_visitor.iter().for_each(|r| r.retain_recent());
        }
    }
}

/// The part of a client's address that names one client, for per-address limits: an IPv4
/// address, or an IPv6 /64 (one customer's network; a single host can take any address in it).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_its_64() {
        let key = |s: &str| client_key(s.parse().unwrap()).to_string();
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"), "one /64, one client");
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
    }

    #[test]
    fn windows_parse_and_refuse_nonsense() {
        assert_eq!(Window::parse("7/15m"), Ok(Window { count: 7, period: Duration::from_secs(900) }));
        assert_eq!(Window::parse(" 15 / 24h "), Ok(Window { count: 15, period: Duration::from_secs(86_400) }));
        for bad in ["7", "0/15m", "x/15m", "7/", "7/soon", "7/0s", "7/400d"] {
            assert!(Window::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn node_limiters_count_per_address_and_per_visitor() {
        let site = SiteId::new("shop").unwrap();
        let limits = Limits {
            per_number: vec![],
            number_ban: Duration::ZERO,
            per_site: vec![],
            per_ip: vec![Window::parse("3/1h").unwrap()],
            per_visitor: vec![Window::parse("2/1h").unwrap()],
        };
        let l = NodeLimiters::new([(&site, &limits)].into_iter(), None);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert_eq!(l.check(&site, Some(a), Some("v1")), Ok(()));
        assert_eq!(l.check(&site, Some(a), Some("v1")), Ok(()));
        assert_eq!(l.check(&site, Some(a), Some("v1")), Err(Scope::Visitor), "the visitor's third");
        assert_eq!(l.check(&site, Some(a), Some("v2")), Err(Scope::Ip), "the address's fourth");
        assert_eq!(l.check(&site, Some(b), Some("v2")), Ok(()), "another address, another visitor");
        assert_eq!(l.check(&SiteId::new("other").unwrap(), Some(a), None), Ok(()), "no limits configured");
    }
}
