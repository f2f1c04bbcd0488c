//! `[routes.canary]`: the file schema and its compilation into a [`CanarySpec`].
//!
//! `main_file::raw_routes` takes the table out of its route before the route is deserialized
//! (as it does `limits`), so a bad canary table is reported on its own and never hides the
//! route's other problems.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde::Deserialize;
use toml::Spanned;

use super::main_file::Head;
use super::{Reporter, int_in, list_names, values};
use crate::canary::{self, CanarySpec, RouteCanary, Sticky};

type S<T> = Spanned<T>;

/// A `[routes.canary]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFile {
    pub upstream: S<String>,
    pub weight: S<i64>,
    pub sticky: Option<S<String>>,
    pub window: Option<S<String>>,
    pub min_requests: Option<S<i64>>,
    pub max_error_rate: Option<S<f64>>,
    pub max_p99: Option<S<String>>,
    pub bad_windows: Option<S<i64>>,
    pub freeze_during_launches: Option<bool>,
    /// Seawall addition: a label of the version under test (part of the digest).
    pub release: Option<S<String>>,
}

/// Shortest and longest window: below a second too few requests to judge, above a day no
/// rollback in time to matter.
const MIN_WINDOW: Duration = Duration::from_secs(1);
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// `client_ip | header:NAME | cookie:NAME`.
pub fn sticky(s: &str) -> Result<Sticky, String> {
    const FORMS: &str = "sticky is client_ip, header:NAME or cookie:NAME";
    if s == "client_ip" {
        return Ok(Sticky::ClientIp);
    }
    let Some((kind, name)) = s.split_once(':') else {
        return Err(format!("invalid sticky {s:?}: {FORMS}"));
    };
    if name.is_empty() {
        return Err(format!("sticky {s:?} has an empty name after ':'"));
    }
    match kind {
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(Sticky::Header)
            .map_err(|_| format!("invalid header name {name:?} in sticky {s:?}")),
        "cookie" if is_token(name) => Ok(Sticky::Cookie(name.to_string())),
        "cookie" => Err(format!(
            "invalid cookie name {name:?} in sticky {s:?}: a cookie name is an RFC 6265 token \
             (letters, digits and !#$%&'*+-.^_`|~; no spaces, quotes or ()<>@,;:\\/[]?={{}})"
        )),
        _ => Err(format!("unknown sticky kind {kind:?} in {s:?}: {FORMS}")),
    }
}

