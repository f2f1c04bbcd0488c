//! The delivery worker against real upstream servers on 127.0.0.1: what the app receives, what
//! each kind of answer does to the entry, pause/resume, redrive, pace and in-flight caps.

mod common;
mod queue_kit;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestUpstream, closed_addr};
use queue_kit::{lead, spec, start, upstream};
use seawall::queue::FakeWallClock;

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn the_app_receives_the_whole_request_with_the_delivery_headers() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(seawall::metrics::Metrics::new());
    let (qs, q) = start(
        spec(dir.path(), upstream(app.addr, Duration::from_secs(5))),
        Some(metrics.clone()),
    )
    .await;
    let first = q
        .accept(lead("/signup", "email=a%40example.com"))
        .await
        .unwrap();
    let mut keyed = lead("/signup", "email=b%40example.com");
    keyed.idempotency_key = Some("client-key-1".into());
    keyed.campaign = None;
    let second = q.accept(keyed).await.unwrap();
    assert!(!first.duplicate && !second.duplicate);
    assert_eq!(first.receipt.len(), 32);
    assert_ne!(first.receipt, second.receipt);
    assert_eventually!(
        SOON,
        "both delivered",
        app.hits() == 2 && q.store().stats().depth == 0
    );

    let seen = app.seen();
    let a = seen
        .iter()
        .find(|s| s.header("x-seawall-receipt").as_deref() == Some(first.receipt.as_str()))
        .unwrap();
    assert_eq!(a.method, "POST");
    assert_eq!(a.uri, "/signup?utm_campaign=SUMMER");
    assert_eq!(&a.body[..], b"email=a%40example.com");
    assert_eq!(a.header("host").as_deref(), Some("shop.example.com"));
    assert_eq!(
        a.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        a.header("idempotency-key"),
        Some(first.receipt.clone()),
        "no client key: the receipt"
    );
    assert_eq!(a.header("x-seawall-attempt").as_deref(), Some("1"));
    assert_eq!(
        a.header("x-seawall-campaign").as_deref(),
        Some("summer-sale")
    );
    assert_eq!(
        a.header("x-forwarded-for").as_deref(),
        Some("198.51.100.1, 203.0.113.7"),
        "as computed at accept, not the client's"
    );
    assert_eq!(a.header("x-real-ip").as_deref(), Some("203.0.113.7"));
    assert_eq!(a.header("x-forwarded-proto").as_deref(), Some("https"));
    let queued_at = a.header("x-seawall-queued-at").unwrap();
    let t: jiff::Timestamp = queued_at.parse().expect("RFC 3339");
    assert!((jiff::Timestamp::now() - t).get_seconds().abs() < 60);
    let b = seen
        .iter()
        .find(|s| s.header("x-seawall-receipt").as_deref() == Some(second.receipt.as_str()))
        .unwrap();
    assert_eq!(b.header("idempotency-key").as_deref(), Some("client-key-1"));
    assert_eq!(b.header("x-seawall-campaign"), None);

    qs.refresh_gauges();
    let text = String::from_utf8(metrics.render()).unwrap();
    assert_eq!(
        common::sample(&text, "seawall_queue_accepted_total", &[("queue", "leads")]),
        Some(2.0)
    );
    assert_eq!(
        common::sample(
            &text,
            "seawall_queue_deliveries_total",
            &[("queue", "leads"), ("result", "delivered")]
        ),
        Some(2.0)
    );
    assert_eq!(
        common::sample(&text, "seawall_queue_depth", &[("queue", "leads")]),
        Some(0.0)
    );
    assert_eq!(
        common::sample(&text, "seawall_queue_pace_rps", &[("queue", "leads")]),
        Some(100.0)
    );
    qs.shutdown().await;
}

