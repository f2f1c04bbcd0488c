//! No acknowledged lead is lost: the real binary takes leads from eight clients at once and is
//! killed with SIGKILL mid-flood; restarted on the same spool, it delivers every lead it had
//! answered 202 for, once the app is up.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::process::{run_ready, server_section};
use common::{TestUpstream, free_addr, free_addrs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_flood_loses_no_acknowledged_lead() {
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    // The app's address: nothing listens there until after the crash, so every lead waits in
    // the spool.
    let app_addr = free_addr();
    let config = dir.path().join("seawall.toml");
    std::fs::write(
        &config,
        format!(
            r#"{server}
[upstreams.app]
servers = ["{app_addr}"]
connect_timeout = "200ms"

[queues.leads]
deliver_to = "app"
rate = "500r/s"
max_inflight = 8
retry = {{ initial = "100ms", max = "300ms" }}

[[routes]]
name = "signup"
queue = "leads"
"#,
            server = server_section(dir.path(), listen, admin)
        ),
    )
    .unwrap();
    let start = || run_ready(&config);
    let (mut first, _lines) = start();
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let acked = acked.clone();
            tokio::spawn(async move {
                let http = common::client();
                for i in 0..1000 {
                    let r = http
                        .post(format!("http://{listen}/signup"))
                        .body(format!("{{\"email\":\"lead-{c}-{i}@example.com\"}}"))
                        .send()
                        .await;
                    let Ok(r) = r else { return };
                    if r.status() != 202 {
                        continue;
                    }
                    let receipt = r.headers()["x-seawall-receipt"]
                        .to_str()
                        .unwrap()
                        .to_string();
                    acked.lock().unwrap().insert(receipt);
                }
            })
        })
        .collect();
    // Let a few hundred leads be acknowledged, then kill the process with no warning.
    assert_eventually!(
        Duration::from_secs(60),
        "200 leads acknowledged",
        acked.lock().unwrap().len() >= 200
    );
    first.0.kill().unwrap();
    let _ = first.0.wait();
    for c in clients {
        let _ = c.await;
    }
    let acked = acked.lock().unwrap().clone();
    // Restarted on the same spool, with the app now up: everything acknowledged arrives.
    let (_second, _lines) = start();
    let app = TestUpstream::builder("app").at(app_addr).start().await;
    let delivered = || -> BTreeSet<String> {
        app.seen()
            .iter()
            .filter_map(|s| s.header("x-seawall-receipt"))
            .collect()
    };
    assert_eventually!(
        Duration::from_secs(60),
        format!("{} acknowledged leads delivered", acked.len()),
        acked.is_subset(&delivered())
    );
    let lost: Vec<_> = acked.difference(&delivered()).cloned().collect();
    assert!(lost.is_empty(), "lost {lost:?}");
    println!(
        "kill -9 mid-flood: {} acknowledged, {} delivered after the restart (at least once)",
        acked.len(),
        delivered().len()
    );
}
