//! One second's reading of the counters the proxy already keeps, for [`super::history`].
//!
//! Requests and latencies come from the Prometheus families (a `collect` a second, a few
//! microseconds per series); limit decisions from the counters each bound limit holds; campaign
//! rates from the gauges the campaign tick has just set. Nothing here runs per request.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus::core::Collector;

use super::history::{LATENCY_BUCKETS, LimitId, RouteTotals, Sample};
use crate::campaign::UNREGISTERED;
use crate::limits::BoundLimit;
use crate::limits::registry::CAMPAIGN_SCOPE;
use crate::metrics::{Metrics, NO_ROUTE};
use crate::snapshot::Snapshot;

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Every bound limit of a snapshot with its console identity: route limits under their route,
/// campaign limits under [`CAMPAIGN_SCOPE`] (as their metrics are).
pub fn bound_limits(snap: &Snapshot) -> Vec<(LimitId, Option<&str>, &BoundLimit)> {
    let scope: Arc<str> = Arc::from(CAMPAIGN_SCOPE);
    let mut out = Vec::new();
    for r in &snap.routes {
        for b in &r.limits {
            out.push(((r.name.clone(), b.spec.name.clone()), None, b));
        }
    }
    let c = &snap.campaigns;
    for l in &c.launches {
        if let Some(b) = &l.limit {
            out.push(((scope.clone(), b.spec.name.clone()), Some(&*l.name), b));
        }
    }
    if let Some(b) = &c.unregistered.limit {
        out.push(((scope, b.spec.name.clone()), Some(UNREGISTERED), b));
    }
    out
}

/// The campaigns the console follows: every launch, and "unregistered" when tags are read.
pub fn campaign_names(snap: &Snapshot) -> Vec<Arc<str>> {
    let c = &snap.campaigns;
    let mut names: Vec<Arc<str>> = c.launches.iter().map(|l| l.name.clone()).collect();
    if !c.tag_sources.is_empty() {
        names.push(Arc::from(UNREGISTERED));
    }
    names
}

pub fn read(metrics: &Metrics, snap: &Snapshot) -> Sample {
    let mut routes: BTreeMap<Arc<str>, RouteTotals> = snap
        .routes
        .iter()
        .map(|r| (r.name.clone(), RouteTotals::default()))
        .collect();
    routes.insert(Arc::from(NO_ROUTE), RouteTotals::default());
    for mf in metrics.requests.collect() {
        for m in mf.get_metric() {
            let Some(t) = routes.get_mut(label(m, "route")) else {
                continue;
            };
            let n = m.get_counter().value() as u64;
            t.requests += n;
            match label(m, "status").as_bytes().first() {
                Some(b'2') => t.classes[0] += n,
                Some(b'3') => t.classes[1] += n,
                Some(b'4') => t.classes[2] += n,
                Some(b'5') => t.classes[3] += n,
                _ => {}
            }
        }
    }
    let mut latency_bounds = Vec::new();
    for mf in metrics.request_duration.collect() {
        for m in mf.get_metric() {
            let Some(t) = routes.get_mut(label(m, "route")) else {
                continue;
            };
            let h = m.get_histogram();
            let buckets = h.get_bucket();
            let nb = buckets.len().min(LATENCY_BUCKETS - 1);
            if latency_bounds.is_empty() {
                latency_bounds = buckets[..nb].iter().map(|b| b.upper_bound()).collect();
            }
            for (i, b) in buckets[..nb].iter().enumerate() {
                t.latency[i] = b.cumulative_count();
            }
            t.latency[nb] = h.sample_count();
        }
    }
    let limits = bound_limits(snap)
        .into_iter()
        .map(|(id, _, b)| {
            let c = &b.counters;
            let counts = [
                c.passed.get(),
                c.delayed.get(),
                c.rejected.get(),
                c.dry_run_rejected.get(),
                c.exempt.get(),
            ];
            (id, counts)
        })
        .collect();
    let mut observed: BTreeMap<String, f64> = BTreeMap::new();
    for mf in metrics.campaign_observed_rps.collect() {
        for m in mf.get_metric() {
            observed.insert(label(m, "campaign").to_string(), m.get_gauge().value());
        }
    }
    let campaigns = campaign_names(snap)
        .into_iter()
        .map(|n| {
            let rps = observed.get(&*n).copied().unwrap_or(0.0);
            (n, rps)
        })
        .collect();
    let csp_violations = metrics
        .csp_violations
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .map(|m| m.get_counter().value() as u64)
        .sum();
    Sample {
        routes: routes.into_iter().collect(),
        limits,
        campaigns,
        csp_violations,
        latency_bounds,
    }
}
