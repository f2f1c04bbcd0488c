//! CSP end to end: the exact header on HTML responses and on Seawall's own answers, report-only
//! pairing, the origin's CSP replaced or kept, nonces on marked scripts, and the report endpoint.

mod common;

use common::{Kit, Seawall, TestUpstream, closed_addr};

const CSP: &str = r#"
default_policy = "shop"
report_path = "/_seawall/csp-report"

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-42"
script-src = ["https://www.googletagmanager.com"]
connect-src = ["https://www.google.com"]

[policies.shop]
tags = ["gtm"]
report_only_policy = "next"
  [policies.shop.directives]
  default-src = ["'self'"]
  script-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]

[policies.next]
mode = "report-only"
  [policies.next.directives]
  default-src = ["'none'"]
  script-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'none'"]

[policies.keeper]
upstream_csp = "keep"
  [policies.keeper.directives]
  default-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]

[policies.nonced]
nonce = true
  [policies.nonced.directives]
  default-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]
"#;

/// On plain HTTP: report-uri only (Chromium ignores report-uri when report-to is present, and
/// the Reporting API only works in secure contexts).
const SHOP: &str = "default-src 'self'; script-src 'self' https://www.googletagmanager.com; \
    connect-src 'self' https://www.google.com; object-src 'none'; base-uri 'self'; \
    report-uri /_seawall/csp-report?policy=shop";
const NEXT: &str = "default-src 'none'; script-src 'self'; object-src 'none'; base-uri 'none'; \
    report-uri /_seawall/csp-report?policy=next";
const ENDPOINTS: &str = "seawall-shop=\"/_seawall/csp-report?policy=shop\", \
    seawall-next=\"/_seawall/csp-report?policy=next\"";

