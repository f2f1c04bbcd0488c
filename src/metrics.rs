//! Every metric family, registered once per Seawall instance in its own registry.
//!
//! One registry per instance (not the global default) so that several instances in one test
//! process do not mix their counts. Names and labels are part of the public contract (CONFIG.md).

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Route label for requests no route matched (route names start with a letter or digit).
pub const NO_ROUTE: &str = "-";

/// Buckets from 1 ms to 30 s: an edge proxy's own answers take well under a millisecond, slow
/// upstreams take seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub ratelimit_decisions: IntCounterVec,
    pub ratelimit_tracked_keys: IntGaugeVec,
    pub campaign_requests: IntCounterVec,
    pub campaign_unregistered_tags: IntCounterVec,
    pub campaign_observed_rps: GaugeVec,
    pub campaign_expected_rps: GaugeVec,
    pub campaign_load_ratio: GaugeVec,
    pub csp_violations: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub last_reload_success: Gauge,
    pub downstream_connections: IntGauge,
    pub upstream_duration: HistogramVec,
    pub access_log_dropped: IntCounter,
    pub canary_requests: IntCounterVec,
    pub canary_weight: GaugeVec,
    pub canary_rollbacks: IntCounterVec,
    /// `seawall_fleet_*`: Redis-backed fleet limits (src/fleet/metrics.rs).
    pub fleet: crate::fleet::FleetMetrics,
    pub queue_depth: IntGaugeVec,
    pub queue_bytes: IntGaugeVec,
    pub queue_oldest_age: GaugeVec,
    pub queue_pace: GaugeVec,
    pub queue_accepted: IntCounterVec,
    pub queue_refused: IntCounterVec,
    pub queue_deliveries: IntCounterVec,
}

/// How a request to an upstream ended, the `outcome` label of `seawall_upstream_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// The upstream answered (any status).
    Response,
    ConnectError,
    Timeout,
    /// The connection failed after it was made (reset, closed early, bad response).
    Error,
    /// Not sent: the upstream was at its `max_inflight`.
    Overloaded,
    /// Not sent: every server of the pool failed its health check.
    NoHealthyServer,
}

