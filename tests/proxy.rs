//! The proxy end to end: routing, host matching, Seawall's own answers, forwarding headers,
//! in-flight caps, load balancing and health checks. Real upstreams, real client.

mod common;

use std::time::Duration;

use common::{Kit, TestUpstream, closed_addr};

fn one_route(up: &TestUpstream) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "all"
upstream = "app"
"#,
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_route_wins_in_file_order() {
    let api = TestUpstream::start("api").await;
    let web = TestUpstream::start("web").await;
    let exact = TestUpstream::start("exact").await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.api]
servers = ["{}"]
[upstreams.web]
servers = ["{}"]
[upstreams.exact]
servers = ["{}"]

[[routes]]
name = "health"
path = "/api/health"
upstream = "exact"

[[routes]]
name = "numbered"
path_regex = "^/items/[0-9]+$"
upstream = "exact"

[[routes]]
name = "api-write"
path_prefix = "/api"
methods = ["POST", "put"]
upstream = "api"

[[routes]]
name = "site"
path_prefix = "/"
upstream = "web"
"#,
        api.addr, web.addr, exact.addr
    ));
    let c = &sw.client;
    let body = |r: reqwest::Response| async { r.text().await.unwrap() };
    assert_eq!(body(sw.get("/api/health").await).await, "exact /api/health");
    // The exact route does not take a longer path.
    assert_eq!(
        body(sw.get("/api/health/x").await).await,
        "web /api/health/x"
    );
    assert_eq!(body(sw.get("/items/42").await).await, "exact /items/42");
    assert_eq!(body(sw.get("/items/42x").await).await, "web /items/42x");
    // Methods: POST and PUT (written lower-case) go to api, GET falls through to the site.
    let r = c.post(sw.url("/api/users")).body("x").send().await.unwrap();
    assert_eq!(body(r).await, "api /api/users");
    let r = c.put(sw.url("/api/users")).body("x").send().await.unwrap();
    assert_eq!(body(r).await, "api /api/users");
    assert_eq!(body(sw.get("/api/users").await).await, "web /api/users");
    // A query string does not take part in path matching, and reaches the upstream intact.
    assert_eq!(
        body(sw.get("/api/health?x=1").await).await,
        "exact /api/health"
    );
    assert_eq!(exact.last().uri, "/api/health?x=1");
    assert_eq!(api.hits(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_matching_exact_wildcard_and_no_match() {
    let shop = TestUpstream::start("shop").await;
    let sub = TestUpstream::start("sub").await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.shop]
servers = ["{}"]
[upstreams.sub]
servers = ["{}"]

[[routes]]
name = "shop"
host = "shop.example.com"
upstream = "shop"

[[routes]]
name = "tenants"
host = "*.example.com"
upstream = "sub"
"#,
        shop.addr, sub.addr
    ));
    let get = |host: &'static str| {
        let req = sw.client.get(sw.url("/p")).header("host", host);
        async move { req.send().await.unwrap() }
    };
    assert_eq!(
        get("shop.example.com").await.text().await.unwrap(),
        "shop /p"
    );
    // Case and port do not matter.
    assert_eq!(
        get("SHOP.Example.com:8080").await.text().await.unwrap(),
        "shop /p"
    );
    assert_eq!(get("a.example.com").await.text().await.unwrap(), "sub /p");
    assert_eq!(get("a.b.example.com").await.text().await.unwrap(), "sub /p");
    // The wildcard does not match the bare domain, nor a lookalike suffix.
    for host in ["example.com", "badexample.com", "other.org"] {
        let r = get(host).await;
        assert_eq!(r.status(), 404, "{host}");
    }
    assert_eq!(shop.hits() + sub.hits(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_is_a_404_with_a_short_body_and_request_id() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]
[[routes]]
name = "only-api"
path_prefix = "/api/"
upstream = "app"
"#,
        app.addr
    ));
    let r = sw.get("/elsewhere").await;
    assert_eq!(r.status(), 404);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "a generated id is 128 bits of hex: {id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        format!("404 Not Found: no route matches this request\nrequest id: {id}\n")
    );
    assert_eq!(app.hits(), 0);
    // Two answers never share an id.
    let other = sw.get("/elsewhere").await;
    assert_ne!(other.headers()["x-request-id"].to_str().unwrap(), id);
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "-"), ("status", "404")],
        2.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_is_passed_through_when_valid_and_replaced_when_not() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&one_route(&app));
    let r = sw
        .client
        .get(sw.url("/x"))
        .header("x-request-id", "edge-abc.123:9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "edge-abc.123:9");
    assert_eq!(app.last().header("x-request-id").unwrap(), "edge-abc.123:9");

    let evil = "a b<script>";
    let r = sw
        .client
        .get(sw.url("/x"))
        .header("x-request-id", evil)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id, evil);
    assert_eq!(id.len(), 32);
    assert_eq!(app.last().header("x-request-id").unwrap(), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_upstream_is_a_502_and_is_counted() {
    let dead = closed_addr();
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.dead]
servers = ["{dead}"]
connect_timeout = "1s"
[[routes]]
name = "r"
upstream = "dead"
"#
    ));
    let r = sw.get("/").await;
    assert_eq!(r.status(), 502);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        r.text().await.unwrap(),
        format!("502 Bad Gateway: the upstream server could not be reached\nrequest id: {id}\n")
    );
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "dead"), ("outcome", "connect_error")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "r"), ("status", "502")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_is_a_504_after_read_timeout() {
    let slow = TestUpstream::builder("slow")
        .delay(Duration::from_secs(5))
        .start()
        .await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.slow]
