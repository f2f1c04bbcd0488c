use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderValue};
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::canary::split::{BUCKETS, bucket, choose, ip_value};
use crate::canary::{Side, Sticky};

const SALT: &[u8] = b"app-v2";
const CLIENTS: u32 = 100_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn side_by_ip(i: u32, weight_bp: u32) -> Side {
    let mut rng = StdRng::seed_from_u64(1);
    choose(&Sticky::ClientIp, SALT, weight_bp, None, ip(i), &mut rng).side
}

fn canary_share(weight_bp: u32) -> f64 {
    let n = (0..CLIENTS)
        .filter(|i| side_by_ip(*i, weight_bp) == Side::Canary)
        .count();
    n as f64 / f64::from(CLIENTS)
}

#[test]
fn share_of_100k_clients_is_the_weight() {
    // Binomial standard deviation at 5% of 100k: 0.07 points; allow 5 of them.
    for (weight_bp, tolerance) in [(500, 0.0035), (100, 0.0016), (5000, 0.008)] {
        let share = canary_share(weight_bp);
        let want = f64::from(weight_bp) / BUCKETS as f64;
        assert!(
            (share - want).abs() < tolerance,
            "weight {weight_bp} bp: share {share}"
        );
    }
    assert_eq!(canary_share(0), 0.0);
    assert_eq!(canary_share(10_000), 1.0);
}

#[test]
fn a_client_stays_on_its_side() {
    let mut rng = StdRng::seed_from_u64(7);
    for i in 0..2000 {
        let first = side_by_ip(i, 2000);
        for _ in 0..3 {
            let again = choose(&Sticky::ClientIp, SALT, 2000, None, ip(i), &mut rng);
            assert_eq!(again.side, first);
            assert_eq!(again.set_cookie, None);
        }
    }
}

#[test]
fn raising_the_weight_only_adds_clients_and_lowering_only_removes() {
    let at = |w: u32| -> Vec<Side> { (0..CLIENTS).map(|i| side_by_ip(i, w)).collect() };
    let (five, ten) = (at(500), at(1000));
    let mut moved = 0;
    for (a, b) in five.iter().zip(&ten) {
        assert!(
            !(*a == Side::Canary && *b == Side::Stable),
            "raising the weight moved a canary client back"
        );
        moved += usize::from(a != b);
    }
    // From 5% to 10%: about 5% of the clients move, the fewest that can.
    let moved = moved as f64 / f64::from(CLIENTS);
    assert!((moved - 0.05).abs() < 0.0035, "{moved}");
}

#[test]
fn another_canary_upstream_draws_another_sample() {
    let mut rng = StdRng::seed_from_u64(1);
    let both = (0..CLIENTS)
        .filter(|i| {
            let a = choose(&Sticky::ClientIp, b"app-v2", 1000, None, ip(*i), &mut rng).side;
            let b = choose(&Sticky::ClientIp, b"app-v3", 1000, None, ip(*i), &mut rng).side;
            a == Side::Canary && b == Side::Canary
        })
        .count();
    // Independent 10% samples overlap on about 1%, not 10%.
    let both = both as f64 / f64::from(CLIENTS);
    assert!((both - 0.01).abs() < 0.002, "{both}");
}

