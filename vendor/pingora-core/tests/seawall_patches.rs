//! Seawall's patches to the HTTP/1 server session, over a real loopback TCP connection:
//! the header timeout, the keep-alive timeout kept past a request, the configurable header
//! bound (431), and strict request lines; and to the reuse of pooled upstream connections
//! (`mod reuse`: the digest's cached peer address instead of a getpeername() per reuse); and the
//! HTTP/1 keep-alive loop awaiting each request's future in place (`mod in_place`).

use std::time::{Duration, Instant};

use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4;
use pingora_error::ErrorType;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A server session on one end of a fresh loopback connection, and the client end.
async fn pair() -> (ServerSession, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let server: L4 = accepted.unwrap().0.into();
    (ServerSession::new_http1(Box::new(server)), client.unwrap())
}

#[tokio::test]
async fn a_dripped_header_fails_at_the_header_timeout() {
    let (mut session, mut client) = pair().await;
    session.set_keepalive(Some(60));
    session.set_header_timeout(Some(Duration::from_millis(300)));
    let drip = tokio::spawn(async move {
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        for i in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if client
                .write_all(format!("X-{i}: x\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let from = Instant::now();
    let e = session.read_request().await.unwrap_err();
    let took = from.elapsed();
    assert_eq!(e.etype(), &ErrorType::ReadTimedout, "{e}");
    // Each read came well within the 60 s keep-alive timeout; the header as a whole did not.
    assert!(took < Duration::from_secs(2), "took {took:?}");
    drip.abort();
}

#[tokio::test]
async fn a_header_within_the_timeout_is_read() {
    let (mut session, mut client) = pair().await;
    session.set_header_timeout(Some(Duration::from_secs(5)));
    client
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let rest = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client.write_all(b"\r\n").await.unwrap();
        client
    });
    assert!(session.read_request().await.unwrap());
    assert_eq!(session.req_header().uri.path(), "/x");
    drop(rest.await);
}

#[tokio::test]
async fn the_servers_keepalive_timeout_outlives_the_request() {
    let (mut session, mut client) = pair().await;
    session.set_keepalive(Some(7));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(session.read_request().await.unwrap());
    // Unpatched: Some(0), "no timeout", for every HTTP/1.1 request that does not say close.
    assert_eq!(session.get_keepalive(), Some(7));

    let (mut session, mut client) = pair().await;
    session.set_keepalive(Some(7));
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    assert!(session.read_request().await.unwrap());
    assert_eq!(session.get_keepalive(), None, "the client's close wins");
}

#[tokio::test]
async fn a_header_over_the_bound_is_a_431() {
    for size in [2_000, 100_000] {
        let (mut session, client) = pair().await;
        session.set_max_header_size(1024);
        let request = format!("GET / HTTP/1.1\r\nCookie: {}\r\n\r\n", "c".repeat(size));
        let writer = tokio::spawn(async move {
            let mut client = client;
            let _ = client.write_all(request.as_bytes()).await;
            client
        });
        let e = session.read_request().await.unwrap_err();
        assert_eq!(e.etype(), &ErrorType::HTTPStatus(431), "{size}: {e}");
        writer.abort();
    }
    let (mut session, mut client) = pair().await;
    session.set_max_header_size(1024);
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(session.read_request().await.unwrap());
}

#[tokio::test]
async fn a_raw_space_in_the_target_is_refused_when_asked() {
    let (mut session, mut client) = pair().await;
    session.set_reject_invalid_request_line(true);
    client
        .write_all(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let e = session.read_request().await.unwrap_err();
    assert_eq!(e.etype(), &ErrorType::InvalidHTTPHeader, "{e}");

    // Pingora's default is unchanged: the target is percent-encoded and the request goes on.
    let (mut session, mut client) = pair().await;
    client
        .write_all(b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert!(session.read_request().await.unwrap());
    assert_eq!(session.req_header().uri.path(), "/a%20b");
}

// Reuse of pooled upstream connections: the peer address cached in the stream's SocketDigest
// decides, not a getpeername() system call on every reuse.

#[cfg(unix)]
mod reuse {
    use std::net::SocketAddr as Inet;
    use std::os::unix::io::AsRawFd;
    use std::sync::Arc;

    use pingora_core::connectors::TransportConnector;
    use pingora_core::protocols::l4::socket::SocketAddr;
    use pingora_core::protocols::l4::stream::Stream as L4;
    use pingora_core::protocols::{GetSocketDigest, SocketDigest, Stream};
    use pingora_core::upstreams::peer::{BasicPeer, HttpPeer, Peer};
    use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
    use tokio::task::JoinHandle;

    /// A loopback listener that accepts and holds every connection (an idle upstream).
    async fn upstream() -> (Inet, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.unwrap().0);
            }
        });
        (addr, task)
    }

    fn peer(addr: Inet) -> BasicPeer {
        BasicPeer::new(&addr.to_string())
    }

    /// A connection to `to` whose digest caches `cached` as its peer (`None`: left for a
    /// lazy getpeername), or with no digest at all (`digest` false).
    async fn stream_to(
        to: Inet,
        cached: Option<SocketAddr>,
        digest: bool,
    ) -> (Stream, Option<Arc<SocketDigest>>) {
        let tcp = TcpStream::connect(to).await.unwrap();
        let fd = tcp.as_raw_fd();
        let mut l4: L4 = tcp.into();
        if digest {
            let d = SocketDigest::from_raw_fd(fd);
            if let Some(addr) = cached {
                d.peer_addr.set(Some(addr)).unwrap();
            }
            l4.set_socket_digest(d);
        }
        let d = l4.get_socket_digest();
        (Box::new(l4), d)
    }

    /// Pool `stream` under `peer`'s reuse hash, then ask the pool for a stream to `peer`.
    async fn pool_and_reuse<P: Peer + Send + Sync>(
        connector: &TransportConnector,
        stream: Stream,
        peer: &P,
    ) -> Option<Stream> {
        connector.release_stream(stream, peer.reuse_hash(), None);
        connector.reused_stream(peer).await
    }

    #[tokio::test]
    async fn a_pooled_stream_is_reused_for_its_peer() {
        let (addr, up) = upstream().await;
        let peer = peer(addr);
        let connector = TransportConnector::new(None);
        let stream = connector.new_stream(&peer).await.unwrap();
        // Filled at connect, from the address connected to: reuse needs no getpeername at all.
        let digest = stream.get_socket_digest().unwrap();
        assert_eq!(digest.peer_addr.get(), Some(&Some(SocketAddr::Inet(addr))));
        let stream = pool_and_reuse(&connector, stream, &peer)
            .await
            .expect("first reuse");
        pool_and_reuse(&connector, stream, &peer)
            .await
            .expect("second reuse");
        up.abort();
    }

    #[tokio::test]
    async fn a_pooled_stream_to_another_address_is_refused() {
        // Two peers whose reuse hashes collide: the address check is what refuses the stream.
        let (addr, up) = upstream().await;
        let (other, other_up) = upstream().await;
        let connector = TransportConnector::new(None);
        let stream = connector.new_stream(&peer(addr)).await.unwrap();
        connector.release_stream(stream, peer(other).reuse_hash(), None);
        assert!(connector.reused_stream(&peer(other)).await.is_none());
        up.abort();
        other_up.abort();
    }

    #[tokio::test]
    async fn the_cached_peer_address_decides_not_getpeername() {
        let (addr, up) = upstream().await;
        let (other, other_up) = upstream().await;
        let connector = TransportConnector::new(None);
        // Connected to `addr`, but the digest says `other`: refused for `addr` (unpatched, the
        // kernel's answer, `addr`, accepted it)...
        let (stream, _) = stream_to(addr, Some(SocketAddr::Inet(other)), true).await;
        assert!(pool_and_reuse(&connector, stream, &peer(addr))
            .await
            .is_none());
        // ... and taken for `other`: the kernel was not asked (unpatched: refused).
        let (stream, _) = stream_to(addr, Some(SocketAddr::Inet(other)), true).await;
        assert!(pool_and_reuse(&connector, stream, &peer(other))
            .await
            .is_some());
        up.abort();
        other_up.abort();
    }

    #[tokio::test]
    async fn an_empty_digest_asks_the_kernel_once_and_keeps_the_answer() {
        let (addr, up) = upstream().await;
        let connector = TransportConnector::new(None);
        let (stream, digest) = stream_to(addr, None, true).await;
        let digest = digest.unwrap();
        assert!(digest.peer_addr.get().is_none());
        let stream = pool_and_reuse(&connector, stream, &peer(addr))
            .await
            .expect("reused");
        // One getpeername, cached for every later reuse of this connection.
        assert_eq!(digest.peer_addr.get(), Some(&Some(SocketAddr::Inet(addr))));
        pool_and_reuse(&connector, stream, &peer(addr))
            .await
            .expect("reused again");
        up.abort();
    }

    #[tokio::test]
    async fn without_a_digest_the_fd_is_checked_as_before() {
        let (addr, up) = upstream().await;
        let (other, other_up) = upstream().await;
        let connector = TransportConnector::new(None);
        let (stream, _) = stream_to(addr, None, false).await;
        assert!(pool_and_reuse(&connector, stream, &peer(addr))
            .await
            .is_some());
        let (stream, _) = stream_to(addr, None, false).await;
        assert!(pool_and_reuse(&connector, stream, &peer(other))
            .await
            .is_none());
        up.abort();
        other_up.abort();
    }

    #[tokio::test]
    async fn a_proxied_http_peer_is_matched_against_its_next_hop() {
        let path = std::env::temp_dir().join(format!("seawall-reuse-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let up = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                held.push(listener.accept().await.unwrap().0);
            }
        });
        let peer = HttpPeer::new_proxy(
            path.to_str().unwrap(),
            "192.0.2.1".parse().unwrap(),
            80,
            false,
            "",
            Default::default(),
        );
        let connector = TransportConnector::new(None);
        let next_hop =
            SocketAddr::Unix(std::os::unix::net::SocketAddr::from_pathname(&path).unwrap());
        for (cached, reused) in [(next_hop, true), (peer.address().clone(), false)] {
            let uds = UnixStream::connect(&path).await.unwrap();
            let d = SocketDigest::from_raw_fd(uds.as_raw_fd());
            d.peer_addr.set(Some(cached.clone())).unwrap();
            let mut l4: L4 = uds.into();
            l4.set_socket_digest(d);
            let got = pool_and_reuse(&connector, Box::new(l4), &peer).await;
            assert_eq!(got.is_some(), reused, "digest says {cached}");
        }
        up.abort();
        let _ = std::fs::remove_file(&path);
    }
}

