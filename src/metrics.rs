//! Prometheus metrics: every metric name lives here. Names are `callpool_<area>_<thing>_<unit>`,
//! counters end in `_total`; labels are of low cardinality (site, reason, state), never a
//! visitor or a phone number.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

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
    /// Pool errors met by the hub (the visitor kept the site's number).
    pub hub_pool_errors: IntCounter,
    /// The RabbitMQ bus's counters.
    pub bus: crate::bus::BusMetrics,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let leases_ended = IntCounterVec::new(
            Opts::new("callpool_pool_leases_ended_total", "Leases ended by this node's reaper, by site and reason."),
            &["site", "reason"],
        )
        .expect("valid metric");
        let numbers_returned = IntCounterVec::new(
            Opts::new("callpool_pool_numbers_returned_total", "Numbers given back to the shared inventory, by site."),
            &["site"],
        )
        .expect("valid metric");
        let reaper_runs = IntCounterVec::new(
            Opts::new("callpool_pool_reaper_runs_total", "Reaper passes on this node, by outcome."),
            &["outcome"],
        )
        .expect("valid metric");
        let reaper_duration = Histogram::with_opts(
            HistogramOpts::new("callpool_pool_reaper_duration_seconds", "How long one reaper pass took.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
        )
        .expect("valid metric");
        let pool_numbers = IntGaugeVec::new(
            Opts::new("callpool_pool_numbers", "Numbers per site and state (working, leased, free, cooling, max)."),
            &["site", "state"],
        )
        .expect("valid metric");
        let pool_exhausted = IntGaugeVec::new(
            Opts::new(
                "callpool_pool_exhausted_requests",
                "Lease requests that found the site's pool exhausted, store-wide since the pool was created.",
            ),
            &["site"],
        )
        .expect("valid metric");
        let ws_tabs = IntGauge::new("callpool_ws_tabs", "Open websocket tabs on this node.").expect("valid metric");
        let ws_refused = IntCounterVec::new(
            Opts::new("callpool_ws_refused_total", "Websocket connections refused before they became tabs, by reason."),
            &["reason"],
        )
        .expect("valid metric");
        let ws_closed =
            IntCounterVec::new(Opts::new("callpool_ws_closed_total", "Websocket tabs closed, by reason."), &["reason"])
                .expect("valid metric");
        let hub_swaps = IntCounterVec::new(
            Opts::new("callpool_hub_swaps_total", "Number changes delivered to this node's tabs, by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let hub_exhausted = IntCounterVec::new(
            Opts::new(
                "callpool_hub_exhausted_total",
                "Visitors who asked for a number when the site's pool was exhausted.",
            ),
            &["site"],
        )
        .expect("valid metric");
        let hub_pool_errors = IntCounter::new(
            "callpool_hub_pool_errors_total",
            "Pool errors met by the hub; the visitor kept the site's number.",
        )
        .expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let bus = crate::bus::BusMetrics {
            published: counter("callpool_bus_published_total", "Events this node published to RabbitMQ."),
            dropped: counter(
                "callpool_bus_dropped_total",
                "Events dropped because RabbitMQ was away too long (tabs resync).",
            ),
            received: counter("callpool_bus_received_total", "Events this node received from RabbitMQ."),
            reconnects: counter(
                "callpool_bus_reconnects_total",
                "Reconnections to RabbitMQ (each followed by a resync).",
            ),
        };
        for c in [
            Box::new(leases_ended.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(numbers_returned.clone()),
            Box::new(reaper_runs.clone()),
            Box::new(reaper_duration.clone()),
            Box::new(pool_numbers.clone()),
            Box::new(pool_exhausted.clone()),
            Box::new(ws_tabs.clone()),
            Box::new(ws_refused.clone()),
            Box::new(ws_closed.clone()),
            Box::new(hub_swaps.clone()),
            Box::new(hub_exhausted.clone()),
            Box::new(hub_pool_errors.clone()),
            Box::new(bus.published.clone()),
            Box::new(bus.dropped.clone()),
            Box::new(bus.received.clone()),
            Box::new(bus.reconnects.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            leases_ended,
            numbers_returned,
            reaper_runs,
            reaper_duration,
            pool_numbers,
            pool_exhausted,
            ws_tabs,
            ws_refused,
            ws_closed,
            hub_swaps,
            hub_exhausted,
            hub_pool_errors,
            bus,
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out).expect("encoding to a String");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
