//! A request's limits when some of them are fleet limits: local and fleet in one decision that
//! keeps nginx's rule (if one rejects, none is charged).
//!
//! ```text
//! 1. look up every local limit without charging it      (a reject here: nothing charged)
//! 2. one round trip for every fleet limit               (a reject there: locals uncharged)
//! 3. both passed: charge the local limits
//! ```
//!
//! The one difference from an all-local decision: there, the last limit with a key is charged by
//! its lookup, so a fresh key's first request leaves it at 0; here every local limit is charged
//! afterwards, which leaves a fresh key at one request's worth (as nginx does for every limit
//! but its last).

use super::{Fleet, FleetAnswer, FleetCheck, FleetKey};
use crate::limits::limiter::{Check, Decision, Lookup, Verdict};
use crate::limits::registry::BoundLimit;

/// Redis is unreachable and `on_store_error = "closed"`: answer 503 with this `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    pub retry_after_s: u64,
}

/// Decide `bound` (checked as `checks`: the same order, keys already read) when some are
/// fleet limits (`BoundLimit::fleet`). Verdicts come back in `bound`'s order, as from
/// `limiter::decide`.
pub async fn decide_limits(
    fleet: &Fleet,
    bound: &[&BoundLimit],
    checks: &[Check<'_>],
    req: &pingora::http::RequestHeader,
    client: std::net::IpAddr,
    now: u64,
) -> Result<Decision, Unavailable> {
    let n = bound.len();
    let mut verdicts = vec![Verdict::Skipped; n];
    let mut looked: Vec<Option<Lookup>> = vec![None; n];
    // A reject at `i` charges nothing: the limits looked up so far are not reached (a fresh
    // key keeps its empty entry, as in nginx), nor are fleet limits not yet asked.
    let reject = |mut verdicts: Vec<Verdict>, looked: &[Option<Lookup>], i: usize, asked: bool| {
        for (j, v) in verdicts.iter_mut().enumerate() {
            let unasked_fleet = !asked && bound[j].fleet.is_some() && checks[j].key.is_some();
            if j != i && (looked[j].is_some() || unasked_fleet) {
                *v = Verdict::NotReached;
            }
        }
        Decision {
            verdicts,
            rejected: Some(i),
            delay_ms: 0,
        }
    };
    for (i, c) in checks.iter().enumerate() {
        let Some(key) = c.key.filter(|_| bound[i].fleet.is_none()) else {
            continue;
        };
        match c.limiter.lookup(key, now, false) {
            Lookup::Reject {
                excess,
                retry_after_ms,
            } => {
                if c.dry_run {
                    verdicts[i] = Verdict::DryRunRejected { retry_after_ms };
                    continue;
                }
                verdicts[i] = Verdict::Rejected {
                    excess,
                    retry_after_ms,
                };
                return Ok(reject(verdicts, &looked, i, false));
            }
            l => looked[i] = Some(l),
        }
    }
    let fleet_at: Vec<usize> = (0..n).filter(|&i| bound[i].fleet.is_some()).collect();
    let fchecks: Vec<FleetCheck<'_>> = fleet_at
        .iter()
        .map(|&i| FleetCheck {
            limit: bound[i].fleet.as_deref().expect("filtered on fleet"),
            key: checks[i]
                .key
                .and_then(|_| FleetKey::of(&bound[i].spec.key, req, client)),
        })
        .collect();
    let mut delay_ms = match fleet.decide(&fchecks).await {
        FleetAnswer::Unavailable { retry_after_s } => return Err(Unavailable { retry_after_s }),
        FleetAnswer::Decided { decision: d, .. } => {
            for (k, &i) in fleet_at.iter().enumerate() {
                verdicts[i] = d.verdicts[k];
            }
            if let Some(k) = d.rejected {
                return Ok(reject(verdicts, &looked, fleet_at[k], true));
            }
            d.delay_ms
        }
    };
    for (i, c) in checks.iter().enumerate() {
        let (Some(Lookup::Again { .. }), Some(key)) = (looked[i], c.key) else {
            continue;
        };
        let excess = c.limiter.account(key, now);
        let d = c.limiter.params().delay_ms(excess);
        verdicts[i] = if d > 0 && !c.dry_run {
            delay_ms = delay_ms.max(d);
            Verdict::Delayed {
                excess,
                delay_ms: d,
            }
        } else {
            Verdict::Passed { excess }
        };
    }
    Ok(Decision {
        verdicts,
        rejected: None,
        delay_ms,
    })
}
