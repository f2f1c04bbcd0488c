//! The whole live configuration as one immutable value, how it is built, and the handle requests
//! read it from.
//!
//! Config loading ([`crate::config::load`]) returns a [`Spec`]: every value checked and
//! compiled, nothing attached to runtime state. [`build`] turns a spec into the live
//! [`Snapshot`] in one step, binding each limit to its state in the limiter registry and each
//! launch to its request counter, and keeping unchanged upstream pools of the previous snapshot.
//! Start-up and every reload call it; a snapshot with unbound limits cannot be written down
//! (the route and campaign types say which stage they are at).
//!
//! Each request takes the snapshot once (in `new_ctx`) and keeps that `Arc` to its end, so every
//! phase of a request sees one consistent config and a reload is a single `store`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::campaign::stats::Stats;
use crate::campaign::{Campaigns, CampaignsSpec};
use crate::client_ip::TrustedProxies;
use crate::csp::CspConfig;
use crate::limits::registry::{BoundLimit, CAMPAIGN_SCOPE, Registry};
use crate::metrics::Metrics;
use crate::routing::{Route, RouteSpec};
use crate::upstream::Upstream;

/// Settings read once at start. A reload that changes them is reported as "needs restart".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    pub listen: Vec<SocketAddr>,
    /// TLS listeners (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls: Vec<TlsListener>,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub upgrade_sock: PathBuf,
    pub pid_file: PathBuf,
    pub grace_period: Duration,
    /// Header timeout, keep-alive timeout, header size bound.
    pub client: crate::client_limits::ClientLimits,
}

/// A `[[server.tls]]` listener. The certificate is loaded when the process starts; the digest
/// lets a reload notice that the files changed (which then needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub digest: String,
}

/// The sha256 of one loaded file, for `/-/config`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

/// What a spec and its snapshot share: the parts that hold no per-reload state.
#[derive(Debug)]
pub struct Settings {
    pub process: ProcessSettings,
    pub upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    pub trusted: TrustedProxies,
    pub csp: CspConfig,
    pub access_log: crate::access_log::Destination,
    /// If set, POST admin endpoints require `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    /// `[fleet]`: the Redis that fleet limits are decided in. Read at start (a change needs a
    /// restart, like the listeners).
    pub fleet: Option<crate::fleet::FleetSpec>,
    /// `[queues.NAME]`: specs only; the running queues (stores, workers) live in
    /// `crate::queue::Queues`, kept across reloads by name.
    pub queues: BTreeMap<Arc<str>, Arc<crate::queue::QueueSpec>>,
    pub files: Vec<FileDigest>,
    /// Warnings of the load that produced this config (shadowed routes and the like), as
    /// `FILE:LINE:COL: warning: MESSAGE` lines.
    pub warnings: Vec<String>,
}

/// A loaded config, checked and compiled, before it is bound to runtime state.
#[derive(Debug)]
pub struct Spec {
    pub settings: Settings,
    pub routes: Vec<RouteSpec>,
    pub campaigns: CampaignsSpec,
}

/// The live config. Its settings are reached through it (`snap.csp`, `snap.trusted`).
#[derive(Debug)]
pub struct Snapshot {
    pub settings: Settings,
    pub routes: Vec<Route>,
    pub campaigns: Campaigns,
}

impl std::ops::Deref for Snapshot {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

impl Snapshot {
    /// Every limit of this config with its state: the routes' and the campaigns'.
    pub fn limits(&self) -> impl Iterator<Item = &BoundLimit> {
        let c = &self.campaigns;
        self.routes
            .iter()
            .flat_map(|r| r.limits.iter())
            .chain(c.launches.iter().filter_map(|l| l.limit.as_ref()))
            .chain(c.unregistered.limit.as_ref())
    }
}

/// The runtime state a snapshot is bound to; it outlives every snapshot.
pub struct Bindings<'a> {
    pub limits: &'a Registry,
    pub campaigns: &'a Stats,
    pub canaries: &'a crate::canary::Registry,
    /// The fleet store, for `scope = "fleet"` limits; `None` without `[fleet]`.
    pub fleet: Option<&'a crate::fleet::Fleet>,
    pub metrics: &'a Metrics,
}

/// Build the live snapshot of `spec`. `previous` is the snapshot in force, if any: its upstream
/// pools are kept where their definition did not change (health state and round-robin position
/// with them), for routes, canaries and ingestion alike. Limiter state is kept by limit
/// identity and a canary's state (a rollback) while its table is unchanged; what `spec` no
/// longer has is forgotten.
pub fn build(spec: Spec, previous: Option<&Snapshot>, b: &Bindings<'_>) -> Snapshot {
    let Spec {
        mut settings,
        routes,
        mut campaigns,
    } = spec;
    if let Some(prev) = previous {
        carry_pools(prev, &mut settings.upstreams);
    }
    let pool = |u: &Arc<Upstream>| settings.upstreams.get(&u.name).unwrap_or(u).clone();
    let bind_limit = |scope: &Arc<str>, spec: crate::limits::LimitSpec| {
        let mut bound = b.limits.bind(scope, spec, b.metrics);
        if bound.spec.scope == crate::limits::Scope::Fleet {
            bound.fleet = b.fleet.map(|f| f.limit(scope, &bound.spec));
        }
        bound
    };
    campaigns.ingest = campaigns.ingest.as_ref().map(pool);
    let routes: Vec<Route> = routes
        .into_iter()
        .map(|r| {
            let scope = r.name.clone();
            let mut r = r.bind(
                |l| bind_limit(&scope, l),
                |mut c, name, path| {
                    c.upstream = pool(&c.upstream);
                    crate::canary::bind(b.canaries, name, path, c, &campaigns.launches, b.metrics)
                },
            );
            r.upstream = pool(&r.upstream);
            r
        })
        .collect();
    let canaried = routes
        .iter()
        .filter(|r| r.canary.is_some())
        .map(|r| r.name.clone())
        .collect();
    b.canaries.retain(&canaried, b.metrics);
    // Campaign limits count across routes; their metrics say route="campaign".
    let scope: Arc<str> = Arc::from(CAMPAIGN_SCOPE);
    let campaigns = campaigns.bind(
        |l| bind_limit(&scope, l),
        |launch| b.campaigns.counter(&launch.name),
    );
    let snap = Snapshot {
        settings,
        routes,
        campaigns,
    };
    b.limits.retain(snap.limits(), b.metrics);
    if let Some(f) = b.fleet {
        let live: Vec<_> = snap.limits().filter_map(|l| l.fleet.as_ref()).collect();
        f.retain_limits(&live);
    }
    b.campaigns.settle(&snap.campaigns, b.metrics);
    snap
}

/// Keep the previous pool object for every upstream whose definition did not change.
fn carry_pools(old: &Snapshot, upstreams: &mut BTreeMap<Arc<str>, Arc<Upstream>>) {
    for (name, up) in upstreams.iter_mut() {
        if let Some(prev) = old.upstreams.get(name)
            && prev.same_definition(up)
        {
            *up = prev.clone();
        }
    }
}

/// The one place the live snapshot is kept.
pub type Shared = Arc<ArcSwap<Snapshot>>;
