//! Assembling and running the Pingora server: the proxy service on the public listeners, the
//! admin service, and the background services (health checks, readiness).
//!
//! Pingora's own config is YAML; we build its `ServerConf` from our TOML so users meet one
//! format. [`start_in_background`] runs a whole Seawall inside the current process, which is how
//! the integration tests and `seawall demo` start it.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::{BackgroundService, background_service};
use pingora::services::listening::Service;

use crate::admin::Admin;
use crate::config::{self, Diagnostics};
use crate::drain::Draining;
use crate::proxy::Proxy;
use crate::state::State;

#[derive(Debug, Default, Clone)]
pub struct RunOptions {
    pub daemon: bool,
    /// Take the listening sockets over from a running Seawall (zero-downtime upgrade).
    pub upgrade: bool,
    /// Run the in-process variant (tests, several servers one after another in one process).
    ///
    /// Pingora's no-steal runtime finds its pools through a `thread_local::ThreadLocal`, whose
    /// slots are keyed by thread ids that are reused once a thread exits: a second server in the
    /// same process can find the first one's dead pools and its listeners exit at once. So the
    /// in-process variant uses the work-stealing runtime; a real process runs one server and
    /// keeps the cheaper no-steal runtime.
    pub in_process: bool,
}

/// Why Seawall did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config does not load: every problem, located (`seawall check` prints the same).
    #[error("{0}")]
    Config(Diagnostics),
    /// The state could not be set up: a queue's spool that cannot be opened, the fleet store.
    #[error("{0}")]
    State(#[from] crate::state::StateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A TLS listener's certificate or key (checked at load) could not be used at start.
    #[error("TLS listener {addr}: {message}")]
    Tls { addr: SocketAddr, message: String },
    #[error("cannot start the server thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Load the config and build the shared state, or return every problem found.
pub fn load_state(config_path: &Path) -> Result<Arc<State>, StartError> {
    let loaded = config::load(config_path).map_err(StartError::Config)?;
    for w in loaded.diagnostics.warnings() {
        tracing::warn!("{w}");
    }
    Ok(State::new(config_path.to_path_buf(), loaded.spec)?)
}

/// Check that every listener can bind, so a port in use is a clear error instead of a panic in
/// a Pingora service thread. Skipped on upgrade, where the old process holds the sockets.
pub fn preflight_bind(state: &State) -> Result<(), StartError> {
    let p = &state.process;
    let tls = p.tls.iter().map(|t| &t.addr);
    for addr in p
        .listen
        .iter()
        .chain(tls)
        .chain(std::iter::once(&p.admin_listen))
    {
        TcpListener::bind(addr).map_err(|source| StartError::Bind {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// Write buffer of each client connection. Pingora's default (1,460 bytes, one segment) sends a
/// response header and a small body in two writes; with 16 KiB a response of up to about 15 KiB
/// leaves in one, as nginx's does. Pingora flushes chunked and close-delimited bodies after
/// every chunk whatever this size, so streams are not held back; only bodies of known length
/// fill it before leaving.
const CLIENT_WRITE_BUFFER: usize = 16 * 1024;

/// The buffers of a plain-TCP client connection: the write buffer above and no read buffer.
/// Pingora's default puts a 64 KiB read buffer (zero-filled) in front of every connection. It
/// pays off under TLS, whose layer reads in small pieces; on plain TCP Pingora's HTTP/1 parser
/// reads into its own buffer anyway, so it held memory per connection and copied each request
/// once more. Public for the load tests' bare Pingora proxy, which uses the same.
pub fn plain_tcp_buffers() -> L4BufferSettings {
    L4BufferSettings::default()
        .read(0)
        .write(CLIENT_WRITE_BUFFER)
}

/// The buffers of a TLS client connection: Pingora's read buffer, the write buffer above.
fn tls_buffers() -> L4BufferSettings {
    L4BufferSettings::default().write(CLIENT_WRITE_BUFFER)
}

pub fn build(state: Arc<State>, opts: &RunOptions) -> Result<Server, StartError> {
    let p = &state.process;
    let conf = ServerConf {
        threads: p.threads,
        // Measured on this 2-core machine: ~17% less CPU per request than work stealing.
        work_stealing: opts.in_process,
        daemon: opts.daemon,
        upgrade_sock: p.upgrade_sock.display().to_string(),
        pid_file: p.pid_file.display().to_string(),
        grace_period_seconds: Some(p.grace_period.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();
    let conf = server.configuration.clone();

    let mut proxy = pingora::proxy::http_proxy(
        &conf,
        Proxy {
            state: state.clone(),
        },
    );
    proxy.server_options = Some(p.client.server_options());
    proxy.h2_options = Some(p.client.h2_options());
    let mut proxy = Service::new(
        "seawall proxy".to_string(),
        Draining::new(
            proxy,
            state.metrics.downstream_connections.clone(),
            p.client.header_timeout,
        ),
    );
    let open = state.metrics.downstream_connections.clone();
    let seen_empty = std::sync::atomic::AtomicBool::new(false);
    server.set_drained_check(move || crate::drain::drained(&open, &seen_empty));
    for addr in &p.listen {
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(plain_tcp_buffers()));
    }
    for t in &p.tls {
        // The files were checked at load; a failure here means they changed since.
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate(
            &t.cert.display().to_string(),
            &t.key.display().to_string(),
        )
        .map_err(|e| StartError::Tls {
            addr: t.addr,
            message: e.to_string(),
        })?;
        settings.enable_h2();
        proxy.add_listener(
            ListenerConfig::tcp(t.addr.to_string())
                .tls(settings)
                .l4_buffer(tls_buffers()),
        );
    }
    let mut admin = Service::new(
        "seawall admin".to_string(),
        HttpServer::new_app(Admin {
            state: state.clone(),
        }),
    );
    admin.add_tcp(&p.admin_listen.to_string());
    admin.threads = Some(1);

    server.add_service(proxy);
    server.add_service(admin);
    server.add_service(background_service(
        "health checks",
        HealthChecks {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "limiter upkeep",
        LimiterUpkeep {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "config watcher",
        crate::watch::Watcher {
            state: state.clone(),
        },
    ));
    server.add_service(background_service(
        "access log reopen",
        ReopenOnUsr1 {
            state: state.clone(),
        },
    ));
    server.add_service(background_service("readiness", Readiness { state }));
    Ok(server)
}

/// Runs every pool's health check when its interval is due, against the live snapshot, so
/// pools added by a reload are checked too.
struct HealthChecks {
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tick.tick() => {
                    let snap = self.state.snapshot.load_full();
                    let now = Instant::now();
                    let checks = snap.upstreams.values().map(|u| u.health_check_if_due(now));
                    futures::future::join_all(checks).await;
                }
            }
        }
    }
}

/// Every second: the tracked-keys gauges, campaign rates and canary windows (verdicts,
/// rollbacks, freezes), the console's history; every ten: forget drained idle keys (nginx's expiry), idle unregistered
/// tags and idle CSP host labels.
struct LimiterUpkeep {
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for LimiterUpkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use crate::limits::limiter::{Clock, MonotonicClock};
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                due = tick.tick() => {
                    n += 1;
                    let snap = self.state.snapshot.load_full();
                    let now = MonotonicClock.now_ms();
                    // The canary's windows close on the ticks' schedule, not on when a tick
                    // got to run: a tick a millisecond early in its second would otherwise miss
                    // a window's end and stretch it by a whole second.
                    let due_ms = now.saturating_sub(due.elapsed().as_millis() as u64);
                    let every_ten = n.is_multiple_of(10);
                    for limit in snap.limits() {
                        limit.upkeep(now, every_ten);
                    }
                    self.state.campaigns.tick(&snap.campaigns, &self.state.metrics);
                    self.state.canaries.tick(due_ms, self.state.wall_now());
                    self.state.console.tick(&self.state.metrics, &snap);
                    if every_ten {
                        self.state.campaigns.prune(now);
                        let gone = self.state.report_hosts.expire(now);
                        if !gone.is_empty() {
                            crate::metrics::remove_stale(&self.state.metrics.csp_violations, |l| {
                                !gone.iter().any(|g| g == crate::metrics::label(l, "blocked_host"))
                            });
                        }
                    }
                }
            }
        }
    }
}

/// SIGUSR1 reopens the access log file (logrotate's `postrotate`, as for nginx).
struct ReopenOnUsr1 {
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for ReopenOnUsr1 {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else {
            tracing::warn!("cannot listen for SIGUSR1; the access log cannot be reopened");
            return;
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                Some(()) = usr1.recv() => {
                    tracing::info!("SIGUSR1: reopening the access log");
                    self.state.access_log.reopen();
                }
            }
        }
    }
}

/// Flips `/-/ready` to 200 once every public listener accepts connections.
struct Readiness {
    state: Arc<State>,
}

#[async_trait]
impl BackgroundService for Readiness {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let p = &self.state.process;
        let plain = p.listen.len();
        let addrs: Vec<SocketAddr> = p
            .listen
            .iter()
            .chain(p.tls.iter().map(|t| &t.addr))
            .copied()
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut all_up = true;
            for (i, a) in addrs.iter().enumerate() {
                let probe = if a.ip().is_unspecified() {
                    let local: std::net::IpAddr = if a.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    };
                    SocketAddr::new(local, a.port())
                } else {
                    *a
                };
                let ok = if i < plain {
                    let connect = tokio::net::TcpStream::connect(probe);
                    matches!(
                        tokio::time::timeout(Duration::from_millis(200), connect).await,
                        Ok(Ok(_))
                    )
                } else {
                    // A real handshake: a bare connect would be logged as a failed one.
                    tokio::task::spawn_blocking(move || tls_probe(probe))
                        .await
                        .unwrap_or(false)
                };
                all_up &= ok;
            }
            if all_up {
                self.state.ready.store(true, Ordering::Release);
                crate::sd_notify::notify("READY=1\nSTATUS=listening");
                tracing::info!(listen = ?addrs, admin = %self.state.process.admin_listen, "seawall is ready");
                return;
            }
            if Instant::now() > deadline {
                tracing::error!(listen = ?addrs, "listeners did not come up within 60s; /-/ready stays 503");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Does a TLS listener complete a handshake? (Certificate not verified: it is our own.)
fn tls_probe(addr: SocketAddr) -> bool {
    use pingora::tls::ssl::{SslConnector, SslMethod, SslVerifyMode};
    let Ok(tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    let Ok(mut builder) = SslConnector::builder(SslMethod::tls()) else {
        return false;
    };
    builder.set_verify(SslVerifyMode::NONE);
    let connector = builder.build();
    match connector.configure() {
        Ok(cfg) => match cfg.verify_hostname(false).connect("localhost", tcp) {
            Ok(mut s) => {
                let _ = s.shutdown();
                true
            }
            Err(_) => false,
        },
        Err(_) => false,
    }
}

/// The signals of a real process. SIGQUIT and SIGTERM are Pingora's (hand the sockets to an
/// upgrade / drain gracefully). SIGINT exits at once: Pingora's own fast shutdown stops the
/// runtimes without first stopping the accept loops, and with the no-steal runtime that can
/// leave a process spinning on failed accepts, logging without end (seen in the campaign-spike
/// load test: about 1 time in 10).
pub struct ProcessSignals;

#[async_trait]
impl ShutdownSignalWatch for ProcessSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
            _ = term.recv() => ShutdownSignal::GracefulTerminate,
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping now");
                exit(130);
            }
        }
    }
}

