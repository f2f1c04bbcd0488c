use std::time::Duration;

use crate::canary::judge::{
    Breach, Significance, Thresholds, Verdict, fisher_upper_tail, judge, ln_factorial, worse_than,
};
use crate::canary::window::SideStats;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn side(requests: u64, errors: u64) -> SideStats {
    let mut s = SideStats::default();
    s.add(requests, errors, MS(20), Some(MS(800)));
    s
}

fn only_relative() -> Thresholds {
    Thresholds {
        min_requests: 100,
        max_error_rate: None,
        max_p99: None,
        compare: true,
    }
}

fn thresholds() -> Thresholds {
    Thresholds {
        max_error_rate: Some(0.02),
        max_p99: Some(MS(800)),
        ..only_relative()
    }
}

#[test]
fn no_data_is_inconclusive() {
    let v = judge(&SideStats::default(), &SideStats::default(), &thresholds());
    assert_eq!(
        v,
        Verdict::Inconclusive {
            stable: 0,
            canary: 0,
            min: 100
        }
    );
}

#[test]
fn either_side_short_of_min_requests_is_inconclusive() {
    // A canary failing every request, but with 99 requests: not judged yet.
    let v = judge(&side(5000, 0), &side(99, 99), &thresholds());
    assert!(
        matches!(v, Verdict::Inconclusive { canary: 99, .. }),
        "{v:?}"
    );
    let v = judge(&side(99, 0), &side(5000, 0), &thresholds());
    assert!(
        matches!(v, Verdict::Inconclusive { stable: 99, .. }),
        "{v:?}"
    );
    assert_eq!(
        judge(&side(100, 0), &side(100, 0), &thresholds()),
        Verdict::Good
    );
}

#[test]
fn at_weight_100_the_canary_alone_is_judged_by_the_thresholds() {
    let t = Thresholds {
        compare: false,
        ..thresholds()
    };
    assert_eq!(
        judge(&SideStats::default(), &side(500, 0), &t),
        Verdict::Good
    );
    let v = judge(&SideStats::default(), &side(500, 50), &t);
    assert!(matches!(&v, Verdict::Bad(b) if b.len() == 1), "{v:?}");
}

#[test]
fn max_error_rate_is_a_strict_bound() {
    // 2 of 100 is exactly 2%: allowed. 3 of 100 breaks it.
    let t = thresholds();
    let stable = side(100_000, 2_000);
    assert_eq!(judge(&stable, &side(100, 2), &t), Verdict::Good);
    let Verdict::Bad(b) = judge(&stable, &side(100, 3), &t) else {
        panic!("3% is above 2%");
    };
    assert_eq!(
        b,
        vec![Breach::ErrorRate {
            errors: 3,
            requests: 100,
            max: 0.02
        }]
    );
    assert_eq!(
        b[0].to_string(),
        "canary error rate 3.00% (3/100) above max_error_rate 2.00%"
    );
}

#[test]
fn max_p99_is_judged_exactly_on_the_nearest_rank() {
    let t = thresholds();
    let stable = side(1000, 0);
    // 100 requests: the p99 is the 99th fastest, so one slow request is allowed, two are not.
    let mut c = side(99, 0);
    c.add(1, 0, Duration::from_secs(3), Some(MS(800)));
    assert_eq!(judge(&stable, &c, &t), Verdict::Good);
    c.add(1, 0, Duration::from_secs(3), Some(MS(800)));
    // 101 requests, 2 slow: rank 100 is slow, one allowed.
    let Verdict::Bad(b) = judge(&stable, &c, &t) else {
        panic!("p99 is 3 s");
    };
    let Breach::P99 {
        slow,
        allowed,
        requests,
        p99,
        max,
    } = b[0].clone()
    else {
        panic!("{b:?}")
    };
    assert_eq!((slow, allowed, requests, max), (2, 1, 101, MS(800)));
    let p99 = p99.unwrap();
    assert!(p99 > Duration::from_secs(3) && p99 <= Duration::from_millis(3375));
    // A latency exactly at max_p99 is not slower than it.
    let mut at = SideStats::default();
    at.add(200, 0, MS(800), Some(MS(800)));
    assert_eq!(judge(&stable, &at, &t), Verdict::Good);
}

