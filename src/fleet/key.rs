//! The key a request is limited under by a fleet limit: the same in every instance.
//!
//! The local limiter hashes keys with a per-process seed (so nobody can aim keys at one shard
//! of its table); a fleet key must instead name the same Redis entry from every instance, and
//! from a new version of Seawall during a rolling upgrade. So it is a digest with no seed and
//! a fixed algorithm: the first 16 bytes of SHA-256 over a kind tag and the value. That also
//! keeps client addresses and API keys out of Redis in clear, and bounds a key's size whatever
//! a client sends in the header it is read from.

use std::net::IpAddr;

use pingora::http::RequestHeader;
use sha2::{Digest, Sha256};

use crate::limits::KeySource;
use crate::limits::keys;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FleetKey(pub [u8; 16]);

impl std::fmt::Debug for FleetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetKey({})", hex::encode(self.0))
    }
}

fn digest(tag: u8, bytes: &[u8]) -> FleetKey {
    let mut h = Sha256::new();
    h.update([tag]);
    h.update(bytes);
    let full = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&full[..16]);
    FleetKey(k)
}

impl FleetKey {
    /// IPv6 clients by their /64, as the local limiter does.
    pub fn client_ip(ip: IpAddr) -> FleetKey {
        match ip {
            IpAddr::V4(v4) => digest(4, &v4.octets()),
            IpAddr::V6(v6) => digest(6, &v6.octets()[..8]),
        }
    }

    pub fn global() -> FleetKey {
        digest(0, b"")
    }

    /// A header, cookie or query value, as sent.
    pub fn value(bytes: &[u8]) -> FleetKey {
        digest(1, bytes)
    }

    /// The key of a request for one limit, or `None` when the limit does not apply (the
    /// value is absent or empty), exactly when the local limiter's key is `None`.
    pub fn of(source: &KeySource, req: &RequestHeader, client: IpAddr) -> Option<FleetKey> {
        match source {
            KeySource::ClientIp => Some(FleetKey::client_ip(client)),
            KeySource::Global => Some(FleetKey::global()),
            _ => keys::value(source, req).map(FleetKey::value),
        }
    }

    /// The key in the local fallback limiter's table (already uniformly distributed).
    pub fn local(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }

    pub(super) fn as_u128(&self) -> u128 {
        u128::from_le_bytes(self.0)
    }

    pub(super) fn push_hex(&self, out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for b in self.0 {
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_across_processes_and_versions() {
        // Pinned: a change here splits a running fleet's state during a rolling upgrade.
        let k = FleetKey::client_ip("192.0.2.1".parse().unwrap());
        let mut s = String::new();
        k.push_hex(&mut s);
        assert_eq!(s, hex::encode(&Sha256::digest([4, 192, 0, 2, 1])[..16]));
        let a = FleetKey::client_ip("2001:db8:1:2::1".parse().unwrap());
        let b = FleetKey::client_ip("2001:db8:1:2:ffff::9".parse().unwrap());
        assert_eq!(a, b, "one key per IPv6 /64");
        assert_ne!(FleetKey::value(b"x"), FleetKey::global());
    }
}
