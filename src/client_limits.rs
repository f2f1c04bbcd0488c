//! What a client connection may take: how long to send a request header, how big it may be,
//! how long an idle keep-alive connection is kept (`[server] header_timeout`,
//! `max_header_bytes`, `keepalive_timeout`).
//!
//! Pingora 0.9 alone times each read of a request header separately (60 s for the first
//! request, none at all after it: `respect_keepalive` turns the idle timeout into "forever" on
//! every keep-alive request), so a client dripping a byte a minute holds a connection without
//! end, and an idle keep-alive connection is never closed. Its header bound is a constant
//! 1 MiB answered with a bare 400. The vendored pingora-core (`vendor/pingora-core`, patches
//! marked "Seawall:") takes these limits as `HttpServerOptions`, built here.
//!
//! The rest of the hardening of the HTTP/1 request path lives in [`crate::unreadable`]
//! (answering what Pingora could not read) and in `Proxy`'s phases (pipelining, the
//! `Content-Length` list).

use std::time::Duration;

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::{H2Options, default_h2_options};

/// nginx's `client_header_timeout` default.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// nginx's `keepalive_timeout` default.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
/// nginx's `large_client_header_buffers` default allows 4 x 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 32 * 1024;

/// Pingora's own hard bound on a request header (its read buffer never grows past it).
pub const MAX_HEADER_BYTES_LIMIT: usize = 1024 * 1024 - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// A request header must be complete within this of its first byte (else 408 and the
    /// connection closes), and a new connection must send its first byte within it.
    pub header_timeout: Duration,
    /// An idle connection (between requests) is closed after this. Whole seconds: Pingora
    /// counts its keep-alive timeout in seconds.
    pub keepalive_timeout: Duration,
    /// A larger request header gets 431 and the connection closes.
    pub max_header_bytes: usize,
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl ClientLimits {
    /// The options of the proxy's HTTP server. Also: a request line httparse rejects (a raw
    /// space in the target) is a 400, as nginx answers, instead of Pingora percent-encoding it
    /// and passing on a request the client never sent.
    pub fn server_options(&self) -> HttpServerOptions {
        let mut o = HttpServerOptions::default();
        o.keepalive_timeout_seconds = Some(self.keepalive_timeout.as_secs().max(1));
        o.header_timeout = Some(self.header_timeout);
        o.max_header_size = Some(self.max_header_bytes);
        o.reject_invalid_request_line = true;
        // HTTP/2 has no per-request idle wait of its own: an idle connection is one with no
        // stream, closed after the same time.
        o.h2_idle_timeout = Some(self.keepalive_timeout);
        o
    }

    /// HTTP/2 options: Pingora's bounded defaults, with the header bound (its default is
    /// 64 KiB of decoded header list).
    pub fn h2_options(&self) -> H2Options {
        let mut o = default_h2_options();
        o.max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        o
    }
}

/// `"32KiB"`, `"1MiB"`, `"4096"` (bytes), also `KB`/`MB` (taken as powers of 1024, like nginx's
/// `k` and `m`).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size {s:?} (write e.g. \"32KiB\", \"1MiB\", \"4096\")");
    let n: usize = num.parse().map_err(|_| bad())?;
    let mult: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" | "k" => 1024,
        "MiB" | "MB" | "M" | "m" => 1024 * 1024,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_the_units_people_write() {
        assert_eq!(parse_size("32KiB"), Ok(32 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size(" 4096 "), Ok(4096));
        assert_eq!(parse_size("8k"), Ok(8192));
        assert!(parse_size("32 kilobytes").is_err());
        assert!(parse_size("KiB").is_err());
        assert!(parse_size("99999999999999999999999MiB").is_err());
    }

    #[test]
    fn options_carry_every_limit() {
        let l = ClientLimits {
            header_timeout: Duration::from_millis(1500),
            keepalive_timeout: Duration::from_secs(3),
            max_header_bytes: 4096,
        };
        let o = l.server_options();
        assert_eq!(o.header_timeout, Some(Duration::from_millis(1500)));
        assert_eq!(o.keepalive_timeout_seconds, Some(3));
        assert_eq!(o.max_header_size, Some(4096));
        assert!(o.reject_invalid_request_line);
    }
}
