//! TLS listeners with HTTP/2 by ALPN, and HTTP/2 towards an upstream.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Kit, TestUpstream, free_addr};

/// A self-signed certificate for `localhost` (Debian's openssl command, always on the image).
fn self_signed(dir: &Path, name: &str) -> (String, String) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl")
        .status
        .success();
    assert!(ok, "openssl req failed");
    (cert.display().to_string(), key.display().to_string())
}

fn https_client(cert_pem: &[u8], http1_only: bool, addr: std::net::SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem).unwrap())
        .resolve("localhost", addr);
    if http1_only {
        b = b.http1_only();
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_speaks_http2_and_http1_by_alpn() {
    let app = TestUpstream::start("app").await;
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path(), "edge");
    let tls_addr = free_addr();
    let sw = Kit::new()
        .server(&format!(
            "[[server.tls]]\nlisten = \"{tls_addr}\"\ncert = \"{cert}\"\nkey = \"{key}\""
        ))
        .start(&format!(
            "[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
            app.addr
        ));
    let pem = std::fs::read(&cert).unwrap();
    let url = format!("https://localhost:{}/secure", tls_addr.port());

    let r = https_client(&pem, false, tls_addr)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    assert_eq!(r.text().await.unwrap(), "app /secure");
    assert_eq!(app.last().header("x-forwarded-proto").unwrap(), "https");

    let r = https_client(&pem, true, tls_addr)
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.text().await.unwrap(), "app /secure");

    // The plain listener still serves plain HTTP.
    assert_eq!(sw.get("/plain").await.text().await.unwrap(), "app /plain");
    assert_eq!(app.last().header("x-forwarded-proto").unwrap(), "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_an_upstream_in_cleartext() {
    let app = TestUpstream::start("app").await;
    let sw = Kit::new().start(&format!(
        "[upstreams.app]\nservers = [\"{}\"]\nhttp2 = true\n[[routes]]\nname = \"r\"\nupstream = \"app\"\n",
        app.addr
    ));
    let r = sw.get("/h2").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "app /h2");
    assert_eq!(app.last().version, "HTTP/2.0");
}

#[test]
fn certificate_problems_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _key) = self_signed(dir.path(), "a");
    let (_cert_b, key_b) = self_signed(dir.path(), "b");
    std::fs::write(dir.path().join("notacert.pem"), "hello").unwrap();
    let main = dir.path().join("seawall.toml");
    std::fs::write(
        &main,
        format!(
            "[server]\nlisten = [\"127.0.0.1:8080\"]\n\
             [[server.tls]]\nlisten = \"127.0.0.1:8443\"\ncert = \"{cert}\"\nkey = \"{key_b}\"\n\
             [[server.tls]]\nlisten = \"127.0.0.1:8444\"\ncert = \"notacert.pem\"\nkey = \"{key_b}\"\n\
             [[server.tls]]\nlisten = \"127.0.0.1:8445\"\ncert = \"missing.pem\"\nkey = \"{key_b}\"\n"
        ),
    )
    .unwrap();
    let errs: Vec<String> = seawall::config::load(&main)
        .unwrap_err()
        .errors()
        .map(|d| {
            d.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
        .collect();
    assert_eq!(
        errs,
        [
            format!("seawall.toml:6:7: error: the key in {key_b} does not belong to the certificate in {cert}"),
            "seawall.toml:9:8: error: notacert.pem holds no PEM certificate".to_string(),
            "seawall.toml:13:8: error: cannot read missing.pem: No such file or directory (os error 2)".to_string(),
        ]
        .map(|e| e.replace(&format!("{}/", dir.path().display()), ""))
    );
}
