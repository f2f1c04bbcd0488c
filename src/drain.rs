//! The proxy's client connections across a drain (SIGQUIT hand-over to a new binary, SIGTERM).
//!
//! When a drain begins Pingora stops accepting, then wakes every connection waiting for a
//! request and closes it. That is right for an idle keep-alive connection, but it also closes a
//! connection it accepted a moment earlier whose first request is still on the wire: the client
//! sent its request to a live socket and gets the connection closed instead of an answer (the
//! upgrade test saw 1 request in 4,356 lost this way). The listening socket itself is handed
//! over, so connections not yet accepted are served by the new process.
//!
//! [`Draining`] wraps the proxy's app and hands a new connection to Pingora only once its first
//! byte has arrived. A connection still waiting when the drain begins is not among those Pingora
//! closes: its request is answered (with `Connection: close`) if it arrives within
//! `grace_period`, after which the process exits. Pingora reads whatever of a request has arrived
//! before it looks at the drain, so only a request whose head is split across packets and
//! straddles the start of the drain can still be lost. TLS streams cannot be peeked: they go to
//! Pingora at once, after the handshake (a TLS 1.3 client sends its request right behind its
//! last handshake message, so it is normally there already).
//!
//! The cost, one more `recv` and a timer per new connection: 2.5k instructions, 1.5% of a request
//! on a new connection (`load-tests/vs-nginx --instructions --new-connections`, docs/performance.md).
//!
//! [`drained`] ends the drain early: Pingora alone waits out the whole grace period
//! even with nothing in flight (every `systemctl restart` refused connections for 5-6 s). Once
//! Pingora has closed the idle connections, every connection still open is serving a request
//! or may still receive one (accepted, silent); when none is left the process can exit. The
//! vendored pingora-core polls it (`Server::set_drained_check`, patch marked "Seawall:").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::IntGauge;

pub struct Draining<A> {
    app: Arc<A>,
    /// Accepted connections whose first byte has not arrived.
    waiting: AtomicUsize,
    /// `seawall_downstream_connections`.
    open: IntGauge,
    /// How long a new connection may take to send its first byte (`[server] header_timeout`,
    /// as nginx's `client_header_timeout` bounds it).
    first_byte_timeout: Duration,
}

impl<A> Draining<A> {
    pub fn new(app: A, open: IntGauge, first_byte_timeout: Duration) -> Draining<A> {
        Draining {
            app: Arc::new(app),
            waiting: AtomicUsize::new(0),
            open,
            first_byte_timeout,
        }
    }
}

/// Whether a drain has nothing left to finish: no client connection is open. Asked only after
/// the drain began (Pingora has stopped accepting and closed the idle connections). A
/// connection the accept loop took just before it stopped is counted a moment later, when its
/// task starts: so `drained` must hold on two checks in a row (Pingora's are 10 ms apart).
pub fn drained(open: &IntGauge, seen_empty: &AtomicBool) -> bool {
    let empty = open.get() <= 0;
    let before = seen_empty.swap(empty, Ordering::AcqRel);
    empty && before
}

/// Counts a connection in `open` while it lives.
struct Open<'a>(&'a IntGauge);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts a connection in `waiting` until its first byte arrives (or it ends).
struct Waiting<'a, A>(&'a Draining<A>);

impl<A> Drop for Waiting<'_, A> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for Draining<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.open.inc();
        let _open = Open(&self.open);
        {
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let _waiting = Waiting(self);
            let mut first = [0u8; 1];
            // The byte stays in the stream for Pingora to read. Unsupported (TLS): Ok(false) at
            // once. Closed, reset or silent for too long: Pingora would close it too. Pingora's
            // timer (a shared millisecond wheel, as for its own reads) costs less than a tokio
            // timer per connection: 2.5k instructions for the peek against 4.3k.
            match pingora::time::timeout(self.first_byte_timeout, stream.try_peek(&mut first)).await
            {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return None,
            }
        }
        self.app.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        tracing::info!(
            connections = self.open.get(),
            waiting_for_request = self.waiting.load(Ordering::Relaxed),
            "draining: idle connections close now, requests still to come get an answer until the grace period ends"
        );
        self.app.cleanup().await;
    }
}
