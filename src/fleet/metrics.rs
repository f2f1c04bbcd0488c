//! The fleet's metric families (CONFIG.md), registered with the instance's registry.

use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// From 50 µs (a loopback round trip) to the longest `timeout` accepted (1 s).
const ROUND_TRIP_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Clone)]
pub struct FleetMetrics {
    pub store_up: IntGauge,
    pub store_duration: Histogram,
    pub fallback_decisions: IntCounterVec,
    pub instances: IntGauge,
}

impl FleetMetrics {
    pub fn new() -> FleetMetrics {
        FleetMetrics {
            store_up: IntGauge::new(
                "seawall_fleet_store_up",
                "1 while fleet limits are decided in Redis, 0 while they apply on_store_error.",
            )
            .expect("static metric definition"),
            store_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "seawall_fleet_store_duration_seconds",
                    "Round trips to Redis for fleet-limit decisions (one per request), \
                     including those that failed or timed out.",
                )
                .buckets(ROUND_TRIP_BUCKETS.to_vec()),
            )
            .expect("static metric definition"),
            fallback_decisions: IntCounterVec::new(
                Opts::new(
                    "seawall_fleet_fallback_decisions_total",
                    "Fleet-limit decisions taken without Redis (on_store_error), by route and limit.",
                ),
                &["route", "limit"],
            )
            .expect("static metric definition"),
            instances: IntGauge::new(
                "seawall_fleet_instances",
                "Seawall instances whose heartbeat is live in Redis (this one included).",
            )
            .expect("static metric definition"),
        }
    }

    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.store_up.clone()))?;
        registry.register(Box::new(self.store_duration.clone()))?;
        registry.register(Box::new(self.fallback_decisions.clone()))?;
        registry.register(Box::new(self.instances.clone()))
    }
}

impl Default for FleetMetrics {
    fn default() -> Self {
        FleetMetrics::new()
    }
}
