//! The integration-test kit: real upstream HTTP servers on 127.0.0.1:0, a whole Seawall started
//! in-process from TOML strings on free ports, and a real HTTP client.
//!
//! ```ignore
//! let app = TestUpstream::start("app").await;
//! let sw = Kit::new().start(&format!(r#"
//!     [upstreams.app]
//!     servers = ["{}"]
//!     [[routes]]
//!     name = "all"
//!     upstream = "app"
//! "#, app.addr));
//! let r = sw.get("/").await;
//! ```
#![allow(dead_code)]

pub mod fleet;
pub mod process;
pub mod redis;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use seawall::server::Running;

/// Poll `cond` until it holds or `within` passes; panics with `what` on timeout. For effects
/// that happen "soon" (health checks, reloads), instead of a fixed sleep.
#[macro_export]
macro_rules! assert_eventually {
    ($within:expr, $what:expr, $cond:expr) => {{
        let deadline = std::time::Instant::now() + $within;
        loop {
            if $cond {
                break;
            }
            if std::time::Instant::now() > deadline {
                panic!("not true within {:?}: {}", $within, $what);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// A free TCP port on 127.0.0.1 (bound, then released for the server under test to take).
pub fn free_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// `n` distinct free ports on 127.0.0.1: all are held bound until every one is found, so two
/// of them can never be the same port (one released port is often handed out again at once).
pub fn free_addrs<const N: usize>() -> [SocketAddr; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("local addr"))
}

/// An address where nothing listens: connections are refused.
pub fn closed_addr() -> SocketAddr {
    free_addr()
}

/// The value of one sample in a Prometheus text page, if it is there.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<&str, &str> = labels.iter().copied().collect();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, lbls) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if n != name {
            continue;
        }
        let got: BTreeMap<&str, &str> = lbls
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        if got == want {
            return Some(value.parse().unwrap());
        }
    }
    None
}

/// What an upstream received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// "HTTP/1.1", "HTTP/2.0"
    pub version: String,
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
    }
}

#[derive(Clone)]
struct UpstreamState {
    name: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
    hits: Arc<AtomicUsize>,
    delay: Duration,
    /// While held closed, requests wait here (for in-flight cap tests).
    gate: Option<Arc<tokio::sync::Semaphore>>,
    status: StatusCode,
    content_type: &'static str,
    extra_headers: Vec<(&'static str, &'static str)>,
    /// A fixed body instead of `NAME PATH`.
    body: Option<&'static str>,
}

/// A real HTTP server on 127.0.0.1:0 that records what it receives and answers
/// `NAME PATH` (so a test can tell which upstream answered).
pub struct TestUpstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    state: UpstreamState,
    task: tokio::task::JoinHandle<()>,
}

pub struct UpstreamBuilder {
    state: UpstreamState,
    addr: Option<SocketAddr>,
}

impl UpstreamBuilder {
    pub fn delay(mut self, d: Duration) -> Self {
        self.state.delay = d;
        self
    }

    /// Requests wait until [`TestUpstream::release`] adds permits.
    pub fn gated(mut self) -> Self {
        self.state.gate = Some(Arc::new(tokio::sync::Semaphore::new(0)));
        self
    }

    pub fn status(mut self, s: u16) -> Self {
        self.state.status = StatusCode::from_u16(s).expect("valid status");
        self
    }

    pub fn content_type(mut self, ct: &'static str) -> Self {
        self.state.content_type = ct;
        self
    }

    pub fn body(mut self, body: &'static str) -> Self {
        self.state.body = Some(body);
        self
    }

    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.state.extra_headers.push((name, value));
        self
    }

    /// Listen on a given address (to restart an upstream where it was).
    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    pub async fn start(self) -> TestUpstream {
        let addr = self.addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind test upstream");
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .fallback(handle)
            .with_state(self.state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestUpstream {
            addr,
            name: self.state.name,
            state: self.state,
            task,
        }
    }
}

async fn handle(State(s): State<UpstreamState>, req: Request) -> impl IntoResponse {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    s.seen.lock().unwrap().push(Seen {
        version: format!("{:?}", parts.version),
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body,
    });
    s.hits.fetch_add(1, Ordering::SeqCst);
    if let Some(g) = &s.gate {
        let _permit = g.acquire().await;
    }
    if !s.delay.is_zero() {
        tokio::time::sleep(s.delay).await;
    }
    let mut headers = HeaderMap::new();
    headers.insert("content-type", s.content_type.parse().unwrap());
    for (k, v) in &s.extra_headers {
        headers.insert(*k, v.parse().unwrap());
    }
    let body = if let Some(b) = s.body {
        b.to_string()
    } else if s.content_type.starts_with("text/html") {
        format!(
            "<!doctype html><html><body><p>{} {}</p></body></html>",
            s.name,
            parts.uri.path()
        )
    } else {
        format!("{} {}", s.name, parts.uri.path())
    };
    (s.status, headers, body)
}

impl TestUpstream {
    pub fn builder(name: &'static str) -> UpstreamBuilder {
        UpstreamBuilder {
            state: UpstreamState {
                name,
                seen: Arc::default(),
                hits: Arc::default(),
                delay: Duration::ZERO,
                gate: None,
                status: StatusCode::OK,
                content_type: "text/plain",
                extra_headers: Vec::new(),
                body: None,
            },
            addr: None,
        }
    }

