//! A one-line JSON object written field by field into a reused buffer: what the access log
//! writes once per request.
//!
//! `serde_json` with a derived `Serialize` costs about 9,000 instructions for an access line
//! (callgrind, issue 16): it escapes every key, formats the timestamp and the addresses through
//! `collect_str` (a `fmt::Write` adapter that escapes as it goes) and computes the calendar
//! date for every line. Here keys are constants written as they are, strings still go through
//! `serde_json`'s escaper, numbers through `itoa` and `serde_json`'s float formatter, and the
//! date and time of day are formatted once a second per thread.

use std::cell::Cell;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `{"k":v,...}` into `buf`. Keys must be plain ASCII names (they are not escaped);
/// values passed as `&str` are escaped.
pub struct JsonObject<'b> {
    buf: &'b mut Vec<u8>,
    empty: bool,
}

impl<'b> JsonObject<'b> {
    pub fn new(buf: &'b mut Vec<u8>) -> JsonObject<'b> {
        buf.push(b'{');
        JsonObject { buf, empty: true }
    }

    fn key(&mut self, key: &str) {
        debug_assert!(
            key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{key}"
        );
        if !self.empty {
            self.buf.push(b',');
        }
        self.empty = false;
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    fn string(&mut self, v: &str) {
        // Nearly every value (a path, a host, a user agent) needs no escape: copied in one go,
        // about half of what `serde_json`'s escaper costs for it (callgrind, issue 16).
        if v.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.buf.reserve(v.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(v.as_bytes());
            self.buf.push(b'"');
            return;
        }
        // Writing to a Vec cannot fail, and a &str is always valid JSON once escaped.
        let _ = serde_json::to_writer(&mut *self.buf, v);
    }

    pub fn str(&mut self, key: &str, v: &str) -> &mut Self {
        self.key(key);
        self.string(v);
        self
    }

    /// Left out when `None`.
    pub fn opt_str(&mut self, key: &str, v: Option<&str>) -> &mut Self {
        if let Some(v) = v {
            self.str(key, v);
        }
        self
    }

    /// `null` when `None`.
    pub fn str_or_null(&mut self, key: &str, v: Option<&str>) -> &mut Self {
        self.key(key);
        match v {
            Some(v) => self.string(v),
            None => self.buf.extend_from_slice(b"null"),
        }
        self
    }

    /// A value whose `Display` never writes a character JSON must escape (an address, a
    /// number), as a string.
    pub fn display<T: std::fmt::Display>(&mut self, key: &str, v: &T) -> &mut Self {
        self.key(key);
        self.buf.push(b'"');
        let _ = write!(self.buf, "{v}");
        self.buf.push(b'"');
        self
    }

    /// An address as a string; IPv4 without `fmt` (its `Display` cost about 1,300
    /// instructions an address in the access line, callgrind).
    pub fn ip(&mut self, key: &str, ip: IpAddr) -> &mut Self {
        match ip {
            IpAddr::V4(v4) => {
                self.key(key);
                self.buf.push(b'"');
                self.ipv4(v4);
                self.buf.push(b'"');
                self
            }
            IpAddr::V6(_) => self.display(key, &ip),
        }
    }

    /// `ADDR:PORT` as a string, IPv4 without `fmt` (IPv6 as `[ADDR]:PORT`).
    pub fn socket_addr(&mut self, key: &str, a: SocketAddr) -> &mut Self {
        match a {
            SocketAddr::V4(v4) => {
                self.key(key);
                self.buf.push(b'"');
                self.ipv4(*v4.ip());
                self.buf.push(b':');
                self.buf
                    .extend_from_slice(itoa::Buffer::new().format(v4.port()).as_bytes());
                self.buf.push(b'"');
                self
            }
            SocketAddr::V6(_) => self.display(key, &a),
        }
    }

    fn ipv4(&mut self, ip: Ipv4Addr) {
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                self.buf.push(b'.');
            }
            self.buf
                .extend_from_slice(itoa::Buffer::new().format(octet).as_bytes());
        }
    }

    pub fn uint(&mut self, key: &str, v: u64) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
        self
    }

    pub fn float(&mut self, key: &str, v: f64) -> &mut Self {
        self.key(key);
        // serde_json writes non-finite numbers as null, as a derived Serialize did.
        let _ = serde_json::to_writer(&mut *self.buf, &v);
        self
    }

    /// Left out when `None`.
    pub fn opt_float(&mut self, key: &str, v: Option<f64>) -> &mut Self {
        if let Some(v) = v {
            self.float(key, v);
        }
        self
    }

    pub fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.key(key);
        self.buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    /// `time` as RFC 3339 in UTC with microseconds: `2026-12-01T16:28:30.123456Z`.
    pub fn time(&mut self, key: &str, time: SystemTime) -> &mut Self {
        self.key(key);
        self.buf.push(b'"');
        rfc3339_micros(self.buf, time);
        self.buf.push(b'"');
        self
    }

    /// Close the object.
    pub fn end(self) {
        self.buf.push(b'}');
    }
}

