//! The config loader over all three files, then the snapshot build a reload does.
//!
//! The input is `seawall.toml`, `csp.toml` and `campaigns.toml` separated by NUL bytes (NUL is
//! never valid in TOML text, so no file needs it). Properties: `config::load` never panics; a
//! refusal carries at least one located error; on success `snapshot::build` and the reload's
//! change description never panic either. Snapshots are built on the previous one, with one
//! limiter registry, campaign stats and metrics for the whole run, as reloads of one process
//! are: pools carried over, limits retained and forgotten, series removed.
#![no_main]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use seawall::campaign::stats::Stats;
use seawall::config::Severity;
use seawall::limits::Registry;
use seawall::metrics::Metrics;
use seawall::snapshot::{self, Bindings, Snapshot};

struct Process {
    dir: tempfile::TempDir,
    limits: Registry,
    stats: Stats,
    canaries: seawall::canary::Registry,
    metrics: Metrics,
    previous: Mutex<Option<Snapshot>>,
}

fn process() -> &'static Process {
    static P: OnceLock<Process> = OnceLock::new();
    P.get_or_init(|| Process {
        dir: tempfile::tempdir().unwrap(),
        limits: Registry::default(),
        stats: Stats::default(),
        canaries: Default::default(),
        metrics: Metrics::new(),
        previous: Mutex::new(None),
    })
}

const FILES: [&str; 3] = ["seawall.toml", "csp.toml", "campaigns.toml"];

fuzz_target!(|data: &[u8]| {
    // A config may name any file to read (csp_file, TLS keys, the admin token): keep the run
    // off devices and kernel files, which never end (/dev/zero) or block (a FIFO).
    let names_special = ["/dev", "/proc", "/sys"]
        .iter()
        .any(|p| data.windows(p.len()).any(|w| w == p.as_bytes()));
    if names_special {
        return;
    }
    let p = process();
    let mut parts = data.splitn(3, |&b| b == 0);
    for name in FILES {
        std::fs::write(p.dir.path().join(name), parts.next().unwrap_or_default()).unwrap();
    }
    let main = p.dir.path().join(FILES[0]);
    match seawall::config::load(&main) {
        Ok(loaded) => {
            assert!(!loaded.diagnostics.has_errors(), "{}", loaded.diagnostics);
            let b = Bindings {
                limits: &p.limits,
                campaigns: &p.stats,
                canaries: &p.canaries,
                fleet: None,
                metrics: &p.metrics,
            };
            let mut previous = p.previous.lock().unwrap();
            let snap = snapshot::build(loaded.spec, previous.as_ref(), &b);
            if let Some(old) = previous.as_ref() {
                let _ = seawall::diff::describe(old, &snap);
            }
            *previous = Some(snap);
        }
        Err(diags) => {
            assert!(diags.has_errors(), "refused without an error: {diags}");
            for d in diags.items.iter().filter(|d| d.severity == Severity::Error) {
                assert!(d.line >= 1 && d.col >= 1, "{d}");
                assert!(!d.message.is_empty(), "{d}");
            }
        }
    }
});
