//! What lives for the whole process, across reloads: the snapshot handle, metrics, in-flight
//! counts, readiness and the record of config loads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use pingora_limits::inflight::Inflight;

use crate::limits::Registry;
use crate::logging::Throttle;
use crate::metrics::Metrics;
use crate::snapshot::{self, Bindings, ProcessSettings, Snapshot, Spec};

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
    /// Every route's canary (its windows, rollback, freeze), kept across reloads.
    pub canaries: crate::canary::Registry,
    /// `[fleet]`: the Redis store of fleet limits, started with the process (a change of the
    /// section needs a restart).
    pub fleet: Option<crate::fleet::Fleet>,
    /// `[queues.NAME]`: the running queues (stores and delivery workers), kept across reloads.
    pub queues: Arc<crate::queue::Queues>,
    /// Where the fleet's and the queues' tasks run. Last: dropped after what runs on it.
    pub background: crate::background::Background,
    /// Added to the wall clock for launch windows: tests move time without sleeping.
    pub wall_offset_ms: std::sync::atomic::AtomicI64,
    /// The CSP report endpoint's own limit, per client: reports are anyone's input.
    pub report_limiter: crate::limits::limiter::Limiter,
    pub report_hosts: crate::csp::report::HostLabels,
    /// One sample line per second at most for violation reports.
    pub report_log: Throttle,
    /// The access log's writer, off the request path.
    pub access_log: crate::access_log::AccessLog,
    /// The incident console's history and start time.
    pub console: crate::console::Console,
}

/// Why the process state could not be set up (a queue's spool that cannot be opened, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateError(pub String);

/// Reports accepted per client: 10 per second with a burst of 50 (a page with many blocked
/// resources sends a burst at load).
pub const REPORT_RATE: crate::limits::limiter::Params = crate::limits::limiter::Params {
    rate_m: 10_000,
    burst_m: 50_000,
    delay_m: u64::MAX,
    max_keys: 10_000,
};

impl State {
    /// The state of a process whose config is `spec`; its snapshot is built here, its fleet
    /// store and queues started.
    pub fn new(config_path: PathBuf, spec: Spec) -> Result<Arc<State>, StateError> {
        let metrics = Metrics::new();
        let limits = Registry::default();
        let campaigns = crate::campaign::stats::Stats::default();
        let canaries = crate::canary::Registry::default();
        let background = crate::background::Background::start()
            .map_err(|e| StateError(format!("cannot start the background runtime: {e}")))?;
        let fleet = match spec.settings.fleet.clone() {
            Some(f) => {
                let opts = crate::fleet::FleetOptions {
                    durable_queues: spec.settings.queues.values().any(|q| q.store.is_redis()),
                    // Pingora's worker threads (one runtime each) live as long as the process.
                    worker_connections: true,
                    ..Default::default()
                };
                let _in = background.handle().enter();
                Some(
                    crate::fleet::Fleet::start(f, metrics.fleet.clone(), opts)
                        .map_err(|e| StateError(format!("the fleet store: {e}")))?,
                )
            }
            None => None,
        };
        let mut queues = crate::queue::Queues::new(
            Arc::new(crate::queue::PingoraSender::new()),
            Some(crate::queue::registry::QueueMetrics::of(&metrics)),
        );
        if let Some(f) = &fleet {
            queues = queues.with_redis_store(f.queue_stores(Default::default()));
        }
        let queues = Arc::new(queues);
        background
            .run(queues.apply(&spec.settings.queues))
            .map_err(|errors| StateError(errors.join("; ")))?;
        let snapshot = snapshot::build(
            spec,
            None,
            &Bindings {
                limits: &limits,
                campaigns: &campaigns,
                canaries: &canaries,
                fleet: fleet.as_ref(),
                metrics: &metrics,
            },
        );
        let access_log = crate::access_log::AccessLog::start(
            snapshot.access_log.clone(),
            metrics.access_log_dropped.clone(),
        );
        metrics.config_generation.set(1);
        let now = jiff::Timestamp::now();
        metrics
            .last_reload_success
            .set(now.as_millisecond() as f64 / 1000.0);
        Ok(Arc::new(State {
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
            canaries,
            fleet,
            queues,
            background,
            wall_offset_ms: std::sync::atomic::AtomicI64::new(0),
            report_limiter: crate::limits::limiter::Limiter::new(REPORT_RATE),
            report_hosts: Default::default(),
            report_log: Throttle::default(),
            access_log,
            console: Default::default(),
        }))
    }

    /// What a snapshot built for this process binds to.
    pub fn bindings(&self) -> Bindings<'_> {
        Bindings {
            limits: &self.limits,
            campaigns: &self.campaigns,
            canaries: &self.canaries,
            fleet: self.fleet(),
            metrics: &self.metrics,
        }
    }

    /// The fleet store, when `[fleet]` is configured and started.
    pub fn fleet(&self) -> Option<&crate::fleet::Fleet> {
        self.fleet.as_ref()
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
