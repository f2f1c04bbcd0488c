//! `store = "redis"`: queues shared by the fleet, on a real redis-server, delivering to real
//! upstream servers. Two instances run in this process, each its own `Fleet` + `Queues` (as two
//! Seawall processes would), sharing one Redis.

mod common;
mod queue_kit;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::TestUpstream;
use common::redis::RedisServer;
use queue_kit::{lead, upstream};
use seawall::fleet::queue_store::{QueueKeys, RedisQueueOptions};
use seawall::fleet::{Fleet, FleetOptions};
use seawall::queue::registry::QueueHandle;
use seawall::queue::{PingoraSender, QueueSpec, Queues, Refusal, StoreKind};

const SOON: Duration = Duration::from_secs(15);

/// Short enough that a takeover test waits a second, not five minutes.
fn opts() -> RedisQueueOptions {
    RedisQueueOptions {
        visibility: Duration::from_secs(1),
        poll: Duration::from_millis(50),
        stats_every: Duration::from_millis(100),
    }
}

fn spec(app: &TestUpstream) -> QueueSpec {
    let dir = std::env::temp_dir();
    let mut s = queue_kit::spec(&dir, upstream(app.addr, Duration::from_secs(5)));
    s.store = StoreKind::Redis;
    s
}

/// One Seawall instance's fleet and queues, named `name`, with `spec` running.
struct Instance {
    _fleet: Fleet,
    queues: Queues,
    q: Arc<QueueHandle>,
}

async fn instance(redis: &RedisServer, name: &str, spec: QueueSpec) -> Instance {
    let mut fs = common::fleet::spec(redis);
    fs.instance = Some(name.to_string());
    let (fleet, _) = common::fleet::up(
        fs,
        FleetOptions {
            durable_queues: true,
            ..FleetOptions::default()
        },
    )
    .await;
    let queues = Queues::new(Arc::new(PingoraSender::new()), None)
        .with_redis_store(fleet.queue_stores(opts()));
    queues
        .apply(&queue_kit::specs(spec))
        .await
        .expect("queue starts");
    let q = queues.get("leads").expect("running");
    Instance {
        _fleet: fleet,
        queues,
        q,
    }
}

fn keys() -> QueueKeys {
    QueueKeys::new("leads")
}

/// Receipt -> the attempts the app saw for it (`X-Seawall-Attempt`), in arrival order.
fn attempts_seen(app: &TestUpstream) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in app.seen() {
        let r = s.header("x-seawall-receipt").unwrap_or_default();
        m.entry(r)
            .or_default()
            .push(s.header("x-seawall-attempt").unwrap_or_default());
    }
    m
}

#[tokio::test]
async fn a_lead_is_in_the_stream_when_accepted_and_gone_once_delivered() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let a = instance(&redis, "a", spec(&app)).await;
    a.q.pause();
    let r =
        a.q.accept(lead("/signup", "email=a%40example.com"))
            .await
            .unwrap();
    assert!(!r.duplicate);
    let k = keys();
    assert_eq!(redis.cmd::<u64>(&["XLEN", &k.stream]), 1, "XADD before 202");
    let bytes: u64 = redis.cmd(&["GET", &k.bytes]);
    assert!(bytes > 20, "bytes counted at accept: {bytes}");
    assert_eventually!(SOON, "stats read", a.q.store().stats().depth == 1);
    assert!(a.q.store().stats().oldest_ms.is_some());

    a.q.resume();
    assert_eventually!(SOON, "delivered", app.hits() == 1);
    let seen = app.last();
    assert_eq!(seen.header("x-seawall-receipt"), Some(r.receipt.clone()));
    assert_eq!(&seen.body[..], b"email=a%40example.com");
    assert_eq!(seen.header("x-seawall-attempt").as_deref(), Some("1"));
    assert_eventually!(
        SOON,
        "acked, deleted, uncounted",
        redis.cmd::<u64>(&["XLEN", &k.stream]) == 0
            && redis.cmd::<u64>(&["GET", &k.bytes]) == 0
            && a.q.store().stats() == Default::default()
    );
    let pending: Vec<redis::Value> = redis.cmd(&["XPENDING", &k.stream, "seawall"]);
    assert_eq!(pending[0], redis::Value::Int(0), "nothing left pending");
    a.queues.shutdown().await;
}

