//! Fleet mode: limits that hold across every Seawall instance, decided in Redis.
//!
//! - [`Fleet`]: the Redis connection (redis-rs `ConnectionManager`), the up/down state, the
//!   decision call, the background task (probe, heartbeat);
//! - [`limit_req.lua`](script): nginx `limit_req` for all fleet limits of one request in one
//!   `EVALSHA`, on Redis's clock (`TIME`), with the local limiter's several-limits rule;
//! - [`cache`]: "rejected until T", so a key being limited costs no round trip;
//! - [`FleetLimit`]: one limit's key prefix, parameters, cache and local fallback limiter;
//! - [`instances`]: heartbeat keys and the list of live instances.
//!
//! ```text
//! decide(checks)           one call per request, for the route's fleet limits in order
//!   no check applies       -> all Skipped
//!   first applying limit's key cached as rejected -> Rejected (via Cache), no Redis
//!   store down (backoff)   -> on_store_error: local limiter at rate/N | Skipped | Unavailable
//!   EVALSHA within timeout -> verdicts (via Redis); a reject fills the cache
//!   error                  -> store down (one log line), this request takes on_store_error
//!   timeout                -> this request takes on_store_error; the store goes down only
//!                             when timeouts go on for 4 timeouts' worth with no answer (late)
//! background, every 250 ms while down: PING, SCRIPT LOAD, CONFIG GET appendonly appendfsync
//!   -> up (one log line); every 1 s while up: heartbeat, instance count
//! ```
//!
//! Redis's clock, never the proxies': instances whose clocks disagree still share one limit
//! (Traefik's and spring-cloud-gateway's skew bugs). Redis 7 replicates a script's effects,
//! so reading `TIME` and then writing is allowed.

mod cache;
pub mod compose;
mod health;
pub mod instances;
mod key;
mod late;
mod limit;
mod metrics;
pub mod queue_store;
mod script;
mod spec;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::watch;

pub use cache::safe_until;
pub use compose::{Unavailable, decide_limits};
pub use instances::Instance;
pub use key::FleetKey;
pub use limit::{FleetLimit, KEY_PREFIX};
pub use metrics::FleetMetrics;
pub use spec::{DEFAULT_EXPECTED_INSTANCES, DEFAULT_TIMEOUT, FleetSpec, OnStoreError};

use crate::limits::LimitSpec;
use crate::limits::limiter::{Check, Clock, Decision, MonotonicClock, Params, Verdict, decide};
use limit::Settings;
use script::Answer;

/// `Retry-After` of a request refused because Redis is unreachable (`on_store_error =
/// "closed"`): the store is probed every [`FleetOptions::probe`], so a second is a fair guess.
pub const CLOSED_RETRY_AFTER_S: u64 = 1;

/// Knobs that are not in the config file.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Answer keys Redis blocked from the local "rejected until" cache.
    pub reject_cache: bool,
    /// How often the instance heartbeat is refreshed while Redis is up.
    pub heartbeat: Duration,
    /// How often an unreachable Redis is tried again: the backoff after a failure.
    pub probe: Duration,
    /// A fleet queue promises durability: warn when Redis's `appendfsync` cannot keep it.
    pub durable_queues: bool,
    /// A request on a single-threaded runtime (each of Pingora's worker threads runs one)
    /// decides its fleet limits on a connection of that thread's own, whose I/O that thread
    /// drives: no wake-up of the background thread and back on every decision. Only for a
    /// process whose worker threads live as long as the fleet (the real server): a connection
    /// made on a runtime that is dropped while its thread goes on would be dead.
    pub worker_connections: bool,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            reject_cache: true,
            heartbeat: Duration::from_secs(1),
            probe: Duration::from_millis(250),
            durable_queues: false,
            worker_connections: false,
        }
    }
}

/// One fleet limit's part in a request's decision.
#[derive(Debug, Clone, Copy)]
pub struct FleetCheck<'a> {
    pub limit: &'a FleetLimit,
    /// `None`: absent key or exempt client; the limit does not apply.
    pub key: Option<FleetKey>,
}

