//! Fleet limits through the proxy: three Seawall instances sharing one real redis-server admit
//! what one would; a route mixing local and fleet limits keeps nginx's "a reject charges none";
//! Redis killed under load: each on_store_error mode answers as it should, and the store comes
//! back by itself.

mod common;

use std::time::Duration;

use common::redis::RedisServer;
use common::{Kit, Seawall, TestUpstream};

/// A Seawall on `redis` with `limits` on route "signup"; `extra` goes in `[fleet]`.
fn start(
    app: &TestUpstream,
    redis: &RedisServer,
    instance: &str,
    limits: &str,
    extra: &str,
) -> Seawall {
    Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&format!(
            r#"
[fleet]
redis = "{}"
instance = "{instance}"
timeout = "250ms"
{extra}

[upstreams.app]
servers = ["{}"]

[[routes]]
name = "signup"
upstream = "app"
{limits}
"#,
            redis.url(),
            app.addr
        ))
}

async fn up(sw: &Seawall) {
    let fleet = sw.state().fleet().expect("[fleet] started");
    assert!(fleet.wait_up(Duration::from_secs(10)).await, "Redis not up");
}

async fn status_from(sw: &Seawall, ip: &str) -> u16 {
    sw.client
        .post(sw.url("/signup"))
        .header("x-forwarded-for", ip)
        .body("x")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const GLOBAL_FLEET: &str = r#"
  [[routes.limits]]
  name = "fleet-wide"
  key = "global"
  rate = "1r/m"
  burst = 5
  nodelay = true
  scope = "fleet"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_redis_admit_what_one_would() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let sws: Vec<Seawall> = ["a", "b", "c"]
        .iter()
        .map(|n| start(&app, &redis, n, GLOBAL_FLEET, ""))
        .collect();
    for sw in &sws {
        up(sw).await;
    }
    // Round robin over the three, as a load balancer would: burst 5 + 1 pass in all, not 18.
    let mut statuses = Vec::new();
    for i in 0..30 {
        statuses.push(status_from(&sws[i % 3], "198.51.100.1").await);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        6,
        "{statuses:?}"
    );
    assert!(statuses[..6].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses[6..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(app.hits(), 6);
    // Every instance sees the others.
    let v: serde_json::Value = sws[0].admin_get("/-/config").await.json().await.unwrap();
    let mut names: Vec<String> = v["fleet"]["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(v["fleet"]["up"], true);
    sws[1]
        .expect_metric("seawall_fleet_store_up", &[], 1.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_mixing_local_and_fleet_limits_charges_none_on_a_reject() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let limits = r#"
  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "1r/m"
  burst = 1
  nodelay = true
  [[routes.limits]]
  name = "fleet-wide"
  key = "global"
  rate = "1r/m"
  burst = 2
  nodelay = true
  scope = "fleet"
"#;
    let sw = start(&app, &redis, "solo", limits, "");
    up(&sw).await;
    // One client: its local limit (not the last one, so nginx charges its fresh key too)
    // allows 1, then rejects; those rejects charge the fleet limit nothing, so the fleet-wide
    // burst (3 in all) still has room for two more clients.
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(status_from(&sw, "192.0.2.1").await);
    }
    assert_eq!(got, [200, 429, 429, 429]);
    assert_eq!(status_from(&sw, "192.0.2.2").await, 200);
    assert_eq!(status_from(&sw, "192.0.2.3").await, 200);
    // Now the fleet limit is spent: another client is rejected by it.
    assert_eq!(status_from(&sw, "192.0.2.4").await, 429);
    sw.expect_metric(
        "seawall_ratelimit_decisions_total",
        &[
            ("route", "signup"),
            ("limit", "fleet-wide"),
            ("decision", "rejected"),
        ],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_ratelimit_decisions_total",
        &[
            ("route", "signup"),
            ("limit", "per-ip"),
            ("decision", "rejected"),
        ],
        3.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_local_mode_keeps_limiting_and_the_store_comes_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let limits = r#"
  [[routes.limits]]
  name = "fleet-per-ip"
  key = "client_ip"
  rate = "1r/m"
  burst = 2
  nodelay = true
  scope = "fleet"
"#;
    let sw = start(
        &app,
        &redis,
        "x",
        limits,
        "on_store_error = \"local\"\nexpected_instances = 1",
    );
    up(&sw).await;
    redis.kill();
    // Every answer is the chosen mode's: the local limiter (at rate / 1), never a 5xx.
    let mut got = Vec::new();
    for _ in 0..6 {
        got.push(status_from(&sw, "203.0.113.7").await);
    }
    assert_eq!(got, [200, 200, 200, 429, 429, 429]);
    sw.expect_metric("seawall_fleet_store_up", &[], 0.0).await;
    assert!(
        sw.metric(
            "seawall_fleet_fallback_decisions_total",
            &[("route", "signup"), ("limit", "fleet-per-ip")]
        )
        .await
            >= 6.0
    );
    redis.restart();
    assert_eventually!(
        Duration::from_secs(5),
        "the store is up again",
        sw.state().fleet().unwrap().is_up()
    );
    // Back on Redis (its state was lost with it): a fresh allowance there.
    assert_eq!(status_from(&sw, "203.0.113.7").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_closed_mode_answers_503_with_retry_after() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let sw = start(
        &app,
        &redis,
        "x",
        GLOBAL_FLEET,
        "on_store_error = \"closed\"",
    );
    up(&sw).await;
    assert_eq!(status_from(&sw, "192.0.2.9").await, 200);
    redis.kill();
    for _ in 0..3 {
        let r = sw
            .client
            .post(sw.url("/signup"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert!(
            r.text()
                .await
                .unwrap()
                .contains("cannot be checked right now")
        );
    }
    assert_eq!(
        app.hits(),
        1,
        "nothing reaches the app while the limit cannot be checked"
    );
}
