//! `[server]`: listeners, TLS, the admin listener and token, trusted proxies, threads.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::main_file::{DEFAULT_ADMIN_LISTEN, Head};
use super::schema::{AccessLogFile, ServerFile, TlsFile};
use super::{Reporter, int_in, resolve, values};
use crate::access_log::Destination;
use crate::client_ip::TrustedProxies;
use crate::snapshot::{ProcessSettings, TlsListener};

pub(super) fn server_settings(
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
            Ok(n) => {
                if n.prefix_len() == 0 {
                    rep.warn(
                        p.span(),
                        format!(
                            "trusted_proxies {n} trusts every address: any client can set its \
                             own X-Forwarded-For, and so choose its rate-limit key and the \
                             address the app sees; list only your load balancers"
                        ),
                    );
                }
                nets.push(n);
            }
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
    let client = super::server_limits::compile(
        s.header_timeout.as_ref(),
        s.keepalive_timeout.as_ref(),
        s.max_header_bytes.as_ref(),
        rep,
    );
    head.csp_file = s.csp_file;
    head.campaigns_file = s.campaigns_file;
    head.access_log = match s.access_log.as_ref().map(|a| (a.get_ref(), a.span())) {
        None | Some((AccessLogFile::On(true), _)) => Destination::Stdout,
        Some((AccessLogFile::On(false), _)) => Destination::Off,
        Some((AccessLogFile::Path(p), span)) if p.trim().is_empty() => {
            rep.error(
                span,
                "access_log is a file path, true (stdout) or false, not an empty string",
            );
            Destination::Off
        }
        Some((AccessLogFile::Path(p), _)) => Destination::File(resolve(base_dir, p)),
    };
    if let Some(m) = &s.max_body {
        match values::size(m.get_ref()) {
            Ok(n) => head.max_body = n,
            Err(e) => rep.error(m.span(), e),
        }
    }
    let path_or = |v: &Option<Spanned<String>>, d: &str| {
        v.as_ref()
            .map_or_else(|| d.into(), |p| resolve(base_dir, p.get_ref()))
    };
    if let (Some(admin_listen), Some(threads), Some(grace_period), Some(client)) =
        (admin_listen, threads, grace_period, client)
    {
        head.process = Some(ProcessSettings {
            listen,
            tls,
            admin_listen,
            threads,
            upgrade_sock: path_or(&s.upgrade_sock, "/tmp/seawall_upgrade.sock"),
            pid_file: path_or(&s.pid_file, "/tmp/seawall.pid"),
            grace_period,
            client,
        });
    }
}

/// Read and check a TLS listener's certificate and key now, so a wrong path or a key that does
/// not belong to the certificate is a located error, not a failure when the listener starts.
fn tls_listener(
    addr: SocketAddr,
    t: &TlsFile,
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