#[tokio::test]
async fn two_instances_share_one_queue_and_each_lead_is_delivered_once() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::builder("app")
        .delay(Duration::from_millis(20))
        .start()
        .await;
    let a = instance(&redis, "a", spec(&app)).await;
    let b = instance(&redis, "b", spec(&app)).await;
    let mut receipts = Vec::new();
    for i in 0..40 {
        let on = if i % 2 == 0 { &a.q } else { &b.q };
        receipts.push(
            on.accept(lead("/signup", &format!("n={i}")))
                .await
                .unwrap()
                .receipt,
        );
    }
    assert_eventually!(SOON, "all delivered", app.hits() >= 40);
    // Anything delivered twice would show up meanwhile.
    assert_eventually!(
        SOON,
        "stream empty",
        redis.cmd::<u64>(&["XLEN", &keys().stream]) == 0
    );
    let seen = attempts_seen(&app);
    assert_eq!(seen.len(), 40);
    for r in &receipts {
        assert_eq!(seen.get(r).map(Vec::len), Some(1), "{r} delivered once");
    }
    let consumers: Vec<Vec<redis::Value>> =
        redis.cmd(&["XINFO", "CONSUMERS", &keys().stream, "seawall"]);
    assert_eq!(
        consumers.len(),
        2,
        "each instance reads as its own consumer"
    );
    a.queues.shutdown().await;
    b.queues.shutdown().await;
}

#[tokio::test]
async fn an_instance_gone_mid_delivery_has_its_leads_taken_over_and_none_is_lost() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::builder("app").gated().start().await;
    let mut s = spec(&app);
    s.max_inflight = 2;
    let a = instance(&redis, "a", s.clone()).await;
    let mut receipts = Vec::new();
    for i in 0..6 {
        receipts.push(
            a.q.accept(lead("/signup", &format!("n={i}")))
                .await
                .unwrap()
                .receipt,
        );
    }
    // "a" holds two deliveries the app has not answered, then is gone (its worker stops
    // without a word to Redis, as a crash would leave it).
    assert_eventually!(SOON, "a is delivering two", app.hits() == 2);
    let held: Vec<String> = attempts_seen(&app).into_keys().collect();
    a.queues.shutdown().await;
    drop(a);

    let b = instance(&redis, "b", s).await;
    app.release(1000);
    assert_eventually!(
        SOON,
        "b delivered everything",
        redis.cmd::<u64>(&["XLEN", &keys().stream]) == 0
    );
    let seen = attempts_seen(&app);
    for r in &receipts {
        assert!(seen.contains_key(r), "{r} lost");
    }
    for r in &held {
        assert_eq!(
            seen[r],
            vec!["1".to_string(), "2".to_string()],
            "{r}: the cut-short attempt counts; b sent it as attempt 2"
        );
    }
    assert_eq!(b.q.store().stats().dead, 0);
    b.queues.shutdown().await;
}

#[tokio::test]
async fn with_redis_killed_accepting_refuses_and_delivery_resumes_when_it_is_back() {
    let Some(mut redis) = RedisServer::builder()
        .arg("--appendonly")
        .arg("yes")
        .arg("--appendfsync")
        .arg("always")
        .start()
    else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let a = instance(&redis, "a", spec(&app)).await;
    a.q.pause();
    let mut receipts = Vec::new();
    for i in 0..3 {
        receipts.push(
            a.q.accept(lead("/signup", &format!("n={i}")))
                .await
                .unwrap()
                .receipt,
        );
    }
    redis.kill();
    for i in 0..5 {
        match a.q.accept(lead("/signup", &format!("down={i}"))).await {
            Err(Refusal::StoreError(_)) => {}
            other => panic!("accepted without Redis: {other:?}"),
        }
    }
    a.q.resume();
    redis.restart();
    assert_eventually!(SOON, "the three fsynced leads delivered", app.hits() == 3);
    let later = a.q.accept(lead("/signup", "after")).await.unwrap().receipt;
    assert_eventually!(SOON, "new leads too", app.hits() == 4);
    let seen = attempts_seen(&app);
    for r in receipts.iter().chain([&later]) {
        assert!(seen.contains_key(r), "{r} lost");
    }
    assert!(
        seen.keys().all(|r| !r.is_empty()),
        "nothing refused reached the app"
    );
    a.queues.shutdown().await;
}

