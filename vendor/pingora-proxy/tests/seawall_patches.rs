//! Seawall's `ProxyHttp::request_header_error` hook: a request whose header cannot be read is
//! handed to the app, which answers it, instead of Pingora's bare 400. And (`mod hop_by_hop`)
//! the upstream request's hop-by-hop fields, stripped as before now that a request without any
//! skips the removals.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora_core::apps::HttpServerApp;
use pingora_core::protocols::http::ServerSession;
use pingora_core::protocols::l4::stream::Stream as L4;
use pingora_core::server::configuration::ServerConf;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_error::{Error, ErrorType, Result};
use pingora_http::ResponseHeader;
use pingora_proxy::{http_proxy, ProxyHttp, Session};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct App {
    seen: Arc<Mutex<Vec<ErrorType>>>,
}

#[async_trait]
impl ProxyHttp for App {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Error::e_explain(ErrorType::InternalError, "no upstream in this test")
    }

    async fn request_header_error(&self, session: &mut ServerSession, e: &Error) {
        self.seen.lock().unwrap().push(e.etype().clone());
        let mut h = ResponseHeader::build(400, None).unwrap();
        h.insert_header("x-answered-by", "app").unwrap();
        h.insert_header("content-length", "4").unwrap();
        session
            .write_error_response(h, bytes::Bytes::from_static(b"mine"))
            .await
            .unwrap();
    }
}

/// Run one connection through the proxy app with `request` from the client; the client's view.
async fn serve(app: Arc<pingora_proxy::HttpProxy<App>>, request: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let mut client = client.unwrap();
    let server: L4 = accepted.unwrap().0.into();
    let (_tx, shutdown) = tokio::sync::watch::channel(false);
    client.write_all(request).await.unwrap();
    let served = app.process_new_http(ServerSession::new_http1(Box::new(server)), &shutdown);
    assert!(served.await.is_none(), "the connection is not reused");
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn an_unreadable_header_goes_to_the_app() {
    let conf = Arc::new(ServerConf::default());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Arc::new(http_proxy(&conf, App { seen: seen.clone() }));
    let answer = serve(
        app.clone(),
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.to_lowercase().contains("x-answered-by: app"),
        "{answer}"
    );
    assert!(answer.ends_with("mine"), "{answer}");
    assert!(
        !answer.to_lowercase().contains("server: pingora"),
        "{answer}"
    );
    assert_eq!(*seen.lock().unwrap(), [ErrorType::InvalidHTTPHeader]);
}

mod hop_by_hop {
    use std::net::SocketAddr;

    use super::*;

    /// A proxy to one upstream, with the default upstream request policy.
    struct To(SocketAddr);

    #[async_trait]
    impl ProxyHttp for To {
        type CTX = ();
        fn new_ctx(&self) {}

        async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
            Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
        }
    }

    /// Send `fields` in a GET through the proxy to a real upstream; the upstream's view of the
    /// request's field names, lowercased, in order.
    async fn forwarded(fields: &str) -> Vec<String> {
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up_addr = upstream.local_addr().unwrap();
        let seen = tokio::spawn(async move {
            let (mut conn, _) = upstream.accept().await.unwrap();
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut buf = [0u8; 1024];
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the proxy closed before the end of the header");
                head.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            let head = String::from_utf8(head).unwrap();
            head.split("\r\n")
                .skip(1)
                .filter(|l| !l.is_empty())
                .map(|l| l.split(':').next().unwrap().to_ascii_lowercase())
                .collect::<Vec<_>>()
        });

        let conf = Arc::new(ServerConf::default());
        let app = Arc::new(http_proxy(&conf, To(up_addr)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let mut client = client.unwrap();
        let server: L4 = accepted.unwrap().0.into();
        let request = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Kept: 1\r\n{fields}\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let (_tx, shutdown) = tokio::sync::watch::channel(false);
        let proxied = tokio::spawn(async move {
            app.process_new_http(ServerSession::new_http1(Box::new(server)), &shutdown)
                .await
                .is_some()
        });
        let mut answer = Vec::new();
        while !answer.ends_with(b"ok") {
            let mut buf = [0u8; 1024];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer: {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
        drop(client);
        let _ = proxied.await;
        seen.await.unwrap()
    }

    #[tokio::test]
    async fn a_request_without_hop_by_hop_fields_is_forwarded_whole() {
        let seen = forwarded("Accept: */*\r\nX-Custom: y\r\n").await;
        for name in ["host", "x-kept", "accept", "x-custom"] {
            assert!(seen.iter().any(|n| n == name), "{name} not forwarded: {seen:?}");
        }
    }

    #[tokio::test]
    async fn each_hop_by_hop_field_is_stripped_alone() {
        for field in [
            "Keep-Alive: timeout=5",
            "Proxy-Connection: keep-alive",
            "Proxy-Authenticate: Basic",
            "Proxy-Authorization: Basic eDp5",
            "TE: trailers",
            "Trailer: X-Sum",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA",
        ] {
            let name = field.split(':').next().unwrap().to_ascii_lowercase();
            let seen = forwarded(&format!("{field}\r\n")).await;
            assert!(!seen.contains(&name), "{field}: forwarded {seen:?}");
            assert!(seen.iter().any(|n| n == "x-kept"), "{field}: {seen:?}");
        }
    }

    #[tokio::test]
    async fn connection_and_the_fields_it_nominates_are_stripped() {
        let seen = forwarded("Connection: X-Hop\r\nX-Hop: 1\r\n").await;
        assert!(!seen.iter().any(|n| n == "connection" || n == "x-hop"), "{seen:?}");
        assert!(seen.iter().any(|n| n == "x-kept"), "{seen:?}");
    }
}
