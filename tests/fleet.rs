//! Fleet limits against a real redis-server: the Lua script decides exactly as the local
//! limiter does, several instances share one limit, the "rejected until" cache answers only
//! what Redis would, and a decision costs one round trip.
//!
//! Parity is checked decision by decision and exactly: every answer from Redis carries the
//! Redis clock reading the script used, and the local limiter (src/limits/limiter.rs, itself
//! proven against nginx in tests/nginx_parity.rs) is fed that same instant. So no timing
//! margin is needed: any difference in excess, delay, retry time or verdict is a bug, however
//! the requests were scheduled.

mod common;

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use seawall::fleet::{FleetAnswer, FleetCheck, FleetOptions, Via};
use seawall::limits::limiter::{Check, Verdict, decide};

use common::fleet::{Mode, by_redis, check, key, limit, local, no_cache, spec, up};
use common::redis::RedisServer;

/// Kinds of verdict a trace produced, to prove it covers the cases.
#[derive(Default, Debug)]
struct Seen {
    passed: usize,
    delayed: usize,
    rejected: usize,
    dry_run_rejected: usize,
    not_reached: usize,
    skipped: usize,
    /// A reject at a later limit while an earlier one had passed its lookup (charges nothing).
    reject_after_pass: usize,
}

impl Seen {
    fn add(&mut self, vs: &[Verdict]) {
        for v in vs {
            match v {
                Verdict::Passed { .. } => self.passed += 1,
                Verdict::Delayed { .. } => self.delayed += 1,
                Verdict::Rejected { .. } => self.rejected += 1,
                Verdict::DryRunRejected { .. } => self.dry_run_rejected += 1,
                Verdict::NotReached => self.not_reached += 1,
                Verdict::Skipped => self.skipped += 1,
            }
        }
        if let Some(i) = vs
            .iter()
            .position(|v| matches!(v, Verdict::Rejected { .. }))
            && vs[..i].contains(&Verdict::NotReached)
        {
            self.reject_after_pass += 1;
        }
    }
}

#[tokio::test]
async fn the_script_decides_exactly_as_the_local_limiter_on_a_real_time_trace() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (fleet, _) = up(spec(&redis), no_cache()).await;
    let specs = [
        limit("a", "header:x-a", "10r/s", 3, Mode::NoDelay, false),
        limit("b", "header:x-b", "4r/s", 2, Mode::Delay(1), false),
        limit("c", "header:x-c", "20r/s", 0, Mode::DelayAll, true),
        limit("d", "header:x-d", "2r/s", 1, Mode::DelayAll, false),
    ];
    let fleet_limits: Vec<_> = specs.iter().map(|s| fleet.limit("route", s)).collect();
    let locals: Vec<_> = specs.iter().map(local).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let values = ["k1", "k2", "k3"];
    let gaps_ms = [0, 0, 2, 10, 30, 80, 250];
    let mut seen = Seen::default();
    for n in 0..140 {
        let keys: Vec<Option<&str>> = (0..specs.len())
            .map(|_| (!rng.random_bool(0.15)).then(|| values[rng.random_range(0..values.len())]))
            .collect();
        let checks: Vec<FleetCheck<'_>> = fleet_limits
            .iter()
            .zip(&keys)
            .map(|(l, k)| check(l, *k))
            .collect();
        let (got, now) = by_redis(&fleet, &checks).await;
        let local_checks: Vec<Check<'_>> = locals
            .iter()
            .zip(&keys)
            .zip(&specs)
            .map(|((l, k), s)| Check {
                limiter: l,
                key: k.map(|k| key(k).local()),
                dry_run: s.dry_run,
            })
            .collect();
        let want = decide(&local_checks, now);
        assert_eq!(got, want, "request {n} at {now} with keys {keys:?}");
        seen.add(&got.verdicts);
        tokio::time::sleep(Duration::from_millis(
            gaps_ms[rng.random_range(0..gaps_ms.len())],
        ))
        .await;
    }
    // The trace covers every kind of answer, and rejects that follow a passed lookup.
    assert!(seen.passed > 20, "{seen:?}");
    assert!(seen.delayed > 5, "{seen:?}");
    assert!(seen.rejected > 5, "{seen:?}");
    assert!(seen.dry_run_rejected > 5, "{seen:?}");
    assert!(seen.not_reached > 5, "{seen:?}");
    assert!(seen.skipped > 5, "{seen:?}");
    assert!(seen.reject_after_pass > 2, "{seen:?}");
}

