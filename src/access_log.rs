//! The access log: one JSON object per request, one line, on stdout.
//!
//! Diagnostics (`tracing`) go to stderr, so the two streams can be shipped apart. Switch it off
//! with `[server] access_log = false`.

use std::io::Write;
use std::time::Duration;

use http::StatusCode;
use pingora::prelude::*;
use pingora::proxy::Session;
use serde::Serialize;

use crate::ctx::Ctx;

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    client_ip: String,
    method: &'a str,
    host: &'a str,
    path: &'a str,
    route: &'a str,
    status: u16,
    upstream: Option<&'a str>,
    upstream_outcome: Option<&'static str>,
    /// Set when Seawall answered itself (no route, cap reached, upstream failure).
    answered_by_seawall: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    campaign_action: Option<&'a str>,
    duration_ms: f64,
    bytes_sent: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn write(
    session: &Session,
    ctx: &Ctx,
    status: Option<StatusCode>,
    elapsed: Duration,
    e: Option<&Error>,
) {
    let req = session.req_header();
    let host = crate::routing::request_host(req);
    let line = Line {
        ts: jiff::Timestamp::now().to_string(),
        request_id: ctx.request_id_text(),
        client_ip: ctx.client.ip.to_string(),
        method: req.method.as_str(),
        host,
        path: req.uri.path(),
        route: ctx.route_name(),
        status: status.map_or(0, |s| s.as_u16()),
        upstream: ctx.upstream.as_ref().map(|u| &*u.name),
        upstream_outcome: ctx.disposition.outcome().map(|o| o.label()),
        answered_by_seawall: ctx.disposition.reason().is_some(),
        campaign: ctx.campaign.as_ref().map(|c| c.name.as_ref()),
        campaign_action: ctx.campaign.as_ref().map(|c| c.action.label()),
        duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        bytes_sent: session.body_bytes_sent(),
        error: e.map(|e| e.to_string()),
    };
    if let Ok(mut buf) = serde_json::to_vec(&line) {
        buf.push(b'\n');
        // A full or closed stdout must not fail the request; the line is lost instead.
        let _ = std::io::stdout().lock().write_all(&buf);
    }
}
