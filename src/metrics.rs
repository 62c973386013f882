//! Prometheus metrics: every metric name lives here. Names are `callpool_<area>_<thing>_<unit>`,
//! counters end in `_total`; labels are of low cardinality (site, reason, state), never a
//! visitor or a phone number.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

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
    /// When the gauges read from the store (pool, outbox) were last refreshed by a scrape.
    pub store_gauges_at: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// The RabbitMQ bus's counters.
#[derive(Clone)]
pub struct BusMetrics {
    pub published: prometheus::IntCounter,
    pub dropped: prometheus::IntCounter,
    pub received: prometheus::IntCounter,
    pub reconnects: prometheus::IntCounter,
    /// 1 while this node is connected to RabbitMQ (`/readyz` reads it).
    pub connected: prometheus::IntGauge,
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
                IntGauge::new("callpool_bus_connected", "1 while this node is connected to RabbitMQ."),
            ),
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
            registry: r,
            store_gauges_at: tokio::sync::Mutex::new(None),
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out).expect("encoding to a String");
        out
    }
}

const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

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
