use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;

use super::spec;
use crate::canary::judge::Breach;
use crate::canary::{
    CanaryRoute, CanarySpec, Event, LaunchWindow, Registry, RollbackError, Side, Trigger,
};
use crate::limits::limiter::{Clock, FakeClock};
use crate::metrics::Metrics;

const MS: fn(u64) -> Duration = Duration::from_millis;
const WINDOW_MS: u64 = 60_000;

fn wall(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn noon() -> jiff::Timestamp {
    wall("2026-06-01T12:00:00Z")
}

struct Rig {
    clock: FakeClock,
    metrics: Metrics,
    canary: CanaryRoute,
}

impl Rig {
    fn new(spec: CanarySpec) -> Rig {
        let metrics = Metrics::new();
        let canary = CanaryRoute::new(Arc::from("signup"), Arc::new(spec), &metrics);
        let clock = FakeClock::at(3_600_000);
        // The first tick starts the first window.
        assert!(canary.tick(clock.now_ms(), noon()).is_empty());
        Rig {
            clock,
            metrics,
            canary,
        }
    }

    /// One window's traffic: `stable` and `canary` requests with that many 5xx each.
    fn window(&self, stable: (u64, u64), canary: (u64, u64)) -> Vec<Event> {
        for (side, (n, errors)) in [(Side::Stable, stable), (Side::Canary, canary)] {
            for i in 0..n {
                let status = if i < errors { 502 } else { 200 };
                self.canary.record(side, status, MS(20));
            }
        }
        // Ticks inside the window judge nothing.
        self.clock.advance(WINDOW_MS - 1);
        assert!(self.canary.tick(self.clock.now_ms(), noon()).is_empty());
        self.clock.advance(1);
        self.canary.tick(self.clock.now_ms(), noon())
    }

    fn metric(&self, series: &str) -> String {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        text.lines()
            .find(|l| l.starts_with(series))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    }
}

const HEALTHY: ((u64, u64), (u64, u64)) = ((2000, 4), (120, 0));
const FAILING: ((u64, u64), (u64, u64)) = ((2000, 4), (120, 30));

#[test]
fn a_healthy_canary_is_never_rolled_back() {
    let r = Rig::new(spec());
    for _ in 0..50 {
        let e = r.window(HEALTHY.0, HEALTHY.1);
        assert!(e.is_empty(), "{e:?}");
    }
    let s = r.canary.status();
    assert_eq!(
        (s.state, s.weight_in_force, s.windows_closed),
        ("active", 5.0, 50)
    );
    assert_eq!(s.last_window.unwrap().verdict, "good");
    assert_eq!(r.metric("seawall_canary_weight{route=\"signup\"}"), "5");
}

#[test]
fn bad_windows_in_a_row_roll_back_with_the_figures() {
    let r = Rig::new(spec());
    let e = r.window(FAILING.0, FAILING.1);
    let [
        Event::Bad {
            in_a_row: 1,
            of: 2,
            breaches,
        },
    ] = &e[..]
    else {
        panic!("{e:?}")
    };
    assert!(matches!(
        breaches[0],
        Breach::ErrorRate {
            errors: 30,
            requests: 120,
            ..
        }
    ));
    assert!(matches!(breaches[1], Breach::WorseThanStable { .. }));
    assert_eq!(
        r.canary.weight_in_force(),
        5.0,
        "one bad window is not a rollback"
    );

    let e = r.window(FAILING.0, FAILING.1);
    let [Event::RolledBack(rb)] = &e[..] else {
        panic!("{e:?}")
    };
    assert_eq!(rb.trigger, Trigger::Judge);
    assert_eq!(rb.at, noon());
    assert!(
        rb.reason.starts_with(
            "2 bad windows in a row; last: canary error rate 25.00% (30/120) above \
             max_error_rate 2.00%; canary error rate 25.00% (30/120) significantly above \
             stable 0.20% (4/2000)"
        ),
        "{}",
        rb.reason
    );
    assert_eq!(r.canary.weight_in_force(), 0.0);
    assert_eq!(r.metric("seawall_canary_weight{route=\"signup\"}"), "0");
    assert_eq!(
        r.metric("seawall_canary_rollbacks_total{route=\"signup\",trigger=\"judge\"}"),
        "1"
    );
    // Rolled back, the canary receives nothing, whoever asks.
    for i in 0..1000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + i));
        assert_eq!(r.canary.choose(&HeaderMap::new(), ip).side, Side::Stable);
    }
    // And it stays rolled back: later windows are not judged.
    for _ in 0..5 {
        assert!(r.window(HEALTHY.0, (0, 0)).is_empty());
    }
    assert_eq!(r.canary.status().state, "rolled_back");
}

