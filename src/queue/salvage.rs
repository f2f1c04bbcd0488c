//! A spool file redb will not open (cut short by a full disk or a copy, padded by a tool): set
//! it aside, copy what can still be read into a fresh spool, and carry on. Never a refusal to
//! start, never a panic; the damage is reported once, with the file, its length and redb's
//! reason (which names the offsets it expected).
//!
//! A crash alone never gets here: redb rolls a torn commit back on open. This is for a file
//! whose length was changed under it.

use std::path::{Path, PathBuf};

use redb::{Database, Key, ReadableDatabase, ReadableTable, TableDefinition, Value};

use super::spool::SpoolOptions;

/// redb's page size: every length redb writes is a multiple of it.
const PAGE: u64 = 4096;
/// How many shorter page-aligned lengths to try before giving the old file up.
const TRIES: u64 = 256;

/// `Some(reason)` when redb refused the file as damaged (rather than busy or unreadable).
pub fn damage(e: &redb::DatabaseError) -> Option<String> {
    match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(m)) => Some(m.clone()),
        _ => None,
    }
}

/// Set `file` aside as `queue.redb.damaged-<ms>`, and return a fresh database at `file` holding
/// every entry, dead letter and idempotency key that could be read from it.
pub fn salvage(
    file: &Path,
    reason: &str,
    opts: SpoolOptions,
    create: impl Fn(&Path) -> Result<Database, String>,
) -> Result<Database, String> {
    let len = std::fs::metadata(file).map_or(0, |m| m.len());
    let ms = super::WallClock::now_ms(&super::SystemClock);
    let aside = PathBuf::from(format!("{}.damaged-{ms}", file.display()));
    std::fs::rename(file, &aside)
        .map_err(|e| format!("cannot set {} aside: {e}", file.display()))?;
    tracing::error!(
        file = %file.display(),
        length = len,
        reason,
        set_aside = %aside.display(),
        "spool file is damaged: set aside, salvaging what can be read into a new spool"
    );
    let fresh = create(file)?;
    let work = PathBuf::from(format!("{}.salvage", aside.display()));
    let copied = std::fs::copy(&aside, &work)
        .map_err(|e| e.to_string())
        .and_then(|_| open_at_some_length(&work, len, reason, opts));
    let (entries, skipped) = match copied {
        // redb panics on some damaged pages (a zeroed page's type byte) rather than erring.
        Ok(old) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| copy_all(&old, &fresh)))
                .unwrap_or_else(|_| {
                    tracing::error!(file = %aside.display(), "salvage stopped at a damaged page");
                    (0, 1)
                })
        }
        Err(why) => {
            tracing::error!(file = %aside.display(), error = %why, "nothing could be salvaged");
            (0, 0)
        }
    };
    let _ = std::fs::remove_file(&work);
    tracing::warn!(
        file = %file.display(),
        salvaged_rows = entries,
        unreadable_rows = skipped,
        "spool salvaged; the damaged file is kept for inspection"
    );
    Ok(fresh)
}

/// redb opens only files whose length is one it could have written: try the length its header
/// expected (a file cut short, padded back with zeros whose pages then fail their checksums and
/// are skipped), then page-aligned lengths at and below the current one (a padded file).
fn open_at_some_length(
    work: &Path,
    len: u64,
    reason: &str,
    opts: SpoolOptions,
) -> Result<Database, String> {
    let mut lengths = Vec::new();
    if let Some(n) = reason
        .split("layout_len=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse::<u64>().ok())
    {
        lengths.push(n);
    }
    lengths.push(len.div_ceil(PAGE) * PAGE);
    lengths.extend(
        (0..TRIES)
            .map(|k| (len / PAGE).saturating_sub(k) * PAGE)
            .filter(|&l| l > 0),
    );
    let mut last = String::from("no length to try");
    for l in lengths {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(work)
            .map_err(|e| e.to_string())?;
        f.set_len(l).map_err(|e| e.to_string())?;
        drop(f);
        let r = std::panic::catch_unwind(|| {
            Database::builder()
                .set_cache_size(opts.cache_bytes)
                .create(work)
        });
        match r {
            Ok(Ok(db)) => return Ok(db),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "redb panicked opening it".into(),
        }
    }
    Err(last)
}

fn copy_all(old: &Database, fresh: &Database) -> (u64, u64) {
    use super::spool::tables::*;
    let (mut n, mut bad) = (0, 0);
    let Ok(r) = old.begin_read() else {
        return (0, 0);
    };
    let Ok(w) = fresh.begin_write() else {
        return (0, 0);
    };
    // The data itself; the indexes (due order, dead-letter order, key expiry) are rebuilt from
    // it, so an entry whose index page was lost is still delivered.
    for (a, b) in [
        copy(&r, &w, ENTRIES),
        copy(&r, &w, STATE),
        copy(&r, &w, DEAD),
        copy(&r, &w, IDEM),
        copy(&r, &w, META),
    ] {
        n += a;
        bad += b;
    }
    if let Err(e) = super::spool::rebuild_indexes(&w) {
        tracing::error!(error = %e, "spool indexes could not be rebuilt");
        return (0, n + bad);
    }
    match w.commit() {
        Ok(()) => (n, bad),
        Err(e) => {
            tracing::error!(error = %e, "salvaged rows could not be committed");
            (0, n + bad)
        }
    }
}

/// Copy every readable row; a damaged page ends that table's walk (counted once).
fn copy<K: Key + 'static, V: Value + 'static>(
    r: &redb::ReadTransaction,
    w: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> (u64, u64) {
    let Ok(src) = r.open_table(def) else {
        return (0, 1);
    };
    let Ok(mut dst) = w.open_table(def) else {
        return (0, 1);
    };
    let Ok(iter) = src.iter() else { return (0, 1) };
    let (mut n, mut bad) = (0, 0);
    for row in iter {
        match row {
            Ok((k, v)) => {
                if dst.insert(k.value(), v.value()).is_ok() {
                    n += 1;
                } else {
                    bad += 1;
                }
            }
            Err(_) => {
                bad += 1;
                break;
            }
        }
    }
    (n, bad)
}
