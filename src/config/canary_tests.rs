//! `[routes.canary]` through the real loader: located errors, defaults, the digest.

use std::time::Duration;

use crate::canary::Sticky;
use crate::config::{Loaded, load};

const HEAD: &str = r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[upstreams.app-v2]
servers = ["127.0.0.1:3001"]

[[routes]]
name = "signup"
upstream = "app"
"#;

/// Load HEAD plus `canary` (the lines after the route); diagnostics as `LINE:COL: sev: msg`.
fn load_with(canary: &str) -> (Option<Loaded>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, format!("{HEAD}{canary}")).unwrap();
    let prefix = format!("{}:", path.display());
    let strip = |d: &crate::config::Diagnostic| d.to_string().replacen(&prefix, "", 1);
    match load(&path) {
        Ok(l) => {
            let lines = l.diagnostics.items.iter().map(strip).collect();
            (Some(l), lines)
        }
        Err(d) => (None, d.items.iter().map(strip).collect()),
    }
}

fn spec_of(l: &Loaded) -> &crate::canary::RouteCanary {
    l.spec.routes[0]
        .canary
        .as_ref()
        .expect("the route has a canary")
}

/// The live snapshot of a loaded spec, bound to fresh runtime state (and `canaries`).
fn build(
    spec: crate::snapshot::Spec,
    previous: Option<&crate::snapshot::Snapshot>,
    canaries: &crate::canary::Registry,
) -> crate::snapshot::Snapshot {
    let metrics = crate::metrics::Metrics::new();
    let limits = crate::limits::Registry::default();
    let stats = crate::campaign::stats::Stats::default();
    let b = crate::snapshot::Bindings {
        limits: &limits,
        campaigns: &stats,
        canaries,
        fleet: None,
        metrics: &metrics,
    };
    crate::snapshot::build(spec, previous, &b)
}

#[test]
fn a_full_table_loads_as_written() {
    let (l, diags) = load_with(
        r#"
  [routes.canary]
  upstream = "app-v2"
  weight = 5
  sticky = "cookie:seawall_canary"
  window = "30s"
  min_requests = 50
  max_error_rate = 0.02
  max_p99 = "800ms"
  bad_windows = 3
  freeze_during_launches = false
  release = "2.4.0"
"#,
    );
    assert_eq!(diags, Vec::<String>::new());
    let l = l.unwrap();
    let c = spec_of(&l);
    let s = &c.spec;
    assert_eq!(&*s.upstream, "app-v2");
    assert_eq!(&*c.upstream.name, "app-v2");
    assert_eq!(s.weight, 5);
    assert_eq!(s.sticky, Sticky::Cookie("seawall_canary".into()));
    assert_eq!(s.window, Duration::from_secs(30));
    assert_eq!(s.min_requests, 50);
    assert_eq!(s.max_error_rate, Some(0.02));
    assert_eq!(s.max_p99, Some(Duration::from_millis(800)));
    assert_eq!(s.bad_windows, 3);
    assert_eq!(s.release.as_deref(), Some("2.4.0"));
    assert_eq!(&*c.digest, s.digest());
}

#[test]
fn omitted_keys_take_their_defaults() {
    let (l, diags) = load_with("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 10\n");
    assert_eq!(diags, Vec::<String>::new());
    let l = l.unwrap();
    let s = &spec_of(&l).spec;
    assert_eq!(s.sticky, Sticky::ClientIp);
    assert_eq!(s.window, Duration::from_secs(60));
    assert_eq!(s.min_requests, 100);
    assert_eq!((s.max_error_rate, s.max_p99), (None, None));
    assert_eq!(s.bad_windows, 2);
    assert!(!s.freeze_during_launches);
}

