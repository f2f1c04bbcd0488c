//! What campaign traffic is doing: each launch's observed rate against its expected peak, and the
//! unregistered tags seen (logged the first time, then at most every ten seconds per tag).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{Campaigns, Tag, UNREGISTERED};
use crate::logging::{FIELD_MAX, cut};
use crate::metrics::Metrics;

/// Seconds over which the observed rate is averaged.
const RATE_WINDOW_S: usize = 5;
/// Distinct unregistered tags that get their own metric label; later ones count as `other`.
pub const MAX_TAG_LABELS: usize = 100;
/// At most one "still arriving" line per tag in this many ms.
const TAG_LOG_EVERY_MS: u64 = 10_000;
/// Tags remembered at most (for their first-seen log line and rate); past it they are counted
/// under `other` without a log line. Tags are at most 64 bytes: well under 200 KB in all.
pub const MAX_TAGS_TRACKED: usize = MAX_TAG_LABELS * 10;
/// A tag under `other` is forgotten after this long without a request.
pub const TAG_IDLE_MS: u64 = 10 * 60_000;
/// The label of tags past the first [`MAX_TAG_LABELS`].
const OTHER: &str = "other";

/// Requests of one campaign, turned into a rate by [`Stats::tick`] every second.
#[derive(Debug, Default)]
pub struct RateCounter {
    total: AtomicU64,
    window: Mutex<(u64, VecDeque<u64>)>,
}

impl RateCounter {
    pub fn hit(&self) {
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests per second over the last few seconds; call once a second.
    fn tick(&self) -> f64 {
        let total = self.total.load(Ordering::Relaxed);
        let mut w = self.window.lock();
        let delta = total - w.0;
        w.0 = total;
        w.1.push_back(delta);
        if w.1.len() > RATE_WINDOW_S {
            w.1.pop_front();
        }
        w.1.iter().sum::<u64>() as f64 / w.1.len() as f64
    }
}

struct TagSeen {
    label: String,
    total: u64,
    since_log: u64,
    last_log_ms: u64,
    last_seen_ms: u64,
}

#[derive(Default)]
pub struct Stats {
    counters: Mutex<HashMap<Arc<str>, Arc<RateCounter>>>,
    tags: Mutex<HashMap<String, TagSeen>>,
}

impl Stats {
    /// The request counter of a launch: the same one across reloads, by name.
    pub fn counter(&self, name: &Arc<str>) -> Arc<RateCounter> {
        self.counters
            .lock()
            .entry(name.clone())
            .or_default()
            .clone()
    }

    /// After a config is built: forget launches it no longer has, publish the expected peaks,
    /// and drop the series of launches that are gone.
    pub fn settle(&self, c: &Campaigns, metrics: &Metrics) {
        for l in &c.launches {
            if let Some(e) = l.expected_peak_rps {
                metrics
                    .campaign_expected_rps
                    .with_label_values(&[&l.name])
                    .set(e);
            }
        }
        let mut counters = self.counters.lock();
        counters.retain(|name, _| c.launches.iter().any(|l| l.name == *name));
        counters.entry(Arc::from(UNREGISTERED)).or_default();
        for gauge in [
            &metrics.campaign_observed_rps,
            &metrics.campaign_load_ratio,
            &metrics.campaign_expected_rps,
        ] {
            crate::metrics::remove_stale(gauge, |labels| {
                counters.contains_key(crate::metrics::label(labels, "campaign"))
            });
        }
    }

    pub fn hit_unregistered(&self) {
        if let Some(c) = self.counters.lock().get(UNREGISTERED) {
            c.hit();
        }
    }