#[test]
fn ipv6_clients_are_placed_by_their_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    assert_eq!(ip_value(a), ip_value(b));
    assert_ne!(ip_value(a), ip_value("2001:db8:1:3::1".parse().unwrap()));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(ip_value(mapped), ip_value("192.0.2.1".parse().unwrap()));
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn header_stickiness_hashes_the_value_and_falls_back_to_the_ip() {
    let sticky = Sticky::Header(http::HeaderName::from_static("x-user"));
    let mut rng = StdRng::seed_from_u64(3);
    let mut on_canary = 0;
    for i in 0..CLIENTS {
        let user = format!("user-{i}");
        let h = headers(&[("x-user", &user)]);
        let v = sticky.read(&h);
        assert_eq!(v, Some(user.as_bytes()));
        // From any address, the same user is on the same side.
        let c1 = choose(&sticky, SALT, 500, v, ip(1), &mut rng);
        let c2 = choose(&sticky, SALT, 500, v, ip(2), &mut rng);
        assert_eq!(c1.side, c2.side);
        on_canary += usize::from(c1.side == Side::Canary);
    }
    assert!((on_canary as f64 / f64::from(CLIENTS) - 0.05).abs() < 0.0035);
    // No header (or an empty one): placed by the client IP.
    for i in 0..1000 {
        let empty = headers(&[("x-user", "")]);
        assert_eq!(sticky.read(&empty), None);
        let c = choose(&sticky, SALT, 500, None, ip(i), &mut rng);
        assert_eq!(c.side, side_by_ip(i, 500));
    }
}

#[test]
fn cookie_stickiness_draws_a_new_client_and_its_cookie_keeps_it_there() {
    let sticky = Sticky::Cookie("seawall_canary".into());
    let mut rng = StdRng::seed_from_u64(11);
    let mut on_canary = 0;
    for _ in 0..CLIENTS {
        let first = choose(&sticky, SALT, 500, None, ip(1), &mut rng);
        let cookie = first.set_cookie.expect("a new client is told its cookie");
        let cookie = cookie.to_str().unwrap();
        let value = cookie
            .strip_prefix("seawall_canary=")
            .and_then(|r| r.strip_suffix("; Path=/; HttpOnly; SameSite=Lax"))
            .unwrap_or_else(|| panic!("Set-Cookie {cookie:?}"));
        assert_eq!(value.len(), 16);
        // The next request carries the cookie (among others): same side, no new cookie.
        let h = headers(&[("cookie", &format!("a=1; seawall_canary={value}; b=2"))]);
        let next = choose(&sticky, SALT, 500, sticky.read(&h), ip(2), &mut rng);
        assert_eq!(next.side, first.side);
        assert_eq!(next.set_cookie, None);
        on_canary += usize::from(first.side == Side::Canary);
    }
    assert!((on_canary as f64 / f64::from(CLIENTS) - 0.05).abs() < 0.0035);
}

#[test]
fn cookie_names_match_exactly_and_empty_values_count_as_absent() {
    let sticky = Sticky::Cookie("sc".into());
    assert_eq!(sticky.read(&headers(&[("cookie", "SC=abc")])), None);
    assert_eq!(sticky.read(&headers(&[("cookie", "xsc=abc; sc=")])), None);
    assert_eq!(
        sticky.read(&headers(&[("cookie", "x=1"), ("cookie", " sc = v1 ")])),
        Some(&b"v1"[..])
    );
    assert_eq!(Sticky::ClientIp.read(&headers(&[("cookie", "sc=1")])), None);
}

#[test]
fn at_weight_zero_nobody_is_drawn() {
    let sticky = Sticky::Cookie("sc".into());
    let mut rng = StdRng::seed_from_u64(5);
    let c = choose(&sticky, SALT, 0, None, ip(1), &mut rng);
    assert_eq!((c.side, c.set_cookie), (Side::Stable, None));
    let c = choose(&sticky, SALT, 10_000, Some(b"whatever"), ip(1), &mut rng);
    assert_eq!(c.side, Side::Canary);
}

#[test]
fn buckets_do_not_depend_on_the_process() {
    // Fixed values: every instance of a fleet, and the next release, agree on a client's side.
    assert_eq!(bucket(b"app-v2", b"user-1"), bucket(b"app-v2", b"user-1"));
    assert_ne!(bucket(b"app-v2", b"user-1"), bucket(b"app-v2", b"user-2"));
    assert_ne!(bucket(b"app-v", b"2user-1"), bucket(b"app-v2", b"user-1"));
    // Pinned: a change of hash would move every client of a running canary at the upgrade.
    assert_eq!(bucket(b"app-v2", b"user-1"), 4395);
    assert_eq!(bucket(b"app-v2", b"user-2"), 8634);
}
