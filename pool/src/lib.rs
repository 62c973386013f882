//! callpool's number pool: which tracking number each visitor of each site holds, and who held
//! a number at any moment of the recent past.
//!
//! [`rules`] is the pure core (no clock, no I/O). [`Pool`] is what the service uses: the same
//! operations, asynchronous, over one of two stores that behave the same —
//! [`embedded::EmbeddedPool`] (the rules in memory, every change written to a redb file before
//! the answer) and [`redis_store::RedisPool`] (every operation one atomic Lua script, so any
//! number of nodes can share one pool).
#![forbid(unsafe_code)]

pub mod embedded;
pub mod redis_store;
pub mod rules;
pub mod types;

use std::time::Duration;

pub use rules::{Due, Grant, NumberSpec, PoolSpec, SiteRules, SiteStatus, Target, Viewed};
pub use types::{EndReason, Lease, LeaseId, PhoneNumber, SessionAttrs, SiteId, Ts, Visit, VisitorId};

/// What can go wrong at the pool's boundary; each variant is something a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// An identifier or value did not pass validation.
    #[error("{0}")]
    Invalid(String),
    /// The site is not configured (or was removed).
    #[error("unknown site {0}")]
    UnknownSite(SiteId),
    /// The store cannot be reached right now; the visitor keeps the default number.
    #[error("the pool store is unavailable: {0}")]
    Unavailable(#[source] redis::RedisError),
    /// The store answered with something the pool cannot read, or failed to write.
    #[error("pool store error: {0}")]
    Storage(String),
}

/// The pool over one of its two stores. Every operation takes the current time from the caller.
#[derive(Clone)]
pub enum Pool {
    Embedded(embedded::EmbeddedPool),
    Redis(redis_store::RedisPool),
}

macro_rules! dispatch {
    ($self:ident . $op:ident ( $($arg:expr),* )) => {
        match $self {
            Pool::Embedded(p) => p.$op($($arg),*).await,
            Pool::Redis(p) => p.$op($($arg),*).await,
        }
    };
}

impl Pool {
    /// Brings the store in line with the configuration (numbers, sites, history length).
    pub async fn configure(&self, spec: &PoolSpec, now: Ts) -> Result<(), PoolError> {
        dispatch!(self.configure(spec, now))
    }

    /// A lease for the visitor (the one it holds, extended, or a fresh one), or `Exhausted`.
    pub async fn acquire(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
    ) -> Result<Grant, PoolError> {
        dispatch!(self.acquire(site, visitor, attrs, now))
    }

    /// A page view that is also activity: the visit (refreshed, or begun now: `began`) and the
    /// visitor's live lease, extended, if it holds one. One round trip.
    pub async fn view(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Viewed, PoolError> {
        dispatch!(self.view(site, visitor, now))
    }

    /// A lease once the visit is `delay` old (the visitor's delay ran out), else when it will
    /// be, or that its lease ended; a visitor without a live visit begins one. One round trip.
    pub async fn acquire_due(
        &self,
        site: &SiteId,
        visitor: &VisitorId,
        attrs: &SessionAttrs,
        now: Ts,
        delay: Duration,
    ) -> Result<Due, PoolError> {
        dispatch!(self.acquire_due(site, visitor, attrs, now, delay))
    }

    /// The visitor's visit if it is alive, without counting as activity.
    pub async fn current_visit(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Visit>, PoolError> {
        dispatch!(self.current_visit(site, visitor, now))
    }

    /// Activity: keeps the visit alive and extends the visitor's live lease; `None` if it holds none.
    pub async fn touch(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        dispatch!(self.touch(site, visitor, now))
    }

    /// The visitor left: its lease ends after the site's `release_grace` unless it comes back.
    pub async fn leave(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        dispatch!(self.leave(site, visitor, now))
    }

    /// The visitor's live lease, without counting as activity.
    pub async fn current(&self, site: &SiteId, visitor: &VisitorId, now: Ts) -> Result<Option<Lease>, PoolError> {
        dispatch!(self.current(site, visitor, now))
    }

    /// Ends the leases expired by `now` (each exactly once, whichever node asks) and trims the history.
    pub async fn reap(&self, now: Ts) -> Result<Vec<Lease>, PoolError> {
        dispatch!(self.reap(now))
    }

    /// Gives numbers unused for `shrink_after` back to the inventory; returns them sorted.
    pub async fn shrink(&self, now: Ts) -> Result<Vec<(SiteId, PhoneNumber)>, PoolError> {
        dispatch!(self.shrink(now))
    }

    /// Who held `number` at `t`.
    pub async fn holder_at(&self, number: &PhoneNumber, t: Ts) -> Result<Option<Lease>, PoolError> {
        dispatch!(self.holder_at(number, t))
    }

    /// Leases of `number` that ended within `window` before `before`, latest first.
    pub async fn last_holders(
        &self,
        number: &PhoneNumber,
        before: Ts,
        window: Duration,
    ) -> Result<Vec<Lease>, PoolError> {
        dispatch!(self.last_holders(number, before, window))
    }

    /// The leases of `number` that started at or before `at`, latest first, down to and including
    /// the first that ended before `at - window` (see [`rules::PoolState::leases_before`]).
    pub async fn leases_before(&self, number: &PhoneNumber, at: Ts, window: Duration) -> Result<Vec<Lease>, PoolError> {
        dispatch!(self.leases_before(number, at, window))
    }

    /// The site's working set now; `None` for an unknown site.
    pub async fn status(&self, site: &SiteId, now: Ts) -> Result<Option<SiteStatus>, PoolError> {
        dispatch!(self.status(site, now))
    }

    /// Whether the store knows `site` at all (configured now or before): one key look-up, for
    /// checking every reaper pass that the store still holds the configuration.
    pub async fn knows_site(&self, site: &SiteId) -> Result<bool, PoolError> {
        dispatch!(self.knows_site(site))
    }

    /// Every site the pool has known, configured now or before (a site removed from the
    /// configuration stays, inactive, with its history).
    pub async fn sites(&self) -> Result<Vec<SiteId>, PoolError> {
        dispatch!(self.sites())
    }

    /// Which store this is, for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Pool::Embedded(_) => "embedded",
            Pool::Redis(_) => "redis",
        }
    }

    /// Whether the store answers now.
    pub async fn ping(&self) -> Result<(), PoolError> {
        match self {
            Pool::Embedded(_) => Ok(()),
            Pool::Redis(p) => p.ping().await,
        }
    }
}