servers = ["{}"]
read_timeout = "300ms"
[[routes]]
name = "r"
upstream = "slow"
"#,
        slow.addr
    ));
    let r = sw.get("/").await;
    assert_eq!(r.status(), 504);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        r.text().await.unwrap(),
        format!(
            "504 Gateway Timeout: the upstream server did not answer in time\nrequest id: {id}\n"
        )
    );
    assert_eq!(slow.hits(), 1);
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "slow"), ("outcome", "timeout")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_an_untrusted_peer() {
    let app = TestUpstream::start("app").await;
    // The test client (127.0.0.1) is not a trusted proxy here.
    let sw = Kit::new()
        .server(r#"trusted_proxies = ["10.0.0.0/8"]"#)
        .start(&one_route(&app));
    sw.client
        .get(sw.url("/"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-real-ip", "6.6.6.6")
        .send()
        .await
        .unwrap();
    let seen = app.last();
    // The client cannot choose its address: its own X-Forwarded-For is not passed on.
    assert_eq!(seen.header("x-forwarded-for").unwrap(), "127.0.0.1");
    assert_eq!(seen.header("x-real-ip").unwrap(), "127.0.0.1");
    assert_eq!(seen.header("x-forwarded-proto").unwrap(), "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_from_a_trusted_proxy() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .server(r#"trusted_proxies = ["127.0.0.1/32", "10.0.0.0/8"]"#)
        .start(&one_route(&app));
    sw.client
        .get(sw.url("/"))
        .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
        .header("x-forwarded-for", "10.1.2.3")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let seen = app.last();
    // The chain is kept and the peer appended; the client is the first untrusted hop from the right.
    assert_eq!(
        seen.header("x-forwarded-for").unwrap(),
        "6.6.6.6, 198.51.100.7, 10.1.2.3, 127.0.0.1"
    );
    assert_eq!(seen.header("x-real-ip").unwrap(), "198.51.100.7");
    assert_eq!(seen.header("x-forwarded-proto").unwrap(), "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_inflight_cap_answers_503_with_retry_after() {
    let app = TestUpstream::builder("app").gated().start().await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]
[[routes]]
name = "capped"
path_prefix = "/capped"
upstream = "app"
max_inflight = 2
[[routes]]
name = "free"
upstream = "app"
"#,
        app.addr
    ));
    let first = tokio::spawn(sw.client.get(sw.url("/capped/1")).send());
    let second = tokio::spawn(sw.client.get(sw.url("/capped/2")).send());
    assert_eventually!(
        Duration::from_secs(5),
        "two requests held at the upstream",
        app.hits() == 2
    );
    let third = sw.get("/capped/3").await;
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    assert!(third.text().await.unwrap().starts_with(
        "503 Service Unavailable: too many requests in flight for this route, retry shortly\n"
    ));
    // Another route is not affected by this route's cap.
    let other = tokio::spawn(sw.client.get(sw.url("/other")).send());
    assert_eventually!(
        Duration::from_secs(5),
        "the other route reached the upstream",
        app.hits() == 3
    );
    app.release(3);
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(second.await.unwrap().unwrap().status(), 200);
    assert_eq!(other.await.unwrap().unwrap().status(), 200);
    // Slots are given back when requests end.
    app.release(1);
    assert_eq!(sw.get("/capped/4").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_inflight_cap_answers_503_and_counts_overloaded() {
    let app = TestUpstream::builder("app").gated().start().await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.app]
servers = ["{}"]
max_inflight = 1
[[routes]]
name = "a"
path_prefix = "/a"
upstream = "app"
[[routes]]
name = "b"
upstream = "app"
"#,
        app.addr
    ));
    let held = tokio::spawn(sw.client.get(sw.url("/a")).send());
    assert_eventually!(Duration::from_secs(5), "one request held", app.hits() == 1);
    // The cap is the upstream's: a request on another route is refused too.
    let r = sw.get("/b").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("too many requests in flight to the upstream")
    );
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "app"), ("outcome", "overloaded")],
        1.0,
    )
    .await;
    app.release(1);
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_and_failover_to_the_next_server() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let dead = closed_addr();
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.pool]
servers = ["{}", "{}", "{dead}"]
[[routes]]
name = "r"
upstream = "pool"
"#,
        a.addr, b.addr
    ));
    for _ in 0..9 {
        assert_eq!(
            sw.get("/").await.status(),
            200,
            "a dead server is skipped, not answered as 502"
        );
    }
    // Each live server took its share plus the retries that left the dead one.
    assert!(
        a.hits() >= 3 && b.hits() >= 3,
        "a={} b={}",
        a.hits(),
        b.hits()
    );
    assert_eq!(a.hits() + b.hits(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_takes_a_failing_server_out_and_back() {
    let good = TestUpstream::start("good").await;
    let sick = TestUpstream::builder("sick").status(500).start().await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.pool]
servers = ["{}", "{}"]
health_check = {{ path = "/healthz", interval = "100ms", timeout = "500ms" }}
[[routes]]
name = "r"
upstream = "pool"
"#,
        good.addr, sick.addr
    ));
    let healthy = || sw.state().snapshot.load().upstreams["pool"].healthy_count();
    assert_eventually!(
        Duration::from_secs(5),
        "the sick server is marked down",
        healthy() == 1
    );
    assert!(sick.seen().iter().any(|s| s.uri == "/healthz"));
    let before = sick.hits();
    for _ in 0..6 {
        let r = sw.get("/page").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "good /page");
    }
    // Only health checks reached the sick server, no user request.
    assert!(sick.seen()[before..].iter().all(|s| s.uri == "/healthz"));
    let config: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(config["upstreams"][0]["healthy_servers"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_servers_unhealthy_is_a_502_naming_the_cause() {
    let sick = TestUpstream::builder("sick").status(503).start().await;
    let sw = Kit::new().start(&format!(
        r#"
[upstreams.pool]
servers = ["{}"]
health_check = {{ path = "/healthz", interval = "100ms" }}
[[routes]]
name = "r"
upstream = "pool"
"#,
        sick.addr
    ));
    let pool_down = || sw.state().snapshot.load().upstreams["pool"].healthy_count() == 0;
    assert_eventually!(
        Duration::from_secs(5),
        "the pool is marked down",
        pool_down()
    );
    let r = sw.get("/").await;
    assert_eq!(r.status(), 502);
    assert!(
        r.text()
            .await
            .unwrap()
            .starts_with("502 Bad Gateway: no healthy server in the upstream pool\n")
    );
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "pool"), ("outcome", "no_healthy_server")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_and_method_reach_the_upstream_intact() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&one_route(&app));
    let body = "email=a%40example.com&company_size=50";
    let r = sw
        .client
        .post(sw.url("/api/v1/users/register?ref=X"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = app.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.uri, "/api/v1/users/register?ref=X");
    assert_eq!(seen.body, body);
    assert_eq!(
        seen.header("content-type").unwrap(),
        "application/x-www-form-urlencoded"
    );
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "all"), ("status", "200")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "app"), ("outcome", "response")],
        1.0,
    )
    .await;
}

