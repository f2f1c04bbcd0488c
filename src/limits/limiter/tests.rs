//! Traces replayed against nginx's formula with a fake clock (ref/ratelimit.md).

use super::*;

fn limiter(rate_m: u64, burst: u64, delay: Option<u64>) -> Limiter {
    Limiter::new(Params {
        rate_m,
        burst_m: burst * 1000,
        delay_m: delay.map_or(u64::MAX, |d| d * 1000),
        max_keys: 1000,
    })
}

fn one(l: &Limiter, key: u64, now: u64) -> Verdict {
    let d = decide(
        &[Check {
            limiter: l,
            key: Some(key),
            dry_run: false,
        }],
        now,
    );
    d.verdicts[0]
}

fn passed(v: Verdict) -> bool {
    matches!(v, Verdict::Passed { .. } | Verdict::Delayed { .. })
}

#[test]
fn a_fresh_key_admits_burst_plus_one_then_rejects_without_charging() {
    let l = limiter(1000, 3, None); // 1r/s burst=3 nodelay
    let got: Vec<bool> = (0..6).map(|_| passed(one(&l, 7, 10_000))).collect();
    assert_eq!(got, [true, true, true, true, false, false]);
    // Rejected requests did not charge: excess is still 3000, so 1 s later exactly one passes.
    assert_eq!(one(&l, 7, 11_000), Verdict::Passed { excess: 3000 });
    assert!(!passed(one(&l, 7, 11_000)));
    // Other keys are independent.
    assert!(passed(one(&l, 8, 11_000)));
}

#[test]
fn one_per_minute_truncates_to_one_per_62_5_seconds() {
    let l = limiter(16, 0, None); // "1r/m" -> rate_m = floor(1000/60) = 16
    let t0 = 100_000;
    assert_eq!(one(&l, 1, t0), Verdict::Passed { excess: 0 });
    // 60 s later nginx still rejects: 16 * 60000 / 1000 = 960 < 1000.
    assert!(matches!(
        one(&l, 1, t0 + 60_000),
        Verdict::Rejected {
            excess: 40,
            retry_after_ms: 2500
        }
    ));
    assert!(matches!(
        one(&l, 1, t0 + 62_499),
        Verdict::Rejected { excess: 1, .. }
    ));
    assert_eq!(one(&l, 1, t0 + 62_500), Verdict::Passed { excess: 0 });
}

#[test]
fn delay_n_is_two_stage_and_default_delays_every_excess_request() {
    let l = limiter(2000, 5, Some(2)); // 2r/s burst=5 delay=2
    let t = 50_000;
    let got: Vec<Verdict> = (0..7).map(|_| one(&l, 1, t)).collect();
    assert_eq!(got[0], Verdict::Passed { excess: 0 });
    assert_eq!(got[1], Verdict::Passed { excess: 1000 });
    assert_eq!(got[2], Verdict::Passed { excess: 2000 });
    assert_eq!(
        got[3],
        Verdict::Delayed {
            excess: 3000,
            delay_ms: 500
        }
    );
    assert_eq!(
        got[4],
        Verdict::Delayed {
            excess: 4000,
            delay_ms: 1000
        }
    );
    assert_eq!(
        got[5],
        Verdict::Delayed {
            excess: 5000,
            delay_ms: 1500
        }
    );
    assert!(matches!(got[6], Verdict::Rejected { .. }));

    let all = limiter(2000, 5, Some(0)); // no nodelay, no delay=: every excess request waits
    assert_eq!(one(&all, 1, t), Verdict::Passed { excess: 0 });
    assert_eq!(
        one(&all, 1, t),
        Verdict::Delayed {
            excess: 1000,
            delay_ms: 500
        }
    );
    // 250 ms later 500 milli-requests have drained.
    assert_eq!(
        one(&all, 1, t + 250),
        Verdict::Delayed {
            excess: 1500,
            delay_ms: 750
        }
    );
}

