//! The verdict on one window: a pure function of the two sides' counts and the thresholds.
//!
//! - Inconclusive unless each side has `min_requests` (the canary side alone at weight 100,
//!   where the stable side gets nothing): neither good nor bad, the streak is left as it is.
//! - Bad when the canary breaks `max_error_rate`, or its nearest-rank p99 is above `max_p99`,
//!   or its error rate is significantly worse than the stable side's: a one-sided
//!   two-proportion test at 95%.
//!
//! The test is the pooled z-test (`z > 1.645`) while its normal approximation holds (at least 5
//! expected errors and 5 expected successes on each side under "same rate"). With fewer, the
//! z-test misjudges in both directions, so Fisher's exact one-sided test (hypergeometric tail,
//! `p < 0.05`) decides instead. No errors at all, or a canary rate at or below stable's, is
//! never "worse".

use std::fmt;
use std::time::Duration;

use super::window::{SideStats, p99_rank};

/// One-sided 95%: the normal quantile z(0.95).
pub const Z_95: f64 = 1.645;
pub const ALPHA: f64 = 0.05;
/// Expected count per cell below which the normal approximation is not trusted.
const MIN_EXPECTED: f64 = 5.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub min_requests: u64,
    pub max_error_rate: Option<f64>,
    pub max_p99: Option<Duration>,
    /// Compare with the stable side (and require its `min_requests`); false at weight 100.
    pub compare: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Too few requests on a side to judge.
    Inconclusive {
        stable: u64,
        canary: u64,
        min: u64,
    },
    Good,
    Bad(Vec<Breach>),
}

/// How the relative test found the canary worse.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Significance {
    /// The pooled two-proportion z statistic.
    Z(f64),
    /// Fisher's exact one-sided p-value (small counts).
    Exact(f64),
}

/// One reason a window is bad, with the figures that decided it.
#[derive(Debug, Clone, PartialEq)]
pub enum Breach {
    ErrorRate {
        errors: u64,
        requests: u64,
        max: f64,
    },
    P99 {
        /// Requests slower than `max`, and how many were allowed for p99 <= max.
        slow: u64,
        allowed: u64,
        requests: u64,
        /// From the histogram: an upper bound within 12.5%.
        p99: Option<Duration>,
        max: Duration,
    },
    WorseThanStable {
        canary_errors: u64,
        canary_requests: u64,
        stable_errors: u64,
        stable_requests: u64,
        by: Significance,
    },
}

fn pct(x: u64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        x as f64 * 100.0 / n as f64
    }
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Breach::ErrorRate {
                errors,
                requests,
                max,
            } => write!(
                f,
                "canary error rate {:.2}% ({errors}/{requests}) above max_error_rate {:.2}%",
                pct(*errors, *requests),
                max * 100.0
            ),
            Breach::P99 {
                slow,
                allowed,
                requests,
                p99,
                max,
            } => {
                write!(f, "canary p99 ")?;
                match p99 {
                    Some(p) => write!(f, "~{p:?}")?,
                    None => write!(f, "?")?,
                }
                write!(
                    f,
                    " above max_p99 {max:?} ({slow} of {requests} requests slower, at most \
                     {allowed} allowed)"
                )
            }
            Breach::WorseThanStable {
                canary_errors,
                canary_requests,
                stable_errors,
                stable_requests,
                by,
            } => {
                write!(
                    f,
                    "canary error rate {:.2}% ({canary_errors}/{canary_requests}) significantly \
                     above stable {:.2}% ({stable_errors}/{stable_requests}), ",
                    pct(*canary_errors, *canary_requests),
                    pct(*stable_errors, *stable_requests)
                )?;
                match by {
                    Significance::Z(z) => write!(f, "z = {z:.2} > {Z_95}"),
                    Significance::Exact(p) => write!(f, "Fisher exact p = {p:.4} < {ALPHA}"),
                }
            }
        }
    }
}

