//! The incident console on the admin listener: one page an SRE opens mid-incident, and the JSON
//! behind it.
//!
//! - [`topk`]: the keys each limit rejects most (space-saving over the last minute), fed from
//!   the reject path of [`crate::limits::request::apply`];
//! - [`key_text`]: a key as the limit saw it, made displayable;
//! - [`history`]: ten minutes of per-second aggregates in fixed rings;
//! - [`sample`]: the once-a-second reading of the proxy's own counters that feeds it;
//! - [`status`]: `GET /-/status` and `GET /-/limits`;
//! - `assets/`: the page (HTML, CSS, JS, icon), built into the binary, served under its own
//!   strict CSP: no inline script or style, nothing from another host, so it works offline.
//!
//! ```text
//! request path   apply() --Rejected/DryRunRejected--> BoundLimit.rejected_keys (topk)
//! every second   LimiterUpkeep -> Console::tick -> sample::read -> History::record
//! admin          GET /  /console.{css,js}  /favicon.svg  /-/status  /-/limits  -> respond()
//! ```
//!
//! The JSON holds client identifiers (addresses, header and cookie values). It is served on the
//! admin listener only, like `/metrics`, and never on a public one.

pub mod history;
pub mod key_text;
pub mod sample;
pub mod status;
pub mod topk;

use std::time::Instant;

use http::{Response, StatusCode};
use parking_lot::Mutex;

use crate::limits::limiter::{Clock, MonotonicClock};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use crate::state::State;

/// What the console keeps for the life of the process.
pub struct Console {
    pub started: Instant,
    pub started_at: jiff::Timestamp,
    pub history: Mutex<History>,
}

pub use history::History;

impl Default for Console {
    fn default() -> Self {
        Console {
            started: Instant::now(),
            started_at: jiff::Timestamp::now(),
            history: Mutex::new(History::default()),
        }
    }
}

impl Console {
    /// Record one second; the limiter upkeep calls this every second, after the campaign tick
    /// (so the observed rates are the fresh ones).
    pub fn tick(&self, metrics: &Metrics, snap: &Snapshot) {
        let s = sample::read(metrics, snap);
        self.history.lock().record(&s);
    }
}

/// The page's own policy: only its own script, style and data, nothing inline, no framing.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const CONSOLE_CSS: &str = include_str!("assets/console.css");
const CONSOLE_JS: &str = include_str!("assets/console.js");
const FAVICON_SVG: &str = include_str!("assets/favicon.svg");

/// Whether `path` is one of the console's (all answer GET and HEAD).
pub fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/console.css" | "/console.js" | "/favicon.svg" | "/-/status" | "/-/limits"
    )
}

fn answer(content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .header(http::header::CONTENT_SECURITY_POLICY, PAGE_CSP)
        .header(http::header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(http::header::REFERRER_POLICY, "no-referrer")
        .header("cross-origin-resource-policy", "same-origin")
        .body(body)
        .unwrap_or_default()
}

fn json(v: &serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    answer("application/json", body)
}

/// The answer to a GET of one of the console's paths ([`serves`]).
pub async fn respond(state: &State, path: &str) -> Response<Vec<u8>> {
    let now_ms = MonotonicClock.now_ms();
    match path {
        "/" => answer("text/html; charset=utf-8", INDEX_HTML.as_bytes().to_vec()),
        "/console.css" => answer("text/css; charset=utf-8", CONSOLE_CSS.as_bytes().to_vec()),
        "/console.js" => answer(
            "text/javascript; charset=utf-8",
            CONSOLE_JS.as_bytes().to_vec(),
        ),
        "/favicon.svg" => answer("image/svg+xml", FAVICON_SVG.as_bytes().to_vec()),
        "/-/limits" => json(&status::limits_only(state, now_ms)),
        _ => {
            let mut v = status::status(state, now_ms);
            v["fleet"] = status::fleet(state).await.into();
            json(&v)
        }
    }
}
