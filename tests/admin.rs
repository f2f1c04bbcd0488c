//! The admin listener: health, readiness, config status, metrics, reload and its token.

mod common;

use common::{Kit, TestUpstream};
use sha2::Digest;

fn body_for(up: &TestUpstream, route: &str) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "{route}"
upstream = "app"
"#,
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "r"));
    let r = sw.admin_get("/-/healthy").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");
    let r = sw.admin_get("/-/ready").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
    // Unknown paths and wrong methods are told apart.
    assert_eq!(sw.admin_get("/nope").await.status(), 404);
    let r = sw
        .client
        .post(sw.admin_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = sw.admin_get("/-/reload").await;
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_not_on_the_public_listener() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "r"));
    // On the public listener these paths are ordinary requests for the app.
    let r = sw.get("/metrics").await;
    assert_eq!(r.text().await.unwrap(), "app /metrics");
    sw.client.post(sw.url("/-/reload")).send().await.unwrap();
    assert_eq!(app.hits(), 2);
    assert_eq!(sw.state().status().generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_generation_and_file_digests() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "r"));
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(v["generation"], 1);
    assert!(v["last_reload"].is_null());
    let bytes = std::fs::read(sw.config_path()).unwrap();
    let want = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(
        v["files"][0]["path"],
        sw.config_path().display().to_string()
    );
    assert_eq!(v["files"][0]["sha256"], want);
    assert_eq!(v["routes"][0]["name"], "r");
    assert_eq!(v["routes"][0]["upstream"], "app");
    assert!(v["loaded_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "main"));
    for _ in 0..3 {
        sw.get("/x").await;
    }
    let text = sw.admin_get("/metrics").await.text().await.unwrap();
    assert!(text.contains("# TYPE seawall_requests_total counter"));
    assert!(text.contains("# TYPE seawall_request_duration_seconds histogram"));
    sw.expect_metric(
        "seawall_requests_total",
        &[("route", "main"), ("status", "200")],
        3.0,
    )
    .await;
    sw.expect_metric(
        "seawall_request_duration_seconds_count",
        &[("route", "main")],
        3.0,
    )
    .await;
    sw.expect_metric(
        "seawall_upstream_requests_total",
        &[("upstream", "app"), ("outcome", "response")],
        3.0,
    )
    .await;
    sw.expect_metric("seawall_config_generation", &[], 1.0)
        .await;
    assert!(
        sw.metric("seawall_config_last_reload_success_timestamp_seconds", &[])
            .await
            > 1.7e9
    );
}

/// `seawall_downstream_connections`: a silent connection and a keep-alive one between requests
/// both count, and neither does once closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_open_client_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "main"));
    sw.expect_metric("seawall_downstream_connections", &[], 0.0)
        .await;
    let silent = tokio::net::TcpStream::connect(sw.listen).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(sw.listen).await.unwrap();
    kept.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"app /x") {
        let mut buf = [0u8; 4096];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    sw.expect_metric("seawall_downstream_connections", &[], 2.0)
        .await;
    drop(silent);
    drop(kept);
    sw.expect_metric("seawall_downstream_connections", &[], 0.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_good_config_and_keeps_the_old_one_on_errors() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&body_for(&a, "r"));
    assert_eq!(sw.get("/").await.text().await.unwrap(), "a /");

    // A good edit: the route now goes to b.
    sw.rewrite(&kit, &body_for(&b, "r"));
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(sw.get("/").await.text().await.unwrap(), "b /");

    // A typo: 422 with the located error, and b still serves.
    let broken = body_for(&a, "r").replace("upstream = \"app\"", "upstream = \"apq\"");
    sw.rewrite(&kit, &broken);
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["generation"], 2);
    let err = v["errors"][0].as_str().unwrap();
    let path = sw.config_path().display().to_string();
    assert_eq!(
        err,
        format!("{path}:13:12: error: unknown upstream \"apq\" (defined: app)")
    );
    assert_eq!(sw.get("/").await.text().await.unwrap(), "b /");

    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(v["generation"], 2);
    assert_eq!(v["last_reload"]["ok"], false);
    assert_eq!(v["last_reload"]["error"], err);
    sw.expect_metric(
        "seawall_config_reloads_total",
        &[("result", "failure")],
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_config_reloads_total",
        &[("result", "success")],
        1.0,
    )
    .await;
    sw.expect_metric("seawall_config_generation", &[], 2.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reports_settings_that_need_a_restart() {
    let app = TestUpstream::start("app").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&body_for(&app, "r"));
    let changed = Kit::new().server("threads = 2");
    sw.rewrite(&changed, &body_for(&app, "renamed"));
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["needs_restart"], serde_json::json!(["server.threads"]));
    // The rest of the reload applied.
    let cfg: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(cfg["routes"][0]["name"], "renamed");
    assert_eq!(cfg["needs_restart"], serde_json::json!(["server.threads"]));
    drop(kit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_requires_the_bearer_token_when_configured() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .server(r#"admin_token_file = "admin.token""#)
        .file("admin.token", "s3cret-token\n")
        .start(&body_for(&app, "r"));
    let url = sw.admin_url("/-/reload");
    let r = sw.client.post(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = sw
        .client
        .post(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(sw.state().status().generation, 1);
    let r = sw
        .client
        .post(&url)
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sw.state().status().generation, 2);
    // Reading stays open: GET endpoints need no token.
    assert_eq!(sw.admin_get("/-/config").await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_shows_matchers_csp_policies_and_campaigns() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .csp(
            "default_policy = \"shop\"\n[policies.shop]\nmode = \"report-only\"\n\
             [policies.shop.directives]\ndefault-src = [\"'self'\"]\nobject-src = [\"'none'\"]\n\
             base-uri = [\"'self'\"]\n",
        )
        .campaigns(
            "tag_sources = [\"query:ref\"]\n[unregistered]\naction = \"reject\"\n\
             targets = [\"/signup\"]\n[[launch]]\nname = \"sale\"\ntags = [\"SALE\"]\n\
             action = \"pass\"\nexpected_peak_rps = 50\n",
        )
        .start(&format!(
            "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"signup\"\n\
             host = \"shop.test\"\npath_prefix = \"/signup\"\nmethods = [\"POST\"]\n\
             upstream = \"app\"\nmax_body = \"64KiB\"\n",
            app.addr
        ));
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    let r = &v["routes"][0];
    assert_eq!(r["host"], "shop.test");
    assert_eq!(
        r["match"],
        serde_json::json!({"kind": "path_prefix", "value": "/signup"})
    );
    assert_eq!(r["methods"], serde_json::json!(["POST"]));
    assert_eq!(r["max_body"], 65536);
    assert_eq!(r["csp"], "shop");
    let p = &v["csp"]["policies"][0];
    assert_eq!(p["name"], "shop");
    assert_eq!(p["mode"], "report-only");
    assert!(
        p["header"]
            .as_str()
            .unwrap()
            .starts_with("default-src 'self'")
    );
    assert_eq!(v["csp"]["default_policy"], "shop");
    let c = &v["campaigns"];
    assert_eq!(c["tag_sources"], serde_json::json!(["query:ref"]));
    assert_eq!(c["unregistered"]["action"], "reject");
    assert_eq!(
        c["unregistered"]["scope"],
        serde_json::json!({"targets": ["/signup"], "methods": ["POST", "PUT", "PATCH", "DELETE"]})
    );
    assert_eq!(c["launches"][0]["name"], "sale");
    assert_eq!(c["launches"][0]["in_window"], true);
    assert_eq!(c["launches"][0]["expected_peak_rps"], 50.0);
    assert_eq!(
        c["launches"][0]["scope"]["methods"],
        serde_json::Value::Null
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_include_build_process_and_upstream_timing() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "main"));
    sw.get("/x").await;
    sw.expect_metric(
        "seawall_upstream_duration_seconds_count",
        &[("upstream", "app")],
        1.0,
    )
    .await;
    let text = sw.admin_get("/metrics").await.text().await.unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        common::sample(&text, "seawall_build_info", &[("version", version)]),
        Some(1.0)
    );
    assert!(common::sample(&text, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(common::sample(&text, "process_open_fds", &[]).unwrap() > 3.0);
    assert!(common::sample(&text, "process_cpu_seconds_total", &[]).is_some());
    assert_eq!(
        common::sample(&text, "seawall_access_log_dropped_total", &[]),
        Some(0.0)
    );
}

/// Any web page can make a browser POST to a loopback admin listener (a "simple" request
/// needs no preflight): such a POST carries the page's `Origin` and is refused before it does
/// anything. The console's own POSTs (same origin) and clients with no `Origin` still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_from_another_origin_is_refused_and_changes_nothing() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&body_for(&app, "r"));
    let reload = |origin: Option<String>| {
        let mut r = sw.client.post(sw.admin_url("/-/reload"));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        async move { r.send().await.unwrap() }
    };
    for evil in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let r = reload(Some(evil.to_string())).await;
        assert_eq!(r.status(), 403, "Origin: {evil}");
        assert!(r.text().await.unwrap().contains("another origin"));
    }
    assert_eq!(sw.state().status().generation, 1, "no reload happened");
    let own = format!("http://{}", sw.admin);
    assert_eq!(
        reload(Some(own)).await.status(),
        200,
        "the console's own origin"
    );
    assert_eq!(reload(None).await.status(), 200, "no Origin (curl)");
    assert_eq!(sw.state().status().generation, 3);
}
