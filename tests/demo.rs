//! `seawall demo` as a newcomer runs it: the real binary, its fixed ports, a real client.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        // SIGINT is Pingora's fast shutdown; fall back to SIGKILL after a bound.
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_shop_through_seawall() {
    // From a directory without conf/demo (as after `cargo install`): the copies built into the
    // binary are written to a temporary directory, removed again when the demo stops.
    let child = Command::new(env!("CARGO_BIN_EXE_seawall"))
        .args(["demo", "--dir", "/nonexistent/seawall-demo-config"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start seawall demo");
    let temp = std::env::temp_dir().join(format!("seawall-demo-{}", child.id()));
    let demo = Demo(child);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = client.get("http://127.0.0.1:9901/-/ready").send().await;
        if ready.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not become ready in 20s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = client.get("http://127.0.0.1:8080/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().contains_key("x-request-id"));
    let html = page.text().await.unwrap();
    assert!(html.contains("<h1>Demo shop</h1>"));
    assert!(
        html.contains("http://localhost:3201/tag.js")
            && html.contains("http://127.0.0.1:3202/tag.js")
    );

    let signup = client
        .post("http://127.0.0.1:8080/api/v1/users/register")
        .body("email=a@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let stats = client
        .get("http://127.0.0.1:3000/__origin/stats")
        .send()
        .await
        .unwrap();
    assert_eq!(
        stats.text().await.unwrap(),
        "{\"from_queue\":0,\"last_idempotency_key\":\"\",\"signups\":1}\n"
    );

    // A summer-sale sign-up is queued: 202 with a receipt at once, then the queue delivers it to
    // the origin with the receipt as its Idempotency-Key.
    let queued = client
        .post("http://127.0.0.1:8080/api/v1/users/register?ref=SUMMERSALE20")
        .body("email=b@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 202);
    let receipt = queued.headers()["x-seawall-receipt"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(queued.text().await.unwrap().starts_with("Thanks"));
    let want =
        format!("{{\"from_queue\":1,\"last_idempotency_key\":\"{receipt}\",\"signups\":2}}\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = client
            .get("http://127.0.0.1:3000/__origin/stats")
            .send()
            .await
            .unwrap();
        if stats.text().await.unwrap() == want {
            break;
        }
        assert!(Instant::now() < deadline, "the origin never got {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The worker removes the lead from the spool once the app's answer is in, a moment after
    // the origin counted it: the depth reaches 0 soon after, not at once.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queues = client
            .get("http://127.0.0.1:9901/-/queues")
            .send()
            .await
            .unwrap();
        let queues: serde_json::Value = queues.json().await.unwrap();
        assert_eq!(queues["queues"][0]["name"], "leads");
        assert_eq!(queues["queues"][0]["path"], "/tmp/seawall-demo-spool/leads");
        if queues["queues"][0]["depth"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the delivered lead never left the spool: {queues}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An unannounced campaign's sign-up is diverted to the ingestion sink.
    let diverted = client
        .post("http://127.0.0.1:8080/api/v1/users/register?ref=UNANNOUNCED")
        .body("email=c@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(diverted.status(), 202);
    assert_eq!(diverted.text().await.unwrap(), "{\"queued\":true}\n");
    let sink = client
        .get("http://127.0.0.1:3100/__sink/stats")
        .send()
        .await
        .unwrap();
    assert_eq!(
        sink.text().await.unwrap(),
        "{\"by_campaign\":{\"unregistered\":1},\"received\":1}\n"
    );

    // The tag hosts serve their scripts.
    let tag = client
        .get("http://127.0.0.1:3201/tag.js")
        .send()
        .await
        .unwrap();
    assert!(tag.text().await.unwrap().contains("approved-tag"));
    // Counters move in the logging phase, just after the response: poll briefly.
    let want = "seawall_requests_total{route=\"signup\",status=\"201\"} 1";
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = client
            .get("http://127.0.0.1:9901/metrics")
            .send()
            .await
            .unwrap();
        if m.text().await.unwrap().contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "metrics never showed {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A tagged page view (the newsletter link) shows the shop, not the ingestion sink.
    let page = client
        .get("http://127.0.0.1:8080/?utm_campaign=newsletter")
        .send()
        .await
        .unwrap();
    assert!(page.text().await.unwrap().contains("<h1>Demo shop</h1>"));
    assert!(
        temp.join("seawall.toml").is_file(),
        "the demo config is in {temp:?}"
    );
    drop(demo);
    assert!(!temp.exists(), "{temp:?} was left behind");
    assert!(
        !std::path::Path::new("/tmp/seawall-demo-spool").exists(),
        "the demo's spool was left behind"
    );
}
