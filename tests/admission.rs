//! The admission order, driven without a socket: `admission::admit` on a real loaded config,
//! with a fixed clock. Each test tells two orders apart, so it fails if the order changes.

use std::net::IpAddr;
use std::sync::Arc;

use pingora::http::RequestHeader;
use seawall::admission::{self, Admission, Answer, Facts, Now, Side, Verdict};
use seawall::answers::Reason;
use seawall::campaign::Action;
use seawall::state::State;

/// A Seawall state from config text, as start-up builds it (no listener is opened).
fn state(
    main: &str,
    csp: Option<&str>,
    campaigns: Option<&str>,
) -> (tempfile::TempDir, Arc<State>) {
    let dir = tempfile::tempdir().unwrap();
    let mut server =
        "[server]\nlisten = [\"127.0.0.1:1\"]\nadmin_listen = \"127.0.0.1:2\"\n".to_string();
    if let Some(c) = csp {
        std::fs::write(dir.path().join("csp.toml"), c).unwrap();
        server.push_str("csp_file = \"csp.toml\"\n");
    }
    if let Some(c) = campaigns {
        std::fs::write(dir.path().join("campaigns.toml"), c).unwrap();
        server.push_str("campaigns_file = \"campaigns.toml\"\n");
    }
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, format!("{server}\n{main}")).unwrap();
    let loaded = seawall::config::load(&path).unwrap_or_else(|d| panic!("{d}"));
    (
        dir,
        State::new(path, loaded.spec).expect("the state starts"),
    )
}

const UPSTREAMS: &str = r#"
[upstreams.app]
servers = ["127.0.0.1:9"]
[upstreams.ingest]
servers = ["127.0.0.1:10"]
"#;

/// A fixed time: inside the launch windows below; limiters see no time pass.
fn now() -> Now {
    Now {
        mono_ms: 10_000_000,
        wall: "2026-06-15T12:00:00Z".parse().unwrap(),
    }
}

fn req(method: &str, uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build(method, uri.as_bytes(), None).unwrap();
    r.append_header("host", "shop.test").unwrap();
    for (k, v) in headers {
        r.append_header(k.to_string(), *v).unwrap();
    }
    r
}

async fn admit_from(state: &State, ip: &str, r: &RequestHeader) -> Admission {
    let facts = Facts {
        req: r,
        peer: ip.parse::<IpAddr>().unwrap(),
        tls: false,
    };
    admission::admit(state, &state.snapshot.load(), &facts, now()).await
}

async fn admit(state: &State, method: &str, uri: &str, headers: &[(&str, &str)]) -> Admission {
    admit_from(state, "192.0.2.1", &req(method, uri, headers)).await
}

/// A short name for a verdict, to compare in assertions.
fn what(a: &Admission) -> String {
    match &a.verdict {
        Verdict::Answer(Answer::Reports) => "reports".into(),
        Verdict::Answer(Answer::Refused(r)) => format!("refused {}", r.status().as_u16()),
        Verdict::Answer(Answer::Limited(l)) => format!("limited by {}", l.limit),
        Verdict::Answer(Answer::Overloaded { upstream, reason }) => {
            format!("overloaded {} ({:?})", upstream.name, reason)
        }
        Verdict::Proxy(p) => format!("proxy to {} ({:?})", p.upstream.name, p.side),
        Verdict::Queue(q) => format!("queue {}", q.name),
    }
}

#[tokio::test]
async fn the_report_endpoint_is_served_before_any_route_is_looked_at() {
    let csp = r#"
report_path = "/_seawall/csp-report"
[policies.site]
  [policies.site.directives]
  default-src = ["'self'"]
"#;
    let (_d, s) = state(
        &format!(
            "{UPSTREAMS}\n[[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"app\"\n"
        ),
        Some(csp),
        None,
    );
    // No route matches the report path: it is served all the same, by Seawall.
    assert_eq!(
        what(&admit(&s, "POST", "/_seawall/csp-report", &[]).await),
        "reports"
    );
    assert_eq!(
        what(&admit(&s, "GET", "/elsewhere", &[]).await),
        "refused 404"
    );
    let a = admit(&s, "GET", "/elsewhere", &[]).await;
    assert!(matches!(
        a.verdict,
        Verdict::Answer(Answer::Refused(Reason::NoRoute))
    ));
    assert_eq!(
        what(&admit(&s, "GET", "/api/x", &[]).await),
        "proxy to app (Route)"
    );
}

const CAMPAIGNS: &str = r#"
tag_sources = ["query:ref"]
ingest_upstream = "ingest"

[[launch]]
name = "held"
tags = ["HOLD"]
starts = 2026-06-01T00:00:00Z
ends = 2026-07-01T00:00:00Z
action = "pause"

[[launch]]
name = "sale"
tags = ["SALE"]
starts = 2026-06-01T00:00:00Z
ends = 2026-07-01T00:00:00Z
targets = ["/signup"]
action = "divert"
limit = { key = "global", rate = "1r/m", burst = 1 }
"#;

#[tokio::test]
async fn campaigns_are_classified_before_the_limits_are_charged() {
    let main = format!(
        "{UPSTREAMS}
[[routes]]
name = \"signup\"
path_prefix = \"/\"
upstream = \"app\"
  [[routes.limits]]
  name = \"global\"
  key = \"global\"
  rate = \"1r/m\"
"
    );
    let (_d, s) = state(&main, None, Some(CAMPAIGNS));
    // A paused campaign is answered 503 before the route's limit is looked at: it charges
    // nothing, so the one request the route's limit allows is still there for a visitor.
    let held = admit(&s, "POST", "/signup?ref=HOLD", &[]).await;
    assert_eq!(what(&held), "refused 503");
    assert_eq!(held.campaign.as_ref().unwrap().action, Action::Pause);
    assert_eq!(
        what(&admit(&s, "POST", "/signup", &[]).await),
        "proxy to app (Route)"
    );
    assert_eq!(
        what(&admit(&s, "POST", "/signup", &[]).await),
        "limited by global"
    );
}

