//! The names of the headers Seawall reads and sets, as constants, and the small parsers of
//! header values more than one module needs.
//!
//! pingora-http (as patched in `vendor/`) keeps a `HeaderName` as it is; a `&str` name would be
//! parsed and copied into a new allocation on every insert, several times a request. A lookup
//! by `&str` parses the name first, too.

use http::{HeaderMap, HeaderName};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_SEAWALL_CAMPAIGN: HeaderName = HeaderName::from_static("x-seawall-campaign");
/// The id a queue gives a stored request, on the client's answer and on its delivery.
pub const X_SEAWALL_RECEIPT: HeaderName = HeaderName::from_static("x-seawall-receipt");
/// Forwarding headers only a trusted proxy may send; dropped from anyone else's request.
/// X-Forwarded-For and X-Forwarded-Proto are rewritten instead, X-Real-IP is always ours.
pub const UNTRUSTED_FORWARDING: [HeaderName; 4] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
];
/// The IETF draft's `RateLimit-Policy` (see `limits::request`).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF draft's `RateLimit` (see `limits::request`).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// The media type of a `Content-Type` value without its parameters: `Text/HTML; charset=utf-8`
/// gives `Text/HTML`. Media types compare case-insensitively: compare it with
/// `eq_ignore_ascii_case`.
pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// The media type of a header map's `Content-Type` ([`media_type`]), if it has a readable one.
pub fn media_type_of(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(media_type)
}

/// The `Content-Length` of a message, when it is one valid number.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_and_lengths() {
        assert_eq!(media_type("Text/HTML; charset=utf-8"), "Text/HTML");
        assert_eq!(
            media_type(" application/csp-report "),
            "application/csp-report"
        );
        assert_eq!(media_type(""), "");
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.insert(http::header::CONTENT_LENGTH, "42".parse().unwrap());
        assert_eq!(content_length(&h), Some(42));
        h.insert(http::header::CONTENT_LENGTH, "4x".parse().unwrap());
        assert_eq!(content_length(&h), None);
        h.insert(http::header::CONTENT_TYPE, "text/html;q=1".parse().unwrap());
        assert_eq!(media_type_of(&h), Some("text/html"));
    }
}