#[tokio::test]
async fn a_400_is_a_dead_letter_at_once_and_redrive_delivers_it_once_the_app_is_fixed() {
    let app = TestUpstream::builder("app").status(400).start().await;
    let addr = app.addr;
    let dir = tempfile::tempdir().unwrap();
    let (qs, q) = start(
        spec(dir.path(), upstream(addr, Duration::from_secs(5))),
        None,
    )
    .await;
    let r = q
        .accept(lead("/signup", "secret-personal-data"))
        .await
        .unwrap();
    assert_eventually!(SOON, "dead letter", q.store().stats().dead == 1);
    assert_eq!(app.hits(), 1, "a permanent answer is not retried");
    assert_eq!(q.store().stats().depth, 0);
    let dead = qs.dead_json("leads", false).await.unwrap();
    let d = &dead["dead_letters"][0];
    assert_eq!(d["receipt"], r.receipt.as_str());
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["last"], "status 400");
    assert!(d.get("body").is_none(), "bodies only on request");
    assert!(!dead.to_string().contains("secret-personal-data"));
    let with_body = qs.dead_json("leads", true).await.unwrap();
    assert_eq!(with_body["dead_letters"][0]["body"], "secret-personal-data");

    drop(app);
    queue_kit::wait_free(addr).await;
    let fixed = TestUpstream::builder("app").at(addr).start().await;
    assert_eq!(qs.redrive("leads").await.unwrap()["redriven"], 1);
    assert_eventually!(
        SOON,
        "redriven lead delivered",
        fixed.hits() == 1 && q.store().stats().depth == 0
    );
    assert_eq!(
        fixed.last().header("x-seawall-receipt"),
        Some(r.receipt.clone())
    );
    assert_eq!(
        fixed.last().header("x-seawall-attempt").as_deref(),
        Some("1"),
        "a redrive counts afresh"
    );
    assert_eq!(q.store().stats().dead, 0);
    assert!(matches!(
        qs.redrive("nope").await,
        Err(seawall::queue::registry::AdminError::UnknownQueue(_))
    ));
    qs.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured_then_max_attempts_makes_a_dead_letter() {
    let app = TestUpstream::builder("app")
        .status(503)
        .header("retry-after", "1")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), upstream(app.addr, Duration::from_secs(5)));
    s.max_attempts = 3;
    let (qs, q) = start(s, None).await;
    q.accept(lead("/signup", "x")).await.unwrap();
    assert_eventually!(Duration::from_secs(5), "first attempt", app.hits() == 1);
    // The app has answered; the worker takes the 503 in a moment.
    assert_eventually!(
        Duration::from_secs(5),
        "backing off after the 503",
        qs.status_json()["queues"][0]["backing_off"] == true
    );
    let status = qs.status_json();
    let pace = status["queues"][0]["pace_rps"].as_f64().unwrap();
    assert!(pace < 100.0, "backing off after a 503: pace {pace}");
    let t1 = Instant::now();
    assert_eventually!(
        Duration::from_secs(10),
        "three attempts, then dead",
        q.store().stats().dead == 1
    );
    assert_eq!(app.hits(), 3);
    // Two waits of at least Retry-After (1 s), though retry.max is 200 ms.
    assert!(
        t1.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        t1.elapsed()
    );
    let attempts: Vec<_> = app
        .seen()
        .iter()
        .map(|s| s.header("x-seawall-attempt").unwrap())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    let dead = qs.dead_json("leads", false).await.unwrap();
    assert_eq!(
        dead["dead_letters"][0]["last"],
        "max_attempts exceeded; last: status 503"
    );
    assert_eq!(dead["dead_letters"][0]["attempts"], 3);
    qs.shutdown().await;
}

#[tokio::test]
async fn a_down_app_is_retried_until_it_comes_back_and_a_slow_one_times_out() {
    let addr = closed_addr();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(seawall::metrics::Metrics::new());
    let mut s = spec(dir.path(), upstream(addr, Duration::from_millis(300)));
    s.max_attempts = 1000;
    let (qs, q) = start(s, Some(metrics.clone())).await;
    let r = q.accept(lead("/signup", "x")).await.unwrap();
    let retries = || {
        metrics
            .queue_deliveries
            .with_label_values(&["leads", "retry"])
            .get()
    };
    assert_eventually!(SOON, "refused connections are retried", retries() >= 2);
    assert_eq!(q.store().stats().depth, 1);
    queue_kit::wait_free(addr).await;
    // The app comes up, but slower than read_timeout: still retried (a timeout).
    let slow = TestUpstream::builder("app")
        .at(addr)
        .delay(Duration::from_secs(2))
        .start()
        .await;
    assert_eventually!(SOON, "timed out attempt", slow.hits() >= 1);
    let before = retries();
    assert_eventually!(SOON, "timeout counted as retry", retries() > before);
    assert_eq!(q.store().stats().depth, 1);
    drop(slow);
    queue_kit::wait_free(addr).await;
    let app = TestUpstream::builder("app").at(addr).start().await;
    assert_eventually!(
        SOON,
        "delivered once the app is back",
        q.store().stats().depth == 0
    );
    let got = app.last();
    assert_eq!(got.header("x-seawall-receipt"), Some(r.receipt.clone()));
    assert!(
        got.header("x-seawall-attempt")
            .unwrap()
            .parse::<u32>()
            .unwrap()
            > 2
    );
    qs.shutdown().await;
}

