//! A real browser through Seawall: headless Chromium, driven over chromedriver's W3C WebDriver
//! HTTP API, loads a page whose origin includes one script from an approved tag host and one from
//! a host no tag approves. The approved script must run, the other must be blocked (never even
//! fetched), and the browser's violation report must reach Seawall's collector and show up in
//! `seawall_csp_violations_total`.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `SEAWALL_CHROMIUM` / `SEAWALL_CHROMEDRIVER` override the paths).
//! Without them the test is skipped with a note, except under `CI=true`, where it fails.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use base64::Engine;
use common::{Kit, Seawall, free_addr};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

// ---------------------------------------------------------------------------------------------
// Test servers: the origin (the shop's HTML page) and the two tag hosts.

/// The page the origin serves. `/page.js` is same-origin (allowed by `'self'`) and runs first: it
/// records `securitypolicyviolation` events so the test can tell "blocked" from "never tried".
fn page(approved_port: u16, unapproved_port: u16) -> String {
    format!(
        r#"<!doctype html>
<html>
<head><meta charset="utf-8"><title>Seawall browser test</title>
<link rel="stylesheet" href="/page.css"></head>
<body>
<h1>Seawall CSP browser test</h1>
<p>approved.test tag: <span id="approved">not run</span></p>
<p>unapproved.test tag: <span id="unapproved">not run</span></p>
<p>violations seen by the page: <span id="violations"></span></p>
<script src="/page.js"></script>
<script src="http://approved.test:{approved_port}/tag.js"></script>
<script src="http://unapproved.test:{unapproved_port}/tag.js"></script>
</body>
</html>
"#
    )
}

const PAGE_JS: &str = r#"
document.addEventListener('securitypolicyviolation', function (e) {
  var s = document.getElementById('violations');
  s.textContent += (s.textContent ? ' | ' : '') + e.effectiveDirective + ' ' + e.blockedURI;
});
"#;

const PAGE_CSS: &str = "body { font: 20px sans-serif; margin: 2em; } span { font-weight: bold; }";

/// A tag host: `/tag.js` writes "ran" into the span with id `span_id`; counts what it serves.
struct TagHost {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TagHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(app: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

async fn tag_host(span_id: &'static str) -> TagHost {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let js = format!("document.getElementById('{span_id}').textContent = 'ran';\n");
    let app = Router::new().route(
        "/tag.js",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let js = js.clone();
            async move { ([(header::CONTENT_TYPE, "application/javascript")], js) }
        }),
    );
    let (addr, task) = serve(app).await;
    TagHost { addr, hits, task }
}

async fn origin(
    html: String,
    own_csp: Option<String>,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route(
            "/",
            get(move || {
                let html = html.clone();
                let own_csp = own_csp.clone();
                async move {
                    let mut h = axum::http::HeaderMap::new();
                    h.insert(
                        header::CONTENT_TYPE,
                        "text/html; charset=utf-8".parse().unwrap(),
                    );
                    if let Some(c) = own_csp {
                        h.insert("content-security-policy", c.parse().unwrap());
                    }
                    (h, html)
                }
            }),
        )
        .route(
            "/page.js",
            get(|| async { ([(header::CONTENT_TYPE, "application/javascript")], PAGE_JS) }),
        )
        .route(
            "/page.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css")], PAGE_CSS) }),
        );
    serve(app).await
}