#[test]
fn every_bad_value_is_reported_at_its_place() {
    let (l, diags) = load_with(
        r#"  [routes.canary]
  upstream = "app-v9"
  weight = 120
  sticky = "cookie:a b"
  window = "2d"
  min_requests = 0
  max_error_rate = 2
  max_p99 = "fast"
  bad_windows = 0
  release = ""
"#,
    );
    assert!(l.is_none());
    assert_eq!(
        diags,
        [
            "14:14: error: unknown canary upstream \"app-v9\" (defined: app, app-v2)",
            "15:12: error: weight (percent) must be between 0 and 100, not 120",
            "16:12: error: invalid cookie name \"a b\" in sticky \"cookie:a b\": a cookie name \
             is an RFC 6265 token (letters, digits and !#$%&'*+-.^_`|~; no spaces, quotes or \
             ()<>@,;:\\/[]?={})",
            "17:12: error: window must be between 1s and 24h",
            "18:18: error: min_requests = 0 would judge windows without any request: write at \
             least 1",
            "19:20: error: max_error_rate must be a fraction above 0 and at most 1, e.g. 0.02 \
             for 2%, not 2 (for 2% write 0.02)",
            "20:13: error: invalid duration \"fast\": expected number at 0 (write e.g. \
             \"500ms\", \"5s\", \"2m\")",
            "21:17: error: bad_windows = 0 would roll back before any window is judged: write \
             at least 1",
            "22:13: error: release must be 1 to 128 characters without control characters",
        ]
    );
}

#[test]
fn sticky_header_and_kinds_are_checked() {
    for (sticky, msg) in [
        (
            "header:bad name",
            "invalid header name \"bad name\" in sticky \"header:bad name\"",
        ),
        (
            "query:x",
            "unknown sticky kind \"query\" in \"query:x\": sticky is client_ip, header:NAME or cookie:NAME",
        ),
        (
            "ip",
            "invalid sticky \"ip\": sticky is client_ip, header:NAME or cookie:NAME",
        ),
    ] {
        let (l, diags) = load_with(&format!(
            "  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n  sticky = \"{sticky}\"\n"
        ));
        assert!(l.is_none());
        assert_eq!(diags, [format!("16:12: error: {msg}")]);
    }
    let (l, _) = load_with(
        "  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n  sticky = \"header:X-User\"\n",
    );
    assert!(l.is_some());
}

#[test]
fn schema_errors_name_the_key() {
    let (l, diags) = load_with("  [routes.canary]\n  upstream = \"app-v2\"\n  wieght = 5\n");
    assert!(l.is_none());
    assert_eq!(diags.len(), 2, "{diags:?}");
    assert_eq!(diags[0], "13:3: error: missing field `weight`");
    assert!(
        diags[1].starts_with(
            "15:3: error: unknown field `wieght`, expected one of `upstream`, `weight`"
        ),
        "{diags:?}"
    );

    let (l, diags) = load_with("canary = 5\n");
    assert!(l.is_none());
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(
        diags[0].starts_with("13:10: error: invalid type: integer"),
        "{diags:?}"
    );

    let (l, diags) = load_with("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 2.5\n");
    assert!(l.is_none());
    assert!(
        diags[0].starts_with("15:12: error: invalid type: float"),
        "{diags:?}"
    );
}

#[test]
fn warnings_for_canaries_that_cannot_do_what_they_seem_to() {
    let (l, diags) = load_with(
        "  [routes.canary]\n  upstream = \"app\"\n  weight = 5\n  freeze_during_launches = true\n",
    );
    assert!(l.is_some());
    assert_eq!(
        diags,
        [
            "13:3: warning: freeze_during_launches = true but server.campaigns_file is not \
             set: no launch can freeze this canary",
            "14:14: warning: the canary upstream \"app\" is the route's own upstream: both \
             sides are the same servers, nothing is being tried",
        ]
    );
    let (l, diags) = load_with("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 100\n");
    assert!(l.is_some());
    assert_eq!(
        diags,
        [
            "15:12: warning: weight = 100 leaves no stable side to compare with, and neither \
          max_error_rate nor max_p99 is set: this canary can only be rolled back by hand"
        ]
    );
}