#[tokio::test]
async fn an_idempotency_key_seen_again_on_any_instance_returns_the_first_receipt() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let a = instance(&redis, "a", spec(&app)).await;
    let b = instance(&redis, "b", spec(&app)).await;
    let keyed = |body: &str| {
        let mut l = lead("/signup", body);
        l.idempotency_key = Some("client-key-7".into());
        l
    };
    let first = a.q.accept(keyed("first")).await.unwrap();
    let again = b.q.accept(keyed("second")).await.unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(again.receipt, first.receipt);
    let stored: String = redis.cmd(&["GET", &keys().idem("client-key-7")]);
    assert_eq!(stored, first.receipt);
    let ttl: i64 = redis.cmd(&["PTTL", &keys().idem("client-key-7")]);
    assert!(ttl > 71 * 3600 * 1000, "remembered for max_age: {ttl}");
    assert_eventually!(SOON, "delivered", app.hits() == 1);
    assert_eq!(&app.last().body[..], b"first");
    a.queues.shutdown().await;
    b.queues.shutdown().await;
}

#[tokio::test]
async fn failing_leads_become_dead_letters_that_list_and_redrive() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let bad = TestUpstream::builder("app").status(400).start().await;
    let a = instance(&redis, "a", spec(&bad)).await;
    let r =
        a.q.accept(lead("/signup", "personal"))
            .await
            .unwrap()
            .receipt;
    assert_eventually!(SOON, "buried", a.q.store().stats().dead == 1);
    assert_eq!(bad.hits(), 1, "a 400 is permanent: one attempt");
    let dead = a.q.dead_json(10, false).await.unwrap();
    let d = &dead["dead_letters"][0];
    assert_eq!(d["receipt"], r.as_str());
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last"], "status 400");
    assert_eq!(d["path"], "/signup");
    assert!(d.get("body").is_none(), "bodies only when asked");
    let with = a.q.dead_json(10, true).await.unwrap();
    assert_eq!(with["dead_letters"][0]["body"], "personal");
    assert_eq!(redis.cmd::<u64>(&["XLEN", &keys().stream]), 0);
    a.queues.shutdown().await;

    // A 503 app: retried (parked, pending) until max_attempts, then buried.
    let flaky = TestUpstream::builder("app").status(503).start().await;
    let mut s = spec(&flaky);
    s.max_attempts = 3;
    let b = instance(&redis, "b", s).await;
    let r2 = b.q.accept(lead("/signup", "again")).await.unwrap().receipt;
    assert_eventually!(SOON, "buried after 3", b.q.store().stats().dead == 2);
    assert_eq!(flaky.hits(), 3);
    let attempts: Vec<String> = flaky
        .seen()
        .iter()
        .map(|s| s.header("x-seawall-attempt").unwrap_or_default())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let dead = b.q.dead_json(10, false).await.unwrap();
    assert_eq!(
        dead["dead_letters"][0]["receipt"],
        r2.as_str(),
        "newest first"
    );
    assert_eq!(dead["dead_letters"][0]["attempts"], 3);
    b.queues.shutdown().await;

    let good = TestUpstream::start("app").await;
    let c = instance(&redis, "c", spec(&good)).await;
    assert_eq!(c.q.redrive().await.unwrap(), 2);
    assert_eventually!(SOON, "redriven and delivered", good.hits() == 2);
    let seen = attempts_seen(&good);
    assert_eq!(seen[&r], ["1"], "attempts start afresh");
    assert!(seen.contains_key(&r2));
    assert_eventually!(
        SOON,
        "nothing left",
        c.q.store().stats() == Default::default()
    );
    c.queues.shutdown().await;
}

