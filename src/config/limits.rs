//! `[[routes.limits]]` and the inline `limit = {...}` of campaigns.

use std::num::NonZeroUsize;
use std::sync::Arc;

use http::StatusCode;

use super::schema::LimitFile;
use super::{Reporter, check_name, int_in, values};
use crate::limits::{DEFAULT_MAX_KEYS, LimitSpec, Scope};

/// Compile a limit. `default_name` names campaign limits, which have no `name` key;
/// `fleet_declared`: the main file has a `[fleet]` section for `scope = "fleet"` to use.
pub(super) fn compile_limit(
    lf: &LimitFile,
    span: std::ops::Range<usize>,
    default_name: Option<&str>,
    fleet_declared: bool,
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
    let scope = lf
        .scope
        .as_ref()
        .map_or(Scope::Local, |s| (*s.get_ref()).into());
    let scope_ok = super::fleet::check_scope(lf.scope.as_ref(), fleet_declared, rep);
    let (
        Some(name),
        Some(key),
        Some(rate),
        Some(burst),
        Some(delay),
        Some(status),
        Some(max_keys),
        true,
        true,
    ) = (
        name, key, rate, burst, delay, status, max_keys, exempt_ok, scope_ok,
    )
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
        scope,
    })
}