impl UpstreamOutcome {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamOutcome::Response => "response",
            UpstreamOutcome::ConnectError => "connect_error",
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::Error => "error",
            UpstreamOutcome::Overloaded => "overloaded",
            UpstreamOutcome::NoHealthyServer => "no_healthy_server",
        }
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "seawall_requests_total",
                "Requests answered, by route and status.",
            ),
            &["route", "status"],
        )
        .expect("static metric definition");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "seawall_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("static metric definition");
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "seawall_upstream_requests_total",
                "Requests meant for an upstream, by upstream and outcome.",
            ),
            &["upstream", "outcome"],
        )
        .expect("static metric definition");
        let ratelimit_decisions = IntCounterVec::new(
            Opts::new(
                "seawall_ratelimit_decisions_total",
                "Rate-limit decisions, by route, limit and decision \
                 (passed, delayed, rejected, dry_run_rejected, exempt).",
            ),
            &["route", "limit", "decision"],
        )
        .expect("static metric definition");
        let ratelimit_tracked_keys = IntGaugeVec::new(
            Opts::new(
                "seawall_ratelimit_tracked_keys",
                "Keys a limit currently holds state for (bounded by its max_keys).",
            ),
            &["route", "limit"],
        )
        .expect("static metric definition");
        let campaign_requests = IntCounterVec::new(
            Opts::new(
                "seawall_campaign_requests_total",
                "Campaign-tagged requests, by campaign (launch name or \"unregistered\") and action \
                 (divert, pass, pause, reject, limited).",
            ),
            &["campaign", "action"],
        )
        .expect("static metric definition");
        let campaign_unregistered_tags = IntCounterVec::new(
            Opts::new(
                "seawall_campaign_unregistered_tags_total",
                "Requests carrying a tag no launch names, by tag (the first 100 tags; then \"other\").",
            ),
            &["tag"],
        )
        .expect("static metric definition");
        let campaign_observed_rps = GaugeVec::new(
            Opts::new(
                "seawall_campaign_observed_rps",
                "Requests per second of each campaign, averaged over the last 5 s.",
            ),
            &["campaign"],
        )
        .expect("static metric definition");
        let campaign_expected_rps = GaugeVec::new(
            Opts::new(
                "seawall_campaign_expected_peak_rps",
                "The launch ticket's expected_peak_rps.",
            ),
            &["campaign"],
        )
        .expect("static metric definition");
        let campaign_load_ratio = GaugeVec::new(
            Opts::new(
                "seawall_campaign_load_ratio",
                "Observed rate divided by expected_peak_rps: 3.2 = the launch runs at 3.2x what its ticket said.",
            ),
            &["campaign"],
        )
        .expect("static metric definition");
        let csp_violations = IntCounterVec::new(
            Opts::new(
                "seawall_csp_violations_total",
                "CSP violation reports received, by policy, directive and blocked host \
                 (the first 100 hosts; then \"other\").",
            ),
            &["policy", "directive", "blocked_host"],
        )
        .expect("static metric definition");
        let config_reloads = IntCounterVec::new(
            Opts::new("seawall_config_reloads_total", "Config reloads, by result."),
            &["result"],
        )
        .expect("static metric definition");
        let config_generation = IntGauge::new(
            "seawall_config_generation",
            "Generation of the config in force (1 at start, +1 per successful reload).",
        )
        .expect("static metric definition");
        let last_reload_success = Gauge::new(
            "seawall_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("static metric definition");
        let downstream_connections = IntGauge::new(
            "seawall_downstream_connections",
            "Client connections open on the proxy's listeners, in this process.",
        )
        .expect("static metric definition");
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "seawall_upstream_duration_seconds",
                "From choosing an upstream server to the end of its response, by upstream \
                 (nginx's $upstream_response_time).",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["upstream"],
        )
        .expect("static metric definition");
        let access_log_dropped = IntCounter::new(
            "seawall_access_log_dropped_total",
            "Access log lines dropped because the writer was behind (a stalled disk or pipe).",
        )
        .expect("static metric definition");
        let canary_requests = IntCounterVec::new(
            Opts::new(
                "seawall_canary_requests_total",
                "Requests of canary routes, by route, side (stable, canary) and outcome \
                 (ok, error = 5xx from the upstream or Seawall's own).",
            ),
            &["route", "side", "outcome"],
        )
        .expect("static metric definition");
        let canary_weight = GaugeVec::new(
            Opts::new(
                "seawall_canary_weight",
                "Percent of a canary route's requests sent to the canary now (0 while rolled \
                 back or frozen).",
            ),
            &["route"],
        )
        .expect("static metric definition");
        let canary_rollbacks = IntCounterVec::new(
            Opts::new(
                "seawall_canary_rollbacks_total",
                "Canary rollbacks, by route and trigger (judge, manual).",
            ),
            &["route", "trigger"],
        )
        .expect("static metric definition");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "seawall_build_info",
                "Always 1; the labels say which build is running.",
            ),
            &["version"],
        )
        .expect("static metric definition");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let queue_gauge = |name: &str, help: &str| {
            IntGaugeVec::new(Opts::new(name, help), &["queue"]).expect("static metric definition")
        };
        let queue_depth = queue_gauge(
            "seawall_queue_depth",
            "Entries in a queue waiting for (or in) delivery.",
        );
        let queue_bytes = queue_gauge(
            "seawall_queue_bytes",
            "Bytes a queue holds (entries and dead letters), what max_bytes bounds.",
        );
        let queue_oldest_age = GaugeVec::new(
            Opts::new(
                "seawall_queue_oldest_age_seconds",
                "Age of the oldest entry waiting in a queue.",
            ),
            &["queue"],
        )
        .expect("static metric definition");
        let queue_pace = GaugeVec::new(
            Opts::new(
                "seawall_queue_pace_rps",
                "Current delivery pace: the queue's rate, lower while it backs off.",
            ),
            &["queue"],
        )
        .expect("static metric definition");
        let queue_accepted = IntCounterVec::new(
            Opts::new(
                "seawall_queue_accepted_total",
                "Requests durably queued (acknowledged to the client).",
            ),
            &["queue"],
        )
        .expect("static metric definition");
        let queue_refused = IntCounterVec::new(
            Opts::new(
                "seawall_queue_refused_total",
                "Requests a queue refused, by reason (full, too_large, store_error).",
            ),
            &["queue", "reason"],
        )
        .expect("static metric definition");
        let queue_deliveries = IntCounterVec::new(
            Opts::new(
                "seawall_queue_deliveries_total",
                "Delivery attempts, by result (delivered, retry, dead).",
            ),
            &["queue", "result"],
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(upstream_duration.clone()),
            Box::new(access_log_dropped.clone()),
            Box::new(build_info),
            Box::new(canary_requests.clone()),
            Box::new(canary_weight.clone()),
            Box::new(canary_rollbacks.clone()),
            // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, ...:
            // the names every Prometheus exporter uses, read from /proc at scrape time.
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
            Box::new(request_duration.clone()),
            Box::new(upstream_requests.clone()),
            Box::new(ratelimit_decisions.clone()),
            Box::new(ratelimit_tracked_keys.clone()),
            Box::new(campaign_requests.clone()),
            Box::new(campaign_unregistered_tags.clone()),
            Box::new(campaign_observed_rps.clone()),
            Box::new(campaign_expected_rps.clone()),
            Box::new(campaign_load_ratio.clone()),
            Box::new(csp_violations.clone()),
            Box::new(config_reloads.clone()),
            Box::new(config_generation.clone()),
            Box::new(last_reload_success.clone()),
            Box::new(downstream_connections.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_bytes.clone()),
            Box::new(queue_oldest_age.clone()),
            Box::new(queue_pace.clone()),
            Box::new(queue_accepted.clone()),
            Box::new(queue_refused.clone()),
            Box::new(queue_deliveries.clone()),
        ] {
            registry
                .register(c)
                .expect("each family is registered once");
        }
        let fleet = crate::fleet::FleetMetrics::new();
        fleet
            .register(&registry)
            .expect("each family is registered once");
        // Both results exist from the start, so `rate()` and alerts see a zero, not a gap.
        config_reloads.with_label_values(&["success"]);
        config_reloads.with_label_values(&["failure"]);
        Metrics {
            registry,
            requests,
            request_duration,
            upstream_requests,
            ratelimit_decisions,
            ratelimit_tracked_keys,
            campaign_requests,
            campaign_unregistered_tags,
            campaign_observed_rps,
            campaign_expected_rps,
            campaign_load_ratio,
            csp_violations,
            config_reloads,
            config_generation,
            last_reload_success,
            downstream_connections,
            upstream_duration,
            access_log_dropped,
            canary_requests,
            canary_weight,
            canary_rollbacks,
            fleet,
            queue_depth,
            queue_bytes,
            queue_oldest_age,
            queue_pace,
            queue_accepted,
            queue_refused,
            queue_deliveries,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let families = self.registry.gather();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        out
    }
}

/// Remove the series of `vec` that `keep` refuses, by their labels as (name, value) pairs. A
/// route, limit or launch a reload removed would otherwise report its last value forever.
pub fn remove_stale<T: prometheus::core::MetricVecBuilder>(
    vec: &prometheus::core::MetricVec<T>,
    keep: impl Fn(&[(&str, &str)]) -> bool,
) {
    use prometheus::core::Collector;
    let mut stale: Vec<Vec<(String, String)>> = Vec::new();
    for mf in vec.collect() {
        for m in mf.get_metric() {
            let labels: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            if !keep(&labels) {
                stale.push(
                    labels
                        .iter()
                        .map(|(n, v)| (n.to_string(), v.to_string()))
                        .collect(),
                );
            }
        }
    }
    for labels in stale {
        let map: std::collections::HashMap<&str, &str> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let _ = vec.remove(&map);
    }
}

/// The value of label `name` among (name, value) pairs.
pub fn label<'a>(labels: &[(&str, &'a str)], name: &str) -> &'a str {
    labels
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, v)| v)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
