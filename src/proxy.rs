//! `impl ProxyHttp`: thin dispatch. Decisions are made by [`crate::routing`],
//! [`crate::client_ip`] and friends; this file wires them to Pingora's phases.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::ErrorType;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora_limits::inflight::Guard;

use crate::access_log;
use crate::answers::{self, Reason};
use crate::campaign::{self, Action};
use crate::csp::{self, CspChoice};
use crate::header_names::*;
use crate::limits;
use crate::limits::limiter::{Clock, MonotonicClock};
use crate::limits::request::{Outcome, RateLimitHeaders};
use crate::metrics::{NO_ROUTE, UpstreamOutcome};
use crate::snapshot::Snapshot;
use crate::state::State;
use crate::upstream::Upstream;

pub struct Proxy {
    pub state: Arc<State>,
}

/// Per-request state. The snapshot is taken once, so every phase sees one config.
pub struct Ctx {
    pub snap: Arc<Snapshot>,
    pub started: Instant,
    /// Sent upstream and on the answer as `X-Request-Id`; see [`Ctx::request_id_text`].
    pub request_id: http::HeaderValue,
    pub client_ip: IpAddr,
    /// Whether the TCP peer is a trusted proxy (its forwarding headers are believed).
    pub peer_trusted: bool,
    pub peer_ip: IpAddr,
    /// Index into `snap.routes`.
    pub route: Option<usize>,
    pub upstream: Option<Arc<Upstream>>,
    pub outcome: Option<UpstreamOutcome>,
    /// Set when Seawall answered itself.
    pub reason: Option<Reason>,
    /// `RateLimit-Policy` / `RateLimit` of the route's tightest limit, for the response.
    pub ratelimit: Option<RateLimitHeaders>,
    /// Campaign name (launch or "unregistered") and action label, for tagged requests.
    pub campaign: Option<(Arc<str>, &'static str)>,
    /// Sent to the ingestion upstream: failures answer 503, never the app.
    pub diverted: bool,
    /// Stamps the response's nonce on marked scripts as the body streams.
    pub nonce_rewriter: Option<csp::nonce::NonceRewriter>,
    /// Status of a request Seawall served itself (the CSP report endpoint).
    pub served: Option<http::StatusCode>,
    /// The page was served over HTTPS (here, or at a trusted proxy that says so).
    pub secure: bool,
    connect_failures: usize,
    /// Held to the end of the request: dropping them gives the in-flight slots back.
    _guards: Vec<Guard>,
}

impl Ctx {
    /// The request id as text, for logs and Seawall's own answers.
    pub fn request_id_text(&self) -> &str {
        self.request_id.to_str().unwrap_or("-")
    }

    pub fn route_name(&self) -> &str {
        self.route
            .and_then(|i| self.snap.routes.get(i))
            .map_or(NO_ROUTE, |r| &r.name)
    }
}

/// A client-sent `X-Request-Id` is passed through when it is short and plain; otherwise a fresh
/// 128-bit id is generated. This keeps ids log-safe and lets an upstream proxy's id survive.
/// Either way it is a `HeaderValue`, made once and shared by the request and the answer.
fn request_id(session: &Session) -> http::HeaderValue {
    if let Some(v) = session.req_header().headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:".contains(c))
        {
            return v.clone();
        }
    }
    let mut text = [0u8; 32];
    hex::encode_to_slice(rand::random::<u128>().to_be_bytes(), &mut text)
        .expect("16 bytes are 32 hex digits");
    http::HeaderValue::from_bytes(&text).expect("hex digits are a valid header value")
}

/// The CSP headers of a response Seawall writes itself: the route's policy, or csp.toml's
/// default for requests no route matched. Pingora skips `response_filter` for these answers.
fn own_answer_csp(ctx: &Ctx) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let policy = match ctx.route {
        Some(_) => route_policy(ctx),
        None => ctx.snap.csp.default_policy.as_ref(),
    };
    policy.map_or_else(Vec::new, |p| csp::apply::headers(p, true, ctx.secure).0)
}

