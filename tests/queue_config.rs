//! Config corpus for queues (CONFIG.md, "Queues"): each broken file with the exact diagnostics
//! it must produce, file:line:col and message, plus the valid forms.

use std::path::Path;

struct Case {
    name: &'static str,
    main: &'static str,
    campaigns: Option<&'static str>,
    expect: &'static [&'static str],
}

const HEAD: &str = r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]
"#;

const CASES: &[Case] = &[
    Case {
        name: "every_key_valid",
        main: r#"
[queues.leads]
store = "spool"
path = "spool/leads"
max_bytes = "512MiB"
max_body = "64KiB"
deliver_to = "app"
rate = "20r/s"
max_inflight = 4
retry = { initial = "1s", max = "5m" }
max_attempts = 20
max_age = "72h"
accepted = { status = 202, body = "Thanks, we got it.", content_type = "text/plain" }

[[routes]]
name = "signup"
path = "/signup"
queue = "leads"
"#,
        campaigns: None,
        expect: &[],
    },
    Case {
        name: "bad_values_each_located",
        main: r#"
[queues.leads]
stor = "spool"
max_bytes = "512 parsecs"
max_body = "0KiB"
deliver_to = "nope"
rate = "20/s"
max_inflight = 0
retry = { initial = "1s", max = "500ms" }
max_attempts = 0
max_age = "forever"
accepted = { status = 200, redirect = "/thanks" }

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: None,
        expect: &[
            "seawall.toml:8:1: error: unknown field `stor`, expected one of `store`, `path`, `max_bytes`, `max_body`, `deliver_to`, `rate`, `max_inflight`, `max_attempts`, `max_age`",
            "seawall.toml:9:13: error: invalid size \"512 parsecs\": write e.g. \"64KiB\", \"10MiB\" or a number of bytes",
            "seawall.toml:10:12: error: size \"0KiB\" must be greater than zero",
            "seawall.toml:11:14: error: deliver_to names unknown upstream \"nope\" (defined: app)",
            "seawall.toml:12:8: error: invalid rate \"20/s\": write N r/s, N r/m or N r/h, e.g. \"10r/s\"",
            "seawall.toml:13:16: error: max_inflight must be between 1 and 10000, not 0",
            "seawall.toml:14:33: error: retry.max must not be below retry.initial",
            "seawall.toml:15:16: error: max_attempts must be between 1 and 1000, not 0",
            "seawall.toml:16:11: error: invalid duration \"forever\": expected number at 0 (write e.g. \"500ms\", \"5s\", \"2m\")",
            "seawall.toml:17:12: error: accepted takes either status/body/content_type or redirect (a 303), not both",
        ],
    },
    Case {
        name: "route_queue_rules",
        main: r#"
[queues.leads]
deliver_to = "app"
rate = "20r/s"

[[routes]]
name = "both"
path = "/a"
upstream = "app"
queue = "leads"

[[routes]]
name = "unknown"
path = "/b"
queue = "leadz"

[[routes]]
name = "neither"
path = "/c"
"#,
        campaigns: None,
        expect: &[
            "seawall.toml:15:9: error: a route takes `upstream` or `queue`, not both",
            "seawall.toml:20:9: error: route names unknown queue \"leadz\" (seawall.toml defines: leads)",
            "seawall.toml:22:1: error: missing field `upstream`",
        ],
    },
    Case {
        name: "redis_store_needs_fleet_and_accepted_forms",
        main: r#"
[queues.shared]
store = "redis"
path = "unused"
deliver_to = "app"
rate = "20r/s"
accepted = { redirect = "thanks" }

[queues.other]
store = "disk"
deliver_to = "app"
rate = "1r/m"
accepted = { status = 302, content_type = "" }

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: None,
        expect: &[
            "seawall.toml:8:9: error: store = \"redis\" needs a [fleet] section (the Redis the instances share)",
            "seawall.toml:9:8: warning: path is not used with store = \"redis\"",
            "seawall.toml:12:25: error: accepted.redirect \"thanks\" must be a path starting with '/' or an http(s) URL",
            "seawall.toml:15:9: error: unknown value `disk`, expected `spool` or `redis`",
            "seawall.toml:18:23: error: accepted.status must be between 200 and 299, not 302",
            "seawall.toml:18:43: error: invalid content_type \"\"",
        ],
    },
    Case {
        name: "two_queues_one_path_and_body_above_bytes",
        main: r#"
[queues.a]
path = "spool/x"
deliver_to = "app"
rate = "20r/s"
max_bytes = "1MiB"
max_body = "2MiB"

[queues.b]
path = "spool/x"
deliver_to = "app"
rate = "20r/s"

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: None,
        expect: &[
            "seawall.toml:12:12: error: max_body (2097152 bytes) is larger than max_bytes (1048576 bytes): no request could be queued",
            "seawall.toml:15:8: error: spool path spool/x is already used by queue \"a\"",
        ],
    },
    Case {
        name: "campaign_queue_actions",
        main: r#"campaigns_file = "campaigns.toml"

[queues.leads]
deliver_to = "app"
rate = "20r/s"

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: Some(
            r#"tag_sources = ["query:utm_campaign"]
ingest_queue = "leadz"

[unregistered]
action = "queue"

[[launch]]
name = "summer-sale"
tags = ["SUMMER"]
action = "queue"
"#,
        ),
        expect: &[
            "campaigns.toml:2:16: error: ingest_queue names unknown queue \"leadz\" (seawall.toml defines: leads)",
        ],
    },
    Case {
        name: "campaign_queue_action_without_ingest_queue",
        main: r#"campaigns_file = "campaigns.toml"

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: Some(
            r#"tag_sources = ["query:utm_campaign"]

[unregistered]
action = "queue"

[[launch]]
name = "summer-sale"
tags = ["SUMMER"]
action = "queue"
"#,
        ),
        expect: &[
            "campaigns.toml:3:1: error: [unregistered] action = \"queue\" needs `ingest_queue`",
            "campaigns.toml:6:1: error: launch action \"queue\" needs `ingest_queue`",
        ],
    },
    Case {
        name: "campaign_queue_valid",
        main: r#"campaigns_file = "campaigns.toml"

[queues.leads]
deliver_to = "app"
rate = "20r/s"
accepted = { redirect = "/thanks" }

[[routes]]
name = "site"
upstream = "app"
"#,
        campaigns: Some(
            r#"tag_sources = ["query:utm_campaign"]
ingest_queue = "leads"

[unregistered]
action = "queue"

[[launch]]
name = "summer-sale"
tags = ["SUMMER"]
action = "queue"
"#,
        ),
        expect: &[],
    },
];

