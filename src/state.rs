//! What lives for the whole process, across reloads: the snapshot handle, metrics, in-flight
//! counts, readiness and the record of config loads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use pingora_limits::inflight::Inflight;

use crate::limits::Registry;
use crate::metrics::Metrics;
use crate::snapshot::{ProcessSettings, Snapshot};

/// The outcome of the last reload, for `/-/config`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadRecord {
    pub ok: bool,
    /// Every error, one `FILE:LINE:COL: error: MESSAGE` line each; empty on success.
    pub errors: Vec<String>,
    pub at: String,
}

#[derive(Debug, Clone)]
pub struct ConfigStatus {
    pub generation: u64,
    pub loaded_at: jiff::Timestamp,
    pub last_reload: Option<ReloadRecord>,
    /// Settings changed in the files that only take effect after a restart.
    pub needs_restart: Vec<String>,
    /// What the last successful reload changed, one line per change.
    pub last_changes: Vec<String>,
}

pub struct State {
    pub config_path: PathBuf,
    pub snapshot: ArcSwap<Snapshot>,
    /// The settings the process started with (listeners, threads): a reload cannot change them.
    pub process: ProcessSettings,
    pub metrics: Metrics,
    /// Requests in flight per route and per upstream, for `max_inflight`. Outside the snapshot
    /// so the counts stay right across a reload while old requests finish.
    pub inflight: Inflight,
    /// True once every public listener accepts connections.
    pub ready: AtomicBool,
    pub status: Mutex<ConfigStatus>,
    /// Per-key limiter state, kept across reloads by limit identity.
    pub limits: Registry,
    /// Campaign rates and unregistered tags seen.
    pub campaigns: crate::campaign::stats::Stats,
    /// Added to the wall clock for launch windows: tests move time without sleeping.
    pub wall_offset_ms: std::sync::atomic::AtomicI64,
    /// The CSP report endpoint's own limit, per client: reports are anyone's input.
    pub report_limiter: crate::limits::limiter::Limiter,
    pub report_hosts: crate::csp::report::HostLabels,
    /// Last time (ms) a violation was logged: one sample line per second at most.
    pub last_report_log: std::sync::atomic::AtomicU64,
    /// The incident console's history and start time.
    pub console: crate::console::Console,
}

/// Reports accepted per client: 10 per second with a burst of 50 (a page with many blocked
/// resources sends a burst at load).
pub const REPORT_RATE: crate::limits::limiter::Params = crate::limits::limiter::Params {
    rate_m: 10_000,
    burst_m: 50_000,
    delay_m: u64::MAX,
    max_keys: 10_000,
};

impl State {
    /// State for a snapshot that passed validation; binds its limits.
    pub fn new(config_path: PathBuf, mut snapshot: Snapshot) -> Arc<State> {
        let metrics = Metrics::new();
        let limits = Registry::default();
        limits.bind(&mut snapshot, &metrics);
        let campaigns = crate::campaign::stats::Stats::default();
        campaigns.bind(&mut snapshot.campaigns, &metrics);
        metrics.config_generation.set(1);
        let now = jiff::Timestamp::now();
        metrics
            .last_reload_success
            .set(now.as_millisecond() as f64 / 1000.0);
        Arc::new(State {
            config_path,
            process: snapshot.process.clone(),
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            inflight: Inflight::new(),
            ready: AtomicBool::new(false),
            status: Mutex::new(ConfigStatus {
                generation: 1,
                loaded_at: now,
                last_reload: None,
                needs_restart: Vec::new(),
                last_changes: Vec::new(),
            }),
            limits,
            campaigns,
            wall_offset_ms: std::sync::atomic::AtomicI64::new(0),
            report_limiter: crate::limits::limiter::Limiter::new(REPORT_RATE),
            report_hosts: Default::default(),
            last_report_log: Default::default(),
            console: Default::default(),
        })
    }

    /// The time launch windows are judged by.
    pub fn wall_now(&self) -> jiff::Timestamp {
        let offset = self
            .wall_offset_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        let now = jiff::Timestamp::now();
        now.checked_add(jiff::SignedDuration::from_millis(offset))
            .unwrap_or(now)
    }

    pub fn status(&self) -> ConfigStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
