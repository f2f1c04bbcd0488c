//! Diagnostics logging with `tracing` on stderr. Pingora's `log` records are bridged in by
//! tracing-subscriber's `tracing-log` feature, so one filter (`SEAWALL_LOG`) governs both.

use tracing_subscriber::EnvFilter;

/// Default filter: our own info lines, Pingora's warnings and errors only (its info lines
/// narrate every service start). Pingora's connector pool logs "failed to acquire reusable
/// stream" at ERROR whenever a pooled upstream connection had closed and a new one is made
/// (harmless, about ten a second under load): it is silenced; real connection failures are
/// still logged by the proxy and counted in `seawall_upstream_requests_total`.
pub const DEFAULT_FILTER: &str = "info,pingora_core=warn,pingora_proxy=warn,pingora_load_balancing=warn,notify=warn,notify_debouncer_full=warn,pingora_core::connectors=off";

/// Install the subscriber once; later calls (several servers in one test process) are no-ops.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("SEAWALL_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
