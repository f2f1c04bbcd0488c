//! What a queue's store must do, whatever keeps the bytes (the embedded spool, a Redis stream).
//!
//! The contract every implementation keeps:
//! - [`Store::append`] returns only once the lead is durable (fsynced, or `appendfsync always`
//!   acknowledged); any failure is a [`Refusal`], never a receipt;
//! - an entry is handed to one delivery at a time ([`Store::lease`]) until it is acked, retried
//!   or buried; after a crash leases are forgotten and entries are delivered again (at least
//!   once);
//! - nothing queued is removed for room: a full store refuses new leads.

use async_trait::async_trait;

use super::record::Lead;

/// Which entry, in the store's own terms (the spool's sequence number; a stream id packed as
/// `ms << 64 | seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId(pub u128);

/// Why a lead was not accepted: the `reason` label of `seawall_queue_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The store holds `max_bytes`: 503 + Retry-After.
    #[error("queue is full")]
    Full,
    /// The body is above `max_body`: 413.
    #[error("request body is larger than the queue's max_body")]
    TooLarge,
    /// The store could not make the lead durable: 503, never "accepted".
    #[error("store error: {0}")]
    StoreError(String),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::TooLarge => "too_large",
            Refusal::StoreError(_) => "store_error",
        }
    }
}

/// A store failure outside the accept path (delivery bookkeeping, admin reads).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// A stored lead, as `append` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub receipt: String,
    /// The `Idempotency-Key` was seen within `max_age`: this is the first lead's receipt and
    /// nothing was added.
    pub duplicate: bool,
}

/// Per-call limits, so a reload changes them without touching the store.
#[derive(Debug, Clone, Copy)]
pub struct AppendLimits {
    pub max_body: u64,
    pub max_bytes: u64,
    /// How long an `Idempotency-Key` is remembered (the queue's `max_age`).
    pub idempotency_ms: u64,
}

/// An entry leased for one delivery attempt.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: EntryId,
    pub lead: Lead,
    /// Attempts already made (0 for a fresh entry).
    pub attempts: u32,
    /// Where `max_age` counts from: acceptance, or the last redrive.
    pub age_from_ms: u64,
}

/// A dead letter as the admin API shows it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub receipt: String,
    pub attempts: u32,
    /// `"status 400"`, `"connection refused"`, `"max_age exceeded"`, ...
    pub last: String,
    pub accepted_at_ms: u64,
    pub died_at_ms: u64,
    pub campaign: Option<String>,
    pub method: String,
    pub path: String,
    /// Only when asked for (`?body=1`): leads are personal data.
    pub body: Option<bytes::Bytes>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Entries waiting or in delivery.
    pub depth: u64,
    /// Bytes held: live entries and dead letters (what `max_bytes` bounds).
    pub bytes: u64,
    /// Unix ms of the oldest live entry's acceptance.
    pub oldest_ms: Option<u64>,
    pub dead: u64,
}

#[async_trait]
pub trait Store: Send + Sync {
    /// Store `lead` durably (its `receipt` is already set) and answer once it is.
    async fn append(&self, lead: Lead, limits: AppendLimits) -> Result<Accepted, Refusal>;

    /// Up to `max` entries due at `now_ms` that no delivery holds, leased to the caller.
    async fn lease(&self, now_ms: u64, max: usize) -> Result<Vec<Leased>, StoreError>;

    /// The earliest due time of an entry no delivery holds, to sleep until.
    async fn next_due_ms(&self) -> Result<Option<u64>, StoreError>;

    /// Delivered: forget the entry.
    async fn ack(&self, id: EntryId) -> Result<(), StoreError>;

    /// A failed attempt: keep the entry, due again at `due_ms`.
    async fn retry(
        &self,
        id: EntryId,
        attempts: u32,
        due_ms: u64,
        last: String,
    ) -> Result<(), StoreError>;

    /// Move the entry to the dead letters.
    async fn bury(
        &self,
        id: EntryId,
        attempts: u32,
        last: String,
        now_ms: u64,
    ) -> Result<(), StoreError>;

    /// The dead letters, newest first, at most `limit`.
    async fn dead_letters(
        &self,
        limit: usize,
        with_body: bool,
    ) -> Result<Vec<DeadLetter>, StoreError>;

    /// Every dead letter back in the queue, due now, attempts and age counted afresh.
    async fn redrive(&self, now_ms: u64) -> Result<u64, StoreError>;

    /// Cheap (no I/O): read on every metrics scrape.
    fn stats(&self) -> StoreStats;

    /// Forget every lease (the worker stopped; its deliveries were abandoned).
    fn release_leases(&self);

    /// A reload changed the live settings (a fleet store paces the whole fleet at `rate`).
    fn update(&self, _live: &super::spec::LiveSettings) {}
}
