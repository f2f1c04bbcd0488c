//! `[fleet]` and `scope = "fleet"` in seawall.toml: each broken configuration with the exact
//! diagnostics (file:line:col and message) loading it must produce, as tests/config_corpus.rs
//! does for the other sections; and what a good section compiles to.

use std::num::NonZeroU32;
use std::time::Duration;

use seawall::fleet::OnStoreError;
use seawall::limits::Scope;

struct Case {
    name: &'static str,
    main: &'static str,
    /// Other files next to seawall.toml (a password file, say).
    files: &'static [(&'static str, &'static str)],
    expect: &'static [&'static str],
}

/// Every case starts with this; `{FLEET}` in a case is the text after it.
const HEAD: &str = r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "signup"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/m"
"#;

const CASES: &[Case] = &[
    Case {
        name: "fleet limit without a fleet section",
        main: "  scope = \"fleet\"\n",
        files: &[],
        expect: &[
            "seawall.toml:15:11: error: scope = \"fleet\" needs a [fleet] section in seawall.toml (the Redis that decides for every instance)",
        ],
    },
    Case {
        name: "unknown scope",
        main: "  scope = \"cluster\"\n",
        files: &[],
        expect: &[
            "seawall.toml:15:11: error: unknown value `cluster`, expected `local` or `fleet`",
        ],
    },
    Case {
        name: "bad URL scheme",
        main: "  scope = \"fleet\"\n\n[fleet]\nredis = \"http://127.0.0.1:6379\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:9: error: invalid Redis URL \"http://127.0.0.1:6379\": write redis://HOST:PORT/DB, or rediss://HOST:PORT/DB for TLS",
        ],
    },
    Case {
        name: "URL that does not parse",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:notaport/0\"\n",
        files: &[],
        expect: &[
            "seawall.toml:17:9: error: invalid Redis URL \"redis://127.0.0.1:notaport/0\": check the host, port and database number (write redis://HOST:PORT/DB)",
        ],
    },
    Case {
        name: "password in the URL",
        main: "\n[fleet]\nredis = \"redis://:hunter2@127.0.0.1:6379/0\"\n",
        files: &[],
        expect: &[
            "seawall.toml:17:9: warning: the Redis URL holds a password: put it in redis_password_file instead (never a password in a file that is checked in)",
        ],
    },
    Case {
        name: "timeouts",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\ntimeout = \"5\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:11: error: invalid duration \"5\": time unit needed, for example 5sec or 5ms (write e.g. \"500ms\", \"5s\", \"2m\")",
        ],
    },
    Case {
        name: "timeout too long",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\ntimeout = \"2s\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:11: error: timeout \"2s\" is too long: it is spent on every request that a fleet limit applies to (at most 1s; a few ms is typical)",
        ],
    },
    Case {
        name: "no instances",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\nexpected_instances = 0\n",
        files: &[],
        expect: &[
            "seawall.toml:18:22: error: expected_instances must be between 1 and 10000, not 0",
        ],
    },
    Case {
        name: "password file unreadable",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\nredis_password_file = \"missing.pw\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:23: error: cannot read missing.pw: No such file or directory (os error 2)",
        ],
    },
    Case {
        name: "password file empty",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\nredis_password_file = \"redis.pw\"\n",
        files: &[("redis.pw", "\n")],
        expect: &["seawall.toml:18:23: error: password file redis.pw is empty"],
    },
    Case {
        name: "unknown fail mode",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\non_store_error = \"retry\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:18: error: unknown value `retry`, expected one of `local`, `open`, `closed`",
        ],
    },
    Case {
        name: "expected_instances without local fallback",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\non_store_error = \"open\"\nexpected_instances = 4\n",
        files: &[],
        expect: &[
            "seawall.toml:19:22: warning: expected_instances is only used with on_store_error = \"local\"",
        ],
    },
    Case {
        name: "misspelt key and missing redis",
        main: "\n[fleet]\ntimout = \"5ms\"\n",
        files: &[],
        expect: &[
            "seawall.toml:16:1: error: missing field `redis`",
            "seawall.toml:17:1: error: unknown field `timout`, expected one of `redis`, `redis_password_file`, `redis_ca_file`, `instance`, `timeout`, `on_store_error`, `expected_instances`",
        ],
    },
    Case {
        name: "bad instance name",
        main: "\n[fleet]\nredis = \"redis://127.0.0.1:6379/0\"\ninstance = \"edge 1\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:12: error: invalid instance name \"edge 1\": use letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64)",
        ],
    },
    Case {
        name: "a broken fleet section is not reported again at the limit",
        main: "  scope = \"fleet\"\n\n[fleet]\nredis = \"tcp://x\"\n",
        files: &[],
        expect: &[
            "seawall.toml:18:9: error: invalid Redis URL \"tcp://x\": write redis://HOST:PORT/DB, or rediss://HOST:PORT/DB for TLS",
        ],
    },
];

