//! Replaying one queued lead to `deliver_to`, and judging the answer.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::pace::parse_retry_after;
use super::record::Lead;
use crate::upstream::Upstream;

/// What came back from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Status {
        status: u16,
        retry_after: Option<String>,
    },
    /// No answer: refused, timed out, reset, no healthy server.
    Failed { error: String },
}

/// Sends one request to an upstream. One real implementation ([`PingoraSender`]); the trait is
/// the seam that lets the worker be driven without a network where that is the point.
#[async_trait]
pub trait Sender: Send + Sync {
    async fn send(&self, upstream: &Upstream, req: RequestHeader, body: Bytes) -> SendOutcome;
}

/// What the worker does with an entry after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    Dead {
        why: String,
    },
}

/// 2xx delivered; 408, 429, 5xx and every failure to get an answer retried; any other status
/// (4xx, and 1xx/3xx, which a replayed POST cannot follow) is permanent.
pub fn judge(outcome: &SendOutcome, now_ms: u64) -> Verdict {
    match outcome {
        SendOutcome::Status { status, .. } if (200..300).contains(status) => Verdict::Delivered,
        SendOutcome::Status {
            status,
            retry_after,
        } if *status == 408 || *status == 429 || *status >= 500 => Verdict::Retry {
            why: format!("status {status}"),
            retry_after: retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now_ms)),
        },
        SendOutcome::Status { status, .. } => Verdict::Dead {
            why: format!("status {status}"),
        },
        SendOutcome::Failed { error } => Verdict::Retry {
            why: error.clone(),
            retry_after: None,
        },
    }
}

/// Headers a proxy must not forward (RFC 9110 7.6.1), plus the ones delivery sets itself: a
/// client must not be able to forge its receipt, campaign or forwarded address.
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
    "content-length",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-real-ip",
    "idempotency-key",
    "x-seawall-receipt",
    "x-seawall-queued-at",
    "x-seawall-attempt",
    "x-seawall-campaign",
];

/// The request to replay: the lead's method, path, query, headers (minus [`DROPPED`] and any
/// the client's `Connection` header named) and the delivery headers of the contract.
pub fn build_request(lead: &Lead, attempt: u32) -> Result<RequestHeader, String> {
    let uri = match &lead.query {
        Some(q) => format!("{}?{q}", lead.path),
        None => lead.path.clone(),
    };
    let mut req = RequestHeader::build(
        lead.method.as_str(),
        uri.as_bytes(),
        Some(lead.headers.len() + 8),
    )
    .map_err(|e| format!("cannot rebuild request: {e}"))?;
    let named_by_connection: Vec<String> = lead
        .headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .flat_map(|(_, v)| {
            String::from_utf8_lossy(v)
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for (name, value) in &lead.headers {
        if DROPPED.contains(&name.as_str()) || named_by_connection.contains(name) {
            continue;
        }
        // A header that cannot be written back is skipped rather than failing the lead.
        if let Ok(v) = HeaderValue::from_bytes(value) {
            let _ = req.append_header(name.clone(), v);
        }
    }
    let f = &lead.forwarding;
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            let _ = req.insert_header(name, v);
        }
    };
    set("content-length", &lead.body.len().to_string());
    set("x-seawall-receipt", &lead.receipt);
    set(
        "idempotency-key",
        lead.idempotency_key.as_deref().unwrap_or(&lead.receipt),
    );
    set(
        "x-seawall-queued-at",
        &super::rfc3339_ms(lead.accepted_at_ms),
    );
    set("x-seawall-attempt", &attempt.to_string());
    if let Some(c) = &lead.campaign {
        set("x-seawall-campaign", c);
    }
    if !f.x_forwarded_for.is_empty() {
        set("x-forwarded-for", &f.x_forwarded_for);
    }
    if !f.client_ip.is_empty() {
        set("x-real-ip", &f.client_ip);
    }
    if !f.x_forwarded_proto.is_empty() {
        set("x-forwarded-proto", &f.x_forwarded_proto);
    }
    Ok(req)
}

/// Most response body read to keep a connection for reuse; past it the connection is dropped.
const DRAIN_LIMIT: usize = 1 << 20;

/// Sends with Pingora's own connector, to the upstream's next healthy server (round robin),
/// with its connect/read/write timeouts, TLS and HTTP/2 settings: the same client the proxy
/// uses, so a queue delivers exactly as a proxied request would be sent.
pub struct PingoraSender {
    connector: Connector,
}

impl PingoraSender {
    pub fn new() -> PingoraSender {
        PingoraSender {
            connector: Connector::new(None),
        }
    }
}

