//! Seawall's patches to the HTTP/1 server session, over a real loopback TCP connection:
//! the header timeout, the keep-alive timeout kept past a request, the configurable header
//! bound (431), and strict request lines.

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