fn load(
    main: &str,
    files: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    Result<seawall::config::Loaded, seawall::config::Diagnostics>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seawall.toml");
    std::fs::write(&path, format!("{HEAD}{main}")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let r = seawall::config::load(&path);
    (dir, r)
}

#[test]
fn every_case_reports_exactly_its_diagnostics() {
    let mut failures = String::new();
    for c in CASES {
        let (dir, r) = load(c.main, c.files);
        let (ok, items) = match r {
            Ok(l) => (true, l.diagnostics.items),
            Err(d) => (false, d.items),
        };
        let actual: Vec<String> = items
            .iter()
            .map(|d| {
                d.to_string()
                    .replace(&format!("{}/", dir.path().display()), "")
            })
            .collect();
        let want_ok = !c.expect.iter().any(|l| l.contains(": error: "));
        if actual != c.expect || ok != want_ok {
            failures.push_str(&format!(
                "--- case {:?}: load ok={ok}, actual:\n{}",
                c.name,
                actual
                    .iter()
                    .map(|l| format!("            {l:?},\n"))
                    .collect::<String>()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn a_good_section_compiles_with_its_defaults_and_its_secret() {
    let main = "  scope = \"fleet\"\n\n[fleet]\nredis = \"redis://127.0.0.1:6379/2\"\n\
                redis_password_file = \"redis.pw\"\n";
    let (_dir, r) = load(main, &[("redis.pw", "s3cret\n")]);
    let snap = r.expect("loads").spec;
    let f = snap.settings.fleet.as_ref().expect("fleet section");
    assert_eq!(f.redis, "redis://127.0.0.1:6379/2");
    assert_eq!(
        f.password.as_deref(),
        Some("s3cret"),
        "one trailing newline dropped"
    );
    assert_eq!(f.timeout, Duration::from_millis(5));
    assert_eq!(f.on_store_error, OnStoreError::Local);
    assert_eq!(f.expected_instances, NonZeroU32::new(3).unwrap());
    assert_eq!(f.instance, None);
    assert!(
        !format!("{f:?}").contains("s3cret"),
        "the password never reaches a log"
    );
    assert_eq!(snap.routes[0].limits[0].scope, Scope::Fleet);

    let (_dir, r) = load("", &[]);
    let snap = r.expect("loads").spec;
    assert!(snap.settings.fleet.is_none());
    assert_eq!(snap.routes[0].limits[0].scope, Scope::Local);
}

#[test]
fn campaign_limits_may_be_fleet_limits_too() {
    let dir = tempfile::tempdir().unwrap();
    let main = HEAD.replace(
        "[server]\n",
        "[server]\ncampaigns_file = \"campaigns.toml\"\n",
    );
    std::fs::write(dir.path().join("seawall.toml"), main).unwrap();
    std::fs::write(
        dir.path().join("campaigns.toml"),
        "tag_sources = [\"query:utm_campaign\"]\n\n[unregistered]\naction = \"pass\"\n\
         limit = { key = \"global\", rate = \"10r/s\", scope = \"fleet\" }\n",
    )
    .unwrap();
    let err = seawall::config::load(&dir.path().join("seawall.toml")).unwrap_err();
    let lines: Vec<String> = err
        .items
        .iter()
        .map(|d| {
            d.to_string()
                .replace(&format!("{}/", dir.path().display()), "")
        })
        .collect();
    assert_eq!(
        lines,
        [
            "campaigns.toml:5:51: error: scope = \"fleet\" needs a [fleet] section in seawall.toml (the Redis that decides for every instance)"
        ]
    );
}
