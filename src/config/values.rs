//! Parsers for the small string languages of the config files: durations, rates, addresses,
//! networks and limit keys. Each returns a message fit to follow `error:`, never panics.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::num::NonZeroU64;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::limits::{KeySource, Rate};

/// `"500ms"`, `"5s"`, `"2m"` (humantime syntax). Zero is refused: a zero timeout is a typo.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        format!("invalid duration {s:?}: {e} (write e.g. \"500ms\", \"5s\", \"2m\")")
    })?;
    if d.is_zero() {
        return Err(format!("duration {s:?} must be greater than zero"));
    }
    Ok(d)
}

/// A size in bytes: `"512"`, `"64KiB"`, `"10MiB"`, `"1GiB"`, `"1TiB"` (powers of 1024; a bare
/// `K`/`M`/`G` too, the way nginx reads `10m`), or `"64kB"`, `"10MB"`, `"1GB"`, `"1TB"` (powers
/// of 1000). Zero is refused: a zero limit is a typo.
pub fn size(s: &str) -> Result<u64, String> {
    let bad =
        || format!("invalid size {s:?}: write e.g. \"64KiB\", \"10MiB\" or a number of bytes");
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" | "m" => 1 << 20,
        "GiB" | "G" | "g" => 1 << 30,
        "TiB" => 1 << 40,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(bad()),
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("size {s:?} must be greater than zero"));
    }
    Ok(bytes)
}

/// A rate as nginx writes it, `N r/s`, `N r/m`, plus Seawall's `N r/h`.
pub fn rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("invalid rate {s:?}: write N r/s, N r/m or N r/h, e.g. \"10r/s\"");
    let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    let (num, unit) = compact.split_once("r/").ok_or_else(bad)?;
    let per_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(bad()),
    };
    let count: u64 = num.parse().map_err(|_| bad())?;
    if count == 0 {
        return Err(format!("rate {s:?} must allow at least one request"));
    }
    if count > 10_000_000 {
        return Err(format!("rate {s:?} is too large (at most 10000000)"));
    }
    let milli = count * 1000 / per_secs;
    let milli_per_sec = NonZeroU64::new(milli).ok_or_else(|| {
        format!(
            "rate {s:?} is below nginx's resolution of 1 milli-request per second \
             (the lowest hourly rate is \"4r/h\")"
        )
    })?;
    Ok(Rate {
        count,
        per_secs,
        milli_per_sec,
    })
}

/// A port written as digits that is not a port (`99999`): said plainly rather than "write
/// host:port" to someone who did.
fn port_out_of_range(s: &str) -> Option<&str> {
    let (_, port) = s.rsplit_once(':')?;
    let digits = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    (digits && port.parse::<u16>().is_err()).then_some(port)
}

/// A listen address: `IP:PORT` only (no host names: a listener must not depend on DNS).
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| match port_out_of_range(s) {
        Some(p) => format!("invalid listen address {s:?}: port {p} is above 65535"),
        None => format!(
            "invalid listen address {s:?}: write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:443\""
        ),
    })
}

/// An upstream server, `host:port`. Host names are resolved once, at load.
pub fn server_addr(s: &str) -> Result<SocketAddr, String> {
    if let Some(p) = port_out_of_range(s) {
        return Err(format!(
            "invalid server address {s:?}: port {p} is above 65535"
        ));
    }
    let port_zero = || format!("invalid server address {s:?}: port 0 cannot be connected to");
    if let Ok(a) = s.parse::<SocketAddr>() {
        return if a.port() == 0 {
            Err(port_zero())
        } else {
            Ok(a)
        };
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!(
            "invalid server address {s:?}: write host:port, e.g. \"127.0.0.1:3000\""
        ));
    };
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!(
            "invalid server address {s:?}: write host:port, e.g. \"127.0.0.1:3000\""
        ));
    }
    if port.parse::<u16>() == Ok(0) {
        return Err(port_zero());
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve server {s:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("server {s:?} resolves to no address"))
}

/// A network, `10.0.0.0/8`, or a single address (taken as /32 or /128).
pub fn network(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "network {s:?} has host bits set: did you mean {}?",
                net.trunc()
            ));
        }
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("invalid network {s:?}: write a CIDR such as \"10.0.0.0/8\" or an address")
    })
}

