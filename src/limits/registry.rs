//! Limiter state across reloads.
//!
//! Per-key state lives here, keyed by the limit's identity (route name, limit name, key
//! source), outside the snapshot. Binding a freshly loaded snapshot reconciles: an unchanged or
//! re-rated limit keeps its keys (new parameters apply to them at once), a new one starts empty,
//! and a removed one is dropped once no snapshot refers to it. So a client mid-burst keeps its
//! state when someone edits an unrelated route.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use http::HeaderValue;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use super::LimitSpec;
use super::limiter::{Limiter, Params};
use crate::console::topk::RejectedKeys;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;

/// The `route` label and identity scope of campaign limits.
pub const CAMPAIGN_SCOPE: &str = "campaign";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub scope: Arc<str>,
    pub limit: Arc<str>,
    pub key: String,
}

/// The decision counters of one limit, resolved once so a request does no label lookups.
#[derive(Debug, Clone)]
pub struct DecisionCounters {
    pub passed: IntCounter,
    pub delayed: IntCounter,
    pub rejected: IntCounter,
    pub dry_run_rejected: IntCounter,
    pub exempt: IntCounter,
}

/// A limit of the live config with its state and everything its answers need, built at bind.
#[derive(Debug)]
pub struct BoundLimit {
    pub spec: LimitSpec,
    pub limiter: Arc<Limiter>,
    pub counters: DecisionCounters,
    pub tracked: IntGauge,
    /// `RateLimit-Policy` member for this limit, e.g. `"per-ip";q=11;w=133`.
    pub policy_header: HeaderValue,
    /// Last time (ms) a dry-run reject was logged: at most one line per second per limit.
    pub last_dry_run_log: AtomicU64,
    pub dry_run_suppressed: AtomicU64,
    /// The keys this limit rejects most, for the console; kept across reloads like `limiter`.
    pub rejected_keys: Arc<RejectedKeys>,
}

impl BoundLimit {
    /// `q`: requests a fresh client gets at once (burst + 1); `w`: seconds for that quota to
    /// come back at the limit's rate.
    fn policy_value(spec: &LimitSpec, p: &Params) -> HeaderValue {
        let q = u64::from(spec.burst) + 1;
        let w = (q * 1000 * 1000).div_ceil(p.rate_m).div_ceil(1000).max(1);
        let v = format!("\"{}\";q={q};w={w}", spec.name);
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("\"limit\""))
    }

    /// `RateLimit` member after a decision that left `excess`: `r` requests would still pass
    /// now, `t` seconds until the whole quota is back.
    pub fn remaining(&self, excess: u64) -> (u64, u64) {
        let p = self.limiter.params();
        let r = p.burst_m.saturating_sub(excess) / 1000;
        let t = excess.div_ceil(p.rate_m);
        (r, t)
    }
}

#[derive(Default)]
pub struct Registry {
    limiters: Mutex<HashMap<Identity, Arc<Limiter>>>,
    rejected_keys: Mutex<HashMap<Identity, Arc<RejectedKeys>>>,
}

impl Registry {
    fn limiter(&self, id: Identity, spec: &LimitSpec) -> Arc<Limiter> {
        let params = Params::from_spec(spec);
        let mut map = self.limiters.lock();
        match map.get(&id) {
            Some(l) => {
                l.set_params(params);
                l.clone()
            }
            None => {
                let l = Arc::new(Limiter::new(params));
                map.insert(id, l.clone());
                l
            }
        }
    }

