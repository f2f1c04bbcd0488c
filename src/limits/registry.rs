//! Limiter state across reloads.
//!
//! Per-key state lives here, keyed by the limit's identity (route name, limit name, key
//! source), outside the snapshot. Building a snapshot ([`crate::snapshot::build`]) binds each
//! limit ([`Registry::bind`]) and then forgets the rest ([`Registry::retain`]): an unchanged or
//! re-rated limit keeps its keys (new parameters apply to them at once), a new one starts empty,
//! and a removed one is dropped once no snapshot refers to it. So a client mid-burst keeps its
//! state when someone edits an unrelated route.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::HeaderValue;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge};

use super::LimitSpec;
use super::limiter::{Limiter, Params};
use crate::console::topk::RejectedKeys;
use crate::metrics::Metrics;

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
    /// Where its state is kept in the registry.
    pub identity: Identity,
    pub limiter: Arc<Limiter>,
    pub counters: DecisionCounters,
    pub tracked: IntGauge,
    /// `RateLimit-Policy` member for this limit, e.g. `"per-ip";q=11;w=133`.
    pub policy_header: HeaderValue,
    /// At most one dry-run log line per second for this limit.
    pub dry_run_log: crate::logging::Throttle,
    /// A `scope = "fleet"` limit: its state in Redis ([`crate::fleet`]). Its local `limiter`
    /// then serves only as the `rate / expected_instances` fallback's sibling, unused.
    pub fleet: Option<Arc<crate::fleet::FleetLimit>>,
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

    /// A limit of a config being built, with its state: the limiter kept under its identity
    /// (re-rated to `spec`), or a new one. `scope` is the route's name, or [`CAMPAIGN_SCOPE`].
    pub fn bind(&self, scope: &Arc<str>, spec: LimitSpec, metrics: &Metrics) -> BoundLimit {
        let identity = Identity {
            scope: scope.clone(),
            limit: spec.name.clone(),
            key: spec.key.to_string(),
        };
        let rejected_keys = self
            .rejected_keys
            .lock()
            .entry(identity.clone())
            .or_default()
            .clone();
        let limiter = self.limiter(identity.clone(), &spec);
        let counter = |d: &'static str| {
            metrics
                .ratelimit_decisions
                .with_label_values(&[scope.as_ref(), spec.name.as_ref(), d])
        };
        BoundLimit {
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
            policy_header: BoundLimit::policy_value(&spec, &limiter.params()),
            limiter,
            identity,
            spec,
            dry_run_log: Default::default(),
            fleet: None,
            rejected_keys,
        }
    }

    /// Forget every limiter but those of `live` (the limits of the config just built), and the
    /// tracked-keys series of the limits that are gone.
    pub fn retain<'a>(&self, live: impl Iterator<Item = &'a BoundLimit>, metrics: &Metrics) {
        let live: HashSet<&Identity> = live.map(|b| &b.identity).collect();
        self.limiters.lock().retain(|id, _| live.contains(id));
        self.rejected_keys.lock().retain(|id, _| live.contains(id));
        crate::metrics::remove_stale(&metrics.ratelimit_tracked_keys, |labels| {
            let (route, limit) = (
                crate::metrics::label(labels, "route"),
                crate::metrics::label(labels, "limit"),
            );
            live.iter()
                .any(|id| *id.scope == *route && *id.limit == *limit)
        });
    }

    pub fn len(&self) -> usize {
        self.limiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BoundLimit {
    /// The maintenance service's every-second work: the tracked-keys gauge, and with `reclaim`
    /// forgetting drained idle keys (nginx's expiry).
    pub fn upkeep(&self, now_ms: u64, reclaim: bool) {
        if reclaim {
            self.limiter.reclaim(now_ms);
        }
        self.tracked.set(self.limiter.tracked() as i64);
    }
}
