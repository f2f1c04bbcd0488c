use super::*;

const BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];

/// A running total for one route, advanced second by second like Prometheus' counters.
#[derive(Default)]
struct Totals(RouteTotals);

impl Totals {
    /// `n` requests of status class `class` (0 = 2xx) that took up to `bucket`'s bound
    /// (index into BOUNDS; 3 = over the last bound).
    fn add(&mut self, n: u64, class: usize, bucket: usize) -> RouteTotals {
        self.0.requests += n;
        self.0.classes[class] += n;
        for b in bucket..=BOUNDS.len() {
            self.0.latency[b] += n;
        }
        self.0
    }
}

fn sample(routes: &[(&str, RouteTotals)]) -> Sample {
    Sample {
        routes: routes.iter().map(|(n, t)| (Arc::from(*n), *t)).collect(),
        latency_bounds: BOUNDS.to_vec(),
        ..Sample::default()
    }
}

#[test]
fn each_second_holds_the_difference_of_the_counters() {
    let mut h = History::default();
    let mut t = Totals::default();
    h.record(&sample(&[("a", t.add(5, 0, 0))]));
    h.record(&sample(&[("a", t.add(10, 3, 0))]));
    h.record(&sample(&[("a", t.0)]));
    let v = h.route("a", 10, 60).unwrap();
    assert_eq!(v.series, [5, 10, 0]);
    assert_eq!(v.span_s, 3);
    assert!((v.rps - 5.0).abs() < 1e-9);
    assert!((v.classes[0] - 5.0 / 3.0).abs() < 1e-9);
    assert!((v.classes[3] - 10.0 / 3.0).abs() < 1e-9);
    assert!(h.route("b", 10, 60).is_none());
}

#[test]
fn rates_cover_only_the_last_span() {
    let mut h = History::default();
    let mut t = Totals::default();
    for _ in 0..20 {
        h.record(&sample(&[("a", t.add(100, 0, 0))]));
    }
    for _ in 0..10 {
        h.record(&sample(&[("a", t.add(1, 0, 0))]));
    }
    let v = h.route("a", 10, 60).unwrap();
    assert!((v.rps - 1.0).abs() < 1e-9, "{v:?}");
    assert_eq!(v.span_s, 10);
}

#[test]
fn the_ring_keeps_exactly_the_last_ten_minutes() {
    let mut h = History::default();
    let mut t = Totals::default();
    for _ in 0..100 {
        h.record(&sample(&[("a", t.add(50, 0, 0))]));
    }
    for _ in 0..SLOTS {
        h.record(&sample(&[("a", t.add(1, 0, 0))]));
    }
    let v = h.route("a", 10, 60).unwrap();
    assert_eq!(v.series.len(), SLOTS);
    assert!(
        v.series.iter().all(|&n| n == 1),
        "older seconds were overwritten"
    );
    assert_eq!(h.seconds(), 700);
}

#[test]
fn latency_quantiles_come_from_the_last_minute_of_buckets() {
    let mut h = History::default();
    let mut t = Totals::default();
    // A slow minute long ago must not count.
    for _ in 0..60 {
        h.record(&sample(&[("a", t.add(10, 0, 3))]));
    }
    for _ in 0..60 {
        t.add(90, 0, 0);
        t.add(9, 0, 1);
        h.record(&sample(&[("a", t.add(1, 0, 2))]));
    }
    let v = h.route("a", 10, 60).unwrap();
    assert_eq!(v.requests_in_latency_span, 6_000);
    assert_eq!(v.latency_span_s, 60);
    let p50 = v.p50.unwrap();
    let p99 = v.p99.unwrap();
    assert!((p50 - 0.01 * 50.0 / 90.0).abs() < 1e-9, "p50 {p50}");
    assert!((p99 - 0.1).abs() < 1e-9, "p99 {p99}");
}

#[test]
fn quantile_edges() {
    assert_eq!(quantile(0.5, &BOUNDS, &[0, 0, 0, 0]), None);
    // Everything slower than the last bound: the last finite bound, as Prometheus answers.
    assert_eq!(quantile(0.99, &BOUNDS, &[0, 0, 0, 10]), Some(1.0));
    let mid = quantile(0.5, &BOUNDS, &[0, 10, 10, 10]).unwrap();
    assert!((mid - 0.055).abs() < 1e-12, "{mid}");
    assert_eq!(quantile(0.5, &BOUNDS, &[1, 2]), None, "mismatched lengths");
}

#[test]
fn a_route_removed_and_added_back_shows_no_false_spike() {
    let mut h = History::default();
    let mut t = Totals::default();
    h.record(&sample(&[
        ("a", t.add(1_000, 0, 0)),
        ("b", RouteTotals::default()),
    ]));
    // A reload removes "a": its series goes.
    h.record(&sample(&[("b", RouteTotals::default())]));
    assert!(h.route("a", 10, 60).is_none());
    // Back, with requests that arrived while it was gone counted in Prometheus already.
    h.record(&sample(&[
        ("a", t.add(3, 0, 0)),
        ("b", RouteTotals::default()),
    ]));
    let v = h.route("a", 10, 60).unwrap();
    assert_eq!(
        v.series,
        [3],
        "a series born by a reload starts with its first second"
    );
}

#[test]
fn limits_and_campaigns_and_csp() {
    let mut h = History::default();
    let id: LimitId = (Arc::from("signup"), Arc::from("per-ip"));
    for i in 1..=4u64 {
        h.record(&Sample {
            limits: vec![(id.clone(), [10 * i, 0, 5 * i, 0, i])],
            campaigns: vec![(Arc::from("summer-sale"), i as f64 * 1.5)],
            csp_violations: i * 2,
            ..Sample::default()
        });
    }
    let v = h.limit(&id, 10).unwrap();
    assert_eq!(v.per_s, [10.0, 0.0, 5.0, 0.0, 1.0]);
    assert_eq!(v.rejected_series, [5, 5, 5, 5]);
    assert_eq!(h.campaign("summer-sale").unwrap(), [1.5, 3.0, 4.5, 6.0]);
    assert_eq!(h.csp(), [2, 2, 2, 2]);
}

#[test]
fn a_slot_is_84_bytes_per_route_and_20_per_limit() {
    // The sizes the module doc (and docs/console.md) promise.
    assert_eq!(std::mem::size_of::<RouteSecond>(), 84);
    assert_eq!(std::mem::size_of::<[u32; 5]>(), 20);
    assert_eq!(std::mem::size_of::<f32>() * SLOTS, 2_400);
}
