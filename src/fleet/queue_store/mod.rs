//! `store = "redis"`: a queue the whole fleet shares, on a Redis stream with a consumer group.
//!
//! ```text
//! seawall:{q:NAME}:stream     live entries (waiting or in delivery); group "seawall",
//!                             one consumer per instance (its fleet instance name)
//! seawall:{q:NAME}:due        zset: retry id -> due ms (parked under consumer "~retry")
//! seawall:{q:NAME}:dead       dead letters (a stream: newest last)
//! seawall:{q:NAME}:bytes      bytes of live entries and dead letters, counted at accept
//! seawall:{q:NAME}:pace       the fleet pace's next free slot (GCRA, Redis's clock)
//! seawall:{q:NAME}:idem:KEY   the first receipt of an Idempotency-Key, for max_age
//! ```
//!
//! The hash tag `{q:NAME}` puts one queue's keys in one Cluster slot, so each step is one Lua
//! script: atomic, one round trip, and replicated (and fsynced, with `appendfsync always`) as a
//! whole.
//!
//! - **Accept** ([`append.lua`](append.lua)): idempotency lookup, `max_bytes`, `XADD`, the byte
//!   count and `SET NX PX` of the key in one script. A script rather than "SET NX, then XADD,
//!   then DEL the key if XADD failed": a crash or a failover between those steps would leave a
//!   key pointing at a lead that was never stored, and the client's retry would get a receipt
//!   for nothing. The receipt is returned only after the script, so after `XADD`: with
//!   `appendonly yes` + `appendfsync always` Redis has fsynced it before it answers.
//! - **Lease** ([`lease.lua`](lease.lua)): due retries first, then abandoned entries (taken
//!   over with `XCLAIM`), then `XREADGROUP ... >`. One fleet pace token per entry handed out:
//!   `rate` holds for the whole fleet. An entry is abandoned when its consumer is gone (no live
//!   heartbeat for that instance's life: it was killed, stopped or restarted; see
//!   [`LiveConsumers`](crate::fleet::instances::LiveConsumers)) and it has been idle for
//!   [`DEAD_GRACE`], or, consumer alive or not, once it has been idle for the
//!   [visibility timeout](VISIBILITY_TIMEOUT) (a delivery hung past every timeout).
//! - **Settle** ([`settle.lua`](settle.lua)): ack = `XACK` + `XDEL`; retry = park the entry
//!   (still pending, so never lost) under the consumer `~retry` until due; bury = copy to the
//!   dead-letter stream, `XACK` + `XDEL`.
//! - **Attempts** come from the group's delivery counter (see lease.lua), so a delivery cut
//!   short by a crash counts towards `max_attempts` like any other.
//! - **Stats** ([`stats.lua`](stats.lua)) are read once a second by a task of this store; the
//!   worker and `/metrics` read the last answer without I/O. `bytes` counts encoded leads as
//!   accepted, not Redis's own overhead per entry (an approximation, below the real memory);
//!   the oldest age is that of the entry at the head of the stream.
//!
//! While Redis is unreachable: accepting answers 503 (a [`Refusal::StoreError`], never a
//! receipt), leasing hands out nothing (delivery pauses, tried again every
//! [`RedisQueueOptions::poll`]), and one line is logged when that starts and one when it ends.

mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::Fleet;
use super::instances::LiveConsumers;
use crate::queue::registry::StoreFactory;
use crate::queue::spec::LiveSettings;
use crate::queue::store::{AppendLimits, DeadLetter, Leased, StoreStats};
use crate::queue::{Accepted, EntryId, Lead, QueueSpec, Refusal, Store, StoreError};
use scripts::{LeaseReply, Scripts};

/// How long an entry may stay in one instance's hands before another takes it over: that
/// instance died or hung mid-delivery. Longer than any delivery can take (connect + write +
/// read timeouts of `deliver_to`; a warning at start says when they add up to more), or a slow
/// delivery is sent twice.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(300);