/// An app that notes when each request arrived.
async fn clock_app() -> (std::net::SocketAddr, Arc<Mutex<Vec<Instant>>>) {
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let t = times.clone();
    let app = axum::Router::new().fallback(move || {
        let t = t.clone();
        async move {
            t.lock().unwrap().push(Instant::now());
            "ok"
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (addr, times)
}

#[tokio::test]
async fn two_instances_together_deliver_at_the_fleet_rate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (addr, times) = clock_app().await;
    let dummy = TestUpstream::start("unused").await;
    let mut s = spec(&dummy);
    s.deliver_to = upstream(addr, Duration::from_secs(5));
    s.rate_mrps = 5_000;
    s.rate_text = "5r/s".into();
    s.max_inflight = 4;
    let a = instance(&redis, "a", s.clone()).await;
    let b = instance(&redis, "b", s).await;
    a.q.pause();
    b.q.pause();
    const N: usize = 30;
    for i in 0..N {
        let on = if i % 2 == 0 { &a.q } else { &b.q };
        on.accept(lead("/signup", &format!("n={i}"))).await.unwrap();
    }
    a.q.resume();
    b.q.resume();
    assert_eventually!(
        Duration::from_secs(30),
        "all delivered",
        times.lock().unwrap().len() == N
    );
    let t = times.lock().unwrap().clone();
    let first = t[0];
    // Each instance paces itself at 5 r/s too, so together they would send 10 a second: the
    // fleet limiter (one token per 200 ms, on Redis's clock) keeps it to 5. Counted per second
    // of arrival at the app: 5, plus 1 for a delivery whose trip was shorter than the one
    // before it (loopback jitter moves an arrival across a second's boundary).
    let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
    for at in &t {
        *per_second
            .entry(at.duration_since(first).as_secs())
            .or_default() += 1;
    }
    for (sec, n) in &per_second {
        assert!(
            *n <= 6,
            "second {sec}: {n} deliveries, rate is 5 r/s: {per_second:?}"
        );
    }
    // 30 deliveries at least 200 ms apart span 5.8 s; allow 0.8 s of jitter.
    let span = t[N - 1].duration_since(first);
    assert!(span >= Duration::from_secs(5), "30 deliveries in {span:?}");
    a.queues.shutdown().await;
    b.queues.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_proxy_a_redis_queue_answers_202_after_xadd_and_503_without_redis() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let sw = common::Kit::new().start(&format!(
        r#"
[fleet]
redis = "{}"
instance = "edge-1"
timeout = "250ms"

[upstreams.app]
servers = ["{}"]

[queues.leads]
store = "redis"
deliver_to = "app"
rate = "50r/s"

[[routes]]
name = "signup"
path_prefix = "/signup"
queue = "leads"
"#,
        redis.url(),
        app.addr
    ));
    let post = async |body: &str| {
        sw.client
            .post(sw.url("/signup"))
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    };
    let r = post("email=a%40example.com").await;
    assert_eq!(r.status(), 202);
    let receipt = r.headers()["x-seawall-receipt"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eventually!(SOON, "delivered from Redis", app.hits() == 1);
    assert_eq!(app.last().header("x-seawall-receipt"), Some(receipt));
    let consumers: Vec<Vec<redis::Value>> =
        redis.cmd(&["XINFO", "CONSUMERS", &keys().stream, "seawall"]);
    assert!(
        format!("{consumers:?}").contains("edge-1"),
        "consumes as its fleet instance: {consumers:?}"
    );
    let status: serde_json::Value = sw.admin_get("/-/queues").await.json().await.unwrap();
    assert_eq!(status["queues"][0]["store"], "redis");

    redis.kill();
    for _ in 0..3 {
        let r = post("email=b%40example.com").await;
        assert_eq!(r.status(), 503, "never accepted without XADD");
        assert!(r.headers().contains_key("retry-after"));
    }
    assert_eq!(app.hits(), 1);
    sw.stop();
}

#[tokio::test]
async fn a_hung_redis_gets_a_refusal_not_a_receipt() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let a = instance(&redis, "a", spec(&app)).await;
    redis.pause();
    let r = a.q.accept(lead("/signup", "x")).await;
    redis.resume();
    assert!(
        matches!(r, Err(Refusal::StoreError(ref e)) if e.contains("no answer")),
        "{r:?}"
    );
    // The store errs on the side of at least once: the script may still run once Redis wakes
    // up, and the lead is then delivered (the client, told 503, retries with its key).
    let ok = a.q.accept(lead("/signup", "y")).await.unwrap();
    assert_eventually!(
        SOON,
        "delivering again",
        attempts_seen(&app).contains_key(&ok.receipt)
    );
    a.queues.shutdown().await;
}
