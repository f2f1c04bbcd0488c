//! `[fleet]` in `seawall.toml`: the Redis that fleet limits (and fleet queues) live in.
//!
//! Everything that can be checked without connecting is checked here, with its location: the
//! URL (scheme and syntax), the password file (readable, not empty), the timeout, the fail
//! mode, the instance count. Whether Redis answers is a runtime fact, never a load error: an
//! edge must start while its Redis is down (fleet limits then apply `on_store_error`).

use std::num::NonZeroU32;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::schema::{S, ScopeFile};
use super::{Reporter, check_name, de, int_in, resolve, values};
use crate::fleet::{DEFAULT_EXPECTED_INSTANCES, DEFAULT_TIMEOUT, FleetSpec, OnStoreError};

/// The longest `timeout` accepted: it is spent on the request path, per request.
const MAX_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetFile {
    pub redis: S<String>,
    pub redis_password_file: Option<S<String>>,
    /// Seawall addition: PEM roots for `rediss://` to a Redis whose certificate a private CA
    /// signed (default: the system's roots).
    pub redis_ca_file: Option<S<String>>,
    pub instance: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub on_store_error: Option<S<OnStoreError>>,
    pub expected_instances: Option<S<i64>>,
}

pub(super) fn compile(
    value: Spanned<DeValue<'_>>,
    base_dir: &Path,
    rep: &mut Reporter,
) -> Option<FleetSpec> {
    let f: FleetFile = de(value, rep)?;
    let redis = redis_url(&f.redis, rep);
    let password = match &f.redis_password_file {
        Some(p) if !p.get_ref().is_empty() => secret_file(p, base_dir, rep).map(Some),
        _ => Some(None),
    };
    let ca_pem = match &f.redis_ca_file {
        Some(p) if !p.get_ref().is_empty() => {
            let path = resolve(base_dir, p.get_ref());
            match std::fs::read(&path) {
                Ok(b) if b.windows(11).any(|w| w == b"-----BEGIN ") => Some(Some(b)),
                Ok(_) => {
                    rep.error(
                        p.span(),
                        format!("{} holds no PEM certificate", path.display()),
                    );
                    None
                }
                Err(e) => {
                    rep.error(p.span(), format!("cannot read {}: {e}", path.display()));
                    None
                }
            }
        }
        _ => Some(None),
    };
    if let (Some(ca), Some(url)) = (&f.redis_ca_file, &redis)
        && !ca.get_ref().is_empty()
        && !url.starts_with("rediss://")
    {
        rep.warn(ca.span(), "redis_ca_file is only used with a rediss:// URL");
    }
    let instance = match &f.instance {
        Some(i) if !i.get_ref().is_empty() => {
            check_name("instance", i, rep).map(|n| Some(n.to_string()))
        }
        _ => Some(None),
    };
    let timeout = match &f.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => match values::duration(t.get_ref()) {
            Ok(d) if d > MAX_TIMEOUT => {
                rep.error(
                    t.span(),
                    format!(
                        "timeout {:?} is too long: it is spent on every request that a fleet \
                         limit applies to (at most 1s; a few ms is typical)",
                        t.get_ref()
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                rep.error(t.span(), e);
                None
            }
        },
    };
    let on_store_error = f
        .on_store_error
        .as_ref()
        .map_or(OnStoreError::Local, |m| *m.get_ref());
    let expected_instances = match &f.expected_instances {
        None => NonZeroU32::new(DEFAULT_EXPECTED_INSTANCES),
        Some(n) => {
            if on_store_error != OnStoreError::Local {
                rep.warn(
                    n.span(),
                    "expected_instances is only used with on_store_error = \"local\"",
                );
            }
            int_in::<u32>(n, "expected_instances", 1, 10_000, rep).and_then(NonZeroU32::new)
        }
    };
    Some(FleetSpec {
        redis: redis?,
        password: password?,
        ca_pem: ca_pem?,
        instance: instance?,
        timeout: timeout?,
        on_store_error,
        expected_instances: expected_instances?,
    })
}

/// `redis://` or `rediss://`, parsed now the way the client will parse it.
fn redis_url(u: &Spanned<String>, rep: &mut Reporter) -> Option<String> {
    use redis::IntoConnectionInfo;
    let url = u.get_ref().trim();
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("redis" | "rediss")) {
        rep.error(
            u.span(),
            format!(
                "invalid Redis URL {url:?}: write redis://HOST:PORT/DB, or rediss://HOST:PORT/DB \
                 for TLS"
            ),
        );
        return None;
    }
    match url.into_connection_info() {
        Ok(info) => {
            if info.redis_settings().password().is_some() {
                rep.warn(
                    u.span(),
                    "the Redis URL holds a password: put it in redis_password_file instead \
                     (never a password in a file that is checked in)",
                );
            }
            Some(url.to_string())
        }
        Err(_) => {
            // redis-rs says only "did not parse - InvalidClientConfig".
            rep.error(
                u.span(),
                format!(
                    "invalid Redis URL {url:?}: check the host, port and database number \
                     (write redis://HOST:PORT/DB)"
                ),
            );
            None
        }
    }
}

/// A password file: read now, so a missing file is a located error at load rather than an
/// authentication failure at 3 am. One trailing newline is not part of the password.
fn secret_file(p: &Spanned<String>, base_dir: &Path, rep: &mut Reporter) -> Option<String> {
    let path = resolve(base_dir, p.get_ref());
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.strip_suffix('\n').unwrap_or(&s);
            let s = s.strip_suffix('\r').unwrap_or(s);
            if s.is_empty() {
                rep.error(
                    p.span(),
                    format!("password file {} is empty", path.display()),
                );
                return None;
            }
            Some(s.to_string())
        }
        Err(e) => {
            rep.error(p.span(), format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `scope = "fleet"` needs `[fleet]`. Returns false when that is what is wrong.
pub(super) fn check_scope(
    scope: Option<&Spanned<ScopeFile>>,
    fleet_declared: bool,
    rep: &mut Reporter,
) -> bool {
    match scope {
        Some(s) if *s.get_ref() == ScopeFile::Fleet && !fleet_declared => {
            rep.error(
                s.span(),
                "scope = \"fleet\" needs a [fleet] section in seawall.toml (the Redis that \
                 decides for every instance)",
            );
            false
        }
        _ => true,
    }
}