    fn bind_one(&self, scope: &Arc<str>, spec: &LimitSpec, metrics: &Metrics) -> BoundLimit {
        let id = Identity {
            scope: scope.clone(),
            limit: spec.name.clone(),
            key: spec.key.to_string(),
        };
        let rejected_keys = self
            .rejected_keys
            .lock()
            .entry(id.clone())
            .or_default()
            .clone();
        let limiter = self.limiter(id, spec);
        let counter = |d: &'static str| {
            metrics
                .ratelimit_decisions
                .with_label_values(&[scope.as_ref(), spec.name.as_ref(), d])
        };
        BoundLimit {
            spec: spec.clone(),
            counters: DecisionCounters {
                passed: counter("passed"),
                delayed: counter("delayed"),
                rejected: counter("rejected"),
                dry_run_rejected: counter("dry_run_rejected"),
                exempt: counter("exempt"),
            },
            tracked: metrics
                .ratelimit_tracked_keys
                .with_label_values(&[scope.as_ref(), spec.name.as_ref()]),
            policy_header: BoundLimit::policy_value(spec, &limiter.params()),
            limiter,
            last_dry_run_log: AtomicU64::new(0),
            dry_run_suppressed: AtomicU64::new(0),
            rejected_keys,
        }
    }

    /// Attach state to every limit of a snapshot that passed validation, then forget limits
    /// the snapshot no longer has. Call just before the snapshot is stored.
    pub fn bind(&self, snap: &mut Snapshot, metrics: &Metrics) {
        let mut live = std::collections::HashSet::new();
        let mut note = |scope: &Arc<str>, s: &LimitSpec| {
            live.insert(Identity {
                scope: scope.clone(),
                limit: s.name.clone(),
                key: s.key.to_string(),
            });
        };
        for route in &mut snap.routes {
            route.bound = route
                .limits
                .iter()
                .map(|spec| self.bind_one(&route.name, spec, metrics))
                .collect();
            for s in &route.limits {
                note(&route.name, s);
            }
        }
        // Campaign limits count across routes; their metrics say route="campaign".
        let scope: Arc<str> = Arc::from(CAMPAIGN_SCOPE);
        let c = &mut snap.campaigns;
        for l in &mut c.launches {
            if let Some(spec) = &l.limit {
                l.bound = Some(self.bind_one(&scope, spec, metrics));
                note(&scope, spec);
            }
        }
        if let Some(spec) = &c.unregistered.limit {
            c.unregistered.bound = Some(self.bind_one(&scope, spec, metrics));
            note(&scope, spec);
        }
        self.limiters.lock().retain(|id, _| live.contains(id));
        self.rejected_keys.lock().retain(|id, _| live.contains(id));
        // Series of removed limits would otherwise report their last value forever.
        for label_set in stale_series(&live, metrics) {
            let _ = metrics
                .ratelimit_tracked_keys
                .remove_label_values(&[&label_set.0, &label_set.1]);
        }
    }

    pub fn len(&self) -> usize {
        self.limiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stale_series(
    live: &std::collections::HashSet<Identity>,
    metrics: &Metrics,
) -> Vec<(String, String)> {
    use prometheus::core::Collector;
    let mut out = Vec::new();
    for mf in metrics.ratelimit_tracked_keys.collect() {
        for m in mf.get_metric() {
            let mut route = String::new();
            let mut limit = String::new();
            for l in m.get_label() {
                match l.name() {
                    "route" => route = l.value().to_string(),
                    "limit" => limit = l.value().to_string(),
                    _ => {}
                }
            }
            if !live
                .iter()
                .any(|id| *id.scope == *route && *id.limit == *limit)
            {
                out.push((route, limit));
            }
        }
    }
    out
}

/// Refresh the tracked-keys gauges and reclaim drained keys; the maintenance service calls
/// this every second.
pub fn maintain(snap: &Snapshot, now_ms: u64, reclaim: bool) {
    let c = &snap.campaigns;
    let campaign = c
        .launches
        .iter()
        .filter_map(|l| l.bound.as_ref())
        .chain(c.unregistered.bound.as_ref());
    for b in snap
        .routes
        .iter()
        .flat_map(|r| r.bound.iter())
        .chain(campaign)
    {
        if reclaim {
            b.limiter.reclaim(now_ms);
        }
        b.tracked.set(b.limiter.tracked() as i64);
    }
}
