//! The JSON access log end to end: every field an nginx or Envoy user looks for, written to a
//! file off the request path; reopened on SIGUSR1 and flushed on exit (the real binary).

mod common;

use std::time::Duration;

use common::process::{line_with, run_logged, signal};
use common::{Kit, TestUpstream};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_is_one_json_line_with_the_fields_operators_use() {
    let app = TestUpstream::start("app").await;
    let ingest = TestUpstream::start("ingest").await;
    let sw = Kit::new()
        .server("access_log = \"access.log\"")
        .campaigns(
            "tag_sources = [\"query:ref\"]\ningest_upstream = \"ingest\"\n\
             [unregistered]\naction = \"divert\"\ntargets = [\"/signup\"]\n",
        )
        .start(&format!(
            r#"
[upstreams.app]
servers = ["{}"]
[upstreams.ingest]
servers = ["{}"]

[[routes]]
name = "signup"
path_prefix = "/signup"
upstream = "app"
  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "1r/m"

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"
"#,
            app.addr, ingest.addr
        ));
    let c = &sw.client;
    let page = c
        .get(sw.url("/api/items?page=2&sort=new"))
        .header("user-agent", "curl/8.0")
        .header("referer", "https://news.example/")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    c.post(sw.url("/signup")).body("a").send().await.unwrap();
    let limited = c.post(sw.url("/signup")).body("b").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(sw.get("/nowhere").await.status(), 404);
    let lead = c
        .post(sw.url("/signup?ref=Spring%20Promo"))
        .body("c")
        .send()
        .await
        .unwrap();
    assert_eq!(
        lead.status(),
        429,
        "the same client is still limited, tagged or not"
    );
    let path = sw.dir.path().join("access.log");
    assert_eventually!(
        Duration::from_secs(5),
        "five lines in access.log (written within the flush interval)",
        lines(&path).len() == 5
    );
    let l = lines(&path);
    let page = &l[0];
    assert_eq!(page["method"], "GET");
    assert_eq!(page["path"], "/api/items");
    assert_eq!(page["query"], "page=2&sort=new");
    assert_eq!(page["protocol"], "HTTP/1.1");
    assert_eq!(page["route"], "api");
    assert_eq!(page["status"], 200);
    assert_eq!(page["upstream"], "app");
    assert_eq!(page["upstream_addr"], app.addr.to_string());
    assert_eq!(page["upstream_outcome"], "response");
    assert!(page["upstream_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(page["user_agent"], "curl/8.0");
    assert_eq!(page["referer"], "https://news.example/");
    assert_eq!(page["answered_by_seawall"], false);
    assert_eq!(page["request_id"].as_str().unwrap().len(), 32);
    assert!(page.get("reason").is_none());
    let limited = &l[2];
    assert_eq!(limited["status"], 429);
    assert_eq!(limited["reason"], "rate_limited");
    assert_eq!(limited["limit"], "per-ip");
    assert_eq!(limited["answered_by_seawall"], true);
    assert!(limited.get("upstream_addr").is_none());
    assert_eq!(l[3]["reason"], "no_route");
    assert_eq!(l[3]["route"], "-");
    let tagged = &l[4];
    assert_eq!(tagged["campaign"], "unregistered");
    assert_eq!(tagged["campaign_action"], "limited");
    assert_eq!(tagged["tag"], "Spring%20Promo", "the tag as sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reopens_its_log_on_sigusr1_and_flushes_it_on_exit() {
    let app = TestUpstream::start("app").await;
    let dir = tempfile::tempdir().unwrap();
    let [listen, admin] = common::free_addrs();
    let config = dir.path().join("seawall.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = [\"{listen}\"]\nadmin_listen = \"{admin}\"\nthreads = 1\n\
             access_log = \"access.log\"\ngrace_period = \"1s\"\n\
             upgrade_sock = \"{d}/up.sock\"\npid_file = \"{d}/pid\"\n\
             [upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n",
            app.addr,
            d = dir.path().display()
        ),
    )
    .unwrap();
    let (proc, stderr) = run_logged(&["run", "--config", config.to_str().unwrap()]);
    assert!(line_with(&stderr, "seawall is ready", Duration::from_secs(20)).is_some());
    let client = common::client();
    let get = |p: &'static str| client.get(format!("http://{listen}{p}")).send();
    get("/before").await.unwrap();
    let log = dir.path().join("access.log");
    assert_eventually!(
        Duration::from_secs(5),
        "the first line",
        lines(&log).len() == 1
    );
    // logrotate: move the file away, then SIGUSR1.
    std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    signal(&proc.0, "-USR1");
    assert!(line_with(&stderr, "reopening the access log", Duration::from_secs(5)).is_some());
    get("/after").await.unwrap();
    // Lines written just before the process stops are flushed on the way out, not lost.
    for _ in 0..20 {
        get("/last").await.unwrap();
    }
    signal(&proc.0, "-TERM");
    let mut proc = proc;
    let status = tokio::task::spawn_blocking(move || proc.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let rotated = lines(&dir.path().join("access.log.1"));
    assert_eq!(rotated.len(), 1);
    assert_eq!(rotated[0]["path"], "/before");
    let now = lines(&log);
    assert_eq!(now.len(), 21);
    assert_eq!(now[0]["path"], "/after");
    assert!(now[1..].iter().all(|l| l["path"] == "/last"));
}
