//! The embedded store: one redb database per queue, written by one thread with group commit.
//!
//! Why redb rather than a hand-written segment log (measured by benches/queue.rs, which also
//! runs the floor of a raw append + fdatasync log on the same disk): a queue needs more than an append-only log. Entries finish out of order (retries
//! with backoff, dead letters, redrive) and an `Idempotency-Key` must be found among a million
//! entries; a log needs an in-RAM index of every live entry for that, redb keeps the indexes on
//! disk in B-trees with a bounded page cache. Its commits are atomic and checksummed: a commit
//! torn by `kill -9` or a power cut is rolled back on open to the last durable one (which is
//! all that was ever acknowledged), so there is no torn tail to skip by hand.
//!
//! Group commit: appends arriving while a commit is being fsynced wait in the channel and go
//! into the next transaction together, so one fsync acknowledges a whole batch. Delivery
//! bookkeeping (ack, retry) commits without fsync and becomes durable with the next durable
//! commit (at most [`LAZY_SYNC`] later): a crash in between only redelivers, never loses.

use std::collections::HashSet;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use tokio::sync::oneshot;

use super::record::Lead;
use super::store::{
    Accepted, AppendLimits, DeadLetter, EntryId, Leased, Refusal, Store, StoreError, StoreStats,
};

/// The tables of a spool (the salvage copies them all).
pub(crate) mod tables {
    use redb::TableDefinition;

    /// seq -> encoded lead (record.rs).
    pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
    /// seq -> delivery state, for live entries and dead letters alike.
    pub const STATE: TableDefinition<u64, &[u8]> = TableDefinition::new("state");
    /// (due ms, seq): the delivery order.
    pub const DUE: TableDefinition<(u64, u64), ()> = TableDefinition::new("due");
    /// seq -> encoded lead of a dead letter.
    pub const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");
    /// (died ms, seq): dead letters newest first.
    pub const DEAD_ORDER: TableDefinition<(u64, u64), ()> = TableDefinition::new("dead_order");
    /// Idempotency-Key -> (accepted ms, receipt).
    pub const IDEM: TableDefinition<&str, (u64, &str)> = TableDefinition::new("idem");
    /// (accepted ms, key): to forget keys older than max_age.
    pub const IDEM_EXP: TableDefinition<(u64, &str), ()> = TableDefinition::new("idem_exp");
    pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
}
use tables::*;

mod writer;
use writer::Writer;

/// The database file inside the spool directory.
pub const FILE_NAME: &str = "queue.redb";
/// Longest a non-durable commit (ack, retry) waits for an fsync.
pub const LAZY_SYNC: Duration = Duration::from_secs(1);
/// Most operations in one transaction: bounds a commit's latency under a flood.
const MAX_BATCH: usize = 2048;

#[derive(Debug, Clone, Copy)]
pub struct SpoolOptions {
    /// After the first append of a batch, wait this long for more before committing. Zero: take
    /// what is already waiting (commits still group while an fsync is in progress).
    pub commit_window: Duration,
    /// redb's page cache: the RAM the spool may use whatever its depth.
    pub cache_bytes: usize,
    /// One transaction per append (no grouping): only for measuring what grouping buys.
    pub no_grouping: bool,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            commit_window: Duration::ZERO,
            cache_bytes: 16 << 20,
            no_grouping: false,
        }
    }
}

struct Inner {
    db: Database,
    file: PathBuf,
    /// Entries a delivery holds now (at most the queue's max_inflight).
    leased: Mutex<HashSet<u64>>,
    depth: AtomicU64,
    bytes: AtomicU64,
    /// 0 = empty.
    oldest_ms: AtomicU64,
    dead: AtomicU64,
}

