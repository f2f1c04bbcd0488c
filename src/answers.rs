//! Responses Seawall writes itself: 404 (no route), 502/504 (upstream failed), 503 (at a cap).
//!
//! Pingora sends these without running `response_filter`, so everything a response must carry
//! (the request id today; CSP and rate-limit headers as those land) is added here, in one place.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use crate::admission::Rejection;
use crate::headers::{RATELIMIT, RATELIMIT_POLICY, X_REQUEST_ID};
use crate::metrics::UpstreamOutcome;

/// The error the request body filter returns when a streamed body outgrows the route's
/// `max_body`.
pub const BODY_TOO_LARGE: ErrorType = ErrorType::Custom("request body larger than max_body");

/// The error `upstream_peer` returns when every server of the pool failed its health check.
pub const NO_HEALTHY_SERVER: ErrorType =
    ErrorType::Custom("no healthy server in the upstream pool");

/// Why Seawall answered instead of the upstream. Each reason has its short, fixed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NoRoute,
    RouteBusy,
    UpstreamBusy,
    NoHealthyServer,
    UpstreamUnreachable,
    UpstreamFailed,
    UpstreamTimeout,
    BadRequest,
    /// The request body is larger than the route's `max_body`.
    BodyTooLarge,
    /// The path cannot be normalized safely for route matching.
    BadPath(crate::routing::BadPath),
    Internal,
    /// A rate limit rejected the request; its configured status.
    RateLimited(StatusCode),
    /// A paused launch, or an unregistered tag under `action = "reject"`.
    CampaignRefused,
    /// A diverted request whose ingestion upstream failed: never sent to the app instead.
    IngestUnavailable,
    /// A fleet limit could not be decided (Redis unreachable) and `on_store_error = "closed"`.
    FleetUnavailable,
    /// The queue is at its `max_bytes`: nothing already queued is dropped for room.
    QueueFull,
    /// The queue's store failed to take the request (never answered 202).
    QueueUnavailable,
}

impl Reason {
    pub fn status(self) -> StatusCode {
        match self {
            Reason::NoRoute => StatusCode::NOT_FOUND,
            Reason::RouteBusy
            | Reason::UpstreamBusy
            | Reason::CampaignRefused
            | Reason::IngestUnavailable
            | Reason::FleetUnavailable
            | Reason::QueueFull
            | Reason::QueueUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::NoHealthyServer | Reason::UpstreamUnreachable | Reason::UpstreamFailed => {
                StatusCode::BAD_GATEWAY
            }
            Reason::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Reason::BadRequest | Reason::BadPath(_) => StatusCode::BAD_REQUEST,
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Reason::RateLimited(s) => s,
        }
    }