/// An entry whose consumer has no live heartbeat is taken over once it has been idle this long:
/// the heartbeat's own TTL, so an instance that just started (and may not be in another
/// instance's list yet) never loses an entry it is delivering.
pub const DEAD_GRACE: Duration = crate::fleet::instances::TTL;

/// The consumer group of every queue stream.
pub const GROUP: &str = "seawall";

/// The consumer that holds entries waiting for a retry: pending (so no crash can lose them) but
/// in nobody's delivery, so they are not "abandoned".
pub const PARKED: &str = "~retry";

/// One Redis command (script) may take this long: an `XADD` waits for Redis's fsync with
/// `appendfsync always`, far slower than the request path's fleet-limit `timeout`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// Knobs of the fleet queue that are not in the config file.
#[derive(Debug, Clone, Copy)]
pub struct RedisQueueOptions {
    pub visibility: Duration,
    /// How often an idle worker looks for entries other instances accepted, retries come due
    /// and abandoned entries; also the retry interval while Redis is unreachable.
    pub poll: Duration,
    /// How often the stats are read.
    pub stats_every: Duration,
}

impl Default for RedisQueueOptions {
    fn default() -> Self {
        RedisQueueOptions {
            visibility: VISIBILITY_TIMEOUT,
            poll: Duration::from_millis(200),
            stats_every: Duration::from_secs(1),
        }
    }
}

/// The keys of queue `name`.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    pub stream: String,
    pub due: String,
    pub dead: String,
    pub bytes: String,
    pub pace: String,
    idem_prefix: String,
}

impl QueueKeys {
    pub fn new(name: &str) -> QueueKeys {
        let p = format!("seawall:{{q:{name}}}");
        QueueKeys {
            stream: format!("{p}:stream"),
            due: format!("{p}:due"),
            dead: format!("{p}:dead"),
            bytes: format!("{p}:bytes"),
            pace: format!("{p}:pace"),
            idem_prefix: format!("{p}:idem:"),
        }
    }

    pub fn idem(&self, key: &str) -> String {
        format!("{}{key}", self.idem_prefix)
    }
}

impl Fleet {
    /// The factory `Queues::with_redis_store` takes: each `store = "redis"` queue gets a
    /// [`RedisStore`] on this fleet's Redis, consuming as this instance. Called inside the
    /// runtime the queues run on (their connection's I/O runs there).
    pub fn queue_stores(&self, opts: RedisQueueOptions) -> Box<StoreFactory> {
        let spec = self.inner.spec.clone();
        let consumer = self.consumer();
        let live = self.inner.live.clone();
        let fleet = Arc::downgrade(&self.inner);
        Box::new(move |q: &QueueSpec| {
            if let Some(inner) = fleet.upgrade() {
                inner.serve_durable_queue();
            }
            let client = super::client(&spec).map_err(|e| format!("Redis client: {e}"))?;
            RedisStore::start(client, &consumer, live.clone(), q, opts).map(|s| s as Arc<dyn Store>)
        })
    }
}

/// One fleet queue's store, for one instance.
pub struct RedisStore {
    shared: Arc<Shared>,
}

struct Shared {
    name: Arc<str>,
    keys: QueueKeys,
    consumer: String,
    conn: ConnectionManager,
    opts: RedisQueueOptions,
    scripts: Scripts,
    /// The fleet pace: one entry per this many microseconds, fleet-wide (0: none).
    interval_us: AtomicU64,
    stats: Mutex<StoreStats>,
    /// Redis answered the last command; flips log one line each.
    up: AtomicBool,
    /// Local wall ms before which no pace token is free (a lease said so).
    pace_until_ms: AtomicU64,
    last_takeover_ms: AtomicU64,
    /// Whose entries may be taken over after [`DEAD_GRACE`] rather than the visibility timeout.
    live: Arc<LiveConsumers>,
}