/// Bodies up to this size are read and dropped before Seawall answers a request itself, so the
/// connection can take the client's next request (as nginx does for a `limit_req` 429). Larger
/// or unsized bodies close the connection instead of being read.
const DISCARD_BODY_LIMIT: usize = 64 * 1024;

/// Before answering in `request_filter`: consume a small request body, or say the connection
/// ends. Without this a 429 to a POST closes the connection, and a flood becomes a flood of new
/// connections.
async fn settle_request_body(session: &mut Session) {
    if session.as_mut().is_body_done() {
        return;
    }
    let small = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= DISCARD_BODY_LIMIT);
    if !small || session.drain_request_body().await.is_err() {
        session.set_keepalive(None);
    }
}

/// Answer from `request_filter`, before anything was sent upstream.
async fn early_answer(session: &mut Session, ctx: &mut Ctx, reason: Reason) -> Result<()> {
    settle_request_body(session).await;
    send_answer(session, ctx, reason).await
}

async fn send_answer(session: &mut Session, ctx: &mut Ctx, reason: Reason) -> Result<()> {
    ctx.reason = Some(reason);
    let (header, body) = answers::build(reason, ctx.request_id_text(), &own_answer_csp(ctx));
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

/// `Content-Length: 5, 5` (or the header twice) goes upstream as one value. Pingora has already
/// refused a list whose values differ (400); identical ones are allowed by RFC 9110 (8.6) but
/// an upstream that reads only the first line, or none of a list, would frame the body
/// differently from us.
fn single_content_length(up: &mut RequestHeader) -> Result<()> {
    let cl = http::header::CONTENT_LENGTH;
    let mut values = up.headers.get_all(&cl).iter();
    let (Some(first), more) = (values.next(), values.next().is_some()) else {
        return Ok(());
    };
    if !more && !first.as_bytes().contains(&b',') {
        return Ok(());
    }
    let Some(one) = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_string())
    else {
        return Err(Error::explain(
            ErrorType::InvalidHTTPHeader,
            "unreadable Content-Length",
        ));
    };
    up.insert_header(cl, one)?;
    Ok(())
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

/// The CSP policy of the matched route, if any.
fn route_policy(ctx: &Ctx) -> Option<&Arc<csp::Policy>> {
    match &ctx.snap.routes.get(ctx.route?)?.csp {
        CspChoice::Policy(p) => Some(p),
        CspChoice::Off => None,
    }
}

impl Proxy {
    /// Count a campaign request towards its launch's observed rate, and note unregistered tags.
    fn record_campaign(&self, c: &campaign::Classified<'_>, path: &str) {
        match c.launch {
            Some(l) => {
                if let Some(counter) = &l.counter {
                    counter.hit();
                }
            }
            None => {
                let stats = &self.state.campaigns;
                stats.hit_unregistered();
                let label = stats.unregistered_tag(&c.tag, path, MonotonicClock.now_ms());
                self.state
                    .metrics
                    .campaign_unregistered_tags
                    .with_label_values(&[&label])
                    .inc();
            }
        }
    }

    fn count_campaign(&self, ctx: &Ctx) {
        if let Some((name, action)) = &ctx.campaign {
            self.state
                .metrics
                .campaign_requests
                .with_label_values(&[name.as_ref(), action])
                .inc();
        }
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds its response-compression module, disabled,
    /// which still builds a module context and runs its filters on every request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            snap: self.state.snapshot.load_full(),
            started: Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            peer_trusted: false,
            peer_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            route: None,
            upstream: None,
            outcome: None,
            reason: None,
            ratelimit: None,
            campaign: None,
            diverted: false,
            nonce_rewriter: None,
            served: None,
            secure: false,
            connect_failures: 0,
            _guards: Vec::new(),
        }
    }

    /// Pipelined requests (several in one write) are answered in order. Pingora 0.9 leaves
    /// this off by default: the bytes of the next request were dropped with the connection.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        session.set_pipelining_enabled(true);
        Ok(())
    }

    async fn request_header_error(
        &self,
        session: &mut pingora::protocols::http::ServerSession,
        e: &Error,
    ) {
        crate::unreadable::answer(&self.state, session, e).await;
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = request_id(session);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| {
                crate::client_ip::canonical(a.ip())
            });
        ctx.peer_ip = peer;
        ctx.peer_trusted = ctx.snap.trusted.contains(peer);
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        let req = session.req_header();
        ctx.secure = tls
            || (ctx.peer_trusted
                && req
                    .headers
                    .get(&X_FORWARDED_PROTO)
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
        ctx.client_ip = ctx.snap.trusted.resolve(
            peer,
            req.headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(|v| v.as_bytes()),
        );
        let raw_host = crate::routing::request_host(req);
        if ctx
            .snap
            .csp
            .report_path
            .as_deref()
            .is_some_and(|p| p == req.uri.path())
        {
            let snap = ctx.snap.clone();
            let status = csp::endpoint::serve(
                session,
                &self.state,
                &snap,
                ctx.client_ip,
                ctx.request_id_text(),
            )
            .await?;
            ctx.served = Some(status);
            return Ok(true);
        }
        let host = crate::routing::normalize_host(raw_host);
        let found = ctx
            .snap
            .routes
            .iter()
            .position(|r| r.matches(&host, req.uri.path(), &req.method));
        let Some(idx) = found else {
            early_answer(session, ctx, Reason::NoRoute).await?;
            return Ok(true);
        };
        ctx.route = Some(idx);
        let snap = ctx.snap.clone();
        let route = &snap.routes[idx];
        // Campaign classification, once per request.
        let class = if snap.campaigns.tag_sources.is_empty() {
            None
        } else {
            let req = session.req_header();
            campaign::classify(&snap.campaigns, req, req.uri.path(), self.state.wall_now())
        };
        if let Some(c) = &class {
            self.record_campaign(c, session.req_header().uri.path());
            ctx.campaign = Some((c.campaign.clone(), c.action_label));
            if c.action == Action::Refuse {
                self.count_campaign(ctx);
                early_answer(session, ctx, Reason::CampaignRefused).await?;
                return Ok(true);
            }
        }
        let campaign_limit = class.as_ref().and_then(|c| c.limit);
        if !route.bound.is_empty() || campaign_limit.is_some() {
            let limits: Vec<&limits::BoundLimit> = campaign_limit
                .into_iter()
                .chain(route.bound.iter())
                .collect();
            let now = MonotonicClock.now_ms();
            let req = session.req_header();
            match limits::request::apply(&route.name, &limits, req, ctx.client_ip, now) {
                Outcome::Pass { delay_ms, headers } => {
                    ctx.ratelimit = headers;
                    if delay_ms > 0 {
                        // As nginx does: the request waits, the worker does not.
                        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    }
                }
                Outcome::Reject {
                    status,
                    limit,
                    retry_after_s,
                    headers,
                    ..
                } => {
                    // A tagged request stopped by any limit (its campaign's or the route's).
                    if let Some((_, action)) = &mut ctx.campaign {
                        *action = "limited";
                    }
                    self.count_campaign(ctx);
                    ctx.reason = Some(Reason::RateLimited(status));
                    settle_request_body(session).await;
                    let (h, body) = answers::rate_limited(
                        status,
                        &limit,
                        retry_after_s,
                        &headers,
                        ctx.request_id_text(),
                        &own_answer_csp(ctx),
                    );
                    session.write_response_header(Box::new(h), false).await?;
                    session.write_response_body(Some(body), true).await?;
                    return Ok(true);
                }
            }
        }
        self.count_campaign(ctx);
        match take_slot(&self.state, (ROUTE_SLOT, &route.name), route.max_inflight) {
            Some(g) => ctx._guards.extend(g),
            None => {
                early_answer(session, ctx, Reason::RouteBusy).await?;
                return Ok(true);
            }
        }
        // A diverted request goes to the ingestion upstream and never falls back to the app.
        let diverted = class.as_ref().is_some_and(|c| c.action == Action::Divert);
        let upstream = match (&snap.campaigns.ingest, diverted) {
            (Some(ingest), true) => {
                ctx.diverted = true;
                ingest.clone()
            }
            _ => route.upstream.clone(),
        };
        match take_slot(
            &self.state,
            (UPSTREAM_SLOT, &upstream.name),
            upstream.max_inflight,
        ) {
            Some(g) => ctx._guards.extend(g),
            None => {
                ctx.upstream = Some(upstream);
                ctx.outcome = Some(UpstreamOutcome::Overloaded);
                let reason = if ctx.diverted {
                    Reason::IngestUnavailable
                } else {
                    Reason::UpstreamBusy
                };
                early_answer(session, ctx, reason).await?;
                return Ok(true);
            }
        }
        ctx.upstream = Some(upstream);
        Ok(false)
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(upstream) = &ctx.upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        match upstream.peer() {
            Some(p) => Ok(Box::new(p)),
            None => {
                ctx.outcome = Some(UpstreamOutcome::NoHealthyServer);
                ctx.reason = Some(Reason::NoHealthyServer);
                Err(Error::explain(
                    ErrorType::HTTPStatus(502),
                    "no healthy server in the upstream pool",
                ))
            }
        }
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // nginx's proxy_next_upstream default: a connect error tries the next server, once each.
        ctx.connect_failures += 1;
        if ctx
            .upstream
            .as_ref()
            .is_some_and(|u| ctx.connect_failures < u.servers.len())
        {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        up: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // X-Forwarded-For: a trusted proxy's chain with the peer appended; an untrusted client's
        // own header is dropped, not passed on: the app must be able to believe what it gets.
        let mut xff = Vec::with_capacity(48);
        if ctx.peer_trusted {
            for v in session.req_header().headers.get_all(&X_FORWARDED_FOR) {
                if v.to_str().is_ok() {
                    xff.extend_from_slice(v.as_bytes());
                    xff.extend_from_slice(b", ");
                }
            }
        }
        crate::client_ip::write_ip(&mut xff, ctx.peer_ip);
        up.insert_header(X_FORWARDED_FOR, xff)?;
        let mut real_ip = Vec::with_capacity(16);
        crate::client_ip::write_ip(&mut real_ip, ctx.client_ip);
        up.insert_header(X_REAL_IP, real_ip)?;
        let scheme = if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
            "https"
        } else {
            "http"
        };
        let keep_proto = ctx.peer_trusted && up.headers.contains_key(&X_FORWARDED_PROTO);
        if !keep_proto {
            up.insert_header(X_FORWARDED_PROTO, http::HeaderValue::from_static(scheme))?;
        }
        up.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        // A page whose scripts get a nonce must come uncompressed to be rewritten.
        if let Some(p) = route_policy(ctx)
            && p.wants_nonce()
        {
            up.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        }
        single_content_length(up)?;
        // Only Seawall says which campaign a request belongs to.
        up.remove_header(&X_SEAWALL_CAMPAIGN);
        if let Some((name, _)) = &ctx.campaign {
            up.insert_header(X_SEAWALL_CAMPAIGN, name.as_ref())?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.outcome = Some(UpstreamOutcome::Response);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        if let Some(rl) = &ctx.ratelimit {
            resp.insert_header(RATELIMIT_POLICY, rl.policy.clone())?;
            resp.insert_header(RATELIMIT, rl.state.clone())?;
        }
        if let Some(policy) = route_policy(ctx).cloned()
            && csp::apply::applies(&ctx.snap.csp, resp)
        {
            let encoded = resp
                .headers
                .get(http::header::CONTENT_ENCODING)
                .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
            if policy.wants_nonce() && encoded {
                tracing::warn!(
                    route = ctx.route_name(),
                    policy = %policy.name,
                    "the origin sent compressed HTML despite Accept-Encoding: identity; \
                     the page passes unrewritten and its CSP goes out without a nonce"
                );
            }
            let (headers, nonce) = csp::apply::headers(&policy, !encoded, ctx.secure);
            csp::apply::put(resp, &policy, headers)?;
            if let Some(n) = nonce {
                // The body changes length as it is rewritten.
                resp.remove_header(&http::header::CONTENT_LENGTH);
                ctx.nonce_rewriter = Some(csp::nonce::NonceRewriter::new(n));
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        if let Some(r) = ctx.nonce_rewriter.as_mut() {
            *body = Some(r.feed(body.as_ref(), end_of_stream));
        }
        Ok(None)
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        use ErrorType::*;
        let upstream_side = e.esource() == &ErrorSource::Upstream;
        let reason = match e.etype() {
            HTTPStatus(502) if ctx.reason == Some(Reason::NoHealthyServer) => {
                Reason::NoHealthyServer
            }
            ConnectTimedout | ReadTimedout | WriteTimedout if upstream_side => {
                Reason::UpstreamTimeout
            }
            ConnectTimedout => Reason::UpstreamTimeout,
            ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | ConnectProxyFailure => {
                Reason::UpstreamUnreachable
            }
            _ if upstream_side => Reason::UpstreamFailed,
            _ if e.esource() == &ErrorSource::Downstream => {
                if matches!(e.etype(), ReadError | WriteError | ConnectionClosed) {
                    // The client is gone: nobody to answer.
                    return FailToProxy {
                        error_code: 0,
                        can_reuse_downstream: false,
                    };
                }
                Reason::BadRequest
            }
            _ => Reason::Internal,
        };
        if ctx.outcome.is_none() && ctx.upstream.is_some() {
            ctx.outcome = Some(match reason {
                Reason::UpstreamTimeout if matches!(e.etype(), ConnectTimedout) => {
                    UpstreamOutcome::ConnectError
                }
                Reason::UpstreamTimeout => UpstreamOutcome::Timeout,
                Reason::UpstreamUnreachable => UpstreamOutcome::ConnectError,
                _ => UpstreamOutcome::Error,
            });
        }
        // A diverted request is never retried on the app: its failure is a 503 to retry later.
        let reason = if ctx.diverted && reason != Reason::BadRequest {
            Reason::IngestUnavailable
        } else {
            reason
        };
        let code = reason.status().as_u16();
        // Pingora closes the connection after a failure once an upstream was chosen (it honours
        // reuse only before that): say so with `Connection: close`, so the client does not send
        // its next request into a closing connection.
        session.set_keepalive(None);
        // A response already under way cannot be replaced; the connection is closed instead.
        if session.response_written().is_none() {
            if let Err(err) = send_answer(session, ctx, reason).await {
                tracing::debug!(error = %err, "could not send the error answer");
            }
        } else {
            ctx.reason = Some(reason);
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status)
            .or(ctx.served)
            .or_else(|| ctx.reason.map(Reason::status));
        let status_label = match &status {
            Some(s) => s.as_str(),
            None => "0",
        };
        let route = ctx.route_name();
        let m = &self.state.metrics;
        m.requests.with_label_values(&[route, status_label]).inc();
        let elapsed = ctx.started.elapsed();
        m.request_duration
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
        if let (Some(up), Some(outcome)) = (&ctx.upstream, ctx.outcome) {
            m.upstream_requests
                .with_label_values(&[&up.name, outcome.label()])
                .inc();
        }
        if ctx.snap.access_log {
            access_log::write(session, ctx, status, elapsed, e);
        }
    }
}