thread_local! {
    /// The second last formatted on this thread, and its `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// Append `time` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC). Times before 1970 are written as
/// 1970-01-01T00:00:00.000000Z (the clock is the system's, so never in practice).
pub fn rfc3339_micros(buf: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    let date_time = SECOND.with(|c| {
        let (cached, text) = c.get();
        if cached == secs {
            return text;
        }
        let mut text = [b'0'; 19];
        let formatted = i64::try_from(secs)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S").to_string());
        if let Some(f) = formatted.filter(|f| f.len() == 19) {
            text.copy_from_slice(f.as_bytes());
        }
        c.set((secs, text));
        text
    });
    buf.extend_from_slice(&date_time);
    buf.push(b'.');
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(micros).as_bytes();
    buf.extend(std::iter::repeat_n(b'0', 6 - digits.len()));
    buf.extend_from_slice(digits);
    buf.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_object_is_the_json_a_serializer_would_write() {
        let mut buf = Vec::new();
        let mut o = JsonObject::new(&mut buf);
        o.str("s", "a \"quoted\"\n\u{1}é")
            .opt_str("absent", None)
            .opt_str("present", Some("x"))
            .str_or_null("null", None)
            .display("ip", &IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]))
            .ip("v4", IpAddr::from([203, 0, 113, 7]))
            .ip("v6", IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]))
            .socket_addr("sa4", SocketAddr::from(([10, 0, 0, 255], 8080)))
            .socket_addr("sa6", "[::1]:443".parse().unwrap())
            .uint("n", u64::MAX)
            .float("f", 1.5)
            .float("whole", 3.0)
            .float("nan", f64::NAN)
            .opt_float("nf", None)
            .bool("b", false);
        o.end();
        let text = std::str::from_utf8(&buf).unwrap();
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "s": "a \"quoted\"\n\u{1}é", "present": "x", "null": null,
                "ip": "2001:db8::1", "v4": "203.0.113.7", "v6": "2001:db8::1",
                "sa4": "10.0.0.255:8080", "sa6": "[::1]:443", "n": u64::MAX, "f": 1.5, "whole": 3.0, "nan": null,
                "b": false,
            })
        );
        assert_eq!(
            text.matches(',').count(),
            12,
            "thirteen members, no empty one: {text}"
        );
        let mut empty = Vec::new();
        JsonObject::new(&mut empty).end();
        assert_eq!(empty, b"{}");
    }

    #[test]
    fn strings_are_written_byte_for_byte_as_serde_json_writes_them() {
        for v in [
            "",
            "/plain/path?q=1",
            "é ü 💡",
            "\u{7f}",
            "\u{1f}",
            "\u{0}",
            "a\\b",
            "\"",
            "x\ny",
        ] {
            let mut buf = Vec::new();
            let mut o = JsonObject::new(&mut buf);
            o.str("k", v);
            o.end();
            let want = format!("{{\"k\":{}}}", serde_json::to_string(v).unwrap());
            assert_eq!(String::from_utf8(buf).unwrap(), want, "{v:?}");
        }
    }

    #[test]
    fn times_are_rfc3339_with_microseconds_and_the_cache_follows_the_clock() {
        let at = |s: u64, us: u64| UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(us);
        let text = |t: SystemTime| {
            let mut b = Vec::new();
            rfc3339_micros(&mut b, t);
            String::from_utf8(b).unwrap()
        };
        assert_eq!(text(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        // 2026-12-01T16:28:30Z, then the same second again (cached), then the next one and a
        // leap day: the cache must not keep an old second's date.
        assert_eq!(text(at(1_796_142_510, 7)), "2026-12-01T16:28:30.000007Z");
        assert_eq!(
            text(at(1_796_142_510, 999_999)),
            "2026-12-01T16:28:30.999999Z"
        );
        assert_eq!(
            text(at(1_796_142_511, 120_000)),
            "2026-12-01T16:28:31.120000Z"
        );
        assert_eq!(text(at(1_709_164_800, 1)), "2024-02-29T00:00:00.000001Z");
        let parsed: jiff::Timestamp = text(at(1_796_142_510, 123_456)).parse().unwrap();
        assert_eq!(parsed.as_microsecond(), 1_796_142_510_123_456);
        let now = SystemTime::now();
        let parsed: jiff::Timestamp = text(now).parse().unwrap();
        let want = now.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        assert_eq!(parsed.as_microsecond(), want);
    }
}
