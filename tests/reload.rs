//! Hot reload: file saves of every kind, a broken file, state kept, reloads under load.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Kit, Seawall, TestUpstream};

/// The effect of a save must be live within a second.
const LIVE_WITHIN: Duration = Duration::from_secs(1);

fn limited(up: &TestUpstream, burst: u32) -> String {
    format!(
        r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "signup"
upstream = "app"
  [[routes.limits]]
  name = "global"
  key = "global"
  rate = "4r/h"
  burst = {burst}
  nodelay = true
"#,
        up.addr
    )
}

fn generation(sw: &Seawall) -> u64 {
    sw.state().status().generation
}

async fn statuses(sw: &Seawall, n: usize) -> Vec<u16> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(sw.get("/").await.status().as_u16());
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_place_edit_is_live_within_a_second() {
    let app = TestUpstream::start("app").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&limited(&app, 0));
    assert_eq!(statuses(&sw, 2).await, [200, 429]);
    // Write the file in place (truncate + write), as most editors' "save" does.
    sw.rewrite(&kit, &limited(&app, 3));
    assert_eventually!(
        LIVE_WITHIN,
        "generation 2 after an in-place save",
        generation(&sw) == 2
    );
    // Re-rated, same key: its excess (0: the rejected request was not charged) is kept, and
    // burst 3 now lets three more through, not the four a fresh key would get.
    assert_eq!(statuses(&sw, 4).await, [200, 200, 200, 429]);
    let cfg: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(cfg["last_reload"]["ok"], true);
    assert_eq!(cfg["routes"][0]["limits"][0]["burst"], 3);
    let changes = cfg["last_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert!(
        changes[0]
            .as_str()
            .unwrap()
            .starts_with("limit signup/global changed: key global rate 4r/h burst 0 nodelay"),
        "{changes:?}"
    );
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
async fn a_save_by_rename_is_picked_up() {
    let app = TestUpstream::start("app").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&limited(&app, 0));
    assert_eq!(statuses(&sw, 2).await, [200, 429]);
    // Write a temporary file next to it and rename it over the original (vim, atomic writers).
    let tmp = sw.dir.path().join(".seawall.toml.swp");
    std::fs::write(&tmp, kit.main_text(sw.listen, sw.admin, &limited(&app, 2))).unwrap();
    std::fs::rename(&tmp, sw.config_path()).unwrap();
    assert_eventually!(
        LIVE_WITHIN,
        "generation 2 after a rename",
        generation(&sw) == 2
    );
    assert_eq!(statuses(&sw, 3).await, [200, 200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_swap_is_picked_up() {
    let app = TestUpstream::start("app").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&limited(&app, 0));
    let dir = sw.dir.path();
    // Turn seawall.toml into a link to releases/v1/seawall.toml, as config management lays it out.
    std::fs::create_dir_all(dir.join("releases/v1")).unwrap();
    std::fs::create_dir_all(dir.join("releases/v2")).unwrap();
    std::fs::rename(sw.config_path(), dir.join("releases/v1/seawall.toml")).unwrap();
    std::os::unix::fs::symlink("releases/v1/seawall.toml", dir.join("seawall.toml.new")).unwrap();
    std::fs::rename(dir.join("seawall.toml.new"), sw.config_path()).unwrap();
    // Same content: no reload.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        generation(&sw),
        1,
        "a change of file type alone must not reload"
    );
    // The new release, then an atomic swap of the link.
    std::fs::write(
        dir.join("releases/v2/seawall.toml"),
        kit.main_text(sw.listen, sw.admin, &limited(&app, 4)),
    )
    .unwrap();
    std::os::unix::fs::symlink("releases/v2/seawall.toml", dir.join("seawall.toml.new")).unwrap();
    std::fs::rename(dir.join("seawall.toml.new"), sw.config_path()).unwrap();
    assert_eventually!(
        LIVE_WITHIN,
        "generation 2 after a symlink swap",
        generation(&sw) == 2
    );
    let cfg: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(cfg["routes"][0]["limits"][0]["burst"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_old_config_until_it_is_fixed() {
    let app = TestUpstream::start("app").await;
    let kit = Kit::new();
    let sw = Kit::new().start(&limited(&app, 1));
    assert_eq!(statuses(&sw, 3).await, [200, 200, 429]);
    let broken = limited(&app, 1).replace("rate = \"4r/h\"", "rate = \"4r/hour\"");
    sw.rewrite(&kit, &broken);
    let failed = || async {
        let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
        v["last_reload"]["ok"] == false
    };
    assert_eventually!(LIVE_WITHIN, "the failed reload is recorded", failed().await);
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(v["generation"], 1);
    let path = sw.config_path().display().to_string();
    assert_eq!(
        v["last_reload"]["error"],
        format!(
            "{path}:17:10: error: invalid rate \"4r/hour\": write N r/s, N r/m or N r/h, e.g. \"10r/s\""
        )
    );
    sw.expect_metric(
        "seawall_config_reloads_total",
        &[("result", "failure")],
        1.0,
    )
    .await;
    // The old limit is still enforced, with its state.
    assert_eq!(statuses(&sw, 1).await, [429]);
    // The admin API says the same, with 422.
    let r = sw
        .client
        .post(sw.admin_url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // Fixing the file reloads.
    sw.rewrite(&kit, &limited(&app, 2));
    assert_eventually!(
        LIVE_WITHIN,
        "the fixed file is loaded",
        generation(&sw) == 2
    );
    // Burst 2 over the kept excess of 1000: one more passes.
    assert_eq!(statuses(&sw, 2).await, [200, 429]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_an_empty_file_is_a_reported_failed_reload_not_silence() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&limited(&app, 1));
    std::fs::write(sw.config_path(), "").unwrap();
    let failed = || async {
        let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
        v["last_reload"]["ok"] == false
    };
    // Within the watcher's grace for a save in progress, plus the usual second.
    assert_eventually!(
        LIVE_WITHIN + std::time::Duration::from_secs(1),
        "the empty file is loaded and its failure recorded",
        failed().await
    );
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(v["generation"], 1);
    let error = v["last_reload"]["error"].as_str().unwrap();
    assert!(error.contains("missing [server] section"), "{error}");
    // The old config still serves.
    assert_eq!(statuses(&sw, 1).await, [200]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touching_a_file_without_changing_it_does_not_reload() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&limited(&app, 0));
    let text = std::fs::read(sw.config_path()).unwrap();
    std::fs::write(sw.config_path(), &text).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(generation(&sw), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_to_the_unregistered_action_or_trusted_proxies_is_in_the_change_log() {
    let app = TestUpstream::start("app").await;
    let campaigns = "tag_sources = [\"query:ref\"]\n[unregistered]\naction = \"pass\"\n";
    let kit = Kit::new().campaigns(campaigns);
    let sw = Kit::new().campaigns(campaigns).start(&limited(&app, 1));
    std::fs::write(
        sw.dir.path().join("campaigns.toml"),
        campaigns.replace("\"pass\"", "\"reject\""),
    )
    .unwrap();
    assert_eventually!(LIVE_WITHIN, "generation 2", generation(&sw) == 2);
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    let changes = v["last_changes"].to_string();
    assert!(
        changes.contains("campaigns [unregistered] changed: action Pass"),
        "{changes}"
    );
    assert!(changes.contains("-> action Reject"), "{changes}");
    let kit = kit.server("trusted_proxies = [\"10.0.0.0/8\"]");
    sw.rewrite(&kit, &limited(&app, 1));
    assert_eventually!(LIVE_WITHIN, "generation 3", generation(&sw) == 3);
    let v: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(
        v["last_changes"],
        serde_json::json!(["server.trusted_proxies changed: none -> 10.0.0.0/8"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_pools_are_kept_and_changed_ones_replaced() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let kit = Kit::new();
    let body = |route: &str, b_timeout: &str| {
        format!(
            r#"
[upstreams.a]
servers = ["{}"]
[upstreams.b]
servers = ["{}"]
read_timeout = "{b_timeout}"
[[routes]]
name = "{route}"
upstream = "a"
"#,
            a.addr, b.addr
        )
    };
    let sw = Kit::new().start(&body("r1", "5s"));
    let before = sw.state().snapshot.load_full();
    sw.rewrite(&kit, &body("r2", "6s"));
    assert_eventually!(LIVE_WITHIN, "reloaded", generation(&sw) == 2);
    let after = sw.state().snapshot.load_full();
    assert!(
        Arc::ptr_eq(&before.upstreams["a"], &after.upstreams["a"]),
        "pool a unchanged: kept"
    );
    assert!(
        Arc::ptr_eq(&after.routes[0].upstream, &after.upstreams["a"]),
        "the route uses the kept pool"
    );
    assert!(
        !Arc::ptr_eq(&before.upstreams["b"], &after.upstreams["b"]),
        "pool b changed: rebuilt"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_reloads_under_load_fail_no_request() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let kit = Kit::new();
    let body = |up: &str| {
        format!(
            "[upstreams.a]\nservers = [\"{}\"]\n[upstreams.b]\nservers = [\"{}\"]\n\
             [[routes]]\nname = \"r\"\nupstream = \"{up}\"\n",
            a.addr, b.addr
        )
    };
    let sw = Arc::new(Kit::new().start(&body("a")));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (sw, stop, sent) = (sw.clone(), stop.clone(), sent.clone());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            // Bounded: stops when the reloads are done, and after 20,000 requests at most.
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match sw.client.get(sw.url("/x")).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let text = r.text().await.unwrap_or_default();
                        if status != 200 || !(text == "a /x" || text == "b /x") {
                            failures.push(format!("{status} {text:?}"));
                        }
                    }
                    Err(e) => failures.push(format!("transport error: {e}")),
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
            failures
        }));
    }
    for i in 0..50 {
        let up = if i % 2 == 0 { "b" } else { "a" };
        sw.rewrite(&kit, &body(up));
        let r = sw
            .client
            .post(sw.admin_url("/-/reload"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "reload {i}");
        // Every request sent after the reload answered is served by the new config.
        let text = sw.get("/x").await.text().await.unwrap();
        assert_eq!(text, format!("{up} /x"), "after reload {i}");
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let total = sent.load(Ordering::Relaxed);
    assert!(total >= 100, "the load loop ran ({total} requests)");
    assert!(generation(&sw) >= 51);
}

/// Reading a file is an inotify event too (open, close without writing). The watcher reads the
/// files to compare them; if it took those events for changes, it would wake itself for ever.
/// Left idle, it must read the config about once a second (its safety-net check), no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_watcher_does_not_wake_itself() {
    use notify::Watcher as _;
    use notify::event::{AccessKind, EventKind};
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&limited(&app, 0));
    let path = sw.config_path().canonicalize().unwrap();
    let opens = Arc::new(AtomicUsize::new(0));
    let counter = opens.clone();
    let watched = path.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(e) = res
            && matches!(e.kind, EventKind::Access(AccessKind::Open(_)))
            && e.paths.iter().any(|p| p == &watched)
        {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    })
    .unwrap();
    watcher
        .watch(path.parent().unwrap(), notify::RecursiveMode::NonRecursive)
        .unwrap();
    // Our own read shows the watch works (the count would be 0 for a blind watcher).
    std::fs::read(&path).unwrap();
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let n = opens.load(Ordering::SeqCst);
    // 1 (ours) + about 3 checks at one a second; a self-waking watcher opens it every ~100 ms.
    assert!(
        (1..=6).contains(&n),
        "the config was opened {n} times in {window:?} of idling"
    );
    assert_eq!(generation(&sw), 1);
}
