//! Building blocks for the queue tests: an upstream pool on given addresses, a queue spec with
//! quick retries, a lead, and a running `Queues` with one queue.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use seawall::queue::registry::QueueHandle;
use seawall::queue::{
    AcceptedAnswer, Forwarding, Lead, PingoraSender, QueueSpec, Queues, RetrySpec, StoreKind,
};
use seawall::upstream::{Transport, Upstream, UpstreamSpec};

pub fn upstream(addr: SocketAddr, read_timeout: Duration) -> Arc<Upstream> {
    Arc::new(Upstream::new(UpstreamSpec {
        name: Arc::from("app"),
        servers: vec![addr],
        connect_timeout: Duration::from_millis(500),
        read_timeout,
        write_timeout: Duration::from_secs(2),
        max_inflight: 0,
        health: None,
        transport: Transport::default(),
    }))
}

/// 100 r/s, 4 in flight, retries after 50-200 ms, 5 attempts.
pub fn spec(dir: &Path, deliver_to: Arc<Upstream>) -> QueueSpec {
    QueueSpec {
        name: Arc::from("leads"),
        store: StoreKind::Spool {
            path: dir.join("spool/leads"),
        },
        max_bytes: 64 << 20,
        max_body: 64 << 10,
        deliver_to,
        rate_mrps: 100_000,
        rate_text: "100r/s".into(),
        max_inflight: 4,
        retry: RetrySpec {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        },
        max_attempts: 5,
        max_age: Duration::from_secs(72 * 3600),
        accepted: AcceptedAnswer::default(),
    }
}

pub fn specs(s: QueueSpec) -> BTreeMap<Arc<str>, Arc<QueueSpec>> {
    BTreeMap::from([(s.name.clone(), Arc::new(s))])
}

pub fn lead(path: &str, body: &str) -> Lead {
    Lead {
        method: "POST".into(),
        path: path.into(),
        query: Some("utm_campaign=SUMMER".into()),
        headers: vec![
            ("host".into(), Bytes::from_static(b"shop.example.com")),
            (
                "content-type".into(),
                Bytes::from_static(b"application/x-www-form-urlencoded"),
            ),
            ("connection".into(), Bytes::from_static(b"keep-alive")),
            ("x-forwarded-for".into(), Bytes::from_static(b"6.6.6.6")),
        ],
        body: Bytes::from(body.to_string()),
        forwarding: Forwarding {
            client_ip: "203.0.113.7".into(),
            x_forwarded_for: "198.51.100.1, 203.0.113.7".into(),
            x_forwarded_proto: "https".into(),
        },
        campaign: Some("summer-sale".into()),
        accepted_at_ms: 0,
        idempotency_key: None,
        receipt: String::new(),
    }
}

pub async fn start(
    spec: QueueSpec,
    metrics: Option<Arc<seawall::metrics::Metrics>>,
) -> (Queues, Arc<QueueHandle>) {
    let m = metrics
        .as_deref()
        .map(seawall::queue::registry::QueueMetrics::of);
    let qs = Queues::new(Arc::new(PingoraSender::new()), m);
    qs.apply(&specs(spec)).await.expect("queue starts");
    let h = qs.get("leads").expect("queue is running");
    (qs, h)
}

/// Wait until nothing listens on `addr` (an aborted test server lets go of its socket only when
/// its task is next polled), so a new server can be started there.
pub async fn wait_free(addr: SocketAddr) {
    for _ in 0..250 {
        if std::net::TcpListener::bind(addr).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} still in use");
}
