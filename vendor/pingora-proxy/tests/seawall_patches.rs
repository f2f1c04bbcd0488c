//! Seawall's `ProxyHttp::request_header_error` hook: a request whose header cannot be read is
//! handed to the app, which answers it, instead of Pingora's bare 400.

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
