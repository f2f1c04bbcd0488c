//! The last ten minutes, second by second, in fixed ring buffers.
//!
//! Fed once a second by [`History::record`] with the cumulative counters the proxy keeps anyway
//! (its Prometheus metric objects, read by [`super::sample`]); the request path does no work for
//! it. Each second is stored as the difference from the previous one, so "requests per second",
//! "rejected per second" and a latency quantile over any recent span are sums over slots.
//!
//! Size: one slot is 84 bytes per route (requests, four status classes, 16 latency buckets, as
//! `u32`), 20 bytes per limit (five decisions) and 4 bytes per campaign (the observed rate, an
//! `f32`), plus 4 bytes of CSP violations; 600 slots make 50,400 bytes per route, 12,000 per
//! limit, 2,400 per campaign and 2,400 for CSP. A config with 10 routes, 10 limits and 5
//! campaigns holds 640 KB. Series are allocated when a route, limit or campaign appears in the
//! config and dropped when it leaves it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Seconds kept.
pub const SLOTS: usize = 600;
/// Latency buckets per second: the finite bounds of `seawall_request_duration_seconds` (14)
/// and +Inf, with room for one more bound.
pub const LATENCY_BUCKETS: usize = 16;
/// Status classes counted apart, in this order.
pub const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];
/// Rate-limit decisions, in the order of `seawall_ratelimit_decisions_total`'s `decision`.
pub const DECISIONS: [&str; 5] = [
    "passed",
    "delayed",
    "rejected",
    "dry_run_rejected",
    "exempt",
];

/// A limit's identity in the console: its scope (route name, or "campaign") and its name.
pub type LimitId = (Arc<str>, Arc<str>);

/// One route's counters since the process started, as Prometheus holds them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteTotals {
    pub requests: u64,
    pub classes: [u64; 4],
    /// Cumulative bucket counts (`le`) in the order of [`Sample::latency_bounds`], then the
    /// total (+Inf).
    pub latency: [u64; LATENCY_BUCKETS],
}

/// What the tick reads each second. Counters are cumulative; the history takes differences.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub routes: Vec<(Arc<str>, RouteTotals)>,
    pub limits: Vec<(LimitId, [u64; 5])>,
    /// Each campaign's observed rate (requests per second) at this tick.
    pub campaigns: Vec<(Arc<str>, f64)>,
    pub csp_violations: u64,
    /// Finite upper bounds (seconds) of the latency buckets, at most `LATENCY_BUCKETS - 1`.
    pub latency_bounds: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
struct RouteSecond {
    requests: u32,
    classes: [u32; 4],
    latency: [u32; LATENCY_BUCKETS],
}

/// A series' seconds; `since` is the tick of its first slot, so that a series born by a reload
/// does not report the seconds before it as zeros.
struct Ring<T> {
    since: u64,
    slots: Box<[T]>,
}

impl<T: Copy + Default> Ring<T> {
    fn new(since: u64) -> Ring<T> {
        Ring {
            since,
            slots: vec![T::default(); SLOTS].into_boxed_slice(),
        }
    }

    fn put(&mut self, tick: u64, v: T) {
        self.slots[(tick % SLOTS as u64) as usize] = v;
    }

    /// The last `n` seconds up to `now` (exclusive), oldest first.
    fn last(&self, now: u64, n: usize) -> impl Iterator<Item = &T> {
        let from = now.saturating_sub(n.min(SLOTS) as u64).max(self.since);
        (from..now).map(|t| &self.slots[(t % SLOTS as u64) as usize])
    }
}

fn delta(now: u64, before: u64) -> u32 {
    u32::try_from(now.saturating_sub(before)).unwrap_or(u32::MAX)
}

/// One route's recent figures.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    /// Requests per second over the last `span_s` seconds.
    pub rps: f64,
    /// Per second, per status class ([`CLASSES`]), over the same span.
    pub classes: [f64; 4],
    pub span_s: usize,
    /// Latency quantiles over the last `latency_span_s` seconds, in seconds; `None` without
    /// requests.
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub latency_span_s: usize,
    pub requests_in_latency_span: u64,
    /// Requests of each second of the last ten minutes (at most), oldest first.
    pub series: Vec<u32>,
}

/// One limit's recent decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitView {
    /// Per second, per decision ([`DECISIONS`]), over the last `span_s` seconds.
    pub per_s: [f64; 5],
    pub span_s: usize,
    /// Rejections (real ones) of each second, oldest first.
    pub rejected_series: Vec<u32>,
}

#[derive(Default)]
pub struct History {
    /// Seconds recorded; the next one goes to slot `ticks % SLOTS`.
    ticks: u64,
    routes: BTreeMap<Arc<str>, Ring<RouteSecond>>,
    limits: BTreeMap<LimitId, Ring<[u32; 5]>>,
    campaigns: BTreeMap<Arc<str>, Ring<f32>>,
    csp: Option<Ring<u32>>,
    /// Last cumulative values, kept for every series ever seen (Prometheus never forgets a
    /// label set either), so a route that comes back after a reload shows no false spike.
    prev_routes: HashMap<Arc<str>, RouteTotals>,
    prev_limits: HashMap<LimitId, [u64; 5]>,
    prev_csp: u64,
    latency_bounds: Vec<f64>,
}