#[test]
fn a_good_window_resets_the_streak_an_inconclusive_one_does_not() {
    let r = Rig::new(spec());
    assert!(matches!(
        r.window(FAILING.0, FAILING.1)[..],
        [Event::Bad { in_a_row: 1, .. }]
    ));
    assert!(r.window(HEALTHY.0, HEALTHY.1).is_empty());
    assert!(matches!(
        r.window(FAILING.0, FAILING.1)[..],
        [Event::Bad { in_a_row: 1, .. }]
    ));
    // Too few canary requests: neither good nor bad.
    let e = r.window((2000, 0), (10, 10));
    assert!(
        matches!(
            e[..],
            [Event::Inconclusive {
                stable: 2000,
                canary: 10,
                min: 100
            }]
        ),
        "{e:?}"
    );
    assert_eq!(r.canary.status().bad_windows_in_a_row, 1);
    assert!(matches!(
        r.window(FAILING.0, FAILING.1)[..],
        [Event::RolledBack(_)]
    ));
}

#[test]
fn inconclusive_is_said_once_per_canary() {
    let r = Rig::new(spec());
    let mut said = 0;
    for i in 0..10 {
        // Alternate with judged windows: still said only once.
        let e = if i % 3 == 2 {
            r.window(HEALTHY.0, HEALTHY.1)
        } else {
            r.window((50, 0), (3, 0))
        };
        said += e
            .iter()
            .filter(|e| matches!(e, Event::Inconclusive { .. }))
            .count();
    }
    assert_eq!(said, 1);
    assert_eq!(
        r.canary.status().last_window.unwrap().verdict,
        "inconclusive"
    );
    // No traffic at all is inconclusive too, and never bad.
    assert!(r.window((0, 0), (0, 0)).is_empty());
}

#[test]
fn windows_close_on_the_clock_and_restart_after_a_stall() {
    let r = Rig::new(spec());
    for _ in 0..200 {
        r.canary.record(Side::Stable, 200, MS(5));
    }
    for _ in 0..200 {
        r.canary.record(Side::Canary, 500, MS(5));
    }
    // A stall: the next tick comes 10 windows late. The window closes once, with all its counts.
    r.clock.advance(10 * WINDOW_MS);
    let e = r.canary.tick(r.clock.now_ms(), noon());
    assert!(matches!(e[..], [Event::Bad { in_a_row: 1, .. }]), "{e:?}");
    // The next window starts at that tick, not on the old grid.
    r.clock.advance(WINDOW_MS - 1);
    assert!(r.canary.tick(r.clock.now_ms(), noon()).is_empty());
    r.clock.advance(1);
    let _ = r.canary.tick(r.clock.now_ms(), noon());
    assert_eq!(r.canary.status().windows_closed, 2);
}

#[test]
fn latency_alone_rolls_back() {
    let mut s = spec();
    s.bad_windows = 1;
    let r = Rig::new(s);
    for _ in 0..500 {
        r.canary.record(Side::Stable, 200, MS(30));
    }
    for i in 0..200 {
        let latency = if i < 10 { MS(1500) } else { MS(30) };
        r.canary.record(Side::Canary, 200, latency);
    }
    r.clock.advance(WINDOW_MS);
    let e = r.canary.tick(r.clock.now_ms(), noon());
    let [Event::RolledBack(rb)] = &e[..] else {
        panic!("{e:?}")
    };
    assert!(
        rb.reason
            .contains("above max_p99 800ms (10 of 200 requests slower, at most 2 allowed)"),
        "{}",
        rb.reason
    );
}

