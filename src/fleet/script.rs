//! The `limit_req` Lua script (limit_req.lua) and its answer, mapped onto the local limiter's
//! [`Verdict`]s so the proxy treats a fleet decision exactly as a local one.

use std::sync::OnceLock;

use crate::limits::limiter::{Decision, Params, Verdict};

pub(super) const SOURCE: &str = include_str!("limit_req.lua");

/// Loaded once per process; `EVALSHA` by its SHA-1, and `SCRIPT LOAD` again on `NOSCRIPT`.
pub(super) fn script() -> &'static redis::Script {
    static SCRIPT: OnceLock<redis::Script> = OnceLock::new();
    SCRIPT.get_or_init(|| redis::Script::new(SOURCE))
}

/// One limit's answer from the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Passed {
        excess: u64,
    },
    Rejected {
        excess: u64,
        retry_after_ms: u64,
        blocked_ms: u64,
    },
    DryRunRejected {
        retry_after_ms: u64,
    },
    NotReached,
}

/// `{now, (code, excess, retry_after_ms, blocked_ms) x n}`.
pub(super) fn parse(reply: &[i64], n: usize) -> Result<(u64, Vec<Answer>), String> {
    if reply.len() != 1 + 4 * n {
        return Err(format!(
            "the limit_req script answered {} values for {n} limits",
            reply.len()
        ));
    }
    let u = |x: i64| u64::try_from(x).map_err(|_| format!("negative value {x} from the script"));
    let now = u(reply[0])?;
    let mut out = Vec::with_capacity(n);
    for c in reply[1..].chunks_exact(4) {
        let (excess, retry_after_ms, blocked_ms) = (u(c[1])?, u(c[2])?, u(c[3])?);
        out.push(match c[0] {
            1 => Answer::Passed { excess },
            2 => Answer::Rejected {
                excess,
                retry_after_ms,
                blocked_ms,
            },
            3 => Answer::DryRunRejected { retry_after_ms },
            4 => Answer::NotReached,
            other => return Err(format!("unknown answer code {other} from the script")),
        });
    }
    Ok((now, out))
}

/// Fill `verdicts` (one per check; `slots[i]` = the check answer `i` belongs to) as the local
/// `decide` would: delays from each limit's own delay threshold, the longest wins.
pub(super) fn decision(
    answers: &[Answer],
    slots: &[usize],
    params: &[(Params, bool)],
    n_checks: usize,
) -> Decision {
    let mut d = Decision {
        verdicts: vec![Verdict::Skipped; n_checks],
        rejected: None,
        delay_ms: 0,
    };
    for ((a, &i), (p, dry_run)) in answers.iter().zip(slots).zip(params) {
        d.verdicts[i] = match *a {
            Answer::Passed { excess } => {
                let delay_ms = p.delay_ms(excess);
                if delay_ms > 0 && !dry_run {
                    d.delay_ms = d.delay_ms.max(delay_ms);
                    Verdict::Delayed { excess, delay_ms }
                } else {
                    Verdict::Passed { excess }
                }
            }
            Answer::Rejected {
                excess,
                retry_after_ms,
                ..
            } => {
                d.rejected = Some(i);
                Verdict::Rejected {
                    excess,
                    retry_after_ms,
                }
            }
            Answer::DryRunRejected { retry_after_ms } => Verdict::DryRunRejected { retry_after_ms },
            Answer::NotReached => Verdict::NotReached,
        };
    }
    if let Some(i) = d.rejected {
        // As the local `decide`: everything after the reject is "not reached", a limit that
        // would not have applied included.
        for v in &mut d.verdicts[i + 1..] {
            *v = Verdict::NotReached;
        }
        d.delay_ms = 0;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_onto_verdicts() {
        let (now, a) = parse(&[5, 1, 2000, 0, 0, 2, 3000, 500, 480, 4, 0, 0, 0], 3).unwrap();
        assert_eq!(now, 5);
        let p = Params {
            rate_m: 2000,
            burst_m: 5000,
            delay_m: 1000,
            max_keys: 10,
        };
        let d = decision(&a, &[0, 2, 3], &[(p, false); 3], 4);
        assert_eq!(
            d.verdicts,
            vec![
                Verdict::Delayed {
                    excess: 2000,
                    delay_ms: 500
                },
                Verdict::Skipped,
                Verdict::Rejected {
                    excess: 3000,
                    retry_after_ms: 500
                },
                Verdict::NotReached,
            ]
        );

        assert_eq!((d.rejected, d.delay_ms), (Some(2), 0));
        let d = decision(&a[1..2], &[0], &[(p, false)], 3);
        assert_eq!(d.verdicts[1..], [Verdict::NotReached, Verdict::NotReached]);
        assert!(parse(&[1, 9, 0, 0, 0], 1).is_err());
        assert!(parse(&[1, 1, 0, 0], 1).is_err());
    }
}
