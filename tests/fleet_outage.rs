//! Redis trouble never takes the edge down: a real redis-server killed (SIGKILL), hung
//! (SIGSTOP), flushed of its scripts, behind a password and behind TLS; each `on_store_error`
//! mode answering as it should within the timeout; the store coming back by itself; the
//! metrics and the one log line per transition; heartbeats and Redis's persistence settings.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use seawall::fleet::{
    CLOSED_RETRY_AFTER_S, Fleet, FleetAnswer, FleetMetrics, FleetOptions, OnStoreError, Via,
};
use seawall::limits::limiter::Verdict;

use common::fleet::{Mode, by_redis, check, limit, spec, up};
use common::redis::RedisServer;

/// Every log line of this test binary. One global subscriber, not a per-thread one: tracing
/// caches whether a call site is enabled across threads, so a thread-local subscriber can miss
/// lines while other tests run. A test tells its lines apart by its Redis URL (a free port).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn lines() -> &'static Lines {
    static LINES: OnceLock<Lines> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Lines::default();
        let w = lines.clone();
        tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .init();
        lines
    })
}

/// Lines about the Redis at `url` that contain `needle`.
fn count(url: &str, needle: &str) -> usize {
    let text = String::from_utf8_lossy(&lines().0.lock().unwrap()).into_owned();
    let url = format!("redis={url}");
    text.lines()
        .filter(|l| l.contains(needle) && l.contains(&url))
        .count()
}

/// Redis killed mid-traffic: the mode's answer at once, one "down" line however many
/// requests, store_up 0, the fallback counted; restarted: back to Redis by itself, one "up" line.
async fn outage(mode: OnStoreError) {
    lines();
    let mut redis = RedisServer::start().expect("redis-server");
    let mut s = spec(&redis);
    s.on_store_error = mode;
    // A killed Redis refuses at once; the timeout only has to hold on a busy test machine.
    s.timeout = Duration::from_millis(50);
    let (fleet, metrics) = up(s, FleetOptions::default()).await;
    assert_eq!(metrics.store_up.get(), 1);
    let l = fleet.limit(
        "signup",
        &limit("per-key", "header:x-k", "30r/s", 0, Mode::NoDelay, false),
    );
    by_redis(&fleet, &[check(&l, Some("warm"))]).await;

    redis.kill();
    for i in 0..20 {
        let t = Instant::now();
        let a = fleet.decide(&[check(&l, Some("k"))]).await;
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "request {i}: {:?}",
            t.elapsed()
        );
        match (mode, &a) {
            (OnStoreError::Local, FleetAnswer::Decided { decision, via }) => {
                assert_eq!(*via, Via::Fallback(OnStoreError::Local));
                if i == 0 {
                    assert_eq!(decision.rejected, None, "a fresh key passes");
                } else if i == 1 {
                    // The local share is 30r/s / 3 instances: the next request in 100 ms.
                    let Verdict::Rejected { retry_after_ms, .. } = decision.verdicts[0] else {
                        panic!("{decision:?}");
                    };
                    assert!((90..=100).contains(&retry_after_ms), "{retry_after_ms}");
                }
            }
            (OnStoreError::Open, FleetAnswer::Decided { decision, via }) => {
                assert_eq!(*via, Via::Fallback(OnStoreError::Open));
                assert_eq!(decision.verdicts, [Verdict::Skipped]);
            }
            (OnStoreError::Closed, FleetAnswer::Unavailable { retry_after_s }) => {
                assert_eq!(*retry_after_s, CLOSED_RETRY_AFTER_S);
            }
            _ => panic!("{mode:?}: {a:?}"),
        }
    }
    assert!(!fleet.is_up());
    assert_eq!(metrics.store_up.get(), 0);
    let fallbacks = metrics
        .fallback_decisions
        .with_label_values(&["signup", "per-key"])
        .get();
    assert_eq!(fallbacks, 20);
    let url = redis.url();
    assert_eq!(
        count(&url, "fleet store down"),
        1,
        "one line per transition"
    );

    redis.restart();
    assert_eventually!(
        Duration::from_secs(5),
        "store up again",
        metrics.store_up.get() == 1
    );
    by_redis(&fleet, &[check(&l, Some("after"))]).await;
    assert_eq!(count(&url, "fleet store up"), 2, "at start and once again");
    assert_eq!(count(&url, "fleet store down"), 1);
}