impl Default for PingoraSender {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Sender for PingoraSender {
    async fn send(&self, upstream: &Upstream, req: RequestHeader, body: Bytes) -> SendOutcome {
        let failed = |what: &str, e: &dyn std::fmt::Display| SendOutcome::Failed {
            error: format!("{what}: {e}"),
        };
        let Some(peer) = upstream.peer() else {
            return SendOutcome::Failed {
                error: "no healthy server".into(),
            };
        };
        let mut s = match self.connector.get_http_session(&peer).await {
            Ok((s, _)) => s,
            Err(e) => return failed("connect", &e.etype().as_str()),
        };
        s.set_read_timeout(Some(upstream.read_timeout));
        s.set_write_timeout(Some(upstream.write_timeout));
        if let Err(e) = s.write_request_header(Box::new(req)).await {
            return failed("send", &e.etype().as_str());
        }
        if !body.is_empty()
            && let Err(e) = s.write_request_body(body, true).await
        {
            return failed("send", &e.etype().as_str());
        }
        if let Err(e) = s.finish_request_body().await {
            return failed("send", &e.etype().as_str());
        }
        if let Err(e) = s.read_response_header().await {
            return failed("response", &e.etype().as_str());
        }
        let Some(resp) = s.response_header() else {
            return SendOutcome::Failed {
                error: "response: no header".into(),
            };
        };
        let status = resp.status.as_u16();
        let retry_after = resp
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut read = 0usize;
        let mut reusable = false;
        while read <= DRAIN_LIMIT {
            match s.read_response_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => {
                    reusable = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if reusable {
            self.connector
                .release_http_session(s, &peer, peer.options.idle_timeout)
                .await;
        }
        SendOutcome::Status {
            status,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::record::Forwarding;

    fn lead() -> Lead {
        Lead {
            method: "POST".into(),
            path: "/signup".into(),
            query: Some("ref=X".into()),
            headers: vec![
                ("host".into(), Bytes::from_static(b"shop.example.com")),
                (
                    "connection".into(),
                    Bytes::from_static(b"keep-alive, x-private"),
                ),
                ("x-private".into(), Bytes::from_static(b"1")),
                ("x-forwarded-for".into(), Bytes::from_static(b"6.6.6.6")),
                ("x-seawall-receipt".into(), Bytes::from_static(b"forged")),
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                ),
                ("transfer-encoding".into(), Bytes::from_static(b"chunked")),
            ],
            body: Bytes::from_static(b"{}"),
            forwarding: Forwarding {
                client_ip: "203.0.113.9".into(),
                x_forwarded_for: "203.0.113.9".into(),
                x_forwarded_proto: "https".into(),
            },
            campaign: None,
            accepted_at_ms: 1_780_000_000_000,
            idempotency_key: None,
            receipt: "0190abc".into(),
        }
    }

    #[test]
    fn the_replayed_request_drops_hop_by_hop_and_forged_headers() {
        let r = build_request(&lead(), 3).unwrap();
        let h = |n: &str| r.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(r.uri.to_string(), "/signup?ref=X");
        assert_eq!(h("host").as_deref(), Some("shop.example.com"));
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("connection"), None);
        assert_eq!(h("x-private"), None, "named by Connection: hop-by-hop");
        assert_eq!(h("transfer-encoding"), None);
        assert_eq!(h("content-length").as_deref(), Some("2"));
        assert_eq!(h("x-forwarded-for").as_deref(), Some("203.0.113.9"));
        assert_eq!(h("x-real-ip").as_deref(), Some("203.0.113.9"));
        assert_eq!(h("x-seawall-receipt").as_deref(), Some("0190abc"));
        assert_eq!(h("idempotency-key").as_deref(), Some("0190abc"));
        assert_eq!(h("x-seawall-attempt").as_deref(), Some("3"));
        assert_eq!(
            h("x-seawall-queued-at").as_deref(),
            Some("2026-05-28T20:26:40.000Z")
        );
        assert_eq!(h("x-seawall-campaign"), None);
    }

    #[test]
    fn answers_are_judged_as_the_contract_says() {
        let st = |s: u16| SendOutcome::Status {
            status: s,
            retry_after: None,
        };
        assert_eq!(judge(&st(200), 0), Verdict::Delivered);
        assert_eq!(judge(&st(204), 0), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503] {
            assert!(matches!(judge(&st(s), 0), Verdict::Retry { .. }), "{s}");
        }
        for s in [400, 401, 404, 409, 422, 301] {
            assert_eq!(
                judge(&st(s), 0),
                Verdict::Dead {
                    why: format!("status {s}")
                }
            );
        }
        let ra = SendOutcome::Status {
            status: 503,
            retry_after: Some("7".into()),
        };
        assert_eq!(
            judge(&ra, 0),
            Verdict::Retry {
                why: "status 503".into(),
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            judge(
                &SendOutcome::Failed {
                    error: "connect: ConnectRefused".into()
                },
                0
            ),
            Verdict::Retry { .. }
        ));
    }
}
