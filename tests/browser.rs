//! A real browser through Seawall: headless Chromium, driven over chromedriver's W3C WebDriver
//! HTTP API, loads a page whose origin includes one script from an approved tag host and one from
//! a host no tag approves. The approved script must run, the other must be blocked (never even
//! fetched), and the browser's violation report must reach Seawall's collector and show up in
//! `seawall_csp_violations_total`.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (see `common/webdriver.rs`, which
//! drives them). Without them the test is skipped with a note, except under `CI=true`.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use common::{Kit, Seawall};
use serde_json::json;
use webdriver::{Driver, Session, chromium_or_skip};

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

async fn text_of(driver: &Driver, session: &Session, id: &str) -> String {
    let v = session
        .execute(
            driver,
            "var e = document.getElementById(arguments[0]); return e ? e.textContent : null;",
            json!([id]),
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
    let args = [
        "--window-size=1000,600".to_string(),
        "--host-resolver-rules=MAP approved.test 127.0.0.1, MAP unapproved.test 127.0.0.1, \
         MAP shop.test 127.0.0.1"
            .into(),
    ];
    let session = driver.new_session(&chromium, profile.path(), &args).await;
    session.goto(&driver, &page_url).await;

    // Navigation returns after the load event: every classic script has run (or been blocked).
    let ran_approved = text_of(&driver, &session, "approved").await;
    let ran_unapproved = text_of(&driver, &session, "unapproved").await;
    let page_saw = text_of(&driver, &session, "violations").await;
    eprintln!("approved: {ran_approved:?}, unapproved: {ran_unapproved:?}, page saw: {page_saw:?}");

    let png = session.screenshot(&driver).await;
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
