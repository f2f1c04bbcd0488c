//! SIGHUP reloads. In its own test binary: the signal goes to the whole process.

mod common;

use std::time::Duration;

use common::{Kit, TestUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_even_when_nothing_changed() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&format!(
        "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        app.addr
    ));
    assert_eq!(sw.state().status().generation, 1);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eventually!(
        Duration::from_secs(2),
        "SIGHUP reloaded the config",
        sw.state().status().generation == 2
    );
    let cfg: serde_json::Value = sw.admin_get("/-/config").await.json().await.unwrap();
    assert_eq!(cfg["last_reload"]["ok"], true);
    assert_eq!(cfg["last_changes"], serde_json::json!([]));
}
