//! The admission decision: what Seawall does with a request, decided once, before anything is
//! sent upstream.
//!
//! [`admit`] takes the live snapshot, the facts of a request and the time, and returns what to
//! do: serve the CSP report endpoint, answer now (and why), or proxy to the upstream it chose
//! (the route's pool or the ingestion upstream), after the limits' delay, holding the in-flight
//! slots. The order is the contract:
//!
//! ```text
//! client ip (trusted proxies) -> path normalized (400 if it cannot be safely)
//!   -> report endpoint -> route (routing::find) -> a declared body over max_body (413)
//!   -> campaign::classify (a paused or rejected campaign answers 503 here)
//!   -> limits: the campaign's, then the route's, one decision (a reject charges nothing);
//!      fleet limits in one Redis round trip within it (fleet::decide_limits)
//!   -> a queued request (a `queue` route, a campaign's `queue` action) is stored, not proxied
//!   -> the upstream: the ingestion upstream for a diverted request (never the app), else the
//!      route's, or on a canary route its canary upstream for a sticky share of clients
//!   -> in-flight caps: the route's (not for a diverted request), then the upstream's
//! ```
//!
//! It touches no client socket (fleet limits ask Redis; everything else is in memory): the
//! proxy reads the facts from its session and acts on the answer, and
//! tests drive the order directly (tests/admission.rs). What it counts on the way (campaign
//! requests and unregistered tags, limit decisions) it counts here, once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::http::RequestHeader;
use pingora_limits::inflight::Guard;

use crate::answers::Reason;
use crate::campaign::{self, Action, Classified};
use crate::headers::{X_FORWARDED_FOR, X_FORWARDED_PROTO};
use crate::limits;
use crate::limits::request::{Outcome, RateLimitHeaders};
use crate::routing;
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::upstream::Upstream;

/// What admission reads of a request.
pub struct Facts<'a> {
    /// Method, URI (path and query) and headers, as received.
    pub req: &'a RequestHeader,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// The time a decision is taken at: the limiters' monotonic milliseconds, and the wall clock
/// launch windows are judged by.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub mono_ms: u64,
    pub wall: jiff::Timestamp,
}

/// Who the client is, as far as Seawall believes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client's address: the peer's, or from `X-Forwarded-For` when the peer is trusted.
    pub ip: IpAddr,
    pub peer: IpAddr,
    /// Whether the peer is a trusted proxy (its forwarding headers are believed).
    pub peer_trusted: bool,
    /// The page is served over HTTPS (here, or at a trusted proxy that says so).
    pub secure: bool,
}

/// The campaign of a tagged request and what was done with it.
#[derive(Debug, Clone)]
pub struct Attribution {
    /// The launch's name, or "unregistered".
    pub name: Arc<str>,
    pub action: Action,
    /// For an unregistered tag: the tag as sent (cut to 64 bytes), for the access line.
    pub unregistered_tag: Option<String>,
}

/// Which upstream a request is sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The route's own upstream.
    Route,
    /// The route's canary upstream (`[routes.canary]`).
    Canary,
    /// The ingestion upstream (a diverted campaign request): a failure there answers 503 and
    /// never falls back to the app.
    Ingest,
}

/// The side of a canary route's split a request fell on.
#[derive(Debug, Clone)]
pub struct CanaryPick {
    pub canary: Arc<crate::canary::CanaryRoute>,
    pub side: crate::canary::Side,
    /// For a client without the stickiness cookie: the cookie it keeps from now on.
    pub set_cookie: Option<http::HeaderValue>,
}

/// A request a rate limit rejected: what its answer says.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: http::StatusCode,
    pub limit: Arc<str>,
    pub retry_after_s: u64,
    pub headers: RateLimitHeaders,
}

/// What to do with the request.
pub enum Verdict {
    /// Seawall answers it here.
    Answer(Answer),
    /// Store it in a durable queue and answer at once; the queue delivers it later.
    Queue(Arc<crate::queue::QueueHandle>),
    /// Proxy it.
    Proxy(Pass),
}

/// An answer Seawall gives itself, no upstream reached.
pub enum Answer {
    /// Serve the CSP report endpoint.
    Reports,
    /// Seawall's own answer for this reason.
    Refused(Reason),
    /// A rate limit rejected it.
    Limited(Rejection),
    /// `upstream` is at its `max_inflight`: answer `reason` (503) without sending.
    Overloaded {
        upstream: Arc<Upstream>,
        reason: Reason,
    },
}

/// A request on its way to an upstream.
pub struct Pass {
    pub upstream: Arc<Upstream>,
    pub side: Side,
    /// Wait this long first (nginx's limit_req delay): the request waits, the worker not.
    pub delay: Duration,
    /// Held until the request ends: its in-flight slots.
    pub guards: Vec<Guard>,
    /// On a canary route: the side it was split to.
    pub canary: Option<CanaryPick>,
}

