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

use http::Method;
use pingora::http::RequestHeader;

use crate::limits::{BoundLimit, KeySource, LimitSpec, keys};
use crate::upstream::Upstream;

/// Label and header value for tagged traffic no launch claims.
pub const UNREGISTERED: &str = "unregistered";

/// [`UNREGISTERED`] as a shared string, allocated once: a request's context keeps it.
fn unregistered_name() -> Arc<str> {
    static NAME: std::sync::LazyLock<Arc<str>> =
        std::sync::LazyLock::new(|| Arc::from(UNREGISTERED));
    NAME.clone()
}

/// What a launch ticket says to do with its tagged requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchAction {
    Divert,
    Queue,
    Pass,
    Pause,
}

/// What to do with tagged requests whose tag no launch names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnregisteredAction {
    Divert,
    Queue,
    Pass,
    Reject,
}

/// The requests an action applies to: paths under one of `targets` (all paths when empty) with
/// one of `methods`. Other tagged requests pass to the app, attributed to their campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Path prefixes; empty = every path.
    pub targets: Vec<String>,
    /// `None` = every method.
    pub methods: Option<Vec<Method>>,
}

/// The methods a diverting, queueing, pausing or rejecting action applies to when the config
/// does not say: the ones that change something. A tagged page view (GET) then reaches the app,
/// so a newsletter link never breaks the shop.
pub const WRITE_METHODS: [Method; 4] = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];

impl Scope {
    pub fn applies(&self, path: &str, method: &Method) -> bool {
        (self.targets.is_empty() || self.targets.iter().any(|t| path.starts_with(t.as_str())))
            && self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// Would this scope catch a GET on every path (a shop's page views)?
    pub fn catches_page_views(&self) -> bool {
        self.targets.is_empty()
            && self
                .methods
                .as_ref()
                .is_none_or(|m| m.contains(&Method::GET))
    }
}

/// A launch ticket. `L` is its limit at this stage and `C` its request counter: the compiled spec
/// has `LimitSpec` and `()`; the live snapshot the bound limit and the counter kept across reloads
/// by launch name ([`crate::snapshot::build`]).
#[derive(Debug)]
pub struct Launch<L = BoundLimit, C = Arc<stats::RateCounter>> {
    pub name: Arc<str>,
    /// Lower-cased: tags compare case-insensitively.
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub ticket: Option<String>,
    pub starts: Option<jiff::Timestamp>,
    pub ends: Option<jiff::Timestamp>,
    pub expected_volume: Option<String>,
    pub expected_peak_rps: Option<f64>,
    /// The requests its action (and limit) applies to.
    pub scope: Scope,
    pub new_fields: Vec<String>,
    pub action: LaunchAction,
    pub limit: Option<L>,
    /// Where the launch and its targets are written, for `seawall check` warnings.
    pub name_span: Range<usize>,
    pub target_spans: Vec<Range<usize>>,
    /// Requests of this launch, for its observed rate.
    pub counter: C,
}

impl<L, C> Launch<L, C> {
    pub fn in_window(&self, now: jiff::Timestamp) -> bool {
        self.starts.is_none_or(|s| now >= s) && self.ends.is_none_or(|e| now <= e)
    }
}

#[derive(Debug)]
pub struct Unregistered<L = BoundLimit> {
    pub action: UnregisteredAction,
    /// The requests its action (and limit) applies to.
    pub scope: Scope,
    pub limit: Option<L>,
}

/// The campaign registry; `L` and `C` as for [`Launch`].
#[derive(Debug)]
pub struct Campaigns<L = BoundLimit, C = Arc<stats::RateCounter>> {
    pub tag_sources: Vec<KeySource>,
    pub ingest: Option<Arc<Upstream>>,
    /// `ingest_queue`: where `action = "queue"` puts a request.
    pub ingest_queue: Option<Arc<str>>,
    pub unregistered: Unregistered<L>,
    pub launches: Vec<Launch<L, C>>,
    /// Lower-cased tag -> index into `launches`.
    pub by_tag: HashMap<String, usize>,
}

/// The campaign registry as config loading compiles it.
pub type CampaignsSpec = Campaigns<LimitSpec, ()>;

impl<L, C> Default for Campaigns<L, C> {
    fn default() -> Self {
        Campaigns {
            tag_sources: Vec::new(),
            ingest: None,
            ingest_queue: None,
            unregistered: Unregistered {
                action: UnregisteredAction::Pass,
                scope: Scope {
                    targets: Vec::new(),
                    methods: None,
                },
                limit: None,
            },
            launches: Vec::new(),
            by_tag: HashMap::new(),
        }
    }
}

impl<L, C> Campaigns<L, C> {
    /// The same registry with each limit and counter turned into what the next stage holds.
    pub fn bind<M, D>(
        self,
        mut limit: impl FnMut(L) -> M,
        mut counter: impl FnMut(&Launch<L, C>) -> D,
    ) -> Campaigns<M, D> {
        let launches = self
            .launches
            .into_iter()
            .map(|l| {
                let counter = counter(&l);
                Launch {
                    name: l.name,
                    tags: l.tags,
                    owner: l.owner,
                    ticket: l.ticket,
                    starts: l.starts,
                    ends: l.ends,
                    expected_volume: l.expected_volume,
                    expected_peak_rps: l.expected_peak_rps,
                    scope: l.scope,
                    new_fields: l.new_fields,
                    action: l.action,
                    limit: l.limit.map(&mut limit),
                    name_span: l.name_span,
                    target_spans: l.target_spans,
                    counter,
                }
            })
            .collect();
        Campaigns {
            tag_sources: self.tag_sources,
            ingest: self.ingest,
            ingest_queue: self.ingest_queue,
            unregistered: Unregistered {
                action: self.unregistered.action,
                scope: self.unregistered.scope,
                limit: self.unregistered.limit.map(limit),
            },
            launches,
            by_tag: self.by_tag,
        }
    }
}

/// What is done with a tagged request; its [`Action::label`] is the `action` label of
/// `seawall_campaign_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// To the ingestion upstream, never to the app.
    Divert,
    /// Into `ingest_queue` (durably accepted, delivered later), never to the app directly.
    Queue,
    /// To the route's upstream as usual.
    Pass,
    /// A paused launch: 503 + Retry-After, no upstream.
    Pause,
    /// An unregistered tag under `action = "reject"`: 503 + Retry-After, no upstream.
    Reject,
    /// Stopped by a rate limit (its campaign's or the route's).
    Limited,
}

