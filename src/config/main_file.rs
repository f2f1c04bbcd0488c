//! `seawall.toml`: server settings, upstream pools, routes and their limits.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, StatusCode};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::schema::{LimitFile, RouteFile, ServerFile, UpstreamFile};
use super::{Reporter, check_name, de, int_in, list_names, resolve, table_value, values};
use crate::client_ip::TrustedProxies;
use crate::csp::{CspChoice, CspConfig};
use crate::limits::{DEFAULT_MAX_KEYS, LimitSpec};
use crate::routing::{HostMatch, PathMatch, Route};
use crate::snapshot::{ProcessSettings, TlsListener};
use crate::upstream::{self, HealthCheckSpec, Upstream};

/// Default admin listener: loopback only (CONFIG.md).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// What the main file says, with routes kept raw until the CSP policies they name are compiled.
pub(super) struct Head {
    pub process: Option<ProcessSettings>,
    pub trusted: TrustedProxies,
    pub upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    /// Every upstream name written, valid or not, so a route naming a broken upstream is not
    /// reported a second time as "unknown".
    pub declared_upstreams: BTreeSet<String>,
    pub csp_file: Option<Spanned<String>>,
    pub campaigns_file: Option<Spanned<String>>,
    pub access_log: bool,
    pub admin_token: Option<String>,
    pub routes: Vec<RawRoute>,
    pub queues: BTreeMap<Arc<str>, Arc<crate::queue::QueueSpec>>,
    /// Every queue name written, valid or not (as `declared_upstreams`).
    pub declared_queues: BTreeSet<String>,
}

pub(super) struct RawRoute {
    pub span: std::ops::Range<usize>,
    pub file: RouteFile,
    pub limits: Vec<Spanned<LimitFile>>,
}

pub(super) fn compile_head(doc: DeTable<'_>, base_dir: &Path, rep: &mut Reporter) -> Head {
    let mut head = Head {
        process: None,
        trusted: TrustedProxies::default(),
        upstreams: BTreeMap::new(),
        declared_upstreams: BTreeSet::new(),
        csp_file: None,
        campaigns_file: None,
        access_log: true,
        admin_token: None,
        routes: Vec::new(),
        queues: BTreeMap::new(),
        declared_queues: BTreeSet::new(),
    };
    let mut server = None;
    let mut queues = None;
    let has_fleet = doc.contains_key("fleet");
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "server" => server = Some(value),
            "upstreams" => upstreams(value, &mut head, rep),
            "routes" => head.routes = raw_routes(value, rep),
            "queues" => queues = Some(value),
            other => rep.error(
                key.span(),
                format!("unknown section {other:?} (expected server, upstreams, routes, queues)"),
            ),
        }
    }
    if let Some(q) = queues {
        super::queues::compile(q, has_fleet, base_dir, &mut head, rep);
    }
    match server {
        Some(v) => {
            // A `listen` that is written but unreadable is reported as such, not as "no listeners".
            let written = matches!(v.get_ref(), DeValue::Table(t)
                if t.contains_key("listen") || t.contains_key("tls"));
            if let Some(s) = de::<ServerFile>(v, rep) {
                server_settings(s, written, base_dir, &mut head, rep);
            }
        }
        None => rep.error(0..0, "missing [server] section (it holds `listen`)"),
    }
    head
}

