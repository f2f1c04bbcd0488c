//! Helpers for `load-tests/vs-nginx` (not part of Seawall; run by that script).
//!
//! - `upstream`: the small fast upstream every proxy forwards to (`shared/upstream.rs`).
//! - `bench`: the throughput / CPU / latency / memory comparison (`vs_nginx/bench.rs`).
//! - `drive`: a fixed number of requests (`shared/drive.rs`), for counting instructions.
//! - `free-ports N`: prints N free 127.0.0.1 ports.
//! - `bare-pingora`: a Pingora proxy with nothing in its phases (one upstream, keep-alive), with
//!   the thread settings, client-connection buffers and allocator Seawall uses: what Pingora
//!   itself costs per request, before any of Seawall's work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[path = "vs_nginx/bench.rs"]
mod bench;
#[path = "shared/chart.rs"]
mod chart;
#[path = "shared/drive.rs"]
mod drive;
#[path = "shared/loadgen.rs"]
mod loadgen;
#[path = "shared/upstream.rs"]
mod upstream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once at start: the size of the arguments does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    Upstream {
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[arg(long, default_value_t = 1000)]
        body_bytes: usize,
    },
    Bench(bench::BenchArgs),
    /// Sends exactly `requests` requests and waits for their answers; exits 1 unless every
    /// one was answered 200.
    Drive {
        addr: SocketAddr,
        #[arg(long)]
        requests: u64,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// `Connection: close` on every request: each on a connection of its own.
        #[arg(long)]
        close: bool,
        #[arg(long, default_value = "/")]
        path: String,
        /// Seconds after which the run gives up (what is unanswered then failed).
        #[arg(long, default_value_t = 600.0)]
        deadline: f64,
    },
    FreePorts {
        n: usize,
    },
    BarePingora {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        upstream: SocketAddr,
        /// A TLS listener too (HTTP/2 and HTTP/1.1 by ALPN), with this certificate and key.
        #[arg(long, requires_all = ["cert", "key"])]
        tls_port: Option<u16>,
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn main() {
    match Cli::parse().cmd {
        Cmd::Upstream {
            port,
            threads,
            body_bytes,
        } => upstream::run(port, threads, body_bytes),
        Cmd::FreePorts { n } => loadgen::print_free_ports(n),
        Cmd::Bench(a) => std::process::exit(bench::run(a)),
        Cmd::Drive {
            addr,
            requests,
            connections,
            close,
            path,
            deadline,
        } => {
            let d = drive::drive(
                addr,
                &path,
                connections,
                requests,
                close,
                Duration::from_secs_f64(deadline),
            );
            println!(
                "{} answered 200, {} failed, in {:.1} s ({:.0} r/s)",
                d.ok,
                d.failed,
                d.seconds,
                d.ok as f64 / d.seconds
            );
            std::process::exit(i32::from(d.failed > 0 || d.ok != requests));
        }
        Cmd::BarePingora {
            port,
            upstream,
            tls_port,
            cert,
            key,
        } => {
            let tls = tls_port.zip(cert.zip(key)).map(|(p, (c, k))| (p, c, k));
            bare::run(port, upstream, tls)
        }
    }
}

/// Seawall's allocator, so that `bare-pingora` differs from Seawall only in the proxy phases.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare {
    use std::net::SocketAddr;
    use std::path::PathBuf;

    use async_trait::async_trait;
    use pingora::listeners::tls::TlsSettings;
    use pingora::listeners::{L4BufferSettings, ListenerConfig};
    use pingora::proxy::{ProxyHttp, Session};
    use pingora::server::Server;
    use pingora::server::configuration::{Opt, ServerConf};
    use pingora::upstreams::peer::HttpPeer;

    struct Bare {
        upstream: SocketAddr,
    }

    #[async_trait]
    impl ProxyHttp for Bare {
        type CTX = ();
        fn new_ctx(&self) {}
        async fn upstream_peer(
            &self,
            _session: &mut Session,
            _ctx: &mut (),
        ) -> pingora::Result<Box<HttpPeer>> {
            Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
        }
    }

    /// One thread and no work stealing, as `seawall run` with `threads = 1` has.
    pub fn run(port: u16, upstream: SocketAddr, tls: Option<(u16, PathBuf, PathBuf)>) {
        let conf = ServerConf {
            threads: 1,
            work_stealing: false,
            // SIGTERM (the script's stop) ends it at once rather than after Pingora's grace.
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(1),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
        server.bootstrap();
        let mut proxy =
            pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream });
        // The same client-connection buffers as Seawall's, so that the difference is its features.
        proxy.add_listener(
            ListenerConfig::tcp(format!("127.0.0.1:{port}"))
                .l4_buffer(seawall::server::plain_tcp_buffers()),
        );
        if let Some((port, cert, key)) = tls {
            let mut settings =
                TlsSettings::intermediate(&cert.display().to_string(), &key.display().to_string())
                    .expect("TLS certificate and key");
            settings.enable_h2();
            // Seawall's TLS listeners: Pingora's read buffer, a 16 KiB write buffer.
            proxy.add_listener(
                ListenerConfig::tcp(format!("127.0.0.1:{port}"))
                    .tls(settings)
                    .l4_buffer(L4BufferSettings::default().write(16 * 1024)),
            );
        }
        server.add_service(proxy);
        server.run_forever();
    }
}
