//! Reload triggers besides the admin API: a change to any of the three files, and SIGHUP.
//!
//! Files are watched through their directories (notify + notify-debouncer-full), which sees every
//! way editors and tools save: in place, write-then-rename, and a symlink swapped to a new
//! target (the target's directory is watched too). An event only leads to a reload when the
//! content changed: the sha256 of each file is compared with the last attempt, so touching a
//! file, or an editor's swap file, does nothing, and a broken file is reported once, not on
//! every event. A digest check every second backs the watcher up where inotify cannot see (a
//! parent directory swapped, a network file system). SIGHUP always reloads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use notify::RecursiveMode;
use notify::event::{AccessKind, AccessMode, EventKind};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sha2::{Digest, Sha256};

use crate::state::State;

/// Debounce window: editors write a file in several steps within a few milliseconds.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// The safety-net digest check.
const POLL: Duration = Duration::from_secs(1);
/// How long a changed file must stay the same before it is loaded.
const SETTLE: Duration = Duration::from_millis(50);
/// How many SETTLE periods an empty file gets to be written before it is loaded as it is.
const EMPTY_WAITS: usize = 20;

/// The three files of the live config (or, after a failed reload, of the attempt).
fn config_files(state: &State) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = state
        .snapshot
        .load()
        .files
        .iter()
        .map(|f| PathBuf::from(&f.path))
        .collect();
    if !files.contains(&state.config_path) {
        files.insert(0, state.config_path.clone());
    }
    files
}

/// Content fingerprint of the files; a missing file counts as its own value.
fn digests(files: &[PathBuf]) -> Vec<Option<[u8; 32]>> {
    files
        .iter()
        .map(|f| std::fs::read(f).ok().map(|b| Sha256::digest(&b).into()))
        .collect()
}

/// Directories to watch: each file's directory, and the directory of its symlink target.
fn watch_dirs(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let dir = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dirs.insert(dir.to_path_buf());
        if let Ok(real) = std::fs::canonicalize(f)
            && let Some(d) = real.parent()
        {
            dirs.insert(d.to_path_buf());
        }
    }
    dirs
}

/// Whether an event can mean new content. Opening and reading a file are events too (inotify's
/// IN_OPEN and IN_CLOSE_NOWRITE, which notify reports): acting on them, the watcher's own
/// reading of the files would wake it again, for ever.
fn may_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

pub struct Watcher {
    pub state: Arc<State>,
}

enum Trigger {
    Files,
    Signal,
}

impl Watcher {
    async fn reload(&self, why: &str) {
        tracing::info!(trigger = why, "reloading config");
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || crate::reload::reload(&state)).await;
    }
}

#[async_trait]
impl BackgroundService for Watcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Trigger>();
        let events = tx.clone();
        let debouncer = new_debouncer(DEBOUNCE, None, move |res: DebounceEventResult| {
            if res.is_ok_and(|evs| evs.iter().any(|e| may_change(&e.kind))) {
                let _ = events.send(Trigger::Files);
            }
        });
        let mut debouncer = match debouncer {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher unavailable; checking the files every second instead");
                None
            }
        };
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        };
        let mut files = config_files(&self.state);
        let mut last = digests(&files);
        let mut watched = BTreeSet::new();
        let mut poll = tokio::time::interval(POLL);
        loop {
            if let Some(d) = debouncer.as_mut() {
                let want = watch_dirs(&files);
                for dir in watched.difference(&want) {
                    let _ = d.unwatch(dir);
                }
                for dir in want.difference(&watched) {
                    if let Err(e) = d.watch(dir, RecursiveMode::NonRecursive) {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
                    }
                }
                watched = want;
            }
            let trigger = tokio::select! {
                _ = shutdown.changed() => break,
                Some(t) = rx.recv() => t,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => Trigger::Signal,
                _ = poll.tick() => Trigger::Files,
            };
            match trigger {
                Trigger::Signal => {
                    self.reload("SIGHUP").await;
                    files = config_files(&self.state);
                    last = digests(&files);
                }
                Trigger::Files => {
                    let mut now = digests(&files);
                    if now != last {
                        // An editor saving in place truncates, then writes: wait until the
                        // files read the same twice in a row, so a half-written file is never
                        // loaded (nor reported as broken).
                        for _ in 0..20 {
                            tokio::time::sleep(SETTLE).await;
                            let again = digests(&files);
                            if again == now {
                                break;
                            }
                            now = again;
                        }
                        // An empty file is most often a save in progress (truncate, then
                        // write): give the write a moment. One that stays empty is loaded like
                        // any other file, so its errors are reported, not silently skipped.
                        for _ in 0..EMPTY_WAITS {
                            let empty = files
                                .iter()
                                .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() == 0));
                            if !empty {
                                break;
                            }
                            tokio::time::sleep(SETTLE).await;
                        }
                        now = digests(&files);
                        last = now;
                        self.reload("file change").await;
                        // The new config may name other files; follow them.
                        let next = config_files(&self.state);
                        if next != files {
                            files = next;
                            last = digests(&files);
                        }
                    }
                }
            }
        }
    }
}
