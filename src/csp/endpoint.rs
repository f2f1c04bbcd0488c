//! The report collector at `report_path`, served by Seawall on every public listener before any
//! route is looked at.
//!
//! `POST` with `application/csp-report` or `application/reports+json`: 204. `OPTIONS` (CORS
//! preflight, the Reporting API sends one for cross-origin endpoints): 204 with the CORS
//! headers. Over [`super::report::MAX_BODY`]: 413; not JSON of either shape: 400; another
//! content type: 415; another method: 405; over the per-client rate: 429.

use std::net::IpAddr;

use http::{HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::report::{self, MAX_BODY};
use crate::answers;
use crate::limits::limiter::{Clock, Lookup, MonotonicClock};
use crate::snapshot::Snapshot;
use crate::state::State;

const CORS: [(&str, &str); 4] = [
    ("access-control-allow-origin", "*"),
    ("access-control-allow-methods", "POST, OPTIONS"),
    ("access-control-allow-headers", "Content-Type"),
    ("access-control-max-age", "86400"),
];

fn cors() -> Vec<(HeaderName, HeaderValue)> {
    CORS.iter()
        .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
        .collect()
}

async fn respond(
    session: &mut Session,
    status: StatusCode,
    text: &str,
    id: &str,
) -> Result<StatusCode> {
    if status == StatusCode::NO_CONTENT {
        let mut h = ResponseHeader::build(status, Some(6))?;
        for (k, v) in cors() {
            h.insert_header(k, v)?;
        }
        h.insert_header(crate::headers::X_REQUEST_ID, id)?;
        answers::write(session, h, None).await?;
    } else {
        let (h, body) = answers::plain(status, text, id, &cors());
        answers::write(session, h, Some(body)).await?;
    }
    Ok(status)
}

/// Read the body, up to `MAX_BODY`; `None` if it is larger.
async fn read_bounded(session: &mut Session) -> Result<Option<Vec<u8>>> {
    let declared = crate::headers::content_length(&session.req_header().headers);
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > MAX_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Serve one request to the report endpoint; returns the status sent.
pub async fn serve(
    session: &mut Session,
    state: &State,
    snap: &Snapshot,
    client: IpAddr,
    request_id: &str,
) -> Result<StatusCode> {
    let method = session.req_header().method.clone();
    if method == http::Method::OPTIONS {
        return respond(session, StatusCode::NO_CONTENT, "", request_id).await;
    }
    if method != http::Method::POST {
        return respond(
            session,
            StatusCode::METHOD_NOT_ALLOWED,
            "reports are POSTed",
            request_id,
        )
        .await;
    }
    let now = MonotonicClock.now_ms();
    if let Lookup::Reject { .. } =
        state
            .report_limiter
            .lookup(crate::limits::keys::client_ip(client), now, true)
    {
        return respond(
            session,
            StatusCode::TOO_MANY_REQUESTS,
            "too many reports",
            request_id,
        )
        .await;
    }
    let format = session
        .req_header()
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(report::Format::of);
    let Some(format) = format else {
        return respond(
            session,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send application/csp-report or application/reports+json",
            request_id,
        )
        .await;
    };
    let Some(body) = read_bounded(session).await? else {
        return respond(
            session,
            StatusCode::PAYLOAD_TOO_LARGE,
            "report too large",
            request_id,
        )
        .await;
    };
    let violations = match report::parse(format, &body) {
        Ok(v) => v,
        Err(why) => return respond(session, StatusCode::BAD_REQUEST, why, request_id).await,
    };
    let query_policy = session
        .req_header()
        .uri
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("policy=")));
    let policy = match query_policy {
        Some(p) if snap.csp.policies.contains_key(p) => p,
        _ => "unknown",
    };
    let client_key = crate::limits::keys::client_ip(client);
    for v in &violations {
        let host = state
            .report_hosts
            .label(report::blocked_host(&v.blocked), client_key, now);
        state
            .metrics
            .csp_violations
            .with_label_values(&[policy, report::directive_label(&v.directive), &host])
            .inc();
        if state.report_log.allow(now, 1000).is_some() {
            use crate::logging::{FIELD_MAX, cut};
            tracing::info!(
                policy,
                directive = %cut(&v.directive, FIELD_MAX),
                blocked = %cut(&v.blocked, FIELD_MAX),
                document = %cut(&v.document, FIELD_MAX),
                disposition = %cut(&v.disposition, FIELD_MAX),
                client = %client,
                "CSP violation reported (a sample: at most one line per second)"
            );
        }
    }
    respond(session, StatusCode::NO_CONTENT, "", request_id).await
}
