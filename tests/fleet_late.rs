//! A round trip that misses `timeout` is not an outage by itself (src/fleet/late.rs): on a busy
//! host a thread holding Redis's answer can wait for a core longer than the budget. The request
//! that missed takes `on_store_error`; the next one asks Redis again, with no backoff.
//! (A Redis that stays hung is still found: tests/fleet_outage.rs.)

mod common;

use std::time::Duration;

use seawall::fleet::{FleetAnswer, FleetOptions, OnStoreError, Via};

use common::fleet::{Mode, by_redis, check, limit, spec, up};
use common::redis::RedisServer;

#[tokio::test]
async fn one_late_answer_costs_that_request_only_not_a_backoff() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut s = spec(&redis);
    // Long enough that only the paused Redis misses it on a loaded test machine, and short
    // enough that the run of misses that means an outage (4 timeouts, at most 250 ms) stays
    // well beyond this one miss even when its timer fires late: 200 ms left only 50 ms.
    s.timeout = Duration::from_millis(50);
    s.on_store_error = OnStoreError::Open;
    let opts = FleetOptions {
        heartbeat: Duration::from_secs(3600),
        ..FleetOptions::default()
    };
    let (fleet, metrics) = up(s, opts).await;
    let l = fleet.limit("r", &limit("l", "global", "10r/s", 5, Mode::NoDelay, false));
    by_redis(&fleet, &[check(&l, Some("-"))]).await;

    redis.pause();
    let a = fleet.decide(&[check(&l, Some("-"))]).await;
    redis.resume();
    assert!(
        matches!(
            a,
            FleetAnswer::Decided {
                via: Via::Fallback(OnStoreError::Open),
                ..
            }
        ),
        "the late request takes on_store_error: {a:?}"
    );
    assert!(
        fleet.is_up(),
        "one late answer does not take the store down"
    );
    assert_eq!(metrics.store_up.get(), 1);
    assert_eq!(fleet.last_error(), None);
    // The very next request is decided by Redis: no backoff, no probe to wait for.
    by_redis(&fleet, &[check(&l, Some("-"))]).await;
}
