//! Headless Chromium driven over chromedriver's W3C WebDriver HTTP API, for the tests that need
//! a real browser (CSP enforcement, the incident console).
//!
//! Needs Debian's `chromium` and `chromium-driver` packages (`/usr/bin/chromium`,
//! `/usr/bin/chromedriver`; `SEAWALL_CHROMIUM` / `SEAWALL_CHROMEDRIVER` override the paths).
//! Without them a test is skipped with a note ([`chromium_or_skip`]), except under `CI=true`,
//! where it fails.
//!
//! Self-contained (no `common` items), so tests include it with
//! `#[path = "common/webdriver.rs"] mod webdriver;` and examples with a path to it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// A free port on 127.0.0.1 for chromedriver.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// The W3C name of an element reference in command results.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub fn browser_paths() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(std::env::var("SEAWALL_CHROMIUM").unwrap_or(CHROMIUM.into()));
    let driver =
        PathBuf::from(std::env::var("SEAWALL_CHROMEDRIVER").unwrap_or(CHROMEDRIVER.into()));
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

/// The browser's paths, or `None` with a note (a failure under `CI=true`).
pub fn chromium_or_skip() -> Option<(PathBuf, PathBuf)> {
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

/// chromedriver in its own process group, so that dropping it also ends the Chromium it started.
pub struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start(path: &Path, log: &Path) -> Driver {
        let port = free_port();
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
            http: client(),
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
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
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

    /// A new headless Chromium with the browser log captured (CSP violations, console errors
    /// and failed loads all land there). `extra_args`: e.g. `--window-size=W,H`.
    pub async fn new_session(
        &self,
        chromium: &Path,
        profile: &Path,
        extra_args: &[String],
    ) -> Session {
        let mut args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--no-first-run".into(),
            "--no-proxy-server".into(),
            format!("--user-data-dir={}", profile.display()),
        ];
        args.extend(extra_args.iter().cloned());
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:loggingPrefs": { "browser": "ALL" },
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
pub struct Session {
    base: String,
    id: String,
    deleted: bool,
}

impl Session {
    pub fn path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.id)
    }

    pub async fn delete(mut self, driver: &Driver) {
        driver
            .call(reqwest::Method::DELETE, &self.path(""), None)
            .await;
        self.deleted = true;
    }

    pub async fn goto(&self, driver: &Driver, url: &str) {
        driver
            .call(
                reqwest::Method::POST,
                &self.path("/url"),
                Some(json!({ "url": url })),
            )
            .await;
    }

    /// Run `script` (a function body; `arguments[i]` are `args`) in the page; its return value.
    pub async fn execute(&self, driver: &Driver, script: &str, args: Value) -> Value {
        driver
            .call(
                reqwest::Method::POST,
                &self.path("/execute/sync"),
                Some(json!({ "script": script, "args": args })),
            )
            .await
    }

    /// The PNG of the viewport.
    pub async fn screenshot(&self, driver: &Driver) -> Vec<u8> {
        let png = driver
            .call(reqwest::Method::GET, &self.path("/screenshot"), None)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("the screenshot is a base64 string"))
            .expect("screenshot base64")
    }

    /// The WebDriver id of the first element matching `css`.
    pub async fn find(&self, driver: &Driver, css: &str) -> String {
        let v = driver
            .call(
                reqwest::Method::POST,
                &self.path("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_string()
    }

    /// A real click (the browser's input pipeline, as a user's).
    pub async fn click(&self, driver: &Driver, css: &str) {
        let id = self.find(driver, css).await;
        driver
            .call(
                reqwest::Method::POST,
                &self.path(&format!("/element/{id}/click")),
                Some(json!({})),
            )
            .await;
    }

    /// Type `text` into the element matching `css`, key by key.
    pub async fn type_into(&self, driver: &Driver, css: &str, text: &str) {
        let id = self.find(driver, css).await;
        driver
            .call(
                reqwest::Method::POST,
                &self.path(&format!("/element/{id}/value")),
                Some(json!({ "text": text })),
            )
            .await;
    }

    /// Resize the window (a taller one takes the whole page in one screenshot).
    pub async fn set_window(&self, driver: &Driver, width: u32, height: u32) {
        driver
            .call(
                reqwest::Method::POST,
                &self.path("/window/rect"),
                Some(json!({ "width": width, "height": height })),
            )
            .await;
    }

    /// Browser log entries since the last call (`level`, `source`, `message`).
    pub async fn browser_log(&self, driver: &Driver) -> Vec<Value> {
        let v = driver
            .call(
                reqwest::Method::POST,
                &self.path("/se/log"),
                Some(json!({ "type": "browser" })),
            )
            .await;
        v.as_array().cloned().unwrap_or_default()
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