#[test]
fn a_launch_in_its_window_freezes_the_canary_apart_from_a_rollback() {
    let mut s = spec();
    s.freeze_during_launches = true;
    let r = Rig::new(s);
    r.canary.set_launches(vec![LaunchWindow {
        name: Arc::from("summer-sale"),
        starts: Some(wall("2026-06-01T13:00:00Z")),
        ends: Some(wall("2026-06-01T14:00:00Z")),
    }]);
    assert!(r.canary.tick(r.clock.now_ms(), noon()).is_empty());
    assert_eq!(r.canary.weight_in_force(), 5.0);

    let e = r
        .canary
        .tick(r.clock.now_ms(), wall("2026-06-01T13:00:00Z"));
    assert_eq!(
        e,
        vec![Event::Frozen {
            launch: Arc::from("summer-sale")
        }]
    );
    assert_eq!(r.canary.weight_in_force(), 0.0);
    let s = r.canary.status();
    assert_eq!(
        (s.state, s.frozen_by.as_deref()),
        ("frozen", Some("summer-sale"))
    );
    assert!(s.rolled_back.is_none());
    // While frozen a failing window (from requests already under way) is not judged.
    for _ in 0..200 {
        r.canary.record(Side::Canary, 503, MS(5));
        r.canary.record(Side::Stable, 200, MS(5));
    }
    r.clock.advance(WINDOW_MS);
    assert!(
        r.canary
            .tick(r.clock.now_ms(), wall("2026-06-01T13:30:00Z"))
            .is_empty()
    );

    let e = r
        .canary
        .tick(r.clock.now_ms(), wall("2026-06-01T14:00:01Z"));
    assert_eq!(
        e,
        vec![Event::Unfrozen {
            launch: Arc::from("summer-sale")
        }]
    );
    assert_eq!(r.canary.weight_in_force(), 5.0);
    assert_eq!(
        r.metric("seawall_canary_rollbacks_total{route=\"signup\",trigger=\"judge\"}"),
        "0"
    );
}

#[test]
fn launches_do_not_freeze_without_freeze_during_launches() {
    let r = Rig::new(spec());
    r.canary.set_launches(vec![LaunchWindow {
        name: Arc::from("always"),
        starts: None,
        ends: None,
    }]);
    assert!(r.canary.tick(r.clock.now_ms(), noon()).is_empty());
    assert_eq!(r.canary.weight_in_force(), 5.0);
}

#[test]
fn manual_rollback_and_its_errors() {
    let metrics = Metrics::new();
    let reg = Registry::default();
    let route: Arc<str> = Arc::from("signup");
    let c = reg.bind(&route, &Arc::new(spec()), Vec::new(), &metrics);
    assert_eq!(reg.rollback("nope", noon()), Err(RollbackError::NoCanary));
    let rb = reg.rollback("signup", noon()).unwrap();
    assert_eq!(rb.trigger, Trigger::Manual);
    assert_eq!(c.weight_in_force(), 0.0);
    assert_eq!(
        reg.rollback("signup", wall("2026-06-01T12:05:00Z")),
        Err(RollbackError::AlreadyRolledBack(rb.clone()))
    );
    let status = reg.status();
    assert_eq!(status.len(), 1);
    let json = serde_json::to_value(&status[0]).unwrap();
    assert_eq!(json["state"], "rolled_back");
    assert_eq!(json["rolled_back"]["trigger"], "manual");
    assert_eq!(json["rolled_back"]["at"], "2026-06-01T12:00:00Z");
    assert_eq!(json["weight"], 5);
    assert_eq!(json["weight_in_force"], 0.0);
}