fn csp_toml(approved_port: u16) -> String {
    format!(
        r#"
default_policy = "shop"
report_path = "/_seawall/csp-report"

[tags.approved]
approved_by = "security@example.com"
ticket = "SEC-1"
script-src = ["http://approved.test:{approved_port}"]

[policies.shop]
tags = ["approved"]
  [policies.shop.directives]
  default-src = ["'self'"]
  script-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// WebDriver: chromedriver as a child process, spoken to over its W3C HTTP API.

fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(std::env::var("SEAWALL_CHROMIUM").unwrap_or(CHROMIUM.into()));
    let driver =
        PathBuf::from(std::env::var("SEAWALL_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into()));
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

/// chromedriver in its own process group, so that dropping it also ends the Chromium it started.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    async fn start(path: &Path, log: &Path) -> Driver {
        let port = free_addr().port();
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: common::client(),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within 15s (log: {})",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A W3C command; panics with chromedriver's error text when it fails.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {method} {path} answered {status}: {v}"
        );
        v["value"].clone()
    }

    async fn new_session(&self, chromium: &Path, profile: &Path) -> Session {
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--no-proxy-server".into(),
            "--window-size=1000,600".into(),
            format!("--user-data-dir={}", profile.display()),
            "--host-resolver-rules=MAP approved.test 127.0.0.1, MAP unapproved.test 127.0.0.1, \
             MAP shop.test 127.0.0.1"
                .into(),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.to_str().unwrap(),
                        "args": args,
                    }
                }
            }
        });
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        let id = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {v}"))
            .to_string();
        Session {
            base: self.base.clone(),
            id,
            deleted: false,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (process_group(0)); Chromium inherits the group.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser session; deleted (Chromium closed) on drop if the test did not get to delete it.
struct Session {
    base: String,
    id: String,
    deleted: bool,
}

impl Session {
    fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    async fn delete(mut self, driver: &Driver) {
        driver
            .call(reqwest::Method::DELETE, &self.path(""), None)
            .await;
        self.deleted = true;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        // Blocking and best effort: a raw DELETE, so no runtime is needed here.
        let Some(addr) = self.base.strip_prefix("http://") else {
            return;
        };
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                self.id
            );
            let _ = s.read(&mut [0u8; 512]);
        }
    }
}

async fn text_of(driver: &Driver, session: &Session, id: &str) -> String {
    let v = driver
        .call(
            reqwest::Method::POST,
            &session.path("/execute/sync"),
            Some(json!({
                "script": "var e = document.getElementById(arguments[0]); \
                           return e ? e.textContent : null;",
                "args": [id],
            })),
        )
        .await;
    v.as_str()
        .unwrap_or_else(|| panic!("no element #{id} on the page ({v})"))
        .to_string()
}

