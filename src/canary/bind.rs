//! Attach live canary state to the routes of a snapshot about to go live: the one place the
//! canary meets the snapshot's types (routes, campaign launches).

use std::collections::HashSet;
use std::sync::Arc;

use super::{Registry, launches};
use crate::campaign::Launch;
use crate::metrics::Metrics;
use crate::routing::Route;

/// Bind every route's canary (kept when its table is unchanged, see [`Registry::bind`]), give
/// each the launches that may freeze it, and forget canaries of routes that no longer have
/// one. Call with the snapshot's routes and launches before the snapshot is stored.
pub fn bind_routes(reg: &Registry, routes: &mut [Route], launches: &[Launch], metrics: &Metrics) {
    let mut live: HashSet<Arc<str>> = HashSet::new();
    for route in routes.iter_mut() {
        let Some(c) = route.canary.as_mut() else {
            continue;
        };
        let freeze = if c.spec.freeze_during_launches {
            launches::serving(&route.path, launches)
        } else {
            Vec::new()
        };
        c.state = Some(reg.bind(&route.name, &c.spec, freeze, metrics));
        live.insert(route.name.clone());
    }
    reg.retain(&live, metrics);
}
