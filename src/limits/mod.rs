//! Rate limits and concurrency caps.
//!
//! - [`LimitSpec`], [`KeySource`], [`Rate`]: a limit as config loading compiles it;
//! - [`limiter`]: the per-key limiter with nginx `limit_req` semantics and a bounded table;
//! - [`keys`]: which key a request is limited under;
//! - [`registry`]: limiter state kept across reloads by limit identity.
//!
//! Concurrency caps (`max_inflight`) use pingora-limits' `Inflight` in the proxy.

use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::Arc;

use http::{HeaderName, StatusCode};
use ipnet::IpNet;

pub mod keys;
pub mod limiter;
pub mod registry;
pub mod request;

pub use registry::{BoundLimit, Registry};

/// Default `max_keys`: at the measured 37-53 bytes a key, a few MB per limit.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// One `[[routes.limits]]` (or a campaign's `limit`), checked and ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSpec {
    pub name: Arc<str>,
    pub key: KeySource,
    pub rate: Rate,
    pub burst: u32,
    /// `true`: excess within the burst passes at once. `false` (nginx's default): it is delayed.
    pub nodelay: bool,
    /// nginx's `delay=N`: the first N excess requests pass at once, later ones wait.
    pub delay: u32,
    pub dry_run: bool,
    pub status: StatusCode,
    pub max_keys: NonZeroUsize,
    pub exempt: Vec<IpNet>,
    pub scope: Scope,
}

/// Where a limit's state lives: in this process, or in Redis for every instance (`[fleet]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scope {
    #[default]
    Local,
    Fleet,
}

/// A rate as nginx writes it, `N r/s`, `N r/m`, plus Seawall's `N r/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    /// Seconds in the unit: 1, 60 or 3600.
    pub per_secs: u64,
    /// nginx's integer rate in milli-requests per second: `floor(count * 1000 / per_secs)`.
    /// The truncation is deliberate (nginx parity): `1r/m` is 16, one request per 62.5 s.
    pub milli_per_sec: NonZeroU64,
}

impl Rate {
    pub fn unit(&self) -> &'static str {
        match self.per_secs {
            1 => "s",
            60 => "m",
            _ => "h",
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}r/{}", self.count, self.unit())
    }
}

/// Where a limit (or a campaign tag) reads its key from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeySource {
    ClientIp,
    Global,
    Header(HeaderName),
    Cookie(String),
    Query(String),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::ClientIp => f.write_str("client_ip"),
            KeySource::Global => f.write_str("global"),
            KeySource::Header(h) => write!(f, "header:{h}"),
            KeySource::Cookie(c) => write!(f, "cookie:{c}"),
            KeySource::Query(q) => write!(f, "query:{q}"),
        }
    }
}