    /// A short name for logs: `no_route`, `rate_limited`, `upstream_timeout`, ...
    pub fn label(self) -> &'static str {
        match self {
            Reason::NoRoute => "no_route",
            Reason::RouteBusy => "route_busy",
            Reason::UpstreamBusy => "upstream_busy",
            Reason::NoHealthyServer => "no_healthy_server",
            Reason::UpstreamUnreachable => "upstream_unreachable",
            Reason::UpstreamFailed => "upstream_failed",
            Reason::UpstreamTimeout => "upstream_timeout",
            Reason::BadRequest => "bad_request",
            Reason::BadPath(_) => "bad_path",
            Reason::BodyTooLarge => "body_too_large",
            Reason::Internal => "internal",
            Reason::RateLimited(_) => "rate_limited",
            Reason::CampaignRefused => "campaign_refused",
            Reason::IngestUnavailable => "ingest_unavailable",
            Reason::FleetUnavailable => "fleet_unavailable",
            Reason::QueueFull => "queue_full",
            Reason::QueueUnavailable => "queue_unavailable",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Reason::NoRoute => "no route matches this request",
            Reason::RouteBusy => "too many requests in flight for this route, retry shortly",
            Reason::UpstreamBusy => "too many requests in flight to the upstream, retry shortly",
            Reason::NoHealthyServer => "no healthy server in the upstream pool",
            Reason::UpstreamUnreachable => "the upstream server could not be reached",
            Reason::UpstreamFailed => "the upstream server failed to answer",
            Reason::UpstreamTimeout => "the upstream server did not answer in time",
            Reason::BadRequest => "the request could not be read",
            Reason::BadPath(b) => b.text(),
            Reason::BodyTooLarge => "the request body is larger than this endpoint accepts",
            Reason::Internal => "internal error",
            Reason::RateLimited(_) => "rate limit exceeded",
            Reason::CampaignRefused => "this campaign is not being accepted right now, retry later",
            Reason::IngestUnavailable => "sign-ups are queued elsewhere right now, retry shortly",
            Reason::FleetUnavailable => "the rate limit cannot be checked right now, retry shortly",
            Reason::QueueFull => "too many requests are waiting to be processed, retry later",
            Reason::QueueUnavailable => "the request could not be stored, retry shortly",
        }
    }

    /// Why proxying failed, from the error Pingora hands `fail_to_proxy`. `None`: the client is
    /// gone, there is nobody to answer.
    pub fn from_error(e: &Error) -> Option<Reason> {
        use ErrorType::*;
        let upstream_side = e.esource() == &ErrorSource::Upstream;
        Some(match e.etype() {
            t if *t == NO_HEALTHY_SERVER => Reason::NoHealthyServer,
            t if *t == BODY_TOO_LARGE => Reason::BodyTooLarge,
            ConnectTimedout => Reason::UpstreamTimeout,
            ReadTimedout | WriteTimedout if upstream_side => Reason::UpstreamTimeout,
            ConnectRefused | ConnectNoRoute | ConnectError | BindError | SocketError
            | TLSHandshakeFailure | TLSHandshakeTimedout | InvalidCert | ConnectProxyFailure => {
                Reason::UpstreamUnreachable
            }
            _ if upstream_side => Reason::UpstreamFailed,
            ReadError | WriteError | ConnectionClosed
                if e.esource() == &ErrorSource::Downstream =>
            {
                return None;
            }
            _ if e.esource() == &ErrorSource::Downstream => Reason::BadRequest,
            _ => Reason::Internal,
        })
    }

    /// How the attempt at the upstream ended, for a failure read by [`Reason::from_error`].
    pub fn upstream_outcome(self, e: &Error) -> UpstreamOutcome {
        match self {
            Reason::NoHealthyServer => UpstreamOutcome::NoHealthyServer,
            Reason::UpstreamTimeout if matches!(e.etype(), ErrorType::ConnectTimedout) => {
                UpstreamOutcome::ConnectError
            }
            Reason::UpstreamTimeout => UpstreamOutcome::Timeout,
            Reason::UpstreamUnreachable => UpstreamOutcome::ConnectError,
            _ => UpstreamOutcome::Error,
        }
    }

    /// Seconds a client should wait before retrying, for the answers that invite a retry.
    fn retry_after(self) -> Option<&'static str> {
        match self {
            Reason::RouteBusy | Reason::UpstreamBusy | Reason::FleetUnavailable => Some("1"),
            Reason::IngestUnavailable | Reason::QueueUnavailable => Some("5"),
            Reason::QueueFull => Some("30"),
            Reason::CampaignRefused => Some("60"),
            _ => None,
        }
    }
}

