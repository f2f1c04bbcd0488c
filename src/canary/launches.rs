//! Which campaign launches freeze a route's canary (`freeze_during_launches = true`).
//!
//! A launch freezes the canary of every route that may serve one of its `targets` (path
//! prefixes; none = every tagged request, so every route). When in doubt (a `path_regex`
//! route), the route counts as served: a freeze costs a delayed rollout, a canary failing in
//! the middle of a launch costs the launch's leads.

use std::sync::Arc;

use crate::campaign::Launch;
use crate::routing::PathMatch;

/// A launch's name and window, all the canary needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchWindow {
    pub name: Arc<str>,
    pub starts: Option<jiff::Timestamp>,
    pub ends: Option<jiff::Timestamp>,
}

impl LaunchWindow {
    /// Inclusive at both ends, as `Launch::in_window`.
    pub fn contains(&self, now: jiff::Timestamp) -> bool {
        self.starts.is_none_or(|s| now >= s) && self.ends.is_none_or(|e| now <= e)
    }
}

/// May a route with this path matcher serve a request under the path prefix `target`?
pub fn path_may_serve(path: &PathMatch, target: &str) -> bool {
    match path {
        PathMatch::Any | PathMatch::Regex(_) => true,
        PathMatch::Prefix(p) => target.starts_with(p.as_str()) || p.starts_with(target),
        PathMatch::Exact(p) => p.starts_with(target),
    }
}

/// The launches whose targets the route may serve.
pub fn serving<L, C>(path: &PathMatch, launches: &[Launch<L, C>]) -> Vec<LaunchWindow> {
    launches
        .iter()
        .filter(|l| {
            let targets = &l.scope.targets;
            targets.is_empty() || targets.iter().any(|t| path_may_serve(path, t))
        })
        .map(|l| LaunchWindow {
            name: l.name.clone(),
            starts: l.starts,
            ends: l.ends,
        })
        .collect()
}
