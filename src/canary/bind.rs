//! A route's canary bound to its live state when a snapshot is built: the one place the canary
//! meets the snapshot's types (routes' path matchers, campaign launches).

use std::sync::Arc;

use super::{BoundCanary, Registry, RouteCanary, launches};
use crate::campaign::Launch;
use crate::metrics::Metrics;
use crate::routing::PathMatch;

/// Bind one route's canary (kept when its table is unchanged, see [`Registry::bind`]) and give
/// it the launches that may freeze it. After every route, [`Registry::retain`] forgets the
/// canaries of routes that no longer have one.
pub fn bind<L, C>(
    reg: &Registry,
    route: &Arc<str>,
    path: &PathMatch,
    def: RouteCanary,
    launches: &[Launch<L, C>],
    metrics: &Metrics,
) -> BoundCanary {
    let freeze = if def.spec.freeze_during_launches {
        launches::serving(path, launches)
    } else {
        Vec::new()
    };
    let state = reg.bind(route, &def.spec, freeze, metrics);
    BoundCanary { def, state }
}