fn server_settings(
    s: ServerFile,
    listeners_written: bool,
    base_dir: &Path,
    head: &mut Head,
    rep: &mut Reporter,
) {
    let mut listen: Vec<SocketAddr> = Vec::new();
    for l in &s.listen {
        match values::listen_addr(l.get_ref()) {
            Ok(a) if listen.contains(&a) => rep.error(l.span(), format!("{a} is listed twice")),
            Ok(a) => listen.push(a),
            Err(e) => rep.error(l.span(), e),
        }
    }
    let mut tls = Vec::new();
    for t in &s.tls {
        let t = t.get_ref();
        match values::listen_addr(t.listen.get_ref()) {
            Ok(a) if listen.contains(&a) || tls.iter().any(|l: &TlsListener| l.addr == a) => {
                rep.error(t.listen.span(), format!("{a} is listed twice"))
            }
            Ok(addr) => {
                if let Some(l) = tls_listener(addr, t, base_dir, rep) {
                    tls.push(l);
                }
            }
            Err(e) => rep.error(t.listen.span(), e),
        }
    }
    if s.listen.is_empty() && s.tls.is_empty() && !listeners_written {
        rep.error(
            0..0,
            "no listeners: set server.listen, e.g. listen = [\"127.0.0.1:8080\"]",
        );
    }
    let admin_listen = match &s.admin_listen {
        Some(a) => match values::listen_addr(a.get_ref()) {
            Ok(addr) if listen.contains(&addr) || tls.iter().any(|l| l.addr == addr) => {
                rep.error(
                    a.span(),
                    "admin_listen must differ from every public listener",
                );
                None
            }
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    rep.warn(
                        a.span(),
                        format!(
                            "admin_listen {addr} is not a loopback address: the admin API \
                             (metrics, reload) has no TLS; keep it on a private network"
                        ),
                    );
                }
                Some(addr)
            }
            Err(e) => {
                rep.error(a.span(), e);
                None
            }
        },
        None => DEFAULT_ADMIN_LISTEN.parse().ok(),
    };
    if let Some(tf) = &s.admin_token_file {
        let path = resolve(base_dir, tf.get_ref());
        match std::fs::read_to_string(&path) {
            Ok(t) if t.trim().is_empty() => rep.error(
                tf.span(),
                format!("admin token file {} is empty", path.display()),
            ),
            Ok(t) => head.admin_token = Some(t.trim().to_string()),
            Err(e) => rep.error(tf.span(), format!("cannot read {}: {e}", path.display())),
        }
    }
    let mut nets = Vec::new();
    for p in &s.trusted_proxies {
        match values::network(p.get_ref()) {
            Ok(n) => nets.push(n),
            Err(e) => rep.error(p.span(), e),
        }
    }
    head.trusted = TrustedProxies::new(nets);
    let threads = match &s.threads {
        Some(t) => int_in::<usize>(t, "threads", 1, 256, rep),
        None => Some(std::thread::available_parallelism().map_or(1, |n| n.get())),
    };
    let grace_period = match &s.grace_period {
        Some(g) => values::duration(g.get_ref())
            .map_err(|e| rep.error(g.span(), e))
            .ok(),
        None => Some(Duration::from_secs(5)),
    };
    head.csp_file = s.csp_file;
    head.campaigns_file = s.campaigns_file;
    head.access_log = s.access_log.unwrap_or(true);
    let path_or = |v: &Option<Spanned<String>>, d: &str| {
        v.as_ref()
            .map_or_else(|| d.into(), |p| resolve(base_dir, p.get_ref()))
    };
    if let (Some(admin_listen), Some(threads), Some(grace_period)) =
        (admin_listen, threads, grace_period)
    {
        head.process = Some(ProcessSettings {
            listen,
            tls,
            admin_listen,
            threads,
            upgrade_sock: path_or(&s.upgrade_sock, "/tmp/seawall_upgrade.sock"),
            pid_file: path_or(&s.pid_file, "/tmp/seawall.pid"),
            grace_period,
        });
    }
}

/// Read and check a TLS listener's certificate and key now, so a wrong path or a key that does
/// not belong to the certificate is a located error, not a failure when the listener starts.
fn tls_listener(
    addr: SocketAddr,
    t: &super::schema::TlsFile,
    base_dir: &Path,
    rep: &mut Reporter,
) -> Option<TlsListener> {
    use pingora::tls::pkey::PKey;
    use pingora::tls::x509::X509;
    use sha2::Digest;
    let read = |v: &Spanned<String>, rep: &mut Reporter| {
        let path = resolve(base_dir, v.get_ref());
        match std::fs::read(&path) {
            Ok(b) => Some((path, b)),
            Err(e) => {
                rep.error(v.span(), format!("cannot read {}: {e}", path.display()));
                None
            }
        }
    };
    let cert = read(&t.cert, rep);
    let key = read(&t.key, rep);
    let (Some((cert_path, cert_pem)), Some((key_path, key_pem))) = (cert, key) else {
        return None;
    };
    let chain = match X509::stack_from_pem(&cert_pem) {
        Ok(c) if !c.is_empty() => c,
        _ => {
            rep.error(
                t.cert.span(),
                format!("{} holds no PEM certificate", cert_path.display()),
            );
            return None;
        }
    };
    let pkey = match PKey::private_key_from_pem(&key_pem) {
        Ok(k) => k,
        Err(_) => {
            rep.error(
                t.key.span(),
                format!("{} holds no PEM private key", key_path.display()),
            );
            return None;
        }
    };
    if !chain[0].public_key().is_ok_and(|p| p.public_eq(&pkey)) {
        rep.error(
            t.key.span(),
            format!(
                "the key in {} does not belong to the certificate in {}",
                key_path.display(),
                cert_path.display()
            ),
        );
        return None;
    }
    let mut h = sha2::Sha256::new();
    h.update(&cert_pem);
    h.update(&key_pem);
    Some(TlsListener {
        addr,
        cert: cert_path,
        key: key_path,
        digest: hex::encode(h.finalize()),
    })
}