fn header(r: &reqwest::Response, name: &str) -> Vec<String> {
    r.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

async fn start(html: &TestUpstream, text: &TestUpstream, extra_routes: &str) -> Seawall {
    Kit::new().csp(CSP).start(&format!(
        r#"
[upstreams.html]
servers = ["{}"]
[upstreams.text]
servers = ["{}"]
[upstreams.dead]
servers = ["{}"]
{extra_routes}
[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "text"
[[routes]]
name = "api-off"
path_prefix = "/off/"
upstream = "html"
csp = "off"
[[routes]]
name = "broken"
path_prefix = "/broken/"
upstream = "dead"
[[routes]]
name = "limited"
path_prefix = "/limited/"
upstream = "html"
  [[routes.limits]]
  name = "one"
  key = "global"
  rate = "4r/h"
  nodelay = true
[[routes]]
name = "pages"
path_prefix = "/pages/"
upstream = "html"
"#,
        html.addr,
        text.addr,
        closed_addr()
    ))
}

async fn upstreams() -> (TestUpstream, TestUpstream) {
    (
        TestUpstream::builder("html")
            .content_type("text/html; charset=utf-8")
            .start()
            .await,
        TestUpstream::start("text").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_responses_carry_the_exact_policy_and_its_report_only_companion() {
    let (html, text) = upstreams().await;
    let sw = start(&html, &text, "").await;
    let r = sw.get("/pages/home").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-security-policy"), [SHOP]);
    assert_eq!(header(&r, "content-security-policy-report-only"), [NEXT]);
    assert!(header(&r, "reporting-endpoints").is_empty());
    // Not HTML: no policy. Route says off: no policy.
    let r = sw.get("/api/x").await;
    assert!(header(&r, "content-security-policy").is_empty());
    let r = sw.get("/off/x").await;
    assert!(header(&r, "content-security-policy").is_empty());
    assert!(header(&r, "content-security-policy-report-only").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seawalls_own_answers_carry_the_policy_too() {
    let (html, text) = upstreams().await;
    let sw = Kit::new().csp(CSP).start(&format!(
        r#"
[upstreams.html]
servers = ["{}"]
[upstreams.dead]
servers = ["{}"]
[[routes]]
name = "broken"
path_prefix = "/broken/"
upstream = "dead"
[[routes]]
name = "limited"
path_prefix = "/limited/"
upstream = "html"
  [[routes.limits]]
  name = "one"
  key = "global"
  rate = "4r/h"
  nodelay = true
"#,
        html.addr,
        closed_addr()
    ));
    drop(text);
    // 404: no route, so csp.toml's default policy.
    let r = sw.get("/nowhere").await;
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "content-security-policy"), [SHOP]);
    assert_eq!(header(&r, "content-security-policy-report-only"), [NEXT]);
    // 502
    let r = sw.get("/broken/x").await;
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "content-security-policy"), [SHOP]);
    // 429
    assert_eq!(sw.get("/limited/x").await.status(), 200);
    let r = sw.get("/limited/x").await;
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "content-security-policy"), [SHOP]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_pages_also_get_report_to_and_reporting_endpoints() {
    let (html, text) = upstreams().await;
    // The test client stands for a TLS-terminating proxy that Seawall trusts.
    let sw = Kit::new()
        .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .csp(CSP)
        .start(&format!(
            "[upstreams.html]\nservers = [\"{}\"]\n[[routes]]\nname = \"pages\"\nupstream = \"html\"\n",
            html.addr
        ));
    drop(text);
    let r = sw
        .client
        .get(sw.url("/x"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-security-policy"),
        [format!("{SHOP}; report-to seawall-shop")]
    );
    assert_eq!(
        header(&r, "content-security-policy-report-only"),
        [format!("{NEXT}; report-to seawall-next")]
    );
    assert_eq!(header(&r, "reporting-endpoints"), [ENDPOINTS]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_origins_csp_is_replaced_or_kept_as_the_policy_says() {
    let origin = TestUpstream::builder("html")
        .content_type("text/html")
        .header("content-security-policy", "script-src 'self'")
        .start()
        .await;
    let text = TestUpstream::start("text").await;
    let sw = start(
        &origin,
        &text,
        r#"
[[routes]]
name = "kept"
path_prefix = "/kept/"
upstream = "html"
csp = "keeper"
"#,
    )
    .await;
    // replace (the default): only Seawall's policy.
    let r = sw.get("/pages/x").await;
    assert_eq!(header(&r, "content-security-policy"), [SHOP]);
    // keep: both, and the browser enforces both (the intersection).
    let r = sw.get("/kept/x").await;
    assert_eq!(
        header(&r, "content-security-policy"),
        [
            "script-src 'self'",
            "default-src 'self'; object-src 'none'; base-uri 'self'; \
             report-uri /_seawall/csp-report?policy=keeper"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_nonce_is_stamped_on_marked_scripts_only() {
    let page = TestUpstream::builder("page")
        .content_type("text/html")
        .body(
            "<!doctype html><html><head><script nonce=\"__SEAWALL_NONCE__\">ok()</script>\
             <script>injected()</script></head><body><p>__SEAWALL_NONCE__</p></body></html>",
        )
        .start()
        .await;
    let text = TestUpstream::start("text").await;
    let sw = start(
        &page,
        &text,
        r#"
[[routes]]
name = "n"
path_prefix = "/n/"
upstream = "html"
csp = "nonced"
"#,
    )
    .await;
    let r = sw.get("/n/page").await;
    let csp = header(&r, "content-security-policy").pop().unwrap();
    assert!(
        r.headers().get("content-length").is_none(),
        "the body changed length"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .unwrap()
        .to_string();
    assert_eq!(nonce.len(), 24, "128 bits, base64: {nonce}");
    assert_eq!(
        csp,
        format!(
            "default-src 'self'; script-src 'self' 'nonce-{nonce}'; object-src 'none'; base-uri 'self'; \
             report-uri /_seawall/csp-report?policy=nonced"
        )
    );
    // The upstream was asked for an uncompressed page so it can be rewritten.
    assert_eq!(page.last().header("accept-encoding").unwrap(), "identity");
    // Only the marked script is stamped; text that merely looks like the placeholder is not.
    assert_eq!(
        r.text().await.unwrap(),
        format!(
            "<!doctype html><html><head><script nonce=\"{nonce}\">ok()</script>\
             <script>injected()</script></head><body><p>__SEAWALL_NONCE__</p></body></html>"
        )
    );
    // Every response gets its own nonce.
    let again = sw.get("/n/page").await;
    let csp2 = header(&again, "content-security-policy").pop().unwrap();
    assert_ne!(csp, csp2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_endpoint_accepts_both_formats_and_counts_them() {
    let (html, text) = upstreams().await;
    let sw = start(&html, &text, "").await;
    let url = sw.url("/_seawall/csp-report?policy=shop");
    let legacy = r#"{"csp-report":{"document-uri":"http://shop.test/","blocked-uri":"https://evil.test/x.js","effective-directive":"script-src-elem","violated-directive":"script-src-elem","disposition":"enforce"}}"#;
    let r = sw
        .client
        .post(&url)
        .header("content-type", "application/csp-report")
        .body(legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let api = r#"[{"type":"csp-violation","age":1,"url":"http://shop.test/","body":{"documentURL":"http://shop.test/","blockedURL":"inline","effectiveDirective":"script-src-elem","disposition":"report"}}]"#;
    let r = sw
        .client
        .post(sw.url("/_seawall/csp-report?policy=next"))
        .header("content-type", "application/reports+json")
        .body(api)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let labels = |p, h| {
        [
            ("policy", p),
            ("directive", "script-src-elem"),
            ("blocked_host", h),
        ]
    };
    sw.expect_metric(
        "seawall_csp_violations_total",
        &labels("shop", "evil.test"),
        1.0,
    )
    .await;
    sw.expect_metric(
        "seawall_csp_violations_total",
        &labels("next", "inline"),
        1.0,
    )
    .await;
    // Reports never reach an upstream.
    assert_eq!(html.hits() + text.hits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_endpoint_bounds_what_it_accepts() {
    let (html, text) = upstreams().await;
    let sw = start(&html, &text, "").await;
    let url = sw.url("/_seawall/csp-report");
    let c = &sw.client;
    // CORS preflight.
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["access-control-allow-methods"], "POST, OPTIONS");
    assert_eq!(r.headers()["access-control-allow-headers"], "Content-Type");
    assert_eq!(c.get(&url).send().await.unwrap().status(), 405);
    let post =
        |ct: &'static str, body: Vec<u8>| c.post(&url).header("content-type", ct).body(body).send();
    assert_eq!(
        post("text/plain", b"{}".to_vec()).await.unwrap().status(),
        415
    );
    assert_eq!(
        post("application/csp-report", b"nope".to_vec())
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        post("application/csp-report", vec![b' '; 70_000])
            .await
            .unwrap()
            .status(),
        413
    );
    // A policy name that is not one of ours is counted as "unknown", not as a new label.
    let r = c
        .post(sw.url("/_seawall/csp-report?policy=made-up"))
        .header("content-type", "application/csp-report")
        .body(r#"{"csp-report":{"blocked-uri":"https://x.test/","effective-directive":"img-src"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    sw.expect_metric(
        "seawall_csp_violations_total",
        &[
            ("policy", "unknown"),
            ("directive", "img-src"),
            ("blocked_host", "x.test"),
        ],
        1.0,
    )
    .await;
    // Rate-limited per client: a burst of 50, then 429 (10 per second after that).
    let mut limited = 0;
    for _ in 0..80 {
        let r = post("application/csp-report", br#"{"csp-report":{}}"#.to_vec())
            .await
            .unwrap();
        if r.status() == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 20, "only {limited} of 80 reports were refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_forged_report_cannot_take_the_blocked_host_labels() {
    let html = TestUpstream::start("html").await;
    let sw = Kit::new()
        .csp(CSP)
        .server("trusted_proxies = [\"127.0.0.1/32\"]")
        .start(&format!(
            "[upstreams.html]\nservers = [\"{}\"]\n[[routes]]\nname = \"site\"\nupstream = \"html\"\n",
            html.addr
        ));
    let report = |hosts: Vec<String>| {
        let items: Vec<String> = hosts
            .iter()
            .map(|h| {
                format!(
                    r#"{{"type":"csp-violation","body":{{"documentURL":"http://shop.test/","blockedURL":"https://{h}/x.js","effectiveDirective":"script-src-elem","disposition":"enforce"}}}}"#
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    };
    let send = |client: &'static str, body: String| {
        sw.client
            .post(sw.url("/_seawall/csp-report?policy=shop"))
            .header("content-type", "application/reports+json")
            .header("x-forwarded-for", client)
            .body(body)
            .send()
    };
    // One anonymous client names 100 hosts, in five reports.
    for batch in 0..5 {
        let hosts = (0..20)
            .map(|i| format!("fake{}.test", batch * 20 + i))
            .collect();
        assert_eq!(
            send("198.51.100.7", report(hosts)).await.unwrap().status(),
            204
        );
    }
    // Real visitors then report the host the page really blocks: it gets its own label.
    for visitor in ["203.0.113.1", "203.0.113.2"] {
        let r = send(visitor, report(vec!["tracker.example.net".into()])).await;
        assert_eq!(r.unwrap().status(), 204);
    }
    let labels = |h: &'static str| {
        [
            ("policy", "shop"),
            ("directive", "script-src-elem"),
            ("blocked_host", h),
        ]
    };
    sw.expect_metric(
        "seawall_csp_violations_total",
        &labels("tracker.example.net"),
        2.0,
    )
    .await;
    // The forger got five labels; the other 95 of its hosts count as "other".
    sw.expect_metric("seawall_csp_violations_total", &labels("other"), 95.0)
        .await;
    let page = sw.admin_get("/metrics").await.text().await.unwrap();
    let fake_labels = page
        .lines()
        .filter(|l| l.starts_with("seawall_csp_violations_total") && l.contains("fake"))
        .count();
    assert_eq!(fake_labels, 5);
}
