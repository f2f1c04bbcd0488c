//! Canary releases: a sticky share of a route's requests to a new version, watched window by
//! window and rolled back by Seawall itself when it does worse than its thresholds or than the
//! stable side.
//!
//! Everything here is pure (no sockets, no timers): the proxy and the maintenance service call in.
//!
//! | file | what it holds |
//! |---|---|
//! | [`split`] | which side a client is on: a hash of its cookie, header or IP, against the weight |
//! | [`window`] | per-window, per-side counts and a latency histogram, recorded with atomics |
//! | [`judge`] | the verdict on one window: thresholds and the one-sided test against stable |
//! | [`state`] | one route's canary: weight in force, bad-window streak, rollback, freeze, the tick |
//! | [`registry`] | every route's canary across reloads, keyed by route name and table digest |
//! | [`launches`] | which campaign launches freeze a route's canary (`freeze_during_launches`) |
//! | [`bind`] | a route's canary with its live state (the glue with routes and launches) |
//!
//! ```text
//! admission   CanaryRoute::choose(headers, client_ip) -> Choice { side, set_cookie }
//! response    Set-Cookie: choice.set_cookie (cookie stickiness, a client that had none)
//! logging     CanaryRoute::record(side, status, latency)
//! every 1 s   Registry::tick(monotonic ms, wall time): windows close, verdicts, rollbacks, freezes
//! admin       Registry::rollback(route, wall time); Registry::status() for /-/config
//! ```

pub mod bind;
pub mod judge;
pub mod launches;
pub mod registry;
pub mod split;
pub mod state;
pub mod window;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use sha2::{Digest, Sha256};

pub use bind::bind;
pub use judge::{Breach, Thresholds, Verdict, judge};
pub use launches::LaunchWindow;
pub use registry::{Registry, RollbackError};
pub use split::Choice;
pub use state::{CanaryRoute, CanaryStatus, Event, Rollback, Trigger};

/// Defaults for the keys `[routes.canary]` may leave out.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_MIN_REQUESTS: u64 = 100;
pub const DEFAULT_BAD_WINDOWS: u32 = 2;

/// The two sides of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Stable,
    Canary,
}

impl Side {
    /// The `side` label of `seawall_canary_requests_total`.
    pub fn label(self) -> &'static str {
        match self {
            Side::Stable => "stable",
            Side::Canary => "canary",
        }
    }
}

/// What keeps a client on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// IPv4 address, or the /64 of an IPv6 one (a host rotates addresses inside its /64).
    ClientIp,
    /// A request header's value; a request without it falls back to the client IP.
    Header(HeaderName),
    /// A cookie's value (an RFC 6265 token as name); a client without it is drawn at random
    /// and told to keep the value it drew.
    Cookie(String),
}

impl std::fmt::Display for Sticky {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sticky::ClientIp => f.write_str("client_ip"),
            Sticky::Header(h) => write!(f, "header:{h}"),
            Sticky::Cookie(c) => write!(f, "cookie:{c}"),
        }
    }
}

/// A `[routes.canary]` table, checked. Built by `config::canary`; nothing here reads files.
#[derive(Debug, Clone, PartialEq)]
pub struct CanarySpec {
    /// The canary upstream's name (the pool itself is in [`RouteCanary`]). It also salts the
    /// split's hash: the same clients are the canary's on every route it serves, and another
    /// canary upstream gets another sample of clients.
    pub upstream: Arc<str>,
    /// Percent of the route's split requests, 0-100.
    pub weight: u8,
    pub sticky: Sticky,
    pub window: Duration,
    /// Requests each side needs in a window before the window is judged.
    pub min_requests: u64,
    /// Absent: only the comparison with the stable side judges errors.
    pub max_error_rate: Option<f64>,
    /// Absent: latency is not judged.
    pub max_p99: Option<Duration>,
    /// Bad windows in a row that roll the canary back.
    pub bad_windows: u32,
    pub freeze_during_launches: bool,
    /// Seawall addition: a free label of the version under test. Part of the digest, so
    /// writing the new release after a fix restarts a rolled-back canary.
    pub release: Option<String>,
}

impl CanarySpec {
    /// sha256 of the table's values, normalised: defaults filled in, durations in ms, header
    /// names lower-cased. Key order, comments and spelling (`"1m"` or `"60s"`) do not count,
    /// so only a change of meaning lifts a rollback.
    pub fn digest(&self) -> String {
        let opt_ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| d.as_millis().to_string());
        let canonical = format!(
            "upstream={}\nweight={}\nsticky={}\nwindow_ms={}\nmin_requests={}\n\
             max_error_rate={}\nmax_p99_ms={}\nbad_windows={}\nfreeze_during_launches={}\n\
             release={:?}\n",
            self.upstream,
            self.weight,
            self.sticky,
            self.window.as_millis(),
            self.min_requests,
            self.max_error_rate
                .map_or("-".to_string(), |r| format!("{r:e}")),
            opt_ms(self.max_p99),
            self.bad_windows,
            self.freeze_during_launches,
            self.release,
        );
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The weight in basis points (1/100 of a percent), the split's unit.
    pub fn weight_bp(&self) -> u32 {
        u32::from(self.weight) * 100
    }

    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_requests: self.min_requests,
            max_error_rate: self.max_error_rate,
            max_p99: self.max_p99,
            // At weight 100 the stable side gets nothing: only the thresholds can judge.
            compare: self.weight < 100,
        }
    }
}

/// A route's canary as config loading compiles it: the spec and the pool the canary side goes to.
#[derive(Debug)]
pub struct RouteCanary {
    pub spec: Arc<CanarySpec>,
    pub digest: Arc<str>,
    pub upstream: Arc<crate::upstream::Upstream>,
}

/// A route's canary in the live snapshot: its definition and its state, kept across reloads
/// while the table is unchanged ([`Registry::bind`]).
#[derive(Debug)]
pub struct BoundCanary {
    pub def: RouteCanary,
    pub state: Arc<CanaryRoute>,
}
