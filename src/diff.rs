//! What a reload changed, in words an SRE reads in the log, and the upstream pools it keeps.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::csp::CspChoice;
use crate::limits::LimitSpec;
use crate::routing::{PathMatch, Route};
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

fn route_summary(r: &Route) -> String {
    let path = match &r.path {
        PathMatch::Any => "any path".to_string(),
        PathMatch::Exact(p) => format!("path {p}"),
        PathMatch::Prefix(p) => format!("prefix {p}"),
        PathMatch::Regex(re) => format!("regex {}", re.as_str()),
    };
    let host = r
        .host
        .as_ref()
        .map_or("any host".to_string(), |h| format!("host {h}"));
    let methods = r.methods.as_ref().map_or("any method".to_string(), |m| {
        m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
    });
    let csp = match &r.csp {
        CspChoice::Off => "off".to_string(),
        CspChoice::Policy(p) => p.name.to_string(),
    };
    format!(
        "{host}, {path}, {methods}, upstream {}, csp {csp}, max_inflight {}",
        r.upstream.name, r.max_inflight
    )
}

fn limit_summary(l: &LimitSpec) -> String {
    format!(
        "key {} rate {} burst {}{}{}{} status {} max_keys {}",
        l.key,
        l.rate,
        l.burst,
        if l.nodelay { " nodelay" } else { "" },
        if !l.nodelay && l.delay > 0 {
            format!(" delay {}", l.delay)
        } else {
            String::new()
        },
        if l.dry_run { " dry_run" } else { "" },
        l.status.as_u16(),
        l.max_keys
    )
}

fn upstream_summary(u: &Upstream) -> String {
    let servers: Vec<String> = u.servers.iter().map(ToString::to_string).collect();
    format!(
        "servers {} connect {:?} read {:?} max_inflight {} health {}",
        servers.join(","),
        u.connect_timeout,
        u.read_timeout,
        u.max_inflight,
        u.health.as_ref().map_or("none".to_string(), |h| format!(
            "{} every {:?}",
            h.path, h.interval
        ))
    )
}

/// Compare two keyed sets: one line per added, removed or changed item. Summaries are only
/// written for what differs (`same` decides), so a reload of a large config stays cheap.
fn compare<T: ?Sized>(
    kind: &str,
    old: &BTreeMap<String, &T>,
    new: &BTreeMap<String, &T>,
    same: impl Fn(&T, &T) -> bool,
    summary: impl Fn(&T) -> String,
    out: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("{kind} {k} added: {}", summary(v))),
            Some(o) if !same(o, v) => out.push(format!(
                "{kind} {k} changed: {} -> {}",
                summary(o),
                summary(v)
            )),
            _ => {}
        }
    }
    for k in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("{kind} {k} removed"));
    }
}

fn same_route(a: &Route, b: &Route) -> bool {
    let path_eq = match (&a.path, &b.path) {
        (PathMatch::Any, PathMatch::Any) => true,
        (PathMatch::Exact(x), PathMatch::Exact(y))
        | (PathMatch::Prefix(x), PathMatch::Prefix(y)) => x == y,
        (PathMatch::Regex(x), PathMatch::Regex(y)) => x.as_str() == y.as_str(),
        _ => false,
    };
    path_eq
        && a.host == b.host
        && a.methods == b.methods
        && a.upstream.name == b.upstream.name
        && a.csp == b.csp
        && a.max_inflight == b.max_inflight
}

fn launch_summary(l: &crate::campaign::Launch) -> String {
    format!(
        "tags {} action {:?} window {}..{} targets {} limit {}",
        l.tags.join(","),
        l.action,
        l.starts.map_or("-".into(), |t| t.to_string()),
        l.ends.map_or("-".into(), |t| t.to_string()),
        l.targets.join(","),
        l.limit.as_ref().map_or("none".into(), limit_summary)
    )
}

/// A short human-readable account of what changed from `old` to `new`, one line per change.
pub fn describe(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    fn routes(s: &Snapshot) -> BTreeMap<String, &Route> {
        s.routes.iter().map(|r| (r.name.to_string(), r)).collect()
    }
    compare(
        "route",
        &routes(old),
        &routes(new),
        same_route,
        route_summary,
        &mut out,
    );
    let order = |s: &Snapshot| s.routes.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    if out.is_empty() && order(old) != order(new) {
        out.push(format!("route order changed: {}", order(new).join(", ")));
    }
    fn limits(s: &Snapshot) -> BTreeMap<String, &LimitSpec> {
        s.routes
            .iter()
            .flat_map(|r| {
                r.limits
                    .iter()
                    .map(move |l| (format!("{}/{}", r.name, l.name), l))
            })
            .collect()
    }
    compare(
        "limit",
        &limits(old),
        &limits(new),
        |a, b| a == b,
        limit_summary,
        &mut out,
    );
    fn ups(s: &Snapshot) -> BTreeMap<String, &Upstream> {
        s.upstreams
            .iter()
            .map(|(n, u)| (n.to_string(), u.as_ref()))
            .collect()
    }
    compare(
        "upstream",
        &ups(old),
        &ups(new),
        |a, b| a.same_definition(b),
        upstream_summary,
        &mut out,
    );
    fn policies(s: &Snapshot) -> BTreeMap<String, &crate::csp::Policy> {
        s.csp
            .policies
            .iter()
            .map(|(n, p)| (n.to_string(), p.as_ref()))
            .collect()
    }
    compare(
        "CSP policy",
        &policies(old),
        &policies(new),
        |a, b| a == b,
        |p| format!("{:?} {}", p.mode, p.header_value),
        &mut out,
    );
    fn launches(s: &Snapshot) -> BTreeMap<String, &crate::campaign::Launch> {
        s.campaigns
            .launches
            .iter()
            .map(|l| (l.name.to_string(), l))
            .collect()
    }
    compare(
        "launch",
        &launches(old),
        &launches(new),
        |a, b| launch_summary(a) == launch_summary(b),
        launch_summary,
        &mut out,
    );
    out
}

/// Keep the old pool object (with its health-check state and round-robin position) for every
/// upstream whose definition did not change, and point the new routes at it.
pub fn carry_pools(old: &Snapshot, new: &mut Snapshot) -> usize {
    let mut carried = 0;
    for (name, up) in new.upstreams.iter_mut() {
        if let Some(prev) = old.upstreams.get(name)
            && prev.same_definition(up)
        {
            *up = prev.clone();
            carried += 1;
        }
    }
    let pools: BTreeMap<Arc<str>, Arc<Upstream>> = new.upstreams.clone();
    for r in &mut new.routes {
        if let Some(p) = pools.get(&r.upstream.name) {
            r.upstream = p.clone();
        }
        if let Some(c) = &mut r.canary
            && let Some(p) = pools.get(&c.upstream.name)
        {
            c.upstream = p.clone();
        }
    }
    if let Some(ingest) = &mut new.campaigns.ingest
        && let Some(p) = pools.get(&ingest.name)
    {
        *ingest = p.clone();
    }
    carried
}