/// `ServerApp::process_new`'s keep-alive loop serves each request through
/// `HttpServerApp::process_new_http_in_place`: an app's unboxed override when it has one, its
/// boxed `process_new_http` otherwise.
mod in_place {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use bytes::Bytes;
    use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp};
    use pingora_core::protocols::http::ServerSession;
    use pingora_core::protocols::l4::stream::Stream as L4;
    use pingora_core::server::ShutdownWatch;
    use pingora_http::ResponseHeader;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Answer one request `200 ok`, and hand the connection back for the next.
    async fn answer(mut session: ServerSession) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("Content-Length", "2").unwrap();
        session.write_response_header(Box::new(resp)).await.ok()?;
        session
            .write_response_body(Bytes::from_static(b"ok"), true)
            .await
            .ok()?;
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok()??;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    #[derive(Default)]
    struct Calls {
        boxed: AtomicUsize,
        in_place: AtomicUsize,
    }

    /// An app with only the boxed `process_new_http` (the default `_in_place`).
    #[derive(Default)]
    struct Boxed(Calls);

    #[async_trait]
    impl HttpServerApp for Boxed {
        async fn process_new_http(
            self: &Arc<Self>,
            session: ServerSession,
            _shutdown: &ShutdownWatch,
        ) -> Option<ReusedHttpStream> {
            self.0.boxed.fetch_add(1, Ordering::SeqCst);
            answer(session).await
        }
    }

    /// An app that hands out its request future unboxed, as pingora-proxy's `HttpProxy` does.
    #[derive(Default)]
    struct InPlace(Calls);

    #[async_trait]
    impl HttpServerApp for InPlace {
        async fn process_new_http(
            self: &Arc<Self>,
            session: ServerSession,
            _shutdown: &ShutdownWatch,
        ) -> Option<ReusedHttpStream> {
            self.0.boxed.fetch_add(1, Ordering::SeqCst);
            answer(session).await
        }

        fn process_new_http_in_place<'a>(
            self: &'a Arc<Self>,
            session: ServerSession,
            _shutdown: &'a ShutdownWatch,
        ) -> impl Future<Output = Option<ReusedHttpStream>> + Send + 'a
        where
            Self: Sync + 'a,
        {
            self.0.in_place.fetch_add(1, Ordering::SeqCst);
            answer(session)
        }
    }

    /// Serve one connection with `app` through `ServerApp::process_new` while a client sends
    /// three keep-alive requests on it, each answered before the next is sent.
    async fn three_requests_on_one_connection<A>(app: Arc<A>) -> Arc<A>
    where
        A: HttpServerApp + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let stream: L4 = accepted.unwrap().0.into();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let server = {
            let app = app.clone();
            tokio::spawn(async move { app.process_new(Box::new(stream), &shutdown).await })
        };
        for i in 0..3 {
            client
                .write_all(format!("GET /{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut got = Vec::new();
            while !got.ends_with(b"\r\n\r\nok") {
                let mut buf = [0u8; 512];
                let n = client.read(&mut buf).await.unwrap();
                assert!(n > 0, "connection closed after {i} answers: {got:?}");
                got.extend_from_slice(&buf[..n]);
            }
            assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
        }
        drop(client);
        // The client's close ends the loop: the connection is not handed back.
        assert!(server.await.unwrap().is_none());
        app
    }

    #[tokio::test]
    async fn an_app_with_an_in_place_future_serves_every_request_through_it() {
        let app = three_requests_on_one_connection(Arc::new(InPlace::default())).await;
        // Three answered, plus the read that found the connection closed.
        assert_eq!(app.0.in_place.load(Ordering::SeqCst), 4);
        assert_eq!(app.0.boxed.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_app_without_one_is_served_through_process_new_http() {
        let app = three_requests_on_one_connection(Arc::new(Boxed::default())).await;
        assert_eq!(app.0.boxed.load(Ordering::SeqCst), 4);
        assert_eq!(app.0.in_place.load(Ordering::SeqCst), 0);
    }
}