pub struct Spool {
    inner: Arc<Inner>,
    tx: Option<mpsc::Sender<Op>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

type Reply<T> = oneshot::Sender<T>;

enum Op {
    /// Boxed: a lead is large, the bookkeeping ops are small and far more numerous.
    Append(Box<Lead>, AppendLimits, Reply<Result<Accepted, Refusal>>),
    Ack(u64, Reply<Result<(), StoreError>>),
    Retry(u64, State, Reply<Result<(), StoreError>>),
    Bury(u64, u32, String, u64, Reply<Result<(), StoreError>>),
    Redrive(u64, Reply<Result<u64, StoreError>>),
}

/// Delivery state of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    attempts: u32,
    due_ms: u64,
    age_from_ms: u64,
    died_ms: u64,
    last: String,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(28 + self.last.len());
        v.extend_from_slice(&self.attempts.to_le_bytes());
        v.extend_from_slice(&self.due_ms.to_le_bytes());
        v.extend_from_slice(&self.age_from_ms.to_le_bytes());
        v.extend_from_slice(&self.died_ms.to_le_bytes());
        v.extend_from_slice(self.last.as_bytes());
        v
    }

    fn decode(b: &[u8]) -> State {
        let u64_at = |i: usize| {
            b.get(i..i + 8)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        State {
            attempts: b
                .get(0..4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes),
            due_ms: u64_at(4),
            age_from_ms: u64_at(12),
            died_ms: u64_at(20),
            last: b
                .get(28..)
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default(),
        }
    }
}

/// The acceptance time stored at the front of every record (after its version byte).
fn accepted_at(record: &[u8]) -> u64 {
    record
        .get(1..9)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl Spool {
    /// Open (or create) the spool in `dir`: the directory 0700, the file 0600, whatever they
    /// were (leads are personal data). A database left by a crash is repaired here: redb rolls
    /// back to its last durable commit, and that is logged once.
    pub fn open(dir: &Path, opts: SpoolOptions) -> Result<Spool, StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                StoreError(format!(
                    "cannot create spool directory {}: {e}",
                    dir.display()
                ))
            })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError(format!("cannot chmod {}: {e}", dir.display())))?;
        let file = dir.join(FILE_NAME);
        create_private(&file).map_err(StoreError)?;
        let db = match open_db(&file, opts) {
            Ok(db) => db,
            Err(e) => match super::salvage::damage(&e) {
                Some(reason) => super::salvage::salvage(&file, &reason, opts, |f| {
                    create_private(f)?;
                    open_db(f, opts).map_err(|e| e.to_string())
                })
                .map_err(|e| StoreError(format!("cannot open spool {}: {e}", file.display())))?,
                None => {
                    return Err(StoreError(format!(
                        "cannot open spool {}: {e}",
                        file.display()
                    )));
                }
            },
        };
        let inner = Arc::new(Inner {
            db,
            file,
            leased: Mutex::new(HashSet::new()),
            depth: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            oldest_ms: AtomicU64::new(0),
            dead: AtomicU64::new(0),
        });
        let next_seq = init_tables(&inner)?;
        let (tx, rx) = mpsc::channel();
        let w = Writer {
            inner: inner.clone(),
            rx,
            next_seq,
            opts,
            dirty: false,
            idem_ms: 0,
            last_purge: Instant::now(),
        };
        let writer = std::thread::Builder::new()
            .name("seawall-spool".into())
            .spawn(move || w.run())
            .map_err(err)?;
        Ok(Spool {
            inner,
            tx: Some(tx),
            writer: Some(writer),
        })
    }

    /// The database file, for messages.
    pub fn file(&self) -> &Path {
        &self.inner.file
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Op, closed: T) -> T {
        let (tx, rx) = oneshot::channel();
        match &self.tx {
            Some(sender) if sender.send(make(tx)).is_ok() => rx.await.unwrap_or(closed),
            _ => closed,
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(err)?
    }
}

impl Drop for Spool {
    /// Let the writer finish what it has, fsync, and release the file, so a spool reopened
    /// at the same path right after (a restart in tests, a queue recreated) finds it free.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Create the file 0600 if missing (before redb opens it), and make it 0600 if it was looser.
fn create_private(file: &Path) -> Result<(), String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(file)
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot chmod {}: {e}", file.display()))
}

