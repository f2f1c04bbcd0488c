//! A fleet queue (`store = "redis"`) loses no acknowledged lead when the real binary is killed
//! with SIGKILL while it holds deliveries: restarted under the same instance name, it is a new
//! consumer, and what its previous life left pending is taken over within seconds, not after
//! the five-minute visibility timeout.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::process::{line_with, run_logged, run_ready, server_section};
use common::redis::RedisServer;
use common::{TestUpstream, free_addrs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_then_restart_delivers_every_acknowledged_lead() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The app takes every delivery and answers none until released: the instance is killed
    // while it holds `max_inflight` of them.
    let app = TestUpstream::builder("app").gated().start().await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    let config = dir.path().join("seawall.toml");
    std::fs::write(
        &config,
        format!(
            r#"{server}
[fleet]
redis = "{redis}"
instance = "edge-1"
timeout = "250ms"

[upstreams.app]
servers = ["{app}"]
read_timeout = "60s"

[queues.leads]
store = "redis"
deliver_to = "app"
rate = "500r/s"
max_inflight = 2

[[routes]]
name = "signup"
path_prefix = "/signup"
queue = "leads"
"#,
            server = server_section(dir.path(), listen, admin),
            redis = redis.url(),
            app = app.addr,
        ),
    )
    .unwrap();
    let start = || run_ready(&config);
    let (mut first, _lines) = start();
    let http = common::client();
    let mut acked = BTreeSet::new();
    for i in 0..20 {
        let r = http
            .post(format!("http://{listen}/signup"))
            .body(format!("{{\"email\":\"lead-{i}@example.com\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "lead {i}");
        acked.insert(
            r.headers()["x-seawall-receipt"]
                .to_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eventually!(
        Duration::from_secs(30),
        "the first life holds two deliveries",
        app.hits() == 2
    );
    let held: BTreeSet<String> = app
        .seen()
        .iter()
        .filter_map(|s| s.header("x-seawall-receipt"))
        .collect();
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let killed = Instant::now();

    let (_second, _lines) = start();
    app.release(10_000);
    let stream = "seawall:{q:leads}:stream";
    // 60 s, far inside the visibility timeout (300 s): the dead life's entries must be taken
    // over because its heartbeat is gone, not because they timed out.
    assert_eventually!(
        Duration::from_secs(60),
        "every acknowledged lead delivered and acknowledged to Redis",
        redis.cmd::<u64>(&["XLEN", stream]) == 0
    );
    let took = killed.elapsed();
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in app.seen() {
        if let Some(r) = s.header("x-seawall-receipt") {
            seen.entry(r)
                .or_default()
                .push(s.header("x-seawall-attempt").unwrap_or_default());
        }
    }
    let lost: Vec<_> = acked.iter().filter(|r| !seen.contains_key(*r)).collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    for r in &held {
        assert_eq!(
            seen[r],
            ["1", "2"],
            "{r}: cut short by the kill, sent again by the next life as attempt 2"
        );
    }
    println!(
        "kill -9 mid-delivery: {} acknowledged, all delivered; the {} held ones {:.1} s after the kill",
        acked.len(),
        held.len(),
        took.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_queue_added_by_a_reload_is_warned_about_when_redis_cannot_keep_it() {
    // Debian's default: appendonly no. A fleet queue on it can lose accepted leads.
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin, app] = free_addrs();
    let config = dir.path().join("seawall.toml");
    let write = |queue: bool| {
        let mut c = format!(
            r#"{server}
[fleet]
redis = "{redis}"
timeout = "250ms"

[upstreams.app]
servers = ["{app}"]
"#,
            server = server_section(dir.path(), listen, admin),
            redis = redis.url(),
        );
        if queue {
            c.push_str(
                "\n[queues.leads]\nstore = \"redis\"\ndeliver_to = \"app\"\nrate = \"10r/s\"\n\n\
                 [[routes]]\nname = \"signup\"\npath_prefix = \"/signup\"\nqueue = \"leads\"\n",
            );
        }
        c.push_str("\n[[routes]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"app\"\n");
        std::fs::write(&config, c).unwrap();
    };
    write(false);
    let (_sw, lines) = run_logged(&["run", "--config", config.to_str().unwrap()]);
    // Ready (the admin listener is up) and the fleet store up, in whichever order they come.
    let mut want = vec!["seawall is ready", "fleet store up"];
    while !want.is_empty() {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("never logged {want:?}"));
        assert!(
            !line.contains("durability needs"),
            "warned with no queue: {line}"
        );
        want.retain(|w| !line.contains(w));
    }
    write(true);
    let r = common::client()
        .post(format!("http://{admin}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let warned = line_with(
        &lines,
        "durability needs appendonly yes and appendfsync always",
        Duration::from_secs(10),
    );
    let warned = warned.expect("no durability warning after the reload added a fleet queue");
    assert!(
        warned.contains("WARN") && warned.contains(r#"appendonly "no""#),
        "{warned}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_exits_leaves_the_instance_list_at_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin, app] = free_addrs();
    let config = dir.path().join("seawall.toml");
    std::fs::write(
        &config,
        format!(
            r#"{server}
[fleet]
redis = "{redis}"
instance = "edge-1"
timeout = "250ms"

[upstreams.app]
servers = ["{app}"]

[[routes]]
name = "all"
path_prefix = "/"
upstream = "app"
"#,
            server = server_section(dir.path(), listen, admin),
            redis = redis.url(),
        ),
    )
    .unwrap();
    let (mut sw, _lines) = run_ready(&config);
    let key = "seawall:{instances}:edge-1";
    assert_eventually!(
        Duration::from_secs(30),
        "the heartbeat is in Redis",
        redis.cmd::<u64>(&["EXISTS", key]) == 1
    );
    let ttl_ms: i64 = redis.cmd(&["PTTL", key]);
    common::process::signal(&sw.0, "-INT");
    let signalled = Instant::now();
    let status = sw.0.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(130), "SIGINT's exit: {status:?}");
    // Without leaving, the key would outlive the process by its TTL (up to 5 s): only a
    // prompt exit tells the two apart.
    assert!(
        took < Duration::from_millis(ttl_ms as u64 / 2),
        "exiting took {took:?}: too slow to tell leaving from the TTL ({ttl_ms} ms)"
    );
    assert_eq!(
        redis.cmd::<u64>(&["EXISTS", key]),
        0,
        "the heartbeat outlived the process: its queue entries wait for the TTL"
    );
    let members: Vec<String> = redis.cmd(&["SMEMBERS", "seawall:{instances}"]);
    assert!(members.is_empty(), "{members:?}");
}