    /// Every second: observed rates and the load ratio against `expected_peak_rps`.
    pub fn tick(&self, c: &Campaigns, metrics: &Metrics) {
        for l in &c.launches {
            let rps = l.counter.tick();
            metrics
                .campaign_observed_rps
                .with_label_values(&[&l.name])
                .set(rps);
            if let Some(e) = l.expected_peak_rps {
                metrics
                    .campaign_load_ratio
                    .with_label_values(&[&l.name])
                    .set(rps / e);
            }
        }
        if let Some(u) = self.counters.lock().get(UNREGISTERED) {
            let rps = u.tick();
            metrics
                .campaign_observed_rps
                .with_label_values(&[UNREGISTERED])
                .set(rps);
        }
    }

    /// Count an unregistered tag; log it the first time it is seen, then at most every ten
    /// seconds with its rate. Returns the metric label: the tag, or `other` past the first 100.
    pub fn unregistered_tag(&self, tag: &Tag, path: &str, now_ms: u64) -> String {
        let path = cut(path, FIELD_MAX);
        let mut tags = self.tags.lock();
        if let Some(seen) = tags.get_mut(&tag.value) {
            seen.total += 1;
            seen.since_log += 1;
            seen.last_seen_ms = now_ms;
            let elapsed = now_ms.saturating_sub(seen.last_log_ms);
            if elapsed >= TAG_LOG_EVERY_MS {
                let rate = seen.since_log as f64 * 1000.0 / elapsed as f64;
                tracing::warn!(
                    tag = %tag.value,
                    sent = %tag.raw,
                    %path,
                    rate_per_s = format!("{rate:.1}"),
                    total = seen.total,
                    "unregistered campaign tag still arriving"
                );
                seen.since_log = 0;
                seen.last_log_ms = now_ms;
            }
            return seen.label.clone();
        }
        let label = if tags.len() < MAX_TAG_LABELS {
            tag.value.clone()
        } else {
            OTHER.to_string()
        };
        if tags.len() >= MAX_TAGS_TRACKED {
            // A spray of random tags: counted under `other`, not logged one by one.
            return label;
        }
        tracing::warn!(
            tag = %tag.value,
            sent = %tag.raw,
            %path,
            rate_per_s = "first request",
            "unregistered campaign tag seen for the first time: an unannounced campaign? \
             register it in campaigns.toml"
        );
        tags.insert(
            tag.value.clone(),
            TagSeen {
                label: label.clone(),
                total: 1,
                since_log: 0,
                last_log_ms: now_ms,
                last_seen_ms: now_ms,
            },
        );
        label
    }

    /// Forget tags counted under `other` that nobody sent for [`TAG_IDLE_MS`], so the table
    /// makes room for (and logs) new ones. Labelled tags stay: their metric series do too.
    pub fn prune(&self, now_ms: u64) {
        self.tags.lock().retain(|_, seen| {
            seen.label != OTHER || now_ms.saturating_sub(seen.last_seen_ms) < TAG_IDLE_MS
        });
    }

    /// Tags remembered (labelled or not).
    pub fn tags_tracked(&self) -> usize {
        self.tags.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(v: &str) -> Tag {
        Tag {
            value: v.into(),
            raw: v.into(),
        }
    }

    #[test]
    fn the_tag_table_is_bounded_and_forgets_idle_unlabelled_tags() {
        let s = Stats::default();
        for i in 0..MAX_TAGS_TRACKED + 50 {
            let label = s.unregistered_tag(&tag(&format!("t{i}")), "/", 1_000);
            assert_eq!(
                label,
                if i < MAX_TAG_LABELS {
                    format!("t{i}")
                } else {
                    OTHER.into()
                }
            );
        }
        assert_eq!(s.tags_tracked(), MAX_TAGS_TRACKED);
        s.prune(1_000 + TAG_IDLE_MS - 1);
        assert_eq!(s.tags_tracked(), MAX_TAGS_TRACKED, "not idle long enough");
        // One unlabelled tag is still being sent: it stays, with the labelled ones.
        s.unregistered_tag(&tag("t500"), "/", 1_000 + TAG_IDLE_MS);
        s.prune(1_000 + TAG_IDLE_MS);
        assert_eq!(s.tags_tracked(), MAX_TAG_LABELS + 1);
    }
}
