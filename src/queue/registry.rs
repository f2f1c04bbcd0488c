//! The running queues, kept across reloads by name (like the limiter registry): the accept
//! entry point, the reload rules, pause/resume/redrive and the admin JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use prometheus::IntCounter;
use serde_json::{Value, json};

use super::deliver::Sender;
use super::record::Lead;
use super::spec::{LiveSettings, QueueSpec, StoreKind};
use super::spool::{Spool, SpoolOptions};
use super::store::{Accepted, AppendLimits, Refusal, Store};
use super::worker::{Control, DeliveryCounters, Worker};
use super::{SystemClock, WallClock, new_receipt};
use crate::metrics::Metrics;

/// The queue metric families (CONFIG.md), cloned out of the instance's [`Metrics`].
#[derive(Clone)]
pub struct QueueMetrics {
    pub depth: prometheus::IntGaugeVec,
    pub bytes: prometheus::IntGaugeVec,
    pub oldest_age: prometheus::GaugeVec,
    pub pace: prometheus::GaugeVec,
    pub accepted: prometheus::IntCounterVec,
    pub refused: prometheus::IntCounterVec,
    pub deliveries: prometheus::IntCounterVec,
}

impl QueueMetrics {
    pub fn of(m: &Metrics) -> QueueMetrics {
        QueueMetrics {
            depth: m.queue_depth.clone(),
            bytes: m.queue_bytes.clone(),
            oldest_age: m.queue_oldest_age.clone(),
            pace: m.queue_pace.clone(),
            accepted: m.queue_accepted.clone(),
            refused: m.queue_refused.clone(),
            deliveries: m.queue_deliveries.clone(),
        }
    }
}

/// Builds the store of a `store = "redis"` queue (the fleet module provides it).
pub type StoreFactory = dyn Fn(&QueueSpec) -> Result<Arc<dyn Store>, String> + Send + Sync;

/// One running queue.
pub struct QueueHandle {
    pub name: Arc<str>,
    /// What the store is: a reload may not change it while the queue holds anything.
    pub kind: StoreKind,
    store: Arc<dyn Store>,
    live: Arc<ArcSwap<LiveSettings>>,
    control: Arc<Control>,
    clock: Arc<dyn WallClock>,
    accepted: IntCounter,
    refused: [IntCounter; 3],
    /// One "store failed" line a second at most: an outage refuses every lead.
    refusal_log: crate::logging::Throttle,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// An admin action that could not be done: 404 for an unknown queue, 500 for a store error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("no queue named {0:?}")]
    UnknownQueue(String),
    #[error("{0}")]
    Store(String),
}

impl QueueHandle {
    /// Store a lead and answer once it is durable. `receipt` and `accepted_at_ms` are set here
    /// (the caller leaves them empty). On `Ok` answer the spec's `accepted` with
    /// `X-Seawall-Receipt: receipt`; on `Err` see [`Refusal`].
    pub async fn accept(&self, mut lead: Lead) -> Result<Accepted, Refusal> {
        let live = self.live.load();
        lead.accepted_at_ms = self.clock.now_ms();
        lead.receipt = new_receipt(lead.accepted_at_ms);
        let limits = AppendLimits {
            max_body: live.max_body,
            max_bytes: live.max_bytes,
            idempotency_ms: live.max_age.as_millis() as u64,
        };
        drop(live);
        let r = self.store.append(lead, limits).await;
        match &r {
            Ok(a) => {
                if !a.duplicate {
                    self.accepted.inc();
                    self.control.wake.notify_one();
                }
            }
            Err(refusal) => self.count_refusal(refusal),
        }
        r
    }

    /// Count a refusal the caller decided itself (a `Content-Length` above `max_body`, seen
    /// before the body was read): `seawall_queue_refused_total{reason}`.
    pub fn count_refusal(&self, r: &Refusal) {
        match r {
            Refusal::Full => self.refused[0].inc(),
            Refusal::TooLarge => self.refused[1].inc(),
            Refusal::StoreError(e) => {
                if let Some(left_out) = self.refusal_log.allow(self.clock.now_ms(), 1000) {
                    tracing::error!(queue = %self.name, error = %e, left_out,
                        "lead refused: the store failed (the client got 503)");
                }
                self.refused[2].inc();
            }
        }
    }