fn open_db(file: &Path, opts: SpoolOptions) -> Result<Database, redb::DatabaseError> {
    let shown = file.display().to_string();
    let reported = std::sync::atomic::AtomicBool::new(false);
    Database::builder()
        .set_cache_size(opts.cache_bytes)
        .set_repair_callback(move |s| {
            if !reported.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    file = %shown,
                    progress = s.progress(),
                    "spool was not closed cleanly (crash or kill -9): repairing; the last \
                     commit that never finished is rolled back (it was never acknowledged)"
                );
            }
        })
        .create(file)
}

/// Rebuild DUE, DEAD_ORDER and IDEM_EXP from the data tables (after a salvage). An entry whose
/// state was lost starts afresh: due now, no attempts.
pub(crate) fn rebuild_indexes(w: &redb::WriteTransaction) -> Result<(), StoreError> {
    let now = super::WallClock::now_ms(&super::SystemClock);
    let entries = w.open_table(ENTRIES).map_err(err)?;
    let dead = w.open_table(DEAD).map_err(err)?;
    let mut state = w.open_table(STATE).map_err(err)?;
    let mut due = w.open_table(DUE).map_err(err)?;
    let mut dead_order = w.open_table(DEAD_ORDER).map_err(err)?;
    let idem = w.open_table(IDEM).map_err(err)?;
    let mut idem_exp = w.open_table(IDEM_EXP).map_err(err)?;
    let fresh = |at: u64| State {
        attempts: 0,
        due_ms: at,
        age_from_ms: at,
        died_ms: 0,
        last: String::new(),
    };
    for (table, is_dead) in [(&entries, false), (&dead, true)] {
        for row in table.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            let seq = k.value();
            let st = state
                .get(seq)
                .map_err(err)?
                .map(|s| State::decode(s.value()));
            let st = st.unwrap_or_else(|| {
                let mut s = fresh(accepted_at(v.value()));
                if is_dead {
                    s.died_ms = now;
                    s.last = "state lost in a salvage".into();
                }
                s
            });
            state.insert(seq, st.encode().as_slice()).map_err(err)?;
            if is_dead {
                dead_order.insert((st.died_ms, seq), ()).map_err(err)?;
            } else {
                due.insert((st.due_ms, seq), ()).map_err(err)?;
            }
        }
    }
    for row in idem.iter().map_err(err)? {
        let (k, v) = row.map_err(err)?;
        idem_exp.insert((v.value().0, k.value()), ()).map_err(err)?;
    }
    let bytes = stored_bytes(&entries, &dead)?;
    w.open_table(META)
        .map_err(err)?
        .insert("bytes", bytes)
        .map_err(err)?;
    Ok(())
}