/// What runs when the process exits: the access log's last lines, `seawall demo`'s temporary
/// config directory removed.
type ExitHook = Box<dyn FnOnce() + Send>;
static AT_EXIT: std::sync::Mutex<Vec<ExitHook>> = std::sync::Mutex::new(Vec::new());

/// Run `f` when this process exits through [`run_process`] or SIGINT.
pub fn at_exit(f: impl FnOnce() + Send + 'static) {
    AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Box::new(f));
}

/// Exit now, running the [`at_exit`] hooks first.
fn exit(code: i32) -> ! {
    let hooks: Vec<ExitHook> = AT_EXIT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .collect();
    for hook in hooks {
        hook();
    }
    std::process::exit(code)
}

/// Run a built server as this process until a signal ends it. `state` is the server's: its
/// access log is flushed on the way out.
pub fn run_process(server: Server, state: Arc<State>) -> ! {
    at_exit(move || {
        // Workers stop between deliveries; the stores close (what is queued stays on disk).
        state.background.run(state.queues.shutdown());
        if let Some(f) = &state.fleet {
            state.background.run(f.leave());
        }
        state.access_log.flush_and_stop();
    });
    server.run(RunArgs {
        shutdown_signal: Box::new(ProcessSignals),
    });
    exit(0)
}

/// A shutdown trigger for an in-process server (tests, demo).
struct Trigger(Arc<tokio::sync::Notify>);

#[async_trait]
impl ShutdownSignalWatch for Trigger {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// A Seawall running on a thread of this process.
pub struct Running {
    pub state: Arc<State>,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Wait until `/-/ready` would answer 200, or `timeout`.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.state.ready.load(Ordering::Acquire) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start Seawall from `config_path` on a background thread of this process.
pub fn start_in_background(config_path: &Path) -> Result<Running, StartError> {
    let state = load_state(config_path)?;
    preflight_bind(&state)?;
    let opts = RunOptions {
        in_process: true,
        ..RunOptions::default()
    };
    let server = build(state.clone(), &opts)?;
    let stop = Arc::new(tokio::sync::Notify::new());
    let trigger = Trigger(stop.clone());
    let thread = std::thread::Builder::new()
        .name("seawall".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(trigger),
            })
        })
        .map_err(StartError::Thread)?;
    Ok(Running {
        state,
        stop,
        thread: Some(thread),
    })
}