    pub async fn start(name: &'static str) -> TestUpstream {
        Self::builder(name).start().await
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen().pop().expect("the upstream saw no request")
    }

    /// Let `n` gated requests through.
    pub fn release(&self, n: usize) {
        if let Some(g) = &self.state.gate {
            g.add_permits(n);
        }
    }

    /// Stop listening (new connections are refused).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Send `request` as raw bytes on a new connection and read until the server closes it or
/// `within` passes: for requests a real client would tidy up first (dot segments, odd framing).
/// Send `Connection: close` to get the whole answer back.
pub async fn raw_request(addr: SocketAddr, request: &[u8], within: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write the request");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A server that accepts connections and never answers: an ingestion service that hangs.
pub struct HungUpstream {
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HungUpstream {
    pub async fn start() -> HungUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(sock);
            }
        });
        HungUpstream {
            addr,
            accepted,
            task,
        }
    }
}

impl Drop for HungUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Builds the files of a Seawall under test. The `[server]` section is written by the kit
/// (free ports, one thread, access log off); tests add keys to it with [`Kit::server`].
#[derive(Default)]
pub struct Kit {
    server_extra: Vec<String>,
    csp: Option<String>,
    campaigns: Option<String>,
    files: Vec<(String, String)>,
}

/// Fields drop in order: the server stops before its config directory is deleted.
pub struct Seawall {
    running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
}

impl Kit {
    pub fn new() -> Kit {
        Kit::default()
    }

    /// A line for the `[server]` section, e.g. `trusted_proxies = ["127.0.0.1/32"]`.
    pub fn server(mut self, line: &str) -> Kit {
        self.server_extra.push(line.to_string());
        self
    }

    pub fn csp(mut self, toml: &str) -> Kit {
        self.csp = Some(toml.to_string());
        self
    }

    pub fn campaigns(mut self, toml: &str) -> Kit {
        self.campaigns = Some(toml.to_string());
        self
    }

    /// Another file next to seawall.toml (an admin token file, say).
    pub fn file(mut self, name: &str, text: &str) -> Kit {
        self.files.push((name.to_string(), text.to_string()));
        self
    }

    pub fn main_text(&self, listen: SocketAddr, admin: SocketAddr, body: &str) -> String {
        let mut server = format!("[server]\nlisten = [\"{listen}\"]\nadmin_listen = \"{admin}\"\n");
        if !self
            .server_extra
            .iter()
            .any(|l| l.starts_with("access_log"))
        {
            server.push_str("access_log = false\n");
        }
        if !self.server_extra.iter().any(|l| l.starts_with("threads")) {
            server.push_str("threads = 1\n");
        }
        if self.csp.is_some() {
            server.push_str("csp_file = \"csp.toml\"\n");
        }
        if self.campaigns.is_some() {
            server.push_str("campaigns_file = \"campaigns.toml\"\n");
        }
        for l in &self.server_extra {
            server.push_str(l);
            server.push('\n');
        }
        format!("{server}\n{body}")
    }

    /// Write the files and start Seawall; waits until `/-/ready`.
    pub fn start(self, body: &str) -> Seawall {
        let dir = tempfile::tempdir().expect("tempdir");
        if let Some(c) = &self.csp {
            std::fs::write(dir.path().join("csp.toml"), c).unwrap();
        }
        if let Some(c) = &self.campaigns {
            std::fs::write(dir.path().join("campaigns.toml"), c).unwrap();
        }
        for (name, text) in &self.files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        seawall::logging::init();
        // A port found free can be taken by another test before Seawall binds it: try again
        // with new ports a few times.
        let mut attempt = 0;
        let (listen, admin, running) = loop {
            attempt += 1;
            let [listen, admin] = free_addrs();
            std::fs::write(
                dir.path().join("seawall.toml"),
                self.main_text(listen, admin, body),
            )
            .unwrap();
            match seawall::server::start_in_background(&dir.path().join("seawall.toml")) {
                Ok(r) => break (listen, admin, r),
                Err(seawall::server::StartError::Bind { .. }) if attempt < 5 => continue,
                Err(e) => panic!("seawall did not start:\n{e}"),
            }
        };
        assert!(
            running.wait_ready(Duration::from_secs(10)),
            "seawall not ready within 10s"
        );
        Seawall {
            dir,
            listen,
            admin,
            client: client(),
            running: Some(running),
        }
    }
}

/// A real HTTP client that ignores proxy settings from the environment.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

impl Seawall {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("seawall.toml")
    }

    pub fn state(&self) -> &seawall::state::State {
        &self.running.as_ref().expect("running").state
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET through seawall")
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("GET admin")
    }

    /// The value of one sample in `/metrics`, e.g. `metric("seawall_requests_total", &[("route", "a"), ("status", "200")])`.
    /// A sample that is absent reads as 0.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.admin_get("/metrics").await.text().await.unwrap();
        sample(&text, name, labels).unwrap_or(0.0)
    }

    /// Wait until a sample reaches `want`: counters are bumped in Pingora's logging phase, which
    /// runs after the response has reached the client.
    pub async fn expect_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let got = self.metric(name, labels).await;
            if got == want {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}{labels:?} is {got}, expected {want}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Rewrite seawall.toml with the kit's [server] section and a new body.
    pub fn rewrite(&self, kit: &Kit, body: &str) {
        std::fs::write(
            self.config_path(),
            kit.main_text(self.listen, self.admin, body),
        )
        .unwrap();
    }

    pub fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop();
        }
    }
}
