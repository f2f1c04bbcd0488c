//! Route matching: ordered routes, the first that matches wins (like Envoy's route table, unlike
//! nginx's longest-prefix `location`). Pure functions over the compiled routes, no I/O.
//!
//! Routes match a request's normalized path ([`normalize_path`]), so `//api/v1//users/%72egister`
//! meets the limits of `/api/v1/users/register`, as the app behind would route it; the request
//! is forwarded as the client sent it.

use std::sync::Arc;

use http::Method;
use regex::Regex;

use crate::canary::{BoundCanary, RouteCanary};
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

/// A route. Everything a request needs is resolved: the upstream pool itself, the CSP choice, the
/// limits, the canary. `L` and `K` are what a limit and a canary are at this stage: their
/// compiled specs ([`RouteSpec`], what config loading returns) or the specs with their state
/// ([`Route`], what the live snapshot holds; built by [`crate::snapshot::build`]). So a route
/// whose limits or canary are not bound cannot reach a request.
#[derive(Debug)]
pub struct Route<L = BoundLimit, K = BoundCanary> {
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
    /// A larger request body gets 413: the route's `max_body`, or the server's.
    pub max_body: u64,
    pub limits: Vec<L>,
    /// `[routes.canary]`: a share of this route's requests to another upstream.
    pub canary: Option<K>,
}

/// A route as config loading compiles it.
pub type RouteSpec = Route<LimitSpec, RouteCanary>;

impl<L, K> Route<L, K> {
    pub fn matches(&self, host: &str, path: &str, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
            && self.host.as_ref().is_none_or(|h| h.matches(host))
            && self.path.matches(path)
    }

    /// True when every request `later` would match is taken by `self` first, so `later` is dead.
    pub fn shadows<M, N>(&self, later: &Route<M, N>) -> bool {
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

    /// The same route with each limit and its canary turned into what the next stage holds.
    /// `canary` also gets the route's name and path matcher.
    pub fn bind<M, N>(
        self,
        limit: impl FnMut(L) -> M,
        canary: impl FnOnce(K, &Arc<str>, &PathMatch) -> N,
    ) -> Route<M, N> {
        let canary = self.canary.map(|c| canary(c, &self.name, &self.path));
        Route {
            name: self.name,
            host: self.host,
            path: self.path,
            methods: self.methods,
            upstream: self.upstream,
            queue: self.queue,
            csp: self.csp,
            max_inflight: self.max_inflight,
            max_body: self.max_body,
            limits: self.limits.into_iter().map(limit).collect(),
            canary,
        }
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

/// Why a path cannot be normalized safely: the request is answered 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadPath {
    /// `%2F` in a segment: a `/` that is not a separator, which apps and proxies split apart
    /// differently.
    EncodedSlash,
    /// `%00`: a NUL byte, which ends the path early in C code behind us.
    EncodedNul,
    /// `..` above the root.
    AboveRoot,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// A request target that is not a path (`*`, an authority): nginx answers these 400 too.
    NotAPath,
}

impl BadPath {
    /// What the 400 answer says.
    pub fn text(self) -> &'static str {
        match self {
            BadPath::EncodedSlash => "the path has an encoded '/' (%2F) in a segment",
            BadPath::EncodedNul => "the path has an encoded NUL (%00)",
            BadPath::AboveRoot => "the path has a '..' segment above the root",
            BadPath::BadEscape => "the path has a '%' not followed by two hex digits",
            BadPath::NotAPath => "the request target is not a path starting with '/'",
        }
    }
}

/// The path routes are matched on, as nginx normalizes a URI: percent-encoded unreserved
/// characters (letters, digits, `-._~`) decoded, other escapes kept (hex digits upper-cased),
/// repeated slashes merged, `.` and `..` segments resolved. A path that needs none of it (almost
/// every request) is returned as it is, without allocating.
pub fn normalize_path(raw: &str) -> Result<std::borrow::Cow<'_, str>, BadPath> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(BadPath::NotAPath);
    }
    let plain = !b.contains(&b'%') && !b.windows(2).any(|w| w == b"//" || w == b"/.");
    if plain {
        return Ok(std::borrow::Cow::Borrowed(raw));
    }
    // Decode what is unreserved, then walk the segments.
    // Bytes, not chars: a UTF-8 character's bytes are copied as they are, and every decoded
    // byte is ASCII, so `decoded` stays UTF-8.
    let mut decoded: Vec<u8> = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            decoded.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |c: u8| (c as char).to_digit(16);
        let (Some(h), Some(l)) = (
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(BadPath::BadEscape);
        };
        let c = (h * 16 + l) as u8;
        match c {
            b'/' => return Err(BadPath::EncodedSlash),
            0 => return Err(BadPath::EncodedNul),
            c if c.is_ascii_alphanumeric() || b"-._~".contains(&c) => decoded.push(c),
            c => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                decoded.extend_from_slice(&[
                    b'%',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
        }
        i += 3;
    }
    let decoded = String::from_utf8(decoded).expect("UTF-8 in, ASCII decoded: UTF-8 out");
    let mut segments: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for seg in decoded.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(BadPath::AboveRoot);
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(std::borrow::Cow::Owned(out))
}