#[test]
fn several_limits_charge_none_when_one_rejects_and_the_longest_delay_wins() {
    let wide = limiter(1000, 10, Some(1)); // delays past 1 excess request
    let tight = limiter(1000, 1, None);
    let t = 20_000;
    let run = |now| {
        decide(
            &[
                Check {
                    limiter: &wide,
                    key: Some(1),
                    dry_run: false,
                },
                Check {
                    limiter: &tight,
                    key: Some(1),
                    dry_run: false,
                },
            ],
            now,
        )
    };
    // Request 1: both fresh. nginx inserts the non-last limit's entry and then accounts it, so
    // its first request costs 1000; the last limit's first request is free.
    let d1 = run(t);
    assert_eq!(
        d1.verdicts,
        [
            Verdict::Passed { excess: 1000 },
            Verdict::Passed { excess: 0 }
        ]
    );
    let d2 = run(t);
    assert_eq!(
        d2.verdicts,
        [
            Verdict::Delayed {
                excess: 2000,
                delay_ms: 1000
            },
            Verdict::Passed { excess: 1000 }
        ]
    );
    assert_eq!(d2.delay_ms, 1000);
    // Request 3: tight rejects, so wide is not charged.
    let d3 = run(t);
    assert_eq!(d3.rejected, Some(1));
    assert_eq!(wide.lookup(1, t, false), Lookup::Again { excess: 3000 });
    // A rejection by the first limit stops there; the second is not reached.
    for _ in 0..20 {
        wide.lookup(2, t, true);
    }
    let d = decide(
        &[
            Check {
                limiter: &wide,
                key: Some(2),
                dry_run: false,
            },
            Check {
                limiter: &tight,
                key: Some(2),
                dry_run: false,
            },
        ],
        t,
    );
    assert_eq!(d.rejected, Some(0));
    assert_eq!(d.verdicts[1], Verdict::NotReached);
    assert_eq!(tight.tracked(), 1, "the second limit never saw key 2");
}

#[test]
fn an_absent_key_is_not_limited() {
    let l = limiter(1000, 0, None);
    for _ in 0..5 {
        let d = decide(
            &[Check {
                limiter: &l,
                key: None,
                dry_run: false,
            }],
            1000,
        );
        assert_eq!(d.verdicts, [Verdict::Skipped]);
        assert_eq!(d.rejected, None);
    }
    assert_eq!(l.tracked(), 0);
}

#[test]
fn dry_run_passes_would_be_rejects_uncharged_and_charges_passes() {
    let l = limiter(1000, 1, Some(0));
    let t = 5_000;
    let run = |now| {
        decide(
            &[Check {
                limiter: &l,
                key: Some(9),
                dry_run: true,
            }],
            now,
        )
    };
    assert_eq!(run(t).verdicts, [Verdict::Passed { excess: 0 }]);
    // A would-be delay passes without waiting but is charged.
    let d = run(t);
    assert_eq!(d.verdicts, [Verdict::Passed { excess: 1000 }]);
    assert_eq!(d.delay_ms, 0);
    for _ in 0..3 {
        let d = run(t);
        assert_eq!(d.rejected, None);
        assert_eq!(
            d.verdicts,
            [Verdict::DryRunRejected {
                retry_after_ms: 1000
            }]
        );
    }
    // Not charged: after 1 s exactly the excess of one request has drained.
    assert_eq!(l.lookup(9, t + 1000, false), Lookup::Again { excess: 1000 });
}

#[test]
fn a_clock_that_goes_backwards_is_handled_as_nginx_does() {
    let l = limiter(1000, 5, None);
    let t = 1_000_000;
    one(&l, 1, t);
    one(&l, 1, t); // excess 1000, last t
    // Up to 60 s backwards counts as no time passed: nothing drains, last is kept.
    assert_eq!(l.lookup(1, t - 30_000, true), Lookup::Pass { excess: 2000 });
    // Further back counts as 1 ms (and last moves to the new time).
    assert_eq!(
        l.lookup(1, t - 120_000, true),
        Lookup::Pass { excess: 2999 }
    );
    assert_eq!(
        l.lookup(1, t - 120_000 + 1000, true),
        Lookup::Pass { excess: 2999 }
    );
}

