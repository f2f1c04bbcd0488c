//! The incident console in a real browser: headless Chromium opens the admin listener's page,
//! sees its numbers move when traffic goes through the proxy, sees the limited client appear
//! under its limit, drives the token-guarded reload button, and its log (where Chromium puts
//! CSP violations, console errors and failed loads) stays empty.
//!
//! Needs Debian's `chromium` and `chromium-driver` (see `common/webdriver.rs`); skipped with a
//! note without them, except under `CI=true`.

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::Path;
use std::time::Duration;

use common::{Kit, Seawall, TestUpstream};
use serde_json::{Value, json};
use webdriver::{Driver, Session, chromium_or_skip};

const TOKEN: &str = "console-test-token";

/// The text of the first element matching `css`, or `None` when there is none (yet).
async fn text(driver: &Driver, session: &Session, css: &str) -> Option<String> {
    let v = session
        .execute(
            driver,
            "var e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            json!([css]),
        )
        .await;
    v.as_str().map(str::to_string)
}

/// Texts of every element matching `css`.
async fn texts(driver: &Driver, session: &Session, css: &str) -> Vec<String> {
    let v = session
        .execute(
            driver,
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);",
            json!([css]),
        )
        .await;
    serde_json::from_value(v).unwrap_or_default()
}

/// Log entries worth failing for: anything at WARNING or above, and any CSP message.
fn problems(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|e| {
            matches!(e["level"].as_str(), Some("SEVERE" | "WARNING"))
                || e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Content Security Policy"))
        })
        .map(|e| format!("{} {}: {}", e["level"], e["source"], e["message"]))
        .collect()
}

async fn send_traffic(sw: &Seawall) {
    // 1 r/m per client: the first request of 203.0.113.77 passes, the next 24 are rejected.
    for _ in 0..25 {
        let r = sw
            .client
            .get(sw.url("/api/orders"))
            .header("x-forwarded-for", "203.0.113.77")
            .send()
            .await
            .unwrap();
        assert!(r.status() == 200 || r.status() == 429);
    }
    for _ in 0..20 {
        sw.get("/index.html").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_live_numbers_and_the_limited_client_without_a_csp_violation() {
    let Some((chromium, chromedriver)) = chromium_or_skip() else {
        return;
    };
    let app = TestUpstream::start("app").await;
    let sw = Kit::new()
        .server(r#"trusted_proxies = ["127.0.0.1/32"]"#)
        .server(r#"admin_token_file = "admin.token""#)
        .file("admin.token", &format!("{TOKEN}\n"))
        .start(&format!(
            r#"
[upstreams.app]
servers = ["{}"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "1r/m"
  nodelay = true

[[routes]]
name = "site"
path_prefix = "/"
upstream = "app"
"#,
            app.addr
        ));

    let driver = Driver::start(&chromedriver, &sw.dir.path().join("chromedriver.log")).await;
    let profile = tempfile::tempdir().expect("profile dir");
    let session = driver
        .new_session(
            &chromium,
            profile.path(),
            &["--window-size=1440,1400".to_string()],
        )
        .await;
    session.goto(&driver, &sw.admin_url("/")).await;

    // The page draws from /-/status: the routes appear, idle.
    let api_rps = "#routes tr[data-route='api'] .c-rps";
    assert_eventually!(Duration::from_secs(10), "the api route's row", {
        text(&driver, &session, api_rps).await.is_some()
    });
    assert_eq!(text(&driver, &session, api_rps).await.unwrap(), "0");
    assert_eq!(
        text(&driver, &session, "[data-tile='requests'] .value")
            .await
            .unwrap(),
        "0/s"
    );
    let card = "[data-limit='api/per-ip']";
    assert_eq!(
        text(&driver, &session, &format!("{card} .empty"))
            .await
            .as_deref(),
        Some("No key rejected in the last 60 s.")
    );

    send_traffic(&sw).await;

    // Within a few refreshes the numbers move and the limited client is named under its limit.
    assert_eventually!(Duration::from_secs(10), "api's req/s on the page", {
        text(&driver, &session, api_rps)
            .await
            .is_some_and(|t| t != "0")
    });
    assert_eventually!(Duration::from_secs(10), "the limited key under per-ip", {
        texts(&driver, &session, &format!("{card} table.keys td.key")).await == ["203.0.113.77"]
    });
    assert_eq!(
        texts(&driver, &session, &format!("{card} table.keys td.count")).await,
        ["24"]
    );
    let rejected = text(&driver, &session, &format!("{card} .c-rejected"))
        .await
        .unwrap();
    assert!(
        rejected.ends_with("rejected/s") && !rejected.starts_with("0rej"),
        "{rejected}"
    );
    let limited = text(&driver, &session, "[data-tile='limited'] .sub")
        .await
        .unwrap();
    assert_eq!(limited, "mostly api / per-ip");

    // Nothing went wrong in the page: no CSP violation, no console error, no failed load.
    let log = session.browser_log(&driver).await;
    assert_eq!(
        problems(&log),
        Vec::<String>::new(),
        "browser log: {log:#?}"
    );

    // A button that changes something asks for the token and sends it as a Bearer token: a
    // wrong one is refused and changes nothing, the right one reloads.
    for (token, want_toast, want_generation) in [
        (
            "wrong-token",
            "The admin token was refused; nothing changed.",
            1,
        ),
        (TOKEN, "Reloaded: generation 2, no changes", 2),
    ] {
        session.click(&driver, "#reload-btn").await;
        assert_eventually!(Duration::from_secs(5), "the token field in the dialog", {
            session
                .execute(
                    &driver,
                    "return document.getElementById('action-dialog').open && \
                     !document.getElementById('token-row').hidden;",
                    json!([]),
                )
                .await
                == true
        });
        session.type_into(&driver, "#token-input", token).await;
        session.click(&driver, "#action-ok").await;
        assert_eventually!(Duration::from_secs(10), "the action's result", {
            text(&driver, &session, "#toast").await.as_deref() == Some(want_toast)
        });
        assert_eq!(sw.state().status().generation, want_generation);
    }
    assert_eventually!(
        Duration::from_secs(5),
        "the new generation in the header",
        {
            text(&driver, &session, "#facts")
                .await
                .is_some_and(|t| t.contains("generation 2"))
        }
    );

    let png = session.screenshot(&driver).await;
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", shot.display());

    // The refused POST is the only thing the browser noted since.
    let log = session.browser_log(&driver).await;
    let problems_now = problems(&log);
    assert!(
        problems_now.len() == 1
            && problems_now[0].contains("/-/reload")
            && problems_now[0].contains("401"),
        "browser log: {log:#?}"
    );

    // And the check can fail: an inline style set by script is a violation Chromium logs.
    session
        .execute(
            &driver,
            "document.body.setAttribute('style', 'color: red'); return true;",
            json!([]),
        )
        .await;
    let log = session.browser_log(&driver).await;
    assert!(
        problems(&log).iter().any(|p| p.contains("style-src")),
        "an injected inline style must show in the log: {log:#?}"
    );

    session.delete(&driver).await;
    drop(driver);
    sw.stop();
}
