//! `GET /-/status` (everything the page shows) and `GET /-/limits` (the top rejected keys), as
//! JSON. Every field is documented in docs/console.md; rename none without changing it there.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::history::{CLASSES, DECISIONS, History, LimitId};
use super::sample::{bound_limits, campaign_names};
use super::topk::TOP;
use crate::campaign::{LaunchAction, UnregisteredAction};
use crate::limits::BoundLimit;
use crate::metrics::NO_ROUTE;
use crate::snapshot::Snapshot;
use crate::state::State;

/// Rates ("per second") are averaged over this many seconds: long enough to read, short enough
/// to show a change within seconds.
pub const RATE_SPAN_S: usize = 10;
/// Latency quantiles and top keys cover the last minute.
pub const WINDOW_S: usize = 60;

/// Three decimals: the page shows fewer, and the JSON stays small.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn ms(seconds: Option<f64>) -> Value {
    seconds.map_or(Value::Null, |s| json!(r3(s * 1000.0)))
}

/// This machine's name, for telling instances apart in a fleet of tabs.
fn host_name() -> &'static str {
    static NAME: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "seawall".to_string())
    });
    &NAME
}

/// `FILE:LINE:COL: error: MESSAGE` split for the page, which shows the place apart.
fn problem(line: &str) -> Value {
    let (place, message) = match line
        .split_once(": error: ")
        .or_else(|| line.split_once(": warning: "))
    {
        Some((p, m)) => (p, m),
        None => ("", line),
    };
    json!({ "at": place, "message": message, "text": line })
}

fn launch_action(a: LaunchAction) -> &'static str {
    match a {
        LaunchAction::Divert => "divert",
        LaunchAction::Pass => "pass",
        LaunchAction::Pause => "pause",
        LaunchAction::Queue => "queue",
    }
}

fn unregistered_action(a: UnregisteredAction) -> &'static str {
    match a {
        UnregisteredAction::Divert => "divert",
        UnregisteredAction::Pass => "pass",
        UnregisteredAction::Reject => "reject",
        UnregisteredAction::Queue => "queue",
    }
}

fn overview(state: &State, snap: &Snapshot, h: &History) -> Value {
    let st = state.status();
    let c = &state.console;
    json!({
        "instance": host_name(),
        "version": env!("CARGO_PKG_VERSION"),
        "now": jiff::Timestamp::now().to_string(),
        "started_at": c.started_at.to_string(),
        "uptime_s": c.started.elapsed().as_secs(),
        "history_s": h.seconds(),
        "listen": state.process.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "admin_listen": state.process.admin_listen.to_string(),
        "generation": st.generation,
        "loaded_at": st.loaded_at.to_string(),
        "last_reload": st.last_reload.as_ref().map(|r| json!({
            "ok": r.ok,
            "at": r.at,
            "errors": r.errors.iter().map(|e| problem(e)).collect::<Vec<_>>(),
        })),
        "last_changes": st.last_changes,
        "needs_restart": st.needs_restart,
        "warnings": snap.warnings.iter().map(|w| problem(w)).collect::<Vec<_>>(),
        "admin_token_required": snap.admin_token.is_some(),
    })
}

fn routes(snap: &Snapshot, h: &History) -> Vec<Value> {
    let mut out = Vec::new();
    let names = snap
        .routes
        .iter()
        .map(|r| (&*r.name, Some(r)))
        .chain(std::iter::once((NO_ROUTE, None)));
    for (name, route) in names {
        let Some(v) = h.route(name, RATE_SPAN_S, WINDOW_S) else {
            continue;
        };
        // Requests without a route (no match, CSP reports) are shown only when there were some.
        if route.is_none() && v.series.iter().all(|&n| n == 0) {
            continue;
        }
        let per_s: serde_json::Map<String, Value> = CLASSES
            .iter()
            .zip(v.classes)
            .map(|(c, n)| (c.to_string(), json!(r3(n))))
            .collect();
        let upstream = route.map(|r| &r.upstream);
        out.push(json!({
            "name": name,
            "matched": route.is_some(),
            "upstream": upstream.map(|u| &*u.name),
            "servers": upstream.map_or(0, |u| u.servers.len()),
            "healthy_servers": upstream.map_or(0, |u| u.healthy_count()),
            "limits": route.map(|r| r.limits.iter().map(|l| &*l.spec.name).collect::<Vec<_>>()),
            "rps": r3(v.rps),
            "per_s": per_s,
            "rate_span_s": v.span_s,
            "p50_ms": ms(v.p50),
            "p99_ms": ms(v.p99),
            "latency_span_s": v.latency_span_s,
            "requests_in_latency_span": v.requests_in_latency_span,
            "series": v.series,
        }));
    }
    out
}

fn upstreams(snap: &Snapshot) -> Vec<Value> {
    snap.upstreams
        .values()
        .map(|u| {
            json!({
                "name": &*u.name,
                "servers": u.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "healthy_servers": u.healthy_count(),
                "health_check": u.health.as_ref().map(|c| c.path.clone()),
                "max_inflight": u.max_inflight,
            })
        })
        .collect()
}

