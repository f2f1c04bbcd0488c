//! The delivery loop of one queue: a pace slot, an in-flight permit, the next due entry, one
//! attempt, and what the answer means for the entry and for the pace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::WallClock;
use super::deliver::{Sender, Verdict, build_request, judge};
use super::pace::{Micros, Pacer, Transition, retry_delay};
use super::spec::LiveSettings;
use super::store::{Leased, Store};

/// State shared by a queue's handle (admin, metrics) and its worker.
#[derive(Debug, Default)]
pub struct Control {
    pub paused: AtomicBool,
    pub stop: AtomicBool,
    pub in_flight: AtomicU32,
    pub pace_mrps: AtomicU64,
    pub backing_off: AtomicBool,
    /// Something changed: a new lead, a resume, a redrive, a reload, a stop.
    pub wake: Notify,
}

/// Delivery counters of one queue (`seawall_queue_deliveries_total{result}`).
#[derive(Clone)]
pub struct DeliveryCounters {
    pub delivered: prometheus::IntCounter,
    pub retry: prometheus::IntCounter,
    pub dead: prometheus::IntCounter,
}

pub struct Worker {
    pub name: Arc<str>,
    pub store: Arc<dyn Store>,
    pub sender: Arc<dyn Sender>,
    pub live: Arc<ArcSwap<LiveSettings>>,
    pub control: Arc<Control>,
    pub clock: Arc<dyn WallClock>,
    pub counters: DeliveryCounters,
}

/// What an attempt says about the app's health, for the pace.
enum Feedback {
    Success,
    /// A retryable failure; `hold` = the app's Retry-After, queue-wide.
    Failure {
        hold: Option<Duration>,
    },
    /// A permanent answer (400, a lead too old): says nothing about load.
    Neutral,
}

/// Longest sleep with nothing due; new leads and admin actions wake the worker sooner.
const IDLE_POLL: Duration = Duration::from_secs(5);

impl Worker {
    pub async fn run(self) {
        let start = Instant::now();
        let mono = move || -> Micros { start.elapsed().as_micros() as u64 };
        let mut pacer = Pacer::new(self.live.load().rate_mrps);
        let mut inflight: JoinSet<Feedback> = JoinSet::new();
        self.publish(&pacer);
        loop {
            if self.control.stop.load(Ordering::SeqCst) {
                break;
            }
            while let Some(r) = inflight.try_join_next() {
                self.feedback(r, &mut pacer, mono());
            }
            let live = self.live.load_full();
            if live.rate_mrps != pacer.rate_mrps() {
                pacer.set_rate(live.rate_mrps);
                self.publish(&pacer);
            }
            if self.control.paused.load(Ordering::SeqCst) {
                tokio::select! {
                    _ = self.control.wake.notified() => {}
                    Some(r) = inflight.join_next(), if !inflight.is_empty() => {
                        self.feedback(r, &mut pacer, mono());
                    }
                }
                continue;
            }
            if inflight.len() >= live.max_inflight.max(1) as usize {
                tokio::select! {
                    Some(r) = inflight.join_next() => self.feedback(r, &mut pacer, mono()),
                    _ = self.control.wake.notified() => {}
                }
                continue;
            }
            let now = mono();
            let slot = pacer.reserve(now);
            if slot > now {
                let until = start + Duration::from_micros(slot);
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = self.control.wake.notified() => {
                        // Paused, stopped or re-rated meanwhile: take the slot again.
                        pacer.unreserve(slot);
                        continue;
                    }
                }
            }
            let wall = self.clock.now_ms();
            let leased = match self.store.lease(wall, 1).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(queue = %self.name, error = %e, "queue store cannot be read");
                    pacer.unreserve(slot);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let Some(entry) = leased.into_iter().next() else {
                pacer.unreserve(slot);
                let wait = match self.store.next_due_ms().await {
                    Ok(Some(t)) => Duration::from_millis(t.saturating_sub(wall)).min(IDLE_POLL),
                    _ => IDLE_POLL,
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = self.control.wake.notified() => {}
                    Some(r) = inflight.join_next(), if !inflight.is_empty() => {
                        self.feedback(r, &mut pacer, mono());
                    }
                }
                continue;
            };
            self.control.in_flight.fetch_add(1, Ordering::SeqCst);
            let attempt = Attempt {
                name: self.name.clone(),
                store: self.store.clone(),
                sender: self.sender.clone(),
                live,
                clock: self.clock.clone(),
                counters: self.counters.clone(),
                control: self.control.clone(),
            };
            inflight.spawn(attempt.run(entry));
        }
        // Stopping: deliveries in flight are abandoned; their entries stay due (redelivered).
        inflight.abort_all();
        while inflight.join_next().await.is_some() {}
        self.control.in_flight.store(0, Ordering::SeqCst);
        self.store.release_leases();
    }

    fn feedback(
        &self,
        r: Result<Feedback, tokio::task::JoinError>,
        pacer: &mut Pacer,
        now: Micros,
    ) {
        let transition = match r {
            Ok(Feedback::Success) => pacer.on_success(now),
            Ok(Feedback::Failure { hold }) => {
                if let Some(h) = hold {
                    pacer.hold_until(now + h.as_micros() as u64);
                }
                pacer.on_failure(now)
            }
            Ok(Feedback::Neutral) | Err(_) => None,
        };
        let rate = pacer.rate_mrps() as f64 / 1000.0;
        match transition {
            Some(Transition::BackingOff { pace_mrps }) => tracing::warn!(
                queue = %self.name,
                rate_rps = rate,
                pace_rps = pace_mrps as f64 / 1000.0,
                "queue delivery backing off: the app is failing or overloaded"
            ),
            Some(Transition::Recovered) => tracing::info!(
                queue = %self.name,
                pace_rps = rate,
                "queue delivery recovered: back at its rate"
            ),
            None => {}
        }
        self.publish(pacer);
    }

    fn publish(&self, pacer: &Pacer) {
        self.control
            .pace_mrps
            .store(pacer.pace_mrps(), Ordering::Relaxed);
        self.control
            .backing_off
            .store(pacer.backing_off(), Ordering::Relaxed);
    }
}

