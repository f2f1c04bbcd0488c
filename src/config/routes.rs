//! `[[routes]]`: matchers, upstream, CSP choice, caps; their limits are read by
//! [`super::limits`].

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use super::limits::compile_limit;
use super::main_file::Head;
use super::schema::{LimitFile, RouteFile};
use super::{Reporter, check_name, de, int_in, list_names, methods, table_value};
use crate::csp::{CspChoice, CspConfig};
use std::sync::Arc;

use crate::routing::{HostMatch, PathMatch, RouteSpec};
use crate::upstream::Upstream;

/// A route as written, its limits read one by one so each bad limit is reported.
pub(crate) struct RawRoute {
    pub span: std::ops::Range<usize>,
    pub file: RouteFile,
    pub limits: Vec<Spanned<LimitFile>>,
    pub canary: Option<Spanned<super::canary::CanaryFile>>,
}

pub(super) fn raw_routes(value: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Vec<RawRoute> {
    let span = value.span();
    let DeValue::Array(items) = value.into_inner() else {
        rep.error(span, "`routes` must be an array of [[routes]] tables");
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items {
        let span = item.span();
        let DeValue::Table(mut table) = item.into_inner() else {
            rep.error(span, "each route must be a table");
            continue;
        };
        let limits = table.remove("limits");
        let canary = table.remove("canary").and_then(|c| {
            let s = c.span();
            de::<super::canary::CanaryFile>(c, rep).map(|c| Spanned::new(s, c))
        });
        let Some(file) = de::<RouteFile>(table_value(span.clone(), table), rep) else {
            continue;
        };
        let mut raw = RawRoute {
            span: span.clone(),
            file,
            limits: Vec::new(),
            canary,
        };
        if let Some(limits) = limits {
            let lspan = limits.span();
            match limits.into_inner() {
                DeValue::Array(items) => {
                    for l in items {
                        let s = l.span();
                        if let Some(lf) = de::<LimitFile>(l, rep) {
                            raw.limits.push(Spanned::new(s, lf));
                        }
                    }
                }
                _ => rep.error(
                    lspan,
                    "`limits` must be an array of [[routes.limits]] tables",
                ),
            }
        }
        out.push(raw);
    }
    out
}

/// `csp` is `None` when the CSP file could not be read: that is reported at `csp_file`, and the
/// routes' policy names are then left unchecked rather than all called unknown.
pub(super) fn compile_routes(
    head: &Head,
    csp: Option<&CspConfig>,
    rep: &mut Reporter,
) -> Vec<RouteSpec> {
    let mut routes: Vec<RouteSpec> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut name_spans = Vec::new();
    for raw in &head.routes {
        let f = &raw.file;
        if let Some(first) = seen.get(f.name.get_ref()) {
            let (line, col) = rep.file.locate(*first);
            rep.error(
                f.name.span(),
                format!(
                    "duplicate route name {:?} (first defined at {line}:{col})",
                    f.name.get_ref()
                ),
            );
            continue;
        }
        seen.insert(f.name.get_ref().clone(), f.name.span().start);
        if let Some(r) = route(raw, head, csp, rep) {
            name_spans.push(f.name.span());
            routes.push(r);
        }
    }
    if head.routes.is_empty() {
        rep.warn(0..0, "no [[routes]]: every request will be answered 404");
    }
    for (j, later) in routes.iter().enumerate() {
        if let Some(i) = routes[..j].iter().position(|r| r.shadows(later)) {
            let (line, _) = rep.file.locate(name_spans[i].start);
            rep.warn(
                name_spans[j].clone(),
                format!(
                    "route {:?} can never match: route {:?} (line {line}) comes first and \
                     matches every request it would",
                    later.name, routes[i].name
                ),
            );
        }
    }
    routes
}

fn route(
    raw: &RawRoute,
    head: &Head,
    csp: Option<&CspConfig>,
    rep: &mut Reporter,
) -> Option<RouteSpec> {
    let f = &raw.file;
    let name = check_name("route", &f.name, rep);
    let host = match &f.host {
        Some(h) => HostMatch::parse(h.get_ref())
            .map_err(|e| rep.error(h.span(), e))
            .ok()
            .map(Some),
        None => Some(None),
    };
    let path = path_match(f, rep);
    let methods = match &f.methods {
        None => Some(None),
        Some(ms) if ms.get_ref().is_empty() => {
            rep.error(
                ms.span(),
                "`methods` is empty, so the route can never match; omit it to match every method",
            );
            None
        }
        Some(ms) => methods(ms, rep).map(Some),
    };
    let (upstream, queue) = route_target(raw, head, rep);
    let csp_choice = match (&f.csp, csp) {
        (Some(c), _) if c.get_ref() == "off" => Some(CspChoice::Off),
        (_, None) => None,
        (Some(c), Some(csp)) => match csp.policies.get(c.get_ref().as_str()) {
            Some(p) => Some(CspChoice::Policy(p.clone())),
            None => {
                if head.csp_file.is_none() {
                    rep.error(
                        c.span(),
                        format!(
                            "route uses CSP policy {:?} but server.csp_file is not set",
                            c.get_ref()
                        ),
                    );
                } else if !csp.declared.contains(c.get_ref()) {
                    rep.error(
                        c.span(),
                        format!(
                            "unknown CSP policy {:?} (csp.toml defines: {}; or write \"off\")",
                            c.get_ref(),
                            list_names(csp.declared.iter().map(String::as_str))
                        ),
                    );
                }
                None
            }
        },
        (None, Some(csp)) => Some(
            csp.default_policy
                .clone()
                .map_or(CspChoice::Off, CspChoice::Policy),
        ),
    };
    let max_inflight = match &f.max_inflight {
        Some(m) => int_in::<u32>(m, "max_inflight", 0, 10_000_000, rep),
        None => Some(0),
    };
    let max_body = match &f.max_body {
        Some(m) => super::values::size(m.get_ref())
            .map_err(|e| rep.error(m.span(), e))
            .ok(),
        None => Some(head.max_body),
    };
    let mut limits = Vec::new();
    let mut limits_ok = true;
    let mut limit_names: BTreeMap<String, usize> = BTreeMap::new();
    for l in &raw.limits {
        let lf = l.get_ref();
        let Some(n) = &lf.name else {
            rep.error(
                l.span(),
                "a route limit needs a `name` (it labels metrics and headers)",
            );
            limits_ok = false;
            continue;
        };
        if let Some(first) = limit_names.get(n.get_ref()) {
            let (line, col) = rep.file.locate(*first);
            rep.error(
                n.span(),
                format!(
                    "duplicate limit name {:?} in this route (first at {line}:{col})",
                    n.get_ref()
                ),
            );
            limits_ok = false;
            continue;
        }
        limit_names.insert(n.get_ref().clone(), n.span().start);
        match compile_limit(lf, l.span(), None, head.fleet_declared, rep) {
            Some(spec) => limits.push(spec),
            None => limits_ok = false,
        }
    }
    let canary = match &raw.canary {
        Some(c) => {
            let own = f.upstream.as_ref().map_or("", |u| u.get_ref().as_str());
            super::canary::compile(c, own, head, rep).map(Some)
        }
        None => Some(None),
    };
    let (
        Some(name),
        Some(host),
        Some(path),
        Some(methods),
        Some(upstream),
        Some(queue),
        Some(csp),
        Some(max_inflight),
        Some(max_body),
        true,
        Some(canary),
    ) = (
        name,
        host,
        path,
        methods,
        upstream,
        queue,
        csp_choice,
        max_inflight,
        max_body,
        limits_ok,
        canary,
    )
    else {
        return None;
    };
    Some(RouteSpec {
        name,
        host,
        path,
        methods,
        upstream,
        queue,
        csp,
        max_inflight,
        max_body,
        limits,
        canary,
    })
}

fn path_match(f: &RouteFile, rep: &mut Reporter) -> Option<PathMatch> {
    let given: Vec<&Spanned<String>> = [&f.path, &f.path_prefix, &f.path_regex]
        .into_iter()
        .flatten()
        .collect();
    if given.len() > 1 {
        rep.error(
            given[1].span(),
            "a route takes one of `path`, `path_prefix`, `path_regex`, not several",
        );
        return None;
    }
    if let Some(p) = &f.path {
        return request_path(p, rep).map(PathMatch::Exact);
    }
    if let Some(p) = &f.path_prefix {
        return request_path(p, rep).map(PathMatch::Prefix);
    }
    if let Some(p) = &f.path_regex {
        return match regex::Regex::new(p.get_ref()) {
            Ok(r) => Some(PathMatch::Regex(r)),
            Err(e) => {
                let msg = e.to_string();
                let last = msg.lines().last().unwrap_or(&msg).trim();
                let short = last.strip_prefix("error: ").unwrap_or(last);
                rep.error(
                    p.span(),
                    format!("invalid path_regex {:?}: {short}", p.get_ref()),
                );
                None
            }
        };
    }
    Some(PathMatch::Any)
}

/// A route names exactly one of `upstream` and `queue`. A queued route's `upstream` is its
/// queue's `deliver_to`, so code that reads the route's pool (health, status) still has one.
#[allow(clippy::type_complexity)]
fn route_target(
    raw: &RawRoute,
    head: &Head,
    rep: &mut Reporter,
) -> (Option<Arc<Upstream>>, Option<Option<Arc<str>>>) {
    let f = &raw.file;
    match (&f.upstream, &f.queue) {
        (Some(_), Some(q)) => {
            rep.error(q.span(), "a route takes `upstream` or `queue`, not both");
            (None, None)
        }
        (None, None) => {
            rep.error(raw.span.start..raw.span.start, "missing field `upstream`");
            (None, None)
        }
        (None, Some(q)) => match super::queues::lookup(head, q, rep, "route") {
            Some(name) => {
                let up = head.queues.get(&name).map(|s| s.deliver_to.clone());
                (up, Some(Some(name)))
            }
            None => (None, None),
        },
        (Some(u), None) => {
            let up = match head.upstreams.get(u.get_ref().as_str()) {
                Some(up) => Some(up.clone()),
                None => {
                    if !head.declared_upstreams.contains(u.get_ref()) {
                        rep.error(
                            u.span(),
                            format!(
                                "unknown upstream {:?} (defined: {})",
                                u.get_ref(),
                                list_names(head.declared_upstreams.iter().map(String::as_str))
                            ),
                        );
                    }
                    None
                }
            };
            (up, Some(None))
        }
    }
}

/// A path to match requests against (a route's `path` or `path_prefix`, a campaign target):
/// requests are matched on their normalized path, so the configured one is normalized the same
/// way, and a spelling that changes is pointed out.
pub(super) fn request_path(p: &Spanned<String>, rep: &mut Reporter) -> Option<String> {
    let raw = p.get_ref();
    if !raw.starts_with('/') {
        rep.error(p.span(), format!("path {raw:?} must start with '/'"));
        return None;
    }
    match crate::routing::normalize_path(raw) {
        Ok(n) => {
            if n != raw.as_str() {
                rep.warn(
                    p.span(),
                    format!("path {raw:?} is matched as {n:?}, the form requests are matched in"),
                );
            }
            Some(n.into_owned())
        }
        Err(bad) => {
            rep.error(p.span(), format!("path {raw:?}: {}", bad.text()));
            None
        }
    }
}