    /// The settings in force (the `accepted` answer, `max_body` for an early 413).
    pub fn settings(&self) -> Arc<LiveSettings> {
        self.live.load_full()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn pause(&self) {
        self.control.paused.store(true, Ordering::SeqCst);
        self.control.wake.notify_one();
        tracing::info!(queue = %self.name, "queue delivery paused (accepting goes on)");
    }

    pub fn resume(&self) {
        self.control.paused.store(false, Ordering::SeqCst);
        self.control.wake.notify_one();
        tracing::info!(queue = %self.name, "queue delivery resumed");
    }

    pub fn paused(&self) -> bool {
        self.control.paused.load(Ordering::SeqCst)
    }

    pub async fn redrive(&self) -> Result<u64, AdminError> {
        let n = self
            .store
            .redrive(self.clock.now_ms())
            .await
            .map_err(|e| AdminError::Store(e.0))?;
        self.control.wake.notify_one();
        tracing::info!(queue = %self.name, entries = n, "dead letters redriven");
        Ok(n)
    }

    /// `GET /-/queues` for this queue.
    pub fn status(&self) -> Value {
        let s = self.store.stats();
        let live = self.live.load();
        let now = self.clock.now_ms();
        let (store, path) = match &self.kind {
            StoreKind::Spool { path } => ("spool", Some(path.display().to_string())),
            StoreKind::Redis => ("redis", None),
        };
        json!({
            "name": &*self.name,
            "store": store,
            "path": path,
            "deliver_to": &*live.deliver_to.name,
            "depth": s.depth,
            "bytes": s.bytes,
            "max_bytes": live.max_bytes,
            "oldest_age_seconds": s.oldest_ms.map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            "rate_rps": live.rate_mrps as f64 / 1000.0,
            "pace_rps": self.control.pace_mrps.load(Ordering::Relaxed) as f64 / 1000.0,
            "backing_off": self.control.backing_off.load(Ordering::Relaxed),
            "paused": self.paused(),
            "in_flight": self.control.in_flight.load(Ordering::Relaxed),
            "max_inflight": live.max_inflight,
            "dead_letters": s.dead,
        })
    }

    /// `GET /-/queues/NAME/dead`: newest first; bodies (personal data) only when asked.
    pub async fn dead_json(&self, limit: usize, with_body: bool) -> Result<Value, AdminError> {
        let dead = self
            .store
            .dead_letters(limit, with_body)
            .await
            .map_err(|e| AdminError::Store(e.0))?;
        let items: Vec<Value> = dead
            .into_iter()
            .map(|d| {
                let mut v = json!({
                    "receipt": d.receipt,
                    "attempts": d.attempts,
                    "last": d.last,
                    "accepted_at": super::rfc3339_ms(d.accepted_at_ms),
                    "died_at": super::rfc3339_ms(d.died_at_ms),
                    "campaign": d.campaign,
                    "method": d.method,
                    "path": d.path,
                });
                if let Some(b) = d.body {
                    v["body"] = Value::String(String::from_utf8_lossy(&b).into_owned());
                }
                v
            })
            .collect();
        Ok(json!({ "queue": &*self.name, "dead_letters": items }))
    }

    async fn stop(&self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.control.wake.notify_one();
        let w = self.worker.lock().take();
        if let Some(w) = w {
            let _ = w.await;
        }
    }
}

/// Every running queue, by name.
pub struct Queues {
    map: Mutex<BTreeMap<Arc<str>, Arc<QueueHandle>>>,
    sender: Arc<dyn Sender>,
    clock: Arc<dyn WallClock>,
    metrics: Option<QueueMetrics>,
    spool_options: SpoolOptions,
    redis: Option<Box<StoreFactory>>,
}

impl Queues {
    pub fn new(sender: Arc<dyn Sender>, metrics: Option<QueueMetrics>) -> Queues {
        Queues {
            map: Mutex::new(BTreeMap::new()),
            sender,
            clock: Arc::new(SystemClock),
            metrics,
            spool_options: SpoolOptions::default(),
            redis: None,
        }
    }

    pub fn with_clock(mut self, clock: Arc<dyn WallClock>) -> Queues {
        self.clock = clock;
        self
    }

    pub fn with_spool_options(mut self, o: SpoolOptions) -> Queues {
        self.spool_options = o;
        self
    }