#[tokio::test]
async fn a_fresh_key_passes_burst_plus_one_and_a_reject_charges_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (fleet, _) = up(spec(&redis), no_cache()).await;
    let per_key = fleet.limit(
        "signup",
        &limit("per-key", "header:x-k", "1r/m", 2, Mode::NoDelay, false),
    );
    let global = fleet.limit(
        "signup",
        &limit("global", "global", "1r/m", 0, Mode::NoDelay, false),
    );
    // burst 2: three back to back, the fourth rejected.
    for i in 0..3 {
        let (d, _) = by_redis(&fleet, &[check(&per_key, Some("a"))]).await;
        assert_eq!(d.rejected, None, "request {i}");
    }
    let (d, _) = by_redis(&fleet, &[check(&per_key, Some("a"))]).await;
    assert_eq!(d.rejected, Some(0));
    // Two limits, the global one (burst 0) last. The first request passes both; as in nginx's
    // account phase, the per-key limit's fresh entry is charged one request (1000).
    let both = |k: &'static str| [check(&per_key, Some(k)), check(&global, Some("-"))];
    let (d, _) = by_redis(&fleet, &both("b")).await;
    assert_eq!(
        d.verdicts,
        [
            Verdict::Passed { excess: 1000 },
            Verdict::Passed { excess: 0 }
        ]
    );
    // Then the global limit rejects; the per-key limit passed its lookup each time but is
    // never charged for a rejected request.
    for _ in 0..5 {
        let (d, _) = by_redis(&fleet, &both("b")).await;
        assert_eq!(d.rejected, Some(1));
        assert_eq!(d.verdicts[0], Verdict::NotReached);
    }
    // So key "b" has one request of its burst left (1000 + 1000 <= 2000), not zero.
    let (d, _) = by_redis(&fleet, &[check(&per_key, Some("b"))]).await;
    assert_eq!(d.rejected, None, "the rejects charged key b nothing");
    let (d, _) = by_redis(&fleet, &[check(&per_key, Some("b"))]).await;
    assert_eq!(d.rejected, Some(0), "and then its burst is used up");
}

#[tokio::test]
async fn three_instances_in_turn_decide_as_one_limiter() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut fleets = Vec::new();
    for _ in 0..3 {
        fleets.push(up(spec(&redis), no_cache()).await.0);
    }
    let specs = [
        limit("per-key", "header:x-k", "10r/s", 4, Mode::NoDelay, false),
        limit("global", "global", "30r/s", 10, Mode::Delay(5), false),
    ];
    let per_fleet: Vec<Vec<_>> = fleets
        .iter()
        .map(|f| specs.iter().map(|s| f.limit("campaign", s)).collect())
        .collect();
    let locals: Vec<_> = specs.iter().map(local).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut rejected = 0;
    for n in 0..120 {
        let i = n % 3;
        let k = ["a", "b"][rng.random_range(0..2)];
        let checks = [
            check(&per_fleet[i][0], Some(k)),
            check(&per_fleet[i][1], Some("-")),
        ];
        let (got, now) = by_redis(&fleets[i], &checks).await;
        let want = decide(
            &[
                Check {
                    limiter: &locals[0],
                    key: Some(key(k).local()),
                    dry_run: false,
                },
                Check {
                    limiter: &locals[1],
                    key: Some(key("-").local()),
                    dry_run: false,
                },
            ],
            now,
        );
        assert_eq!(got, want, "request {n} via instance {i}");
        rejected += usize::from(got.rejected.is_some());
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..25))).await;
    }
    assert!(
        rejected > 10,
        "the trace must reach the limits ({rejected} rejects)"
    );
}

/// Three instances flood one key at once; sorted by the Redis time of each decision, the
/// local limiter admits exactly as many. Requests the cache answered were rejects Redis would
/// have made too (checked in `the_cache_answers_only_what_redis_would`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_flooding_at_once_admit_what_one_would() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let spec_ = limit("flood", "header:x-k", "20r/s", 5, Mode::NoDelay, false);
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (fleet, _) = up(spec(&redis), FleetOptions::default()).await;
        let s = spec_.clone();
        tasks.push(tokio::spawn(async move {
            let l = fleet.limit("route", &s);
            let mut by_redis = Vec::new();
            let mut cached = 0;
            let end = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < end {
                match fleet.decide(&[check(&l, Some("victim"))]).await {
                    FleetAnswer::Decided {
                        decision,
                        via: Via::Redis { now_ms },
                    } => by_redis.push((now_ms, decision.rejected.is_none())),
                    FleetAnswer::Decided {
                        decision,
                        via: Via::Cache,
                    } => {
                        assert!(decision.rejected.is_some());
                        cached += 1;
                    }
                    other => panic!("{other:?}"),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (by_redis, cached)
        }));
    }
    let mut all = Vec::new();
    let mut cached = 0;
    for t in tasks {
        let (v, c) = t.await.expect("task");
        all.extend(v);
        cached += c;
    }
    all.sort_by_key(|(t, _)| *t);
    let passed = all.iter().filter(|(_, p)| *p).count();
    let reference = local(&spec_);
    let want = all
        .iter()
        .filter(|(t, _)| {
            let d = decide(
                &[Check {
                    limiter: &reference,
                    key: Some(1),
                    dry_run: false,
                }],
                *t,
            );
            d.rejected.is_none()
        })
        .count();
    assert_eq!(
        passed,
        want,
        "{} decisions by Redis, {cached} from the cache",
        all.len()
    );
    // 1.5 s at 20 r/s plus the burst: about 36, however many instances asked.
    assert!((30..=40).contains(&passed), "{passed}");
    assert!(
        cached > 0,
        "a flood on one key is mostly answered from the cache"
    );
}

