//! Prometheus metrics: every metric name lives here. Names are `callpool_<area>_<thing>_<unit>`,
//! counters end in `_total`; labels are of low cardinality (site, PBX, kind, reason, state), never
//! a visitor or a phone number. Beside them, [`Journal`]: what this node saw last of each PBX and
//! each kind of job, for `/v1/admin/status`. `deploy/prometheus/` alerts on these metrics and
//! `deploy/grafana/` charts them; `tests/it/ops.rs` checks that every name they use is here.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use callpool_pool::Ts;
use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::config::{BusConfig, Config};

pub struct Metrics {
    pub registry: Registry,
    /// Leases the reaper ended, by site and reason (idle, max_hold, left).
    pub leases_ended: IntCounterVec,
    /// Numbers given back to the shared inventory, by site.
    pub numbers_returned: IntCounterVec,
    /// Reaper passes, by outcome (ok, error).
    pub reaper_runs: IntCounterVec,
    pub reaper_duration: Histogram,
    /// Numbers per site and state (working, leased, free, cooling, max), read from the store at scrape time.
    pub pool_numbers: IntGaugeVec,
    /// Lease requests that found the site's pool exhausted, store-wide since the pool was created.
    pub pool_exhausted: IntGaugeVec,
    /// Open websocket tabs on this node.
    pub ws_tabs: IntGauge,
    /// Connections refused before they became tabs, by reason (rate_limited, unknown_site, ...).
    pub ws_refused: IntCounterVec,
    /// Tabs closed, by reason (closed, dead, too_slow, bad_message, too_large, shutdown, ...).
    pub ws_closed: IntCounterVec,
    /// Number changes delivered to this node's tabs, by kind.
    pub hub_swaps: IntCounterVec,
    /// Visitors of this node who asked for a number when the site's pool was exhausted.
    pub hub_exhausted: IntCounterVec,
    /// Leases not granted because the visitor's address had its share, by site.
    pub hub_address_limited: IntCounterVec,
    /// Leases this node's hub began, by site.
    pub hub_granted: IntCounterVec,
    /// Pool errors met by the hub (the visitor kept the site's number).
    pub hub_pool_errors: IntCounter,
    /// The RabbitMQ bus's counters.
    pub bus: BusMetrics,
    /// Calls recorded (first report), by site ("-": none found) and match kind.
    pub calls_recorded: IntCounterVec,
    /// Call webhooks refused, by reason (no_signature, bad_signature, stale_timestamp, unknown_pbx,
    /// rate_limited, malformed).
    pub pbx_rejected: IntCounterVec,
    /// Time from a webhook's arrival to its call being stored and queued.
    pub pbx_seconds: Histogram,
    /// Analytics deliveries made, by kind (ga4, yandex).
    pub analytics_sent: IntCounterVec,
    /// Failed attempts that will be retried, by kind.
    pub analytics_retried: IntCounterVec,
    /// Deliveries given up (dead-lettered), by kind.
    pub analytics_dead: IntCounterVec,
    /// Events callpool refused to send, by kind and reason (too_old, invalid).
    pub analytics_refused: IntCounterVec,
    /// Outbox jobs by kind and state (queued: waiting or in flight; dead), read from the store at scrape time.
    pub outbox_jobs: IntGaugeVec,
    /// Store errors outside the pool, by operation.
    pub store_errors: IntCounterVec,
    /// HTTP request durations by route and status class.
    pub http_seconds: HistogramVec,
    /// Callback requests stored, by site and how (accepted: now; scheduled: next opening; repeat:
    /// joined the number's open request).
    pub callback_requests: IntCounterVec,
    /// Callback requests refused, by site and reason (invalid, not_callable, blocked, too_soon,
    /// ip, visitor, number, banned, site, closed).
    pub callback_refused: IntCounterVec,
    /// Trigger attempts, by adapter and result (sent, retried, failed).
    pub callback_triggers: IntCounterVec,
    /// Callback outcomes the PBX reported, by status (connected, completed, missed).
    pub callback_outcomes: IntCounterVec,
    /// Requests each PBX sent this node, by PBX and outcome (recorded, answered, refused); the
    /// reports a PBX connection (Asterisk's AMI) brings count as recorded.
    pub pbx_requests: IntCounterVec,
    /// When each PBX last sent this node something it took (recorded or answered), Unix seconds;
    /// the node's start until then.
    pub pbx_last_accepted: IntGaugeVec,
    /// 1 while callpool's own connection to a PBX it connects to (Asterisk's AMI) is logged in.
    pub pbx_connected: IntGaugeVec,
    /// 1 while a site is within its working hours (`[site.callback]` hours; a site without them: always).
    pub site_open: IntGaugeVec,
    /// 1 while a site the PBX serves is within its working hours (see [`Metrics::set_hours`]).
    pub pbx_open: IntGaugeVec,
    /// 1 while the store answers, checked at scrape time.
    pub store_up: IntGauge,
    /// 1 while the node is ready (what `/readyz` answers), checked at scrape time.
    pub ready: IntGauge,
    /// What this node saw last of each PBX and each kind of job.
    pub journal: Journal,
    /// When the gauges read from the store (pool, outbox) were last refreshed by a scrape.
    pub store_gauges_at: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// The outcomes of a PBX's request (`callpool_pbx_requests_total{outcome}`).
pub const PBX_OUTCOMES: [&str; 3] = ["recorded", "answered", "refused"];

/// The store operations whose errors are counted (`callpool_store_errors_total{op}`), created at
/// zero at start so that an alert's `increase()` sees the first error.
pub const STORE_OPS: [&str; 9] = [
    "calls_record",
    "calls_trim",
    "callback_create",
    "callback_outcome",
    "callback_update",
    "jobs_claim",
    "jobs_settle",
    "usage_sample",
    "visit_log",
];

/// The RabbitMQ bus's counters.
#[derive(Clone)]
pub struct BusMetrics {
    pub published: prometheus::IntCounter,
    pub dropped: prometheus::IntCounter,
    pub received: prometheus::IntCounter,
    pub reconnects: prometheus::IntCounter,
    /// 1 while this node's bus reaches every node: always with the in-process bus; with RabbitMQ,
    /// while connected (`/readyz` reads it).
    pub connected: prometheus::IntGauge,
    /// When the RabbitMQ connection last came up or went down, and the last error.
    pub changes: Arc<Mutex<BusChanges>>,
}

/// The RabbitMQ connection's last changes.
#[derive(Clone, Debug, Default)]
pub struct BusChanges {
    /// When it last came up or went down.
    pub since: Option<Ts>,
    /// The last error that took it down (or kept it from coming up), and when.
    pub error: Option<(Ts, String)>,
}

impl BusMetrics {
    /// The connection is up.
    pub fn up(&self) {
        self.connected.set(1);
        lock(&self.changes).since = Some(Ts::now());
    }