/// The first route that matches, in file order, and its index.
pub fn find<'a, L, K>(
    routes: &'a [Route<L, K>],
    host: &str,
    path: &str,
    method: &Method,
) -> Option<(usize, &'a Route<L, K>)> {
    routes
        .iter()
        .enumerate()
        .find(|(_, r)| r.matches(host, path, method))
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
    fn paths_are_normalized_as_nginx_does() {
        let n = |p: &str| normalize_path(p).map(|c| c.into_owned());
        for same in ["/", "/api/v1/users/register", "/a.b/c-d_e~f"] {
            assert!(
                matches!(normalize_path(same), Ok(std::borrow::Cow::Borrowed(_))),
                "{same}"
            );
        }
        assert_eq!(n("/x/.hidden/..x").unwrap(), "/x/.hidden/..x");
        assert_eq!(
            n("//api/v1/users/register").unwrap(),
            "/api/v1/users/register"
        );
        assert_eq!(
            n("/api/v1//users/register").unwrap(),
            "/api/v1/users/register"
        );
        assert_eq!(
            n("/api/v1/users/%72egister").unwrap(),
            "/api/v1/users/register"
        );
        assert_eq!(
            n("/api/./v1/x/../users/register").unwrap(),
            "/api/v1/users/register"
        );
        assert_eq!(n("/a/%2e%2E/b").unwrap(), "/b");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a//").unwrap(), "/a/");
        assert_eq!(
            n("/a%20b/%3a").unwrap(),
            "/a%20b/%3A",
            "reserved escapes stay"
        );
        assert_eq!(n("/%7Euser").unwrap(), "/~user");
        assert_eq!(n("/a/%2Fb"), Err(BadPath::EncodedSlash));
        assert_eq!(n("/a/%2fb"), Err(BadPath::EncodedSlash));
        assert_eq!(n("/a%00"), Err(BadPath::EncodedNul));
        assert_eq!(n("/../etc/passwd"), Err(BadPath::AboveRoot));
        assert_eq!(n("/a/%2e%2e/%2e%2e/b"), Err(BadPath::AboveRoot));
        assert_eq!(n("/a%4"), Err(BadPath::BadEscape));
        assert_eq!(n("/a%zz"), Err(BadPath::BadEscape));
    }

    /// Found by `fuzz/fuzz_targets/normalize_path.rs`: a target that is not a path (empty, `*`)
    /// came back as it was, and a UTF-8 character in a path that needed work came back as its
    /// bytes read as Latin-1 (`é` as `Ã©`), so no route written in UTF-8 could match it.
    #[test]
    fn only_paths_normalize_and_utf8_survives() {
        let n = |p: &str| normalize_path(p).map(|c| c.into_owned());
        for not_a_path in ["", "*", "example.com:443", "a/b"] {
            assert_eq!(n(not_a_path), Err(BadPath::NotAPath), "{not_a_path:?}");
        }
        assert_eq!(
            n("/caf\u{e9}//men\u{fc}/%41").unwrap(),
            "/caf\u{e9}/men\u{fc}/A"
        );
        assert_eq!(n("/\u{1f600}/./x").unwrap(), "/\u{1f600}/x");
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
