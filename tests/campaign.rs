//! Campaign traffic end to end, with a real app and a real ingestion upstream.

mod common;

use std::sync::atomic::Ordering;

use common::{HungUpstream, Kit, Seawall, TestUpstream, closed_addr};

/// seawall.toml body: the app behind two routes, and the ingestion upstream.
fn main_body(app: &TestUpstream, ingest: &str, ingest_extra: &str) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]
[upstreams.ingest]
servers = ["{ingest}"]
connect_timeout = "500ms"
read_timeout = "2s"
{ingest_extra}

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
upstream = "app"

[[routes]]
name = "site"
upstream = "app"
"#,
        app.addr
    )
}

fn campaigns(unregistered: &str, launch_extra: &str) -> String {
    format!(
        r#"
tag_sources = ["query:utm_campaign", "query:ref", "cookie:utm_campaign", "header:X-Campaign"]
ingest_upstream = "ingest"

[unregistered]
{unregistered}

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
starts = 2026-01-01T00:00:00Z
ends = 2030-12-31T23:59:59Z
expected_peak_rps = 300
targets = ["/api/v1/users/register"]
{launch_extra}
"#
    )
}

async fn start(unregistered: &str, launch_extra: &str) -> (TestUpstream, TestUpstream, Seawall) {
    let app = TestUpstream::start("app").await;
    let ingest = TestUpstream::start("ingest").await;
    let sw = Kit::new()
        .campaigns(&campaigns(unregistered, launch_extra))
        .start(&main_body(&app, &ingest.addr.to_string(), ""));
    (app, ingest, sw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_tag_on_a_target_path_reaches_ingestion_only() {
    let (app, ingest, sw) = start("action = \"pass\"", "action = \"divert\"").await;
    let body = r#"{"email":"lead@example.com","company_size":"50"}"#;
    let r = sw
        .client
        .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ingest /api/v1/users/register");
    assert_eq!(app.hits(), 0, "the app saw nothing of it");
    let seen = ingest.last();
    assert_eq!(seen.header("x-seawall-campaign").unwrap(), "summer-sale");
    assert_eq!(seen.uri, "/api/v1/users/register?ref=SUMMERSALE20");
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, body);
    assert_eq!(seen.header("content-type").unwrap(), "application/json");
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "summer-sale"), ("action", "divert")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_tag_off_target_and_untagged_traffic_reach_the_app() {
    let (app, ingest, sw) = start("action = \"divert\"", "").await;
    let r = sw.get("/pricing?ref=SUMMERSALE20").await;
    assert_eq!(r.text().await.unwrap(), "app /pricing");
    assert_eq!(
        app.last().header("x-seawall-campaign").unwrap(),
        "summer-sale",
        "attributed"
    );
    // Untagged; and a client cannot label itself.
    let r = sw
        .client
        .post(sw.url("/api/v1/users/register"))
        .header("x-seawall-campaign", "summer-sale")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "app /api/v1/users/register");
    assert_eq!(app.last().header("x-seawall-campaign"), None);
    assert_eq!(ingest.hits(), 0);
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "summer-sale"), ("action", "pass")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_in_a_cookie_or_a_header_count_too() {
    let (app, ingest, sw) = start("action = \"pass\"", "").await;
    let post = |h: (&'static str, &'static str)| {
        sw.client
            .post(sw.url("/api/v1/users/register"))
            .header(h.0, h.1)
            .body("x")
            .send()
    };
    post(("cookie", "session=1; utm_campaign=summersale20"))
        .await
        .unwrap();
    post(("x-campaign", "SummerSale20")).await.unwrap();
    assert_eq!(ingest.hits(), 2);
    assert_eq!(app.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_tag_follows_the_policy_and_is_counted() {
    let (app, ingest, sw) = start("action = \"divert\"", "").await;
    for _ in 0..3 {
        let r = sw
            .client
            .post(sw.url("/api/v1/users/register?ref=BlackFriday"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(ingest.hits(), 3);
    assert_eq!(
        ingest.last().header("x-seawall-campaign").unwrap(),
        "unregistered"
    );
    assert_eq!(app.hits(), 0);
    sw.expect_metric(
        "seawall_campaign_unregistered_tags_total",
        &[("tag", "blackfriday")],
        3.0,
    )
    .await;
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "unregistered"), ("action", "divert")],
        3.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tagged_page_view_reaches_the_app_attributed_and_only_writes_are_diverted() {
    // `[unregistered] action = "divert"` with no targets and no methods: the defaults divert
    // POST, PUT, PATCH and DELETE only, so a newsletter link never shows the ingestion sink.
    let (app, ingest, sw) = start("action = \"divert\"", "action = \"divert\"").await;
    let r = sw.get("/?utm_campaign=newsletter").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "app /");
    assert_eq!(
        app.last().header("x-seawall-campaign").unwrap(),
        "unregistered"
    );
    // A visitor whose campaign cookie outlived its launch: every page still works.
    let r = sw
        .client
        .get(sw.url("/pricing"))
        .header("cookie", "utm_campaign=spring2019")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "app /pricing");
    // A GET on the launch's own target is a page view too.
    let r = sw.get("/api/v1/users/register?ref=SUMMERSALE20").await;
    assert_eq!(r.text().await.unwrap(), "app /api/v1/users/register");
    assert_eq!(ingest.hits(), 0);
    // The sign-up itself is diverted, registered or not.
    for tag in ["SUMMERSALE20", "newsletter"] {
        let url = sw.url(&format!("/api/v1/users/register?ref={tag}"));
        let r = sw.client.post(url).body("x").send().await.unwrap();
        assert_eq!(r.text().await.unwrap(), "ingest /api/v1/users/register");
    }
    assert_eq!(ingest.hits(), 2);
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "unregistered"), ("action", "pass")],
        2.0,
    )
    .await;
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "unregistered"), ("action", "divert")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregistered_reject_and_paused_launch_answer_503_without_any_upstream() {
    let (app, ingest, sw) = start("action = \"reject\"", "action = \"pause\"").await;
    for path in [
        "/api/v1/users/register?ref=OTHER",
        "/api/v1/users/register?ref=SUMMERSALE20",
    ] {
        let r = sw.client.post(sw.url(path)).body("x").send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "60");
        assert!(
            r.text()
                .await
                .unwrap()
                .starts_with("503 Service Unavailable: this campaign is not being accepted")
        );
    }
    assert_eq!(app.hits() + ingest.hits(), 0);
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "summer-sale"), ("action", "pause")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "unregistered"), ("action", "reject")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_down_is_a_quick_503_and_never_the_app() {
    let app = TestUpstream::start("app").await;
    let dead = closed_addr();
    let sw = Kit::new()
        .campaigns(&campaigns("action = \"divert\"", ""))
        .start(&main_body(&app, &dead.to_string(), ""));
    for path in [
        "/api/v1/users/register?ref=SUMMERSALE20",
        "/api/v1/users/register?ref=OTHER",
    ] {
        let r = sw
            .client
            .post(sw.url(path))
            .body("lead")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        assert_eq!(r.headers()["retry-after"], "5");
        assert!(
            r.text()
                .await
                .unwrap()
                .starts_with("503 Service Unavailable: sign-ups are queued elsewhere")
        );
    }
    assert_eq!(
        app.hits(),
        0,
        "a diverted request never falls back to the app"
    );
    // Untagged traffic is unaffected.
    assert_eq!(
        sw.client
            .post(sw.url("/api/v1/users/register"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingestion_timing_out_or_at_its_cap_is_a_503_too() {
    let app = TestUpstream::start("app").await;
    let slow = TestUpstream::builder("ingest").gated().start().await;
    let sw = Kit::new()
        .campaigns(&campaigns("action = \"divert\"", ""))
        .start(&main_body(&app, &slow.addr.to_string(), "max_inflight = 1"));
    // The first lead waits at the ingestion upstream (past its 2 s read timeout).
    let first = tokio::spawn(
        sw.client
            .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
            .body("1")
            .send(),
    );
    assert_eventually!(
        std::time::Duration::from_secs(5),
        "first lead at ingestion",
        slow.hits() == 1
    );
    // The second finds the cap reached.
    let r = sw
        .client
        .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
        .body("2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let r = first.await.unwrap().unwrap();
    assert_eq!(r.status(), 503, "a timeout at ingestion is a 503 as well");
    assert_eq!(r.headers()["retry-after"], "5");
    assert_eq!(app.hits(), 0);
    slow.release(10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_counts_only_inside_its_window() {
    let app = TestUpstream::start("app").await;
    let ingest = TestUpstream::start("ingest").await;
    let late = campaigns("action = \"pass\"", "")
        .replace(
            "starts = 2026-01-01T00:00:00Z",
            "starts = 2031-01-01T00:00:00Z",
        )
        .replace("ends = 2030-12-31T23:59:59Z", "ends = 2031-01-31T00:00:00Z");
    let sw = Kit::new()
        .campaigns(&late)
        .start(&main_body(&app, &ingest.addr.to_string(), ""));
    let post = || {
        sw.client
            .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
            .body("x")
            .send()
    };
    // Before its start the tag is unregistered (and unregistered traffic passes here).
    assert_eq!(
        post().await.unwrap().text().await.unwrap(),
        "app /api/v1/users/register"
    );
    assert_eq!(
        app.last().header("x-seawall-campaign").unwrap(),
        "unregistered"
    );
    // Move the injected clock into the window.
    let into_window = "2031-01-15T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
        - jiff::Timestamp::now().as_millisecond();
    sw.state()
        .wall_offset_ms
        .store(into_window, Ordering::Relaxed);
    assert_eq!(
        post().await.unwrap().text().await.unwrap(),
        "ingest /api/v1/users/register"
    );
    // And past its end.
    let after = "2031-02-01T00:00:00Z"
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
        - jiff::Timestamp::now().as_millisecond();
    sw.state().wall_offset_ms.store(after, Ordering::Relaxed);
    assert_eq!(
        post().await.unwrap().text().await.unwrap(),
        "app /api/v1/users/register"
    );
    assert_eq!(ingest.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_limit_is_enforced_with_429() {
    let (app, ingest, sw) = start(
        "action = \"pass\"",
        "action = \"divert\"\nlimit = { key = \"global\", rate = \"4r/h\", burst = 1, nodelay = true }",
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = sw
            .client
            .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
            .body("x")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429]);
    assert_eq!(ingest.hits(), 2);
    assert_eq!(app.hits(), 0);
    // Untagged traffic is not subject to the campaign's limit.
    assert_eq!(
        sw.client
            .post(sw.url("/api/v1/users/register"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    sw.expect_metric(
        "seawall_campaign_requests_total",
        &[("campaign", "summer-sale"), ("action", "limited")],
        2.0,
    )
    .await;
    sw.expect_metric(
        "seawall_ratelimit_decisions_total",
        &[
            ("route", "campaign"),
            ("limit", "campaign-summer-sale"),
            ("decision", "rejected"),
        ],
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_observed_rate_is_reported_against_the_expected_peak() {
    let (_app, _ingest, sw) = start("action = \"pass\"", "").await;
    for _ in 0..20 {
        sw.client
            .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
            .body("x")
            .send()
            .await
            .unwrap();
    }
    sw.expect_metric(
        "seawall_campaign_expected_peak_rps",
        &[("campaign", "summer-sale")],
        300.0,
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let rps = sw
            .metric(
                "seawall_campaign_observed_rps",
                &[("campaign", "summer-sale")],
            )
            .await;
        let ratio = sw
            .metric(
                "seawall_campaign_load_ratio",
                &[("campaign", "summer-sale")],
            )
            .await;
        // Two scrapes may straddle a tick: retry until both come from the same one.
        if rps > 0.0 && (ratio - rps / 300.0).abs() < 1e-9 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no observed rate after 5 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_ingestion_service_cannot_starve_ordinary_sign_ups() {
    let app = TestUpstream::start("app").await;
    let hung = HungUpstream::start().await;
    // The sign-up route's cap (2) protects the app; diverted requests must not use it.
    let body = main_body(&app, &hung.addr.to_string(), "max_inflight = 50")
        .replace("read_timeout = \"2s\"", "read_timeout = \"1s\"")
        .replace(
            "path_prefix = \"/api/v1/users/register\"\nupstream = \"app\"",
            "path_prefix = \"/api/v1/users/register\"\nupstream = \"app\"\nmax_inflight = 2",
        );
    assert!(body.contains("max_inflight = 2"));
    let sw = Kit::new()
        .campaigns(&campaigns("action = \"divert\"", "action = \"divert\""))
        .start(&body);
    let started = std::time::Instant::now();
    let diverted: Vec<_> = (0..6)
        .map(|_| {
            sw.client
                .post(sw.url("/api/v1/users/register?ref=SUMMERSALE20"))
                .body("lead")
                .send()
        })
        .collect();
    let leads = tokio::spawn(futures::future::join_all(diverted));
    assert_eventually!(
        std::time::Duration::from_secs(5),
        "the six diverted requests reached the hung ingestion service",
        hung.accepted.load(Ordering::SeqCst) >= 6
    );
    // While they hang, ordinary sign-ups still reach the app.
    for _ in 0..3 {
        let r = sw
            .client
            .post(sw.url("/api/v1/users/register"))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "app /api/v1/users/register");
    }
    // And each diverted request gets its retryable 503 within ingestion's read_timeout (1s),
    // not the app's.
    for r in leads.await.unwrap() {
        let r = r.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "diverted requests were answered after {:?}",
        started.elapsed()
    );
    assert_eq!(app.hits(), 3);
}