fn upstreams(value: Spanned<DeValue<'_>>, head: &mut Head, rep: &mut Reporter) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        rep.error(
            span,
            "`upstreams` must be a table of [upstreams.NAME] sections",
        );
        return;
    };
    for (key, v) in table {
        let name_s = Spanned::new(key.span(), key.get_ref().to_string());
        head.declared_upstreams.insert(name_s.get_ref().clone());
        let name = check_name("upstream", &name_s, rep);
        let Some(u) = de::<UpstreamFile>(v, rep) else {
            continue;
        };
        if let Some(name) = name
            && let Some(up) = upstream(name.clone(), u, rep)
        {
            head.upstreams.insert(name, Arc::new(up));
        }
    }
}

fn opt_duration(
    v: &Option<Spanned<String>>,
    default: Duration,
    rep: &mut Reporter,
) -> Option<Duration> {
    match v {
        Some(d) => values::duration(d.get_ref())
            .map_err(|e| rep.error(d.span(), e))
            .ok(),
        None => Some(default),
    }
}

fn upstream(name: Arc<str>, u: UpstreamFile, rep: &mut Reporter) -> Option<Upstream> {
    let mut ok = true;
    let mut servers = Vec::new();
    if u.servers.get_ref().is_empty() {
        rep.error(
            u.servers.span(),
            format!("upstream {name:?} has no servers"),
        );
        ok = false;
    }
    for s in u.servers.get_ref() {
        match values::server_addr(s.get_ref()) {
            Ok(a) if servers.contains(&a) => {
                rep.error(s.span(), format!("server {a} is listed twice"));
                ok = false;
            }
            Ok(a) => servers.push(a),
            Err(e) => {
                rep.error(s.span(), e);
                ok = false;
            }
        }
    }
    let connect = opt_duration(&u.connect_timeout, upstream::DEFAULT_CONNECT_TIMEOUT, rep);
    let read = opt_duration(&u.read_timeout, upstream::DEFAULT_READ_TIMEOUT, rep);
    let write = opt_duration(&u.write_timeout, upstream::DEFAULT_READ_TIMEOUT, rep);
    let max_inflight = match &u.max_inflight {
        Some(m) => int_in::<u32>(m, "max_inflight", 0, 10_000_000, rep),
        None => Some(0),
    };
    let health = match &u.health_check {
        None => Some(None),
        Some(h) => {
            let h = h.get_ref();
            let path_ok = h.path.get_ref().starts_with('/')
                && !h
                    .path
                    .get_ref()
                    .bytes()
                    .any(|b| b.is_ascii_control() || b == b' ');
            if !path_ok {
                rep.error(
                    h.path.span(),
                    "health_check.path must be a path starting with '/'",
                );
            }
            let interval = opt_duration(&h.interval, Duration::from_secs(5), rep);
            let timeout = opt_duration(&h.timeout, Duration::from_secs(1), rep);
            match (path_ok, interval, timeout) {
                (true, Some(interval), Some(timeout)) => Some(Some(HealthCheckSpec {
                    path: h.path.get_ref().clone(),
                    interval,
                    timeout,
                })),
                _ => None,
            }
        }
    };
    let (Some(connect), Some(read), Some(write), Some(max_inflight), Some(health), true) =
        (connect, read, write, max_inflight, health, ok)
    else {
        return None;
    };
    let tls = u.tls.unwrap_or(false);
    let sni = u
        .sni
        .as_ref()
        .map(|s| s.get_ref().clone())
        .unwrap_or_default();
    if let Some(s) = &u.sni
        && !tls
    {
        rep.warn(s.span(), "sni is only used with tls = true");
    }
    let transport = crate::upstream::Transport {
        tls,
        sni,
        http2: u.http2.unwrap_or(false),
    };
    Some(Upstream::new(crate::upstream::UpstreamSpec {
        name,
        servers,
        connect_timeout: connect,
        read_timeout: read,
        write_timeout: write,
        max_inflight,
        health,
        transport,
    }))
}