#[tokio::test]
async fn a_campaigns_own_limit_comes_first_and_a_rejected_request_is_attributed_as_limited() {
    let (_d, s) = state(
        &format!("{UPSTREAMS}\n[[routes]]\nname = \"all\"\nupstream = \"app\"\n"),
        None,
        Some(CAMPAIGNS),
    );
    // burst 1: two pass, the third is stopped by the campaign's limit.
    for _ in 0..2 {
        assert_eq!(
            what(&admit(&s, "POST", "/signup?ref=SALE", &[]).await),
            "proxy to ingest (Ingest)"
        );
    }
    let third = admit(&s, "POST", "/signup?ref=SALE", &[]).await;
    assert_eq!(what(&third), "limited by campaign-sale");
    assert_eq!(third.campaign.as_ref().unwrap().action, Action::Limited);
    // The same tag off its targets passes to the app, attributed, outside the campaign's limit.
    let page = admit(&s, "GET", "/pricing?ref=SALE", &[]).await;
    assert_eq!(what(&page), "proxy to app (Route)");
    assert_eq!(page.campaign.as_ref().unwrap().action, Action::Pass);
}

#[tokio::test]
async fn a_request_one_limit_rejects_charges_none_of_the_others() {
    let main = format!(
        "{UPSTREAMS}
[[routes]]
name = \"r\"
upstream = \"app\"
  [[routes.limits]]
  name = \"wide\"
  key = \"global\"
  rate = \"1r/m\"
  burst = 5
  nodelay = true
  [[routes.limits]]
  name = \"per-key\"
  key = \"header:x-key\"
  rate = \"1r/m\"
"
    );
    let (_d, s) = state(&main, None, None);
    let key = [("x-key", "k")];
    assert_eq!(
        what(&admit(&s, "GET", "/", &key).await),
        "proxy to app (Route)"
    );
    // "per-key" rejects; "wide" must not be charged for it (nginx semantics).
    for _ in 0..3 {
        assert_eq!(
            what(&admit(&s, "GET", "/", &key).await),
            "limited by per-key"
        );
    }
    // The first request left "wide" at an excess of one request (nginx charges a limit that is
    // accounted after a later one, even a fresh key), so 4 of its burst of 5 remain: 4 more pass,
    // then it rejects. Had the 3 rejected requests charged it, only 1 would.
    for i in 0..4 {
        assert_eq!(
            what(&admit(&s, "GET", "/", &[]).await),
            "proxy to app (Route)",
            "request {i}"
        );
    }
    assert_eq!(what(&admit(&s, "GET", "/", &[]).await), "limited by wide");
}

#[tokio::test]
async fn a_diverted_request_never_gets_the_apps_pool_even_when_ingestion_is_full() {
    let main = r#"
[upstreams.app]
servers = ["127.0.0.1:9"]
[upstreams.ingest]
servers = ["127.0.0.1:10"]
max_inflight = 1

[[routes]]
name = "all"
upstream = "app"
"#;
    let campaigns = CAMPAIGNS.replace(
        "limit = { key = \"global\", rate = \"1r/m\", burst = 1 }",
        "",
    );
    let (_d, s) = state(main, None, Some(&campaigns));
    let first = admit(&s, "POST", "/signup?ref=SALE", &[]).await;
    assert_eq!(what(&first), "proxy to ingest (Ingest)");
    assert!(matches!(&first.verdict, Verdict::Proxy(p) if p.side == Side::Ingest));
    // While the first holds ingestion's only slot, the next diverted request is refused with a
    // retryable 503; it is not sent to the app instead.
    let second = admit(&s, "POST", "/signup?ref=SALE", &[]).await;
    assert_eq!(what(&second), "overloaded ingest (IngestUnavailable)");
    // Untagged sign-ups still reach the app.
    assert_eq!(
        what(&admit(&s, "POST", "/signup", &[]).await),
        "proxy to app (Route)"
    );
    drop(first);
    assert_eq!(
        what(&admit(&s, "POST", "/signup?ref=SALE", &[]).await),
        "proxy to ingest (Ingest)"
    );
}

#[tokio::test]
async fn in_flight_caps_are_taken_after_the_limits_passed() {
    let main = format!(
        "{UPSTREAMS}
[[routes]]
name = \"r\"
upstream = \"app\"
max_inflight = 1
  [[routes.limits]]
  name = \"per-ip\"
  key = \"client_ip\"
  rate = \"1r/m\"
"
    );
    let (_d, s) = state(&main, None, None);
    let r = req("GET", "/", &[]);
    let first = admit_from(&s, "192.0.2.1", &r).await;
    assert_eq!(what(&first), "proxy to app (Route)");
    // The same client again: its limit answers first (429), the cap is not even asked.
    assert_eq!(
        what(&admit_from(&s, "192.0.2.1", &r).await),
        "limited by per-ip"
    );
    // Another client passes its limit and then meets the cap the first request holds.
    assert_eq!(what(&admit_from(&s, "192.0.2.2", &r).await), "refused 503");
    drop(first);
    assert_eq!(
        what(&admit_from(&s, "192.0.2.3", &r).await),
        "proxy to app (Route)"
    );
}