    /// How `store = "redis"` queues get their store.
    pub fn with_redis_store(mut self, f: Box<StoreFactory>) -> Queues {
        self.redis = Some(f);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<QueueHandle>> {
        self.map.lock().get(name).cloned()
    }

    pub fn names(&self) -> Vec<Arc<str>> {
        self.map.lock().keys().cloned().collect()
    }

    /// The reload errors of a new config against the running queues, one message each
    /// (naming the queue and what it holds). Empty = the new config may be applied.
    pub fn check_reload(&self, new: &BTreeMap<Arc<str>, Arc<QueueSpec>>) -> Vec<String> {
        let mut errors = Vec::new();
        for (name, q) in self.map.lock().iter() {
            let s = q.store.stats();
            let holds = s.depth + s.dead;
            let what = format!("{} entries and {} dead letters", s.depth, s.dead);
            match new.get(name) {
                None if holds > 0 => errors.push(format!(
                    "queue {name:?} was removed but still holds {what}: keep it until it is \
                     drained (and its dead letters handled)"
                )),
                Some(spec) if spec.store != q.kind && holds > 0 => errors.push(format!(
                    "queue {name:?}: its store or path changed ({} -> {}) while it holds {what}: \
                     drain it first, or keep the old path",
                    describe(&q.kind),
                    describe(&spec.store)
                )),
                _ => {}
            }
        }
        errors
    }

    /// Make the running queues what `specs` says: new ones opened and started, kept ones given
    /// their new live settings, removed (empty) ones stopped. Call [`Queues::check_reload`]
    /// first; this re-checks and refuses the same errors. Must run inside a Tokio runtime (the
    /// workers are spawned on it). A queue whose store cannot be opened is an error here too.
    pub async fn apply(
        &self,
        specs: &BTreeMap<Arc<str>, Arc<QueueSpec>>,
    ) -> Result<(), Vec<String>> {
        let errors = self.check_reload(specs);
        if !errors.is_empty() {
            return Err(errors);
        }
        // Open every new store first: if one cannot be opened nothing changes (the old config
        // stays whole), and the stores opened so far are closed again when dropped.
        let mut opened = Vec::new();
        let mut errors = Vec::new();
        for (name, spec) in specs {
            if self.get(name).is_some_and(|q| q.kind == spec.store) {
                continue;
            }
            match self.open(spec) {
                Ok(store) => opened.push((name.clone(), spec.clone(), store)),
                Err(e) => errors.push(format!("queue {name:?}: {e}")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        for (name, spec) in specs {
            if let Some(q) = self.get(name).filter(|q| q.kind == spec.store) {
                let live = Arc::new(spec.live());
                q.store.update(&live);
                q.live.store(live);
                q.control.wake.notify_one();
            }
        }
        let removed: Vec<Arc<QueueHandle>> = {
            let map = self.map.lock();
            map.iter()
                .filter(|(n, q)| specs.get(*n).is_none_or(|s| s.store != q.kind))
                .map(|(_, q)| q.clone())
                .collect()
        };
        for q in removed {
            q.stop().await;
            self.map.lock().remove(&q.name);
            if let Some(m) = &self.metrics
                && !specs.contains_key(&q.name)
            {
                let n: &str = &q.name;
                let _ = m.depth.remove_label_values(&[n]);
                let _ = m.bytes.remove_label_values(&[n]);
                let _ = m.oldest_age.remove_label_values(&[n]);
                let _ = m.pace.remove_label_values(&[n]);
            }
        }
        for (name, spec, store) in opened {
            let h = self.start(&name, &spec, store);
            self.map.lock().insert(name, h);
        }
        Ok(())
    }

    fn open(&self, spec: &QueueSpec) -> Result<Arc<dyn Store>, String> {
        match &spec.store {
            StoreKind::Spool { path } => Spool::open(path, self.spool_options)
                .map(|s| Arc::new(s) as Arc<dyn Store>)
                .map_err(|e| e.0),
            StoreKind::Redis => match &self.redis {
                Some(f) => f(spec),
                None => Err("store = \"redis\" is not available in this build".into()),
            },
        }
    }

    fn start(&self, name: &Arc<str>, spec: &QueueSpec, store: Arc<dyn Store>) -> Arc<QueueHandle> {
        let counter = |family: Option<&prometheus::IntCounterVec>, labels: &[&str]| match family {
            Some(f) => f.with_label_values(labels),
            None => IntCounter::new("unregistered", "not exported").expect("static metric"),
        };
        let m = self.metrics.as_ref();
        let n: &str = name;
        let accepted = counter(m.map(|m| &m.accepted), &[n]);
        let refused =
            ["full", "too_large", "store_error"].map(|r| counter(m.map(|m| &m.refused), &[n, r]));
        let counters = DeliveryCounters {
            delivered: counter(m.map(|m| &m.deliveries), &[n, "delivered"]),
            retry: counter(m.map(|m| &m.deliveries), &[n, "retry"]),
            dead: counter(m.map(|m| &m.deliveries), &[n, "dead"]),
        };
        let live = Arc::new(ArcSwap::from_pointee(spec.live()));
        let control = Arc::new(Control::default());
        let worker = Worker {
            name: name.clone(),
            store: store.clone(),
            sender: self.sender.clone(),
            live: live.clone(),
            control: control.clone(),
            clock: self.clock.clone(),
            counters,
        };
        let task = tokio::spawn(worker.run());
        Arc::new(QueueHandle {
            name: name.clone(),
            kind: spec.store.clone(),
            store,
            live,
            control,
            clock: self.clock.clone(),
            accepted,
            refused,
            refusal_log: Default::default(),
            worker: Mutex::new(Some(task)),
        })
    }

    /// Stop every worker and close every store (process shutdown, tests).
    pub async fn shutdown(&self) {
        let all: Vec<_> = std::mem::take(&mut *self.map.lock())
            .into_values()
            .collect();
        for q in all {
            q.stop().await;
        }
    }

    /// `GET /-/queues`.
    pub fn status_json(&self) -> Value {
        let queues: Vec<Value> = self.map.lock().values().map(|q| q.status()).collect();
        json!({ "queues": queues })
    }

    fn handle(&self, name: &str) -> Result<Arc<QueueHandle>, AdminError> {
        self.get(name)
            .ok_or_else(|| AdminError::UnknownQueue(name.to_string()))
    }

    /// `GET /-/queues/NAME/dead` (`?body=1` -> `with_body`); at most 1000, newest first.
    pub async fn dead_json(&self, name: &str, with_body: bool) -> Result<Value, AdminError> {
        self.handle(name)?.dead_json(1000, with_body).await
    }

    /// `POST /-/queues/NAME/pause`.
    pub fn pause(&self, name: &str) -> Result<Value, AdminError> {
        let q = self.handle(name)?;
        q.pause();
        Ok(json!({ "queue": name, "paused": true }))
    }

    /// `POST /-/queues/NAME/resume`.
    pub fn resume(&self, name: &str) -> Result<Value, AdminError> {
        let q = self.handle(name)?;
        q.resume();
        Ok(json!({ "queue": name, "paused": false }))
    }

    /// `POST /-/queues/NAME/dead/redrive`.
    pub async fn redrive(&self, name: &str) -> Result<Value, AdminError> {
        let n = self.handle(name)?.redrive().await?;
        Ok(json!({ "queue": name, "redriven": n }))
    }

    /// Set the gauges (depth, bytes, oldest age, pace) from the stores: call before rendering
    /// `/metrics`. Cheap: no I/O.
    pub fn refresh_gauges(&self) {
        let Some(m) = &self.metrics else { return };
        let now = self.clock.now_ms();
        for (name, q) in self.map.lock().iter() {
            let s = q.store.stats();
            let n: &str = name;
            m.depth.with_label_values(&[n]).set(s.depth as i64);
            m.bytes.with_label_values(&[n]).set(s.bytes as i64);
            m.oldest_age.with_label_values(&[n]).set(
                s.oldest_ms
                    .map_or(0.0, |t| now.saturating_sub(t) as f64 / 1000.0),
            );
            m.pace
                .with_label_values(&[n])
                .set(q.control.pace_mrps.load(Ordering::Relaxed) as f64 / 1000.0);
        }
    }
}

impl Drop for Queues {
    /// Without a `shutdown`, the workers still stop (at their next turn) and let go of their
    /// stores, so a spool is not held open by a task nobody can reach.
    fn drop(&mut self) {
        for q in self.map.get_mut().values() {
            q.control.stop.store(true, Ordering::SeqCst);
            q.control.wake.notify_one();
        }
    }
}

fn describe(k: &StoreKind) -> String {
    match k {
        StoreKind::Spool { path } => format!("spool {}", path.display()),
        StoreKind::Redis => "redis".into(),
    }
}
