//! `seawall demo`: the proxy plus everything it needs to show its features, in one process.
//!
//! - a demo origin app on 127.0.0.1:3000: an HTML shop page that loads one approved and one
//!   unapproved third-party tag, a sign-up endpoint, `/healthz`;
//! - two "third-party" tag hosts: `localhost:3201` (approved in conf/demo/csp.toml) and
//!   `127.0.0.1:3202` (not approved);
//! - an ingestion sink on 127.0.0.1:3100 that counts what reaches it;
//! - Seawall on 127.0.0.1:8080 (admin 127.0.0.1:9901) with conf/demo/*.toml in front of them;
//!   the summer-sale sign-ups go into the `leads` queue, spooled under [`SPOOL_DIR`], which
//!   delivers them to the origin at 5 a second.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};

use crate::server::{self, RunOptions};

pub const ORIGIN_ADDR: &str = "127.0.0.1:3000";
pub const INGEST_ADDR: &str = "127.0.0.1:3100";
pub const APPROVED_TAG_ADDR: &str = "127.0.0.1:3201";
pub const UNAPPROVED_TAG_ADDR: &str = "127.0.0.1:3202";
/// Where conf/demo/seawall.toml spools its queue. The demo's leads are throwaway: it is emptied
/// when the demo starts (a demo killed earlier would otherwise deliver its leftovers into the
/// tour's counts) and when it stops.
pub const SPOOL_DIR: &str = "/tmp/seawall-demo-spool";

/// The demo config, built into the binary so `seawall demo` works from any directory.
const EMBEDDED: [(&str, &str); 3] = [
    ("seawall.toml", include_str!("../conf/demo/seawall.toml")),
    ("csp.toml", include_str!("../conf/demo/csp.toml")),
    (
        "campaigns.toml",
        include_str!("../conf/demo/campaigns.toml"),
    ),
];

#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Directory with the demo's seawall.toml, csp.toml and campaigns.toml. When it does not
    /// exist, the copies built into the binary are used.
    #[arg(long, default_value = "conf/demo")]
    pub dir: PathBuf,
}

/// The shop page. The approved tag comes from a host csp.toml approves, the other does not;
/// each tag writes into the page when it runs, so the page shows what CSP let through.
pub const SHOP_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Seawall demo shop</title></head>
<body>
<h1>Demo shop</h1>
<p>This page is served by the demo origin through Seawall.</p>
<ul>
  <li id="approved-tag">approved tag (localhost:3201): did not run</li>
  <li id="unapproved-tag">unapproved tag (127.0.0.1:3202): did not run</li>
</ul>
<script src="http://localhost:3201/tag.js"></script>
<script src="http://127.0.0.1:3202/tag.js"></script>
<form method="post" action="/api/v1/users/register?ref=SUMMERSALE20">
  <input name="email" value="someone@example.com"> <button>Sign up</button>
</form>
</body>
</html>
"#;

/// Counts of what reached the origin and the sink, served as JSON for the curl lines.
#[derive(Default)]
pub struct Counters {
    pub signups: AtomicU64,
    /// Sign-ups the queue delivered (they carry `X-Seawall-Receipt`).
    pub from_queue: AtomicU64,
    /// The `Idempotency-Key` of the last one: the tour compares it with the client's receipt.
    pub last_idempotency_key: Mutex<String>,
    pub ingested: AtomicU64,
    pub by_campaign: Mutex<BTreeMap<String, u64>>,
}

pub fn origin(counters: Arc<Counters>) -> Router {
    Router::new()
        .route("/", get(|| async { Html(SHOP_PAGE) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/api/v1/users/register",
            post(
                |State(c): State<Arc<Counters>>, headers: HeaderMap, body: Bytes| async move {
                    let n = c.signups.fetch_add(1, Ordering::Relaxed) + 1;
                    if headers.contains_key("x-seawall-receipt") {
                        c.from_queue.fetch_add(1, Ordering::Relaxed);
                        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok());
                        if let (Some(key), Ok(mut last)) = (key, c.last_idempotency_key.lock()) {
                            *last = key.to_string();
                        }
                    }
                    let msg = format!(
                        "{{\"created\":true,\"signups_at_origin\":{n},\"body_bytes\":{}}}\n",
                        body.len()
                    );
                    (
                        StatusCode::CREATED,
                        [(header::CONTENT_TYPE, "application/json")],
                        msg,
                    )
                },
            ),
        )
        .route(
            "/__origin/stats",
            get(|State(c): State<Arc<Counters>>| async move {
                let last = c
                    .last_idempotency_key
                    .lock()
                    .map(|k| k.clone())
                    .unwrap_or_default();
                serde_json::json!({
                    "signups": c.signups.load(Ordering::Relaxed),
                    "from_queue": c.from_queue.load(Ordering::Relaxed),
                    "last_idempotency_key": last,
                })
                .to_string()
                    + "\n"
            }),
        )
        .with_state(counters)
}

pub fn ingest_sink(counters: Arc<Counters>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/__sink/stats",
            get(|State(c): State<Arc<Counters>>| async move {
                let by = c.by_campaign.lock().map(|m| m.clone()).unwrap_or_default();
                serde_json::json!({
                    "received": c.ingested.load(Ordering::Relaxed),
                    "by_campaign": by,
                })
                .to_string()
                    + "\n"
            }),
        )
        .fallback(
            |State(c): State<Arc<Counters>>, headers: HeaderMap| async move {
                c.ingested.fetch_add(1, Ordering::Relaxed);
                let campaign = headers
                    .get("x-seawall-campaign")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("(none)")
                    .to_string();
                if let Ok(mut m) = c.by_campaign.lock() {
                    *m.entry(campaign).or_default() += 1;
                }
                (StatusCode::ACCEPTED, "{\"queued\":true}\n").into_response()
            },
        )
        .with_state(counters)
}

