//! Campaign-tagged traffic: the registry of launches (campaigns.toml) and the classification of
//! each request as a registered launch, an unregistered tag, or untagged.
//!
//! Classification is a pure function of the request and the time ([`classify`]); the proxy acts
//! on it: `divert` sends the request to the ingestion upstream with `X-Seawall-Campaign`, `pass`
//! lets it reach the route's upstream (attributed in logs and metrics), `pause`/`reject` answer
//! 503 without touching any upstream. [`stats`] keeps the observed rates and the first-seen log
//! of unregistered tags.

pub mod stats;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use pingora::http::RequestHeader;

use crate::config::values::KeySource;
use crate::limits::{BoundLimit, LimitSpec, keys};
use crate::upstream::Upstream;

pub use crate::config::schema::{LaunchAction, UnregisteredAction};

/// Label and header value for tagged traffic no launch claims.
pub const UNREGISTERED: &str = "unregistered";

/// [`UNREGISTERED`] as a shared string, allocated once: a request's context keeps it.
fn unregistered_name() -> Arc<str> {
    static NAME: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from(UNREGISTERED));
    NAME.clone()
}

#[derive(Debug)]
pub struct Launch {
    pub name: Arc<str>,
    /// Lower-cased: tags compare case-insensitively.
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub ticket: Option<String>,
    pub starts: Option<jiff::Timestamp>,
    pub ends: Option<jiff::Timestamp>,
    pub expected_volume: Option<String>,
    pub expected_peak_rps: Option<f64>,
    /// Path prefixes this launch applies to; empty = every tagged request.
    pub targets: Vec<String>,
    pub new_fields: Vec<String>,
    pub action: LaunchAction,
    pub limit: Option<LimitSpec>,
    /// Where the launch and its targets are written, for `seawall check` warnings.
    pub name_span: Range<usize>,
    pub target_spans: Vec<Range<usize>>,
    /// The limit with its state, attached when the snapshot is bound.
    pub bound: Option<BoundLimit>,
    /// Request counter for the observed rate, kept across reloads by launch name.
    pub counter: Option<Arc<stats::RateCounter>>,
}

impl Launch {
    pub fn in_window(&self, now: jiff::Timestamp) -> bool {
        self.starts.is_none_or(|s| now >= s) && self.ends.is_none_or(|e| now <= e)
    }

    pub fn targets_path(&self, path: &str) -> bool {
        self.targets.is_empty() || self.targets.iter().any(|t| path.starts_with(t.as_str()))
    }
}

#[derive(Debug)]
pub struct Unregistered {
    pub action: UnregisteredAction,
    pub limit: Option<LimitSpec>,
    pub bound: Option<BoundLimit>,
}

#[derive(Debug)]
pub struct Campaigns {
    pub tag_sources: Vec<KeySource>,
    pub ingest: Option<Arc<Upstream>>,
    /// `ingest_queue`: where `action = "queue"` puts a request.
    pub ingest_queue: Option<Arc<str>>,
    pub unregistered: Unregistered,
    pub launches: Vec<Launch>,
    /// Lower-cased tag -> index into `launches`.
    pub by_tag: HashMap<String, usize>,
}

impl Default for Campaigns {
    fn default() -> Self {
        Campaigns {
            tag_sources: Vec::new(),
            ingest: None,
            ingest_queue: None,
            unregistered: Unregistered {
                action: UnregisteredAction::Pass,
                limit: None,
                bound: None,
            },
            launches: Vec::new(),
            by_tag: HashMap::new(),
        }
    }
}

/// What to do with a tagged request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the ingestion upstream, never to the app.
    Divert,
    /// Into `ingest_queue` (durably accepted, delivered later), never to the app directly.
    Queue,
    /// To the route's upstream as usual.
    Pass,
    /// 503 + Retry-After, no upstream (a paused launch, or `reject` for unregistered tags).
    Refuse,
}

#[derive(Debug)]
pub struct Classified<'a> {
    /// The launch's name, or [`UNREGISTERED`].
    pub campaign: Arc<str>,
    pub launch: Option<&'a Launch>,
    /// The tag as read: URL-decoded, lower-cased.
    pub tag: String,
    pub action: Action,
    /// The `action` label of `seawall_campaign_requests_total`.
    pub action_label: &'static str,
    pub limit: Option<&'a BoundLimit>,
}

/// URL-decode (and `+` as space for query parameters), trim, lower-case.
fn decode_tag(raw: &[u8], from_query: bool) -> String {
    let plus_fixed: Vec<u8>;
    let bytes = if from_query && raw.contains(&b'+') {
        plus_fixed = raw
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        &plus_fixed[..]
    } else {
        raw
    };
    let decoded: std::borrow::Cow<'_, [u8]> = percent_encoding::percent_decode(bytes).into();
    String::from_utf8_lossy(&decoded).trim().to_lowercase()
}

/// The campaign tag of a request: the first tag source that carries a non-empty value.
pub fn read_tag(c: &Campaigns, req: &RequestHeader) -> Option<String> {
    c.tag_sources.iter().find_map(|src| {
        let raw = keys::value(src, req)?;
        let tag = decode_tag(raw, matches!(src, KeySource::Query(_)));
        (!tag.is_empty()).then_some(tag)
    })
}

/// Classify a request once. `None`: untagged (or no campaigns configured).
///
/// A registered launch applies when its tag matches, `now` is inside its window and, if it has
/// targets, the path is under one of them. The same tag on another path passes to the app,
/// attributed to the launch. A tag outside its launch's window counts as unregistered.
pub fn classify<'a>(
    c: &'a Campaigns,
    req: &RequestHeader,
    path: &str,
    now: jiff::Timestamp,
) -> Option<Classified<'a>> {
    if c.tag_sources.is_empty() {
        return None;
    }
    let tag = read_tag(c, req)?;
    if let Some(launch) = c.by_tag.get(&tag).map(|&i| &c.launches[i])
        && launch.in_window(now)
    {
        if !launch.targets_path(path) {
            return Some(Classified {
                campaign: launch.name.clone(),
                launch: Some(launch),
                tag,
                action: Action::Pass,
                action_label: "pass",
                limit: None,
            });
        }
        let (action, action_label) = match launch.action {
            LaunchAction::Divert => (Action::Divert, "divert"),
            LaunchAction::Queue => (Action::Queue, "queue"),
            LaunchAction::Pass => (Action::Pass, "pass"),
            LaunchAction::Pause => (Action::Refuse, "pause"),
        };
        return Some(Classified {
            campaign: launch.name.clone(),
            launch: Some(launch),
            tag,
            action,
            action_label,
            limit: launch.bound.as_ref(),
        });
    }
    let (action, action_label) = match c.unregistered.action {
        UnregisteredAction::Divert => (Action::Divert, "divert"),
        UnregisteredAction::Queue => (Action::Queue, "queue"),
        UnregisteredAction::Pass => (Action::Pass, "pass"),
        UnregisteredAction::Reject => (Action::Refuse, "reject"),
    };
    Some(Classified {
        campaign: unregistered_name(),
        launch: None,
        tag,
        action,
        action_label,
        limit: c.unregistered.bound.as_ref(),
    })
}

#[cfg(test)]
mod tests;