#[test]
fn reclaim_forgets_only_drained_idle_keys() {
    let l = limiter(1000, 100, None);
    let t = 10_000;
    one(&l, 1, t); // excess 0
    for _ in 0..80 {
        one(&l, 2, t); // excess 79000: drains in 79 s
    }
    assert_eq!(l.reclaim(t + 59_999), 0, "nothing idle for 60 s yet");
    assert_eq!(l.reclaim(t + 60_000), 1, "key 1 is drained and idle");
    assert_eq!(l.tracked(), 1);
    assert_eq!(l.reclaim(t + 78_000), 0, "key 2 still has excess");
    assert_eq!(l.reclaim(t + 79_000), 1);
    assert_eq!(l.tracked(), 0);
}

#[test]
fn at_the_bound_new_keys_pass_untracked_and_limited_keys_stay_limited() {
    let l = Limiter::new(Params {
        rate_m: 1000,
        burst_m: 0,
        delay_m: u64::MAX,
        max_keys: 64,
    });
    let t = 1_000;
    // The victim is being limited.
    assert!(passed(one(&l, u64::MAX, t)));
    assert!(!passed(one(&l, u64::MAX, t)));
    // A flood of new keys, each charged (second request) so none is drained.
    for k in 0..10_000u64 {
        let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert!(
            passed(one(&l, key, t)),
            "a new key's first request always passes"
        );
        one(&l, key, t);
    }
    assert!(l.tracked() <= 64, "tracked {} > max_keys", l.tracked());
    assert!(l.untracked.load(Ordering::Relaxed) > 9_000);
    assert!(
        !passed(one(&l, u64::MAX, t + 500)),
        "the victim is still limited"
    );
    // Once entries drain, new keys take their place.
    assert!(passed(one(&l, 12345, t + 5_000)));
    assert!(
        !passed(one(&l, 12345, t + 5_000)),
        "the new key is tracked and limited"
    );
}

#[test]
fn at_the_bound_a_spray_of_one_request_keys_churns_without_touching_the_victim() {
    let l = Limiter::new(Params {
        rate_m: 1000,
        burst_m: 5000,
        delay_m: u64::MAX,
        max_keys: 256,
    });
    let t = 1_000;
    let victim = u64::MAX - 1;
    for _ in 0..6 {
        assert!(passed(one(&l, victim, t)));
    }
    assert!(!passed(one(&l, victim, t)), "burst used up");
    for k in 0..100_000u64 {
        assert!(passed(one(&l, k.wrapping_mul(0x9E37_79B9_7F4A_7C15), t)));
    }
    assert!(l.tracked() <= 256);
    assert_eq!(
        l.untracked.load(Ordering::Relaxed),
        0,
        "spray entries make room for each other"
    );
    assert!(l.evicted.load(Ordering::Relaxed) > 99_000);
    assert!(
        !passed(one(&l, victim, t + 100)),
        "the victim is still limited"
    );
    assert!(
        passed(one(&l, victim, t + 1000)),
        "and recovers at its rate, no sooner"
    );
}

#[test]
fn one_limit_decides_as_the_general_path_does() {
    // The same trace (keys, times, dry runs) through `decide_one` and `decide_many` on two
    // limiters alike: delays, rejections, dry-run rejections, absent keys and reclaims included.
    let mut seen = std::collections::BTreeSet::new();
    for (rate_m, burst, delay) in [(1000, 3, Some(1)), (2000, 0, None), (16, 2, Some(0))] {
        let (a, b) = (limiter(rate_m, burst, delay), limiter(rate_m, burst, delay));
        let mut rng = 0x1234_5678_u64;
        let mut now = 10_000;
        for i in 0..20_000u64 {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            now += (rng >> 60) * 40;
            let key = (rng >> 40) % 8;
            let dry_run = i % 7 == 0;
            let check = |l| Check {
                limiter: l,
                key: (key != 7).then_some(key),
                dry_run,
            };
            let one = decide_one(&check(&a), now);
            assert_eq!(one, decide_many(&[check(&b)], now), "decision {i}");
            seen.insert(
                format!("{:?}", one.verdicts[0])
                    .split([' ', '{'])
                    .next()
                    .unwrap_or("")
                    .to_string(),
            );
            if i % 5000 == 0 {
                assert_eq!(a.reclaim(now), b.reclaim(now));
            }
        }
        assert_eq!(a.tracked(), b.tracked());
    }
    let kinds: Vec<&str> = seen.iter().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["Delayed", "DryRunRejected", "Passed", "Rejected", "Skipped"],
        "the trace covers every verdict"
    );
}
