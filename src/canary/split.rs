//! Which side a request goes to.
//!
//! A client is on the canary iff `bucket(value) < weight` in basis points, where the bucket is
//! a hash of its sticky value mod 10 000. The hash has no per-process seed (sha256, salted with
//! the canary upstream's name), so every instance of a fleet, and the next process after a
//! restart, puts a client on the same side. Raising the weight only adds clients to the canary
//! (those whose bucket lies between the old and new weight); lowering it only removes some.
//!
//! A client without the cookie (cookie stickiness) gets a random value; its side is that
//! value's bucket, so the draw is a fair `weight` percent and the cookie alone keeps the client
//! where it landed.

use std::net::IpAddr;

use http::{HeaderMap, HeaderValue};
use rand::Rng;
use sha2::{Digest, Sha256};

use super::{Side, Sticky};

/// Buckets the hash falls into: weights are in basis points.
pub const BUCKETS: u64 = 10_000;

/// Where a request goes, and the cookie to set when the client was drawn just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub side: Side,
    /// `NAME=<value>; Path=/; HttpOnly; SameSite=Lax`, for the response's `Set-Cookie`.
    pub set_cookie: Option<HeaderValue>,
}

/// The bucket (0..10 000) of a sticky value.
pub fn bucket(salt: &[u8], value: &[u8]) -> u64 {
    let mut h = Sha256::new();
    // The salt's length first, so (salt, value) pairs cannot run into each other.
    h.update((salt.len() as u32).to_be_bytes());
    h.update(salt);
    h.update(value);
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    u64::from_be_bytes(first) % BUCKETS
}

/// The bytes a client IP is hashed as: IPv6 clients by their /64.
pub fn ip_value(ip: IpAddr) -> ([u8; 9], usize) {
    let mut out = [0u8; 9];
    match ip {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
            (out, 5)
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_value(IpAddr::V4(v4)),
            None => {
                out[0] = 6;
                out[1..9].copy_from_slice(&v6.octets()[..8]);
                (out, 9)
            }
        },
    }
}

pub fn side_of(bucket: u64, weight_bp: u32) -> Side {
    if bucket < u64::from(weight_bp) {
        Side::Canary
    } else {
        Side::Stable
    }
}

impl Sticky {
    /// The sticky value a request carries: the header's or the cookie's, if present and not
    /// empty. `None` for `client_ip`. Cookie names match exactly (RFC 6265): Seawall set it.
    pub fn read<'a>(&self, headers: &'a HeaderMap) -> Option<&'a [u8]> {
        let v = match self {
            Sticky::ClientIp => None,
            Sticky::Header(name) => headers.get(name).map(HeaderValue::as_bytes),
            Sticky::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .find_map(|h| cookie_value(h.as_bytes(), name.as_bytes())),
        };
        v.filter(|v| !v.is_empty())
    }
}

fn cookie_value<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|b| *b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|b| *b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Choose a side. `value` is [`Sticky::read`]'s answer for this request, `weight_bp` the weight
/// in force; `rng` draws a new cookie value (a parameter so tests can seed it).
pub fn choose(
    sticky: &Sticky,
    salt: &[u8],
    weight_bp: u32,
    value: Option<&[u8]>,
    client: IpAddr,
    rng: &mut impl Rng,
) -> Choice {
    let by_ip = || {
        let (bytes, len) = ip_value(client);
        bucket(salt, &bytes[..len])
    };
    if weight_bp == 0 {
        // Nobody goes to the canary; a cookie drawn now would mean nothing yet.
        return Choice {
            side: Side::Stable,
            set_cookie: None,
        };
    }
    match (sticky, value) {
        (_, Some(v)) => Choice {
            side: side_of(bucket(salt, v), weight_bp),
            set_cookie: None,
        },
        (Sticky::ClientIp | Sticky::Header(_), None) => Choice {
            side: side_of(by_ip(), weight_bp),
            set_cookie: None,
        },
        (Sticky::Cookie(name), None) => {
            let drawn = format!("{:016x}", rng.random::<u64>());
            let side = side_of(bucket(salt, drawn.as_bytes()), weight_bp);
            let cookie = format!("{name}={drawn}; Path=/; HttpOnly; SameSite=Lax");
            Choice {
                side,
                // The name is a checked token and the value hex: always a valid header value.
                set_cookie: HeaderValue::from_str(&cookie).ok(),
            }
        }
    }
}