#[tokio::test]
async fn pause_holds_delivery_while_accepting_goes_on_and_resume_delivers() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let (qs, q) = start(
        spec(dir.path(), upstream(app.addr, Duration::from_secs(5))),
        None,
    )
    .await;
    qs.pause("leads").unwrap();
    for i in 0..3 {
        q.accept(lead("/signup", &format!("n={i}"))).await.unwrap();
    }
    assert_eq!(q.store().stats().depth, 3);
    assert_eq!(qs.status_json()["queues"][0]["paused"], true);
    // Nothing may arrive while paused: give the worker time to (wrongly) deliver.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.hits(), 0);
    qs.resume("leads").unwrap();
    assert_eventually!(
        SOON,
        "delivered after resume",
        app.hits() == 3 && q.store().stats().depth == 0
    );
    qs.shutdown().await;
}

#[tokio::test]
async fn delivery_is_paced_at_rate_and_capped_at_max_inflight() {
    // Real time, wide tolerance: 20 leads at 20 r/s take about 0.95 s from first to last.
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), upstream(app.addr, Duration::from_secs(5)));
    s.rate_mrps = 20_000;
    let (qs, q) = start(s, None).await;
    qs.pause("leads").unwrap();
    for i in 0..20 {
        q.accept(lead("/signup", &format!("n={i}"))).await.unwrap();
    }
    let t0 = Instant::now();
    qs.resume("leads").unwrap();
    assert_eventually!(SOON, "all delivered", app.hits() == 20);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took <= Duration::from_millis(3000),
        "20 at 20r/s took {took:?}"
    );
    qs.shutdown().await;

    let gated = TestUpstream::builder("app").gated().start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(dir.path(), upstream(gated.addr, Duration::from_secs(30)));
    s.max_inflight = 2;
    let (qs, q) = start(s, None).await;
    for i in 0..5 {
        q.accept(lead("/signup", &format!("n={i}"))).await.unwrap();
    }
    assert_eventually!(SOON, "two in flight", gated.hits() == 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gated.hits(), 2, "never more than max_inflight at once");
    assert_eq!(qs.status_json()["queues"][0]["in_flight"], 2);
    gated.release(10);
    assert_eventually!(
        SOON,
        "the rest follow",
        gated.hits() == 5 && q.store().stats().depth == 0
    );
    qs.shutdown().await;
}

#[tokio::test]
async fn an_entry_older_than_max_age_is_a_dead_letter_without_being_sent() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeWallClock::at(1_780_000_000_000));
    let qs = seawall::queue::Queues::new(Arc::new(seawall::queue::PingoraSender::new()), None)
        .with_clock(clock.clone());
    qs.apply(&queue_kit::specs(spec(
        dir.path(),
        upstream(app.addr, Duration::from_secs(5)),
    )))
    .await
    .unwrap();
    qs.pause("leads").unwrap();
    let q = qs.get("leads").unwrap();
    q.accept(lead("/signup", "old")).await.unwrap();
    clock.advance(73 * 3600 * 1000);
    qs.resume("leads").unwrap();
    assert_eventually!(SOON, "dead by age", q.store().stats().dead == 1);
    assert_eq!(app.hits(), 0);
    let dead = qs.dead_json("leads", false).await.unwrap();
    assert_eq!(dead["dead_letters"][0]["last"], "max_age exceeded");
    qs.shutdown().await;
}