fn stored_bytes(
    entries: &impl ReadableTable<u64, &'static [u8]>,
    dead: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<u64, StoreError> {
    let mut bytes = 0u64;
    for row in entries
        .iter()
        .map_err(err)?
        .chain(dead.iter().map_err(err)?)
    {
        let (_, v) = row.map_err(err)?;
        bytes += v.value().len() as u64;
    }
    Ok(bytes)
}

fn init_tables(inner: &Inner) -> Result<u64, StoreError> {
    let txn = inner.db.begin_write().map_err(err)?;
    let next_seq;
    {
        let entries = txn.open_table(ENTRIES).map_err(err)?;
        txn.open_table(STATE).map_err(err)?;
        txn.open_table(DUE).map_err(err)?;
        let dead = txn.open_table(DEAD).map_err(err)?;
        txn.open_table(DEAD_ORDER).map_err(err)?;
        txn.open_table(IDEM).map_err(err)?;
        txn.open_table(IDEM_EXP).map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let last_live = entries.last().map_err(err)?.map(|(k, _)| k.value());
        let last_dead = dead.last().map_err(err)?.map(|(k, _)| k.value());
        let stored = meta.get("next_seq").map_err(err)?.map(|v| v.value());
        next_seq = [last_live.map(|s| s + 1), last_dead.map(|s| s + 1), stored]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(1);
        // Kept in META by every commit: a restart with a million entries must not read them
        // all to learn how full the spool is. Counted once if missing (a spool from before).
        let bytes = match meta.get("bytes").map_err(err)?.map(|v| v.value()) {
            Some(b) => b,
            None => stored_bytes(&entries, &dead)?,
        };
        inner.bytes.store(bytes, Ordering::Relaxed);
        inner
            .depth
            .store(entries.len().map_err(err)?, Ordering::Relaxed);
        inner
            .dead
            .store(dead.len().map_err(err)?, Ordering::Relaxed);
        let oldest = entries
            .first()
            .map_err(err)?
            .map_or(0, |(_, v)| accepted_at(v.value()));
        inner.oldest_ms.store(oldest, Ordering::Relaxed);
    }
    txn.commit().map_err(err)?;
    Ok(next_seq)
}

/// Entries whose record could not be decoded: (seq, why), to be moved to the dead letters.
type Broken = Vec<(u64, String)>;

fn lease_due(inner: &Inner, now_ms: u64, max: usize) -> Result<(Vec<Leased>, Broken), StoreError> {
    // The in-flight set is locked before the snapshot is taken. The writer releases an acked
    // entry from it only after the ack's commit: taken the other way round, a snapshot from
    // before the commit still lists the entry as due while the set no longer holds it, and it
    // is delivered twice (lead-flood saw 7 in 20,000 with a healthy app).
    let mut leased = inner.leased.lock();
    let txn = inner.db.begin_read().map_err(err)?;
    let due = txn.open_table(DUE).map_err(err)?;
    let entries = txn.open_table(ENTRIES).map_err(err)?;
    let state = txn.open_table(STATE).map_err(err)?;
    let mut out = Vec::new();
    let mut broken = Vec::new();
    for row in due.range((0, 0)..=(now_ms, u64::MAX)).map_err(err)? {
        if out.len() >= max {
            break;
        }
        let (k, _) = row.map_err(err)?;
        let (_, seq) = k.value();
        if leased.contains(&seq) {
            continue;
        }
        let Some(rec) = entries.get(seq).map_err(err)? else {
            continue;
        };
        let st = state
            .get(seq)
            .map_err(err)?
            .map(|s| State::decode(s.value()))
            .unwrap_or(State {
                attempts: 0,
                due_ms: 0,
                age_from_ms: 0,
                died_ms: 0,
                last: String::new(),
            });
        leased.insert(seq);
        match Lead::decode(rec.value()) {
            Ok(lead) => out.push(Leased {
                id: EntryId(u128::from(seq)),
                lead,
                attempts: st.attempts,
                age_from_ms: st.age_from_ms,
            }),
            Err(e) => broken.push((seq, format!("undecodable record: {e}"))),
        }
    }
    Ok((out, broken))
}

fn seq_of(id: EntryId) -> u64 {
    id.0 as u64
}

#[async_trait]
impl Store for Spool {
    async fn append(&self, lead: Lead, limits: AppendLimits) -> Result<Accepted, Refusal> {
        if lead.body.len() as u64 > limits.max_body {
            return Err(Refusal::TooLarge);
        }
        let closed = Err(Refusal::StoreError("spool is closed".into()));
        self.call(|tx| Op::Append(Box::new(lead), limits, tx), closed)
            .await
    }

    async fn lease(&self, now_ms: u64, max: usize) -> Result<Vec<Leased>, StoreError> {
        let (out, broken) = self.read(move |i| lease_due(i, now_ms, max)).await?;
        for (seq, why) in broken {
            tracing::error!(file = %self.inner.file.display(), seq, error = %why, "spool entry cannot be read: moved to the dead letters");
            self.bury(EntryId(u128::from(seq)), 0, why, now_ms).await?;
        }
        Ok(out)
    }

    async fn next_due_ms(&self) -> Result<Option<u64>, StoreError> {
        self.read(|inner| {
            let txn = inner.db.begin_read().map_err(err)?;
            let due = txn.open_table(DUE).map_err(err)?;
            let leased = inner.leased.lock();
            for row in due.iter().map_err(err)? {
                let (k, _) = row.map_err(err)?;
                let (t, seq) = k.value();
                if !leased.contains(&seq) {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        })
        .await
    }

    async fn ack(&self, id: EntryId) -> Result<(), StoreError> {
        let closed = Err(StoreError("spool is closed".into()));
        self.call(|tx| Op::Ack(seq_of(id), tx), closed).await
    }

    async fn retry(
        &self,
        id: EntryId,
        attempts: u32,
        due_ms: u64,
        last: String,
    ) -> Result<(), StoreError> {
        let st = State {
            attempts,
            due_ms,
            age_from_ms: 0,
            died_ms: 0,
            last,
        };
        let closed = Err(StoreError("spool is closed".into()));
        self.call(|tx| Op::Retry(seq_of(id), st, tx), closed).await
    }

    async fn bury(
        &self,
        id: EntryId,
        attempts: u32,
        last: String,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let closed = Err(StoreError("spool is closed".into()));
        self.call(
            |tx| Op::Bury(seq_of(id), attempts, last, now_ms, tx),
            closed,
        )
        .await
    }

    async fn dead_letters(
        &self,
        limit: usize,
        with_body: bool,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.read(move |inner| {
            let txn = inner.db.begin_read().map_err(err)?;
            let order = txn.open_table(DEAD_ORDER).map_err(err)?;
            let dead = txn.open_table(DEAD).map_err(err)?;
            let state = txn.open_table(STATE).map_err(err)?;
            let mut out = Vec::new();
            for row in order.iter().map_err(err)?.rev().take(limit) {
                let (k, _) = row.map_err(err)?;
                let (died, seq) = k.value();
                let Some(rec) = dead.get(seq).map_err(err)? else {
                    continue;
                };
                let st = state
                    .get(seq)
                    .map_err(err)?
                    .map(|s| State::decode(s.value()));
                let st = st.unwrap_or(State {
                    attempts: 0,
                    due_ms: 0,
                    age_from_ms: 0,
                    died_ms: died,
                    last: String::new(),
                });
                let (receipt, campaign, method, path, body, accepted) =
                    match Lead::decode(rec.value()) {
                        Ok(l) => (
                            l.receipt,
                            l.campaign,
                            l.method,
                            l.path,
                            Some(l.body),
                            l.accepted_at_ms,
                        ),
                        Err(_) => (
                            format!("seq-{seq}"),
                            None,
                            String::new(),
                            String::new(),
                            None,
                            accepted_at(rec.value()),
                        ),
                    };
                out.push(DeadLetter {
                    receipt,
                    attempts: st.attempts,
                    last: st.last,
                    accepted_at_ms: accepted,
                    died_at_ms: died,
                    campaign,
                    method,
                    path,
                    body: if with_body { body } else { None },
                });
            }
            Ok(out)
        })
        .await
    }

    async fn redrive(&self, now_ms: u64) -> Result<u64, StoreError> {
        let closed = Err(StoreError("spool is closed".into()));
        self.call(|tx| Op::Redrive(now_ms, tx), closed).await
    }

    fn stats(&self) -> StoreStats {
        let i = &self.inner;
        let oldest = i.oldest_ms.load(Ordering::Relaxed);
        StoreStats {
            depth: i.depth.load(Ordering::Relaxed),
            bytes: i.bytes.load(Ordering::Relaxed),
            oldest_ms: (oldest != 0).then_some(oldest),
            dead: i.dead.load(Ordering::Relaxed),
        }
    }

    fn release_leases(&self) {
        self.inner.leased.lock().clear();
    }
}
