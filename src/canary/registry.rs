//! Every route's canary, kept across reloads by route name and table digest.
//!
//! Binding a freshly loaded snapshot's canary keeps the live [`CanaryRoute`] when its
//! `[routes.canary]` table means the same as before (same digest): its rollback, streak and
//! current window survive an unrelated edit. A changed table starts a new canary (a rollback is
//! lifted), and a route that no longer has one drops it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tracing::{info, warn};

use super::launches::LaunchWindow;
use super::state::{CanaryRoute, CanaryStatus, Event, Rollback};
use super::{CanarySpec, judge::Breach};
use crate::metrics::Metrics;

#[derive(Debug, Clone, PartialEq)]
pub enum RollbackError {
    /// No route of that name has a canary (404).
    NoCanary,
    /// It is rolled back already: the standing rollback (the admin answers 200 with it).
    AlreadyRolledBack(Rollback),
}

#[derive(Default)]
pub struct Registry {
    routes: Mutex<HashMap<Arc<str>, Arc<CanaryRoute>>>,
}

impl Registry {
    /// The live canary of `route` for this spec: the same one as before if the table's
    /// digest is unchanged, else a new one. `launches` are those that may freeze it.
    pub fn bind(
        &self,
        route: &Arc<str>,
        spec: &Arc<CanarySpec>,
        launches: Vec<LaunchWindow>,
        metrics: &Metrics,
    ) -> Arc<CanaryRoute> {
        let digest = spec.digest();
        let mut map = self.routes.lock();
        let live = match map.get(route) {
            Some(c) if c.digest() == digest => c.clone(),
            old => {
                if let Some(r) = old.and_then(|o| o.rolled_back()) {
                    info!(
                        route = %route,
                        upstream = %spec.upstream,
                        rolled_back_at = %r.at,
                        "canary table changed: the rollback is lifted, the canary starts again"
                    );
                }
                let c = Arc::new(CanaryRoute::new(route.clone(), spec.clone(), metrics));
                map.insert(route.clone(), c.clone());
                c
            }
        };
        live.set_launches(launches);
        live
    }

    /// Forget canaries of routes not in `live` (call after binding a whole snapshot).
    pub fn retain(&self, live: &HashSet<Arc<str>>, metrics: &Metrics) {
        let mut map = self.routes.lock();
        map.retain(|route, _| {
            let keep = live.contains(route);
            if !keep {
                // The gauge would otherwise report the last weight forever.
                let _ = metrics.canary_weight.remove_label_values(&[route]);
            }
            keep
        });
    }

    pub fn get(&self, route: &str) -> Option<Arc<CanaryRoute>> {
        self.routes.lock().get(route).cloned()
    }

    /// Tick every canary and log what happened; the events are returned for tests.
    pub fn tick(&self, now_ms: u64, wall: jiff::Timestamp) -> Vec<(Arc<str>, Event)> {
        let all: Vec<_> = self.routes.lock().values().cloned().collect();
        let mut out = Vec::new();
        for c in all {
            for e in c.tick(now_ms, wall) {
                log_event(&c, &e);
                out.push((c.route().clone(), e));
            }
        }
        out
    }

    /// `POST /-/canary/ROUTE/rollback`: weight 0 now, until the table changes.
    pub fn rollback(&self, route: &str, wall: jiff::Timestamp) -> Result<Rollback, RollbackError> {
        let c = self.get(route).ok_or(RollbackError::NoCanary)?;
        let r = c
            .rollback_now(wall)
            .map_err(RollbackError::AlreadyRolledBack)?;
        log_event(&c, &Event::RolledBack(r.clone()));
        Ok(r)
    }

    /// Every canary's state, by route name.
    pub fn status(&self) -> Vec<CanaryStatus> {
        let mut all: Vec<_> = self.routes.lock().values().map(|c| c.status()).collect();
        all.sort_by(|a, b| a.route.cmp(&b.route));
        all
    }

    pub fn len(&self) -> usize {
        self.routes.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn reasons(b: &[Breach]) -> String {
    b.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The log line of an event: WARN for what an on-call engineer must see (rollback, bad
/// window), INFO for the rest.
pub fn log_event(c: &CanaryRoute, e: &Event) {
    let spec = c.spec();
    let route = c.route();
    match e {
        Event::RolledBack(r) => warn!(
            route = %route,
            upstream = %spec.upstream,
            release = spec.release.as_deref().unwrap_or(""),
            trigger = r.trigger.label(),
            weight = spec.weight,
            "canary rolled back: weight {} -> 0 until [routes.canary] changes: {}",
            spec.weight,
            r.reason
        ),
        Event::Bad {
            breaches,
            in_a_row,
            of,
        } => warn!(
            route = %route,
            upstream = %spec.upstream,
            "canary window bad ({in_a_row} of {of} in a row for a rollback): {}",
            reasons(breaches)
        ),
        Event::Inconclusive {
            stable,
            canary,
            min,
        } => info!(
            route = %route,
            upstream = %spec.upstream,
            "canary window inconclusive: {canary} canary and {stable} stable requests, \
             min_requests is {min} on each side (said once for this canary)"
        ),
        Event::Frozen { launch } => info!(
            route = %route,
            upstream = %spec.upstream,
            launch = %launch,
            "canary frozen at weight 0: launch {launch:?} is in its window"
        ),
        Event::Unfrozen { launch } => info!(
            route = %route,
            upstream = %spec.upstream,
            launch = %launch,
            "canary unfrozen: launch {launch:?} has left its window, weight {} now",
            c.weight_in_force()
        ),
    }
}
