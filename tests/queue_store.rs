//! The spool as the accept path and a restart see it: durability across reopen, idempotency,
//! the bounds, file modes, a damaged file, and the reload rules of the registry.

mod common;
mod queue_kit;

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use common::{TestUpstream, closed_addr};
use queue_kit::{lead, spec, specs, start, upstream};
use seawall::queue::spool::{FILE_NAME, Spool, SpoolOptions};
use seawall::queue::store::AppendLimits;
use seawall::queue::{Refusal, Store, StoreKind};

const SOON: Duration = Duration::from_secs(10);

fn limits() -> AppendLimits {
    AppendLimits {
        max_body: 1024,
        max_bytes: 1 << 20,
        idempotency_ms: 3_600_000,
    }
}

fn stamped(receipt: &str, at: u64, key: Option<&str>) -> seawall::queue::Lead {
    let mut l = lead("/signup", "email=a%40example.com");
    l.receipt = receipt.into();
    l.accepted_at_ms = at;
    l.idempotency_key = key.map(str::to_string);
    l
}

#[tokio::test]
async fn the_spool_is_private_and_survives_a_reopen_with_its_entries_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool/leads");
    {
        let s = Spool::open(&path, SpoolOptions::default()).unwrap();
        for i in 0..5 {
            s.append(stamped(&format!("r{i}"), 1000 + i, None), limits())
                .await
                .unwrap();
        }
        let leased = s.lease(2000, 2).await.unwrap();
        assert_eq!(leased.len(), 2);
        s.ack(leased[0].id).await.unwrap();
    }
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o700);
    assert_eq!(mode(&path.join(FILE_NAME)), 0o600);
    // Loosened by someone: tightened again on open.
    std::fs::set_permissions(path.join(FILE_NAME), std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = Spool::open(&path, SpoolOptions::default()).unwrap();
    assert_eq!(mode(&path.join(FILE_NAME)), 0o600);
    let st = s.stats();
    assert_eq!(st.depth, 4, "the ack survived, the unacked lease did not");
    assert_eq!(st.oldest_ms, Some(1001));
    let one = stamped("r0", 1000, None).encoded_len() as u64;
    assert_eq!(
        st.bytes,
        4 * one,
        "bytes held are known at once after a restart"
    );
    let all = s.lease(2000, 10).await.unwrap();
    let receipts: Vec<_> = all.iter().map(|l| l.lead.receipt.as_str()).collect();
    assert_eq!(
        receipts,
        ["r1", "r2", "r3", "r4"],
        "delivery resumes in order, r1 again (at least once)"
    );
    assert!(
        s.lease(2000, 10).await.unwrap().is_empty(),
        "leased entries are not handed out twice"
    );
}

#[tokio::test]
async fn an_idempotency_key_seen_within_max_age_returns_the_first_receipt_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let s = Spool::open(&path, SpoolOptions::default()).unwrap();
        let a = s
            .append(stamped("first", 1000, Some("k1")), limits())
            .await
            .unwrap();
        assert!(!a.duplicate);
        let b = s
            .append(stamped("second", 2000, Some("k1")), limits())
            .await
            .unwrap();
        assert_eq!((b.receipt.as_str(), b.duplicate), ("first", true));
        assert_eq!(s.stats().depth, 1, "nothing added");
    }
    let s = Spool::open(&path, SpoolOptions::default()).unwrap();
    let c = s
        .append(stamped("third", 3000, Some("k1")), limits())
        .await
        .unwrap();
    assert_eq!(c.receipt, "first");
    // Past max_age the key is new again.
    let d = s
        .append(stamped("fourth", 1000 + 3_600_001, Some("k1")), limits())
        .await
        .unwrap();
    assert_eq!((d.receipt.as_str(), d.duplicate), ("fourth", false));
    // Duplicates inside one group commit: the second sees the first.
    let (x, y) = tokio::join!(
        s.append(stamped("x", 5_000_000, Some("k2")), limits()),
        s.append(stamped("y", 5_000_000, Some("k2")), limits())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.receipt, y.receipt);
    assert!(x.duplicate != y.duplicate);
    assert_eq!(s.stats().depth, 3);
}