impl Action {
    pub fn label(self) -> &'static str {
        match self {
            Action::Divert => "divert",
            Action::Queue => "queue",
            Action::Pass => "pass",
            Action::Pause => "pause",
            Action::Reject => "reject",
            Action::Limited => "limited",
        }
    }

    /// Answered 503 without reaching any upstream.
    pub fn refuses(self) -> bool {
        matches!(self, Action::Pause | Action::Reject)
    }
}

impl From<LaunchAction> for Action {
    fn from(a: LaunchAction) -> Action {
        match a {
            LaunchAction::Divert => Action::Divert,
            LaunchAction::Queue => Action::Queue,
            LaunchAction::Pass => Action::Pass,
            LaunchAction::Pause => Action::Pause,
        }
    }
}

impl From<UnregisteredAction> for Action {
    fn from(a: UnregisteredAction) -> Action {
        match a {
            UnregisteredAction::Divert => Action::Divert,
            UnregisteredAction::Queue => Action::Queue,
            UnregisteredAction::Pass => Action::Pass,
            UnregisteredAction::Reject => Action::Reject,
        }
    }
}

#[derive(Debug)]
pub struct Classified<'a> {
    /// The launch's name, or [`UNREGISTERED`].
    pub campaign: Arc<str>,
    pub launch: Option<&'a Launch>,
    pub tag: Tag,
    pub action: Action,
    pub limit: Option<&'a BoundLimit>,
}

/// Longest tag kept, in bytes after decoding. A longer one, or one with a control character,
/// counts as the unregistered tag [`INVALID_TAG`]: a megabyte-long cookie is neither decoded
/// nor remembered, and nothing raw reaches a metric label.
pub const MAX_TAG_LEN: usize = 64;

/// The tag of a request whose tag value is too long or not printable.
pub const INVALID_TAG: &str = "invalid";

/// A request's campaign tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// URL-decoded, trimmed, lower-cased; or [`INVALID_TAG`].
    pub value: String,
    /// As sent (invalid UTF-8 shown as U+FFFD), cut to at most [`MAX_TAG_LEN`] bytes: what logs
    /// show of an invalid or unregistered tag.
    pub raw: String,
}

/// URL-decode (and `+` as space for query parameters), trim, lower-case; `None` when the result
/// is too long or has a control character.
fn decode_tag(raw: &[u8], from_query: bool) -> Option<String> {
    // Every byte of a tag can take three as an escape: anything longer cannot fit.
    if raw.len() > MAX_TAG_LEN * 3 {
        return None;
    }
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
    let tag = String::from_utf8_lossy(&decoded).trim().to_lowercase();
    (tag.len() <= MAX_TAG_LEN && !tag.chars().any(char::is_control)).then_some(tag)
}

/// The campaign tag of a request: the first tag source that carries a non-empty value.
pub fn read_tag(c: &Campaigns, req: &RequestHeader) -> Option<Tag> {
    c.tag_sources.iter().find_map(|src| {
        let raw = keys::value(src, req)?;
        // Cut after the lossy conversion, at a character boundary: a U+FFFD for each invalid
        // byte takes three, so cutting the bytes first could still show 192.
        let shown = |r: &[u8]| {
            let r = &r[..r.len().min(MAX_TAG_LEN)];
            let mut s = String::from_utf8_lossy(r).into_owned();
            let mut end = s.len().min(MAX_TAG_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        };
        match decode_tag(raw, matches!(src, KeySource::Query(_))) {
            Some(t) if t.is_empty() => None,
            Some(value) => Some(Tag {
                value,
                raw: shown(raw),
            }),
            None => Some(Tag {
                value: INVALID_TAG.to_string(),
                raw: shown(raw),
            }),
        }
    })
}

/// Classify a request once. `None`: untagged (or no campaigns configured). `path` is the path
/// routes were matched on.
///
/// A registered launch applies when its tag matches and `now` is inside its window; its action
/// and limit apply to the requests of its scope (targets, methods). The same tag on another path
/// or method passes to the app, attributed to the launch. A tag outside its launch's window
/// counts as unregistered, and `[unregistered]` has a scope too.
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
    if let Some(launch) = c.by_tag.get(&tag.value).map(|&i| &c.launches[i])
        && launch.in_window(now)
    {
        let targeted = launch.scope.applies(path, &req.method);
        return Some(Classified {
            campaign: launch.name.clone(),
            launch: Some(launch),
            tag,
            action: if targeted {
                launch.action.into()
            } else {
                Action::Pass
            },
            limit: launch.limit.as_ref().filter(|_| targeted),
        });
    }
    let targeted = c.unregistered.scope.applies(path, &req.method);
    Some(Classified {
        campaign: unregistered_name(),
        launch: None,
        tag,
        action: if targeted {
            c.unregistered.action.into()
        } else {
            Action::Pass
        },
        limit: c.unregistered.limit.as_ref().filter(|_| targeted),
    })
}

#[cfg(test)]
mod tests;
