//! One fleet limit: its Redis key prefix, its parameters, its "rejected until" cache, and the
//! local limiter it falls back to while Redis is unreachable.

use std::sync::Arc;

use parking_lot::RwLock;
use prometheus::IntCounter;

use super::cache::RejectCache;
use super::key::FleetKey;
use crate::limits::limiter::{Limiter, Params};

/// Where fleet limit state lives in Redis: `seawall:{rl}:SCOPE:LIMIT:KEY-SOURCE:KEY`, SCOPE
/// being the route's name or `campaign`. One script call decides a request's campaign limit
/// and its route's limits together, and Redis Cluster runs a script only when all its keys
/// hash to one slot (else CROSSSLOT, and every such request would take `on_store_error`). A
/// campaign limit is shared by every route it targets, and a route by every campaign aimed at
/// it, so no tag narrower than one for all fleet limits keeps every such pair together: `{rl}`,
/// ahead of any name (Cluster hashes the first `{...}`, so a `{` in a route name cannot change
/// it). The price: a Cluster serves fleet limits from one shard, which at one small script per
/// request is far more than an edge fleet sends.
pub const KEY_PREFIX: &str = "seawall:{rl}:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    pub params: Params,
    pub dry_run: bool,
}

pub struct FleetLimit {
    pub scope: Arc<str>,
    pub name: Arc<str>,
    /// The key source as written (`client_ip`, `header:x-api-key`): part of the identity, so a
    /// limit whose key changes starts with fresh state, as a local one does.
    pub key_source: String,
    prefix: String,
    settings: RwLock<Settings>,
    pub(super) cache: RejectCache,
    /// The local limiter of `on_store_error = "local"`, at `rate / expected_instances`.
    pub(super) fallback: Limiter,
    expected_instances: u32,
    pub(super) fallback_decisions: IntCounter,
}

impl std::fmt::Debug for FleetLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetLimit")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("key_source", &self.key_source)
            .field("settings", &*self.settings.read())
            .finish()
    }
}

/// The fallback's share of the fleet's rate: each of `n` instances takes `rate / n` (never
/// below nginx's resolution of 1 milli-request per second). The burst is kept: CONFIG.md
/// divides the rate only.
fn fallback_params(p: Params, n: u32) -> Params {
    Params {
        rate_m: (p.rate_m / u64::from(n.max(1))).max(1),
        ..p
    }
}

impl FleetLimit {
    pub(super) fn new(
        scope: Arc<str>,
        name: Arc<str>,
        key_source: String,
        settings: Settings,
        expected_instances: u32,
        fallback_decisions: IntCounter,
    ) -> FleetLimit {
        let prefix = format!("{KEY_PREFIX}{scope}:{name}:{key_source}:");
        FleetLimit {
            cache: RejectCache::new(settings.params.max_keys),
            fallback: Limiter::new(fallback_params(settings.params, expected_instances)),
            scope,
            name,
            key_source,
            prefix,
            settings: RwLock::new(settings),
            expected_instances,
            fallback_decisions,
        }
    }

    pub(super) fn settings(&self) -> Settings {
        *self.settings.read()
    }

    /// A reload re-rated the limit: same keys in Redis, new parameters from the next request
    /// on. Cached rejections were computed with the old ones, so they go.
    pub(super) fn set(&self, s: Settings) {
        let mut cur = self.settings.write();
        if *cur != s {
            *cur = s;
            self.cache.clear();
            self.fallback
                .set_params(fallback_params(s.params, self.expected_instances));
        }
    }

    /// This limit's Redis key for `key`.
    pub fn redis_key(&self, key: &FleetKey) -> String {
        let mut k = String::with_capacity(self.prefix.len() + 32);
        k.push_str(&self.prefix);
        key.push_hex(&mut k);
        k
    }

    /// Keys currently answered from the "rejected until" cache.
    pub fn cached_rejections(&self) -> usize {
        self.cache.len()
    }

    /// The parameters of the fallback limiter (for `/-/config` and tests).
    pub fn fallback_params(&self) -> Params {
        self.fallback.params()
    }
}
