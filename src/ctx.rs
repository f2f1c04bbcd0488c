//! A request's own state across Pingora's phases, and how its story ended.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use pingora_limits::inflight::Guard;

use crate::admission::{Attribution, Client, Side};
use crate::answers::Reason;
use crate::csp;
use crate::limits::request::RateLimitHeaders;
use crate::metrics::{NO_ROUTE, UpstreamOutcome};
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

/// How a request ended, for its metrics and log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Not settled yet: being admitted, or on its way to an upstream.
    Pending,
    /// Seawall served the request itself (the CSP report endpoint), with this status.
    Served(StatusCode),
    /// Seawall answered instead of any upstream (no route, a limit, a cap, a paused campaign).
    Answered(Reason),
    /// A queue stored the request durably; Seawall answered with the queue's `accepted`.
    Queued(StatusCode),
    /// An upstream was meant: how that went, and Seawall's own answer when it had to give one
    /// (cap reached, no healthy server, refused, timed out, failed).
    Upstream {
        outcome: UpstreamOutcome,
        answered: Option<Reason>,
    },
}

impl Disposition {
    /// Why Seawall answered itself, if it did.
    pub fn reason(self) -> Option<Reason> {
        match self {
            Disposition::Answered(r) => Some(r),
            Disposition::Upstream { answered, .. } => answered,
            Disposition::Pending | Disposition::Served(_) | Disposition::Queued(_) => None,
        }
    }

    pub fn outcome(self) -> Option<UpstreamOutcome> {
        match self {
            Disposition::Upstream { outcome, .. } => Some(outcome),
            _ => None,
        }
    }

    /// The status this disposition stands for when no response header was written.
    pub fn status(self) -> Option<StatusCode> {
        match self {
            Disposition::Served(s) | Disposition::Queued(s) => Some(s),
            other => other.reason().map(Reason::status),
        }
    }
}

/// Per-request state. The snapshot is taken once, so every phase sees one config.
pub struct Ctx {
    pub snap: Arc<Snapshot>,
    pub started: Instant,
    /// Sent upstream and on the answer as `X-Request-Id`; see [`Ctx::request_id_text`].
    pub request_id: http::HeaderValue,
    pub client: Client,
    /// Index into `snap.routes`.
    pub route: Option<usize>,
    pub upstream: Option<Arc<Upstream>>,
    /// Which upstream of the request's route it was sent to.
    pub side: Side,
    pub disposition: Disposition,
    /// `RateLimit-Policy` / `RateLimit` of the route's tightest limit, for the response.
    pub ratelimit: Option<RateLimitHeaders>,
    /// The campaign of a tagged request and what was done with it.
    pub campaign: Option<Attribution>,
    /// Stamps the response's nonce on marked scripts as the body streams. Boxed: the rewriter
    /// is 1 KiB and few routes use it, and the `Ctx` is copied with every future that holds it
    /// (copying those futures was 3.7% of a request's CPU in a perf profile; issue 16).
    pub nonce_rewriter: Option<Box<csp::nonce::NonceRewriter>>,
    /// Connect failures so far: each server of the pool is tried once.
    pub connect_failures: usize,
    /// Request body bytes seen so far, against the route's `max_body`.
    pub body_bytes: u64,
    /// The server of the upstream pool the request went to, and when it was chosen.
    pub upstream_addr: Option<std::net::SocketAddr>,
    pub upstream_started: Option<Instant>,
    /// The limit that rejected the request, for the access line.
    pub rejected_by: Option<Arc<str>>,
    /// The receipt of a queued request, for the access line (never its body).
    pub receipt: Option<String>,
    /// On a canary route: the side it went to (its outcome is recorded in `logging`), and the
    /// stickiness cookie to set.
    pub canary: Option<crate::admission::CanaryPick>,
    /// Held to the end of the request: dropping them gives the in-flight slots back.
    pub guards: Vec<Guard>,
}

impl Ctx {
    pub fn new(snap: Arc<Snapshot>) -> Ctx {
        let unspecified = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Ctx {
            snap,
            started: Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            client: Client {
                ip: unspecified,
                peer: unspecified,
                peer_trusted: false,
                secure: false,
            },
            route: None,
            upstream: None,
            side: Side::Route,
            disposition: Disposition::Pending,
            ratelimit: None,
            campaign: None,
            nonce_rewriter: None,
            connect_failures: 0,
            body_bytes: 0,
            upstream_addr: None,
            upstream_started: None,
            rejected_by: None,
            receipt: None,
            canary: None,
            guards: Vec::new(),
        }
    }

    /// The request id as text, for logs and Seawall's own answers.
    pub fn request_id_text(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    pub fn route_name(&self) -> &str {
        self.route
            .and_then(|i| self.snap.routes.get(i))
            .map_or(NO_ROUTE, |r| &r.name)
    }

    /// The matched route's `max_body` (0 before a route matched: nothing is proxied then).
    pub fn max_body(&self) -> u64 {
        self.route
            .and_then(|i| self.snap.routes.get(i))
            .map_or(0, |r| r.max_body)
    }

    /// The CSP policy of the matched route, if any.
    pub fn route_policy(&self) -> Option<&Arc<csp::Policy>> {
        match &self.snap.routes.get(self.route?)?.csp {
            csp::CspChoice::Policy(p) => Some(p),
            csp::CspChoice::Off => None,
        }
    }

    /// The headers a response Seawall writes itself must carry, since Pingora skips
    /// `response_filter` for these answers: the route's CSP (or csp.toml's default for requests
    /// no route matched), and a canary route's stickiness cookie.
    pub fn own_answer_headers(&self) -> Vec<(http::HeaderName, http::HeaderValue)> {
        let policy = match self.route {
            Some(_) => self.route_policy(),
            None => self.snap.csp.default_policy.as_ref(),
        };
        let mut out = policy.map_or_else(Vec::new, |p| {
            csp::apply::headers(p, true, self.client.secure).0
        });
        if let Some(cookie) = self.canary.as_ref().and_then(|c| c.set_cookie.clone()) {
            out.push((http::header::SET_COOKIE, cookie));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    /// Every future that holds a request's `Ctx` (Pingora's connection and request futures)
    /// is copied whole as it is boxed and awaited, twice or more a request: a large field
    /// belongs behind a `Box`. The nonce rewriter inline made it 1,520 bytes (issue 16).
    #[test]
    fn the_request_context_stays_small() {
        let size = std::mem::size_of::<super::Ctx>();
        assert!(size <= 512, "Ctx is {size} bytes");
    }
}