/// One delivery attempt, run as its own task so `max_inflight` of them overlap.
struct Attempt {
    name: Arc<str>,
    store: Arc<dyn Store>,
    sender: Arc<dyn Sender>,
    live: Arc<LiveSettings>,
    clock: Arc<dyn WallClock>,
    counters: DeliveryCounters,
    control: Arc<Control>,
}

impl Attempt {
    async fn run(self, e: Leased) -> Feedback {
        let fb = self.attempt(e).await;
        self.control.in_flight.fetch_sub(1, Ordering::SeqCst);
        fb
    }

    async fn attempt(&self, e: Leased) -> Feedback {
        let attempt = e.attempts + 1;
        let now = self.clock.now_ms();
        let max_age = self.live.max_age.as_millis() as u64;
        if now.saturating_sub(e.age_from_ms) > max_age {
            self.bury(&e, e.attempts, "max_age exceeded".into(), now)
                .await;
            return Feedback::Neutral;
        }
        let req = match build_request(&e.lead, attempt) {
            Ok(r) => r,
            Err(why) => {
                self.bury(&e, e.attempts, why, now).await;
                return Feedback::Neutral;
            }
        };
        let outcome = self
            .sender
            .send(&self.live.deliver_to, req, e.lead.body.clone())
            .await;
        let now = self.clock.now_ms();
        match judge(&outcome, now) {
            Verdict::Delivered => {
                if let Err(err) = self.store.ack(e.id).await {
                    tracing::error!(queue = %self.name, receipt = %e.lead.receipt, error = %err, "delivered, but the ack was not stored: it will be delivered again");
                }
                self.counters.delivered.inc();
                Feedback::Success
            }
            Verdict::Dead { why } => {
                self.bury(&e, attempt, why, now).await;
                Feedback::Neutral
            }
            Verdict::Retry { why, retry_after } => {
                let hold = retry_after.filter(|_| {
                    matches!(
                        outcome,
                        super::SendOutcome::Status {
                            status: 429 | 503,
                            ..
                        }
                    )
                });
                if attempt >= self.live.max_attempts {
                    self.bury(
                        &e,
                        attempt,
                        format!("max_attempts exceeded; last: {why}"),
                        now,
                    )
                    .await;
                    return Feedback::Failure { hold };
                }
                let delay =
                    retry_delay(self.live.retry, attempt, retry_after, rand::random::<f64>());
                let due = now + delay.as_millis() as u64;
                tracing::debug!(queue = %self.name, receipt = %e.lead.receipt, attempt, why = %why, "delivery failed, will retry");
                if let Err(err) = self.store.retry(e.id, attempt, due, why).await {
                    tracing::error!(queue = %self.name, error = %err, "retry not stored: the entry stays due");
                }
                self.counters.retry.inc();
                Feedback::Failure { hold }
            }
        }
    }

    async fn bury(&self, e: &Leased, attempts: u32, why: String, now: u64) {
        tracing::warn!(queue = %self.name, receipt = %e.lead.receipt, attempts, why = %why, "lead moved to the dead letters");
        if let Err(err) = self.store.bury(e.id, attempts, why, now).await {
            tracing::error!(queue = %self.name, error = %err, "dead letter not stored: the entry stays due");
        }
        self.counters.dead.inc();
    }
}