fn limit_head(
    id: &LimitId,
    campaign: Option<&str>,
    b: &BoundLimit,
) -> serde_json::Map<String, Value> {
    let s = &b.spec;
    let v = json!({
        "scope": &*id.0,
        "route": if campaign.is_none() { Some(&*id.0) } else { None },
        "campaign": campaign,
        "name": &*s.name,
        "key": s.key.to_string(),
        "rate": s.rate.to_string(),
        "burst": s.burst,
        "nodelay": s.nodelay,
        "dry_run": s.dry_run,
        "status": s.status.as_u16(),
    });
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

fn limits(snap: &Snapshot, h: &History, now_ms: u64) -> Vec<Value> {
    bound_limits(snap)
        .into_iter()
        .map(|(id, campaign, b)| {
            let mut m = limit_head(&id, campaign, b);
            let view = h.limit(&id, RATE_SPAN_S);
            let per_s: serde_json::Map<String, Value> = DECISIONS
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    (
                        d.to_string(),
                        json!(r3(view.as_ref().map_or(0.0, |v| v.per_s[i]))),
                    )
                })
                .collect();
            m.insert("per_s".into(), per_s.into());
            m.insert(
                "rate_span_s".into(),
                json!(view.as_ref().map_or(0, |v| v.span_s)),
            );
            m.insert("tracked_keys".into(), json!(b.tracked.get()));
            m.insert("max_keys".into(), json!(b.spec.max_keys.get()));
            m.insert(
                "top_rejected".into(),
                json!(b.rejected_keys.top(false, now_ms, TOP)),
            );
            m.insert(
                "top_dry_run_rejected".into(),
                json!(b.rejected_keys.top(true, now_ms, TOP)),
            );
            m.insert(
                "rejected_series".into(),
                json!(view.map(|v| v.rejected_series).unwrap_or_default()),
            );
            Value::Object(m)
        })
        .collect()
}

/// Unregistered tags seen: the bounded label set of `seawall_campaign_unregistered_tags_total`.
fn unregistered_tags(state: &State) -> Vec<Value> {
    use prometheus::core::Collector;
    let mut tags: Vec<(String, u64)> = state
        .metrics
        .campaign_unregistered_tags
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric())
        .map(|m| {
            let tag = m
                .get_label()
                .iter()
                .find(|l| l.name() == "tag")
                .map_or("", |l| l.value());
            (tag.to_string(), m.get_counter().value() as u64)
        })
        .collect();
    tags.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    tags.truncate(TOP);
    tags.into_iter()
        .map(|(tag, count)| json!({ "tag": tag, "count": count }))
        .collect()
}

fn campaigns(state: &State, snap: &Snapshot, h: &History) -> Vec<Value> {
    let now = state.wall_now();
    let c = &snap.campaigns;
    campaign_names(snap)
        .into_iter()
        .map(|name| {
            let series = h.campaign(&name).unwrap_or_default();
            let observed = series.last().copied().unwrap_or(0.0) as f64;
            let peak = series.iter().copied().fold(0.0f32, f32::max) as f64;
            let launch = c.launches.iter().find(|l| l.name == name);
            let base = json!({
                "name": &*name,
                "observed_rps": r3(observed),
                "peak_rps_10m": r3(peak),
                "series": series.iter().map(|v| r3(f64::from(*v))).collect::<Vec<_>>(),
            });
            let mut m = match base {
                Value::Object(m) => m,
                _ => serde_json::Map::new(),
            };
            let more = match launch {
                Some(l) => {
                    let window = match (l.starts, l.ends) {
                        (Some(s), _) if now < s => "upcoming",
                        (_, Some(e)) if now > e => "ended",
                        _ => "active",
                    };
                    json!({
                        "registered": true,
                        "action": launch_action(l.action),
                        "expected_peak_rps": l.expected_peak_rps,
                        "ratio": l.expected_peak_rps.filter(|e| *e > 0.0).map(|e| r3(observed / e)),
                        "window": window,
                        "starts": l.starts.map(|t| t.to_string()),
                        "ends": l.ends.map(|t| t.to_string()),
                        "owner": l.owner,
                        "ticket": l.ticket,
                        "tags": l.tags,
                        "targets": l.scope.targets,
                        "limit": l.limit.as_ref().map(|b| &*b.spec.name),
                    })
                }
                None => json!({
                    "registered": false,
                    "action": unregistered_action(c.unregistered.action),
                    "expected_peak_rps": null,
                    "ratio": null,
                    "window": "always",
                    "limit": c.unregistered.limit.as_ref().map(|b| &*b.spec.name),
                    "tags_seen": unregistered_tags(state),
                }),
            };
            if let Value::Object(more) = more {
                m.extend(more);
            }
            Value::Object(m)
        })
        .collect()
}