/// Plain-TCP client connections have no read buffer in front of Pingora's parser and a 16 KiB
/// write buffer (`server::plain_tcp_buffers`): a request header larger than that, a request body
/// and a response body of a megabyte each still arrive whole, twice on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_headers_and_bodies_arrive_whole_both_ways() {
    let page: &'static str = Box::leak("p".repeat(1 << 20).into_boxed_str());
    let app = TestUpstream::builder("app").body(page).start().await;
    let sw = Kit::new().start(&one_route(&app));
    let big = "v".repeat(20 * 1024);
    let body = "b".repeat(1 << 20);
    for i in 0..2 {
        let r = sw
            .client
            .post(sw.url(&format!("/upload/{i}")))
            .header("x-big", &big)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let got = r.bytes().await.unwrap();
        assert_eq!(got.len(), page.len(), "response body length, request {i}");
        assert!(got == page.as_bytes(), "response body differs, request {i}");
        let seen = app.last();
        assert_eq!(seen.uri, format!("/upload/{i}"));
        assert_eq!(seen.header("x-big").as_deref(), Some(big.as_str()));
        assert_eq!(
            seen.body.len(),
            body.len(),
            "request body length, request {i}"
        );
        assert!(
            seen.body == body.as_bytes(),
            "request body differs, request {i}"
        );
    }
}

/// A streamed response (chunked, an HTML page here, so that CSP applies to it too) reaches the
/// client chunk by chunk: the client's write buffer holds back only bodies of known length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_response_streams_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed before sending its request");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ntransfer-encoding: chunked\r\n\r\n\
              6\r\nfirst \r\n",
        )
        .await
        .unwrap();
        let _ = released.await;
        s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
    });
    let sw = Kit::new().start(&format!(
        "[upstreams.app]\nservers = [\"{addr}\"]\n\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n"
    ));
    let mut resp = sw.get("/").await;
    assert_eq!(resp.status(), 200);
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("the first chunk did not arrive while the upstream held the rest")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first ");
    release.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"last");
}