/// `client_ip | global | header:NAME | cookie:NAME | query:NAME`.
pub fn limit_key(s: &str) -> Result<KeySource, String> {
    match s {
        "client_ip" => return Ok(KeySource::ClientIp),
        "global" => return Ok(KeySource::Global),
        _ => {}
    }
    named_source(s).map_err(|e| {
        format!("{e}; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME")
    })
}

/// `header:NAME | cookie:NAME | query:NAME` (campaign tag sources).
pub fn named_source(s: &str) -> Result<KeySource, String> {
    let Some((kind, name)) = s.split_once(':') else {
        return Err(format!("invalid key {s:?}"));
    };
    if name.is_empty() {
        return Err(format!("key {s:?} has an empty name after ':'"));
    }
    let token = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_graphic() && !b"\";,=\\".contains(&b))
    };
    match kind {
        "header" => HeaderName::from_bytes(name.as_bytes())
            .map(KeySource::Header)
            .map_err(|_| format!("invalid header name {name:?} in {s:?}")),
        "cookie" if token(name) => Ok(KeySource::Cookie(name.to_string())),
        "query" if token(name) => Ok(KeySource::Query(name.to_string())),
        "cookie" | "query" => Err(format!("invalid {kind} name {name:?} in {s:?}")),
        _ => Err(format!("unknown key kind {kind:?} in {s:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_truncate_like_nginx() {
        assert_eq!(rate("1r/m").unwrap().milli_per_sec.get(), 16);
        assert_eq!(rate("5r/m").unwrap().milli_per_sec.get(), 83);
        assert_eq!(rate("10r/s").unwrap().milli_per_sec.get(), 10_000);
        assert_eq!(rate("4r/h").unwrap().milli_per_sec.get(), 1);
        assert_eq!(rate(" 300 r/s ").unwrap().count, 300);
        assert!(rate("3r/h").unwrap_err().contains("resolution"));
        assert!(rate("10/s").is_err());
        assert!(rate("10r/d").is_err());
        assert!(rate("0r/s").is_err());
        assert!(rate("-1r/s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size("512").unwrap(), 512);
        assert_eq!(size("64KiB").unwrap(), 65_536);
        assert_eq!(size("10MiB").unwrap(), 10 << 20);
        assert_eq!(size(" 1 GiB ").unwrap(), 1 << 30);
        assert_eq!(size("64kB").unwrap(), 64_000);
        assert!(size("0").unwrap_err().contains("greater than zero"));
        assert!(size("10 mb").is_err());
        assert!(size("-1").is_err());
        assert!(size("MiB").is_err());
        assert!(size("99999999999GiB").unwrap_err().contains("too large"));
        assert_eq!(size("512MiB").unwrap(), 512 << 20);
        assert_eq!(size("1G").unwrap(), 1 << 30);
        assert_eq!(size("10m").unwrap(), 10 << 20, "nginx's 10m");
        assert!(size("12 parsecs").unwrap_err().contains("invalid size"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert!(duration("5").is_err());
        assert!(duration("0s").is_err());
    }

    #[test]
    fn networks_and_keys() {
        assert_eq!(network("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(network("::1").unwrap().to_string(), "::1/128");
        assert!(network("10.0.0.1/8").unwrap_err().contains("10.0.0.0/8"));
        assert!(network("10.0.0.0/33").is_err());
        assert_eq!(limit_key("client_ip").unwrap(), KeySource::ClientIp);
        assert_eq!(
            limit_key("header:X-Api-Key").unwrap(),
            KeySource::Header(HeaderName::from_static("x-api-key"))
        );
        assert!(limit_key("ip").is_err());
        assert!(limit_key("cookie:").is_err());
        assert!(limit_key("header:bad name").is_err());
    }

    #[test]
    fn addresses() {
        assert!(listen_addr("127.0.0.1:8080").is_ok());
        assert!(listen_addr("localhost:8080").is_err());
        assert_eq!(server_addr("localhost:80").unwrap().port(), 80);
        assert!(server_addr("127.0.0.1").is_err());
        assert!(
            server_addr("127.0.0.1:99999")
                .unwrap_err()
                .contains("above 65535")
        );
        assert!(server_addr("127.0.0.1:0").unwrap_err().contains("port 0"));
        assert!(
            listen_addr("127.0.0.1:80800")
                .unwrap_err()
                .contains("above 65535")
        );
    }
}