#[test]
fn a_rollback_survives_an_unrelated_rebind_and_a_changed_table_restarts_it() {
    let metrics = Metrics::new();
    let reg = Registry::default();
    let route: Arc<str> = Arc::from("signup");
    let first = reg.bind(&route, &Arc::new(spec()), Vec::new(), &metrics);
    reg.rollback("signup", noon()).unwrap();

    // A reload that left the table alone (a new, equal spec): the same canary, still rolled back.
    let again = reg.bind(&route, &Arc::new(spec()), Vec::new(), &metrics);
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(again.weight_in_force(), 0.0);
    assert!(again.rolled_back().is_some());

    // The table changed (the fixed release): a new canary at its weight.
    let mut fixed = spec();
    fixed.release = Some("2.4.1".into());
    let fresh = reg.bind(&route, &Arc::new(fixed), Vec::new(), &metrics);
    assert!(!Arc::ptr_eq(&first, &fresh));
    assert_eq!(fresh.weight_in_force(), 5.0);
    assert!(fresh.rolled_back().is_none());
    assert!(Arc::ptr_eq(&reg.get("signup").unwrap(), &fresh));

    // A route whose canary is gone is forgotten, and so is its weight series.
    reg.retain(&HashSet::new(), &metrics);
    assert!(reg.is_empty());
    let text = String::from_utf8(metrics.render()).unwrap();
    assert!(!text.contains("seawall_canary_weight{"), "{text}");
}

#[test]
fn a_rebind_refreshes_the_launches() {
    let metrics = Metrics::new();
    let reg = Registry::default();
    let route: Arc<str> = Arc::from("signup");
    let mut s = spec();
    s.freeze_during_launches = true;
    let s = Arc::new(s);
    let c = reg.bind(&route, &s, Vec::new(), &metrics);
    assert!(reg.tick(3_600_000, noon()).is_empty());
    let launch = LaunchWindow {
        name: Arc::from("flash"),
        starts: None,
        ends: Some(wall("2026-06-02T00:00:00Z")),
    };
    let same = reg.bind(&route, &s, vec![launch], &metrics);
    assert!(Arc::ptr_eq(&c, &same));
    let e = reg.tick(3_601_000, noon());
    assert_eq!(e.len(), 1);
    assert_eq!(c.frozen_by().as_deref(), Some("flash"));
}

#[test]
fn outcomes_are_counted_by_side() {
    let r = Rig::new(spec());
    r.canary.record(Side::Canary, 200, MS(1));
    r.canary.record(Side::Canary, 504, MS(1));
    r.canary.record(Side::Canary, 502, MS(1));
    r.canary.record(Side::Stable, 404, MS(1));
    let m = |side: &str, outcome: &str| {
        r.metric(&format!(
            "seawall_canary_requests_total{{outcome=\"{outcome}\",route=\"signup\",side=\"{side}\"}}"
        ))
    };
    assert_eq!(m("canary", "ok"), "1");
    assert_eq!(m("canary", "error"), "2");
    assert_eq!(
        m("stable", "ok"),
        "1",
        "a 4xx is the client's error, not the version's"
    );
    assert_eq!(m("stable", "error"), "0");
}

#[test]
fn the_digest_changes_exactly_when_a_value_does() {
    let base = spec();
    assert_eq!(base.digest(), spec().digest());
    assert_eq!(base.digest().len(), 64);
    let mut variants: Vec<CanarySpec> = Vec::new();
    let mut v = |f: &dyn Fn(&mut CanarySpec)| {
        let mut s = spec();
        f(&mut s);
        variants.push(s);
    };
    v(&|s| s.upstream = Arc::from("app-v3"));
    v(&|s| s.weight = 6);
    v(&|s| s.sticky = crate::canary::Sticky::Cookie("c".into()));
    v(&|s| s.window = Duration::from_secs(61));
    v(&|s| s.min_requests = 101);
    v(&|s| s.max_error_rate = Some(0.021));
    v(&|s| s.max_error_rate = None);
    v(&|s| s.max_p99 = Some(MS(801)));
    v(&|s| s.max_p99 = None);
    v(&|s| s.bad_windows = 3);
    v(&|s| s.freeze_during_launches = true);
    v(&|s| s.release = Some("2.4.1".into()));
    let mut seen = HashSet::new();
    seen.insert(base.digest());
    for s in &variants {
        assert!(seen.insert(s.digest()), "{s:?} has a digest already seen");
    }
}