#[tokio::test]
async fn a_full_spool_refuses_and_drops_nothing_and_a_large_body_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let s = Spool::open(&dir.path().join("q"), SpoolOptions::default()).unwrap();
    let one = stamped("a", 1, None).encoded_len() as u64;
    let tight = AppendLimits {
        max_bytes: one * 2,
        ..limits()
    };
    s.append(stamped("a", 1, None), tight).await.unwrap();
    s.append(stamped("b", 2, None), tight).await.unwrap();
    assert_eq!(
        s.append(stamped("c", 3, None), tight).await,
        Err(Refusal::Full)
    );
    assert_eq!(s.stats().depth, 2);
    assert_eq!(s.stats().bytes, one * 2);
    let leased = s.lease(10, 1).await.unwrap();
    s.ack(leased[0].id).await.unwrap();
    s.append(stamped("c", 3, None), tight).await.unwrap();
    let mut big = stamped("big", 4, None);
    big.body = bytes::Bytes::from(vec![b'x'; 1025]);
    assert_eq!(s.append(big, tight).await, Err(Refusal::TooLarge));
    assert_eq!(Refusal::Full.reason(), "full");
    assert_eq!(Refusal::TooLarge.reason(), "too_large");
}

#[tokio::test]
async fn a_store_that_cannot_write_refuses_with_store_error_never_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    // A spool path under a regular file cannot be created: the queue does not start, and says why.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let e = Spool::open(&blocker.join("q"), SpoolOptions::default())
        .err()
        .unwrap();
    assert!(e.0.contains("cannot create spool directory"), "{e}");
    // A spool already held by another process (or queue) is refused the same way.
    let path = dir.path().join("held");
    let _held = Spool::open(&path, SpoolOptions::default()).unwrap();
    assert!(Spool::open(&path, SpoolOptions::default()).is_err());
}

fn damaged_copies(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".damaged-")
        })
        .count()
}

#[tokio::test]
async fn a_cut_tail_is_reported_set_aside_and_skipped_and_the_spool_opens() {
    for cut in [1u64, 100, 4096, 10_000, 60_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        {
            let s = Spool::open(&path, SpoolOptions::default()).unwrap();
            for i in 0..50 {
                s.append(stamped(&format!("r{i}"), i, None), limits())
                    .await
                    .unwrap();
            }
        }
        let f = path.join(FILE_NAME);
        let len = std::fs::metadata(&f).unwrap().len();
        let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        file.set_len(len - cut).unwrap();
        drop(file);
        let s = Spool::open(&path, SpoolOptions::default())
            .unwrap_or_else(|e| panic!("cut {cut} of {len} bytes: refused to open: {e}"));
        let n = s.stats().depth;
        eprintln!("cut {cut} of {len} bytes: opened with {n} of 50 entries");
        assert!(n <= 50);
        assert_eq!(damaged_copies(&path), 1, "the damaged file is kept aside");
        // What survived is readable in order, and the spool accepts again.
        let all = s.lease(1000, 100).await.unwrap();
        let dead = s.dead_letters(100, false).await.unwrap();
        eprintln!(
            "  leased {}, dead letters {:?}",
            all.len(),
            dead.iter().map(|d| &d.last).collect::<Vec<_>>()
        );
        assert_eq!(
            all.len() + dead.len(),
            n as usize,
            "unreadable records become dead letters, never vanish"
        );
        s.append(stamped("after", 99, None), limits())
            .await
            .unwrap();
        drop(s);
        let s = Spool::open(&path, SpoolOptions::default()).unwrap();
        assert_eq!(
            s.stats().depth,
            all.len() as u64 + 1,
            "the new spool is a normal one"
        );
        assert_eq!(damaged_copies(&path), 1);
    }
}

