//! Upstream pools: several servers, round robin, timeouts, optional active HTTP health checks
//! (pingora-load-balancing) and an optional cap on requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pingora::lb::health_check::HttpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backends, LoadBalancer, discovery};
use pingora::upstreams::peer::HttpPeer;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

/// How Seawall talks to an upstream's servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transport {
    pub tls: bool,
    /// Server name for TLS (SNI and certificate verification); empty = none.
    pub sni: String,
    /// HTTP/2: by ALPN over TLS (falling back to HTTP/1.1), prior knowledge (h2c) in plaintext.
    pub http2: bool,
}

/// An upstream as the config defines it.
pub struct UpstreamSpec {
    pub name: Arc<str>,
    pub servers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub max_inflight: u32,
    pub health: Option<HealthCheckSpec>,
    pub transport: Transport,
}

pub struct Upstream {
    pub name: Arc<str>,
    pub transport: Transport,
    pub servers: Vec<SocketAddr>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// 0 = no cap. Counted in the proxy's shared `Inflight`, so the count survives reloads.
    pub max_inflight: u32,
    pub health: Option<HealthCheckSpec>,
    pub lb: LoadBalancer<RoundRobin>,
    /// When the health check last ran; the health-check service consults it every tick.
    last_check: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("servers", &self.servers)
            .finish_non_exhaustive()
    }
}

/// Default connect timeout: nginx's `proxy_connect_timeout` is 60 s, far too long for an edge
/// in an incident; Envoy's is 5 s. We take 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default read timeout between two reads from the upstream: nginx's 60 s.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

impl Upstream {
    pub fn new(spec: UpstreamSpec) -> Upstream {
        let UpstreamSpec {
            name,
            servers,
            connect_timeout,
            read_timeout,
            write_timeout,
            max_inflight,
            health,
            transport,
        } = spec;
        let backends: std::collections::BTreeSet<_> = servers
            .iter()
            .map(|a| pingora::lb::Backend {
                addr: pingora::protocols::l4::socket::SocketAddr::Inet(*a),
                weight: 1,
                ext: Default::default(),
            })
            .collect();
        let mut backends = Backends::new(discovery::Static::new(backends));
        if let Some(h) = &health {
            let host = if transport.sni.is_empty() {
                "localhost"
            } else {
                transport.sni.as_str()
            };
            let mut hc = HttpHealthCheck::new(host, transport.tls);
            if let Ok(req) = pingora::http::RequestHeader::build("GET", h.path.as_bytes(), None) {
                hc.req = req;
                let _ = hc.req.insert_header("Host", host);
                let _ = hc.req.insert_header("User-Agent", "seawall-health-check");
            }
            hc.peer_template.options.connection_timeout = Some(h.timeout);
            hc.peer_template.options.read_timeout = Some(h.timeout);
            backends.set_health_check(Box::new(hc));
        }
        let lb = LoadBalancer::from_backends(backends);
        // Static discovery never blocks nor fails: this only builds the selector.
        let _ = futures::FutureExt::now_or_never(lb.update());
        Upstream {
            name,
            transport,
            servers,
            connect_timeout,
            read_timeout,
            write_timeout,
            max_inflight,
            health,
            lb,
            last_check: Mutex::new(None),
        }
    }

    /// Same servers, timeouts, cap and health check: a reload may keep this pool as it is.
    pub fn same_definition(&self, other: &Upstream) -> bool {
        self.servers == other.servers
            && self.connect_timeout == other.connect_timeout
            && self.read_timeout == other.read_timeout
            && self.write_timeout == other.write_timeout
            && self.max_inflight == other.max_inflight
            && self.health == other.health
            && self.transport == other.transport
    }

    /// The next healthy server in round-robin order, as a Pingora peer with our timeouts.
    pub fn peer(&self) -> Option<HttpPeer> {
        // One server and no health check: nothing to choose between and nothing that can mark
        // it down, so the load balancer's answer is known. Asking it costs about 2,000
        // instructions a request (a hash set of the backends tried, a readiness lookup).
        let addr = match self.servers.as_slice() {
            [only] if self.health.is_none() => {
                pingora::protocols::l4::socket::SocketAddr::Inet(*only)
            }
            _ => self.lb.select(b"", self.servers.len().max(1) * 2)?.addr,
        };
        let t = &self.transport;
        let mut peer = HttpPeer::new(addr, t.tls, t.sni.clone());
        if t.http2 {
            // Over TLS offer h2 and h1 by ALPN; in plaintext speak h2 directly (h2c).
            peer.options.set_http_version(2, if t.tls { 1 } else { 2 });
        }
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.write_timeout);
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Some(peer)
    }

    /// Run the health check if one is configured and its interval has passed.
    pub async fn health_check_if_due(&self, now: Instant) {
        let Some(h) = &self.health else { return };
        {
            let mut last = self.last_check.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < h.interval) {
                return;
            }
            *last = Some(now);
        }
        self.lb.backends().run_health_check(true).await;
    }

    /// Servers that are currently considered healthy (all of them without a health check).
    pub fn healthy_count(&self) -> usize {
        let backends = self.lb.backends().get_backend();
        backends
            .iter()
            .filter(|b| self.lb.backends().ready(b))
            .count()
    }
}