fn raw_routes(value: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Vec<RawRoute> {
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
        let Some(file) = de::<RouteFile>(table_value(span.clone(), table), rep) else {
            continue;
        };
        let mut raw = RawRoute {
            span: span.clone(),
            file,
            limits: Vec::new(),
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
) -> Vec<Route> {
    let mut routes: Vec<Route> = Vec::new();
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
) -> Option<Route> {
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
        Some(ms) => {
            let mut out = Vec::new();
            let mut ok = true;
            for m in ms.get_ref() {
                let upper = m.get_ref().to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) if !upper.is_empty() => out.push(method),
                    _ => {
                        rep.error(m.span(), format!("invalid HTTP method {:?}", m.get_ref()));
                        ok = false;
                    }
                }
            }
            ok.then_some(Some(out))
        }
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
        match compile_limit(lf, l.span(), None, rep) {
            Some(spec) => limits.push(spec),
            None => limits_ok = false,
        }
    }
    let (
        Some(name),
        Some(host),
        Some(path),
        Some(methods),
        Some(upstream),
        Some(queue),
        Some(csp),
        Some(max_inflight),
        true,
    ) = (
        name,
        host,
        path,
        methods,
        upstream,
        queue,
        csp_choice,
        max_inflight,
        limits_ok,
    )
    else {
        return None;
    };
    Some(Route {
        name,
        host,
        path,
        methods,
        upstream,
        queue,
        csp,
        max_inflight,
        limits,
        bound: Vec::new(),
    })
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
    let starts_with_slash = |p: &Spanned<String>, rep: &mut Reporter| {
        let ok = p.get_ref().starts_with('/');
        if !ok {
            rep.error(
                p.span(),
                format!("path {:?} must start with '/'", p.get_ref()),
            );
        }
        ok
    };
    if let Some(p) = &f.path {
        return starts_with_slash(p, rep).then(|| PathMatch::Exact(p.get_ref().clone()));
    }
    if let Some(p) = &f.path_prefix {
        return starts_with_slash(p, rep).then(|| PathMatch::Prefix(p.get_ref().clone()));
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

/// Compile a limit. `default_name` names campaign limits, which have no `name` key.
pub(super) fn compile_limit(
    lf: &LimitFile,
    span: std::ops::Range<usize>,
    default_name: Option<&str>,
    rep: &mut Reporter,
) -> Option<LimitSpec> {
    let name = match (&lf.name, default_name) {
        (Some(n), _) => check_name("limit", n, rep),
        (None, Some(d)) => Some(Arc::from(d)),
        (None, None) => {
            rep.error(span, "a limit needs a `name`");
            None
        }
    };
    let key = values::limit_key(lf.key.get_ref())
        .map_err(|e| rep.error(lf.key.span(), e))
        .ok();
    let rate = values::rate(lf.rate.get_ref())
        .map_err(|e| rep.error(lf.rate.span(), e))
        .ok();
    let burst = lf
        .burst
        .as_ref()
        .map_or(Some(0), |b| int_in::<u32>(b, "burst", 0, 1_000_000, rep));
    let delay = lf
        .delay
        .as_ref()
        .map_or(Some(0), |d| int_in::<u32>(d, "delay", 0, 1_000_000, rep));
    let nodelay = lf.nodelay.unwrap_or(false);
    if let (Some(d), Some(b), Some(ds)) = (delay, burst, &lf.delay) {
        if nodelay && d > 0 {
            rep.warn(ds.span(), "delay is ignored when nodelay = true");
        } else if d > b {
            rep.warn(
                ds.span(),
                format!("delay = {d} is above burst = {b}: no request will be delayed"),
            );
        }
    }
    let status = match &lf.status {
        Some(s) => {
            int_in::<u16>(s, "status", 400, 599, rep).and_then(|c| StatusCode::from_u16(c).ok())
        }
        None => Some(StatusCode::TOO_MANY_REQUESTS),
    };
    let max_keys = match &lf.max_keys {
        Some(m) => int_in::<usize>(m, "max_keys", 1, 100_000_000, rep).and_then(NonZeroUsize::new),
        None => NonZeroUsize::new(DEFAULT_MAX_KEYS),
    };
    let mut exempt = Vec::new();
    let mut exempt_ok = true;
    for e in &lf.exempt {
        match values::network(e.get_ref()) {
            Ok(n) => exempt.push(n),
            Err(msg) => {
                rep.error(e.span(), msg);
                exempt_ok = false;
            }
        }
    }
    let (
        Some(name),
        Some(key),
        Some(rate),
        Some(burst),
        Some(delay),
        Some(status),
        Some(max_keys),
        true,
    ) = (name, key, rate, burst, delay, status, max_keys, exempt_ok)
    else {
        return None;
    };
    Some(LimitSpec {
        name,
        key,
        rate,
        burst,
        nodelay,
        delay,
        dry_run: lf.dry_run.unwrap_or(false),
        status,
        max_keys,
        exempt,
    })
}
