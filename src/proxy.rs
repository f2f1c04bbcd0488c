//! `impl ProxyHttp`: thin dispatch. [`crate::admission`] decides what to do with a request;
//! this file reads the facts from Pingora's session, acts on the decision, and wires the other
//! phases (forwarding headers, CSP on the response, failures, the one logging point).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use pingora::ErrorType;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::access_log;
use crate::admission::{self, Answer, Facts, Now, Pass, Side, Verdict};
use crate::answers::{self, BODY_TOO_LARGE, NO_HEALTHY_SERVER, Reason};
use crate::csp;
use crate::ctx::{Ctx, Disposition};
use crate::headers::*;
use crate::limits::limiter::{Clock, MonotonicClock};
use crate::metrics::UpstreamOutcome;
use crate::state::State;

pub struct Proxy {
    pub state: Arc<State>,
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

/// Bodies up to this size are read and dropped before Seawall answers a request itself, so the
/// connection can take the client's next request (as nginx does for a `limit_req` 429). Larger
/// or unsized bodies close the connection instead of being read.
const DISCARD_BODY_LIMIT: u64 = 64 * 1024;

/// Before answering in `request_filter`: consume a small request body, or say the connection
/// ends. Without this a 429 to a POST closes the connection, and a flood becomes a flood of new
/// connections.
async fn settle_request_body(session: &mut Session) {
    if session.as_mut().is_body_done() {
        return;
    }
    let small = crate::headers::content_length(&session.req_header().headers)
        .is_some_and(|n| n <= DISCARD_BODY_LIMIT);
    if !small || session.drain_request_body().await.is_err() {
        session.set_keepalive(None);
    }
}

/// Removes every header named in `names` from `up`. One pass over the request's headers, not a
/// hashed lookup per name: nearly every request carries none of them (issue 16: five removes
/// were 740 instructions a request).
fn remove_all(up: &mut RequestHeader, names: &[http::HeaderName]) {
    if up.headers.keys().any(|k| names.contains(k)) {
        for name in names {
            up.remove_header(name);
        }
    }
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

/// Seawall's own answer for `reason`, with the route's CSP headers.
async fn send_answer(session: &mut Session, ctx: &Ctx, reason: Reason) -> Result<()> {
    let (header, body) = answers::build(reason, ctx.request_id_text(), &ctx.own_answer_headers());
    answers::write(session, header, Some(body)).await
}

impl Proxy {
    /// Act on a verdict that answers the request here, without any upstream.
    async fn answer(&self, session: &mut Session, ctx: &mut Ctx, answer: Answer) -> Result<()> {
        let reason = match answer {
            Answer::Reports => {
                let snap = ctx.snap.clone();
                let id = ctx.request_id.clone();
                let id = id.to_str().unwrap_or("-");
                let status =
                    csp::endpoint::serve(session, &self.state, &snap, ctx.client.ip, id).await?;
                ctx.disposition = Disposition::Served(status);
                return Ok(());
            }
            Answer::Limited(rejection) => {
                ctx.disposition = Disposition::Answered(Reason::RateLimited(rejection.status));
                ctx.rejected_by = Some(rejection.limit.clone());
                settle_request_body(session).await;
                let id = ctx.request_id_text();
                let (h, body) = answers::rate_limited(&rejection, id, &ctx.own_answer_headers());
                return answers::write(session, h, Some(body)).await;
            }
            Answer::Refused(reason) => {
                ctx.disposition = Disposition::Answered(reason);
                reason
            }
            Answer::Overloaded { upstream, reason } => {
                ctx.upstream = Some(upstream);
                ctx.disposition = Disposition::Upstream {
                    outcome: UpstreamOutcome::Overloaded,
                    answered: Some(reason),
                };
                reason
            }
        };
        settle_request_body(session).await;
        send_answer(session, ctx, reason).await
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = Ctx;

    /// No downstream modules. Pingora's default adds its response-compression module, disabled,
    /// which still builds a module context and runs its filters on every request.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx::new(self.state.snapshot.load_full())
    }

    /// Pipelined requests (several in one write) are answered in order. Pingora 0.9 leaves
    /// this off by default: the bytes of the next request were dropped with the connection.
    async fn early_request_filter(&self, session: &mut Session, _ctx: &mut Ctx) -> Result<()> {
        session.set_pipelining_enabled(true);
        Ok(())
    }

    /// A request Pingora's parser refused (too many headers, a bad framing, a header over
    /// `max_header_bytes`, too slow): Seawall's own answer, counted and logged.
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
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let facts = Facts {
            req: session.req_header(),
            peer,
            tls: session.digest().is_some_and(|d| d.ssl_digest.is_some()),
        };
        let now = Now {
            mono_ms: MonotonicClock.now_ms(),
            wall: self.state.wall_now(),
        };
        let a = admission::admit(&self.state, &ctx.snap, &facts, now).await;
        ctx.client = a.client;
        ctx.route = a.route;
        ctx.campaign = a.campaign;
        ctx.ratelimit = a.ratelimit;
        match a.verdict {
            Verdict::Proxy(Pass {
                upstream,
                side,
                delay,
                guards,
                canary,
            }) => {
                ctx.upstream = Some(upstream);
                ctx.side = side;
                ctx.guards = guards;
                ctx.canary = canary;
                if !delay.is_zero() {
                    // As nginx does: the request waits, the worker does not.
                    tokio::time::sleep(delay).await;
                }
                Ok(false)
            }
            // Boxed: these futures are 2 KiB and 1.4 KiB (debug build), and inline they would
            // be in every request's `request_filter` future, which is copied whole when it is
            // boxed (issue 16; an own answer or a queued lead pays one allocation instead).
            Verdict::Answer(answer) => {
                Box::pin(self.answer(session, ctx, answer)).await?;
                Ok(true)
            }
            Verdict::Queue(q) => {
                Box::pin(crate::enqueue::serve(session, ctx, q)).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(b) = body {
            ctx.body_bytes += b.len() as u64;
            if ctx.body_bytes > ctx.max_body() {
                return Err(Error::new(BODY_TOO_LARGE));
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(upstream) = &ctx.upstream else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "no upstream chosen",
            ));
        };
        match upstream.peer() {
            Some(p) => {
                ctx.upstream_addr = p.address().as_inet().copied();
                ctx.upstream_started = Some(std::time::Instant::now());
                Ok(Box::new(p))
            }
            None => Err(Error::new(NO_HEALTHY_SERVER)),
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
        let xff = crate::client_ip::forwarded_for(
            ctx.client.peer,
            ctx.client.peer_trusted,
            session
                .req_header()
                .headers
                .get_all(&X_FORWARDED_FOR)
                .iter(),
        );
        up.insert_header(X_FORWARDED_FOR, xff)?;
        // The other forwarding headers are believed from a trusted proxy only, like
        // X-Forwarded-For: a client must not tell the app which host or scheme it reached.
        if !ctx.client.peer_trusted {
            remove_all(up, &UNTRUSTED_FORWARDING);
        }
        let mut real_ip = Vec::with_capacity(16);
        crate::client_ip::write_ip(&mut real_ip, ctx.client.ip);
        up.insert_header(X_REAL_IP, real_ip)?;
        let scheme = if session.digest().is_some_and(|d| d.ssl_digest.is_some()) {
            "https"
        } else {
            "http"
        };
        let keep_proto = ctx.client.peer_trusted && up.headers.contains_key(&X_FORWARDED_PROTO);
        if !keep_proto {
            up.insert_header(X_FORWARDED_PROTO, http::HeaderValue::from_static(scheme))?;
        }
        up.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        // A page whose scripts get a nonce must come uncompressed to be rewritten.
        if let Some(p) = ctx.route_policy()
            && p.wants_nonce()
        {
            up.insert_header(http::header::ACCEPT_ENCODING, "identity")?;
        }
        single_content_length(up)?;
        // Only Seawall says which campaign a request belongs to.
        remove_all(up, &[X_SEAWALL_CAMPAIGN]);
        if let Some(c) = &ctx.campaign {
            up.insert_header(X_SEAWALL_CAMPAIGN, c.name.as_ref())?;
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        _resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        ctx.disposition = Disposition::Upstream {
            outcome: UpstreamOutcome::Response,
            answered: None,
        };
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        resp.insert_header(X_REQUEST_ID, ctx.request_id.clone())?;
        if let Some(cookie) = ctx.canary.as_ref().and_then(|c| c.set_cookie.clone()) {
            resp.append_header(http::header::SET_COOKIE, cookie)?;
        }
        if let Some(rl) = &ctx.ratelimit {
            resp.insert_header(RATELIMIT_POLICY, rl.policy.clone())?;
            resp.insert_header(RATELIMIT, rl.state.clone())?;
        }
        if let Some(policy) = ctx.route_policy().cloned()
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
            let (headers, nonce) = csp::apply::headers(&policy, !encoded, ctx.client.secure);
            csp::apply::put(resp, &policy, headers)?;
            if let Some(n) = nonce {
                // The body changes length as it is rewritten.
                resp.remove_header(&http::header::CONTENT_LENGTH);
                ctx.nonce_rewriter = Some(Box::new(csp::nonce::NonceRewriter::new(n)));
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
        let Some(reason) = Reason::from_error(e) else {
            // The client is gone: nobody to answer.
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        };
        let outcome = match ctx.disposition.outcome() {
            Some(o) => o,
            None => reason.upstream_outcome(e),
        };
        // A diverted request is never retried on the app: its failure is a 503 to retry later.
        let reason = if ctx.side == Side::Ingest && reason != Reason::BadRequest {
            Reason::IngestUnavailable
        } else {
            reason
        };
        ctx.disposition = match ctx.upstream {
            Some(_) => Disposition::Upstream {
                outcome,
                answered: Some(reason),
            },
            None => Disposition::Answered(reason),
        };
        // Pingora closes the connection after a failure once an upstream was chosen (it honours
        // reuse only before that): say so with `Connection: close`, so the client does not send
        // its next request into a closing connection.
        session.set_keepalive(None);
        // A response already under way cannot be replaced; the connection is closed instead.
        if session.response_written().is_none()
            && let Err(err) = send_answer(session, ctx, reason).await
        {
            tracing::debug!(error = %err, "could not send the error answer");
        }
        FailToProxy {
            error_code: reason.status().as_u16(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map(|r| r.status)
            .or_else(|| ctx.disposition.status());
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
        if let (Some(up), Some(outcome)) = (&ctx.upstream, ctx.disposition.outcome()) {
            m.upstream_requests
                .with_label_values(&[&up.name, outcome.label()])
                .inc();
            if let Some(t) = ctx.upstream_started {
                m.upstream_duration
                    .with_label_values(&[&up.name])
                    .observe(t.elapsed().as_secs_f64());
            }
        }
        if let Some(c) = &ctx.canary {
            c.canary
                .record(c.side, status.map_or(0, |s| s.as_u16()), elapsed);
        }
        if self.state.access_log.is_on() {
            access_log::write(&self.state.access_log, session, ctx, status, elapsed, e);
        }
    }
}
