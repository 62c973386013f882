//! The hub: which tabs of which visitors this node holds, and the visitor timeline — the site's
//! number first, the tracking number once `delay_to_show` has passed since the visit's first
//! page view, `default_after` once the pool took the number back.
//!
//! Every decision that must hold across tabs and nodes lives in the pool (the visit's first view,
//! the lease and its expiry); the hub only schedules the moment to ask and relays the answer
//! through the bus to every tab. A lock is never held across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callpool_pool::{Due, EndReason, Grant, Lease, PhoneNumber, PoolError, SessionAttrs, SiteId, VisitorId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::callback::limits::Window;
use crate::config::SiteConfig;
use crate::live::bus::{Event, ShowNumber};
use crate::live::protocol::{Hello, ServerMsg, Shown, MAX_TABS};

/// How many messages wait for a slow tab before it is closed.
pub const TAB_QUEUE: usize = 16;
/// Activity from one visitor reaches the pool at most this often per node (or a quarter of the
/// site's `reclaim_after_idle`, if that is shorter).
const TOUCH_EVERY: Duration = Duration::from_secs(10);
/// A node that did not begin the visit waits this much longer than the delay before it asks the
/// pool itself: normally the node that began the visit has asked by then, and its answer came
/// over the bus, so one node (not every node with a tab) does the work of each swap.
const FOLLOWER_GRACE_MS: i64 = 250;
/// When the pool is exhausted or unavailable, ask again after this long.
const RETRY_AFTER: Duration = Duration::from_secs(30);

type Key = (SiteId, VisitorId);

/// A message for one tab (already JSON: serialized once for all the visitor's tabs, and small in
/// the queue), or the order to close it.
#[derive(Debug)]
pub enum ToTab {
    Send(Arc<str>),
    /// The tab does not read fast enough.
    TooSlow,
}

/// This node's tabs of one visitor.
struct VisitorTabs {
    tabs: HashMap<u64, mpsc::Sender<ToTab>>,
    /// The session of the visitor's first tab on this node: what a lease granted here carries.
    attrs: SessionAttrs,
    /// The pending "ask for a number" timer.
    timer: Option<tokio::task::AbortHandle>,
    last_touch: Option<tokio::time::Instant>,
    shown: Option<(PhoneNumber, Shown)>,
    /// The most tabs this visitor had open here at once (recorded with the visit).
    most_tabs: u32,
    /// The client address of the visitor's first tab here (IPv6: its /64), for the site's
    /// `leases_per_address`; `None` for a trusted proxy's own address (no visitor to tell apart).
    address: Option<IpAddr>,
}

pub struct Hub {
    app: Arc<App>,
    visitors: Mutex<HashMap<Key, VisitorTabs>>,
    next_tab: AtomicU64,
    /// When leases were granted here to each (site, address), oldest first.
    grants: Mutex<HashMap<(SiteId, IpAddr), VecDeque<Instant>>>,
}

/// A visitor's tabs' queues, taken under the hub's lock to be sent to after it is released.
type Queues = Vec<(u64, mpsc::Sender<ToTab>)>;

fn queues(local: &VisitorTabs) -> Queues {
    local.tabs.iter().map(|(id, tx)| (*id, tx.clone())).collect()
}

/// Queues `msg` (serialized once) for each of `tabs`; returns the tabs whose queue is full or
/// closed (a full one is told it is too slow; it resyncs when it reconnects).
fn fan_out(tabs: Queues, msg: &ServerMsg) -> Vec<u64> {
    let json: Arc<str> = serde_json::to_string(msg).expect("server messages serialize").into();
    let mut gone = Vec::new();
    for (id, tx) in tabs {
        match tx.try_send(ToTab::Send(json.clone())) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                let _ = tx.try_send(ToTab::TooSlow);
                gone.push(id);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
        }
    }
    gone
}

/// A registered tab: its id and its queue.
pub struct Tab {
    pub site: SiteId,
    pub visitor: VisitorId,
    pub id: u64,
    pub rx: mpsc::Receiver<ToTab>,
}