impl History {
    /// Store one second. Series missing from `sample` are dropped (gone from the config).
    pub fn record(&mut self, sample: &Sample) {
        let t = self.ticks;
        if !sample.latency_bounds.is_empty() {
            self.latency_bounds = sample.latency_bounds.clone();
        }
        let mut routes = BTreeMap::new();
        for (name, now) in &sample.routes {
            let before = self
                .prev_routes
                .insert(name.clone(), *now)
                .unwrap_or_default();
            let mut s = RouteSecond {
                requests: delta(now.requests, before.requests),
                ..RouteSecond::default()
            };
            for i in 0..4 {
                s.classes[i] = delta(now.classes[i], before.classes[i]);
            }
            for i in 0..LATENCY_BUCKETS {
                s.latency[i] = delta(now.latency[i], before.latency[i]);
            }
            let mut ring = self.routes.remove(name).unwrap_or_else(|| Ring::new(t));
            ring.put(t, s);
            routes.insert(name.clone(), ring);
        }
        self.routes = routes;
        let mut limits = BTreeMap::new();
        for (id, now) in &sample.limits {
            let before = self
                .prev_limits
                .insert(id.clone(), *now)
                .unwrap_or_default();
            let d = std::array::from_fn(|i| delta(now[i], before[i]));
            let mut ring = self.limits.remove(id).unwrap_or_else(|| Ring::new(t));
            ring.put(t, d);
            limits.insert(id.clone(), ring);
        }
        self.limits = limits;
        let mut campaigns = BTreeMap::new();
        for (name, rps) in &sample.campaigns {
            let mut ring = self.campaigns.remove(name).unwrap_or_else(|| Ring::new(t));
            ring.put(t, *rps as f32);
            campaigns.insert(name.clone(), ring);
        }
        self.campaigns = campaigns;
        let csp = self.csp.get_or_insert_with(|| Ring::new(t));
        csp.put(t, delta(sample.csp_violations, self.prev_csp));
        self.prev_csp = sample.csp_violations;
        self.ticks = t + 1;
    }

    /// Seconds recorded so far.
    pub fn seconds(&self) -> u64 {
        self.ticks
    }

    /// `span_s`: the span of the rates (e.g. 10 s); `latency_span_s`: of the quantiles (60 s).
    pub fn route(&self, name: &str, span_s: usize, latency_span_s: usize) -> Option<RouteView> {
        let ring = self.routes.get(name)?;
        let now = self.ticks;
        let mut n = 0usize;
        let mut requests = 0u64;
        let mut classes = [0u64; 4];
        for s in ring.last(now, span_s) {
            n += 1;
            requests += u64::from(s.requests);
            for (c, v) in classes.iter_mut().zip(s.classes) {
                *c += u64::from(v);
            }
        }
        let per_s = |v: u64| if n == 0 { 0.0 } else { v as f64 / n as f64 };
        let mut latency = [0u64; LATENCY_BUCKETS];
        for s in ring.last(now, latency_span_s) {
            for (l, v) in latency.iter_mut().zip(s.latency) {
                *l += u64::from(v);
            }
        }
        let nb = self.latency_bounds.len().min(LATENCY_BUCKETS - 1);
        let cumulative = &latency[..=nb];
        Some(RouteView {
            rps: per_s(requests),
            classes: classes.map(per_s),
            span_s: n,
            p50: quantile(0.5, &self.latency_bounds[..nb], cumulative),
            p99: quantile(0.99, &self.latency_bounds[..nb], cumulative),
            latency_span_s: ring.last(now, latency_span_s).count(),
            requests_in_latency_span: cumulative[nb],
            series: ring.last(now, SLOTS).map(|s| s.requests).collect(),
        })
    }

    pub fn limit(&self, id: &LimitId, span_s: usize) -> Option<LimitView> {
        let ring = self.limits.get(id)?;
        let now = self.ticks;
        let mut n = 0usize;
        let mut sums = [0u64; 5];
        for s in ring.last(now, span_s) {
            n += 1;
            for (a, v) in sums.iter_mut().zip(s) {
                *a += u64::from(*v);
            }
        }
        Some(LimitView {
            per_s: sums.map(|v| if n == 0 { 0.0 } else { v as f64 / n as f64 }),
            span_s: n,
            rejected_series: ring.last(now, SLOTS).map(|s| s[2]).collect(),
        })
    }

    /// A campaign's observed rate at each second, oldest first.
    pub fn campaign(&self, name: &str) -> Option<Vec<f32>> {
        let ring = self.campaigns.get(name)?;
        Some(ring.last(self.ticks, SLOTS).copied().collect())
    }

    /// CSP violations received in each second, oldest first.
    pub fn csp(&self) -> Vec<u32> {
        self.csp
            .as_ref()
            .map(|r| r.last(self.ticks, SLOTS).copied().collect())
            .unwrap_or_default()
    }
}

/// A quantile from cumulative bucket counts, interpolated linearly inside its bucket as
/// Prometheus' `histogram_quantile` does; in the +Inf bucket it is the highest finite bound.
/// `cumulative` has one more entry than `bounds` (the total).
pub fn quantile(q: f64, bounds: &[f64], cumulative: &[u64]) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 || cumulative.len() != bounds.len() + 1 {
        return None;
    }
    let rank = q * total as f64;
    let i = cumulative.iter().position(|&c| c as f64 >= rank)?;
    if i == bounds.len() {
        return bounds.last().copied();
    }
    let (lower, below) = if i == 0 {
        (0.0, 0)
    } else {
        (bounds[i - 1], cumulative[i - 1])
    };
    let inside = cumulative[i] - below;
    if inside == 0 {
        return Some(bounds[i]);
    }
    Some(lower + (bounds[i] - lower) * (rank - below as f64) / inside as f64)
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
