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

/// `s` cut to at most `max` bytes (at a character boundary), with `...` when it was longer: every
/// log field that carries client input goes through it, so one request cannot write a
/// megabyte-long log line.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}...", &s[..end]))
}

/// How long a client-supplied log field may be (paths, tags as sent, report fields).
pub const FIELD_MAX: usize = 256;

/// At most one log line per interval from one place (a limit's dry-run rejects, violation
/// reports), and a count of the lines it stood in for. Cheap enough for the request path: one
/// relaxed load when it stays quiet.
#[derive(Debug, Default)]
pub struct Throttle {
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl Throttle {
    /// `Some(n)`: log now, and say that `n` lines were left out since the last one. `None`: stay
    /// quiet (counted).
    pub fn allow(&self, now_ms: u64, every_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let last = self.last_ms.load(Relaxed);
        if now_ms.saturating_sub(last) < every_ms
            || self
                .last_ms
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;

    #[test]
    fn fields_are_cut_at_a_character_boundary() {
        assert_eq!(super::cut("short", 10), "short");
        assert_eq!(super::cut("abcdef", 3), "abc...");
        assert_eq!(super::cut("ééé", 3), "é...");
    }

    #[test]
    fn one_line_per_interval_with_the_count_it_stands_for() {
        let t = Throttle::default();
        assert_eq!(t.allow(10_000, 1000), Some(0));
        assert_eq!(t.allow(10_500, 1000), None);
        assert_eq!(t.allow(10_999, 1000), None);
        assert_eq!(t.allow(11_000, 1000), Some(2));
        assert_eq!(t.allow(11_001, 1000), None);
    }
}