/// Violations by policy and blocked host (directives listed), most first.
fn csp(state: &State, h: &History) -> Value {
    use prometheus::core::Collector;
    let mut rows: BTreeMap<(String, String), (u64, Vec<String>)> = BTreeMap::new();
    let mut total = 0;
    for mf in state.metrics.csp_violations.collect() {
        for m in mf.get_metric() {
            let get = |n: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == n)
                    .map_or(String::new(), |l| l.value().to_string())
            };
            let n = m.get_counter().value() as u64;
            total += n;
            let row = rows
                .entry((get("policy"), get("blocked_host")))
                .or_default();
            row.0 += n;
            row.1.push(get("directive"));
        }
    }
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1.0));
    let series = h.csp();
    json!({
        "total": total,
        "last_10m": series.iter().map(|&n| u64::from(n)).sum::<u64>(),
        "series": series,
        "violations": rows.into_iter().map(|((policy, host), (count, directives))| json!({
            "policy": policy,
            "blocked_host": host,
            "directives": directives,
            "count": count,
        })).collect::<Vec<_>>(),
        "policies": state.snapshot.load().csp.policies.values().map(|p| json!({
            "name": &*p.name,
            "mode": match p.mode {
                crate::csp::CspMode::Enforce => "enforce",
                crate::csp::CspMode::ReportOnly => "report-only",
            },
        })).collect::<Vec<_>>(),
    })
}

/// The whole of `GET /-/status`.
pub fn status(state: &State, now_ms: u64) -> Value {
    let snap = state.snapshot.load_full();
    let h = state.console.history.lock();
    json!({
        "overview": overview(state, &snap, &h),
        "rate_span_s": RATE_SPAN_S,
        "window_s": WINDOW_S,
        "routes": routes(&snap, &h),
        "upstreams": upstreams(&snap),
        "limits": limits(&snap, &h, now_ms),
        "campaigns": campaigns(state, &snap, &h),
        "csp": csp(state, &h),
        "queues": queues(state),
        "canaries": canaries(state),
        // Filled by `fleet` (it asks Redis, so the caller awaits it).
        "fleet": [],
    })
}

/// Each queue as `GET /-/queues` shows it, with the names the page reads.
fn queues(state: &State) -> Vec<Value> {
    let all = state.queues.status_json();
    let Some(list) = all["queues"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|q| {
            let mut q = q.clone();
            if let Some(m) = q.as_object_mut() {
                for (from, to) in [
                    ("oldest_age_seconds", "oldest_age_s"),
                    ("in_flight", "inflight"),
                ] {
                    if let Some(v) = m.remove(from) {
                        m.insert(to.to_string(), v);
                    }
                }
            }
            q
        })
        .collect()
}

/// Each canary: `weight` is the share it gets now (0 while rolled back or frozen), and the last
/// closed window's figures for the canary side.
fn canaries(state: &State) -> Vec<Value> {
    state
        .canaries
        .status()
        .into_iter()
        .map(|c| {
            let side = c.last_window.as_ref().map(|w| &w.canary);
            json!({
                "route": c.route,
                "upstream": c.upstream,
                "release": c.release,
                "weight": c.weight_in_force,
                "configured_weight": c.weight,
                "state": c.state,
                "error_rate": side.map(|s| s.error_rate),
                "p99_ms": side.and_then(|s| s.p99_ms),
                "bad_windows": c.bad_windows,
                "last_verdict": c.last_window.as_ref().map(|w| w.verdict),
                "rolled_back_because": c.rolled_back.as_ref().map(|r| r.reason.clone()),
                "frozen_by": c.frozen_by,
            })
        })
        .collect()
}

/// The fleet's live instances (from their heartbeats in Redis); this one alone, marked, while
/// Redis is unreachable. Empty without `[fleet]`.
pub async fn fleet(state: &State) -> Vec<Value> {
    let Some(f) = state.fleet() else {
        return Vec::new();
    };
    let me = f.instance();
    match f.instances().await {
        Ok(list) => list
            .iter()
            .map(|i| {
                json!({
                    "instance": i.name,
                    "status": if i.name == me { "alive (this instance)" } else { "alive" },
                    "version": i.version,
                    "started_at": jiff::Timestamp::from_millisecond(i.started_ms as i64)
                        .map(|t| t.to_string())
                        .ok(),
                })
            })
            .collect(),
        Err(_) => vec![json!({
            "instance": me,
            "status": "this instance; Redis unreachable, others unknown",
        })],
    }
}

/// `GET /-/limits`: per limit, the keys most rejected in the last minute.
pub fn limits_only(state: &State, now_ms: u64) -> Value {
    let snap = state.snapshot.load_full();
    let limits: Vec<Value> = bound_limits(&snap)
        .into_iter()
        .map(|(id, campaign, b)| {
            let mut m = limit_head(&id, campaign, b);
            m.insert(
                "rejected".into(),
                json!(b.rejected_keys.top(false, now_ms, TOP)),
            );
            m.insert(
                "dry_run_rejected".into(),
                json!(b.rejected_keys.top(true, now_ms, TOP)),
            );
            Value::Object(m)
        })
        .collect();
    json!({ "window_s": WINDOW_S, "top": TOP, "limits": limits })
}
