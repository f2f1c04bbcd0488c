//! Fleet limits in the real binary, whose worker threads decide on connections of their own
//! (`FleetOptions::worker_connections`, on only there): two processes on one redis-server admit
//! what one would, and after Redis is killed and restarted (empty) they decide in Redis again.

mod common;

use std::time::Duration;

use common::process::{Proc, run_ready, server_section};
use common::redis::RedisServer;
use common::{TestUpstream, free_addrs};

struct Instance {
    _proc: Proc,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// What it logged so far (for a failure's message).
    fn log(&self) -> String {
        self.lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

fn start(redis: &RedisServer, app: &TestUpstream, name: &str) -> Instance {
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    let config = dir.path().join("seawall.toml");
    std::fs::write(
        &config,
        format!(
            r#"{server}
[fleet]
redis = "{redis}"
instance = "{name}"
timeout = "250ms"

[upstreams.app]
servers = ["{app}"]

[[routes]]
name = "signup"
path_prefix = "/"
upstream = "app"
  [[routes.limits]]
  name = "fleet-wide"
  key = "header:x-tenant"
  rate = "1r/m"
  burst = 5
  nodelay = true
  scope = "fleet"
"#,
            server = server_section(dir.path(), listen, admin),
            redis = redis.url(),
            app = app.addr,
        ),
    )
    .unwrap();
    let (p, lines) = run_ready(&config);
    Instance {
        _proc: p,
        listen,
        admin,
        lines,
        _dir: dir,
    }
}

async fn metric(i: &Instance, name: &str) -> f64 {
    let text = common::client()
        .get(format!("http://{}/metrics", i.admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The sum over the metric's series (the fallback counter has one per limit and mode).
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// `n` requests of `tenant` round-robin over `instances`, each on a new connection (so both
/// worker threads of each process take some): the statuses.
async fn round_robin(instances: &[&Instance], tenant: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for k in 0..n {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let r = c
            .get(format!("http://{}/", instances[k % instances.len()].listen))
            .header("x-tenant", tenant)
            .send()
            .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => panic!(
                "request {k} of {tenant}: {e:?}\n{}",
                instances
                    .iter()
                    .map(|i| i.log())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            ),
        };
        out.push(r.status().as_u16());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_admit_what_one_would_and_decide_in_redis_again_after_a_restart() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let (a, b) = (start(&redis, &app, "a"), start(&redis, &app, "b"));
    for i in [&a, &b] {
        assert_eventually!(
            Duration::from_secs(10),
            "the fleet store is up",
            metric(i, "seawall_fleet_store_up").await == 1.0
        );
    }
    // Burst 5 + 1 in all, whichever process and worker thread decides.
    let s = round_robin(&[&a, &b], "one", 16).await;
    assert_eq!(s.iter().filter(|s| **s == 200).count(), 6, "{s:?}");
    assert!(s[..6].iter().all(|s| *s == 200), "{s:?}");

    // Killed and restarted empty: once the stores are up again, a new tenant's burst is
    // decided in Redis (every worker connection reconnected), not by on_store_error.
    redis.kill();
    let s = round_robin(&[&a, &b], "down", 4).await;
    assert!(s.iter().all(|s| *s == 200 || *s == 429), "{s:?}");
    redis.restart();
    for i in [&a, &b] {
        assert_eventually!(
            Duration::from_secs(10),
            "the fleet store is up again",
            metric(i, "seawall_fleet_store_up").await == 1.0
        );
    }
    // The first round trip of a worker connection after the restart may find it broken and
    // take on_store_error once (it reconnects); the decisions after that come from Redis.
    let _ = round_robin(&[&a, &b], "warm-up", 4).await;
    const FALLBACKS: &str = "seawall_fleet_fallback_decisions_total";
    let before = metric(&a, FALLBACKS).await + metric(&b, FALLBACKS).await;
    let s = round_robin(&[&a, &b], "two", 16).await;
    assert_eq!(s.iter().filter(|s| **s == 200).count(), 6, "{s:?}");
    assert_eq!(
        metric(&a, FALLBACKS).await + metric(&b, FALLBACKS).await,
        before,
        "decided by on_store_error after Redis was back: {s:?}"
    );
    let calls = redis.command_calls();
    assert!(calls.get("evalsha").copied().unwrap_or(0) >= 6, "{calls:?}");
}