    /// The connection went down, or could not be made.
    pub fn down(&self, error: &str) {
        let now = Ts::now();
        let mut c = lock(&self.changes);
        if self.connected.get() != 0 || c.since.is_none() {
            c.since = Some(now);
        }
        c.error = Some((now, clip(error)));
        self.connected.set(0);
    }
}

/// What this node saw last of each PBX and each kind of job (for `/v1/admin/status`; each node
/// keeps its own). A request or a job's outcome costs a look-up in a map set when a configuration
/// starts running and a short lock of its own entry.
#[derive(Default)]
pub struct Journal {
    pbxs: RwLock<HashMap<String, Arc<PbxWatch>>>,
    jobs: Mutex<HashMap<&'static str, JobLast>>,
}

/// One PBX's series and its last request.
struct PbxWatch {
    /// `callpool_pbx_requests_total` by outcome, in the order of [`PBX_OUTCOMES`].
    requests: [IntCounter; 3],
    accepted: IntGauge,
    last: Mutex<PbxLast>,
}

/// What a PBX sent this node last.
#[derive(Clone, Debug, Default)]
pub struct PbxLast {
    /// The last request (or report of its connection) and its outcome.
    pub request: Option<(Ts, &'static str)>,
    /// The last request callpool took (recorded or answered).
    pub accepted: Option<Ts>,
    /// The last refusal: when, its code and its message.
    pub refusal: Option<(Ts, String, String)>,
    /// Requests since the node started, by outcome (in the order of [`PBX_OUTCOMES`]).
    pub counts: [u64; 3],
}

/// The last outcomes of one kind of job on this node.
#[derive(Clone, Debug, Default)]
pub struct JobLast {
    /// The last delivery made.
    pub sent: Option<Ts>,
    /// The last failed attempt: when, the error, and whether the job was given up (dead-lettered).
    pub error: Option<(Ts, String, bool)>,
}

impl Journal {
    /// What `pbx` sent this node last (`None` for a PBX not configured).
    pub fn pbx(&self, pbx: &str) -> Option<PbxLast> {
        let w = read(&self.pbxs).get(pbx)?.clone();
        let mut last = lock(&w.last).clone();
        last.counts = w.requests.each_ref().map(|c| c.get());
        Some(last)
    }