/// `campaigns_file` belongs in [server]: cases that start with it get it moved there.
fn main_text(c: &Case) -> String {
    match c.main.strip_prefix("campaigns_file = \"campaigns.toml\"\n") {
        Some(rest) => {
            HEAD.replacen(
                "listen = [\"127.0.0.1:8080\"]\n",
                "listen = [\"127.0.0.1:8080\"]\ncampaigns_file = \"campaigns.toml\"\n",
                1,
            ) + rest
        }
        None => format!("{HEAD}{}", c.main),
    }
}

fn relative(dir: &Path, line: &str) -> String {
    line.replace(&format!("{}/", dir.display()), "")
}

#[test]
fn every_queue_case_reports_exactly_its_diagnostics() {
    let mut failures = String::new();
    for c in CASES {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("seawall.toml");
        std::fs::write(&main, main_text(c)).unwrap();
        if let Some(t) = c.campaigns {
            std::fs::write(dir.path().join("campaigns.toml"), t).unwrap();
        }
        let (ok, items) = match seawall::config::load(&main) {
            Ok(l) => (true, l.diagnostics.items),
            Err(d) => (false, d.items),
        };
        let actual: Vec<String> = items
            .iter()
            .map(|d| relative(dir.path(), &d.to_string()))
            .collect();
        let want_ok = !c.expect.iter().any(|l| l.contains(": error: "));
        if actual != c.expect || ok != want_ok {
            failures.push_str(&format!("--- case {:?} (load ok: {ok}):\n", c.name));
            for l in &actual {
                failures.push_str(&format!("            {l:?},\n"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn a_valid_queue_compiles_to_the_spec_the_queue_runs() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("seawall.toml");
    std::fs::write(&main, main_text(&CASES[0])).unwrap();
    let spec = seawall::config::load(&main).unwrap().spec;
    let snap = &spec.settings;
    let q = &snap.queues["leads"];
    assert_eq!(q.max_bytes, 512 << 20);
    assert_eq!(q.max_body, 64 << 10);
    assert_eq!(q.rate_mrps, 20_000);
    assert_eq!(q.retry.max, std::time::Duration::from_secs(300));
    assert_eq!(
        q.store,
        seawall::queue::StoreKind::Spool {
            path: dir.path().join("spool/leads")
        }
    );
    assert_eq!(&*q.deliver_to.name, "app");
    let route = &spec.routes[0];
    assert_eq!(route.queue.as_deref(), Some("leads"));
    assert_eq!(
        &*route.upstream.name, "app",
        "a queued route's pool is its deliver_to"
    );
}
