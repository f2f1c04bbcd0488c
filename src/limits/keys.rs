//! The key a request is limited under, hashed to 64 bits.
//!
//! Names of headers, cookies and query parameters match case-insensitively and values are taken
//! as sent (no percent-decoding), as nginx's `$http_`, `$cookie_` and `$arg_` variables do. An
//! absent or empty value gives no key: that limit does not apply to the request (nginx skips an
//! empty key). IPv6 clients are keyed by their /64: one host owns a whole /64.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

use pingora::http::RequestHeader;

use super::KeySource;

/// One seed per process: keys hash the same across reloads, differently across processes, so
/// nobody can pick key values that pile into one shard.
fn seed() -> &'static foldhash::quality::RandomState {
    static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::quality::RandomState::default)
}

fn hash(tag: u8, bytes: &[u8]) -> u64 {
    let mut h = seed().build_hasher();
    h.write_u8(tag);
    h.write(bytes);
    h.finish()
}

/// The `global` key: one bucket for every request.
pub const GLOBAL: u64 = 0;

pub fn client_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => hash(4, &v4.octets()),
        IpAddr::V6(v6) => hash(6, &v6.octets()[..8]),
    }
}

/// Find `name`'s value in a `;`-separated cookie header or a `&`-separated query.
fn find_pair<'a>(list: &'a [u8], sep: u8, name: &str) -> Option<&'a [u8]> {
    list.split(|b| *b == sep).find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        let (k, v) = (&pair[..eq], &pair[eq + 1..]);
        (k.trim_ascii().eq_ignore_ascii_case(name.as_bytes())).then_some(v.trim_ascii())
    })
}

/// The raw value a key source reads from a request, if present and not empty.
pub fn value<'a>(source: &KeySource, req: &'a RequestHeader) -> Option<&'a [u8]> {
    let v = match source {
        KeySource::Header(name) => req.headers.get(name).map(|v| v.as_bytes()),
        KeySource::Cookie(name) => req
            .headers
            .get_all(http::header::COOKIE)
            .iter()
            .find_map(|h| find_pair(h.as_bytes(), b';', name)),
        KeySource::Query(name) => req
            .uri
            .query()
            .and_then(|q| find_pair(q.as_bytes(), b'&', name)),
        KeySource::ClientIp | KeySource::Global => None,
    };
    v.filter(|v| !v.is_empty())
}

/// The hashed key of a request for one limit, or `None` when the limit does not apply.
pub fn key(source: &KeySource, req: &RequestHeader, client: IpAddr) -> Option<u64> {
    match source {
        KeySource::ClientIp => Some(client_ip(client)),
        KeySource::Global => Some(GLOBAL),
        _ => value(source, req).map(|v| hash(0, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn reads_headers_cookies_and_query_parameters() {
        let r = req(
            "/p?a=1&Ref=SUMMER&empty=&flag",
            &[
                ("X-Api-Key", "k1"),
                ("Cookie", "x=1; sid=abc"),
                ("Cookie", "uid = 42"),
            ],
        );
        let h = |s: KeySource| value(&s, &r);
        let header = |n: &'static str| KeySource::Header(http::HeaderName::from_static(n));
        let cookie = |n: &str| KeySource::Cookie(n.into());
        let query = |n: &str| KeySource::Query(n.into());
        assert_eq!(h(header("x-api-key")), Some(&b"k1"[..]));
        assert_eq!(h(cookie("sid")), Some(&b"abc"[..]));
        assert_eq!(h(cookie("UID")), Some(&b"42"[..]));
        assert_eq!(h(query("ref")), Some(&b"SUMMER"[..]));
        assert_eq!(h(query("a")), Some(&b"1"[..]));
        assert_eq!(h(query("empty")), None, "an empty value is no key");
        assert_eq!(h(query("flag")), None);
        assert_eq!(h(header("x-missing")), None);
        assert_eq!(h(cookie("none")), None);
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_ip(a), client_ip(b));
        assert_ne!(client_ip(a), client_ip(c));
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_ne!(client_ip(v4), client_ip("192.0.2.2".parse().unwrap()));
    }
}
