//! Route matching: ordered routes, the first that matches wins (like Envoy's route table, unlike
//! nginx's longest-prefix `location`). Pure functions over the compiled routes, no I/O.
//!
//! Paths are matched as the client sent them, without percent-decoding or `..` folding (Envoy's
//! default): put a `path_regex` or an exact `path` in front when that matters.

use std::sync::Arc;

use http::Method;
use regex::Regex;

use crate::csp::CspChoice;
use crate::limits::{BoundLimit, LimitSpec};
use crate::upstream::Upstream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    /// Lower-case, without a trailing dot.
    Exact(String),
    /// `*.example.com` stored as `.example.com`: matches any deeper name, never `example.com`.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(s: &str) -> Result<HostMatch, String> {
        let lower = s.trim_end_matches('.').to_ascii_lowercase();
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if name.is_empty() || !name.split('.').all(label_ok) {
            return Err(format!(
                "invalid host {s:?}: write a name such as \"shop.example.com\" or \"*.example.com\" \
                 (no port, no scheme; '*' only as the whole leftmost label)"
            ));
        }
        Ok(if suffix {
            HostMatch::Suffix(format!(".{name}"))
        } else {
            HostMatch::Exact(name.to_string())
        })
    }

    /// `host` must already be normalised by [`normalize_host`].
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(h) => h == host,
            HostMatch::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// Does every host this matcher accepts also pass `self`?
    fn covers(&self, other: &HostMatch) -> bool {
        match (self, other) {
            (HostMatch::Exact(a), HostMatch::Exact(b)) => a == b,
            (HostMatch::Suffix(s), HostMatch::Exact(b)) => HostMatch::Suffix(s.clone()).matches(b),
            (HostMatch::Suffix(a), HostMatch::Suffix(b)) => b.ends_with(a.as_str()),
            (HostMatch::Exact(_), HostMatch::Suffix(_)) => false,
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    Any,
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Exact(p) => p == path,
            PathMatch::Prefix(p) => path.starts_with(p.as_str()),
            PathMatch::Regex(r) => r.is_match(path),
        }
    }

    fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (PathMatch::Any, _) => true,
            (PathMatch::Prefix(a), PathMatch::Prefix(b) | PathMatch::Exact(b)) => {
                b.starts_with(a.as_str())
            }
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Regex(a), PathMatch::Regex(b)) => a.as_str() == b.as_str(),
            (PathMatch::Regex(a), PathMatch::Exact(b)) => a.is_match(b),
            _ => false,
        }
    }
}

/// A compiled route. Everything a request needs is resolved: the upstream pool itself, the CSP
/// choice, the limits.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    pub host: Option<HostMatch>,
    pub path: PathMatch,
    /// `None` = every method.
    pub methods: Option<Vec<Method>>,
    pub upstream: Arc<Upstream>,
    /// `queue = "NAME"`: every request this route matches is queued (durably accepted, then
    /// delivered to the queue's `deliver_to`, which is also `upstream` above), never proxied.
    pub queue: Option<Arc<str>>,
    pub csp: CspChoice,
    /// 0 = no cap.
    pub max_inflight: u32,
    pub limits: Vec<LimitSpec>,
    /// The same limits with their state, attached by [`crate::limits::Registry::bind`] just
    /// before the snapshot goes live (empty until then).
    pub bound: Vec<BoundLimit>,
}

impl Route {
    pub fn matches(&self, host: &str, path: &str, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.path.matches(path)
    }

    /// True when every request `later` would match is taken by `self` first, so `later` is dead.
    pub fn shadows(&self, later: &Route) -> bool {
        let hosts = match (&self.host, &later.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => a.covers(b),
        };
        let methods = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        };
        hosts && methods && self.path.covers(&later.path)
    }
}

/// The host a request names: the URI's authority (HTTP/2, absolute-form) or the `Host` header.
pub fn request_host(req: &pingora::http::RequestHeader) -> &str {
    req.uri
        .host()
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
}

/// Lower-case, strip the port and a trailing dot. Works for `[v6]:port` too.
pub fn normalize_host(raw: &str) -> std::borrow::Cow<'_, str> {
    let no_port = if raw.starts_with('[') {
        raw.split_once(']')
            .map_or(raw, |(h, _)| &raw[..h.len() + 1])
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, _)| h)
    };
    let trimmed = no_port.strip_suffix('.').unwrap_or(no_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(trimmed)
    }
}

/// The first route that matches, in file order.
pub fn find<'a>(routes: &'a [Route], host: &str, path: &str, method: &Method) -> Option<&'a Route> {
    routes.iter().find(|r| r.matches(host, path, method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_matchers() {
        let exact = HostMatch::parse("Shop.Example.com.").unwrap();
        assert!(exact.matches("shop.example.com"));
        assert!(!exact.matches("x.shop.example.com"));
        let wild = HostMatch::parse("*.example.com").unwrap();
        assert!(wild.matches("a.example.com"));
        assert!(wild.matches("a.b.example.com"));
        assert!(!wild.matches("example.com"));
        assert!(!wild.matches("badexample.com"));
        assert!(HostMatch::parse("a.*.com").is_err());
        assert!(HostMatch::parse("shop.example.com:8080").is_err());
        assert!(HostMatch::parse("https://x.com").is_err());
        assert!(wild.covers(&HostMatch::parse("*.a.example.com").unwrap()));
        assert!(!wild.covers(&HostMatch::parse("example.com").unwrap()));
    }

    #[test]
    fn normalizes_hosts() {
        assert_eq!(normalize_host("Shop.Example.COM:8080"), "shop.example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }

    #[test]
    fn path_cover() {
        let p = |s: &str| PathMatch::Prefix(s.into());
        assert!(p("/api").covers(&p("/api/v1")));
        assert!(!p("/api/v1").covers(&p("/api")));
        assert!(p("/api").covers(&PathMatch::Exact("/api/x".into())));
        assert!(!PathMatch::Exact("/a".into()).covers(&p("/a")));
        assert!(PathMatch::Any.covers(&PathMatch::Regex(Regex::new("x").unwrap())));
    }
}
