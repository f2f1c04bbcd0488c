//! Requests whose header Pingora could not read: malformed (too many headers, a URL the `http`
//! crate refuses, conflicting `Content-Length`s, an obfuscated `Transfer-Encoding`, bare CR,
//! obs-fold, a raw space in the target), too large (`max_header_bytes`) or too slow
//! (`header_timeout`).
//!
//! Pingora answers these before any request exists, so none of the proxy's phases run: alone
//! it sent a bare `400` with `Server: Pingora` and nothing was counted or logged. The vendored
//! pingora-proxy calls `ProxyHttp::request_header_error` for them (patch marked "Seawall:"),
//! and [`answer`] gives them what every other answer of Seawall's has: its body with the status,
//! reason and a request id, a count in `seawall_requests_total{route="-"}` and an access log
//! line. The connection is closed after the answer, as nginx does.

use http::StatusCode;
use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorType};
use serde::Serialize;

use crate::answers;
use crate::logging::{FIELD_MAX, cut};
use crate::metrics::NO_ROUTE;
use crate::state::State;

/// The status and reason for a header read that failed with `e`; `None` when there is nobody
/// to answer (the client closed or reset the connection mid-header).
pub fn status_for(e: &Error) -> Option<(StatusCode, &'static str)> {
    match e.etype() {
        ErrorType::InvalidHTTPHeader => Some((
            StatusCode::BAD_REQUEST,
            "the request header could not be parsed",
        )),
        ErrorType::HTTPStatus(431) => Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request header is too large",
        )),
        ErrorType::HTTPStatus(code) => StatusCode::from_u16(*code)
            .ok()
            .map(|s| (s, "the request header could not be read")),
        ErrorType::ReadTimedout => Some((
            StatusCode::REQUEST_TIMEOUT,
            "the request header did not arrive in time",
        )),
        _ => None,
    }
}

/// Answer, count and log a request whose header could not be read.
pub async fn answer(state: &State, session: &mut ServerSession, e: &Error) {
    let Some((status, text)) = status_for(e) else {
        tracing::debug!(error = %e, "client went away while sending a request header");
        return;
    };
    let mut id = [0u8; 32];
    hex::encode_to_slice(rand::random::<u128>().to_be_bytes(), &mut id)
        .expect("16 bytes are 32 hex digits");
    let request_id = std::str::from_utf8(&id).unwrap_or("-");
    let (header, body) = answers::plain(status, text, request_id, &[]);
    let bytes_sent = body.len();
    if let Err(err) = session.write_error_response(header, body).await {
        tracing::debug!(error = %err, "could not answer an unreadable request");
    }
    state
        .metrics
        .requests
        .with_label_values(&[NO_ROUTE, status.as_str()])
        .inc();
    if state.access_log.is_on() {
        let client_ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| crate::client_ip::canonical(a.ip()).to_string());
        // The error text of a parse failure carries up to 2 KiB of what the client sent.
        let summary = session.request_summary();
        let error = e.to_string();
        state.access_log.write_line(&Line {
            ts: {
                let mut ts = Vec::with_capacity(27);
                crate::json_line::rfc3339_micros(&mut ts, std::time::SystemTime::now());
                String::from_utf8(ts).unwrap_or_default()
            },
            request_id,
            client_ip: client_ip.as_deref().unwrap_or("-"),
            route: NO_ROUTE,
            status: status.as_u16(),
            answered_by_seawall: true,
            reason: "unreadable_request",
            bytes_sent,
            request: &cut(&summary, FIELD_MAX),
            error: &cut(&error, FIELD_MAX),
        });
    }
}

/// The access log line of an unreadable request: the fields of an ordinary line that exist
/// without a request, plus what could be read of it.
#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    request_id: &'a str,
    client_ip: &'a str,
    route: &'a str,
    status: u16,
    answered_by_seawall: bool,
    reason: &'static str,
    bytes_sent: usize,
    /// `METHOD PATH, Host: HOST` as far as it was parsed (`-` for what was not).
    request: &'a str,
    error: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_has_its_status() {
        let st = |t| status_for(&Error::new(t)).map(|(s, _)| s.as_u16());
        assert_eq!(st(ErrorType::InvalidHTTPHeader), Some(400));
        assert_eq!(st(ErrorType::HTTPStatus(431)), Some(431));
        assert_eq!(st(ErrorType::ReadTimedout), Some(408));
        assert_eq!(st(ErrorType::ConnectionClosed), None);
        assert_eq!(st(ErrorType::ReadError), None);
    }
}