#[tokio::test]
async fn the_cache_answers_only_what_redis_would() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (cached_fleet, _) = up(spec(&redis), FleetOptions::default()).await;
    let (plain, _) = up(spec(&redis), no_cache()).await;
    let s = limit("per-key", "header:x-k", "5r/s", 2, Mode::NoDelay, false);
    let (lc, lp) = (cached_fleet.limit("route", &s), plain.limit("route", &s));
    let before = redis.command_calls().get("evalsha").copied().unwrap_or(0);
    let (mut hits, mut asked, mut passes) = (0, 0, 0);
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        let asked_at = Instant::now();
        match cached_fleet.decide(&[check(&lc, Some("k"))]).await {
            FleetAnswer::Decided {
                decision,
                via: Via::Cache,
            } => {
                hits += 1;
                // Asking Redis itself charges nothing when it rejects, as it must here...
                let (d, _) = by_redis(&plain, &[check(&lp, Some("k"))]).await;
                if d.rejected.is_none() {
                    // ...unless the block ended between the cache's answer and this check (a
                    // loaded machine can take milliseconds over it): then the cache said when.
                    let Verdict::Rejected { retry_after_ms, .. } = decision.verdicts[0] else {
                        panic!("a cache answer is a reject: {decision:?}");
                    };
                    let waited = asked_at.elapsed().as_millis() as u64;
                    assert!(
                        waited + 2 >= retry_after_ms,
                        "the cache rejected a request Redis would pass: it said {retry_after_ms} ms, \
                         Redis passed it {waited} ms later"
                    );
                    passes += 1;
                }
            }
            FleetAnswer::Decided {
                decision,
                via: Via::Redis { .. },
            } => {
                asked += 1;
                passes += usize::from(decision.rejected.is_none());
            }
            other => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // 2.5 s at 5 r/s plus the burst of 2: the cache let every pass through to Redis.
    assert!((13..=16).contains(&passes), "{passes} passes");
    assert!(
        hits > 10 * asked / 2,
        "{hits} cache hits, {asked} asked Redis"
    );
    let evalsha = redis.command_calls()["evalsha"] - before;
    assert_eq!(
        evalsha as usize,
        asked + hits,
        "one EVALSHA per decision that asked Redis"
    );
}

#[tokio::test]
async fn one_round_trip_per_decision() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let opts = FleetOptions {
        heartbeat: Duration::from_secs(3600),
        ..no_cache()
    };
    let (fleet, _) = up(spec(&redis), opts).await;
    let a = fleet.limit(
        "route",
        &limit("a", "header:x-a", "1000r/s", 100, Mode::NoDelay, false),
    );
    let b = fleet.limit(
        "route",
        &limit("b", "global", "1000r/s", 100, Mode::DelayAll, false),
    );
    // Let the first heartbeat finish, then count from zero.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: String = redis.cmd(&["CONFIG", "RESETSTAT"]);
    for i in 0..50 {
        let k = format!("k{}", i % 7);
        let _ = by_redis(&fleet, &[check(&a, Some(&k)), check(&b, Some("-"))]).await;
    }
    let calls = redis.command_calls();
    let from_clients: Vec<(&String, &u64)> = calls
        .iter()
        .filter(|(c, _)| {
            // The test's own connection (CONFIG RESETSTAT, CLIENT SETINFO, INFO) is not ours.
            !matches!(
                c.as_str(),
                "time" | "get" | "set" | "config|resetstat" | "client|setinfo" | "info"
            )
        })
        .collect();
    // Commands the script runs (TIME, GET, SET) count too, but they are no round trips.
    assert_eq!(from_clients, [(&"evalsha".to_string(), &50)], "{calls:?}");
}