#[tokio::test]
async fn redis_killed_with_local_fallback_limits_each_instance_to_its_share() {
    if !common::redis::available() {
        return;
    }
    outage(OnStoreError::Local).await;
}

#[tokio::test]
async fn redis_killed_with_open_lets_requests_through() {
    if !common::redis::available() {
        return;
    }
    outage(OnStoreError::Open).await;
}

#[tokio::test]
async fn redis_killed_with_closed_refuses_with_retry_after() {
    if !common::redis::available() {
        return;
    }
    outage(OnStoreError::Closed).await;
}

#[tokio::test]
async fn a_hung_redis_costs_a_few_timeouts_then_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut s = spec(&redis);
    s.timeout = Duration::from_millis(5);
    s.on_store_error = OnStoreError::Open;
    // No heartbeat after the first: only the requests below talk to Redis.
    let opts = FleetOptions {
        heartbeat: Duration::from_secs(3600),
        ..FleetOptions::default()
    };
    let (fleet, metrics) = up(s, opts).await;
    let l = fleet.limit("r", &limit("l", "global", "10r/s", 5, Mode::NoDelay, false));
    // 5 ms is tight for a loaded test machine: a miss takes the store down for a backoff.
    assert_eventually!(Duration::from_secs(5), "a decision by Redis", {
        matches!(
            fleet.decide(&[check(&l, Some("-"))]).await,
            FleetAnswer::Decided {
                via: Via::Redis { .. },
                ..
            }
        )
    });
    let calls_before = metrics.store_duration.get_sample_count();

    redis.pause();
    let t = Instant::now();
    let a = fleet.decide(&[check(&l, Some("-"))]).await;
    let first = t.elapsed();
    assert!(
        matches!(
            a,
            FleetAnswer::Decided {
                via: Via::Fallback(OnStoreError::Open),
                ..
            }
        ),
        "{a:?}"
    );
    // The 5 ms budget, not redis-rs's default 500 ms (some slack for a loaded machine).
    assert!(first >= Duration::from_millis(5), "{first:?}");
    assert!(first < Duration::from_millis(100), "{first:?}");
    // One late answer is no outage (tests/fleet_late.rs); timeouts that go on for 4 timeouts'
    // worth are: at most 3 more, then no Redis call and no waiting.
    let t = Instant::now();
    for _ in 0..100 {
        fleet.decide(&[check(&l, Some("-"))]).await;
    }
    assert!(!fleet.is_up());
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "no waiting while down: {:?}",
        t.elapsed()
    );
    let calls = metrics.store_duration.get_sample_count() - calls_before;
    assert!(
        (2..=4).contains(&calls),
        "{calls} Redis calls: then none while down"
    );

    redis.resume();
    assert_eventually!(Duration::from_secs(5), "store up again", fleet.is_up());
}

#[tokio::test]
async fn a_flushed_script_is_loaded_again() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (fleet, _) = up(spec(&redis), FleetOptions::default()).await;
    let l = fleet.limit(
        "r",
        &limit("l", "header:x-k", "1r/m", 5, Mode::NoDelay, false),
    );
    let (d, _) = by_redis(&fleet, &[check(&l, Some("k"))]).await;
    assert_eq!(d.verdicts, [Verdict::Passed { excess: 0 }]);
    let loads = |r: &RedisServer| r.command_calls().get("script|load").copied().unwrap_or(0);
    let before = loads(&redis);
    let _: String = redis.cmd(&["SCRIPT", "FLUSH"]);
    let (d, _) = by_redis(&fleet, &[check(&l, Some("k"))]).await;
    // The key's state survived (a fresh key would be at 0); 1r/m drains 1 per 62.5 ms.
    let Verdict::Passed { excess } = d.verdicts[0] else {
        panic!("{d:?}");
    };
    assert!(
        (900..=1000).contains(&excess),
        "state kept, script reloaded: {excess}"
    );
    assert_eq!(loads(&redis), before + 1);
    assert!(fleet.is_up(), "NOSCRIPT is no outage");
}

