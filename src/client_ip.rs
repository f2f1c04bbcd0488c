//! The client's address, believed from `X-Forwarded-For` only when the TCP peer is a trusted proxy.
//!
//! nginx `realip` with `real_ip_recursive on`: join every `X-Forwarded-For` line in order, walk
//! the list from the right, skip addresses of trusted proxies, and take the first untrusted one.
//! A client that is not a trusted proxy cannot choose its own rate-limit key by sending the header.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self { nets }
    }

    /// The trusted networks, as configured.
    pub fn nets(&self) -> &[IpNet] {
        &self.nets
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// `xff` yields the raw `X-Forwarded-For` header values in the order received.
    ///
    /// When every hop in the header is trusted, the leftmost one is the client. An unparsable
    /// element stops the walk there and the last trusted hop before it is used: a proxy we trust
    /// wrote everything to its right, nothing to its left can be believed.
    pub fn resolve<'a>(&self, peer: IpAddr, xff: impl Iterator<Item = &'a [u8]>) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let joined: Vec<&[u8]> = xff.flat_map(|v| v.split(|&b| b == b',')).collect();
        let mut client = peer;
        for raw in joined.iter().rev() {
            let Some(ip) = parse_hop(raw) else {
                return client;
            };
            client = ip;
            if !self.contains(ip) {
                return ip;
            }
        }
        client
    }
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`) counts as the IPv4 address it carries.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Append the text form of `ip` (as `Display` writes it) to `out`. IPv4, every request's case,
/// is written digit by digit: `Display` goes through the formatting machinery and cost about
/// 1,600 instructions a call, twice a request (X-Forwarded-For and X-Real-IP).
pub fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// The `X-Forwarded-For` Seawall sends on: a trusted proxy's chain (`received`, the header's
/// lines) with the peer appended; from anyone else the peer alone, the client's own header
/// dropped (the app must be able to believe what it gets).
pub fn forwarded_for<'a>(
    peer: IpAddr,
    peer_trusted: bool,
    received: impl Iterator<Item = &'a http::HeaderValue>,
) -> Vec<u8> {
    let mut xff = Vec::with_capacity(48);
    if peer_trusted {
        for v in received {
            if v.to_str().is_ok() {
                xff.extend_from_slice(v.as_bytes());
                xff.extend_from_slice(b", ");
            }
        }
    }
    write_ip(&mut xff, peer);
    xff
}

/// One element of `X-Forwarded-For`: an address, optionally `"[v6]:port"` or `v4:port`.
fn parse_hop(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = s.strip_prefix('[') {
        // `[v6]` or `[v6]:port`, with a port that is a port: anything else after the bracket
        // makes the hop unreadable, where nginx's realip stops too.
        let (ip, after) = rest.split_once(']')?;
        if !after.is_empty() {
            port(after.strip_prefix(':')?)?;
        }
        return ip
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| canonical(IpAddr::V6(ip)));
    }
    let (host, p) = s.rsplit_once(':')?;
    port(p)?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port as `SocketAddr` reads one: decimal digits only (no sign), at most 65535.
fn port(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    p.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz/fuzz_targets/forwarded_for.rs`: a bracketed address followed by garbage
    /// was read as the address; a signed port was a port. Both now end the walk, as in nginx.
    #[test]
    fn a_hop_with_a_bad_port_is_unreadable() {
        for bad in [
            "[2001:db8::1]:\u{3}\0.0.2",
            "[2001:db8::1]x",
            "[2001:db8::1]:",
            "[2001:db8::1]:+443",
            "192.0.2.1:+443",
            "192.0.2.1:65536",
        ] {
            assert_eq!(parse_hop(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(
            parse_hop(b"[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_hop(b"[2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(
            parse_hop(b"192.0.2.1:80"),
            Some("192.0.2.1".parse().unwrap())
        );
    }

    #[test]
    fn write_ip_writes_what_display_writes() {
        let mut cases: Vec<IpAddr> = [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "::1",
            "2001:db8::7",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        // Every octet value in every position.
        cases.extend((0..=255u8).map(|o| IpAddr::from([o, 255 - o, o / 3, o.wrapping_mul(7)])));
        for ip in cases {
            let mut out = b"x, ".to_vec();
            write_ip(&mut out, ip);
            assert_eq!(String::from_utf8(out).unwrap(), format!("x, {ip}"));
        }
    }

    fn tp(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_cannot_choose_its_address() {
        let t = tp(&["10.0.0.0/8"]);
        let got = t.resolve(ip("203.0.113.9"), [b"1.2.3.4".as_slice()].into_iter());
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn walks_from_the_right_skipping_trusted_hops() {
        let t = tp(&["10.0.0.0/8"]);
        let xff = [b"6.6.6.6, 198.51.100.7".as_slice(), b"10.1.1.1".as_slice()];
        assert_eq!(
            t.resolve(ip("10.0.0.1"), xff.into_iter()),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn all_trusted_takes_the_leftmost_and_garbage_stops_the_walk() {
        let t = tp(&["10.0.0.0/8"]);
        let xff = [b"10.0.0.5, 10.0.0.6".as_slice()];
        assert_eq!(t.resolve(ip("10.0.0.1"), xff.into_iter()), ip("10.0.0.5"));
        let xff = [b"1.1.1.1, nonsense, 10.0.0.6".as_slice()];
        assert_eq!(t.resolve(ip("10.0.0.1"), xff.into_iter()), ip("10.0.0.6"));
        assert_eq!(
            t.resolve(ip("10.0.0.1"), std::iter::empty()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_mapped_addresses() {
        let t = tp(&["127.0.0.1/32"]);
        assert_eq!(
            t.resolve(
                ip("::ffff:127.0.0.1"),
                [b"[2001:db8::1]:443".as_slice()].into_iter()
            ),
            ip("2001:db8::1")
        );
        assert_eq!(
            t.resolve(ip("127.0.0.1"), [b"192.0.2.1:5555".as_slice()].into_iter()),
            ip("192.0.2.1")
        );
    }
}