    /// The last outcomes of `kind` on this node.
    pub fn job(&self, kind: &str) -> JobLast {
        lock(&self.jobs).get(kind).cloned().unwrap_or_default()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let bus = BusMetrics {
            published: counter(&r, "callpool_bus_published_total", "Events this node published to RabbitMQ."),
            dropped: counter(
                &r,
                "callpool_bus_dropped_total",
                "Events dropped because RabbitMQ was away too long (tabs resync).",
            ),
            received: counter(&r, "callpool_bus_received_total", "Events this node received from RabbitMQ."),
            reconnects: counter(
                &r,
                "callpool_bus_reconnects_total",
                "Reconnections to RabbitMQ (each followed by a resync).",
            ),
            connected: register(
                &r,
                IntGauge::new(
                    "callpool_bus_connected",
                    "1 while this node's bus reaches every node (in-process: always; RabbitMQ: while connected).",
                ),
            ),
            changes: Arc::default(),
        };
        Metrics {
            leases_ended: counter_vec(
                &r,
                "callpool_pool_leases_ended_total",
                "Leases ended by this node's reaper, by site and reason.",
                &["site", "reason"],
            ),
            numbers_returned: counter_vec(
                &r,
                "callpool_pool_numbers_returned_total",
                "Numbers given back to the shared inventory, by site.",
                &["site"],
            ),
            reaper_runs: counter_vec(
                &r,
                "callpool_pool_reaper_runs_total",
                "Reaper passes on this node, by outcome.",
                &["outcome"],
            ),
            reaper_duration: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new("callpool_pool_reaper_duration_seconds", "How long one reaper pass took.")
                        .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
                ),
            ),
            pool_numbers: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "callpool_pool_numbers",
                        "Numbers per site and state (working, leased, free, cooling, max).",
                    ),
                    &["site", "state"],
                ),
            ),
            pool_exhausted: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "callpool_pool_exhausted_requests",
                        "Lease requests that found the site's pool exhausted, store-wide since the pool was created.",
                    ),
                    &["site"],
                ),
            ),
            ws_tabs: register(&r, IntGauge::new("callpool_ws_tabs", "Open websocket tabs on this node.")),
            ws_refused: counter_vec(
                &r,
                "callpool_ws_refused_total",
                "Websocket connections refused before they became tabs, by reason.",
                &["reason"],
            ),
            ws_closed: counter_vec(&r, "callpool_ws_closed_total", "Websocket tabs closed, by reason.", &["reason"]),
            hub_swaps: counter_vec(
                &r,
                "callpool_hub_swaps_total",
                "Number changes delivered to this node's tabs, by kind.",
                &["kind"],
            ),
            hub_exhausted: counter_vec(
                &r,
                "callpool_hub_exhausted_total",
                "Visitors who asked for a number when the site's pool was exhausted.",
                &["site"],
            ),
            hub_address_limited: counter_vec(
                &r,
                "callpool_hub_address_limited_total",
                "Leases not granted because the visitor's address (IPv6: its /64) had its share, by site.",
                &["site"],
            ),
            hub_granted: counter_vec(
                &r,
                "callpool_hub_leases_granted_total",
                "Leases this node's hub began (a visitor was given a tracking number), by site.",
                &["site"],
            ),
            hub_pool_errors: counter(
                &r,
                "callpool_hub_pool_errors_total",
                "Pool errors met by the hub; the visitor kept the site's number.",
            ),
            bus,
            calls_recorded: counter_vec(
                &r,
                "callpool_calls_recorded_total",
                "Calls recorded, by site and match kind.",
                &["site", "kind"],
            ),
            pbx_rejected: counter_vec(
                &r,
                "callpool_pbx_webhooks_rejected_total",
                "Call webhooks refused, by reason.",
                &["reason"],
            ),
            pbx_seconds: register(
                &r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "callpool_pbx_webhook_duration_seconds",
                        "Time from a call webhook's arrival to the call being stored with its jobs queued.",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                ),
            ),
            analytics_sent: counter_vec(
                &r,
                "callpool_analytics_sent_total",
                "Analytics deliveries made, by kind.",
                &["kind"],
            ),
            analytics_retried: counter_vec(
                &r,
                "callpool_analytics_retries_total",
                "Failed analytics attempts that will be retried, by kind.",
                &["kind"],
            ),
            analytics_dead: counter_vec(
                &r,
                "callpool_analytics_dead_lettered_total",
                "Analytics deliveries given up, by kind.",
                &["kind"],
            ),
            analytics_refused: counter_vec(
                &r,
                "callpool_analytics_refused_total",
                "Events callpool refused to send, by kind and reason.",
                &["kind", "reason"],
            ),
            outbox_jobs: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("callpool_outbox_jobs", "Outbox jobs by kind and state (queued, dead), store-wide."),
                    &["kind", "state"],
                ),
            ),
            store_errors: counter_vec(
                &r,
                "callpool_store_errors_total",
                "Store errors outside the pool, by operation.",
                &["op"],
            ),
            http_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("callpool_http_request_duration_seconds", "HTTP request durations.")
                        .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route", "status"],
                ),
            ),
            callback_requests: counter_vec(
                &r,
                "callpool_callback_requests_total",
                "Callback requests stored, by site and how (accepted, scheduled, repeat).",
                &["site", "how"],
            ),
            callback_refused: counter_vec(
                &r,
                "callpool_callback_refused_total",
                "Callback requests refused, by site and reason.",
                &["site", "reason"],
            ),
            callback_triggers: counter_vec(
                &r,
                "callpool_callback_triggers_total",
                "Callback trigger attempts, by adapter and result (sent, retried, failed).",
                &["adapter", "result"],
            ),
            callback_outcomes: counter_vec(
                &r,
                "callpool_callback_outcomes_total",
                "Callback outcomes reported by the PBX, by status.",
                &["status"],
            ),
            pbx_requests: counter_vec(
                &r,
                "callpool_pbx_requests_total",
                "Requests each PBX sent this node, by outcome (recorded, answered, refused).",
                &["pbx", "outcome"],
            ),
            pbx_last_accepted: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "callpool_pbx_last_accepted_timestamp_seconds",
                        "When the PBX last sent this node something it took (recorded or answered); the node's start until then.",
                    ),
                    &["pbx"],
                ),
            ),
            pbx_connected: register(
                &r,
                IntGaugeVec::new(
                    Opts::new(
                        "callpool_pbx_connected",
                        "1 while callpool's connection to the PBX (Asterisk's AMI) is logged in; only PBXs callpool connects to.",
                    ),
                    &["pbx"],
                ),
            ),
            site_open: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("callpool_site_open", "1 while the site is within its working hours."),
                    &["site"],
                ),
            ),
            pbx_open: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("callpool_pbx_open", "1 while a site the PBX serves is within its working hours."),
                    &["pbx"],
                ),
            ),
            store_up: register(&r, IntGauge::new("callpool_store_up", "1 while the store answers (checked at scrape).")),
            ready: register(
                &r,
                IntGauge::new("callpool_ready", "1 while the node is ready, as /readyz answers (checked at scrape)."),
            ),
            journal: Journal::default(),
            registry: r,
            store_gauges_at: tokio::sync::Mutex::new(None),
        }
    }

    /// Creates the series of the configured PBXs and sites, and of the store's operations, at
    /// zero (so they show from the start and a rate counts their first event); sets each PBX's
    /// last accepted request to `now` (a PBX silent since the node started is silent since then),
    /// the in-process bus connected, and the working hours. At start and after each reload (series
    /// of sites and PBXs no longer configured go).
    pub fn watch(&self, config: &Config, now: Ts) {
        {
            let mut pbxs = self.journal.pbxs.write().unwrap_or_else(|p| p.into_inner());
            // A PBX no longer configured is forgotten (a kept one keeps its counts).
            pbxs.retain(|id, _| config.pbx(id).is_some());
            for p in &config.pbxs {
                pbxs.entry(p.id.clone()).or_insert_with(|| {
                    let requests = PBX_OUTCOMES.map(|o| self.pbx_requests.with_label_values(&[p.id.as_str(), o]));
                    let accepted = self.pbx_last_accepted.with_label_values(&[p.id.as_str()]);
                    accepted.set(now.as_millis() / 1000);
                    Arc::new(PbxWatch { requests, accepted, last: Mutex::default() })
                });
            }
        }
        self.prune(config);
        for op in STORE_OPS {
            self.store_errors.with_label_values(&[op]);
        }
        for outcome in ["ok", "error"] {
            self.reaper_runs.with_label_values(&[outcome]);
        }
        if matches!(config.bus, BusConfig::InProcess) {
            self.bus.connected.set(1);
        }
        self.set_hours(config, now);
    }

    /// Drops the series of sites and PBXs `config` does not have (removed by a reload; a refresh
    /// in flight meanwhile may have set them again, so each refresh ends with this too).
    pub fn prune(&self, config: &Config) {
        let by_site: [&IntGaugeVec; 3] = [&self.site_open, &self.pool_exhausted, &self.pool_numbers];
        let by_pbx: [&IntGaugeVec; 3] = [&self.pbx_last_accepted, &self.pbx_connected, &self.pbx_open];
        let site_kept = |v: &str| config.sites.iter().any(|s| s.id.as_str() == v);
        let pbx_kept = |v: &str| config.pbx(v).is_some();
        for vec in by_site {
            drop_unless(&vec.collect(), "site", &site_kept, |labels| vec.remove(labels));
        }
        for vec in by_pbx {
            drop_unless(&vec.collect(), "pbx", &pbx_kept, |labels| vec.remove(labels));
        }
        drop_unless(&self.pbx_requests.collect(), "pbx", &pbx_kept, |labels| self.pbx_requests.remove(labels));
    }

    /// Creates the delivery counters of `kind` at zero (the job runner, for each kind it runs).
    pub fn watch_job(&self, kind: &'static str) {
        for c in [&self.analytics_sent, &self.analytics_retried, &self.analytics_dead] {
            c.with_label_values(&[kind]);
        }
        lock(&self.journal.jobs).entry(kind).or_default();
    }

    /// Notes a request from `pbx` (a configured PBX; others are not noted) and its outcome (one
    /// of [`PBX_OUTCOMES`]), with the refusal's code and message.
    pub fn pbx_request(&self, pbx: &str, at: Ts, outcome: &'static str, refusal: Option<(&str, &str)>) {
        let Some(w) = read(&self.journal.pbxs).get(pbx).cloned() else { return };
        if let Some(i) = PBX_OUTCOMES.iter().position(|o| *o == outcome) {
            w.requests[i].inc();
        }
        let accepted = outcome != "refused";
        if accepted {
            w.accepted.set(at.as_millis() / 1000);
        }
        let mut last = lock(&w.last);
        last.request = Some((at, outcome));
        if accepted {
            last.accepted = Some(at);
        }
        if let Some((code, message)) = refusal {
            last.refusal = Some((at, code.to_owned(), clip(message)));
        }
    }

    /// A delivery of `kind` was made.
    pub fn job_sent(&self, kind: &'static str, at: Ts) {
        self.analytics_sent.with_label_values(&[kind]).inc();
        lock(&self.journal.jobs).entry(kind).or_default().sent = Some(at);
    }

    /// A delivery of `kind` failed: it will be retried, or (`dead`) it was given up.
    pub fn job_failed(&self, kind: &'static str, at: Ts, error: &str, dead: bool) {
        let counter = if dead { &self.analytics_dead } else { &self.analytics_retried };
        counter.with_label_values(&[kind]).inc();
        lock(&self.journal.jobs).entry(kind).or_default().error = Some((at, clip(error), dead));
    }

    /// Sets the working-hours gauges for `now`. A site is open within its `[site.callback]` hours
    /// and not on its holidays (a site without a callback form has no hours: always open). A PBX
    /// serves the sites whose callback form names it, or, named by none, every site; it is open
    /// while one of them is.
    pub fn set_hours(&self, config: &Config, now: Ts) {
        let open: Vec<(&str, bool, Option<&str>)> = config
            .sites
            .iter()
            .map(|s| {
                let cb = s.callback.as_ref();
                (s.id.as_str(), cb.is_none_or(|c| c.hours.is_open(now)), cb.map(|c| c.pbx.as_str()))
            })
            .collect();
        for (site, is_open, _) in &open {
            self.site_open.with_label_values(&[site]).set(i64::from(*is_open));
        }
        for p in &config.pbxs {
            let named = open.iter().any(|(_, _, pbx)| *pbx == Some(p.id.as_str()));
            let is_open = open.iter().any(|(_, o, pbx)| *o && (!named || *pbx == Some(p.id.as_str())));
            self.pbx_open.with_label_values(&[p.id.as_str()]).set(i64::from(is_open));
        }
    }

    /// This node's store errors since it started, by operation (those with any).
    pub fn store_error_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for family in self.store_errors.collect() {
            for m in family.get_metric() {
                let n = m.get_counter().get_value() as u64;
                let op = m.get_label().iter().find(|l| l.name() == "op").map(|l| l.value().to_owned());
                if let (Some(op), true) = (op, n > 0) {
                    out.insert(op, n);
                }
            }
        }
        out
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out).expect("encoding to a String");
        out
    }
}

const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// Locks `m`, whatever a panicked holder left (the data is a record, never half-written).
/// Removes (with `remove`) each series of `families` whose `label` fails `kept`.
fn drop_unless(
    families: &[prometheus::proto::MetricFamily],
    label: &str,
    kept: &dyn Fn(&str) -> bool,
    remove: impl Fn(&HashMap<&str, &str>) -> prometheus::Result<()>,
) {
    for m in families.iter().flat_map(|f| f.get_metric()) {
        let labels: HashMap<&str, &str> = m.get_label().iter().map(|l| (l.name(), l.value())).collect();
        if labels.get(label).is_some_and(|v| !kept(v)) {
            let _ = remove(&labels);
        }
    }
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most 500 bytes of an error (a destination's answer may be long), cut at a character.
fn clip(s: &str) -> String {
    let mut end = s.len().min(500);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Registers `metric` (built from constant names, so it is valid and unique) and returns it.
fn register<C: prometheus::core::Collector + Clone + 'static>(r: &Registry, metric: prometheus::Result<C>) -> C {
    let metric = metric.expect("metric names and labels are constants");
    r.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(r, IntCounterVec::new(Opts::new(name, help), labels))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