pub fn tag_host(element_id: &'static str) -> Router {
    Router::new().route(
        "/tag.js",
        get(move || async move {
            let js = format!(
                "document.getElementById('{element_id}').textContent = \
                 document.getElementById('{element_id}').textContent.replace('did not run', 'RAN');\n"
            );
            ([(header::CONTENT_TYPE, "application/javascript")], js)
        }),
    )
}

async fn serve(addr: &str, app: Router) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

fn config_dir(args: &DemoArgs) -> std::io::Result<PathBuf> {
    if args.dir.join("seawall.toml").is_file() {
        return Ok(args.dir.clone());
    }
    let dir = std::env::temp_dir().join(format!("seawall-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let gone = dir.clone();
    server::at_exit(move || {
        let _ = std::fs::remove_dir_all(gone);
    });
    for (name, text) in EMBEDDED {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(dir)
}

pub fn run(args: DemoArgs) -> ExitCode {
    let dir = match config_dir(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("seawall demo: cannot prepare the demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    for addr in [
        ORIGIN_ADDR,
        INGEST_ADDR,
        APPROVED_TAG_ADDR,
        UNAPPROVED_TAG_ADDR,
    ] {
        if let Err(e) = std::net::TcpListener::bind(addr) {
            eprintln!("seawall demo: cannot listen on {addr}: {e} (is another demo running?)");
            return ExitCode::FAILURE;
        }
    }
    let spool = std::path::Path::new(SPOOL_DIR);
    if let Err(e) = remove_spool(spool) {
        eprintln!("seawall demo: cannot empty the demo queue's spool {SPOOL_DIR}: {e}");
        return ExitCode::FAILURE;
    }
    server::at_exit(move || {
        let _ = remove_spool(spool);
    });
    let counters = Arc::new(Counters::default());
    let c = counters.clone();
    let (tx, rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        rt.block_on(async move {
            let servers = [
                tokio::spawn(serve(ORIGIN_ADDR, origin(c.clone()))),
                tokio::spawn(serve(INGEST_ADDR, ingest_sink(c))),
                tokio::spawn(serve(APPROVED_TAG_ADDR, tag_host("approved-tag"))),
                tokio::spawn(serve(UNAPPROVED_TAG_ADDR, tag_host("unapproved-tag"))),
            ];
            let _ = tx.send(Ok(()));
            for s in servers {
                if let Ok(Err(e)) = s.await {
                    tracing::error!(error = %e, "a demo server stopped");
                }
            }
        });
    });
    if let Ok(Err(e)) = rx.recv() {
        eprintln!("seawall demo: cannot start the demo servers: {e}");
        return ExitCode::FAILURE;
    }

    let config = dir.join("seawall.toml");
    let started = server::load_state(&config).and_then(|state| {
        server::preflight_bind(&state)?;
        Ok((server::build(state.clone(), &RunOptions::default())?, state))
    });
    match started {
        Ok((server, state)) => {
            print_banner(&config, state.process.listen[0], state.process.admin_listen);
            server::run_process(server, state)
        }
        Err(e) => {
            eprintln!("seawall demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn remove_spool(dir: &std::path::Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn print_banner(config: &std::path::Path, proxy: SocketAddr, admin: SocketAddr) {
    println!(
        r#"
Seawall demo is starting (config: {config})

  proxy          http://{proxy}/            (the shop page, through Seawall)
  admin          http://{admin}/metrics     /-/ready  /-/config  POST /-/reload
  demo origin    http://{ORIGIN_ADDR}/            (direct, bypassing Seawall)
  ingest sink    http://{INGEST_ADDR}/__sink/stats
  tag hosts      http://localhost:3201/tag.js (approved)   http://127.0.0.1:3202/tag.js (not approved)

Try:
  curl -i http://{proxy}/
  curl -i -X POST http://{proxy}/api/v1/users/register -d email=a@example.com                  # reaches the origin
  curl -i -X POST 'http://{proxy}/api/v1/users/register?ref=SUMMERSALE20' -d email=b@example.com # queued: 202 + X-Seawall-Receipt
  curl -s http://{admin}/-/queues            # the queue delivers to the origin at 5 r/s
  curl -i -X POST 'http://{proxy}/api/v1/users/register?ref=UNANNOUNCED' -d email=c@example.com  # unregistered tag: diverted to the sink
  curl -i http://{proxy}/nothing-here        # proxied; the origin answers 404
  curl -s http://{admin}/-/config
  curl -s http://{admin}/metrics | grep seawall_requests_total
  curl -s http://{ORIGIN_ADDR}/__origin/stats ; curl -s http://{INGEST_ADDR}/__sink/stats

A launch flood (50 sign-ups from 50 addresses), then watch the queue drain into the origin:
  for i in $(seq 50); do curl -s -o /dev/null -w '%{{http_code}} ' -H "X-Forwarded-For: 198.51.100.$i" \
    -X POST 'http://{proxy}/api/v1/users/register?ref=SUMMERSALE20' -d email=f$i@example.com; done; echo
  for i in $(seq 6); do curl -s http://{admin}/-/queues | grep -o '"depth": [0-9]*'; sleep 2; done

Stop with Ctrl-C. The JSON access log follows on stdout.
"#,
        config = config.display()
    );
}