/// Every `seawall_csp_violations_total` sample line in `/metrics`.
async fn violation_lines(sw: &Seawall) -> Vec<String> {
    let text = sw.admin_get("/metrics").await.text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("seawall_csp_violations_total"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The scenario, run by both tests: who sets the policy differs.

/// Where the page's Content-Security-Policy comes from.
enum PolicyFrom {
    /// Seawall's `shop` policy (the route uses csp.toml's `default_policy`).
    Seawall,
    /// The origin's own header; the route says `csp = "off"`, so Seawall passes it through.
    Origin(fn(approved_port: u16) -> String),
}

fn chromium_or_skip() -> Option<(PathBuf, PathBuf)> {
    let found = browser_paths();
    if found.is_none() {
        let msg = format!(
            "headless Chromium is not installed ({CHROMIUM}, {CHROMEDRIVER}, or SEAWALL_CHROMIUM / \
             SEAWALL_CHROMEDRIVER); \
             install the Debian packages: apt-get install -y chromium chromium-driver"
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("note: skipping the browser test: {msg}");
    }
    found
}

/// Load the page in Chromium through Seawall; check the tags ran or not, take a screenshot
/// (`target/tmp/<shot>.png`), and wait for the violation to be counted.
async fn scenario(policy: PolicyFrom, shot: &str) {
    let Some((chromium, chromedriver)) = chromium_or_skip() else {
        return;
    };
    let approved = tag_host("approved").await;
    let unapproved = tag_host("unapproved").await;
    let (ap, up) = (approved.addr.port(), unapproved.addr.port());
    let (own_csp, route_csp) = match policy {
        PolicyFrom::Seawall => (None, ""),
        PolicyFrom::Origin(f) => (Some(f(ap)), "csp = \"off\""),
    };
    let (origin_addr, origin_task) = origin(page(ap, up), own_csp).await;
    let sw = Kit::new().csp(&csp_toml(ap)).start(&format!(
        r#"
[upstreams.origin]
servers = ["{origin_addr}"]

[[routes]]
name = "shop"
upstream = "origin"
{route_csp}
"#
    ));
    let approved_host = format!("approved.test:{ap}");
    let unapproved_host = format!("unapproved.test:{up}");
    let page_url = format!("http://shop.test:{}/", sw.listen.port());

    // The header Chromium will get, checked first so that a missing one fails here, plainly.
    let r = sw.get("/").await;
    let csp = r
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string())
        .expect("the page through Seawall has no Content-Security-Policy header");
    assert!(
        csp.contains(&format!("script-src 'self' http://{approved_host}"))
            && csp.contains("report-uri /_seawall/csp-report?policy=shop"),
        "unexpected policy: {csp}"
    );
    eprintln!("Content-Security-Policy: {csp}");

    let driver = Driver::start(&chromedriver, &sw.dir.path().join("chromedriver.log")).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let session = driver.new_session(&chromium, profile.path()).await;
    driver
        .call(
            reqwest::Method::POST,
            &session.path("/url"),
            Some(json!({ "url": page_url })),
        )
        .await;

    // Navigation returns after the load event: every classic script has run (or been blocked).
    let ran_approved = text_of(&driver, &session, "approved").await;
    let ran_unapproved = text_of(&driver, &session, "unapproved").await;
    let page_saw = text_of(&driver, &session, "violations").await;
    eprintln!("approved: {ran_approved:?}, unapproved: {ran_unapproved:?}, page saw: {page_saw:?}");

    let png = driver
        .call(reqwest::Method::GET, &session.path("/screenshot"), None)
        .await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("the screenshot is a base64 string"))
        .expect("screenshot base64");
    let shot_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{shot}.png"));
    std::fs::write(&shot_path, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", shot_path.display());

    assert_eq!(ran_approved, "ran", "the approved tag did not run");
    assert_eq!(ran_unapproved, "not run", "the unapproved tag ran");
    assert_eq!(
        approved.hits.load(Ordering::SeqCst),
        1,
        "approved.test served tag.js once"
    );
    assert_eq!(
        unapproved.hits.load(Ordering::SeqCst),
        0,
        "Chromium fetched the blocked script"
    );
    assert_eq!(
        page_saw,
        format!("script-src-elem http://{unapproved_host}/tag.js"),
        "the violations the page saw (securitypolicyviolation events)"
    );

    // The report: Chromium POSTs it to report-uri (application/csp-report) right after the
    // violation.
    let labels = [
        ("policy", "shop"),
        ("directive", "script-src-elem"),
        ("blocked_host", unapproved_host.as_str()),
    ];
    let deadline = Instant::now() + Duration::from_secs(15);
    while sw.metric("seawall_csp_violations_total", &labels).await < 1.0 {
        if Instant::now() > deadline {
            let hint = if csp.contains("report-to ") {
                "\nhint: the policy also has `report-to`; Chromium then ignores `report-uri` and \
                 queues the report for the Reporting API instead, and Reporting-Endpoints is \
                 only honoured on potentially trustworthy (https or localhost) pages"
            } else {
                ""
            };
            panic!(
                "no violation report counted within 15s; violation samples: {:?}{hint}",
                violation_lines(&sw).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = violation_lines(&sw).await;
    eprintln!("metrics: {lines:#?}");
    assert_eq!(
        lines,
        [format!(
            "seawall_csp_violations_total{{blocked_host=\"{unapproved_host}\",\
             directive=\"script-src-elem\",policy=\"shop\"}} 1"
        )],
        "exactly one violation counted, for the unapproved host"
    );

    session.delete(&driver).await;
    drop(driver);
    origin_task.abort();
    sw.stop();
}

/// The whole path: Seawall's policy on the page, Chromium enforcing it, the report back to
/// Seawall's collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_the_approved_tag_blocks_the_other_and_reports_it() {
    scenario(PolicyFrom::Seawall, "browser-csp-seawall").await;
}

/// The collector alone with a real browser's `report-uri` report: the same page with the policy
/// written by the origin (report-uri only) and passed through by a `csp = "off"` route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_collector_counts_chromiums_report_uri_report() {
    scenario(
        PolicyFrom::Origin(|approved_port| {
            format!(
                "default-src 'self'; script-src 'self' http://approved.test:{approved_port}; \
                 object-src 'none'; base-uri 'self'; report-uri /_seawall/csp-report?policy=shop"
            )
        }),
        "browser-csp-origin",
    )
    .await;
}
