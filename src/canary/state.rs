//! One route's canary: the weight in force, the windows, the bad-window streak, rollback and
//! freeze. The proxy calls [`CanaryRoute::choose`] and [`CanaryRoute::record`] (lock-free);
//! the maintenance tick calls [`CanaryRoute::tick`], the only place windows close and the
//! only user of the lock besides the admin's rollback and status.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::HeaderMap;
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounter};
use serde::Serialize;

use super::judge::{Breach, Verdict, judge};
use super::launches::LaunchWindow;
use super::window::{SideStats, Windows};
use super::{CanarySpec, Choice, Side, split};
use crate::metrics::Metrics;

/// What rolled a canary back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// `bad_windows` bad windows in a row.
    Judge,
    /// `POST /-/canary/ROUTE/rollback`.
    Manual,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Trigger::Judge => "judge",
            Trigger::Manual => "manual",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    pub at: jiff::Timestamp,
    pub trigger: Trigger,
    /// The breaches of the window that decided it (none for a manual rollback).
    pub breaches: Vec<Breach>,
    /// One line for logs and status: the figures that decided it.
    pub reason: String,
}

/// What a tick did that is worth a log line. [`super::registry::log_event`] writes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first inconclusive window of this canary (said once per table digest).
    Inconclusive {
        stable: u64,
        canary: u64,
        min: u64,
    },
    /// A bad window that did not (yet) roll back.
    Bad {
        breaches: Vec<Breach>,
        in_a_row: u32,
        of: u32,
    },
    RolledBack(Rollback),
    Frozen {
        launch: Arc<str>,
    },
    Unfrozen {
        launch: Arc<str>,
    },
}

/// The last closed window, for status.
#[derive(Debug, Clone)]
struct Closed {
    at: jiff::Timestamp,
    stable: SideStats,
    canary: SideStats,
    verdict: Verdict,
}

struct Control {
    /// Monotonic ms the current window started at; `None` until the first tick.
    window_start_ms: Option<u64>,
    bad_in_a_row: u32,
    inconclusive_said: bool,
    rolled_back: Option<Rollback>,
    frozen_by: Option<Arc<str>>,
    launches: Vec<LaunchWindow>,
    last: Option<Closed>,
    windows_closed: u64,
}

/// The series of one canary, resolved once so a request does no label lookups.
struct Series {
    outcomes: [[IntCounter; 2]; 2],
    weight: Gauge,
    rollbacks: [IntCounter; 2],
}

impl Series {
    fn new(route: &str, m: &Metrics) -> Series {
        let c = |side: Side, outcome: &str| {
            m.canary_requests
                .with_label_values(&[route, side.label(), outcome])
        };
        let r = |t: Trigger| m.canary_rollbacks.with_label_values(&[route, t.label()]);
        Series {
            outcomes: [
                [c(Side::Stable, "ok"), c(Side::Stable, "error")],
                [c(Side::Canary, "ok"), c(Side::Canary, "error")],
            ],
            weight: m.canary_weight.with_label_values(&[route]),
            rollbacks: [r(Trigger::Judge), r(Trigger::Manual)],
        }
    }
}

pub struct CanaryRoute {
    route: Arc<str>,
    spec: Arc<CanarySpec>,
    digest: Arc<str>,
    /// The weight in force, in basis points: the spec's, or 0 while rolled back or frozen.
    weight_bp: AtomicU32,
    windows: Windows,
    control: Mutex<Control>,
    series: Series,
}

