//! `[fleet]` as config loading compiles it: checked, secrets read, ready to connect with.

use std::num::NonZeroU32;
use std::time::Duration;

/// Default `timeout`: one loopback or same-rack round trip is well under a millisecond; 5 ms
/// leaves room for a busy Redis without holding a request long when it is gone.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5);

/// Default `expected_instances` (CONFIG.md).
pub const DEFAULT_EXPECTED_INSTANCES: u32 = 3;

/// What a fleet limit does while Redis is unreachable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Each instance enforces the limit locally at `rate / expected_instances`.
    #[default]
    Local,
    /// The limit does not apply.
    Open,
    /// The request is refused with 503 and `Retry-After`.
    Closed,
}

impl OnStoreError {
    pub fn label(self) -> &'static str {
        match self {
            OnStoreError::Local => "local",
            OnStoreError::Open => "open",
            OnStoreError::Closed => "closed",
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct FleetSpec {
    /// `redis://` or `rediss://` URL as written (checked at load).
    pub redis: String,
    /// From `redis_password_file`; never from the main file.
    pub password: Option<String>,
    /// PEM roots from `redis_ca_file` for `rediss://` to a private CA; `None`: the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// `instance`; `None`: the host name, resolved at start.
    pub instance: Option<String>,
    pub timeout: Duration,
    pub on_store_error: OnStoreError,
    pub expected_instances: NonZeroU32,
}

impl FleetSpec {
    /// A spec with the defaults of CONFIG.md, for tests and tools.
    pub fn new(redis: impl Into<String>) -> FleetSpec {
        FleetSpec {
            redis: redis.into(),
            password: None,
            ca_pem: None,
            instance: None,
            timeout: DEFAULT_TIMEOUT,
            on_store_error: OnStoreError::Local,
            expected_instances: NonZeroU32::new(DEFAULT_EXPECTED_INSTANCES)
                .unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// The password never reaches a log line or `/-/config`.
impl std::fmt::Debug for FleetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSpec")
            .field("redis", &self.redis)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .field("instance", &self.instance)
            .field("timeout", &self.timeout)
            .field("on_store_error", &self.on_store_error)
            .field("expected_instances", &self.expected_instances)
            .finish()
    }
}
