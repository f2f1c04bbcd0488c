//! The incident console's JSON (`/-/status`, `/-/limits`) and how its page is served, against a
//! real Seawall with real upstreams and a real HTTP client. The browser test is
//! `console_browser.rs`.

mod common;

use std::time::Duration;

use common::{Kit, Seawall, TestUpstream};
use serde_json::Value;

/// A proxy trusting loopback's X-Forwarded-For, so one client can speak for many addresses.
fn kit() -> Kit {
    Kit::new().server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
}

fn body(app: &TestUpstream, limits: &str) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
{limits}

[[routes]]
name = "site"
path_prefix = "/"
upstream = "app"
"#,
        app.addr
    )
}

const PER_IP: &str = r#"
  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "1r/m"
  nodelay = true
"#;

async fn get_as(sw: &Seawall, path: &str, client: &str) -> u16 {
    sw.client
        .get(sw.url(path))
        .header("x-forwarded-for", client)
        .send()
        .await
        .expect("GET through seawall")
        .status()
        .as_u16()
}

async fn json(sw: &Seawall, path: &str) -> Value {
    let r = sw.admin_get(path).await;
    assert_eq!(r.status(), 200, "GET {path}");
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.expect("JSON")
}

/// `/-/status` once `ready` holds of it (the history is fed once a second).
async fn status_when(sw: &Seawall, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    loop {
        let v = json(sw, "/-/status").await;
        if ready(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within 8s: {what}; last /-/status: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn by<'a>(list: &'a Value, field: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|v| v[field] == value))
        .unwrap_or_else(|| panic!("no entry with {field} = {value:?} in {list}"))
}

