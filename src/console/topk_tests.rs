use super::*;

/// Deterministic pseudo-random numbers (xorshift64*), so adversarial streams replay exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn name(h: u64) -> impl FnOnce(&mut String) {
    move |s: &mut String| s.push_str(&format!("k{h}"))
}

fn offer(w: &mut Window, now_ms: u64, key: u64) {
    w.offer(now_ms, key, name(key));
}

/// The true count lies within the reported bounds.
fn assert_bounds(t: &TopKey, truth: u64) {
    assert!(
        t.count.saturating_sub(t.error) <= truth && truth <= t.count + t.error,
        "{t:?} does not bound the true count {truth}"
    );
}

#[test]
fn counts_are_exact_while_fewer_than_k_keys_are_rejected() {
    let mut w = Window::default();
    for k in 0..40u64 {
        for _ in 0..=k {
            offer(&mut w, 1_000, k);
        }
    }
    let top = w.top(2_000, TOP);
    assert_eq!(top.len(), TOP);
    for (i, t) in top.iter().enumerate() {
        let k = 39 - i as u64;
        assert_eq!(t.key, format!("k{k}"));
        assert_eq!((t.count, t.error), (k + 1, 0));
    }
}

#[test]
fn heavy_keys_stay_on_top_through_a_flood_of_one_off_keys() {
    // A botnet of one-off addresses (90% of rejections) hides three persistent clients
    // (5%, 3%, 2%): each is above N/K, so space-saving must keep all three.
    let mut w = Window::default();
    let mut rng = Rng(0x5eed);
    let mut truth = [0u64; 3];
    let mut unique = 1_000_000u64;
    for _ in 0..100_000 {
        let r = rng.next() % 100;
        let key = match r {
            0..=4 => 0,
            5..=7 => 1,
            8..=9 => 2,
            _ => {
                unique += 1;
                unique
            }
        };
        if key < 3 {
            truth[key as usize] += 1;
        }
        offer(&mut w, 5_000, key);
    }
    let top = w.top(5_000, TOP);
    let names: Vec<&str> = top.iter().take(3).map(|t| t.key.as_str()).collect();
    assert_eq!(names, ["k0", "k1", "k2"], "top: {top:?}");
    for (t, truth) in top.iter().zip(truth) {
        assert_bounds(t, truth);
    }
}

#[test]
fn a_key_that_arrives_after_the_table_filled_up_still_rises_to_the_top() {
    // 64 keys fill every counter with a high count first; the real attacker comes last.
    let mut w = Window::default();
    for k in 0..K as u64 {
        for _ in 0..1_000 {
            offer(&mut w, 0, k);
        }
    }
    for _ in 0..2_000 {
        offer(&mut w, 0, 999);
    }
    let top = w.top(0, TOP);
    assert_eq!(top[0].key, "k999");
    assert_bounds(&top[0], 2_000);
    assert!(top[0].error > 0, "an inherited count is reported as error");
}

#[test]
fn spraying_new_keys_cannot_push_out_a_key_above_n_over_k() {
    // The adversary sends each new key exactly as often as needed to take the smallest
    // counter, interleaved with the victim at just over N/K.
    let mut w = Window::default();
    let mut fresh = 10_000u64;
    let mut victim = 0u64;
    for i in 0..64_000u64 {
        if i % 20 == 0 {
            offer(&mut w, 0, 7);
            victim += 1;
        } else {
            fresh += 1;
            offer(&mut w, 0, fresh);
            offer(&mut w, 0, fresh);
        }
    }
    let top = w.top(0, TOP);
    let v = top
        .iter()
        .find(|t| t.key == "k7")
        .expect("the victim key is listed");
    assert_bounds(v, victim);
}

#[test]
fn memory_stays_bounded_under_a_million_distinct_keys() {
    let mut w = Window::default();
    for k in 0..1_000_000u64 {
        offer(&mut w, k / 20, k);
    }
    for b in &w.buckets {
        assert!(b.len() <= K && b.texts.len() <= K && b.texts.capacity() <= 2 * K);
    }
    assert_eq!(w.top(50_000, TOP).len(), TOP);
}

#[test]
fn the_window_forgets_after_a_minute() {
    let mut w = Window::default();
    for _ in 0..5 {
        offer(&mut w, 1_000, 1);
    }
    for _ in 0..3 {
        offer(&mut w, 30_000, 2);
    }
    let keys = |w: &Window, now| {
        w.top(now, TOP)
            .into_iter()
            .map(|t| t.key)
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&w, 59_999), ["k1", "k2"]);
    assert_eq!(keys(&w, 60_000), ["k2"], "the first bucket left the window");
    // A rejection landing in the old bucket's slot starts it afresh.
    offer(&mut w, 61_000, 3);
    assert_eq!(keys(&w, 61_000), ["k2", "k3"]);
    assert_eq!(keys(&w, 90_000), ["k3"]);
    assert!(keys(&w, 200_000).is_empty());
}

#[test]
fn counts_add_up_across_buckets() {
    let mut w = Window::default();
    for b in 0..6u64 {
        for _ in 0..5 {
            offer(&mut w, b * BUCKET_MS + 500, 42);
        }
    }
    let top = w.top(55_000, TOP);
    assert_eq!((top[0].count, top[0].error), (30, 0));
}

#[test]
fn a_full_bucket_that_lost_the_key_widens_its_error() {
    let mut w = Window::default();
    for _ in 0..10 {
        offer(&mut w, 0, 1);
    }
    // The next bucket is full of other keys (each twice): key 1 may have had up to 2 there.
    for k in 100..100 + K as u64 {
        offer(&mut w, BUCKET_MS, k);
        offer(&mut w, BUCKET_MS, k);
    }
    let top = w.top(BUCKET_MS, TOP);
    let k1 = top.iter().find(|t| t.key == "k1").unwrap();
    assert_eq!((k1.count, k1.error), (10, 2));
}

#[test]
fn the_key_text_is_built_only_when_a_key_takes_a_counter() {
    let keys = RejectedKeys::default();
    let mut built = 0;
    for _ in 0..100 {
        keys.offer(false, 5, 0, |s| {
            built += 1;
            s.push_str("192.0.2.5");
        });
    }
    assert_eq!(built, 1);
    assert_eq!(keys.top(false, 0, TOP)[0].count, 100);
}

#[test]
fn dry_run_rejections_are_kept_apart() {
    let keys = RejectedKeys::default();
    keys.offer(true, 1, 0, |s| s.push_str("would"));
    keys.offer(false, 2, 0, |s| s.push_str("was"));
    assert_eq!(keys.top(true, 0, TOP)[0].key, "would");
    assert_eq!(keys.top(false, 0, TOP)[0].key, "was");
    assert_eq!(keys.top(false, 0, TOP).len(), 1);
}
