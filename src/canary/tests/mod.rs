//! The canary's behaviour without a socket: synthetic windows, synthetic clients, a fake clock.

mod judge;
mod split;
mod state;

use std::sync::Arc;
use std::time::Duration;

use super::{CanarySpec, Sticky};

/// A spec like CONFIG.md's example, with client-IP stickiness.
pub(super) fn spec() -> CanarySpec {
    CanarySpec {
        upstream: Arc::from("app-v2"),
        weight: 5,
        sticky: Sticky::ClientIp,
        window: Duration::from_secs(60),
        min_requests: 100,
        max_error_rate: Some(0.02),
        max_p99: Some(Duration::from_millis(800)),
        bad_windows: 2,
        freeze_during_launches: false,
        release: None,
    }
}
