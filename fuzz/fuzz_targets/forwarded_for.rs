//! `X-Forwarded-For` resolution: the address every per-IP limit keys on.
//!
//! The first input byte picks the TCP peer (trusted or not, IPv4, IPv6 or IPv4-mapped); the
//! rest, split at newlines, are the header's lines. Properties: nothing panics; an untrusted
//! peer always gets its own address; otherwise the answer is what nginx's `realip` (recursive)
//! gives, checked against a model that reads each hop with the standard library's own address
//! parsers: the peer or an address written in the input, the rightmost untrusted one.
#![no_main]

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use seawall::client_ip::{TrustedProxies, canonical};

const PEERS: [&str; 6] = [
    "10.0.0.1",
    "203.0.113.9",
    "::ffff:10.1.2.3",
    "2001:db8::5",
    "::1",
    "2001:db9::1",
];

fn nets() -> TrustedProxies {
    TrustedProxies::new(
        ["10.0.0.0/8", "127.0.0.0/8", "2001:db8::/32", "::1/128"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect(),
    )
}

/// One hop as the model reads it: `IP`, `IPv4:port`, `[IPv6]:port` or `[IPv6]`.
fn hop(raw: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    // std's SocketAddrV6 takes a zone id (`[::%1]:4`); nginx's address parser does not, and
    // neither does Seawall: such a hop ends the walk.
    if s.contains('%') {
        return None;
    }
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            let inner = s.strip_prefix('[')?.strip_suffix(']')?;
            inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(canonical(ip))
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = PEERS[pick as usize % PEERS.len()].parse().unwrap();
    let lines: Vec<&[u8]> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == b'\n').collect()
    };
    let t = nets();
    let got = t.resolve(peer, lines.iter().copied());

    let peer = canonical(peer);
    let mut want = peer;
    if t.contains(peer) {
        let hops: Vec<&[u8]> = lines.iter().flat_map(|l| l.split(|&b| b == b',')).collect();
        for raw in hops.iter().rev() {
            let Some(ip) = hop(raw) else { break };
            want = ip;
            if !t.contains(ip) {
                break;
            }
        }
    }
    assert_eq!(got, want, "peer {peer}, lines {lines:?}");
});
