//! Fleet-test helpers: limit specs written as a config would, fleets on a test Redis, and the
//! local limiter as the reference a fleet decision must equal.

use std::num::NonZeroUsize;
use std::time::Duration;

use seawall::config::values;
use seawall::fleet::{
    Fleet, FleetAnswer, FleetCheck, FleetKey, FleetLimit, FleetMetrics, FleetOptions, FleetSpec,
    Via,
};
use seawall::limits::limiter::{Decision, Limiter, Params};
use seawall::limits::{LimitSpec, Scope};

use super::redis::RedisServer;

/// How a limit treats excess within its burst (nginx's three ways).
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    NoDelay,
    Delay(u32),
    DelayAll,
}

pub fn limit(
    name: &str,
    key: &str,
    rate: &str,
    burst: u32,
    mode: Mode,
    dry_run: bool,
) -> LimitSpec {
    LimitSpec {
        name: name.into(),
        key: values::limit_key(key).expect("key"),
        rate: values::rate(rate).expect("rate"),
        burst,
        nodelay: matches!(mode, Mode::NoDelay),
        delay: match mode {
            Mode::Delay(n) => n,
            _ => 0,
        },
        dry_run,
        status: http::StatusCode::TOO_MANY_REQUESTS,
        max_keys: NonZeroUsize::new(10_000).expect("non-zero"),
        exempt: Vec::new(),
        scope: Scope::Fleet,
    }
}

/// The spec of a fleet on `redis`: defaults, except a timeout that a loaded test machine
/// cannot miss (tests of the timeout itself set their own).
pub fn spec(redis: &RedisServer) -> FleetSpec {
    let mut s = FleetSpec::new(redis.url());
    s.timeout = Duration::from_secs(1);
    if let Some(ca) = &redis.ca_file {
        s.ca_pem = Some(std::fs::read(ca).expect("ca"));
    }
    s
}

/// A started fleet that has reached Redis.
pub async fn up(spec: FleetSpec, opts: FleetOptions) -> (Fleet, FleetMetrics) {
    let metrics = FleetMetrics::new();
    let fleet = Fleet::start(spec, metrics.clone(), opts).expect("start fleet");
    assert!(
        fleet.wait_up(Duration::from_secs(10)).await,
        "fleet store not up"
    );
    (fleet, metrics)
}

pub fn no_cache() -> FleetOptions {
    FleetOptions {
        reject_cache: false,
        ..FleetOptions::default()
    }
}

pub fn key(v: &str) -> FleetKey {
    FleetKey::value(v.as_bytes())
}

pub fn check<'a>(l: &'a FleetLimit, k: Option<&str>) -> FleetCheck<'a> {
    FleetCheck {
        limit: l,
        key: k.map(key),
    }
}

/// A decision that Redis must have taken; with Redis's clock reading.
pub async fn by_redis(fleet: &Fleet, checks: &[FleetCheck<'_>]) -> (Decision, u64) {
    match fleet.decide(checks).await {
        FleetAnswer::Decided {
            decision,
            via: Via::Redis { now_ms },
        } => (decision, now_ms),
        other => panic!(
            "expected a decision by Redis, got {other:?} ({:?})",
            fleet.last_error()
        ),
    }
}

/// The local limiter for `spec`: the reference.
pub fn local(spec: &LimitSpec) -> Limiter {
    Limiter::new(Params::from_spec(spec))
}
