//! `[upstreams.NAME]`: pools of servers, their timeouts, caps and health checks.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;
use toml::de::DeValue;

use super::main_file::Head;
use super::schema::UpstreamFile;
use super::{Reporter, check_name, de, int_in, values};
use crate::upstream::{self, HealthCheckSpec, Upstream};

pub(super) fn upstreams(value: Spanned<DeValue<'_>>, head: &mut Head, rep: &mut Reporter) {
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

pub(super) fn opt_duration(
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
