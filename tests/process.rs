//! The `seawall` binary as systemd and an operator run it: readiness notification, refusing a
//! bad config, and a zero-downtime binary upgrade (`run --upgrade` + SIGQUIT to the old one).

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::process::{line_with, run, run_logged, signal};
use common::{TestUpstream, free_addr, free_addrs};

fn config(
    dir: &Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    app: &TestUpstream,
) -> std::path::PathBuf {
    config_with_grace(dir, listen, admin, app, "1s")
}

fn config_with_grace(
    dir: &Path,
    listen: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    app: &TestUpstream,
    grace: &str,
) -> std::path::PathBuf {
    let text = format!(
        r#"[server]
listen = ["{listen}"]
admin_listen = "{admin}"
threads = 1
access_log = false
grace_period = "{grace}"
upgrade_sock = "{sock}"
pid_file = "{pid}"

[upstreams.app]
servers = ["{app}"]

[[routes]]
name = "all"
upstream = "app"
"#,
        sock = dir.join("upgrade.sock").display(),
        pid = dir.join("seawall.pid").display(),
        app = app.addr,
    );
    let path = dir.join("seawall.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One gauge's value from an admin `/metrics` page; `None` while nothing answers there.
async fn gauge(admin: std::net::SocketAddr, name: &str) -> Option<f64> {
    let page = common::client()
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    common::sample(&page, name, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tells_systemd_it_is_ready_once_it_accepts_connections() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    let cfg = config(dir.path(), listen, admin, &app);
    let notify = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&notify).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _p = run(
        &["run", "--config", cfg.to_str().unwrap()],
        &[("NOTIFY_SOCKET", &notify)],
    );
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification within 20 s");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg:?}");
    // At that moment the listener already accepts and proxies.
    let r = common::client()
        .get(format!("http://{listen}/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "app /x");
}

#[test]
fn refuses_to_start_on_a_bad_config_and_says_where() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("seawall.toml");
    std::fs::write(
        &cfg,
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[[routes]]\nname = \"r\"\nupstream = \"nope\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:5:12: error: unknown upstream \"nope\" (defined: none)",
            cfg.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("seawall: not started"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_start_when_a_port_is_taken() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let cfg = config(dir.path(), taken.local_addr().unwrap(), free_addr(), &app);
    let out = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "seawall: not started: cannot listen on {}",
            taken.local_addr().unwrap()
        )),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_binary_upgrade_drops_no_request() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    let cfg = config(dir.path(), listen, admin, &app);
    let cfg_s = cfg.to_str().unwrap().to_string();
    let old = run(&["run", "--config", &cfg_s], &[]);
    let client = reqwest::Client::builder()
        .no_proxy()
        // A new connection per request: what is under test is the listening socket's hand-over.
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{listen}/x");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(&url).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the first seawall never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let loop_client = client.clone();
    let loop_url = url.clone();
    let stop2 = stop.clone();
    let load = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        // Bounded in count and, through `stop`, in time.
        for _ in 0..50_000 {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            match loop_client.get(&loop_url).send().await {
                Ok(r) if r.status() == 200 => ok += 1,
                Ok(r) => failed.push(format!("status {}", r.status())),
                Err(e) => failed.push(format!("{e:?}")),
            }
        }
        (ok, failed)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The new process waits for the sockets; SIGQUIT makes the old one hand them over.
    let new = run(&["run", "--upgrade", "--config", &cfg_s], &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut old = old;
    signal(&old.0, "-QUIT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while old.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the old seawall did not exit after SIGQUIT"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Requests keep being served by the new one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 50, "only {ok} requests went through");
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "the new process serves");
    drop(new);
}

/// A connection the old process accepted whose request arrives after the drain began is
/// answered, not closed (Pingora alone closes it: the request is lost although it was sent to
/// a live socket).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_arriving_as_the_old_process_drains_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = free_addrs();
    // Long enough for the steps below on a slow machine: the drain waits up to this long.
    let cfg = config_with_grace(dir.path(), listen, admin, &app, "20s");
    let cfg_s = cfg.to_str().unwrap().to_string();
    let (old, log) = run_logged(&["run", "--config", &cfg_s]);
    assert_eventually!(
        Duration::from_secs(20),
        "the old seawall answers",
        gauge(admin, "seawall_downstream_connections").await == Some(0.0)
    );
    // Connected, accepted by the old process, and silent.
    let mut conn = tokio::net::TcpStream::connect(listen).await.unwrap();
    assert_eventually!(
        Duration::from_secs(10),
        "the old seawall accepts the connection",
        gauge(admin, "seawall_downstream_connections").await == Some(1.0)
    );
    let new = run(&["run", "--upgrade", "--config", &cfg_s], &[]);
    let sock = dir.path().join("upgrade.sock");
    assert_eventually!(
        Duration::from_secs(20),
        "the new seawall waits for the sockets",
        sock.exists()
    );
    signal(&old.0, "-QUIT");
    let draining =
        tokio::task::block_in_place(|| line_with(&log, "draining", Duration::from_secs(20)))
            .expect("the old seawall logs the start of its drain");
    assert!(draining.contains("waiting_for_request=1"), "{draining}");

    conn.write_all(b"GET /late HTTP/1.1\r\nHost: seawall.test\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the answer within 10 s")
        .expect("an answer, not a reset");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert!(answer.contains("connection: close"), "{answer}");
    assert!(answer.ends_with("app /late"), "{answer}");
    drop(new);
}

/// SIGINT stops the process at once, every time (Pingora's own fast shutdown could leave it
/// spinning on failed accepts about one time in ten).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_at_once() {
    let app = TestUpstream::start("app").await;
    for i in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let [listen, admin] = free_addrs();
        let cfg = config(dir.path(), listen, admin, &app);
        let mut p = run(&["run", "--config", cfg.to_str().unwrap()], &[]);
        let up = Instant::now() + Duration::from_secs(20);
        while common::client()
            .get(format!("http://{listen}/"))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < up, "run {i}: never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        signal(&p.0, "-INT");
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(s) = p.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "run {i}: still running 5 s after SIGINT"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(status.code(), Some(130), "run {i}");
    }
}