fn interval_us(rate_mrps: u64) -> u64 {
    1_000_000_000u64
        .checked_div(rate_mrps)
        .map_or(0, |i| i.max(1))
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `ms-seq` as the trait's id, and back.
pub fn entry_id(stream_id: &str) -> Option<EntryId> {
    let (ms, seq) = stream_id.split_once('-')?;
    Some(EntryId(
        (u128::from(ms.parse::<u64>().ok()?) << 64) | u128::from(seq.parse::<u64>().ok()?),
    ))
}

pub fn stream_id(id: EntryId) -> String {
    format!("{}-{}", (id.0 >> 64) as u64, id.0 as u64)
}

impl RedisStore {
    /// Connect lazily (never waits for Redis) and start the stats task on the current runtime.
    pub fn start(
        client: redis::Client,
        consumer: &str,
        live: Arc<LiveConsumers>,
        q: &QueueSpec,
        opts: RedisQueueOptions,
    ) -> Result<Arc<RedisStore>, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "a fleet queue needs a Tokio runtime to run on".to_string())?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| format!("Redis connection: {e}"))?;
        let up = &q.deliver_to;
        let longest = up.connect_timeout + up.write_timeout + up.read_timeout;
        if longest >= opts.visibility {
            tracing::warn!(
                queue = %q.name,
                delivery_may_take = ?longest,
                visibility = ?opts.visibility,
                "a delivery to deliver_to may outlast the fleet queue's visibility timeout: \
                 another instance would then send it again"
            );
        }
        let shared = Arc::new(Shared {
            name: q.name.clone(),
            keys: QueueKeys::new(&q.name),
            consumer: consumer.to_string(),
            conn,
            opts,
            scripts: Scripts::get(),
            interval_us: AtomicU64::new(interval_us(q.rate_mrps)),
            stats: Mutex::new(StoreStats::default()),
            up: AtomicBool::new(true),
            pace_until_ms: AtomicU64::new(0),
            last_takeover_ms: AtomicU64::new(0),
            live,
        });
        runtime.spawn(stats_task(Arc::downgrade(&shared)));
        Ok(Arc::new(RedisStore { shared }))
    }

    /// Read the stats now (the task does it every `stats_every`).
    pub async fn refresh_stats(&self) -> Result<StoreStats, StoreError> {
        self.shared.refresh_stats().await
    }

    pub fn keys(&self) -> &QueueKeys {
        &self.shared.keys
    }

    fn conn(&self) -> ConnectionManager {
        self.shared.conn.clone()
    }
}

async fn stats_task(shared: Weak<Shared>) {
    loop {
        let every = match shared.upgrade() {
            Some(s) => {
                let _ = s.refresh_stats().await;
                s.opts.stats_every
            }
            None => return,
        };
        tokio::time::sleep(every).await;
    }
}

impl Shared {
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// Await one command (on a clone of [`Shared::conn`]) within [`COMMAND_TIMEOUT`], tracking
    /// up/down.
    async fn call<T>(
        &self,
        f: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
        let r = match tokio::time::timeout(COMMAND_TIMEOUT, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
        };
        match &r {
            Ok(_) => self.mark_up(),
            Err(e) => self.mark_down(e),
        }
        r
    }