#[tokio::test]
async fn auth_with_a_password_file() {
    let Some(redis) = RedisServer::builder().password("pw-from-file").start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis.pw"), "pw-from-file\n").unwrap();
    let main = format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[fleet]\nredis = \"{}\"\n\
         redis_password_file = \"redis.pw\"\ntimeout = \"1s\"\n",
        redis.url()
    );
    std::fs::write(dir.path().join("seawall.toml"), main).unwrap();
    let loaded = seawall::config::load(&dir.path().join("seawall.toml")).expect("config loads");
    let s = loaded.spec.settings.fleet.expect("[fleet]");
    let (fleet, _) = up(s.clone(), FleetOptions::default()).await;
    let l = fleet.limit("r", &limit("l", "global", "10r/s", 0, Mode::NoDelay, false));
    by_redis(&fleet, &[check(&l, Some("-"))]).await;

    let mut wrong = s;
    wrong.password = Some("guess".into());
    let f = Fleet::start(wrong, FleetMetrics::new(), FleetOptions::default()).unwrap();
    assert!(
        !f.wait_up(Duration::from_millis(1500)).await,
        "a wrong password never connects"
    );
    assert!(matches!(
        f.decide(&[check(&l, Some("-"))]).await,
        FleetAnswer::Decided {
            via: Via::Fallback(_),
            ..
        }
    ));
}

#[tokio::test]
async fn rediss_with_a_private_ca() {
    let Some(redis) = RedisServer::builder().tls().start() else {
        return;
    };
    let (fleet, _) = up(spec(&redis), FleetOptions::default()).await;
    assert!(fleet.spec().redis.starts_with("rediss://"));
    let l = fleet.limit("r", &limit("l", "global", "10r/s", 0, Mode::NoDelay, false));
    by_redis(&fleet, &[check(&l, Some("-"))]).await;

    // Without the CA the certificate is not trusted: no connection, the fallback applies.
    let mut untrusted = spec(&redis);
    untrusted.ca_pem = None;
    let f = Fleet::start(untrusted, FleetMetrics::new(), FleetOptions::default()).unwrap();
    assert!(!f.wait_up(Duration::from_millis(1500)).await);
}

#[tokio::test]
async fn instances_heartbeat_and_leave() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let named = |n: &str| {
        let mut s = spec(&redis);
        s.instance = Some(n.to_string());
        s
    };
    let (a, ma) = up(named("edge-a"), FleetOptions::default()).await;
    let (b, _) = up(named("edge-b"), FleetOptions::default()).await;
    assert_eventually!(
        Duration::from_secs(5),
        "two instances",
        ma.instances.get() == 2
    );
    let names: Vec<String> = a
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["edge-a", "edge-b"]);
    let ttl: i64 = redis.cmd(&["PTTL", "seawall:{instances}:edge-a"]);
    assert!(
        (1..=5000).contains(&ttl),
        "heartbeat key expires by itself: {ttl}"
    );
    drop(b);
    assert_eventually!(
        Duration::from_secs(8),
        "edge-b gone",
        ma.instances.get() == 1
    );
    let names: Vec<String> = a
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, ["edge-a"]);
}

#[tokio::test]
async fn persistence_settings_are_read_on_connect() {
    let Some(volatile) = RedisServer::start() else {
        return;
    };
    let (f, _) = up(spec(&volatile), FleetOptions::default()).await;
    assert_eq!(f.persistence(), Some(Ok(("no".into(), "everysec".into()))));
    assert!(
        f.durability_warning()
            .unwrap()
            .contains("appendonly \"no\"")
    );

    let durable = RedisServer::builder()
        .arg("--appendonly")
        .arg("yes")
        .arg("--appendfsync")
        .arg("always")
        .start()
        .expect("redis-server");
    let (f, _) = up(spec(&durable), FleetOptions::default()).await;
    assert_eq!(f.durability_warning(), None);
    // Read again on reconnect: a Redis restarted with weaker settings is noticed.
    let _: String = durable.cmd(&["CONFIG", "SET", "appendfsync", "everysec"]);
    let _: i64 = durable.cmd(&["CLIENT", "KILL", "TYPE", "normal"]);
    let l = f.limit("r", &limit("l", "global", "10r/s", 0, Mode::NoDelay, false));
    assert_eventually!(Duration::from_secs(5), "noticed", {
        let _ = f.decide(&[check(&l, Some("-"))]).await;
        f.durability_warning().is_some()
    });
}
