//! The names of the headers Seawall reads and sets, as constants. pingora-http (as patched in
//! `vendor/`) keeps a `HeaderName` as it is; a `&str` name would be parsed and copied into a
//! new allocation on every insert, several times a request. A lookup by `&str` parses the name
//! first, too.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub const X_SEAWALL_CAMPAIGN: HeaderName = HeaderName::from_static("x-seawall-campaign");
/// The IETF draft's `RateLimit-Policy` (see `limits::request`).
pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF draft's `RateLimit` (see `limits::request`).
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
