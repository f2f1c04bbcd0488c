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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_gets_413_declared_or_streamed_and_a_route_may_allow_more() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().server("max_body = \"1KiB\"").start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "uploads"
path_prefix = "/upload"
upstream = "app"
max_body = "64KiB"

[[routes]]
name = "site"
upstream = "app"
"#,
        app.addr
    ));
    let post = |path: &str, body: Vec<u8>| sw.client.post(sw.url(path)).body(body).send();
    let r = post("/form", vec![b'x'; 1024]).await.unwrap();
    assert_eq!(r.status(), 200, "exactly max_body is accepted");
    let r = post("/form", vec![b'x'; 1025]).await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("larger than this endpoint accepts")
    );
    assert_eq!(
        app.hits(),
        1,
        "a declared body over the limit is never sent"
    );
    let r = post("/upload/avatar", vec![b'x'; 60 * 1024]).await.unwrap();
    assert_eq!(r.status(), 200, "the route's own max_body");
    // Without a Content-Length (chunked), the body is counted as it streams.
    let mut req = b"POST /form HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..8 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'y'; 512]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let raw = raw_request(sw.listen, &req, Duration::from_secs(5)).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "site"), ("status", "413")],
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_campaign_cookie_is_counted_as_invalid_and_logged_cut() {
    // The default max_header_bytes (32 KiB) answers such a header 431 before any campaign
    // logic; an edge configured for large headers must still bound what a tag can cost.
    use common::process::{line_with, run_logged};
    let app = TestUpstream::start("app").await;
    let ingest = TestUpstream::start("ingest").await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = common::free_addrs();
    std::fs::write(
        dir.path().join("campaigns.toml"),
        "tag_sources = [\"cookie:utm_campaign\"]\ningest_upstream = \"ingest\"\n\
         [unregistered]\naction = \"divert\"\ntargets = [\"/signup\"]\n",
    )
    .unwrap();
    let main = format!(
        "[server]\nlisten = [\"{listen}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\n\
         access_log = false\ncampaigns_file = \"campaigns.toml\"\nmax_header_bytes = \"1000KiB\"\n\
         upgrade_sock = \"{d}/up.sock\"\npid_file = \"{d}/pid\"\n\
         [upstreams.app]\nservers = [\"{}\"]\n[upstreams.ingest]\nservers = [\"{}\"]\n\
         [[routes]]\nname = \"all\"\nupstream = \"app\"\n",
        app.addr,
        ingest.addr,
        d = dir.path().display()
    );
    let config = dir.path().join("seawall.toml");
    std::fs::write(&config, main).unwrap();
    let (_proc, lines) = run_logged(&["run", "--config", config.to_str().unwrap()]);
    assert!(
        line_with(&lines, "seawall is ready", Duration::from_secs(20)).is_some(),
        "not ready"
    );
    let cookie = format!("utm_campaign={}", "Z".repeat(500 * 1024));
    let r = common::client()
        .post(format!("http://{listen}/signup"))
        .header("cookie", cookie)
        .body("lead")
        .send()
        .await
        .unwrap();
    // It follows the unregistered policy (diverted), under the tag "invalid".
    assert_eq!(r.text().await.unwrap(), "ingest /signup");
    let line = line_with(
        &lines,
        "unregistered campaign tag seen",
        Duration::from_secs(5),
    )
    .expect("the first sighting is logged");
    assert!(line.len() < 1024, "a {} byte log line", line.len());
    assert!(line.contains("tag=invalid"), "{line}");
    assert!(
        line.contains(&"z".repeat(64)) || line.contains(&"Z".repeat(64)),
        "{line}"
    );
    let page = common::client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let n = common::sample(
        &page,
        "seawall_campaign_unregistered_tags_total",
        &[("tag", "invalid")],
    );
    assert_eq!(n, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_with_control_characters_never_reach_a_metric_label() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .campaigns("tag_sources = [\"query:ref\"]\n[unregistered]\naction = \"pass\"\n")
        .start(&format!(
            "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n",
            app.addr
        ));
    for tag in [
        "evil%0D%0Ainjected_total%201",
        "nul%00byte",
        "tab%09tag",
        "fine-tag",
    ] {
        assert_eq!(sw.get(&format!("/?ref={tag}")).await.status(), 200);
    }
    sw.expect_metric(
        "seawall_campaign_unregistered_tags_total",
        &[("tag", "invalid")],
        3.0,
    )
    .await;
    let page = sw.admin_get("/metrics").await.bytes().await.unwrap();
    assert!(!page.contains(&b'\r'), "a raw CR in /metrics");
    assert!(!page.contains(&0), "a raw NUL in /metrics");
    assert!(!page.contains(&b'\t'), "a raw tab in /metrics");
    let text = String::from_utf8(page.to_vec()).unwrap();
    assert!(!text.contains("injected_total"), "{text}");
    assert_eq!(
        common::sample(
            &text,
            "seawall_campaign_unregistered_tags_total",
            &[("tag", "fine-tag")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_believed_from_trusted_proxies_only() {
    let app = TestUpstream::start("app").await;
    let body = format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n",
        app.addr
    );
    let forged = [
        ("forwarded", "for=1.2.3.4;host=admin.internal;proto=https"),
        ("x-forwarded-host", "admin.internal"),
        ("x-forwarded-port", "8443"),
        ("x-forwarded-prefix", "/admin"),
    ];
    let send = |sw: &common::Seawall| {
        let mut r = sw.client.get(sw.url("/"));
        for (k, v) in forged {
            r = r.header(k, v);
        }
        r.send()
    };
    // A client that is not a trusted proxy: dropped before the app sees them.
    let sw = Kit::new().start(&body);
    assert_eq!(send(&sw).await.unwrap().status(), 200);
    let seen = app.last();
    for (k, _) in forged {
        assert_eq!(seen.header(k), None, "{k} reached the app");
    }
    // From a trusted proxy they pass as sent.
    let sw = Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&body);
    assert_eq!(send(&sw).await.unwrap().status(), 200);
    let seen = app.last();
    for (k, v) in forged {
        assert_eq!(seen.header(k).as_deref(), Some(v), "{k}");
    }
}