impl Hub {
    pub fn new(app: Arc<App>) -> Arc<Hub> {
        Arc::new(Hub {
            app,
            visitors: Mutex::new(HashMap::new()),
            next_tab: AtomicU64::new(1),
            grants: Mutex::new(HashMap::new()),
        })
    }

    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Delivers what the bus carries to this node's tabs, and announces every lease the reaper
    /// ended, until `shutdown`.
    pub async fn run(self: Arc<Self>, mut ended: tokio::sync::mpsc::Receiver<Lease>, shutdown: CancellationToken) {
        let mut shows = self.app.bus.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                event = shows.recv() => match event {
                    Ok(Event::ShowNumber(show)) => self.deliver(show),
                    Ok(Event::Left { site, visitor }) => self.still_here(&site, &visitor).await,
                    Ok(Event::Callback { site, visitor, message }) => self.tell(&site, &visitor, &message),
                    Ok(Event::Resync) => self.resync().await,
                    // The reloader's.
                    Ok(Event::Reload { .. } | Event::Running { .. }) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "The hub fell behind the bus; resyncing every tab from the store.");
                        self.resync().await;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                },
                lease = ended.recv() => match lease {
                    Some(lease) => self.announce_end(&lease),
                    None => break,
                },
            }
        }
        let timers: Vec<_> = self.lock().values_mut().filter_map(|l| l.timer.take()).collect();
        for t in timers {
            t.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, VisitorTabs>> {
        self.visitors.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A tab said hello: registers it and returns what it shows first; `None` when the visitor
    /// already has [`MAX_TABS`] tabs here.
    pub async fn hello(
        self: &Arc<Self>,
        site: &SiteConfig,
        visitor: VisitorId,
        hello: &Hello,
        ip: IpAddr,
    ) -> Option<(Tab, ServerMsg)> {
        let proxy = self.app.config().server.trusted_proxies.iter().any(|net| net.contains(&ip));
        let address = (!proxy).then(|| crate::callback::limits::client_key(ip));
        let (tx, rx) = mpsc::channel(TAB_QUEUE);
        let id = self.next_tab.fetch_add(1, Ordering::Relaxed);
        let key = (site.id.clone(), visitor.clone());
        let attrs = hello.attrs();
        let tracked = site.track.tracks(&attrs);
        {
            let mut visitors = self.lock();
            let local = visitors.entry(key.clone()).or_insert_with(|| VisitorTabs {
                tabs: HashMap::new(),
                attrs,
                timer: None,
                last_touch: None,
                shown: None,
                most_tabs: 0,
                address,
            });
            if local.tabs.len() >= MAX_TABS {
                return None;
            }
            local.tabs.insert(id, tx);
            local.most_tabs = local.most_tabs.max(local.tabs.len() as u32);
        }
        self.app.metrics.ws_tabs.inc();
        let shown =
            if tracked { self.decide(site, &key, true).await } else { (site.static_number.clone(), Shown::Static) };
        if let Some(local) = self.lock().get_mut(&key) {
            local.shown = Some(shown.clone());
            // The page view was activity: the tab's first `activity` need not be passed on.
            if tracked {
                local.last_touch = Some(tokio::time::Instant::now());
            }
        }
        let tab = Tab { site: key.0, visitor: key.1, id, rx };
        Some((tab, ServerMsg::Number { number: shown.0, kind: shown.1 }))
    }

    /// What the visitor should see now; asks the pool for a number once the delay has passed,
    /// and otherwise sets a timer for that moment. `page_view` counts as a page view of the visit.
    /// One round trip to the pool: a page view ([`Pool::view`]: the visit, and the lease if the
    /// visitor holds one) or, once the delay ran out, the lease ([`Pool::acquire_due`], which
    /// checks the visit's age itself); two for a page view of a visit that is due but holds no
    /// number.
    ///
    /// [`Pool::view`]: callpool_pool::Pool::view
    /// [`Pool::acquire_due`]: callpool_pool::Pool::acquire_due
    async fn decide(self: &Arc<Self>, site: &SiteConfig, key: &Key, page_view: bool) -> (PhoneNumber, Shown) {
        let pool = &self.app.pool;
        let now = self.app.clock.now();
        let outcome: Result<(PhoneNumber, Shown), PoolError> = async {
            if page_view {
                // A page view is activity: it keeps the lease alive like any other.
                let callpool_pool::Viewed { visit, began, lease } = pool.view(&key.0, &key.1, now).await?;
                if let Some(lease) = lease {
                    return Ok((lease.number, Shown::Tracking));
                }
                // The node whose page view began the visit asks on time; the others later.
                let grace = if began { 0 } else { FOLLOWER_GRACE_MS };
                if let Some(shown) = self.not_due(site, key, &visit, now, grace) {
                    return Ok(shown);
                }
            }
            let (attrs, address) = self.lock().get(key).map(|l| (l.attrs.clone(), l.address)).unwrap_or_default();
            let reserved = match address.zip(site.leases_per_address) {
                Some((address, limit)) => match self.reserve(&key.0, address, limit) {
                    Some(at) => Some((address, at)),
                    None => {
                        // The address had its share: the visitor keeps the site's number (a
                        // visitor already holding a lease still gets it: the pool is asked).
                        if let Some(lease) = pool.current(&key.0, &key.1, now).await? {
                            return Ok((lease.number, Shown::Tracking));
                        }
                        // Not limited yet if the visit is over, or not due (a timer's, whose age
                        // the pool has not been asked).
                        if let Some(visit) = pool.current_visit(&key.0, &key.1, now).await? {
                            if let Some(shown) = self.not_due(site, key, &visit, now, FOLLOWER_GRACE_MS) {
                                return Ok(shown);
                            }
                        }
                        self.app.metrics.hub_address_limited.with_label_values(&[key.0.as_str()]).inc();
                        self.schedule(key, RETRY_AFTER.as_millis() as i64);
                        return Ok((site.default_before.clone(), Shown::DefaultBefore));
                    }
                },
                None => None,
            };
            let granted = pool.acquire_due(&key.0, &key.1, &attrs, now, site.delay_to_show).await;
            if !matches!(granted, Ok(Due::Granted(Grant::Leased { fresh: true, .. }))) {
                if let Some((address, at)) = reserved {
                    self.unreserve(&key.0, address, at);
                }
            }
            match granted? {
                Due::Granted(Grant::Leased { lease, fresh }) => {
                    if fresh {
                        self.app.metrics.hub_granted.with_label_values(&[key.0.as_str()]).inc();
                    }
                    Ok((lease.number, Shown::Tracking))
                }
                Due::Granted(Grant::Exhausted) => {
                    self.app.metrics.hub_exhausted.with_label_values(&[key.0.as_str()]).inc();
                    self.schedule(key, RETRY_AFTER.as_millis() as i64);
                    Ok((site.default_before.clone(), Shown::DefaultBefore))
                }
                Due::Later(due) => {
                    // A visit younger than the delay (one begun again after it ended unseen):
                    // the node that began it asks first.
                    self.schedule(key, due.as_millis().saturating_sub(now.as_millis()) + FOLLOWER_GRACE_MS);
                    Ok((site.default_before.clone(), Shown::DefaultBefore))
                }
                Due::Ended => Ok((site.default_after.clone(), Shown::DefaultAfter)),
            }
        }
        .await;
        outcome.unwrap_or_else(|e| {
            tracing::warn!(error = %e, site = %key.0, "No answer from the pool; the visitor's tabs keep what they show for now.");
            self.app.metrics.hub_pool_errors.inc();
            self.schedule(key, RETRY_AFTER.as_millis() as i64);
            // A store that does not answer says nothing new: a visitor shown a number keeps it
            // (a resync after a broker restart, a new tab); a visitor shown nothing yet gets the
            // site's number.
            self.lock()
                .get(key)
                .and_then(|l| l.shown.clone())
                .unwrap_or_else(|| (site.default_before.clone(), Shown::DefaultBefore))
        })
    }

    /// What a visit that is over, or younger than the delay, shows: `default_after`, or
    /// `default_before` with a timer for when the delay runs out (`grace` later); `None` once the
    /// visit is due a number.
    fn not_due(
        self: &Arc<Self>,
        site: &SiteConfig,
        key: &Key,
        visit: &callpool_pool::Visit,
        now: callpool_pool::Ts,
        grace: i64,
    ) -> Option<(PhoneNumber, Shown)> {
        if visit.ended_at.is_some() {
            return Some((site.default_after.clone(), Shown::DefaultAfter));
        }
        let due = visit.first_seen.plus(site.delay_to_show);
        if now >= due {
            return None;
        }
        self.schedule(key, due.as_millis().saturating_sub(now.as_millis()) + grace);
        Some((site.default_before.clone(), Shown::DefaultBefore))
    }

    /// Takes a place for a lease to `address` under `limit`, or `None` when its places in the
    /// period are taken. A place not used for a new lease is given back ([`Hub::unreserve`]).
    fn reserve(&self, site: &SiteId, address: IpAddr, limit: Window) -> Option<Instant> {
        let now = Instant::now();
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        let times = grants.entry((site.clone(), address)).or_default();
        while times.front().is_some_and(|t| now.duration_since(*t) >= limit.period) {
            times.pop_front();
        }
        if times.len() >= limit.count as usize {
            return None;
        }
        times.push_back(now);
        Some(now)
    }

    fn unreserve(&self, site: &SiteId, address: IpAddr, at: Instant) {
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(times) = grants.get_mut(&(site.clone(), address)) {
            if let Some(i) = times.iter().rposition(|t| *t == at) {
                times.remove(i);
            }
        }
    }

    /// Forgets addresses whose grants are all older than their site's period.
    pub fn retain_recent(&self) {
        let now = Instant::now();
        let mut grants = self.grants.lock().unwrap_or_else(|p| p.into_inner());
        grants.retain(|(site, _), times| {
            let period =
                self.app.config().site(site).and_then(|s| s.leases_per_address).map_or(Duration::ZERO, |w| w.period);
            times.back().is_some_and(|t| now.duration_since(*t) < period)
        });
    }

    /// After `in_ms`, decides again for the visitor and tells every node (unless a timer is
    /// already pending for the visitor here, or the visitor has no tab left here).
    fn schedule(self: &Arc<Self>, key: &Key, in_ms: i64) {
        let mut visitors = self.lock();
        let Some(local) = visitors.get_mut(key) else { return };
        if local.timer.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let (hub, key2) = (self.clone(), key.clone());
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(in_ms.max(0) as u64)).await;
            {
                let mut visitors = hub.lock();
                let Some(local) = visitors.get_mut(&key2) else { return };
                local.timer = None;
                // Another node already asked and its answer came over the bus.
                if matches!(local.shown, Some((_, Shown::Tracking | Shown::DefaultAfter))) {
                    return;
                }
            }
            let config = hub.app.config();
            let Some(site) = config.site(&key2.0) else { return };
            let (number, kind) = hub.decide(site, &key2, false).await;
            hub.show_everywhere(ShowNumber { site: key2.0, visitor: key2.1, number, kind });
        });
        local.timer = Some(task.abort_handle());
    }

    /// Shows `show` in this node's tabs of the visitor at once, and in the other nodes' through
    /// the bus (one message, which this node does not read back); nothing is sent when the
    /// visitor's tabs here show it already (no other node has heard otherwise).
    fn show_everywhere(&self, show: ShowNumber) {
        let unchanged = self
            .lock()
            .get(&(show.site.clone(), show.visitor.clone()))
            .is_some_and(|l| l.shown.as_ref() == Some(&(show.number.clone(), show.kind)));
        if unchanged {
            return;
        }
        self.deliver(show.clone());
        self.app.bus.publish_others(Event::ShowNumber(show));
    }

    /// Shows what the bus carried in this node's tabs of the visitor. The hub's lock is held
    /// only to note what they show and copy their queues; serializing and sending run outside it.
    pub fn deliver(&self, show: ShowNumber) {
        let key = (show.site.clone(), show.visitor.clone());
        let tabs = {
            let mut visitors = self.lock();
            let Some(local) = visitors.get_mut(&key) else { return };
            if local.shown.as_ref() == Some(&(show.number.clone(), show.kind)) {
                return;
            }
            local.shown = Some((show.number.clone(), show.kind));
            queues(local)
        };
        self.app.metrics.hub_swaps.with_label_values(&[show.kind.as_str()]).inc();
        let msg = ServerMsg::Number { number: show.number, kind: show.kind };
        self.forget_tabs(&key, &fan_out(tabs, &msg));
    }

    /// Sends `message` to every tab of the visitor on this node (a callback's status).
    fn tell(&self, site: &SiteId, visitor: &VisitorId, message: &ServerMsg) {
        let key = (site.clone(), visitor.clone());
        let Some(tabs) = self.lock().get(&key).map(queues) else { return };
        self.forget_tabs(&key, &fan_out(tabs, message));
    }

    /// Drops the queues of tabs that could not take a message (their connections then close).
    fn forget_tabs(&self, key: &Key, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        if let Some(local) = self.lock().get_mut(key) {
            for id in ids {
                local.tabs.remove(id);
            }
        }
    }

    /// The reaper ended a lease: the visitor's tabs show `default_after` (unless the visitor left).
    fn announce_end(&self, lease: &Lease) {
        let config = self.app.config();
        if lease.end_reason == Some(EndReason::Left) {
            return;
        }
        let Some(site) = config.site(&lease.site) else { return };
        let show = ShowNumber {
            site: lease.site.clone(),
            visitor: lease.visitor.clone(),
            number: site.default_after.clone(),
            kind: Shown::DefaultAfter,
        };
        // Every node that holds a tab of the visitor must hear it, whatever this one shows.
        self.deliver(show.clone());
        self.app.bus.publish_others(Event::ShowNumber(show));
    }

    /// Another node saw the visitor's last tab there close; if a tab of the visitor is open here,
    /// the visitor has not left: touching the lease cancels the leave.
    async fn still_here(&self, site: &SiteId, visitor: &VisitorId) {
        let here = self.lock().get(&(site.clone(), visitor.clone())).is_some_and(|l| !l.tabs.is_empty());
        if here {
            if let Err(e) = self.app.pool.touch(site, visitor, self.app.clock.now()).await {
                tracing::warn!(error = %e, site = %site, "Could not keep the number of a visitor with tabs open here.");
            }
        }
    }

    /// Events may have been lost: recompute what every local visitor should see, from the store.
    async fn resync(self: &Arc<Self>) {
        let config = self.app.config();
        let keys: Vec<Key> = self.lock().keys().cloned().collect();
        for key in keys {
            let Some(site) = config.site(&key.0) else { continue };
            let tracked = self.lock().get(&key).is_some_and(|l| site.track.tracks(&l.attrs));
            if !tracked {
                continue;
            }
            let (number, kind) = self.decide(site, &key, false).await;
            self.deliver(ShowNumber { site: key.0, visitor: key.1, number, kind });
        }
    }

    /// Activity in a tab: keeps the visit and the lease alive (passed on at most every 10 s per
    /// visitor, or every quarter of the site's idle timeout if that is shorter).
    pub async fn activity(&self, site: &SiteId, visitor: &VisitorId) {
        let key = (site.clone(), visitor.clone());
        let every =
            self.app.config().site(site).map_or(TOUCH_EVERY, |s| TOUCH_EVERY.min(s.rules.reclaim_after_idle / 4));
        {
            let mut visitors = self.lock();
            let Some(local) = visitors.get_mut(&key) else { return };
            let now = tokio::time::Instant::now();
            if local.last_touch.is_some_and(|t| now.duration_since(t) < every) {
                return;
            }
            local.last_touch = Some(now);
        }
        if let Err(e) = self.app.pool.touch(site, visitor, self.app.clock.now()).await {
            tracing::warn!(error = %e, site = %site, "Activity not recorded.");
        }
    }

    /// A tab closed. When it was the visitor's last tab here, the pending timer stops and the
    /// pool hears that the visitor left (the number returns after `release_grace`).
    pub async fn bye(&self, tab: &Tab) {
        let key = (tab.site.clone(), tab.visitor.clone());
        let last = {
            let mut visitors = self.lock();
            let Some(local) = visitors.get_mut(&key) else { return };
            local.tabs.remove(&tab.id);
            if local.tabs.is_empty() {
                if let Some(t) = local.timer.take() {
                    t.abort();
                }
                visitors.remove(&key).map(|l| (l.attrs, l.most_tabs))
            } else {
                None
            }
        };
        self.app.metrics.ws_tabs.dec();
        if let Some((attrs, tabs)) = last {
            let now = self.app.clock.now();
            if let Err(e) = self.app.pool.leave(&key.0, &key.1, now).await {
                tracing::warn!(error = %e, site = %key.0, "The visitor's leaving was not recorded; idle reclaim will end the lease.");
            }
            // A tab of the visitor that opened here while the leave was on its way keeps the
            // number, as one open on another node does when it hears `left`.
            self.still_here(&key.0, &key.1).await;
            self.app.bus.publish_others(Event::Left { site: key.0.clone(), visitor: key.1.clone() });
            self.record_visit(&key, &attrs, tabs, now).await;
        }
    }

    /// Keeps what the visit looked like (for `callpool simulate` to fit the site's traffic to).
    async fn record_visit(&self, key: &Key, attrs: &SessionAttrs, tabs: u32, now: callpool_pool::Ts) {
        let config = self.app.config();
        let Some(site) = config.site(&key.0) else { return };
        let visit = match self.app.pool.current_visit(&key.0, &key.1, now).await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, site = %key.0, "The visit was not recorded.");
                return;
            }
        };
        let record = crate::store::visits::VisitRecord {
            visitor: key.1.to_string(),
            first_seen: visit.first_seen.as_millis(),
            last_active: visit.last_seen.as_millis(),
            closed: now.as_millis(),
            tabs,
            source: crate::reports::dims::visit_source(attrs),
            tracked: site.track.tracks(attrs),
            medium: attrs.utm_medium.clone(),
            campaign: attrs.utm_campaign.clone(),
            term: attrs.utm_term.clone(),
            landing_page: attrs.landing_page.as_deref().map(crate::reports::dims::landing_path),
        };
        if let Err(e) = self.app.store.record_visit(&key.0, &record).await {
            self.app.metrics.store_errors.with_label_values(&["visit_log"]).inc();
            tracing::warn!(error = %e, site = %key.0, "The visit was not recorded.");
        }
    }
}