pub fn judge(stable: &SideStats, canary: &SideStats, t: &Thresholds) -> Verdict {
    let min = t.min_requests.max(1);
    if canary.requests < min || (t.compare && stable.requests < min) {
        return Verdict::Inconclusive {
            stable: stable.requests,
            canary: canary.requests,
            min,
        };
    }
    let mut bad = Vec::new();
    if let Some(max) = t.max_error_rate
        && canary.error_rate() > max
    {
        bad.push(Breach::ErrorRate {
            errors: canary.errors,
            requests: canary.requests,
            max,
        });
    }
    if let Some(max) = t.max_p99 {
        // The nearest-rank p99 is above `max` iff fewer than ceil(0.99 n) requests took at most
        // `max`, i.e. more than n - ceil(0.99 n) were slower.
        let allowed = canary.requests - p99_rank(canary.requests);
        if canary.slow > allowed {
            bad.push(Breach::P99 {
                slow: canary.slow,
                allowed,
                requests: canary.requests,
                p99: canary.p99(),
                max,
            });
        }
    }
    if t.compare
        && let Some(by) = worse_than(
            canary.errors,
            canary.requests,
            stable.errors,
            stable.requests,
        )
    {
        bad.push(Breach::WorseThanStable {
            canary_errors: canary.errors,
            canary_requests: canary.requests,
            stable_errors: stable.errors,
            stable_requests: stable.requests,
            by,
        });
    }
    if bad.is_empty() {
        Verdict::Good
    } else {
        Verdict::Bad(bad)
    }
}

/// Is the canary's error rate `x1/n1` significantly above the stable side's `x2/n2`
/// (one-sided, 95%)? `Some` with the statistic when it is.
pub fn worse_than(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Significance> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    // x1/n1 <= x2/n2, in integers.
    if u128::from(x1) * u128::from(n2) <= u128::from(x2) * u128::from(n1) {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let k = x1 + x2;
    let n = n1 + n2;
    let p = k as f64 / n as f64;
    let approx = [n1f * p, n1f * (1.0 - p), n2f * p, n2f * (1.0 - p)]
        .iter()
        .all(|e| *e >= MIN_EXPECTED);
    if approx {
        let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
        let z = (x1 as f64 / n1f - x2 as f64 / n2f) / se;
        (z > Z_95).then_some(Significance::Z(z))
    } else {
        let pv = fisher_upper_tail(x1, n1, k, n);
        (pv < ALPHA).then_some(Significance::Exact(pv))
    }
}

/// P(X >= x) for X the canary's errors when `k` errors fall at random among `n` requests of
/// which `n1` are the canary's (hypergeometric): Fisher's exact one-sided p-value.
pub fn fisher_upper_tail(x: u64, n1: u64, k: u64, n: u64) -> f64 {
    let hi = k.min(n1);
    let lo = (n1 + k).saturating_sub(n);
    if x <= lo {
        return 1.0;
    }
    if x > hi {
        return 0.0;
    }
    let ln_pmf = ln_choose(k, x) + ln_choose(n - k, n1 - x) - ln_choose(n, n1);
    let mut term = ln_pmf.exp();
    let mut sum = term;
    let mut i = x;
    while i < hi {
        // P(i+1)/P(i) = (k-i)(n1-i) / ((i+1)(n-k-n1+i+1))
        let num = (k - i) as f64 * (n1 - i) as f64;
        let den = (i + 1) as f64 * (n - k - n1 + i + 1) as f64;
        term *= num / den;
        sum += term;
        i += 1;
        if term < sum * 1e-15 {
            break;
        }
    }
    sum.min(1.0)
}

fn ln_choose(n: u64, r: u64) -> f64 {
    ln_factorial(n) - ln_factorial(r) - ln_factorial(n - r)
}

/// ln(n!): exact sums for small n, Stirling's series beyond (error below 1e-12 from n = 16).
pub fn ln_factorial(n: u64) -> f64 {
    if n < 16 {
        return (2..=n).map(|i| (i as f64).ln()).sum();
    }
    let x = n as f64;
    let x2 = x * x;
    x * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI * x).ln() + 1.0 / (12.0 * x)
        - 1.0 / (360.0 * x * x2)
        + 1.0 / (1260.0 * x2 * x2 * x)
}
