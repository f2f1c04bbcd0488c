//! A fixed number of requests, as fast as the server answers them, for counting instructions
//! per request (`load-tests/vs-nginx --instructions`): wrk runs for a time, not a count, and
//! under valgrind the count is what must be exact. Not part of Seawall.
//!
//! `connections` closed loops share one counter of requests still to send, so exactly
//! `requests` are sent whatever the speed of each. Keep-alive by default; with `close`, every
//! request carries `Connection: close` on a connection of its own (connect, one exchange, the
//! server closes).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use tokio::net::TcpStream;

/// What a fixed-count run did.
pub struct Driven {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// Sends `requests` `GET path` to `addr` over `connections` connections and waits for every
/// answer; gives up (the rest counted as failed) at `deadline`.
pub fn drive(
    addr: SocketAddr,
    path: &str,
    connections: usize,
    requests: u64,
    close: bool,
    deadline: Duration,
) -> Driven {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let path: Arc<str> = path.into();
    let start = std::time::Instant::now();
    let left = Arc::new(AtomicU64::new(requests));
    let (ok, failed) = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..connections.max(1) {
            let (path, left) = (path.clone(), left.clone());
            tasks.push(tokio::spawn(async move {
                one_loop(addr, &path, &left, close).await
            }));
        }
        let all = futures::future::join_all(tasks);
        match tokio::time::timeout(deadline, all).await {
            Ok(results) => results
                .into_iter()
                .map(|r| r.unwrap_or((0, 0)))
                .fold((0, 0), |(a, b), (c, d)| (a + c, b + d)),
            // Out of time: whatever was not answered failed.
            Err(_) => (0, requests),
        }
    });
    Driven {
        ok,
        failed: failed + left.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// Takes one request from `left`; false when none is left.
fn take(left: &AtomicU64) -> bool {
    left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
    tokio::spawn(conn);
    Some(send)
}

/// One connection's closed loop: (answered with 200, failed).
async fn one_loop(addr: SocketAddr, path: &str, left: &AtomicU64, close: bool) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    let mut conn: Option<Sender> = None;
    while take(left) {
        if conn.is_none() {
            conn = connect(addr).await;
        }
        let Some(send) = conn.as_mut() else {
            failed += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let mut req = http::Request::get(path).header("host", addr.to_string());
        if close {
            req = req.header("connection", "close");
        }
        let req = req.body(Empty::new()).expect("request");
        let good = match send.send_request(req).await {
            Ok(r) => {
                let status = r.status();
                r.into_body().collect().await.is_ok() && status == 200
            }
            Err(_) => false,
        };
        if good {
            ok += 1;
        } else {
            failed += 1;
        }
        if close || !good {
            conn = None;
        }
    }
    (ok, failed)
}