#[test]
fn the_digest_follows_meaning_not_spelling() {
    let digest = |text: &str| {
        let (l, diags) = load_with(text);
        let l = l.unwrap_or_else(|| panic!("{diags:?}"));
        spec_of(&l).digest.to_string()
    };
    let a =
        digest("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n  window = \"60s\"\n");
    let b = digest(
        "  # moved keys, a comment, another spelling of the same window\n  [routes.canary]\n  \
         window = \"1m\"\n  weight = 5\n  upstream = \"app-v2\"   # v2\n",
    );
    let c = digest("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n");
    assert_eq!(a, b);
    assert_eq!(a, c, "the default written out is the same table");
    let d = digest("  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 6\n");
    assert_ne!(a, d);
}

#[test]
fn launches_freeze_the_canaries_of_the_routes_they_target() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("seawall.toml");
    let canary = "  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n  \
                  freeze_during_launches = true\n";
    std::fs::write(
        &main,
        format!(
            "[server]\nlisten = [\"127.0.0.1:8080\"]\ncampaigns_file = \"campaigns.toml\"\n\
             [upstreams.app]\nservers = [\"127.0.0.1:3000\"]\n\
             [upstreams.app-v2]\nservers = [\"127.0.0.1:3001\"]\n\
             [[routes]]\nname = \"signup\"\npath_prefix = \"/api/v1/users/register\"\n\
             upstream = \"app\"\n{canary}\
             [[routes]]\nname = \"blog\"\npath_prefix = \"/blog/\"\nupstream = \"app\"\n{canary}\
             [[routes]]\nname = \"shop\"\npath_regex = \"^/shop/[0-9]+$\"\nupstream = \"app\"\n{canary}"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("campaigns.toml"),
        "tag_sources = [\"query:ref\"]\n\
         [[launch]]\nname = \"summer-sale\"\ntags = [\"SUMMER\"]\naction = \"pass\"\n\
         starts = 2026-06-01T09:00:00Z\nends = 2026-06-30T23:59:59Z\n\
         targets = [\"/api/v1/users/register\"]\n",
    )
    .unwrap();
    let loaded = load(&main).unwrap_or_else(|d| panic!("{d}"));
    let reg = crate::canary::Registry::default();
    let snap = build(loaded.spec, None, &reg);
    assert_eq!(reg.len(), 3);
    let during: jiff::Timestamp = "2026-06-10T12:00:00Z".parse().unwrap();
    let _ = reg.tick(1_000, during);
    let frozen: Vec<_> = reg
        .status()
        .into_iter()
        .map(|s| (s.route, s.frozen_by))
        .collect();
    assert_eq!(
        frozen,
        [
            ("blog".to_string(), None),
            // A regex route may serve the target: frozen, to be safe.
            ("shop".to_string(), Some("summer-sale".to_string())),
            ("signup".to_string(), Some("summer-sale".to_string())),
        ]
    );
    assert!(snap.routes.iter().all(|r| r.canary.is_some()));
}

#[test]
fn a_reload_points_the_canary_at_the_kept_pool() {
    // One pool object per upstream: the canary side shares its health checks and in-flight
    // count with every other user of the upstream, across reloads too.
    let text = "  [routes.canary]\n  upstream = \"app-v2\"\n  weight = 5\n";
    let (old, _) = load_with(text);
    let (new, _) = load_with(text);
    let reg = crate::canary::Registry::default();
    let old = build(old.unwrap().spec, None, &reg);
    let new = build(new.unwrap().spec, Some(&old), &reg);
    let canary = new.routes[0].canary.as_ref().unwrap();
    assert!(std::sync::Arc::ptr_eq(
        &canary.def.upstream,
        &old.upstreams["app-v2"]
    ));
    // And the same canary state: a rollback of the old one holds in the new.
    let before = old.routes[0].canary.as_ref().unwrap();
    assert!(std::sync::Arc::ptr_eq(&canary.state, &before.state));
}
