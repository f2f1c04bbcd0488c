//! A route's limits applied to one request: keys, exemptions, the decision, its metrics, its
//! log lines and the `RateLimit` headers. Admission calls [`apply`] (local limits), or, when a
//! limit is a fleet one, [`keys`], `fleet::decide_limits` and [`outcome`], and acts on the
//! outcome.

use std::net::IpAddr;

use http::{HeaderValue, StatusCode};
use pingora::http::RequestHeader;

use super::keys;
use super::limiter::{Check, Decision, Verdict, decide};
use super::registry::BoundLimit;

/// `RateLimit-Policy` and `RateLimit` for a response.
#[derive(Debug, Clone)]
pub struct RateLimitHeaders {
    pub policy: HeaderValue,
    pub state: HeaderValue,
}

#[derive(Debug)]
pub enum Outcome {
    /// Proxy the request, after waiting `delay_ms` (0 = at once).
    Pass {
        delay_ms: u64,
        headers: Option<RateLimitHeaders>,
    },
    /// Answer `status` with `Retry-After: retry_after_s`. `index`: the limit that rejected.
    Reject {
        index: usize,
        status: StatusCode,
        limit: std::sync::Arc<str>,
        retry_after_s: u64,
        headers: RateLimitHeaders,
    },
}

/// `"name";r=R;t=T`, written without the formatting machinery (it runs on every request).
fn state_header(name: &str, r: u64, t: u64) -> HeaderValue {
    let mut digits = itoa::Buffer::new();
    let mut v = Vec::with_capacity(name.len() + 24);
    v.push(b'"');
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(b"\";r=");
    v.extend_from_slice(digits.format(r).as_bytes());
    v.extend_from_slice(b";t=");
    v.extend_from_slice(digits.format(t).as_bytes());
    HeaderValue::try_from(v).unwrap_or_else(|_| HeaderValue::from_static("\"limit\";r=0"))
}

/// At most one dry-run log line per limit per second; the line says how many it stands for.
fn log_dry_run(b: &BoundLimit, route: &str, client: IpAddr, now_ms: u64, retry_after_ms: u64) {
    let Some(also) = b.dry_run_log.allow(now_ms, 1000) else {
        return;
    };
    tracing::info!(
        route,
        limit = %b.spec.name,
        client = %client,
        retry_after_ms,
        suppressed_since_last_line = also,
        "dry run: this request would have been rejected"
    );
}

/// The keys of a request for each of `bound`'s limits (`None`: the limit does not apply: its key
/// is absent or the client is exempt, counted as `exempt`).
pub fn keys<'a>(bound: &[&'a BoundLimit], req: &RequestHeader, client: IpAddr) -> Vec<Check<'a>> {
    bound
        .iter()
        .map(|b| {
            let exempt =
                !b.spec.exempt.is_empty() && b.spec.exempt.iter().any(|n| n.contains(&client));
            if exempt {
                b.counters.exempt.inc();
            }
            Check {
                limiter: &b.limiter,
                key: if exempt {
                    None
                } else {
                    keys::key(&b.spec.key, req, client)
                },
                dry_run: b.spec.dry_run,
            }
        })
        .collect()
}

/// Count a rejected key for the console's top list; its text is built only if it enters it.
fn note_rejected(
    b: &BoundLimit,
    dry_run: bool,
    key: Option<u64>,
    req: &RequestHeader,
    client: IpAddr,
    now_ms: u64,
) {
    if let Some(hash) = key {
        b.rejected_keys.offer(dry_run, hash, now_ms, |out| {
            crate::console::key_text::write(&b.spec.key, req, client, out)
        });
    }
}

/// Apply `bound` (a campaign's limit first, if any, then the route's) to a request, all of them
/// local: one nginx decision.
pub fn apply(
    route: &str,
    bound: &[&BoundLimit],
    req: &RequestHeader,
    client: IpAddr,
    now_ms: u64,
) -> Outcome {
    let checks = keys(bound, req, client);
    let decision = decide(&checks, now_ms);
    outcome(route, bound, &checks, &decision, req, client, now_ms)
}

/// What a decision over `bound` means for the request: its metrics, its log lines, the
/// `RateLimit` headers, and whether it passes.
pub fn outcome(
    route: &str,
    bound: &[&BoundLimit],
    checks: &[Check<'_>],
    decision: &Decision,
    req: &RequestHeader,
    client: IpAddr,
    now_ms: u64,
) -> Outcome {
    let mut tightest: Option<(usize, u64, u64)> = None;
    for (i, (b, v)) in bound.iter().zip(&decision.verdicts).enumerate() {
        match *v {
            Verdict::Passed { excess } | Verdict::Delayed { excess, .. } => {
                if matches!(v, Verdict::Delayed { .. }) {
                    b.counters.delayed.inc();
                } else {
                    b.counters.passed.inc();
                }
                let (r, t) = b.remaining(excess);
                if tightest.is_none_or(|(_, tr, _)| r < tr) {
                    tightest = Some((i, r, t));
                }
            }
            Verdict::Rejected { .. } => {
                b.counters.rejected.inc();
                note_rejected(b, false, checks[i].key, req, client, now_ms);
            }
            Verdict::DryRunRejected { retry_after_ms } => {
                b.counters.dry_run_rejected.inc();
                note_rejected(b, true, checks[i].key, req, client, now_ms);
                log_dry_run(b, route, client, now_ms, retry_after_ms);
            }
            Verdict::Skipped | Verdict::NotReached => {}
        }
    }
    if let Some(i) = decision.rejected {
        let b = &bound[i];
        let retry_after_ms = match decision.verdicts[i] {
            Verdict::Rejected { retry_after_ms, .. } => retry_after_ms,
            _ => 1000,
        };
        let retry_after_s = retry_after_ms.div_ceil(1000).max(1);
        tracing::debug!(route, limit = %b.spec.name, client = %client, retry_after_s, "rate limited");
        return Outcome::Reject {
            index: i,
            status: b.spec.status,
            limit: b.spec.name.clone(),
            retry_after_s,
            headers: RateLimitHeaders {
                policy: b.policy_header.clone(),
                state: state_header(&b.spec.name, 0, retry_after_s),
            },
        };
    }
    Outcome::Pass {
        delay_ms: decision.delay_ms,
        headers: tightest.map(|(i, r, t)| RateLimitHeaders {
            policy: bound[i].policy_header.clone(),
            state: state_header(&bound[i].spec.name, r, t),
        }),
    }
}
