//! Rate limits and concurrency caps.
//!
//! - [`LimitSpec`]: a limit as config loading compiles it;
//! - [`limiter`]: the per-key limiter with nginx `limit_req` semantics and a bounded table;
//! - [`keys`]: which key a request is limited under;
//! - [`registry`]: limiter state kept across reloads by limit identity.
//!
//! Concurrency caps (`max_inflight`) use pingora-limits' `Inflight` in the proxy.

use std::num::NonZeroUsize;
use std::sync::Arc;

use http::StatusCode;
use ipnet::IpNet;

use crate::config::values::{KeySource, Rate};

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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Local,
    Fleet,
}
