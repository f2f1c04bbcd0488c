//! Defects found by using the shipped edge as a hostile client would, each pinned by a test that
//! fails without its fix (issue 12). Real upstream, real client, raw TCP where a client would
//! tidy the request up first.

mod common;

use std::time::Duration;

use common::{Kit, TestUpstream, raw_request};

fn signup_with_limit(app: &TestUpstream, burst: u32) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
upstream = "app"
  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "1r/m"
  burst = {burst}
  nodelay = true

[[routes]]
name = "site"
upstream = "app"
"#,
        app.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_spellings_the_app_treats_alike_meet_the_same_limit_and_are_forwarded_unchanged() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&signup_with_limit(&app, 3));
    let spellings = [
        "/api/v1/users/register",
        "//api/v1/users/register",
        "/api/v1/users/%72egister",
        "/api/v1//users/register",
    ];
    for p in spellings {
        let r = sw.client.post(sw.url(p)).body("x").send().await.unwrap();
        assert_eq!(r.status(), 200, "{p}");
        // The app gets the path as the client sent it.
        assert_eq!(app.last().uri, p);
    }
    // burst 3: the fifth request of this client is over the one limit all four spellings share.
    let r = sw
        .client
        .post(sw.url("/api/v1/users/./register"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let raw = raw_request(
        sw.listen,
        b"POST /api/v1/x/../users/register HTTP/1.1\r\nHost: shop\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx",
        Duration::from_secs(5),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 429"), "{raw}");
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "signup"), ("status", "429")],
        2.0,
    )
    .await;
    assert_eq!(app.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_that_cannot_be_normalized_safely_are_refused_with_400() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&signup_with_limit(&app, 0));
    for (path, why) in [
        ("/api/v1/users%2Fregister", "an encoded '/' (%2F)"),
        ("/api/v1/users/register%00.json", "an encoded NUL (%00)"),
        ("/../api/v1/users/register", "a '..' segment above the root"),
        ("/api/%zz", "a '%' not followed by two hex digits"),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n");
        let raw = raw_request(sw.listen, req.as_bytes(), Duration::from_secs(5)).await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains(why), "{path}: {raw}");
        assert!(raw.to_ascii_lowercase().contains("x-request-id:"), "{raw}");
    }
    assert_eq!(app.hits(), 0);
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "-"), ("status", "400")],
        4.0,
    )
    .await;
}