    fn mark_down(&self, error: &str) {
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                queue = %self.name,
                error,
                "fleet queue: Redis unreachable; accepting answers 503 and delivery pauses \
                 until it answers again"
            );
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            tracing::info!(queue = %self.name, "fleet queue: Redis answers again; accepting and delivering");
        }
    }

    async fn refresh_stats(&self) -> Result<StoreStats, StoreError> {
        let k = &self.keys;
        let inv = self.scripts.stats(k);
        let v: Vec<i64> = self
            .call(inv.invoke_async(&mut self.conn()))
            .await
            .map_err(StoreError)?;
        let [depth, bytes, dead, oldest] = v[..] else {
            return Err(StoreError(format!("stats script answered {v:?}")));
        };
        let s = StoreStats {
            depth: depth.max(0) as u64,
            bytes: bytes.max(0) as u64,
            oldest_ms: u64::try_from(oldest).ok(),
            dead: dead.max(0) as u64,
        };
        *self.stats.lock() = s;
        Ok(s)
    }

    async fn settle(&self, op: scripts::Settle<'_>) -> Result<bool, StoreError> {
        let inv = self.scripts.settle(&self.keys, &self.consumer, op);
        let done: i64 = self
            .call(inv.invoke_async(&mut self.conn()))
            .await
            .map_err(StoreError)?;
        Ok(done == 1)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn append(&self, lead: Lead, limits: AppendLimits) -> Result<Accepted, Refusal> {
        if lead.body.len() as u64 > limits.max_body {
            return Err(Refusal::TooLarge);
        }
        let s = &self.shared;
        let receipt = lead.receipt.clone();
        let inv = s.scripts.append(&s.keys, &lead, limits);
        let (code, first): (i64, String) = s
            .call(inv.invoke_async(&mut self.conn()))
            .await
            .map_err(Refusal::StoreError)?;
        match code {
            0 => Ok(Accepted {
                receipt,
                duplicate: false,
            }),
            1 => Ok(Accepted {
                receipt: first,
                duplicate: true,
            }),
            2 => Err(Refusal::Full),
            other => Err(Refusal::StoreError(format!(
                "the append script answered {other}"
            ))),
        }
    }

    async fn lease(&self, _now_ms: u64, max: usize) -> Result<Vec<Leased>, StoreError> {
        let s = &self.shared;
        let now = wall_ms();
        if now < s.pace_until_ms.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        // Abandoned entries are looked for at most once a second (more often only with a
        // visibility timeout under 4 s, in tests): the scan walks every consumer's pending list.
        let every = (s.opts.visibility.as_millis() as u64 / 4).clamp(50, 1_000);
        let takeover = now.saturating_sub(s.last_takeover_ms.load(Ordering::Relaxed)) >= every;
        if takeover {
            s.last_takeover_ms.store(now, Ordering::Relaxed);
        }
        let inv = s.scripts.lease(
            &s.keys,
            &s.consumer,
            max.max(1),
            s.interval_us.load(Ordering::Relaxed),
            scripts::Abandoned {
                look: takeover,
                visibility: s.opts.visibility,
                live: s.live.get(),
            },
        );
        let reply: redis::Value = match s.call(inv.invoke_async(&mut self.conn())).await {
            Ok(v) => v,
            // Down: logged once by `call`; the worker just finds nothing and comes back after
            // `next_due_ms`, so delivery pauses without a line per poll.
            Err(_) => return Ok(Vec::new()),
        };
        match scripts::parse_lease(reply).map_err(StoreError)? {
            LeaseReply::Wait { ms } => {
                s.pace_until_ms.store(now + ms, Ordering::Relaxed);
                Ok(Vec::new())
            }
            LeaseReply::Entries(raw) => {
                let mut out = Vec::with_capacity(raw.len());
                for e in raw {
                    let Some(id) = entry_id(&e.id) else {
                        return Err(StoreError(format!("unexpected stream id {:?}", e.id)));
                    };
                    match Lead::decode(&e.lead) {
                        Ok(lead) => out.push(Leased {
                            id,
                            lead,
                            attempts: e.attempts,
                            age_from_ms: e.age_from_ms,
                        }),
                        Err(why) => {
                            tracing::error!(queue = %s.name, id = %e.id, error = %why, "fleet queue entry cannot be read: moved to the dead letters");
                            self.bury(id, e.attempts, format!("damaged entry: {why}"), now)
                                .await?;
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        // Other instances add entries and retries come due without waking this worker: poll.
        let s = &self.shared;
        let poll = wall_ms() + s.opts.poll.as_millis() as u64;
        let pace = s.pace_until_ms.load(Ordering::Relaxed);
        Ok(Some(if pace > wall_ms() {
            pace.min(poll)
        } else {
            poll
        }))
    }

    async fn ack(&self, id: EntryId) -> Result<(), StoreError> {
        let sid = stream_id(id);
        self.shared
            .settle(scripts::Settle::Ack { id: &sid })
            .await
            .map(|_| ())
    }

    async fn retry(
        &self,
        id: EntryId,
        attempts: u32,
        due_ms: u64,
        last: String,
    ) -> Result<(), StoreError> {
        // Attempts are the group's delivery counter and the last error only matters once the
        // entry is buried: neither is stored with a parked retry.
        let _ = (attempts, last);
        // The due time is this instance's wall clock, compared with Redis's in lease.lua: clocks
        // that differ a little make a retry come due that much early or late, never lost.
        let sid = stream_id(id);
        let done = self
            .shared
            .settle(scripts::Settle::Retry { id: &sid, due_ms })
            .await?;
        if !done {
            tracing::debug!(queue = %self.shared.name, id = %sid, "retry not parked: another instance took the entry over");
        }
        Ok(())
    }

    async fn bury(
        &self,
        id: EntryId,
        attempts: u32,
        last: String,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let sid = stream_id(id);
        self.shared
            .settle(scripts::Settle::Bury {
                id: &sid,
                attempts,
                last: &last,
                now_ms,
            })
            .await
            .map(|_| ())
    }

    async fn dead_letters(
        &self,
        limit: usize,
        with_body: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let s = &self.shared;
        let dead = s.keys.dead.clone();
        let rows: redis::Value = s
            .call(
                redis::cmd("XREVRANGE")
                    .arg(&dead)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit.max(1))
                    .query_async(&mut s.conn.clone()),
            )
            .await
            .map_err(StoreError)?;
        scripts::parse_dead(rows, with_body).map_err(StoreError)
    }

    async fn redrive(&self, now_ms: u64) -> Result<u64, StoreError> {
        const BATCH: i64 = 500;
        let s = &self.shared;
        let mut total = 0u64;
        loop {
            let inv = s.scripts.redrive(&s.keys, now_ms, BATCH);
            let n: i64 = s
                .call(inv.invoke_async(&mut self.conn()))
                .await
                .map_err(StoreError)?;
            total += n.max(0) as u64;
            if n < BATCH {
                break;
            }
        }
        let _ = s.refresh_stats().await;
        Ok(total)
    }

    fn stats(&self) -> StoreStats {
        *self.shared.stats.lock()
    }

    /// Nothing to do here: entries this instance held stay pending under its consumer, and
    /// once its heartbeat is gone (a graceful stop removes it at once, a crash lets it expire
    /// within [`TTL`](crate::fleet::instances::TTL)) another instance takes them over after
    /// [`DEAD_GRACE`]; so does this instance's next life, which is a new consumer.
    fn release_leases(&self) {}

    fn update(&self, live: &LiveSettings) {
        self.shared
            .interval_us
            .store(interval_us(live.rate_mrps), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip_and_keys_share_a_slot() {
        let id = entry_id("1733059200000-7").unwrap();
        assert_eq!(stream_id(id), "1733059200000-7");
        assert!(entry_id("12").is_none() && entry_id("a-1").is_none());
        assert!(entry_id("1-2") < entry_id("2-0"));
        let k = QueueKeys::new("leads");
        for key in [
            &k.stream,
            &k.due,
            &k.dead,
            &k.bytes,
            &k.pace,
            &k.idem("x{y}"),
        ] {
            assert!(key.starts_with("seawall:{q:leads}:"), "{key}");
        }
        assert_eq!(interval_us(20_000), 50_000);
        assert_eq!(interval_us(0), 0);
    }
}