/// The decision and what it learnt about the request on the way.
pub struct Admission {
    pub client: Client,
    /// Index into `snap.routes` of the route that matched.
    pub route: Option<usize>,
    pub campaign: Option<Attribution>,
    /// The `RateLimit` headers of the route's tightest limit, for the response.
    pub ratelimit: Option<RateLimitHeaders>,
    pub verdict: Verdict,
}

/// In-flight counts are keyed by kind and name; the tuple hashes without allocating.
const ROUTE_SLOT: u8 = 0;
const UPSTREAM_SLOT: u8 = 1;

/// Take an in-flight slot under `key`; `None` when the cap is reached (the slot is given back).
fn take_slot(state: &State, key: (u8, &str), cap: u32) -> Option<Option<Guard>> {
    if cap == 0 {
        return Some(None);
    }
    let (guard, count) = state.inflight.incr(key, 1);
    if count > cap as isize {
        drop(guard);
        None
    } else {
        Some(Some(guard))
    }
}

/// Who the client is: trusted-proxy resolution of `X-Forwarded-For`, and whether the page is
/// HTTPS (this connection, or a trusted proxy's `X-Forwarded-Proto: https`).
pub fn client(snap: &Snapshot, facts: &Facts<'_>) -> Client {
    let peer = crate::client_ip::canonical(facts.peer);
    let peer_trusted = snap.trusted.contains(peer);
    let headers = &facts.req.headers;
    let secure = facts.tls
        || (peer_trusted
            && headers
                .get(&X_FORWARDED_PROTO)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    let ip = snap.trusted.resolve(
        peer,
        headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(|v| v.as_bytes()),
    );
    Client {
        ip,
        peer,
        peer_trusted,
        secure,
    }
}

/// Decide what to do with a request. See the module doc for the order.
pub async fn admit(state: &State, snap: &Snapshot, facts: &Facts<'_>, now: Now) -> Admission {
    let client = client(snap, facts);
    let req = facts.req;
    let mut a = Admission {
        client,
        route: None,
        campaign: None,
        ratelimit: None,
        verdict: Verdict::Answer(Answer::Reports),
    };
    // Routes, campaign targets and the report endpoint see the normalized path; the request is
    // forwarded as sent.
    let path = match routing::normalize_path(req.uri.path()) {
        Ok(p) => p,
        Err(bad) => {
            a.verdict = Verdict::Answer(Answer::Refused(Reason::BadPath(bad)));
            return a;
        }
    };
    let path = path.as_ref();
    if snap.csp.report_path.as_deref() == Some(path) {
        return a;
    }
    let host = routing::normalize_host(routing::request_host(req));
    let Some((index, route)) = routing::find(&snap.routes, &host, path, &req.method) else {
        a.verdict = Verdict::Answer(Answer::Refused(Reason::NoRoute));
        return a;
    };
    a.route = Some(index);
    // As nginx: a declared body over the limit is refused before any limit is charged. A body
    // without a length is counted as it streams (the proxy's request_body_filter).
    if crate::headers::content_length(&req.headers).is_some_and(|n| n > route.max_body) {
        a.verdict = Verdict::Answer(Answer::Refused(Reason::BodyTooLarge));
        return a;
    }

    let class = campaign::classify(&snap.campaigns, req, path, now.wall);
    if let Some(c) = &class {
        record_campaign(state, c, path, now.mono_ms);
        a.campaign = Some(Attribution {
            name: c.campaign.clone(),
            action: c.action,
            unregistered_tag: c.launch.is_none().then(|| c.tag.raw.clone()),
        });
        if c.action.refuses() {
            count_campaign(state, &a.campaign);
            a.verdict = Verdict::Answer(Answer::Refused(Reason::CampaignRefused));
            return a;
        }
    }

    let campaign_limit = class.as_ref().and_then(|c| c.limit);
    let mut delay = Duration::ZERO;
    if !route.limits.is_empty() || campaign_limit.is_some() {
        let bound: Vec<&limits::BoundLimit> = campaign_limit
            .into_iter()
            .chain(route.limits.iter())
            .collect();
        let outcome = match state.fleet() {
            Some(fleet) if bound.iter().any(|b| b.fleet.is_some()) => {
                let checks = limits::request::keys(&bound, req, client.ip);
                // Boxed: a 1 KiB future (debug build) that only fleet routes need, out of every request's
                // `request_filter` future (see `Proxy::request_filter`).
                match Box::pin(crate::fleet::decide_limits(
                    fleet,
                    &bound,
                    &checks,
                    req,
                    client.ip,
                    now.mono_ms,
                ))
                .await
                {
                    Ok(d) => limits::request::outcome(
                        &route.name,
                        &bound,
                        &checks,
                        &d,
                        req,
                        client.ip,
                        now.mono_ms,
                    ),
                    Err(_) => {
                        // Redis unreachable and on_store_error = "closed".
                        count_campaign(state, &a.campaign);
                        a.verdict = Verdict::Answer(Answer::Refused(Reason::FleetUnavailable));
                        return a;
                    }
                }
            }
            _ => limits::request::apply(&route.name, &bound, req, client.ip, now.mono_ms),
        };
        match outcome {
            Outcome::Pass { delay_ms, headers } => {
                a.ratelimit = headers;
                delay = Duration::from_millis(delay_ms);
            }
            Outcome::Reject {
                status,
                limit,
                retry_after_s,
                headers,
                ..
            } => {
                if let Some(c) = &mut a.campaign {
                    c.action = Action::Limited;
                }
                count_campaign(state, &a.campaign);
                a.verdict = Verdict::Answer(Answer::Limited(Rejection {
                    status,
                    limit,
                    retry_after_s,
                    headers,
                }));
                return a;
            }
        }
    }
    count_campaign(state, &a.campaign);

    // A queued request (a `queue` route, or a campaign's `action = "queue"`) is stored, not
    // proxied: it takes no in-flight slot (it never reaches the app now); the queue's own
    // `max_bytes` bounds it.
    let queued = class.as_ref().is_some_and(|c| c.action == Action::Queue);
    let queue_name = match (&route.queue, queued) {
        (Some(q), _) => Some(q),
        (None, true) => snap.campaigns.ingest_queue.as_ref(),
        (None, false) => None,
    };
    if let Some(name) = queue_name {
        a.verdict = match state.queues.get(name) {
            Some(q) => Verdict::Queue(q),
            // Config and running queues are applied together: not seen outside a bug.
            None => Verdict::Answer(Answer::Refused(Reason::QueueUnavailable)),
        };
        return a;
    }

    // A diverted request goes to the ingestion upstream and never falls back to the app. It
    // counts against that upstream's cap only: the route's cap is the app's protection, and a
    // hung ingestion service must not use it up (untagged sign-ups would get 503).
    // On a canary route a request that goes to the route's upstream (not a diverted one) is
    // split between the stable and the canary upstream, stickily.
    let diverted = class.as_ref().is_some_and(|c| c.action == Action::Divert);
    let mut canary = None;
    let (upstream, side) = match (&snap.campaigns.ingest, diverted) {
        (Some(ingest), true) => (ingest.clone(), Side::Ingest),
        _ => match &route.canary {
            Some(c) => {
                let choice = c.state.choose(&req.headers, client.ip);
                let on_canary = choice.side == crate::canary::Side::Canary;
                canary = Some(CanaryPick {
                    canary: c.state.clone(),
                    side: choice.side,
                    set_cookie: choice.set_cookie,
                });
                if on_canary {
                    (c.def.upstream.clone(), Side::Canary)
                } else {
                    (route.upstream.clone(), Side::Route)
                }
            }
            None => (route.upstream.clone(), Side::Route),
        },
    };
    let mut guards = Vec::new();
    if side != Side::Ingest {
        match take_slot(state, (ROUTE_SLOT, &route.name), route.max_inflight) {
            Some(g) => guards.extend(g),
            None => {
                a.verdict = Verdict::Answer(Answer::Refused(Reason::RouteBusy));
                return a;
            }
        }
    }
    match take_slot(
        state,
        (UPSTREAM_SLOT, &upstream.name),
        upstream.max_inflight,
    ) {
        Some(g) => guards.extend(g),
        None => {
            let reason = match side {
                Side::Ingest => Reason::IngestUnavailable,
                Side::Route | Side::Canary => Reason::UpstreamBusy,
            };
            a.verdict = Verdict::Answer(Answer::Overloaded { upstream, reason });
            return a;
        }
    }
    a.verdict = Verdict::Proxy(Pass {
        upstream,
        side,
        delay,
        guards,
        canary,
    });
    a
}

/// Count a campaign request towards its launch's observed rate, and note unregistered tags.
fn record_campaign(state: &State, c: &Classified<'_>, path: &str, now_ms: u64) {
    match c.launch {
        Some(l) => l.counter.hit(),
        None => {
            let stats = &state.campaigns;
            stats.hit_unregistered();
            let label = stats.unregistered_tag(&c.tag, path, now_ms);
            state
                .metrics
                .campaign_unregistered_tags
                .with_label_values(&[&label])
                .inc();
        }
    }
}

/// `seawall_campaign_requests_total` for a tagged request, once, with what was done with it.
fn count_campaign(state: &State, campaign: &Option<Attribution>) {
    if let Some(c) = campaign {
        state
            .metrics
            .campaign_requests
            .with_label_values(&[c.name.as_ref(), c.action.label()])
            .inc();
    }
}
