//! What a reload changed, in words an SRE reads in the log and in `/-/config`.
//!
//! Every setting of the three files is covered: the server's reloadable settings, each route
//! (matchers, target, CSP, caps, body limit) and its limits, each upstream, csp.toml's head and
//! policies, campaigns.toml's head, `[unregistered]` and each launch. Items are compared
//! structurally and only what differs is formatted, so a reload of a large config stays cheap.
//! The process settings that need a restart are reported apart ([`crate::reload::needs_restart`]).

use std::collections::BTreeMap;
use std::fmt::Display;

use crate::campaign::{Launch, Scope};
use crate::csp::{CspChoice, Policy};
use crate::limits::LimitSpec;
use crate::limits::registry::BoundLimit;
use crate::routing::{PathMatch, Route};
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

fn list<T: Display>(items: impl IntoIterator<Item = T>, empty: &str) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(",")
    }
}

fn methods(m: &Option<Vec<http::Method>>) -> String {
    m.as_ref().map_or("any method".into(), |m| {
        list(m.iter().map(|m| m.as_str()), "none")
    })
}

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
    let csp = match &r.csp {
        CspChoice::Off => "off".to_string(),
        CspChoice::Policy(p) => p.name.to_string(),
    };
    let canary = r.canary.as_ref().map_or(String::new(), |c| {
        let s = &c.def.spec;
        format!(
            ", canary {} weight {}% sticky {}{} (table {})",
            s.upstream,
            s.weight,
            s.sticky,
            s.release
                .as_ref()
                .map_or(String::new(), |r| format!(" release {r}")),
            &c.def.digest[..12]
        )
    });
    let target = match &r.queue {
        Some(q) => format!("queue {q}"),
        None => format!("upstream {}", r.upstream.name),
    };
    format!(
        "{host}, {path}, {}, {target}, csp {csp}, max_inflight {}, max_body {}{canary}",
        methods(&r.methods),
        r.max_inflight,
        r.max_body
    )
}

fn limit_summary(l: &LimitSpec) -> String {
    format!(
        "key {} rate {} burst {}{}{}{} status {} max_keys {} exempt {}",
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
        l.max_keys,
        list(&l.exempt, "none")
    )
}

fn bound_summary(l: &Option<BoundLimit>) -> String {
    l.as_ref().map_or("none".into(), |b| limit_summary(&b.spec))
}

fn upstream_summary(u: &Upstream) -> String {
    let t = &u.transport;
    format!(
        "servers {} connect {:?} read {:?} write {:?} max_inflight {} health {}{}{}{}",
        list(&u.servers, "none"),
        u.connect_timeout,
        u.read_timeout,
        u.write_timeout,
        u.max_inflight,
        u.health.as_ref().map_or("none".to_string(), |h| format!(
            "{} every {:?} timeout {:?}",
            h.path, h.interval, h.timeout
        )),
        if t.tls { " tls" } else { "" },
        if t.sni.is_empty() {
            String::new()
        } else {
            format!(" sni {}", t.sni)
        },
        if t.http2 { " http2" } else { "" },
    )
}

fn queue_summary(q: &crate::queue::QueueSpec) -> String {
    let store = match &q.store {
        crate::queue::StoreKind::Spool { path } => format!("spool {}", path.display()),
        crate::queue::StoreKind::Redis => "redis".to_string(),
    };
    let accepted = match &q.accepted {
        crate::queue::AcceptedAnswer::Status { status, body, .. } => {
            format!("{} ({} bytes)", status.as_u16(), body.len())
        }
        crate::queue::AcceptedAnswer::Redirect { location } => {
            format!("303 to {}", location.to_str().unwrap_or("?"))
        }
    };
    format!(
        "{store} max_bytes {} max_body {} deliver_to {} rate {} max_inflight {} retry {:?}..{:?} \
         max_attempts {} max_age {:?} accepted {accepted}",
        q.max_bytes,
        q.max_body,
        q.deliver_to.name,
        q.rate_text,
        q.max_inflight,
        q.retry.initial,
        q.retry.max,
        q.max_attempts,
        q.max_age
    )
}

fn policy_summary(p: &Policy) -> String {
    format!(
        "{:?} upstream_csp {:?}{} report_only_policy {}: {}",
        p.mode,
        p.upstream_csp,
        if p.nonce { " nonce" } else { "" },
        p.report_only.as_ref().map_or("none", |c| &c.name),
        p.header_value
    )
}

fn scope_summary(s: &Scope) -> String {
    format!(
        "targets {} methods {}",
        list(&s.targets, "any path"),
        methods(&s.methods)
    )
}