#[test]
fn z_test_threshold_between_31_and_32_errors_in_1000() {
    // Stable 20/1000 (2%). Canary 31/1000: z = 1.560, not significant; 32: z = 1.686.
    assert_eq!(worse_than(31, 1000, 20, 1000), None);
    let Some(Significance::Z(z)) = worse_than(32, 1000, 20, 1000) else {
        panic!("32/1000 vs 20/1000 is significant");
    };
    // Pooled p = 0.026: z = 0.012 / sqrt(0.026 * 0.974 * 0.002).
    assert!((z - 1.6862).abs() < 1e-3, "{z}");
    let Verdict::Bad(b) = judge(&side(1000, 20), &side(1000, 32), &only_relative()) else {
        panic!("worse than stable is bad");
    };
    assert!(b[0].to_string().contains("z = 1.69 > 1.645"), "{}", b[0]);
    assert_eq!(
        judge(&side(1000, 20), &side(1000, 31), &only_relative()),
        Verdict::Good
    );
}

#[test]
fn no_errors_equal_or_better_rates_are_never_worse() {
    assert_eq!(worse_than(0, 1000, 0, 1000), None, "no errors at all");
    assert_eq!(worse_than(50, 1000, 50, 1000), None, "equal rates");
    assert_eq!(
        worse_than(5, 100, 500, 10_000),
        None,
        "equal rates, unequal sizes"
    );
    assert_eq!(worse_than(10, 1000, 50, 1000), None, "canary better");
    assert_eq!(
        worse_than(100, 100, 100, 100),
        None,
        "everything fails on both sides"
    );
    assert_eq!(worse_than(1, 0, 0, 10), None, "an empty side");
    assert_eq!(worse_than(0, 10, 0, 0), None);
}

#[test]
fn tiny_samples_use_the_exact_test() {
    // 3/20 vs 0/20: the z-test would say z = 1.80 (worse), but with three errors in all, each
    // lands on the canary side by chance with p = C(20,3)/C(40,3) = 0.115.
    assert_eq!(worse_than(3, 20, 0, 20), None);
    assert!((fisher_upper_tail(3, 20, 3, 40) - 1140.0 / 9880.0).abs() < 1e-12);
    // 5/20 vs 0/20: p = C(20,5)/C(40,5) = 0.0236: worse, by the exact test.
    let Some(Significance::Exact(p)) = worse_than(5, 20, 0, 20) else {
        panic!("5/20 vs 0/20 is significant");
    };
    assert!((p - 15504.0 / 658_008.0).abs() < 1e-12, "{p}");
    // One error among 10 100 requests, on the canary's 100: p = 100/10100 < 5%. Significant,
    // which is why bad_windows exists: one such window is not a rollback.
    assert!(matches!(
        worse_than(1, 100, 0, 10_000),
        Some(Significance::Exact(p)) if (p - 100.0 / 10_100.0).abs() < 1e-9
    ));
}

#[test]
fn fisher_tail_sums_the_hypergeometric_distribution() {
    // The whole support sums to one; beyond it the tail is empty.
    assert_eq!(fisher_upper_tail(0, 20, 3, 40), 1.0);
    assert_eq!(fisher_upper_tail(4, 20, 3, 40), 0.0);
    // P(X >= 1) = 1 - C(20,3)/C(40,3) with k = 3 errors, n1 = 20 of 40.
    let p1 = fisher_upper_tail(1, 20, 3, 40);
    assert!((p1 - (1.0 - 1140.0 / 9880.0)).abs() < 1e-12, "{p1}");
    // Large counts stay finite and in [0, 1].
    let p = fisher_upper_tail(40, 1000, 60, 2_000_000);
    assert!(p > 0.0 && p < 1e-50, "{p}");
}

#[test]
fn ln_factorial_is_accurate() {
    let mut exact = 0.0f64;
    for n in 1..400u64 {
        exact += (n as f64).ln();
        let got = ln_factorial(n);
        assert!(
            (got - exact).abs() <= 1e-9 * exact.max(1.0),
            "{n}: {got} vs {exact}"
        );
    }
    assert_eq!(ln_factorial(0), 0.0);
}
