//! Canary releases through the proxy, with two real upstreams: the sticky split, a failing
//! canary rolled back by Seawall itself, the rollback kept across an unrelated reload and lifted
//! by a changed table, a healthy canary left alone, a manual rollback, and the campaign freeze.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Kit, Seawall, TestUpstream};

fn body(stable: &TestUpstream, canary: &TestUpstream, table: &str) -> String {
    format!(
        r#"
[upstreams.stable]
servers = ["{}"]
[upstreams.next]
servers = ["{}"]

[[routes]]
name = "signup"
path_prefix = "/signup"
upstream = "stable"
  [routes.canary]
  upstream = "next"
{table}
"#,
        stable.addr, canary.addr
    )
}

/// One request from client `ip` (through the trusted proxy 127.0.0.1); which upstream answered.
async fn from(sw: &Seawall, ip: &str) -> (u16, String) {
    let r = sw
        .client
        .get(sw.url("/signup"))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn side(answer: &str) -> &str {
    answer.split(' ').next().unwrap_or("")
}

async fn canary_json(sw: &Seawall) -> serde_json::Value {
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    v["canaries"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_stay_on_their_side_and_the_share_follows_the_weight() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::start("next").await;
    let sw = Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&body(
            &stable,
            &next,
            "  weight = 30\n  sticky = \"client_ip\"\n",
        ));
    let mut sides: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..400 {
        let ip = format!("198.51.{}.{}", i / 200, i % 200 + 1);
        let (status, a) = from(&sw, &ip).await;
        assert_eq!(status, 200);
        sides.insert(ip, side(&a).to_string());
    }
    // The same clients again: each on the side it had.
    for (ip, was) in &sides {
        assert_eq!(side(&from(&sw, ip).await.1), was, "{ip} changed sides");
    }
    let on_canary = sides.values().filter(|s| *s == "next").count();
    assert!(
        (80..=160).contains(&on_canary),
        "{on_canary} of 400 clients on a 30% canary"
    );
    sw.expect_metric(
        "seawall_canary_requests_total",
        &[("route", "signup"), ("side", "canary"), ("outcome", "ok")],
        2.0 * on_canary as f64,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_the_cookie_is_drawn_once_and_told_to_keep_its_side() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::start("next").await;
    let sw = Kit::new().start(&body(
        &stable,
        &next,
        "  weight = 50\n  sticky = \"cookie:seawall_canary\"\n",
    ));
    let mut seen = BTreeMap::new();
    for _ in 0..40 {
        let r = sw.get("/signup").await;
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            cookie.ends_with("; Path=/; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_string();
        let first = side(&r.text().await.unwrap()).to_string();
        // With the cookie, the client stays where the draw put it, and gets no new cookie.
        for _ in 0..3 {
            let r = sw
                .client
                .get(sw.url("/signup"))
                .header("cookie", &pair)
                .send()
                .await
                .unwrap();
            assert!(r.headers().get("set-cookie").is_none());
            assert_eq!(side(&r.text().await.unwrap()), first);
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert!(seen.len() == 2, "40 draws at 50% all on one side: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_rolled_back_then_gets_nothing_and_the_rollback_survives_reloads() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::builder("next").status(503).start().await;
    let table = "  weight = 50\n  window = \"1s\"\n  min_requests = 5\n  \
                 max_error_rate = 0.05\n  bad_windows = 2\n";
    let kit = Kit::new().server("trusted_proxies = [\"127.0.0.1/32\"]");
    let sw = Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&body(&stable, &next, table));
    let mut i = 0u32;
    assert_eventually!(
        Duration::from_secs(15),
        "the failing canary is rolled back",
        {
            for _ in 0..20 {
                i += 1;
                let _ = from(&sw, &format!("203.0.113.{}", i % 250 + 1)).await;
            }
            canary_json(&sw).await["state"] == "rolled_back"
        }
    );
    let c = canary_json(&sw).await;
    assert_eq!(c["weight_in_force"], 0.0);
    let reason = c["rolled_back"]["reason"].as_str().unwrap();
    assert!(reason.contains("max_error_rate"), "{reason}");
    sw.expect_metric("seawall_canary_weight", &[("route", "signup")], 0.0)
        .await;
    // Rolled back: every client, whatever side it had, gets the stable version.
    let hits = next.hits();
    for k in 0..50 {
        let (status, a) = from(&sw, &format!("192.0.2.{}", k + 1)).await;
        assert_eq!((status, side(&a)), (200, "stable"));
    }
    assert_eq!(
        next.hits(),
        hits,
        "the canary got requests after its rollback"
    );
    // An unrelated edit does not restart the bad canary...
    let unrelated = body(&stable, &next, table).replace(
        "[[routes]]\nname = \"signup\"",
        "[[routes]]\nname = \"health\"\npath = \"/healthz\"\nupstream = \"stable\"\n\n[[routes]]\nname = \"signup\"",
    );
    sw.rewrite(&kit, &unrelated);
    assert_eventually!(
        Duration::from_secs(3),
        "generation 2",
        sw.state().status().generation == 2
    );
    assert_eq!(canary_json(&sw).await["state"], "rolled_back");
    for k in 0..20 {
        from(&sw, &format!("192.0.2.{}", k + 1)).await;
    }
    assert_eq!(next.hits(), hits);
    // ...a changed [routes.canary] table (the fixed release) does.
    sw.rewrite(
        &kit,
        &unrelated.replace("  weight = 50\n", "  weight = 50\n  release = \"2.0.1\"\n"),
    );
    assert_eventually!(
        Duration::from_secs(3),
        "generation 3",
        sw.state().status().generation == 3
    );
    assert_eq!(canary_json(&sw).await["state"], "active");
    for k in 0..40 {
        from(&sw, &format!("192.0.2.{}", k + 1)).await;
    }
    assert!(
        next.hits() > hits,
        "the restarted canary gets its share again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_canary_is_never_rolled_back() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::start("next").await;
    let sw = Kit::new()
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&body(
            &stable,
            &next,
            "  weight = 50\n  window = \"1s\"\n  min_requests = 5\n  max_error_rate = 0.05\n  \
             max_p99 = \"2s\"\n  bad_windows = 1\n",
        ));
    let mut i = 0u32;
    // Several judged windows pass; none is bad.
    assert_eventually!(Duration::from_secs(20), "four windows judged", {
        for _ in 0..20 {
            i += 1;
            assert_eq!(
                from(&sw, &format!("203.0.113.{}", i % 250 + 1)).await.0,
                200
            );
        }
        canary_json(&sw).await["windows_closed"].as_u64().unwrap() >= 4
    });
    let c = canary_json(&sw).await;
    assert_eq!(c["state"], "active", "{c}");
    assert_eq!(c["weight_in_force"], 50.0);
    assert_eq!(c["last_window"]["verdict"], "good", "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_can_be_rolled_back_by_hand_with_the_admin_token() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::start("next").await;
    let sw = Kit::new()
        .server("admin_token_file = \"token\"")
        .file("token", "s3cret\n")
        .start(&body(&stable, &next, "  weight = 100\n"));
    assert_eq!(side(&sw.get("/signup").await.text().await.unwrap()), "next");
    let url = sw.admin_url("/-/canary/signup/rollback");
    assert_eq!(sw.client.post(&url).send().await.unwrap().status(), 401);
    let r = sw
        .client
        .post(&url)
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["trigger"], "manual");
    assert_eq!(
        side(&sw.get("/signup").await.text().await.unwrap()),
        "stable"
    );
    let unknown = sw.admin_url("/-/canary/nope/rollback");
    let r = sw.client.post(unknown).bearer_auth("s3cret").send().await;
    assert_eq!(r.unwrap().status(), 404);
    assert_eq!(sw.client.get(&url).send().await.unwrap().status(), 405);
    sw.expect_metric(
        "seawall_canary_rollbacks_total",
        &[("route", "signup"), ("trigger", "manual")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_in_its_window_freezes_the_canary_of_the_routes_it_targets() {
    let stable = TestUpstream::start("stable").await;
    let next = TestUpstream::start("next").await;
    let now = jiff::Timestamp::now();
    let campaigns = format!(
        "tag_sources = [\"query:ref\"]\n[[launch]]\nname = \"big-launch\"\ntags = [\"BIG\"]\n\
         action = \"pass\"\ntargets = [\"/signup\"]\nstarts = {}\nends = {}\n",
        now.checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap(),
        now.checked_add(jiff::SignedDuration::from_hours(2))
            .unwrap(),
    );
    let sw = Kit::new().campaigns(&campaigns).start(&body(
        &stable,
        &next,
        "  weight = 100\n  freeze_during_launches = true\n",
    ));
    assert_eq!(side(&sw.get("/signup").await.text().await.unwrap()), "next");
    // Ninety minutes later the launch is on: the canary is held at weight 0.
    sw.state()
        .wall_offset_ms
        .store(90 * 60_000, std::sync::atomic::Ordering::Relaxed);
    assert_eventually!(
        Duration::from_secs(5),
        "the canary is frozen",
        canary_json(&sw).await["state"] == "frozen"
    );
    assert_eq!(canary_json(&sw).await["frozen_by"], "big-launch");
    assert_eq!(
        side(&sw.get("/signup").await.text().await.unwrap()),
        "stable"
    );
    // After the launch it comes back by itself (a freeze is not a rollback).
    sw.state()
        .wall_offset_ms
        .store(150 * 60_000, std::sync::atomic::Ordering::Relaxed);
    assert_eventually!(
        Duration::from_secs(5),
        "the canary is active again",
        canary_json(&sw).await["state"] == "active"
    );
    assert_eq!(side(&sw.get("/signup").await.text().await.unwrap()), "next");
}
