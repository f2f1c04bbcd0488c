//! Durable lead queues: the client hears "accepted" once its whole request is fsynced; a worker
//! replays it to the app at a pace the app can take.
//!
//! ```text
//! proxy (request path)                      worker (one task per queue)
//!   QueueHandle::accept(lead)                 pace slot (Pacer, AIMD) + in-flight permit
//!     -> Store::append (group commit,         -> Store::lease(due now)
//!        fsync) -> Receipt | Refusal          -> Sender::send (Pingora connector -> deliver_to)
//!                                             -> ack | retry (backoff, Retry-After) | bury
//! ```
//!
//! - [`store`]: the store trait (the spool here; a Redis stream elsewhere) and its types;
//! - [`spool`]: the embedded store, one redb file per queue; [`salvage`] for a damaged file;
//! - [`record`]: the on-disk encoding of a lead;
//! - [`pace`]: pure pacing, AIMD and backoff arithmetic, driven by an injected clock;
//! - [`deliver`]: the HTTP replay of one entry and how its answer is judged;
//! - [`worker`]: the delivery loop;
//! - [`registry`]: queues kept across reloads by name, the reload rules, admin JSON, metrics.

pub mod deliver;
pub mod pace;
pub mod record;
pub mod registry;
pub mod salvage;
pub mod spec;
pub mod spool;
pub mod store;
pub mod worker;

pub use deliver::{PingoraSender, SendOutcome, Sender};
pub use record::{Forwarding, Lead};
pub use registry::{QueueHandle, Queues};
pub use spec::{AcceptedAnswer, QueueSpec, RetrySpec, StoreKind};
pub use store::{Accepted, EntryId, Refusal, Store, StoreError};

/// Wall-clock milliseconds since the Unix epoch. Due times and ages are persisted, so they are
/// wall time (a monotonic clock restarts with the process); injected so tests move it by hand.
pub trait WallClock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A clock tests set by hand.
#[derive(Debug, Default)]
pub struct FakeWallClock(pub std::sync::atomic::AtomicU64);

impl FakeWallClock {
    pub fn at(ms: u64) -> FakeWallClock {
        FakeWallClock(std::sync::atomic::AtomicU64::new(ms))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WallClock for FakeWallClock {
    fn now_ms(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A receipt: 48 bits of milliseconds then 80 random bits, as 32 hex digits. Time-ordered, so
/// a support person can tell roughly when a lead came in; 80 random bits, so receipts cannot be
/// guessed or enumerated by a client.
pub fn new_receipt(now_ms: u64) -> String {
    let r: u128 = rand::random::<u128>() & ((1u128 << 80) - 1);
    format!("{:012x}{:020x}", now_ms & 0xffff_ffff_ffff, r)
}

/// RFC 3339 in UTC with milliseconds, for `X-Seawall-Queued-At` and the admin JSON.
pub fn rfc3339_ms(ms: u64) -> String {
    match jiff::Timestamp::from_millisecond(ms as i64) {
        Ok(t) => format!("{t:.3}"),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}