impl std::fmt::Debug for CanaryRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanaryRoute")
            .field("route", &self.route)
            .field("digest", &self.digest)
            .field("weight_bp", &self.weight_bp.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CanaryRoute {
    pub fn new(route: Arc<str>, spec: Arc<CanarySpec>, metrics: &Metrics) -> CanaryRoute {
        let series = Series::new(&route, metrics);
        let me = CanaryRoute {
            digest: spec.digest().into(),
            weight_bp: AtomicU32::new(spec.weight_bp()),
            windows: Windows::default(),
            control: Mutex::new(Control {
                window_start_ms: None,
                bad_in_a_row: 0,
                inconclusive_said: false,
                rolled_back: None,
                frozen_by: None,
                launches: Vec::new(),
                last: None,
                windows_closed: 0,
            }),
            route,
            spec,
            series,
        };
        me.series.weight.set(f64::from(me.spec.weight));
        me
    }

    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    pub fn spec(&self) -> &Arc<CanarySpec> {
        &self.spec
    }

    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Percent of split requests the canary gets now.
    pub fn weight_in_force(&self) -> f64 {
        f64::from(self.weight_bp.load(Ordering::Relaxed)) / 100.0
    }

    /// Admission: the side of a request (only requests bound for the route's own upstream:
    /// diverted or queued campaign requests never reach the split).
    pub fn choose(&self, headers: &HeaderMap, client: IpAddr) -> Choice {
        let w = self.weight_bp.load(Ordering::Relaxed);
        let value = self.spec.sticky.read(headers);
        split::choose(
            &self.spec.sticky,
            self.spec.upstream.as_bytes(),
            w,
            value,
            client,
            &mut rand::rng(),
        )
    }

    /// Logging phase: one request's outcome on its side. `status` is what the client got
    /// (Seawall's own 502/503/504 included); 5xx counts as an error. `latency` is the time
    /// from the request's arrival to the end of its response.
    pub fn record(&self, side: Side, status: u16, latency: Duration) {
        let error = status >= 500;
        self.windows.record(side, error, latency, self.spec.max_p99);
        self.series.outcomes[side as usize][usize::from(error)].inc();
    }

    /// The launches that freeze this canary; refreshed at every bind (campaigns.toml may
    /// change without the canary table changing).
    pub fn set_launches(&self, launches: Vec<LaunchWindow>) {
        self.control.lock().launches = launches;
    }

    fn apply_weight(&self, c: &Control) {
        let bp = if c.rolled_back.is_some() || c.frozen_by.is_some() {
            0
        } else {
            self.spec.weight_bp()
        };
        self.weight_bp.store(bp, Ordering::Relaxed);
        self.series.weight.set(f64::from(bp) / 100.0);
    }

    /// Drive the canary: freeze or unfreeze by the launch calendar at `wall`, and close the
    /// window when `now_ms` (monotonic) has reached its end. Call about once a second.
    pub fn tick(&self, now_ms: u64, wall: jiff::Timestamp) -> Vec<Event> {
        let mut c = self.control.lock();
        let mut events = Vec::new();
        if self.spec.freeze_during_launches {
            let active = c
                .launches
                .iter()
                .find(|l| l.contains(wall))
                .map(|l| l.name.clone());
            match (c.frozen_by.clone(), active) {
                (None, Some(launch)) => {
                    c.frozen_by = Some(launch.clone());
                    events.push(Event::Frozen { launch });
                    self.restart_window(&mut c, now_ms);
                }
                (Some(launch), None) => {
                    c.frozen_by = None;
                    events.push(Event::Unfrozen { launch });
                    self.restart_window(&mut c, now_ms);
                }
                (Some(_), Some(other)) => c.frozen_by = Some(other),
                (None, None) => {}
            }
        } else if c.frozen_by.take().is_some() {
            self.restart_window(&mut c, now_ms);
        }
        self.apply_weight(&c);
        let Some(start) = c.window_start_ms else {
            c.window_start_ms = Some(now_ms);
            return events;
        };
        let len = u64::try_from(self.spec.window.as_millis()).unwrap_or(u64::MAX);
        if now_ms < start.saturating_add(len) {
            return events;
        }
        let (stable, canary) = self.windows.close();
        // Regular ticks keep the boundaries on the grid; after a stall, start afresh.
        c.window_start_ms = Some(if now_ms - start < len.saturating_mul(2) {
            start + len
        } else {
            now_ms
        });
        if c.rolled_back.is_some() || c.frozen_by.is_some() || self.spec.weight == 0 {
            return events;
        }
        let verdict = judge(&stable, &canary, &self.spec.thresholds());
        c.windows_closed += 1;
        c.last = Some(Closed {
            at: wall,
            stable,
            canary,
            verdict: verdict.clone(),
        });
        match verdict {
            Verdict::Inconclusive {
                stable,
                canary,
                min,
            } => {
                if !c.inconclusive_said {
                    c.inconclusive_said = true;
                    events.push(Event::Inconclusive {
                        stable,
                        canary,
                        min,
                    });
                }
            }
            Verdict::Good => c.bad_in_a_row = 0,
            Verdict::Bad(breaches) => {
                c.bad_in_a_row += 1;
                if c.bad_in_a_row >= self.spec.bad_windows {
                    let streak = match c.bad_in_a_row {
                        1 => "1 bad window".to_string(),
                        n => format!("{n} bad windows in a row"),
                    };
                    let reason = format!("{streak}; last: {}", join(&breaches));
                    let r = Rollback {
                        at: wall,
                        trigger: Trigger::Judge,
                        breaches,
                        reason,
                    };
                    self.roll_back(&mut c, r.clone());
                    events.push(Event::RolledBack(r));
                } else {
                    events.push(Event::Bad {
                        breaches,
                        in_a_row: c.bad_in_a_row,
                        of: self.spec.bad_windows,
                    });
                }
            }
        }
        events
    }

    fn restart_window(&self, c: &mut Control, now_ms: u64) {
        // Counts from before a freeze or unfreeze would mix two weights in one window.
        let _ = self.windows.close();
        c.window_start_ms = Some(now_ms);
    }

    fn roll_back(&self, c: &mut Control, r: Rollback) {
        self.series.rollbacks[r.trigger as usize].inc();
        c.rolled_back = Some(r);
        c.bad_in_a_row = 0;
        self.apply_weight(c);
    }

    /// Roll back by hand. `Err` with the standing rollback if it is rolled back already.
    pub fn rollback_now(&self, wall: jiff::Timestamp) -> Result<Rollback, Rollback> {
        let mut c = self.control.lock();
        if let Some(r) = &c.rolled_back {
            return Err(r.clone());
        }
        let r = Rollback {
            at: wall,
            trigger: Trigger::Manual,
            breaches: Vec::new(),
            reason: "rolled back by hand (POST /-/canary/ROUTE/rollback)".into(),
        };
        self.roll_back(&mut c, r.clone());
        Ok(r)
    }

    pub fn rolled_back(&self) -> Option<Rollback> {
        self.control.lock().rolled_back.clone()
    }

    pub fn frozen_by(&self) -> Option<Arc<str>> {
        self.control.lock().frozen_by.clone()
    }

    pub fn status(&self) -> CanaryStatus {
        let c = self.control.lock();
        let state = if c.rolled_back.is_some() {
            "rolled_back"
        } else if c.frozen_by.is_some() {
            "frozen"
        } else if self.spec.weight == 0 {
            "off"
        } else {
            "active"
        };
        CanaryStatus {
            route: self.route.to_string(),
            upstream: self.spec.upstream.to_string(),
            release: self.spec.release.clone(),
            digest: self.digest.to_string(),
            sticky: self.spec.sticky.to_string(),
            weight: self.spec.weight,
            weight_in_force: self.weight_in_force(),
            state,
            window_seconds: self.spec.window.as_secs_f64(),
            bad_windows: self.spec.bad_windows,
            bad_windows_in_a_row: c.bad_in_a_row,
            windows_closed: c.windows_closed,
            rolled_back: c.rolled_back.as_ref().map(|r| RollbackStatus {
                at: r.at.to_string(),
                trigger: r.trigger,
                reason: r.reason.clone(),
            }),
            frozen_by: c.frozen_by.as_ref().map(|l| l.to_string()),
            last_window: c.last.as_ref().map(|w| WindowStatus {
                closed_at: w.at.to_string(),
                verdict: match &w.verdict {
                    Verdict::Inconclusive { .. } => "inconclusive",
                    Verdict::Good => "good",
                    Verdict::Bad(_) => "bad",
                },
                reasons: match &w.verdict {
                    Verdict::Bad(b) => b.iter().map(ToString::to_string).collect(),
                    _ => Vec::new(),
                },
                stable: SideSummary::of(&w.stable),
                canary: SideSummary::of(&w.canary),
            }),
        }
    }
}

fn join(breaches: &[Breach]) -> String {
    breaches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A canary as `/-/config` and `/-/status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryStatus {
    pub route: String,
    pub upstream: String,
    pub release: Option<String>,
    /// The table digest a rollback is tied to.
    pub digest: String,
    pub sticky: String,
    /// As configured, percent.
    pub weight: u8,
    /// Now: 0 while rolled back or frozen.
    pub weight_in_force: f64,
    /// active | frozen | rolled_back | off (weight 0)
    pub state: &'static str,
    pub window_seconds: f64,
    pub bad_windows: u32,
    pub bad_windows_in_a_row: u32,
    pub windows_closed: u64,
    pub rolled_back: Option<RollbackStatus>,
    pub frozen_by: Option<String>,
    pub last_window: Option<WindowStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RollbackStatus {
    pub at: String,
    pub trigger: Trigger,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct WindowStatus {
    pub closed_at: String,
    /// good | bad | inconclusive
    pub verdict: &'static str,
    pub reasons: Vec<String>,
    pub stable: SideSummary,
    pub canary: SideSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct SideSummary {
    pub requests: u64,
    pub errors: u64,
    pub error_rate: f64,
    /// Upper bound of the histogram bucket holding the p99 (within 12.5%).
    pub p99_ms: Option<f64>,
}

impl SideSummary {
    fn of(s: &SideStats) -> SideSummary {
        SideSummary {
            requests: s.requests,
            errors: s.errors,
            error_rate: s.error_rate(),
            p99_ms: s.p99().map(|d| d.as_secs_f64() * 1000.0),
        }
    }
}