fn launch_summary(l: &Launch) -> String {
    format!(
        "tags {} action {:?} window {}..{} {} limit {} expected_peak_rps {} expected_volume {} \
         owner {} ticket {} new_fields {}",
        l.tags.join(","),
        l.action,
        l.starts.map_or("-".into(), |t| t.to_string()),
        l.ends.map_or("-".into(), |t| t.to_string()),
        scope_summary(&l.scope),
        bound_summary(&l.limit),
        l.expected_peak_rps.map_or("-".into(), |r| r.to_string()),
        l.expected_volume.as_deref().unwrap_or("-"),
        l.owner.as_deref().unwrap_or("-"),
        l.ticket.as_deref().unwrap_or("-"),
        list(&l.new_fields, "none"),
    )
}

/// Compare two keyed sets: one line per added, removed or changed item. Summaries are only
/// written for what differs (`same` decides).
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

/// One setting: a line when its shown value differs.
fn setting(name: &str, old: String, new: String, out: &mut Vec<String>) {
    if old != new {
        out.push(format!("{name} changed: {old} -> {new}"));
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
        && a.max_body == b.max_body
        && a.queue == b.queue
        && a.canary.as_ref().map(|c| &c.def.digest) == b.canary.as_ref().map(|c| &c.def.digest)
}

/// A short human-readable account of what changed from `old` to `new`, one line per change.
pub fn describe(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    setting(
        "server.trusted_proxies",
        list(old.trusted.nets(), "none"),
        list(new.trusted.nets(), "none"),
        &mut out,
    );
    setting(
        "server.access_log",
        old.access_log.to_string(),
        new.access_log.to_string(),
        &mut out,
    );
    let token = |s: &Snapshot| {
        if s.admin_token.is_some() {
            "set"
        } else {
            "not set"
        }
        .to_string()
    };
    if old.admin_token != new.admin_token {
        out.push(format!(
            "server.admin_token_file changed: token {} -> {}",
            token(old),
            token(new)
        ));
    }

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
                    .map(move |l| (format!("{}/{}", r.name, l.spec.name), &l.spec))
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

    fn queues(s: &Snapshot) -> BTreeMap<String, &crate::queue::QueueSpec> {
        s.queues
            .iter()
            .map(|(n, q)| (n.to_string(), q.as_ref()))
            .collect()
    }
    compare(
        "queue",
        &queues(old),
        &queues(new),
        |a, b| queue_summary(a) == queue_summary(b),
        queue_summary,
        &mut out,
    );
    let ingest_queue = |s: &Snapshot| {
        s.campaigns
            .ingest_queue
            .as_ref()
            .map_or("none".to_string(), ToString::to_string)
    };
    setting(
        "campaigns.ingest_queue",
        ingest_queue(old),
        ingest_queue(new),
        &mut out,
    );

    let (oc, nc) = (&old.csp, &new.csp);
    setting(
        "csp.report_path",
        oc.report_path.clone().unwrap_or_else(|| "none".into()),
        nc.report_path.clone().unwrap_or_else(|| "none".into()),
        &mut out,
    );
    setting(
        "csp.content_types",
        list(&oc.content_types, "none"),
        list(&nc.content_types, "none"),
        &mut out,
    );
    let default = |c: &crate::csp::CspConfig| {
        c.default_policy
            .as_ref()
            .map_or("off".to_string(), |p| p.name.to_string())
    };
    setting("csp.default_policy", default(oc), default(nc), &mut out);
    fn policies(s: &Snapshot) -> BTreeMap<String, &Policy> {
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
        |a, b| policy_summary(a) == policy_summary(b),
        policy_summary,
        &mut out,
    );

    let (oc, nc) = (&old.campaigns, &new.campaigns);
    setting(
        "campaigns.tag_sources",
        list(&oc.tag_sources, "none"),
        list(&nc.tag_sources, "none"),
        &mut out,
    );
    let ingest = |c: &crate::campaign::Campaigns| {
        c.ingest
            .as_ref()
            .map_or("none".to_string(), |u| u.name.to_string())
    };
    setting(
        "campaigns.ingest_upstream",
        ingest(oc),
        ingest(nc),
        &mut out,
    );
    let (ou, nu) = (&oc.unregistered, &nc.unregistered);
    setting(
        "campaigns [unregistered]",
        format!(
            "action {:?} {} limit {}",
            ou.action,
            scope_summary(&ou.scope),
            bound_summary(&ou.limit)
        ),
        format!(
            "action {:?} {} limit {}",
            nu.action,
            scope_summary(&nu.scope),
            bound_summary(&nu.limit)
        ),
        &mut out,
    );
    fn launches(s: &Snapshot) -> BTreeMap<String, &Launch> {
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
