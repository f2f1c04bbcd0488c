//! A limit's key as the console shows it: what the limit saw, readable, bounded.
//!
//! The limiter keeps only 64-bit hashes; the console needs text an SRE can act on (block this
//! address, call this API-key owner). It is written only for a key that enters the top-keys
//! summary, so the cost stays on the reject path.

use std::fmt::Write;
use std::net::{IpAddr, Ipv6Addr};

use pingora::http::RequestHeader;

use crate::limits::KeySource;
use crate::limits::keys;

/// Header, cookie and query values are cut to this many characters: enough to recognise a
/// token or a user agent, not enough to make the page (or the JSON) a copy of every request.
pub const MAX_CHARS: usize = 64;

/// An IPv6 client as its /64, as the limiter keys it (one host owns a whole /64).
pub fn ipv6_net(v6: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))
}

/// Write `source`'s key of `req` into `out` (which is empty).
pub fn write(source: &KeySource, req: &RequestHeader, client: IpAddr, out: &mut String) {
    match source {
        KeySource::ClientIp => match client {
            IpAddr::V4(v4) => {
                let _ = write!(out, "{v4}");
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{}/64", ipv6_net(v6));
            }
        },
        KeySource::Global => out.push_str("(every request)"),
        _ => match keys::value(source, req) {
            Some(raw) => value_text(raw, out),
            None => out.push_str("(none)"),
        },
    }
}

/// Bytes as sent, made displayable: invalid UTF-8 and control characters become U+FFFD (a
/// value is anyone's input: no terminal escapes, no line breaks in a table cell), cut at
/// [`MAX_CHARS`] characters with an ellipsis.
pub fn value_text(raw: &[u8], out: &mut String) {
    let text = String::from_utf8_lossy(raw);
    let mut chars = text.chars();
    for c in chars.by_ref().take(MAX_CHARS) {
        out.push(if c.is_control() { '\u{FFFD}' } else { c });
    }
    if chars.next().is_some() {
        out.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(source: &str, req: &RequestHeader, client: &str) -> String {
        let mut out = String::new();
        let source = crate::config::values::limit_key(source).unwrap();
        write(&source, req, client.parse().unwrap(), &mut out);
        out
    }

    #[test]
    fn clients_show_as_addresses_and_ipv6_as_its_64() {
        let req = RequestHeader::build("GET", b"/", None).unwrap();
        assert_eq!(text("client_ip", &req, "192.0.2.7"), "192.0.2.7");
        assert_eq!(
            text("client_ip", &req, "2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            "2001:db8:1:2::/64"
        );
        assert_eq!(text("global", &req, "192.0.2.7"), "(every request)");
    }

    #[test]
    fn values_are_cut_at_64_characters_and_made_safe() {
        let long = "k".repeat(100);
        let mut req = RequestHeader::build("GET", b"/?tok=%41b&x=1", None).unwrap();
        req.append_header("x-api-key", &long).unwrap();
        req.append_header("cookie", "sid=é\tz").unwrap();
        let shown = text("header:x-api-key", &req, "192.0.2.7");
        assert_eq!(shown, format!("{}…", "k".repeat(64)));
        // Query values as sent, not decoded, as the limit keys them.
        assert_eq!(text("query:tok", &req, "192.0.2.7"), "%41b");
        assert_eq!(text("cookie:sid", &req, "192.0.2.7"), "é\u{FFFD}z");
        let mut out = String::new();
        value_text(&[0x66, 0xff, 0x0a, 0x67], &mut out);
        assert_eq!(out, "f\u{FFFD}\u{FFFD}g");
        let exact = "é".repeat(64);
        let mut out = String::new();
        value_text(exact.as_bytes(), &mut out);
        assert_eq!(out, exact, "64 characters are not cut");
    }
}