/// Header and body of an answer. The body names the status, the reason and the request id, so a
/// user who pastes it into a ticket gives the SRE what they need to find the log line.
///
/// `extra` carries what every response of the route must have (its CSP headers).
pub fn build(
    reason: Reason,
    request_id: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> (ResponseHeader, Bytes) {
    let mut headers: Vec<(HeaderName, HeaderValue)> = extra.to_vec();
    if let Some(s) = reason.retry_after() {
        headers.push((http::header::RETRY_AFTER, HeaderValue::from_static(s)));
    }
    render(reason.status(), reason.text(), request_id, &headers)
}

/// The answer to a request a rate limit rejected: its status, `Retry-After` (whole seconds,
/// rounded up) and the `RateLimit` headers of the limit that rejected it.
pub fn rate_limited(
    r: &Rejection,
    request_id: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> (ResponseHeader, Bytes) {
    let text = format!(
        "rate limit \"{}\" exceeded, retry in {} s",
        r.limit, r.retry_after_s
    );
    let mut all: Vec<(HeaderName, HeaderValue)> = extra.to_vec();
    all.push((
        http::header::RETRY_AFTER,
        HeaderValue::from(r.retry_after_s),
    ));
    all.push((RATELIMIT_POLICY, r.headers.policy.clone()));
    all.push((RATELIMIT, r.headers.state.clone()));
    render(r.status, &text, request_id, &all)
}

/// The answer to a request a queue has durably stored: the queue's `accepted` (a status with
/// its body, or a 303 to a thank-you page, what an HTML form needs), with `X-Seawall-Receipt`.
pub fn accepted(
    a: &crate::queue::AcceptedAnswer,
    receipt: &str,
    request_id: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> (ResponseHeader, Bytes) {
    use crate::queue::AcceptedAnswer;
    let (status, body, content_type, location) = match a {
        AcceptedAnswer::Status {
            status,
            body,
            content_type,
        } => (*status, body.clone(), content_type.clone(), None),
        AcceptedAnswer::Redirect { location } => (
            StatusCode::SEE_OTHER,
            Bytes::new(),
            HeaderValue::from_static("text/plain; charset=utf-8"),
            Some(location.clone()),
        ),
    };
    let mut h = ResponseHeader::build(status, Some(8 + extra.len()))
        .expect("a valid status builds a header");
    // Static or already validated names and values: inserting cannot fail.
    let _ = h.insert_header(http::header::CONTENT_TYPE, content_type);
    let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = h.insert_header(http::header::CACHE_CONTROL, "no-store");
    let _ = h.insert_header(X_REQUEST_ID, request_id);
    if let Ok(r) = HeaderValue::from_str(receipt) {
        let _ = h.insert_header(crate::headers::X_SEAWALL_RECEIPT, r);
    }
    if let Some(l) = location {
        let _ = h.insert_header(http::header::LOCATION, l);
    }
    for (k, v) in extra {
        let _ = h.insert_header(k.clone(), v.clone());
    }
    (h, body)
}

/// Send an answer Seawall wrote: the header, then the body if there is one.
pub async fn write(
    session: &mut Session,
    header: ResponseHeader,
    body: Option<Bytes>,
) -> pingora::Result<()> {
    session
        .write_response_header(Box::new(header), body.is_none())
        .await?;
    if let Some(b) = body {
        session.write_response_body(Some(b), true).await?;
    }
    Ok(())
}

/// A short answer with any status and text (the CSP report endpoint's).
pub fn plain(
    status: StatusCode,
    text: &str,
    request_id: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> (ResponseHeader, Bytes) {
    render(status, text, request_id, extra)
}

fn render(
    status: StatusCode,
    text: &str,
    request_id: &str,
    extra: &[(HeaderName, HeaderValue)],
) -> (ResponseHeader, Bytes) {
    let body = format!(
        "{} {}: {text}\nrequest id: {request_id}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut h = ResponseHeader::build(status, Some(6 + extra.len()))
        .expect("a valid status builds a header");
    // These names and values are static or already validated: inserting cannot fail.
    let _ = h.insert_header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8");
    let _ = h.insert_header(http::header::CONTENT_LENGTH, body.len());
    let _ = h.insert_header(http::header::CACHE_CONTROL, "no-store");
    let _ = h.insert_header(X_REQUEST_ID, request_id);
    for (k, v) in extra {
        let _ = h.insert_header(k.clone(), v.clone());
    }
    (h, Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_status_reason_and_request_id() {
        let (h, body) = build(Reason::UpstreamTimeout, "abc123", &[]);
        assert_eq!(h.status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(h.headers["x-request-id"], "abc123");
        assert_eq!(h.headers["content-length"], body.len().to_string().as_str());
        assert_eq!(
            body,
            "504 Gateway Timeout: the upstream server did not answer in time\nrequest id: abc123\n"
        );
        let (h, _) = build(Reason::RouteBusy, "x", &[]);
        assert_eq!(h.headers["retry-after"], "1");
    }
}