/// RFC 6265 cookie-name = token (RFC 2616): visible ASCII except separators.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// Check a route's canary table. `None` when it has errors (already reported).
pub(super) fn compile(
    c: &S<CanaryFile>,
    route_upstream: &str,
    head: &Head,
    rep: &mut Reporter,
) -> Option<RouteCanary> {
    let f = c.get_ref();
    let up_name = f.upstream.get_ref();
    let upstream = match head.upstreams.get(up_name.as_str()) {
        Some(u) => Some(u.clone()),
        None => {
            // A declared but broken upstream is reported where it is written.
            if !head.declared_upstreams.contains(up_name) {
                rep.error(
                    f.upstream.span(),
                    format!(
                        "unknown canary upstream {up_name:?} (defined: {})",
                        list_names(head.declared_upstreams.iter().map(String::as_str))
                    ),
                );
            }
            None
        }
    };
    if up_name == route_upstream {
        rep.warn(
            f.upstream.span(),
            format!(
                "the canary upstream {up_name:?} is the route's own upstream: both sides \
                 are the same servers, nothing is being tried"
            ),
        );
    }
    let weight = int_in::<u8>(&f.weight, "weight (percent)", 0, 100, rep);
    let sticky = match &f.sticky {
        Some(s) => sticky(s.get_ref()).map_err(|e| rep.error(s.span(), e)).ok(),
        None => Some(Sticky::ClientIp),
    };
    let window = match &f.window {
        Some(w) => match values::duration(w.get_ref()) {
            Ok(d) if (MIN_WINDOW..=MAX_WINDOW).contains(&d) => Some(d),
            Ok(_) => {
                rep.error(w.span(), "window must be between 1s and 24h");
                None
            }
            Err(e) => {
                rep.error(w.span(), e);
                None
            }
        },
        None => Some(canary::DEFAULT_WINDOW),
    };
    let min_requests = match &f.min_requests {
        Some(m) if *m.get_ref() == 0 => {
            rep.error(
                m.span(),
                "min_requests = 0 would judge windows without any request: write at least 1",
            );
            None
        }
        Some(m) => int_in::<u64>(m, "min_requests", 1, 1_000_000_000, rep),
        None => Some(canary::DEFAULT_MIN_REQUESTS),
    };
    let max_error_rate = match &f.max_error_rate {
        None => Some(None),
        Some(r) => {
            let x = *r.get_ref();
            if x > 0.0 && x <= 1.0 {
                Some(Some(x))
            } else {
                let hint = if x > 1.0 && x <= 100.0 {
                    format!(" (for {x}% write {})", x / 100.0)
                } else {
                    String::new()
                };
                rep.error(
                    r.span(),
                    format!(
                        "max_error_rate must be a fraction above 0 and at most 1, e.g. 0.02 \
                         for 2%, not {x}{hint}"
                    ),
                );
                None
            }
        }
    };
    let max_p99 = match &f.max_p99 {
        None => Some(None),
        Some(p) => values::duration(p.get_ref())
            .map(Some)
            .map_err(|e| rep.error(p.span(), e))
            .ok(),
    };
    let bad_windows = match &f.bad_windows {
        Some(b) if *b.get_ref() == 0 => {
            rep.error(
                b.span(),
                "bad_windows = 0 would roll back before any window is judged: write at least 1",
            );
            None
        }
        Some(b) => int_in::<u32>(b, "bad_windows", 1, 1000, rep),
        None => Some(canary::DEFAULT_BAD_WINDOWS),
    };
    let release = match &f.release {
        None => Some(None),
        Some(r) => {
            let s = r.get_ref();
            if s.is_empty() || s.len() > 128 || s.chars().any(char::is_control) {
                rep.error(
                    r.span(),
                    "release must be 1 to 128 characters without control characters",
                );
                None
            } else {
                Some(Some(s.clone()))
            }
        }
    };
    let freeze = f.freeze_during_launches.unwrap_or(false);
    if freeze && head.campaigns_file.is_none() {
        rep.warn(
            c.span(),
            "freeze_during_launches = true but server.campaigns_file is not set: no launch \
             can freeze this canary",
        );
    }
    let (
        Some(upstream),
        Some(weight),
        Some(sticky),
        Some(window),
        Some(min_requests),
        Some(max_error_rate),
        Some(max_p99),
        Some(bad_windows),
        Some(release),
    ) = (
        upstream,
        weight,
        sticky,
        window,
        min_requests,
        max_error_rate,
        max_p99,
        bad_windows,
        release,
    )
    else {
        return None;
    };
    if weight == 100 && max_error_rate.is_none() && max_p99.is_none() {
        rep.warn(
            f.weight.span(),
            "weight = 100 leaves no stable side to compare with, and neither max_error_rate \
             nor max_p99 is set: this canary can only be rolled back by hand",
        );
    }
    let spec = Arc::new(CanarySpec {
        upstream: Arc::from(up_name.as_str()),
        weight,
        sticky,
        window,
        min_requests,
        max_error_rate,
        max_p99,
        bad_windows,
        freeze_during_launches: freeze,
        release,
    });
    Some(RouteCanary {
        digest: spec.digest().into(),
        spec,
        upstream,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_sources() {
        assert_eq!(sticky("client_ip").unwrap(), Sticky::ClientIp);
        assert_eq!(
            sticky("header:X-User").unwrap(),
            Sticky::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(
            sticky("cookie:seawall_canary").unwrap(),
            Sticky::Cookie("seawall_canary".into())
        );
        assert!(sticky("cookie:a b").unwrap_err().contains("RFC 6265 token"));
        assert!(sticky("cookie:a=b").is_err());
        assert!(sticky("cookie:\"q\"").is_err());
        assert!(sticky("cookie:").unwrap_err().contains("empty name"));
        assert!(
            sticky("header:bad name")
                .unwrap_err()
                .contains("header name")
        );
        assert!(
            sticky("query:x")
                .unwrap_err()
                .contains("unknown sticky kind")
        );
        assert!(
            sticky("ip")
                .unwrap_err()
                .contains("client_ip, header:NAME or cookie:NAME")
        );
    }
}

#[cfg(test)]
#[path = "canary_tests.rs"]
mod load_tests;
