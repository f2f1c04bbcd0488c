//! A queue as the config defines it, in plain checked values (the loader builds it; the queue
//! never sees config types).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::upstream::Upstream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store: this directory (absolute, or relative to the main file, resolved).
    Spool { path: PathBuf },
    /// A Redis stream shared by the fleet (built elsewhere against [`super::Store`]).
    Redis,
}

impl StoreKind {
    pub fn is_redis(&self) -> bool {
        matches!(self, StoreKind::Redis)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySpec {
    pub initial: Duration,
    pub max: Duration,
}

/// What the client hears once its request is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptedAnswer {
    Status {
        status: StatusCode,
        body: Bytes,
        content_type: HeaderValue,
    },
    /// 303 See Other to this location: what an HTML form needs (the browser shows the page).
    Redirect { location: HeaderValue },
}

impl Default for AcceptedAnswer {
    fn default() -> Self {
        AcceptedAnswer::Status {
            status: StatusCode::ACCEPTED,
            body: Bytes::from_static(b"Accepted.\n"),
            content_type: HeaderValue::from_static("text/plain; charset=utf-8"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: Arc<str>,
    pub store: StoreKind,
    pub max_bytes: u64,
    pub max_body: u64,
    pub deliver_to: Arc<Upstream>,
    /// Delivery pace at most, in milli-requests per second (nginx's integer rate: `1r/m` = 16).
    pub rate_mrps: u64,
    /// The rate as written, for messages and the admin JSON.
    pub rate_text: String,
    pub max_inflight: u32,
    pub retry: RetrySpec,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub accepted: AcceptedAnswer,
}

impl QueueSpec {
    /// The settings a reload may change on a running queue without touching its store.
    pub fn live(&self) -> LiveSettings {
        LiveSettings {
            deliver_to: self.deliver_to.clone(),
            rate_mrps: self.rate_mrps,
            max_inflight: self.max_inflight,
            retry: self.retry,
            max_attempts: self.max_attempts,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_body: self.max_body,
            accepted: self.accepted.clone(),
        }
    }
}

/// The part of a spec the worker and the accept path read on every use, swapped whole on reload.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    pub deliver_to: Arc<Upstream>,
    pub rate_mrps: u64,
    pub max_inflight: u32,
    pub retry: RetrySpec,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub max_bytes: u64,
    pub max_body: u64,
    pub accepted: AcceptedAnswer,
}