/// Who decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// No fleet limit applied to the request.
    NotApplied,
    /// The script, at Redis time `now_ms` (ms since the Unix epoch).
    Redis { now_ms: u64 },
    /// The "rejected until" cache: what Redis would have answered.
    Cache,
    /// Redis unreachable: `on_store_error`.
    Fallback(OnStoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetAnswer {
    /// Apply as a local decision: one verdict per check, in order.
    Decided { decision: Decision, via: Via },
    /// `on_store_error = "closed"` and Redis unreachable: answer 503 with `Retry-After`.
    Unavailable { retry_after_s: u64 },
}

#[derive(Debug)]
pub struct FleetError(pub String);

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FleetError {}

type LimitId = (Arc<str>, Arc<str>, String);

struct Inner {
    spec: FleetSpec,
    opts: FleetOptions,
    instance: String,
    started_ms: u64,
    conn: ConnectionManager,
    /// For [`Inner::request_conn`]'s connections, one per worker thread.
    client: redis::Client,
    config: ConnectionManagerConfig,
    up: AtomicBool,
    /// A "down" line was logged and no "up" line since: transitions log once, not per request.
    logged_down: AtomicBool,
    metrics: FleetMetrics,
    /// `CONFIG GET appendonly appendfsync` at the last (re)connect.
    persistence: Mutex<Option<Result<(String, String), String>>>,
    /// Why the store last went down (for `/-/status` and tests).
    last_error: Mutex<Option<String>>,
    /// A fleet queue runs on this store (set at start, or when a reload adds one): the
    /// persistence check on every (re)connect warns when its durability cannot hold.
    durable_queues: AtomicBool,
    /// The queue consumers whose instance heartbeat was live at the last beat.
    live: Arc<instances::LiveConsumers>,
    /// The process is exiting and has left the instance list: no more heartbeats.
    left: AtomicBool,
    /// Wakes the background task when a request finds the store down, so the probe starts
    /// after one backoff rather than after the heartbeat's sleep.
    went_down: tokio::sync::Notify,
    limits: Mutex<HashMap<LimitId, Arc<FleetLimit>>>,
    late: late::LateAnswers,
}

/// The fleet store of one Seawall instance. Dropping it stops the background task, which
/// removes this instance's heartbeat.
pub struct Fleet {
    inner: Arc<Inner>,
    _stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("spec", &self.inner.spec)
            .field("instance", &self.inner.instance)
            .field("up", &self.is_up())
            .finish()
    }
}

fn client(spec: &FleetSpec) -> redis::RedisResult<redis::Client> {
    let mut info = spec.redis.as_str().into_connection_info()?;
    if let Some(pw) = &spec.password {
        let r = info.redis_settings().clone().set_password(pw);
        info = info.set_redis_settings(r);
    }
    match &spec.ca_pem {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        ),
        None => redis::Client::open(info),
    }
}

/// The host name, for `instance = ""`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("seawall-{}", std::process::id()))
}

