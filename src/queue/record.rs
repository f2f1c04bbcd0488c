//! A lead and its on-disk encoding.
//!
//! Hand-rolled rather than serde + a format crate: the layout is a dozen length-prefixed fields,
//! it must stay readable by every later version (hence the version byte), and decoding must turn
//! any damaged bytes into an error, never a panic or a huge allocation. redb checksums every
//! page, so no CRC is added here.

use bytes::Bytes;

/// The whole request as it was accepted: everything delivery needs to replay it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lead {
    pub method: String,
    pub path: String,
    /// The query without its `?`; `None` when the request had none.
    pub query: Option<String>,
    /// Every header the client sent, names lower-case, in order (hop-by-hop ones are dropped at
    /// delivery, not here: the record is the request as received).
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
    pub forwarding: Forwarding,
    /// Launch name or "unregistered" when a campaign queued it.
    pub campaign: Option<String>,
    /// Unix ms when it was accepted (`X-Seawall-Queued-At`).
    pub accepted_at_ms: u64,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
    /// Filled in by the store on append.
    pub receipt: String,
}

/// The forwarding headers as computed when the request was accepted (the client address is
/// resolved through the trusted proxies then, not at delivery hours later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarding {
    pub client_ip: String,
    pub x_forwarded_for: String,
    pub x_forwarded_proto: String,
}

impl Lead {
    /// Bytes this lead takes in the store (its encoding), what `max_bytes` counts.
    pub fn encoded_len(&self) -> usize {
        let s = |x: &str| 4 + x.len();
        let o = |x: &Option<String>| 1 + x.as_ref().map_or(0, |v| s(v));
        1 + 8
            + s(&self.method)
            + s(&self.path)
            + o(&self.query)
            + 4
            + self
                .headers
                .iter()
                .map(|(n, v)| s(n) + 4 + v.len())
                .sum::<usize>()
            + 4
            + self.body.len()
            + s(&self.forwarding.client_ip)
            + s(&self.forwarding.x_forwarded_for)
            + s(&self.forwarding.x_forwarded_proto)
            + o(&self.campaign)
            + o(&self.idempotency_key)
            + s(&self.receipt)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Vec::with_capacity(self.encoded_len());
        w.push(VERSION);
        w.extend_from_slice(&self.accepted_at_ms.to_le_bytes());
        put(&mut w, self.method.as_bytes());
        put(&mut w, self.path.as_bytes());
        put_opt(&mut w, &self.query);
        w.extend_from_slice(&(self.headers.len() as u32).to_le_bytes());
        for (n, v) in &self.headers {
            put(&mut w, n.as_bytes());
            put(&mut w, v);
        }
        put(&mut w, &self.body);
        put(&mut w, self.forwarding.client_ip.as_bytes());
        put(&mut w, self.forwarding.x_forwarded_for.as_bytes());
        put(&mut w, self.forwarding.x_forwarded_proto.as_bytes());
        put_opt(&mut w, &self.campaign);
        put_opt(&mut w, &self.idempotency_key);
        put(&mut w, self.receipt.as_bytes());
        w
    }

    pub fn decode(b: &[u8]) -> Result<Lead, String> {
        let mut r = Reader { b, at: 0 };
        let v = r.byte()?;
        if v != VERSION {
            return Err(format!("unknown record version {v}"));
        }
        let accepted_at_ms = r.u64()?;
        let method = r.string()?;
        let path = r.string()?;
        let query = r.opt()?;
        let n = r.u32()? as usize;
        // Each header takes at least 8 bytes: a count beyond that is damage, not a header list.
        if n > r.left() / 8 {
            return Err(format!("header count {n} exceeds the record"));
        }
        let mut headers = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.string()?;
            let value = Bytes::copy_from_slice(r.bytes()?);
            headers.push((name, value));
        }
        let body = Bytes::copy_from_slice(r.bytes()?);
        let forwarding = Forwarding {
            client_ip: r.string()?,
            x_forwarded_for: r.string()?,
            x_forwarded_proto: r.string()?,
        };
        let campaign = r.opt()?;
        let idempotency_key = r.opt()?;
        let receipt = r.string()?;
        if r.left() != 0 {
            return Err(format!("{} trailing bytes", r.left()));
        }
        Ok(Lead {
            method,
            path,
            query,
            headers,
            body,
            forwarding,
            campaign,
            accepted_at_ms,
            idempotency_key,
            receipt,
        })
    }
}

const VERSION: u8 = 1;

fn put(w: &mut Vec<u8>, b: &[u8]) {
    w.extend_from_slice(&(b.len() as u32).to_le_bytes());
    w.extend_from_slice(b);
}

fn put_opt(w: &mut Vec<u8>, v: &Option<String>) {
    match v {
        Some(s) => {
            w.push(1);
            put(w, s.as_bytes());
        }
        None => w.push(0),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.b.len() - self.at
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!("truncated at byte {}", self.at));
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.at;
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| format!("invalid UTF-8 at byte {at}"))
    }

    fn opt(&mut self) -> Result<Option<String>, String> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            t => Err(format!("invalid option tag {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Lead {
        Lead {
            method: "POST".into(),
            path: "/api/v1/users/register".into(),
            query: Some("utm_campaign=SUMMER".into()),
            headers: vec![
                (
                    "content-type".into(),
                    Bytes::from_static(b"application/json"),
                ),
                ("x-bin".into(), Bytes::from_static(&[0xff, 0x00])),
            ],
            body: Bytes::from_static(b"{\"email\":\"a@example.com\"}"),
            forwarding: Forwarding {
                client_ip: "203.0.113.7".into(),
                x_forwarded_for: "203.0.113.7".into(),
                x_forwarded_proto: "https".into(),
            },
            campaign: Some("summer-sale".into()),
            accepted_at_ms: 1_780_000_000_123,
            idempotency_key: None,
            receipt: "r1".into(),
        }
    }

    #[test]
    fn round_trips_and_length_is_exact() {
        let l = sample();
        let b = l.encode();
        assert_eq!(b.len(), l.encoded_len());
        assert_eq!(Lead::decode(&b).unwrap(), l);
    }

    #[test]
    fn every_truncation_and_a_bad_version_are_errors_not_panics() {
        let b = sample().encode();
        for n in 0..b.len() {
            assert!(
                Lead::decode(&b[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
        let mut v = b.clone();
        v[0] = 9;
        assert!(Lead::decode(&v).unwrap_err().contains("version"));
        let mut huge = b;
        // The header count field: after version, time, method, path and query.
        let at = 1 + 8 + 4 + 4 + 4 + 22 + 1 + 4 + 19;
        huge[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Lead::decode(&huge).is_err());
    }
}