#[tokio::test]
async fn garbage_appended_to_the_file_is_skipped_and_every_entry_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q");
    {
        let s = Spool::open(&path, SpoolOptions::default()).unwrap();
        for i in 0..20 {
            s.append(
                stamped(&format!("r{i}"), i, Some(&format!("k{i}"))),
                limits(),
            )
            .await
            .unwrap();
        }
    }
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path.join(FILE_NAME))
        .unwrap();
    f.write_all(&[0xAB; 3000]).unwrap();
    drop(f);
    let s = Spool::open(&path, SpoolOptions::default()).unwrap();
    assert_eq!(s.stats().depth, 20);
    let dup = s
        .append(stamped("again", 50, Some("k3")), limits())
        .await
        .unwrap();
    assert_eq!(dup.receipt, "r3", "idempotency keys are salvaged too");
    let mode = std::fs::metadata(path.join(FILE_NAME))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[tokio::test]
async fn reload_rules_keep_queues_by_name_and_refuse_to_drop_held_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (qs, q) = start(
        spec(dir.path(), upstream(closed_addr(), Duration::from_secs(1))),
        None,
    )
    .await;
    qs.pause("leads").unwrap();
    q.accept(lead("/signup", "x")).await.unwrap();

    let errs = qs.check_reload(&Default::default());
    assert_eq!(
        errs,
        [
            "queue \"leads\" was removed but still holds 1 entries and 0 dead letters: keep it until it is drained (and its dead letters handled)"
        ]
    );
    let mut moved = spec(dir.path(), upstream(closed_addr(), Duration::from_secs(1)));
    moved.store = StoreKind::Spool {
        path: dir.path().join("elsewhere"),
    };
    let errs = qs.check_reload(&specs(moved.clone()));
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("queue \"leads\": its store or path changed"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("1 entries"), "{}", errs[0]);
    assert!(
        qs.apply(&specs(moved)).await.is_err(),
        "apply refuses what check_reload refuses"
    );

    // Live changes keep the same store and entries.
    let app = TestUpstream::start("app").await;
    let mut live = spec(dir.path(), upstream(app.addr, Duration::from_secs(1)));
    live.rate_mrps = 50_000;
    live.max_inflight = 1;
    assert!(qs.check_reload(&specs(live.clone())).is_empty());
    qs.apply(&specs(live)).await.unwrap();
    let same = qs.get("leads").unwrap();
    assert!(Arc::ptr_eq(&same, &q), "kept by name");
    assert_eq!(same.settings().rate_mrps, 50_000);
    assert_eq!(qs.status_json()["queues"][0]["rate_rps"], 50.0);
    assert!(same.paused(), "a reload does not resume a paused queue");
    qs.resume("leads").unwrap();
    assert_eventually!(
        SOON,
        "delivered to the new deliver_to",
        app.hits() == 1 && q.store().stats().depth == 0
    );

    // Empty now: removing it is allowed, and frees its spool.
    assert!(qs.check_reload(&Default::default()).is_empty());
    qs.apply(&Default::default()).await.unwrap();
    assert!(qs.get("leads").is_none());
    drop(same);
    drop(q);
    Spool::open(&dir.path().join("spool/leads"), SpoolOptions::default()).expect("released");
}

#[tokio::test]
async fn refusals_are_counted_by_reason_and_never_give_a_receipt() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(seawall::metrics::Metrics::new());
    let mut s = spec(dir.path(), upstream(closed_addr(), Duration::from_secs(1)));
    s.max_body = 16;
    s.max_bytes = 2 * lead("/signup", "x").encoded_len() as u64 + 100;
    let (qs, q) = start(s, Some(metrics.clone())).await;
    qs.pause("leads").unwrap();
    assert_eq!(
        q.accept(lead("/signup", &"y".repeat(17))).await,
        Err(Refusal::TooLarge)
    );
    q.accept(lead("/signup", "x")).await.unwrap();
    q.accept(lead("/signup", "x")).await.unwrap();
    assert_eq!(q.accept(lead("/signup", "x")).await, Err(Refusal::Full));
    q.count_refusal(&Refusal::TooLarge);
    let refused = |r: &str| metrics.queue_refused.with_label_values(&["leads", r]).get();
    assert_eq!(
        (
            refused("full"),
            refused("too_large"),
            refused("store_error")
        ),
        (1, 2, 0)
    );
    assert_eq!(
        metrics.queue_accepted.with_label_values(&["leads"]).get(),
        2
    );
    assert_eq!(q.store().stats().depth, 2);
    qs.shutdown().await;
}