impl Fleet {
    /// Set up the connection and start the background task on the current Tokio runtime,
    /// which must outlive the fleet (its connection's I/O runs there). Never waits for Redis:
    /// the store starts down and comes up when the first probe answers ([`Fleet::wait_up`]).
    pub fn start(
        spec: FleetSpec,
        metrics: FleetMetrics,
        opts: FleetOptions,
    ) -> Result<Fleet, FleetError> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| FleetError("the fleet store needs a Tokio runtime to run on".into()))?;
        let client = client(&spec).map_err(|e| FleetError(format!("Redis client: {e}")))?;
        // redis-rs's own default response timeout is 500 ms: far too long on the request path.
        // Each command gets `timeout`; reconnects are quick and few, the probe retries anyway.
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(spec.timeout))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())
            .map_err(|e| FleetError(format!("Redis connection: {e}")))?;
        metrics.store_up.set(0);
        let instance = spec.instance.clone().unwrap_or_else(host_name);
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let durable_queues = AtomicBool::new(opts.durable_queues);
        let inner = Arc::new(Inner {
            spec,
            opts,
            instance,
            started_ms,
            conn,
            client,
            config,
            up: AtomicBool::new(false),
            logged_down: AtomicBool::new(false),
            metrics,
            persistence: Mutex::new(None),
            last_error: Mutex::new(None),
            durable_queues,
            live: Arc::default(),
            left: AtomicBool::new(false),
            went_down: tokio::sync::Notify::new(),
            limits: Mutex::new(HashMap::new()),
            late: late::LateAnswers::new(),
        });
        let (stop, stopped) = watch::channel(false);
        runtime.spawn(health::run(inner.clone(), stopped));
        Ok(Fleet { inner, _stop: stop })
    }

    pub fn spec(&self) -> &FleetSpec {
        &self.inner.spec
    }

    /// This instance's name in the heartbeat list.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Fleet limits are being decided in Redis (not `on_store_error`).
    pub fn is_up(&self) -> bool {
        self.inner.up.load(Ordering::Acquire)
    }

    /// Wait until Redis answered a probe, at most `within`. For start-up logs and tests; the
    /// proxy needs no such wait (fleet limits apply `on_store_error` meanwhile).
    pub async fn wait_up(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while !self.is_up() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// The state of one fleet limit, kept across reloads by identity (scope, name, key source)
    /// like the local registry's. Call at each bind, for every `scope = "fleet"` limit.
    pub fn limit(&self, scope: &str, spec: &LimitSpec) -> Arc<FleetLimit> {
        let settings = Settings {
            params: Params::from_spec(spec),
            dry_run: spec.dry_run,
        };
        let id: LimitId = (Arc::from(scope), spec.name.clone(), spec.key.to_string());
        let mut map = self.inner.limits.lock();
        if let Some(l) = map.get(&id) {
            l.set(settings);
            return l.clone();
        }
        let counter = self
            .inner
            .metrics
            .fallback_decisions
            .with_label_values(&[scope, spec.name.as_ref()]);
        let l = Arc::new(FleetLimit::new(
            id.0.clone(),
            id.1.clone(),
            id.2.clone(),
            settings,
            self.inner.spec.expected_instances.get(),
            counter,
        ));
        map.insert(id, l.clone());
        l
    }

    /// After a bind: forget fleet limits the new config no longer has (their Redis state
    /// expires by itself).
    pub fn retain_limits(&self, live: &[&Arc<FleetLimit>]) {
        self.inner
            .limits
            .lock()
            .retain(|_, l| live.iter().any(|k| Arc::ptr_eq(k, l)));
    }

    /// Decide a request's fleet limits, in order, in one round trip (or none: cache, backoff).
    pub async fn decide(&self, checks: &[FleetCheck<'_>]) -> FleetAnswer {
        let slots: Vec<usize> = (0..checks.len())
            .filter(|i| checks[*i].key.is_some())
            .collect();
        let Some(&first) = slots.first() else {
            return FleetAnswer::Decided {
                decision: skipped(checks.len()),
                via: Via::NotApplied,
            };
        };
        if let Some(d) = self.cached(checks, first) {
            return FleetAnswer::Decided {
                decision: d,
                via: Via::Cache,
            };
        }
        if !self.is_up() {
            return self.fallback(checks, &slots);
        }
        let (conn, on_worker) = self.inner.request_conn();
        let mut asked = self.ask_redis(checks, &slots, conn).await;
        if on_worker && matches!(asked, Err(Failed::Error(_))) {
            // This thread's connection broke (Redis restarted, say) while the shared one may
            // be fine: make a new one next time, and ask once more on the shared connection
            // rather than take the whole store down for this thread's socket.
            self.inner.forget_worker_conn();
            asked = self
                .ask_redis(checks, &slots, self.inner.conn.clone())
                .await;
        }
        match asked {
            Ok(a) => a,
            Err(Failed::Late { sent, error }) => {
                let timeout = self.inner.spec.timeout;
                if self.inner.late.timed_out(sent, Instant::now(), timeout) {
                    self.inner.mark_down(&error);
                }
                self.fallback(checks, &slots)
            }
            Err(Failed::Error(e)) => {
                self.inner.mark_down(&e);
                self.fallback(checks, &slots)
            }
        }
    }

    /// The first applying limit's key is known to be rejected: what Redis would answer
    /// (that limit rejects, nothing is charged, later limits are not reached).
    fn cached(&self, checks: &[FleetCheck<'_>], first: usize) -> Option<Decision> {
        let c = &checks[first];
        let s = c.limit.settings();
        if !self.inner.opts.reject_cache || s.dry_run {
            return None;
        }
        let retry_after_ms = c.limit.cache.get(c.key?.as_u128(), Instant::now())?;
        let mut d = skipped(checks.len());
        d.verdicts[first] = Verdict::Rejected {
            excess: s.params.burst_m + (retry_after_ms * s.params.rate_m).div_ceil(1000),
            retry_after_ms,
        };
        for v in &mut d.verdicts[first + 1..] {
            *v = Verdict::NotReached;
        }
        d.rejected = Some(first);
        Some(d)
    }

    async fn ask_redis(
        &self,
        checks: &[FleetCheck<'_>],
        slots: &[usize],
        mut conn: ConnectionManager,
    ) -> Result<FleetAnswer, Failed> {
        let settings: Vec<(Params, bool)> = slots
            .iter()
            .map(|&i| {
                let s = checks[i].limit.settings();
                (s.params, s.dry_run)
            })
            .collect();
        let mut inv = script::script().prepare_invoke();
        for (&i, (p, dry_run)) in slots.iter().zip(&settings) {
            let c = &checks[i];
            if let Some(k) = &c.key {
                inv.key(c.limit.redis_key(k));
            }
            inv.arg(p.rate_m).arg(p.burst_m).arg(u8::from(*dry_run));
        }
        let timeout = self.inner.spec.timeout;
        let sent = Instant::now();
        let reply = tokio::time::timeout(timeout, inv.invoke_async::<Vec<i64>>(&mut conn)).await;
        self.inner
            .metrics
            .store_duration
            .observe(sent.elapsed().as_secs_f64());
        let reply = match reply {
            Ok(Ok(r)) => r,
            // redis-rs's own response timeout (the same `timeout`) can fire first, and its
            // error does not always say "timeout" (seen: "timed out"): an error that came at
            // the budget's end is a late answer, one that came before it is a real error.
            Ok(Err(e)) if !e.is_timeout() && sent.elapsed() < timeout => {
                return Err(Failed::Error(e.to_string()));
            }
            _ => {
                return Err(Failed::Late {
                    sent,
                    error: format!("no answer within the timeout ({timeout:?})"),
                });
            }
        };
        self.inner.late.answered();
        let (now_ms, answers) = script::parse(&reply, slots.len()).map_err(Failed::Error)?;
        if self.inner.opts.reject_cache {
            for (a, &i) in answers.iter().zip(slots) {
                if let (Answer::Rejected { blocked_ms, .. }, Some(k)) = (a, &checks[i].key) {
                    checks[i].limit.cache.insert(k.as_u128(), sent, *blocked_ms);
                }
            }
        }
        Ok(FleetAnswer::Decided {
            decision: script::decision(&answers, slots, &settings, checks.len()),
            via: Via::Redis { now_ms },
        })
    }

    fn fallback(&self, checks: &[FleetCheck<'_>], slots: &[usize]) -> FleetAnswer {
        for &i in slots {
            checks[i].limit.fallback_decisions.inc();
        }
        let mode = self.inner.spec.on_store_error;
        match mode {
            OnStoreError::Local => {
                let local: Vec<Check<'_>> = checks
                    .iter()
                    .map(|c| Check {
                        limiter: &c.limit.fallback,
                        key: c.key.map(|k| k.local()),
                        dry_run: c.limit.settings().dry_run,
                    })
                    .collect();
                FleetAnswer::Decided {
                    decision: decide(&local, MonotonicClock.now_ms()),
                    via: Via::Fallback(mode),
                }
            }
            OnStoreError::Open => FleetAnswer::Decided {
                decision: skipped(checks.len()),
                via: Via::Fallback(mode),
            },
            OnStoreError::Closed => FleetAnswer::Unavailable {
                retry_after_s: CLOSED_RETRY_AFTER_S,
            },
        }
    }

    /// Redis's persistence at the last (re)connect, as `(appendonly, appendfsync)`; `None`
    /// before the first connect; `Err` when Redis refused `CONFIG GET` (managed Redis often
    /// does).
    pub fn persistence(&self) -> Option<Result<(String, String), String>> {
        self.inner.persistence.lock().clone()
    }

    /// What to log when a fleet queue's promise ("accepted" = on disk) cannot hold on this
    /// Redis: anything but `appendonly yes` + `appendfsync always`. `None`: it holds, or Redis
    /// has not been reached yet (the background task logs it on connect when
    /// [`FleetOptions::durable_queues`] is set).
    pub fn durability_warning(&self) -> Option<String> {
        health::durability_warning(self.persistence()?)
    }

    /// Why Redis was last found unreachable, if it ever was.
    pub fn last_error(&self) -> Option<String> {
        self.inner.last_error.lock().clone()
    }

    /// This process's consumer name in every fleet queue's group: the instance name and its
    /// start time, so an instance restarted under the same name is a new consumer and what its
    /// previous life left pending is taken over at once (see [`instances::LiveConsumers`]).
    pub fn consumer(&self) -> String {
        instances::consumer(&self.inner.instance, self.inner.started_ms)
    }

    /// Leave the instance list now and beat no more (a graceful exit, after the queues
    /// stopped): the other instances take this one's fleet-queue entries over after
    /// [`DEAD_GRACE`](queue_store::DEAD_GRACE) instead of waiting for the heartbeat to expire.
    pub async fn leave(&self) {
        self.inner.left.store(true, Ordering::Release);
        let _ = tokio::time::timeout(Duration::from_secs(1), instances::leave(&self.inner)).await;
    }

    /// The instances whose heartbeat is live, this one included.
    pub async fn instances(&self) -> Result<Vec<Instance>, FleetError> {
        instances::list(&self.inner.conn)
            .await
            .map_err(|e| FleetError(e.to_string()))
    }
}

/// Why a round trip gave no decision.
enum Failed {
    /// No answer within `timeout` (see [`late`]: not by itself an outage).
    Late { sent: Instant, error: String },
    /// Refused, reset, an error reply, an answer the script cannot have given.
    Error(String),
}

fn skipped(n: usize) -> Decision {
    Decision {
        verdicts: vec![Verdict::Skipped; n],
        rejected: None,
        delay_ms: 0,
    }
}

thread_local! {
    /// This thread's own connection to each fleet store it decided on ([`Inner::request_conn`]).
    static WORKER_CONNS: std::cell::RefCell<Vec<(std::sync::Weak<Inner>, ConnectionManager)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Inner {
    /// The connection a request's round trip goes on: with
    /// [`FleetOptions::worker_connections`], on a single-threaded runtime, this thread's own
    /// (made on first use, lazily: it connects in the background like the shared one);
    /// otherwise the shared one, whose I/O the background runtime drives. `true` with this
    /// thread's own.
    fn request_conn(self: &Arc<Self>) -> (ConnectionManager, bool) {
        let on_worker = self.opts.worker_connections
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        if !on_worker {
            return (self.conn.clone(), false);
        }
        WORKER_CONNS.with(|conns| {
            let mut conns = conns.borrow_mut();
            if let Some((_, c)) = conns
                .iter()
                .find(|(store, _)| std::ptr::eq(store.as_ptr(), Arc::as_ptr(self)))
            {
                return (c.clone(), true);
            }
            match ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone())
            {
                Ok(c) => {
                    // Stores since dropped (a test's, say) go when a new one comes, not on
                    // every request.
                    conns.retain(|(store, _)| store.strong_count() > 0);
                    conns.push((Arc::downgrade(self), c.clone()));
                    (c, true)
                }
                Err(_) => (self.conn.clone(), false),
            }
        })
    }

    /// Drop this thread's connection to this store: the next round trip makes a new one.
    fn forget_worker_conn(self: &Arc<Self>) {
        WORKER_CONNS.with(|conns| {
            conns
                .borrow_mut()
                .retain(|(store, _)| !std::ptr::eq(store.as_ptr(), Arc::as_ptr(self)));
        });
    }

    /// A fleet queue now runs on this store: from here on every (re)connect checks Redis's
    /// persistence for it; when the store is up already, the check's last answer is logged now.
    fn serve_durable_queue(&self) {
        if !self.durable_queues.swap(true, Ordering::AcqRel)
            && let Some(w) = self
                .persistence
                .lock()
                .clone()
                .and_then(health::durability_warning)
        {
            tracing::warn!(redis = %self.spec.redis, "{w}");
        }
    }

    fn mark_down(&self, error: &str) {
        *self.last_error.lock() = Some(error.to_string());
        if self.up.swap(false, Ordering::AcqRel) {
            self.went_down.notify_one();
        }
        self.metrics.store_up.set(0);
        if !self.logged_down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                redis = %self.spec.redis,
                error,
                on_store_error = self.spec.on_store_error.label(),
                "fleet store down: fleet limits apply on_store_error until Redis answers again"
            );
        }
    }

    fn mark_up(&self) {
        self.late.reset();
        self.metrics.store_up.set(1);
        let was_down = self.logged_down.swap(false, Ordering::AcqRel);
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(
                redis = %self.spec.redis,
                instance = %self.instance,
                again = was_down,
                "fleet store up: fleet limits are decided in Redis"
            );
        }
    }
}