/// The limited clients, as `/-/limits` lists them: address (IPv6 as its /64) and count.
fn keys(list: &Value) -> Vec<(String, u64)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert_eq!(k["error"], 0, "few keys: counts are exact");
            (
                k["key"].as_str().unwrap().to_string(),
                k["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_lists_the_most_rejected_clients_with_counts() {
    let app = TestUpstream::start("app").await;
    let sw = kit().start(&body(&app, PER_IP));
    // 1 r/m, no burst: each client's first request passes, the rest are rejected.
    for (client, n) in [
        ("203.0.113.7", 10),
        ("198.51.100.1", 3),
        ("2001:db8:1:2::5", 2),
        ("2001:db8:1:2::6", 2),
        ("192.0.2.200", 1),
    ] {
        for _ in 0..n {
            get_as(&sw, "/api/x", client).await;
        }
    }
    let v = json(&sw, "/-/limits").await;
    assert_eq!(v["window_s"], 60);
    assert_eq!(v["top"], 20);
    let l = by(&v["limits"], "name", "per-ip");
    assert_eq!(l["route"], "api");
    assert_eq!(l["key"], "client_ip");
    assert_eq!(
        keys(&l["rejected"]),
        [
            ("203.0.113.7".to_string(), 9),
            ("2001:db8:1:2::/64".to_string(), 3),
            ("198.51.100.1".to_string(), 2),
        ],
        "one IPv6 host owns its /64; a client never rejected is not listed"
    );
    assert_eq!(l["dry_run_rejected"], Value::Array(vec![]));
    // Client identifiers stay on the admin listener: on the public one the path is the app's.
    let r = sw.get("/-/limits").await;
    assert_eq!(r.text().await.unwrap(), "app /-/limits");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keys_are_cut_at_64_characters_and_dry_run_is_listed_apart() {
    let app = TestUpstream::start("app").await;
    let sw = kit().start(&body(
        &app,
        r#"
  [[routes.limits]]
  name = "per-key"
  key = "header:x-api-key"
  rate = "1r/m"
  nodelay = true
  dry_run = true
"#,
    ));
    let long_key = format!("tok-{}", "x".repeat(96));
    for _ in 0..5 {
        let r = sw
            .client
            .get(sw.url("/api/x"))
            .header("x-api-key", &long_key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "dry run: nothing is rejected");
    }
    let v = json(&sw, "/-/limits").await;
    let l = by(&v["limits"], "name", "per-key");
    assert_eq!(l["dry_run"], true);
    assert_eq!(l["rejected"], Value::Array(vec![]));
    let shown = format!("{}…", &long_key[..64]);
    assert_eq!(keys(&l["dry_run_rejected"]), [(shown, 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_route_rates_statuses_latency_and_limit_decisions() {
    let app = TestUpstream::start("app").await;
    let sw = kit().start(&body(&app, PER_IP));
    for _ in 0..6 {
        get_as(&sw, "/api/x", "203.0.113.9").await;
        get_as(&sw, "/page", "203.0.113.9").await;
    }
    // The history is fed once a second: wait for the seconds that hold the traffic.
    let v = status_when(&sw, "api's 6 requests in its series", |v| {
        by(&v["routes"], "name", "api")["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>()
            == 6
    })
    .await;
    assert_eq!(v["rate_span_s"], 10);
    assert_eq!(v["window_s"], 60);
    let api = by(&v["routes"], "name", "api");
    assert_eq!(api["upstream"], "app");
    assert_eq!(api["servers"], 1);
    assert_eq!(api["healthy_servers"], 1);
    assert_eq!(api["limits"][0], "per-ip");
    assert_eq!(api["matched"], true);
    assert!(api["rps"].as_f64().unwrap() > 0.0);
    let span = api["rate_span_s"].as_f64().unwrap();
    let close = |field: &str, want: f64| {
        let got = api["per_s"][field].as_f64().unwrap();
        assert!(
            (got - want / span).abs() < 0.002,
            "{field}: {got}, want {want}/{span}"
        );
    };
    close("2xx", 1.0);
    close("4xx", 5.0);
    close("5xx", 0.0);
    close("3xx", 0.0);
    assert_eq!(api["requests_in_latency_span"], 6);
    assert!(api["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(api["p99_ms"].as_f64().unwrap() >= api["p50_ms"].as_f64().unwrap());
    let site = by(&v["routes"], "name", "site");
    assert!(site["p99_ms"].is_number());
    assert!(site["per_s"]["4xx"].as_f64().unwrap() == 0.0);

    let l = by(&v["limits"], "name", "per-ip");
    assert_eq!(l["scope"], "api");
    assert_eq!(l["rate"], "1r/m");
    assert_eq!(l["burst"], 0);
    assert_eq!(l["max_keys"], 100_000);
    let decided: f64 = ["passed", "rejected"]
        .iter()
        .map(|d| l["per_s"][d].as_f64().unwrap())
        .sum();
    assert!((decided * l["rate_span_s"].as_f64().unwrap() - 6.0).abs() < 0.01);
    assert_eq!(l["top_rejected"][0]["key"], "203.0.113.9");
    assert_eq!(l["top_rejected"][0]["count"], 5);
    assert_eq!(
        l["rejected_series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum::<u64>(),
        5
    );
    status_when(&sw, "the tracked-keys gauge", |v| {
        by(&v["limits"], "name", "per-ip")["tracked_keys"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_has_every_section_the_page_reads() {
    let app = TestUpstream::start("app").await;
    let sw = kit()
        .campaigns(
            r#"
tag_sources = ["query:ref"]

[unregistered]
action = "pass"

[[launch]]
name = "summer-sale"
tags = ["SUMMER"]
owner = "growth@example.com"
ticket = "MKT-1"
expected_peak_rps = 50
action = "pass"
limit = { key = "global", rate = "100r/s", burst = 10 }
"#,
        )
        .start(&body(&app, ""));
    for _ in 0..3 {
        sw.get("/page?ref=SUMMER").await;
    }
    sw.get("/page?ref=surprise-tiktok").await;
    let v = status_when(&sw, "the launch's observed rate", |v| {
        by(&v["campaigns"], "name", "summer-sale")["observed_rps"].as_f64() > Some(0.0)
    })
    .await;
    let o = &v["overview"];
    assert!(!o["instance"].as_str().unwrap().is_empty());
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert!(o["uptime_s"].is_u64() && o["history_s"].as_u64() > Some(0));
    assert_eq!(o["generation"], 1);
    assert!(o["last_reload"].is_null());
    assert_eq!(o["warnings"], Value::Array(vec![]));
    assert_eq!(o["needs_restart"], Value::Array(vec![]));
    assert_eq!(o["admin_token_required"], false);
    assert_eq!(o["admin_listen"], sw.admin.to_string());
    assert_eq!(o["listen"][0], sw.listen.to_string());
    assert!(o["now"].as_str().unwrap().ends_with('Z'));

    let launch = by(&v["campaigns"], "name", "summer-sale");
    assert_eq!(launch["registered"], true);
    assert_eq!(launch["action"], "pass");
    assert_eq!(launch["expected_peak_rps"], 50.0);
    assert_eq!(launch["window"], "active");
    assert_eq!(launch["owner"], "growth@example.com");
    assert_eq!(launch["ticket"], "MKT-1");
    assert_eq!(launch["tags"][0], "summer");
    assert_eq!(launch["limit"], "campaign-summer-sale");
    let observed = launch["observed_rps"].as_f64().unwrap();
    assert!((launch["ratio"].as_f64().unwrap() - observed / 50.0).abs() < 0.001);
    assert!(!launch["series"].as_array().unwrap().is_empty());
    assert!(launch["peak_rps_10m"].as_f64().unwrap() >= observed);
    let unreg = by(&v["campaigns"], "name", "unregistered");
    assert_eq!(unreg["registered"], false);
    assert_eq!(unreg["action"], "pass");
    assert!(unreg["expected_peak_rps"].is_null());
    assert_eq!(unreg["tags_seen"][0]["tag"], "surprise-tiktok");
    assert_eq!(unreg["tags_seen"][0]["count"], 1);
    let campaign_limit = by(&v["limits"], "name", "campaign-summer-sale");
    assert_eq!(campaign_limit["scope"], "campaign");
    assert_eq!(campaign_limit["campaign"], "summer-sale");
    assert!(campaign_limit["route"].is_null());

    let up = by(&v["upstreams"], "name", "app");
    assert_eq!(up["servers"][0], app.addr.to_string());
    assert_eq!(up["healthy_servers"], 1);
    for field in ["total", "last_10m", "series", "violations", "policies"] {
        assert!(!v["csp"][field].is_null(), "csp.{field}");
    }
    assert_eq!(v["csp"]["total"], 0);
    // None configured here: empty, and the page shows no panel for them.
    for section in ["queues", "canaries", "fleet"] {
        assert_eq!(v[section], Value::Array(vec![]), "{section}");
    }
}

/// The panels the page shows only when configured: a queue with its depth, a canary with its
/// weight in force, the fleet's live instances from their heartbeats in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_queues_canaries_and_fleet_instances() {
    let Some(redis) = common::redis::RedisServer::start() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let next = TestUpstream::start("next").await;
    let sw = kit().start(&format!(
        r#"
[fleet]
redis = "{}"
instance = "edge-a"
timeout = "250ms"

[upstreams.app]
servers = ["{app}"]
[upstreams.next]
servers = ["{next}"]

[queues.leads]
deliver_to = "app"
rate = "10r/s"

[[routes]]
name = "signup"
path_prefix = "/signup"
queue = "leads"

[[routes]]
name = "site"
path_prefix = "/"
upstream = "app"
  [routes.canary]
  upstream = "next"
  weight = 20
  sticky = "client_ip"
"#,
        redis.url(),
        app = app.addr,
        next = next.addr,
    ));
    let r = sw
        .client
        .post(sw.url("/signup"))
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v = status_when(&sw, "this instance in the fleet list", |v| {
        v["fleet"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["status"] == "alive (this instance)"))
    })
    .await;
    let me = by(&v["fleet"], "instance", "edge-a");
    assert_eq!(me["version"], env!("CARGO_PKG_VERSION"));

    let q = by(&v["queues"], "name", "leads");
    for field in [
        "depth",
        "bytes",
        "oldest_age_s",
        "pace_rps",
        "inflight",
        "dead_letters",
        "paused",
    ] {
        assert!(!q[field].is_null(), "queues[].{field} in {q}");
    }
    assert_eq!(q["paused"], false);
    assert_eq!(q["store"], "spool");

    let c = by(&v["canaries"], "route", "site");
    assert_eq!(c["upstream"], "next");
    assert_eq!(c["configured_weight"], 20);
    assert_eq!(c["weight"], 20.0);
    assert_eq!(c["state"], "active");

    // Redis gone: this instance is still listed, marked, and /-/status still answers.
    let mut redis = redis;
    redis.kill();
    let v = status_when(&sw, "the fleet list without Redis", |v| {
        v["fleet"][0]["status"]
            .as_str()
            .is_some_and(|s| s.contains("Redis unreachable"))
    })
    .await;
    assert_eq!(v["fleet"][0]["instance"], "edge-a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_reload_is_shown_with_its_place_and_the_top_keys_survive_reloads() {
    let app = TestUpstream::start("app").await;
    let sw = kit().start(&body(&app, PER_IP));
    for _ in 0..3 {
        get_as(&sw, "/api/x", "203.0.113.50").await;
    }
    sw.rewrite(
        &kit(),
        &format!("{}\n[[routes]]\nname = 7\n", body(&app, PER_IP)),
    );
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v = json(&sw, "/-/status").await;
    let last = &v["overview"]["last_reload"];
    assert_eq!(last["ok"], false);
    let err = &last["errors"][0];
    let at = err["at"].as_str().unwrap();
    let file = sw.config_path().display().to_string();
    assert!(at.starts_with(&format!("{file}:")), "{at}");
    let line_col: Vec<&str> = at[file.len() + 1..].split(':').collect();
    assert!(
        line_col.len() == 2 && line_col.iter().all(|n| n.parse::<u32>().is_ok()),
        "{at}"
    );
    assert!(!err["message"].as_str().unwrap().is_empty());
    assert_eq!(v["overview"]["generation"], 1);

    // A good reload (by the file watcher or the POST, whichever comes first) that changes the limit's rate keeps its rejected keys.
    sw.rewrite(&kit(), &body(&app, &PER_IP.replace("1r/m", "2r/m")));
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = json(&sw, "/-/status").await;
    assert_eq!(v["overview"]["last_reload"]["ok"], true);
    assert!(v["overview"]["generation"].as_u64() >= Some(2));
    let v = json(&sw, "/-/limits").await;
    let l = by(&v["limits"], "name", "per-ip");
    assert_eq!(l["rate"], "2r/m");
    assert_eq!(keys(&l["rejected"]), [("203.0.113.50".to_string(), 2)]);
}

/// Every attribute value that names a resource in the page points at this admin listener.
fn resource_urls(html: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(&rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_self_contained_under_its_own_strict_csp() {
    let app = TestUpstream::start("app").await;
    let sw = kit().start(&body(&app, ""));
    let r = sw.admin_get("/").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(
        r.headers()["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let html = r.text().await.unwrap();
    let urls = resource_urls(&html);
    assert!(
        urls.contains(&"/console.js") && urls.contains(&"/console.css"),
        "{urls:?}"
    );
    assert!(
        urls.iter()
            .all(|u| u.starts_with('/') && !u.starts_with("//")),
        "{urls:?}"
    );
    assert!(
        !html.contains(" style=") && !html.contains("<style"),
        "no inline style"
    );
    assert_eq!(html.matches("<script").count(), 1, "one script element");
    assert!(html.contains("<script src=\"/console.js\" defer></script>"));
    for (path, content_type) in [
        ("/console.js", "text/javascript; charset=utf-8"),
        ("/console.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let r = sw.admin_get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        let text = r.text().await.unwrap();
        assert!(!text.contains("https://"), "{path} names another host");
        if path == "/console.js" {
            for banned in [
                "eval(",
                "innerHTML",
                "new Function",
                "setAttribute('style'",
                "cssText",
            ] {
                assert!(!text.contains(banned), "console.js uses {banned}");
            }
        }
        if path == "/console.css" {
            assert!(
                !text.contains("@import") && !text.contains("url("),
                "no fetched CSS"
            );
        }
    }
    // Nothing changes state on a GET, and the page's paths take no POST.
    let r = sw.client.post(sw.admin_url("/")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");
    let r = sw
        .client
        .post(sw.admin_url("/-/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    // The public listener serves the app at "/", not the console.
    assert_eq!(sw.get("/").await.text().await.unwrap(), "app /");
}
