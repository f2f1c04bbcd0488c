//! `GET /-/config`: the config in force, as JSON: what was loaded and when, the last reload, and
//! every route (with its matchers and limits), upstream, CSP policy and campaign as compiled.

use serde_json::{Value, json};

use crate::campaign::Scope;
use crate::csp::CspChoice;
use crate::limits::LimitSpec;
use crate::limits::registry::BoundLimit;
use crate::routing::PathMatch;
use crate::state::State;

fn limit(l: &LimitSpec) -> Value {
    json!({
        "name": &*l.name,
        "key": l.key.to_string(),
        "rate": l.rate.to_string(),
        "burst": l.burst,
        "nodelay": l.nodelay,
        "delay": l.delay,
        "dry_run": l.dry_run,
        "status": l.status.as_u16(),
        "max_keys": l.max_keys.get(),
        "exempt": l.exempt.iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn bound(l: &Option<BoundLimit>) -> Value {
    l.as_ref().map_or(Value::Null, |b| limit(&b.spec))
}

fn methods(m: &Option<Vec<http::Method>>) -> Value {
    m.as_ref().map_or(Value::Null, |m| {
        json!(m.iter().map(|m| m.as_str()).collect::<Vec<_>>())
    })
}

fn scope(s: &Scope) -> Value {
    json!({ "targets": s.targets, "methods": methods(&s.methods) })
}

pub fn config_json(state: &State) -> Value {
    let snap = state.snapshot.load();
    let status = state.status();
    let now = state.wall_now();
    let routes: Vec<_> = snap
        .routes
        .iter()
        .map(|r| {
            let (kind, value) = match &r.path {
                PathMatch::Any => ("any", None),
                PathMatch::Exact(p) => ("path", Some(p.clone())),
                PathMatch::Prefix(p) => ("path_prefix", Some(p.clone())),
                PathMatch::Regex(re) => ("path_regex", Some(re.as_str().to_string())),
            };
            json!({
                "name": &*r.name,
                "host": r.host.as_ref().map(ToString::to_string),
                "match": { "kind": kind, "value": value },
                "methods": methods(&r.methods),
                "upstream": &*r.upstream.name,
                "csp": match &r.csp { CspChoice::Off => "off".to_string(), CspChoice::Policy(p) => p.name.to_string() },
                "max_inflight": r.max_inflight,
                "max_body": r.max_body,
                "canary": r.canary.as_ref().map(|c| json!({
                    "upstream": &*c.def.upstream.name,
                    "weight": c.def.spec.weight,
                    "weight_in_force": c.state.weight_in_force(),
                })),
                "limits": r.limits.iter().map(|l| limit(&l.spec)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let upstreams: Vec<_> = snap
        .upstreams
        .values()
        .map(|u| {
            json!({
                "name": &*u.name,
                "servers": u.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "healthy_servers": u.healthy_count(),
                "max_inflight": u.max_inflight,
                "connect_timeout_ms": u.connect_timeout.as_millis() as u64,
                "read_timeout_ms": u.read_timeout.as_millis() as u64,
                "health_check": u.health.as_ref().map(|h| h.path.clone()),
            })
        })
        .collect();
    let csp = &snap.csp;
    let policies: Vec<_> = csp
        .policies
        .values()
        .map(|p| {
            json!({
                "name": &*p.name,
                "mode": match p.mode { crate::csp::CspMode::Enforce => "enforce", crate::csp::CspMode::ReportOnly => "report-only" },
                "upstream_csp": match p.upstream_csp { crate::csp::UpstreamCsp::Replace => "replace", crate::csp::UpstreamCsp::Keep => "keep" },
                "nonce": p.nonce,
                "report_only_policy": p.report_only.as_ref().map(|c| c.name.to_string()),
                "header": p.header_value,
            })
        })
        .collect();
    let c = &snap.campaigns;
    let launches: Vec<_> = c
        .launches
        .iter()
        .map(|l| {
            json!({
                "name": &*l.name,
                "tags": l.tags,
                "owner": l.owner,
                "ticket": l.ticket,
                "starts": l.starts.map(|t| t.to_string()),
                "ends": l.ends.map(|t| t.to_string()),
                "in_window": l.in_window(now),
                "expected_volume": l.expected_volume,
                "expected_peak_rps": l.expected_peak_rps,
                "action": format!("{:?}", l.action).to_lowercase(),
                "scope": scope(&l.scope),
                "limit": bound(&l.limit),
            })
        })
        .collect();
    json!({
        "generation": status.generation,
        "loaded_at": status.loaded_at.to_string(),
        "files": snap.files,
        "last_reload": status.last_reload.as_ref().map(|r| json!({
            "ok": r.ok,
            "error": if r.errors.is_empty() { None } else { Some(r.errors.join("\n")) },
            "errors": r.errors,
            "at": r.at,
        })),
        "needs_restart": status.needs_restart,
        "last_changes": status.last_changes,
        "warnings": snap.warnings,
        "server": {
            "trusted_proxies": snap.trusted.nets().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "access_log": snap.access_log.to_string(),
            "admin_token": snap.admin_token.is_some(),
        },
        "routes": routes,
        "upstreams": upstreams,
        "csp": {
            "default_policy": csp.default_policy.as_ref().map(|p| p.name.to_string()),
            "report_path": csp.report_path,
            "content_types": csp.content_types,
            "policies": policies,
        },
        "campaigns": {
            "tag_sources": c.tag_sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "ingest_upstream": c.ingest.as_ref().map(|u| u.name.to_string()),
            "unregistered": {
                "action": format!("{:?}", c.unregistered.action).to_lowercase(),
                "scope": scope(&c.unregistered.scope),
                "limit": bound(&c.unregistered.limit),
            },
            "launches": launches,
        },
        "canaries": state.canaries.status(),
    })
}

/// The `fleet` section of `/-/config`: the store (its URL without credentials), whether it is
/// up, this instance, and the live instances (read from Redis: `null` while it is down).
pub async fn fleet_json(state: &State) -> Value {
    let Some(f) = state.fleet() else {
        return Value::Null;
    };
    let spec = f.spec();
    let instances =
        match f.instances().await {
            Ok(list) => json!(list
            .iter()
            .map(|i| json!({ "name": i.name, "version": i.version, "started_ms": i.started_ms }))
            .collect::<Vec<_>>()),
            Err(_) => Value::Null,
        };
    json!({
        "redis": redact(&spec.redis),
        "up": f.is_up(),
        "last_error": f.last_error(),
        "instance": f.instance(),
        "instances": instances,
        "timeout_ms": spec.timeout.as_millis() as u64,
        "on_store_error": spec.on_store_error.label(),
        "expected_instances": spec.expected_instances.get(),
        "durability_warning": f.durability_warning(),
    })
}

/// A Redis URL without its user and password.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://{}", &url[at + 1..]),
        _ => url.to_string(),
    }
}
