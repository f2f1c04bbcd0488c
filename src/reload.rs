//! One reload path: load all three files, validate and compile them off the request path, then
//! swap the snapshot in a single store. A bad config is rejected whole and the old one stays.
//!
//! Three triggers call [`reload`]: `POST /-/reload`, SIGHUP and a change to any of the three
//! files ([`crate::watch`]). Reloads are serialized; requests in flight finish on the snapshot
//! they started with. Limiter state is kept by limit identity and unchanged upstream pools are
//! kept as they are (health state included).

use std::sync::Arc;

use crate::config::{self, Diagnostics};
use crate::snapshot::{self, ProcessSettings};
use crate::state::{ReloadRecord, State};

/// Why a reload was refused; the config in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The files do not load: every problem, located.
    #[error("{0}")]
    Config(Diagnostics),
    /// The files load, but the running queues cannot follow: a queue removed or moved while it
    /// still holds requests, a new spool that cannot be opened.
    #[error("{}", .0.join("; "))]
    Queues(Vec<String>),
}

impl ReloadError {
    /// One line per problem, as `/-/config` and the admin API show them.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ReloadError::Config(d) => d.errors().map(ToString::to_string).collect(),
            ReloadError::Queues(e) => e.clone(),
        }
    }
}

/// The settings of `new` that differ from those the process runs with and need a restart.
pub fn needs_restart(running: &ProcessSettings, new: &ProcessSettings) -> Vec<String> {
    let mut out = Vec::new();
    if running.listen != new.listen {
        out.push("server.listen".to_string());
    }
    if running.tls != new.tls {
        out.push("server.tls (listeners or certificate files changed)".to_string());
    }
    if running.admin_listen != new.admin_listen {
        out.push("server.admin_listen".to_string());
    }
    if running.threads != new.threads {
        out.push("server.threads".to_string());
    }
    if running.upgrade_sock != new.upgrade_sock {
        out.push("server.upgrade_sock".to_string());
    }
    if running.pid_file != new.pid_file {
        out.push("server.pid_file".to_string());
    }
    if running.grace_period != new.grace_period {
        out.push("server.grace_period".to_string());
    }
    if running.client != new.client {
        out.push("server.header_timeout, keepalive_timeout or max_header_bytes".to_string());
    }
    out
}

/// Reload now. Blocking (file reads, DNS for upstream names): call it off the async workers.
pub fn reload(state: &State) -> Result<u64, ReloadError> {
    let mut status = state.status.lock().unwrap_or_else(|e| e.into_inner());
    let now = jiff::Timestamp::now();
    // The files must load, and the running queues must be able to follow them: both are
    // checked (and new spools opened) before anything changes.
    let loaded = config::load(&state.config_path)
        .map_err(ReloadError::Config)
        .and_then(|loaded| {
            let queues = &loaded.spec.settings.queues;
            let errors = state.queues.check_reload(queues);
            if !errors.is_empty() {
                return Err(ReloadError::Queues(errors));
            }
            state
                .background
                .run(state.queues.apply(queues))
                .map_err(ReloadError::Queues)?;
            Ok(loaded)
        });
    let loaded = match loaded {
        Ok(l) => l,
        Err(err) => {
            for e in err.lines() {
                tracing::error!("{e}");
            }
            tracing::error!(
                generation = status.generation,
                "config reload rejected; the previous config stays in force"
            );
            status.last_reload = Some(ReloadRecord {
                ok: false,
                errors: err.lines(),
                at: now.to_string(),
            });
            state
                .metrics
                .config_reloads
                .with_label_values(&["failure"])
                .inc();
            return Err(err);
        }
    };
    for w in loaded.diagnostics.warnings() {
        tracing::warn!("{w}");
    }
    let mut restart = needs_restart(&state.process, &loaded.spec.settings.process);
    if state.snapshot.load().fleet != loaded.spec.settings.fleet {
        // The store is started with the process; limits keep using the running one.
        restart.push("[fleet]".to_string());
    }
    if !restart.is_empty() {
        tracing::warn!(
            settings = ?restart,
            "these settings changed but only take effect after a restart; the rest of the reload applies"
        );
    }
    let old = state.snapshot.load_full();
    let snap = snapshot::build(loaded.spec, Some(&old), &state.bindings());
    let changes = crate::diff::describe(&old, &snap);
    state.access_log.set_destination(snap.access_log.clone());
    state.snapshot.store(Arc::new(snap));
    drop(old);
    status.generation += 1;
    status.loaded_at = now;
    status.needs_restart = restart;
    status.last_reload = Some(ReloadRecord {
        ok: true,
        errors: Vec::new(),
        at: now.to_string(),
    });
    let m = &state.metrics;
    m.config_reloads.with_label_values(&["success"]).inc();
    m.config_generation.set(status.generation as i64);
    m.last_reload_success
        .set(now.as_millisecond() as f64 / 1000.0);
    if changes.is_empty() {
        tracing::info!(
            generation = status.generation,
            "config reloaded: no changes"
        );
    } else {
        tracing::info!(
            generation = status.generation,
            changes = changes.len(),
            "config reloaded"
        );
        for c in &changes {
            tracing::info!(generation = status.generation, "changed: {c}");
        }
    }
    status.last_changes = changes;
    Ok(status.generation)
}
