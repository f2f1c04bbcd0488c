//! A corpus of broken configurations, each with the exact diagnostics (file, line, column,
//! message) that loading it must produce. Every case writes its files into a fresh temporary
//! directory; file names in the expected lines are relative to it.
//!
//! When a case fails, the report shows the actual lines in the form the table uses, so a
//! deliberate message change is a copy-paste; read them critically before pasting: each must
//! name the place and say what is wrong in words an SRE understands.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One configuration: the text of each file, and every diagnostic it must produce, in order.
struct Case {
    name: &'static str,
    main: &'static [u8],
    csp: Option<&'static [u8]>,
    campaigns: Option<&'static [u8]>,
    expect: &'static [&'static str],
    /// Also run `seawall check` on it and compare its exit code and stderr.
    run_binary: bool,
}

const fn t(s: &'static str) -> &'static [u8] {
    s.as_bytes()
}

const NONE: Case = Case {
    name: "",
    main: b"",
    csp: None,
    campaigns: None,
    expect: &[],
    run_binary: false,
};

/// A valid main file naming csp.toml, for the cases about that file.
const MAIN_CSP: &[u8] = t(r#"[server]
listen = ["127.0.0.1:8080"]
csp_file = "csp.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#);

/// A valid main file naming campaigns.toml, with an `ingest` upstream.
const MAIN_CAMPAIGNS: &[u8] = t(r#"[server]
listen = ["127.0.0.1:8080"]
campaigns_file = "campaigns.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[upstreams.ingest]
servers = ["127.0.0.1:3100"]

[[routes]]
name = "site"
upstream = "app"
"#);

fn write_case(dir: &Path, c: &Case) -> PathBuf {
    let main = dir.join("seawall.toml");
    std::fs::write(&main, c.main).unwrap();
    if let Some(text) = c.csp {
        std::fs::write(dir.join("csp.toml"), text).unwrap();
    }
    if let Some(text) = c.campaigns {
        std::fs::write(dir.join("campaigns.toml"), text).unwrap();
    }
    main
}

/// Diagnostics name files by full path; the expectations name them relative to the case's dir.
fn relative(dir: &Path, line: &str) -> String {
    line.replace(&format!("{}/", dir.display()), "")
}

fn has_errors(lines: &[&str]) -> bool {
    lines.iter().any(|l| l.contains(": error: "))
}

/// The lines in the form the table uses, for a failure report.
fn as_table(lines: &[String]) -> String {
    lines
        .iter()
        .map(|l| format!("            {l:?},\n"))
        .collect()
}

#[test]
fn corpus_is_large_and_names_are_unique() {
    assert!(CASES.len() >= 30, "only {} cases", CASES.len());
    let mut names: Vec<&str> = CASES.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), CASES.len(), "case names must be unique");
    assert!(CASES.iter().filter(|c| c.run_binary).count() >= 3);
}

#[test]
fn every_case_reports_exactly_its_diagnostics() {
    let mut failures = String::new();
    for c in CASES {
        let dir = tempfile::tempdir().unwrap();
        let main = write_case(dir.path(), c);
        let (ok, items) = match seawall::config::load(&main) {
            Ok(loaded) => (true, loaded.diagnostics.items),
            Err(diags) => (false, diags.items),
        };
        let actual: Vec<String> = items
            .iter()
            .map(|d| relative(dir.path(), &d.to_string()))
            .collect();
        let want_ok = !has_errors(c.expect);
        if actual != c.expect || ok != want_ok {
            failures.push_str(&format!(
                "--- case {:?}: load {} (expected {}), actual diagnostics:\n{}",
                c.name,
                if ok { "succeeded" } else { "failed" },
                if want_ok { "success" } else { "failure" },
                as_table(&actual)
            ));
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

#[test]
fn seawall_check_prints_the_same_lines_and_exits_accordingly() {
    let mut failures = String::new();
    for c in CASES.iter().filter(|c| c.run_binary) {
        let dir = tempfile::tempdir().unwrap();
        let main = write_case(dir.path(), c);
        let out = Command::new(env!("CARGO_BIN_EXE_seawall"))
            .args(["check", "--config"])
            .arg(&main)
            .output()
            .unwrap();
        let stderr = relative(dir.path(), &String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = stderr.lines().collect();
        let diag_lines: Vec<String> = lines
            .iter()
            .filter(|l| l.contains(": error: ") || l.contains(": warning: "))
            .map(|l| l.to_string())
            .collect();
        let want_code = if has_errors(c.expect) { 1 } else { 0 };
        let stdout = relative(dir.path(), &String::from_utf8_lossy(&out.stdout));
        let summary_ok = if want_code == 0 {
            stdout.starts_with("seawall.toml: OK: ")
        } else {
            let count = |kind: &str| c.expect.iter().filter(|l| l.contains(kind)).count();
            let word = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
            let want = format!(
                "seawall.toml: {}, {}",
                word(count(": error: "), "error"),
                word(count(": warning: "), "warning")
            );
            lines.last() == Some(&want.as_str())
        };
        let missing: Vec<&&str> = c.expect.iter().filter(|e| !lines.contains(e)).collect();
        if out.status.code() != Some(want_code)
            || !missing.is_empty()
            || diag_lines != c.expect
            || !summary_ok
        {
            failures.push_str(&format!(
                "--- case {:?}: exit {:?} (expected {want_code}), missing {missing:?}, \
                 stdout:\n{stdout}\nstderr:\n{stderr}\n",
                c.name,
                out.status.code(),
            ));
        }
    }
    assert!(failures.is_empty(), "\n{failures}");
}

static CASES: &[Case] = &[
    // ================================================================ all three files valid
    Case {
        name: "valid_config_has_no_diagnostics",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
csp_file = "csp.toml"
campaigns_file = "campaigns.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[upstreams.ingest]
servers = ["127.0.0.1:3100"]

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
methods = ["POST"]
upstream = "app"
csp = "storefront"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/m"
  burst = 10
  nodelay = true

[[routes]]
name = "site"
path_prefix = "/"
upstream = "app"
"#),
        csp: Some(t(r#"default_policy = "storefront"
report_path = "/_seawall/csp-report"

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-42"
script-src = ["https://www.googletagmanager.com"]

[policies.storefront]
tags = ["gtm"]
  [policies.storefront.directives]
  default-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]
"#)),
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingest"

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
starts = 2036-06-01T09:00:00Z
ends = 2036-06-30T23:59:59Z
"#)),
        run_binary: true,
        ..NONE
    },
    // ================================================================ seawall.toml
    Case {
        name: "main_several_syntax_errors",
        // The parser recovers, so every syntax error is listed; what parsed is still checked
        // (the unknown upstream on line 16), but nothing more is said about a broken line.
        main: t(r#"[server]
listen = ["127.0.0.1:8080" "127.0.0.1:8081"]
access_log = ture

[upstreams.app]
servers = ["127.0.0.1:3000"]
connect_timeout = 1s
read_timeout == "5s"

[[routes]]
name = "site
upstream = "app"
upstream = "app"

[[routes]]
name = "api"
upstream = "ghost"
"#),
        expect: &[
            "seawall.toml:2:28: error: missing comma between array elements, expected `,`",
            "seawall.toml:3:14: error: invalid value `ture`: a boolean is true or false, a string is quoted",
            "seawall.toml:7:19: error: `1s` is not a number, and a string value must be quoted",
            "seawall.toml:8:15: error: extra `=`, expected nothing",
            "seawall.toml:8:17: error: unexpected key or value, expected newline, `#`",
            "seawall.toml:11:13: error: unterminated string, expected a closing `\"` on the same line",
            "seawall.toml:13:1: error: duplicate key `upstream`",
            "seawall.toml:17:12: error: unknown upstream \"ghost\" (defined: app)",
        ],
        ..NONE
    },
    Case {
        name: "main_misspelt_keys",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
treads = 2

[upstreams.app]
server = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
path_prefx = "/"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/m"
  brust = 10
"#),
        expect: &[
            "seawall.toml:3:1: error: unknown field `treads`, expected one of `listen`, `tls`, `admin_listen`, `admin_token_file`, `trusted_proxies`, `threads`, `csp_file`, `campaigns_file`, `access_log`, `upgrade_sock`, `pid_file`, `grace_period`, `max_body`, `header_timeout`, `keepalive_timeout`, `max_header_bytes`",
            "seawall.toml:5:1: error: missing field `servers`",
            "seawall.toml:6:1: error: unknown field `server`, expected one of `servers`, `connect_timeout`, `read_timeout`, `write_timeout`, `health_check`, `max_inflight`, `tls`, `sni`, `http2`",
            "seawall.toml:11:1: error: unknown field `path_prefx`, expected one of `name`, `host`, `path`, `path_prefix`, `path_regex`, `methods`, `upstream`, `queue`, `csp`, `max_inflight`, `max_body`",
            "seawall.toml:17:3: error: unknown field `brust`, expected one of `name`, `key`, `rate`, `burst`, `nodelay`, `delay`, `dry_run`, `status`, `max_keys`, `exempt`, `scope`",
        ],
        ..NONE
    },
    Case {
        name: "main_wrong_types",
        main: t(r#"[server]
listen = "127.0.0.1:8080"
threads = "2"

[upstreams.app]
servers = ["127.0.0.1:3000"]
max_inflight = 1.5
health_check = "/healthz"

[[routes]]
name = "site"
upstream = "app"
methods = "GET"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = 5
  burst = "10"
  nodelay = "yes"
"#),
        expect: &[
            "seawall.toml:2:10: error: invalid type: string \"127.0.0.1:8080\", expected an array",
            "seawall.toml:3:11: error: invalid type: string \"2\", expected an integer",
            "seawall.toml:7:16: error: invalid type: float `1.5`, expected an integer",
            "seawall.toml:8:16: error: invalid type: string \"/healthz\", expected a table",
            "seawall.toml:13:11: error: invalid type: string \"GET\", expected an array",
            "seawall.toml:18:10: error: invalid type: integer `5`, expected a string",
            "seawall.toml:19:11: error: invalid type: string \"10\", expected an integer",
            "seawall.toml:20:13: error: invalid type: string \"yes\", expected a boolean",
        ],
        ..NONE
    },
    Case {
        name: "main_unknown_upstream",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
path_prefix = "/"
upstream = "ghost"
"#),
        expect: &["seawall.toml:10:12: error: unknown upstream \"ghost\" (defined: app)"],
        ..NONE
    },
    Case {
        name: "main_unknown_csp_policy",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
csp_file = "csp.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
csp = "storefrnt"
"#),
        csp: Some(t(r#"[policies.storefront.directives]
default-src = ["'self'"]
"#)),
        expect: &[
            "seawall.toml:11:7: error: unknown CSP policy \"storefrnt\" (csp.toml defines: storefront; or write \"off\")",
            "csp.toml:1:11: warning: policy \"storefront\": no object-src: plugins may load; add object-src 'none'",
            "csp.toml:1:11: warning: policy \"storefront\": no base-uri: an injected <base> tag can redirect relative scripts; add base-uri 'self' or 'none'",
            "csp.toml:1:11: warning: policy \"storefront\": no reporting destination: set report_path in csp.toml to see violations",
        ],
        ..NONE
    },
    Case {
        name: "main_csp_policy_without_csp_file",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
csp = "storefront"
"#),
        expect: &[
            "seawall.toml:10:7: error: route uses CSP policy \"storefront\" but server.csp_file is not set",
        ],
        ..NONE
    },
    Case {
        name: "main_duplicate_route_names",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"

[[routes]]
name = "api"
path_prefix = "/"
upstream = "app"
"#),
        expect: &["seawall.toml:13:8: error: duplicate route name \"api\" (first defined at 8:8)"],
        ..NONE
    },
    Case {
        name: "main_duplicate_limit_names",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/s"

  [[routes.limits]]
  name = "per-ip"
  key = "global"
  rate = "100r/s"
"#),
        expect: &[
            "seawall.toml:17:10: error: duplicate limit name \"per-ip\" in this route (first at 12:10)",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_rates",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  name = "daily"
  key = "client_ip"
  rate = "5r/d"

  [[routes.limits]]
  name = "zero"
  key = "client_ip"
  rate = "0r/s"

  [[routes.limits]]
  name = "slow"
  key = "client_ip"
  rate = "3r/h"

  [[routes.limits]]
  name = "no-unit"
  key = "client_ip"
  rate = "10/s"

  [[routes.limits]]
  name = "huge"
  key = "client_ip"
  rate = "20000000r/s"
"#),
        expect: &[
            "seawall.toml:14:10: error: invalid rate \"5r/d\": write N r/s, N r/m or N r/h, e.g. \"10r/s\"",
            "seawall.toml:19:10: error: rate \"0r/s\" must allow at least one request",
            "seawall.toml:24:10: error: rate \"3r/h\" is below nginx's resolution of 1 milli-request per second (the lowest hourly rate is \"4r/h\")",
            "seawall.toml:29:10: error: invalid rate \"10/s\": write N r/s, N r/m or N r/h, e.g. \"10r/s\"",
            "seawall.toml:34:10: error: rate \"20000000r/s\" is too large (at most 10000000)",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_durations",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
grace_period = "5"

[upstreams.app]
servers = ["127.0.0.1:3000"]
connect_timeout = "5"
read_timeout = "0s"
health_check = { path = "healthz", interval = "fast" }

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:3:16: error: invalid duration \"5\": time unit needed, for example 5sec or 5ms (write e.g. \"500ms\", \"5s\", \"2m\")",
            "seawall.toml:7:19: error: invalid duration \"5\": time unit needed, for example 5sec or 5ms (write e.g. \"500ms\", \"5s\", \"2m\")",
            "seawall.toml:8:16: error: duration \"0s\" must be greater than zero",
            "seawall.toml:9:25: error: health_check.path must be a path starting with '/'",
            "seawall.toml:9:47: error: invalid duration \"fast\": expected number at 0 (write e.g. \"500ms\", \"5s\", \"2m\")",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_client_limits",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
header_timeout = "10ms"
keepalive_timeout = "1500ms"
max_header_bytes = "32 kilobytes"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:3:18: error: header_timeout must be at least 100ms",
            "seawall.toml:4:21: error: keepalive_timeout must be whole seconds (Pingora counts it in seconds)",
            "seawall.toml:5:20: error: invalid size \"32 kilobytes\" (write e.g. \"32KiB\", \"1MiB\", \"4096\")",
        ],
        ..NONE
    },
    Case {
        name: "main_header_bytes_out_of_range",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
max_header_bytes = "2MiB"
header_timeout = "soon"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:3:20: error: max_header_bytes must be between 1KiB and 1MiB - 1 byte (Pingora's own bound), not 2097152 bytes",
            "seawall.toml:4:18: error: invalid duration \"soon\": expected number at 0 (write e.g. \"500ms\", \"5s\", \"2m\")",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_networks",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
trusted_proxies = ["10.0.0.1/8", "10.0.0.0/33", "proxy.internal"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/s"
  exempt = ["192.168.1.1/16", "::1"]
"#),
        expect: &[
            "seawall.toml:3:20: error: network \"10.0.0.1/8\" has host bits set: did you mean 10.0.0.0/8?",
            "seawall.toml:3:34: error: invalid network \"10.0.0.0/33\": write a CIDR such as \"10.0.0.0/8\" or an address",
            "seawall.toml:3:49: error: invalid network \"proxy.internal\": write a CIDR such as \"10.0.0.0/8\" or an address",
            "seawall.toml:16:13: error: network \"192.168.1.1/16\" has host bits set: did you mean 192.168.0.0/16?",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_listen_addresses",
        main: t(r#"[server]
listen = ["localhost:8080", ":8080", "127.0.0.1", "127.0.0.1:80800", "0.0.0.0:8080", "0.0.0.0:8080"]
admin_listen = "0.0.0.0:8080"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:2:11: error: invalid listen address \"localhost:8080\": write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:443\"",
            "seawall.toml:2:29: error: invalid listen address \":8080\": write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:443\"",
            "seawall.toml:2:38: error: invalid listen address \"127.0.0.1\": write IP:PORT, e.g. \"127.0.0.1:8080\" or \"[::]:443\"",
            "seawall.toml:2:51: error: invalid listen address \"127.0.0.1:80800\": port 80800 is above 65535",
            "seawall.toml:2:86: error: 0.0.0.0:8080 is listed twice",
            "seawall.toml:3:16: error: admin_listen must differ from every public listener",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_server_addresses",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1", "127.0.0.1:99999", ":3000", "127.0.0.1:0", "127.0.0.1:3000", "127.0.0.1:3000"]

[upstreams.empty]
servers = []

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:5:12: error: invalid server address \"127.0.0.1\": write host:port, e.g. \"127.0.0.1:3000\"",
            "seawall.toml:5:25: error: invalid server address \"127.0.0.1:99999\": port 99999 is above 65535",
            "seawall.toml:5:44: error: invalid server address \":3000\": write host:port, e.g. \"127.0.0.1:3000\"",
            "seawall.toml:5:53: error: invalid server address \"127.0.0.1:0\": port 0 cannot be connected to",
            "seawall.toml:5:86: error: server 127.0.0.1:3000 is listed twice",
            "seawall.toml:8:11: error: upstream \"empty\" has no servers",
        ],
        ..NONE
    },
    Case {
        name: "main_invalid_regexes",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "items"
path_regex = "^/items/[0-9+$"
upstream = "app"

[[routes]]
name = "group"
path_regex = "^/(a|b"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:9:14: error: invalid path_regex \"^/items/[0-9+$\": unclosed character class",
            "seawall.toml:14:14: error: invalid path_regex \"^/(a|b\": unclosed group",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_host_patterns",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "a"
host = "a.*.com"
upstream = "app"

[[routes]]
name = "b"
host = "shop.example.com:8080"
upstream = "app"

[[routes]]
name = "c"
host = "https://shop.example.com"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:9:8: error: invalid host \"a.*.com\": write a name such as \"shop.example.com\" or \"*.example.com\" (no port, no scheme; '*' only as the whole leftmost label)",
            "seawall.toml:14:8: error: invalid host \"shop.example.com:8080\": write a name such as \"shop.example.com\" or \"*.example.com\" (no port, no scheme; '*' only as the whole leftmost label)",
            "seawall.toml:19:8: error: invalid host \"https://shop.example.com\": write a name such as \"shop.example.com\" or \"*.example.com\" (no port, no scheme; '*' only as the whole leftmost label)",
        ],
        ..NONE
    },
    Case {
        name: "main_several_path_matchers",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "login"
path = "/login"
path_prefix = "/login/"
upstream = "app"

[[routes]]
name = "relative"
path_prefix = "api/"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:10:15: error: a route takes one of `path`, `path_prefix`, `path_regex`, not several",
            "seawall.toml:15:15: error: path \"api/\" must start with '/'",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_and_empty_methods",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "a"
methods = ["GET", "GE T", ""]
upstream = "app"

[[routes]]
name = "b"
upstream = "app"
methods = []
"#),
        expect: &[
            "seawall.toml:9:19: error: invalid HTTP method \"GE T\"",
            "seawall.toml:9:27: error: invalid HTTP method \"\"",
            "seawall.toml:15:11: error: `methods` is empty, so the route can never match; omit it to match every method",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_limit_keys",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  name = "a"
  key = "ip"
  rate = "5r/s"

  [[routes.limits]]
  name = "b"
  key = "header:X Api Key"
  rate = "5r/s"

  [[routes.limits]]
  name = "c"
  key = "cookie:"
  rate = "5r/s"

  [[routes.limits]]
  name = "d"
  key = "query:a;b"
  rate = "5r/s"

  [[routes.limits]]
  name = "e"
  key = "param:id"
  rate = "5r/s"
"#),
        expect: &[
            "seawall.toml:13:9: error: invalid key \"ip\"; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
            "seawall.toml:18:9: error: invalid header name \"X Api Key\" in \"header:X Api Key\"; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
            "seawall.toml:23:9: error: key \"cookie:\" has an empty name after ':'; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
            "seawall.toml:28:9: error: invalid query name \"a;b\" in \"query:a;b\"; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
            "seawall.toml:33:9: error: unknown key kind \"param\" in \"param:id\"; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
        ],
        ..NONE
    },
    Case {
        name: "main_missing_fields_and_ranges",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
threads = 0

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  key = "client_ip"
  rate = "5r/s"

  [[routes.limits]]
  name = "no-key"
  rate = "5r/s"

  [[routes.limits]]
  name = "ranges"
  key = "global"
  rate = "5r/s"
  burst = -1
  status = 200
  max_keys = 0

[[routes]]
name = "no-upstream"
path = "/x"
"#),
        expect: &[
            "seawall.toml:3:11: error: threads must be between 1 and 256, not 0",
            "seawall.toml:12:3: error: a route limit needs a `name` (it labels metrics and headers)",
            "seawall.toml:16:3: error: missing field `key`",
            "seawall.toml:24:11: error: burst must be between 0 and 1000000, not -1",
            "seawall.toml:25:12: error: status must be between 400 and 599, not 200",
            "seawall.toml:26:14: error: max_keys must be between 1 and 100000000, not 0",
            "seawall.toml:28:1: error: missing field `upstream`",
        ],
        ..NONE
    },
    Case {
        name: "main_unknown_sections",
        main: t(r#"[sever]
listen = ["127.0.0.1:8080"]

[upstream.app]
servers = ["127.0.0.1:3000"]
"#),
        expect: &[
            "seawall.toml:1:1: error: missing [server] section (it holds `listen`)",
            "seawall.toml:1:1: warning: no [[routes]]: every request will be answered 404",
            "seawall.toml:1:2: error: unknown section \"sever\" (expected server, upstreams, routes, queues, fleet)",
            "seawall.toml:4:2: error: unknown section \"upstream\" (expected server, upstreams, routes, queues, fleet)",
        ],
        ..NONE
    },
    Case {
        name: "main_bad_names",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams."app server"]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "sign up"
upstream = "app server"

  [[routes.limits]]
  name = "per ip"
  key = "client_ip"
  rate = "5r/s"
"#),
        expect: &[
            "seawall.toml:4:12: error: invalid upstream name \"app server\": use letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64)",
            "seawall.toml:8:8: error: invalid route name \"sign up\": use letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64)",
            "seawall.toml:12:10: error: invalid limit name \"per ip\": use letters, digits, '_', '.', '-' (starting with a letter or digit, at most 64)",
        ],
        ..NONE
    },
    Case {
        name: "main_errors_in_every_section_in_one_run",
        main: t(r#"[server]
listen = ["127.0.0.1:80800"]
trusted_proxies = ["10.1.2.3/8"]

[upstreams.app]
servers = ["127.0.0.1:3000"]
connect_timeout = "1"

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
methods = ["POTS"]
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/d"
  brust = 10

[[routes]]
name = "site"
path_prefix = "/"
upstream = "ghost"
"#),
        expect: &[
            "seawall.toml:2:11: error: invalid listen address \"127.0.0.1:80800\": port 80800 is above 65535",
            "seawall.toml:3:20: error: network \"10.1.2.3/8\" has host bits set: did you mean 10.0.0.0/8?",
            "seawall.toml:7:19: error: invalid duration \"1\": time unit needed, for example 1sec or 1ms (write e.g. \"500ms\", \"5s\", \"2m\")",
            "seawall.toml:18:10: error: invalid rate \"5r/d\": write N r/s, N r/m or N r/h, e.g. \"10r/s\"",
            "seawall.toml:19:3: error: unknown field `brust`, expected one of `name`, `key`, `rate`, `burst`, `nodelay`, `delay`, `dry_run`, `status`, `max_keys`, `exempt`, `scope`",
            "seawall.toml:24:12: error: unknown upstream \"ghost\" (defined: app)",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "main_shadowed_route_is_a_warning",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
path_prefix = "/"
upstream = "app"

[[routes]]
name = "signup"
path_prefix = "/api/v1/users/register"
methods = ["POST"]
upstream = "app"
"#),
        expect: &[
            "seawall.toml:13:8: warning: route \"signup\" can never match: route \"site\" (line 8) comes first and matches every request it would",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "main_other_warnings",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
admin_listen = "0.0.0.0:9901"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/s"
  burst = 2
  delay = 5

  [[routes.limits]]
  name = "global"
  key = "global"
  rate = "100r/s"
  burst = 20
  delay = 5
  nodelay = true
"#),
        expect: &[
            "seawall.toml:3:16: warning: admin_listen 0.0.0.0:9901 is not a loopback address: the admin API (metrics, reload) has no TLS; keep it on a private network",
            "seawall.toml:17:11: warning: delay = 5 is above burst = 2: no request will be delayed",
            "seawall.toml:24:11: warning: delay is ignored when nodelay = true",
        ],
        ..NONE
    },
    Case {
        name: "campaign_check_warnings",
        // Loads (warnings only): an ended launch, a target no route matches, a global limit
        // far below the launch's own expected peak.
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
campaigns_file = "campaigns.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "api"
path_prefix = "/api/"
upstream = "app"
"#),
        campaigns: Some(t(r#"tag_sources = ["query:ref"]

[[launch]]
name = "spring"
tags = ["SPRING"]
ends = 2020-04-30T00:00:00Z
action = "pass"

[[launch]]
name = "big"
tags = ["BIG"]
expected_peak_rps = 300
targets = ["/api/signup", "/signup"]
action = "pass"
limit = { key = "global", rate = "50r/s", burst = 10 }
"#)),
        expect: &[
            "campaigns.toml:4:8: warning: launch \"spring\" ended at 2020-04-30T00:00:00Z: its tags now count as unregistered; remove it or move `ends`",
            "campaigns.toml:10:8: warning: launch \"big\": limit 50r/s is far below expected_peak_rps 300: most of the expected traffic would be rejected with 429",
            "campaigns.toml:13:27: warning: target \"/signup\" matches no route: such requests get 404 before any campaign rule",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "campaigns_actions_that_catch_page_views_are_warned_about",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:ref"]
ingest_upstream = "ingest"

[unregistered]
action = "divert"
methods = ["get", "POST"]

[[launch]]
name = "everywhere"
tags = ["ALL"]
action = "pause"
methods = ["GET"]

[[launch]]
name = "signups"
tags = ["SIGNUP"]
targets = ["/signup"]
methods = ["GET", "POST"]

[[launch]]
name = "writes"
tags = ["W"]
"#)),
        expect: &[
            "campaigns.toml:6:11: warning: [unregistered]: its action catches GET requests on every path, so a tagged link to any page (a newsletter's) is kept from the app; set `targets`, or leave GET out of `methods`",
            "campaigns.toml:12:11: warning: launch \"everywhere\": its action catches GET requests on every path, so a tagged link to any page (a newsletter's) is kept from the app; set `targets`, or leave GET out of `methods`",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "campaigns_scope_errors_are_located",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:ref"]
ingest_upstream = "ingest"

[unregistered]
action = "reject"
targets = ["signup"]
methods = []

[[launch]]
name = "x"
tags = ["X"]
methods = ["P O S T"]
"#)),
        expect: &[
            "campaigns.toml:6:12: error: target \"signup\" must be a path starting with '/'",
            "campaigns.toml:7:11: error: `methods` is empty, so the action applies to nothing; omit it for the default (POST, PUT, PATCH, DELETE)",
            "campaigns.toml:12:12: error: invalid HTTP method \"P O S T\"",
        ],
        ..NONE
    },
    Case {
        name: "main_route_paths_are_normalized_like_requests",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "a"
path_prefix = "/api//v1/%7Euser"
upstream = "app"

[[routes]]
name = "b"
path = "/files%2Fsecret"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:9:15: warning: path \"/api//v1/%7Euser\" is matched as \"/api/v1/~user\", the form requests are matched in",
            "seawall.toml:14:8: error: path \"/files%2Fsecret\": the path has an encoded '/' (%2F) in a segment",
        ],
        ..NONE
    },
    Case {
        name: "main_trusting_every_address_is_warned_about",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
trusted_proxies = ["10.0.0.0/8", "0.0.0.0/0", "::/0"]

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:3:34: warning: trusted_proxies 0.0.0.0/0 trusts every address: any client can set its own X-Forwarded-For, and so choose its rate-limit key and the address the app sees; list only your load balancers",
            "seawall.toml:3:47: warning: trusted_proxies ::/0 trusts every address: any client can set its own X-Forwarded-For, and so choose its rate-limit key and the address the app sees; list only your load balancers",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "main_bad_access_log_and_max_body",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
access_log = 5
max_body = "10 megs"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
max_body = "0"
"#),
        expect: &[
            "seawall.toml:3:14: error: access_log must be true (stdout), false, or a file path",
            "seawall.toml:4:12: error: invalid size \"10 megs\": write e.g. \"64KiB\", \"10MiB\" or a number of bytes",
            "seawall.toml:12:12: error: size \"0\" must be greater than zero",
        ],
        ..NONE
    },
    Case {
        name: "main_no_routes_is_a_warning",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
"#),
        expect: &["seawall.toml:1:1: warning: no [[routes]]: every request will be answered 404"],
        ..NONE
    },
    Case {
        name: "main_missing_csp_file_reported_at_its_key",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
csp_file = "csp-prod.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
csp = "storefront"
"#),
        expect: &[
            "seawall.toml:3:12: error: cannot read csp-prod.toml: No such file or directory (os error 2)",
        ],
        run_binary: true,
        ..NONE
    },
    Case {
        name: "main_missing_campaigns_and_token_files",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
admin_token_file = "admin.token"
campaigns_file = "campaigns/missing.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:3:20: error: cannot read admin.token: No such file or directory (os error 2)",
            "seawall.toml:4:18: error: cannot read campaigns/missing.toml: No such file or directory (os error 2)",
        ],
        ..NONE
    },
    Case {
        name: "main_tls_files_unreadable",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]

[[server.tls]]
listen = "127.0.0.1:8443"
cert = "cert.pem"
key = "key.pem"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
"#),
        expect: &[
            "seawall.toml:6:8: error: cannot read cert.pem: No such file or directory (os error 2)",
            "seawall.toml:7:7: error: cannot read key.pem: No such file or directory (os error 2)",
        ],
        ..NONE
    },
    Case {
        name: "main_not_utf8",
        main: b"[server]\nlisten = [\"127.0.0.1:8080\"] # caf\xe9\n",
        expect: &["seawall.toml:2:34: error: file is not valid UTF-8"],
        ..NONE
    },
    // ================================================================ csp.toml
    Case {
        name: "csp_bad_sources",
        main: MAIN_CSP,
        csp: Some(t(r#"[policies.storefront.directives]
default-src = ["'self'; script-src *"]
script-src = ["https://a.com,https://b.com", "https://a.com https://b.com"]
img-src = ["https://bücher.de", "self"]
style-src = ["'nonce-'", "'nonce-abc!'", "'unsafe-everything'"]
connect-src = ["https://a.*.com", "https://api.example.com:44x3"]
object-src = ["'self'", "'none'"]
"#)),
        expect: &[
            "csp.toml:2:16: error: source \"'self'; script-src *\" contains ';' (it would start a new directive)",
            "csp.toml:3:15: error: source \"https://a.com,https://b.com\" contains ',' (it would start a new policy)",
            "csp.toml:3:46: error: source \"https://a.com https://b.com\" contains whitespace (it would add a second source; use two strings)",
            "csp.toml:4:12: error: source \"https://bücher.de\" contains a non-ASCII character (browsers drop the whole directive; punycode the host name)",
            "csp.toml:4:33: error: keyword \"self\" must be quoted: write \"'self'\"",
            "csp.toml:5:14: error: source \"'nonce-'\": the value after 'nonce-' is not base64",
            "csp.toml:5:26: error: source \"'nonce-abc!'\": the value after 'nonce-' is not base64",
            "csp.toml:5:42: error: unknown keyword source \"'unsafe-everything'\" (keywords are quoted, e.g. 'self', 'none', 'nonce-...')",
            "csp.toml:6:16: error: source \"https://a.*.com\": a wildcard is allowed only as the whole leftmost label (\"*.example.com\")",
            "csp.toml:6:35: error: source \"https://api.example.com:44x3\": invalid port \"44x3\"",
            "csp.toml:7:25: error: 'none' must be the only source of its directive",
        ],
        ..NONE
    },
    Case {
        name: "csp_bad_directives",
        main: MAIN_CSP,
        csp: Some(t(r#"report_path = "/_seawall/csp-report"

[policies.storefront]
mode = "block"

  [policies.storefront.directives]
  default-src = ["'self'"]
  script_src = ["'self'"]
  report-uri = ["https://reports.example.com/csp"]
  block-all-mixed-content = []
  sandbox = ["allow-scripts;"]
"#)),
        expect: &[
            "csp.toml:4:8: error: unknown value `block`, expected `enforce` or `report-only`",
            "csp.toml:8:3: error: unknown CSP directive \"script_src\"",
            "csp.toml:9:3: error: directive \"report-uri\" is written by Seawall from csp.toml's report_path; remove it here",
            "csp.toml:10:3: error: directive \"block-all-mixed-content\" is deprecated and ignored by browsers",
            "csp.toml:11:14: error: invalid directive value \"allow-scripts;\"",
        ],
        ..NONE
    },
    Case {
        name: "csp_tag_without_approval",
        main: MAIN_CSP,
        csp: Some(t(r#"[tags.gtm]
script-src = ["https://www.googletagmanager.com"]

[tags.hotjar]
approved_by = ""
ticket = "SEC-7"
script-src = ["https://static.hotjar.com"]

[policies.storefront]
tags = ["gtm", "hotjar"]
  [policies.storefront.directives]
  default-src = ["'self'"]
"#)),
        expect: &[
            "csp.toml:1:1: error: tag has no `approved_by`: every approved tag names who approved it",
            "csp.toml:1:1: error: tag has no `ticket`: every approved tag names its review ticket",
            "csp.toml:5:15: error: `approved_by` must be a non-empty string",
        ],
        ..NONE
    },
    Case {
        name: "csp_unknown_tag_and_policy_references",
        main: MAIN_CSP,
        csp: Some(t(r#"default_policy = "storefrnt"
report_path = "csp-report"

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-42"
script-src = ["https://www.googletagmanager.com"]

[policies.storefront]
tags = ["gtm", "hotjar"]
report_only_policy = "next"
  [policies.storefront.directives]
  default-src = ["'self'"]

[policies.checkout]
report_only_policy = "checkout"
  [policies.checkout.directives]
  default-src = ["'self'"]
"#)),
        expect: &[
            "csp.toml:1:18: error: unknown default_policy \"storefrnt\" (defined: checkout, storefront; or write \"off\")",
            "csp.toml:2:15: error: report_path \"csp-report\" must be a path starting with '/', without spaces, ';', ',' or quotes",
            "csp.toml:10:16: error: unknown tag \"hotjar\" (approved tags: gtm)",
            "csp.toml:11:22: error: unknown policy \"next\" in report_only_policy (defined: checkout, storefront)",
            "csp.toml:15:11: warning: policy \"checkout\": no object-src: plugins may load; add object-src 'none'",
            "csp.toml:15:11: warning: policy \"checkout\": no base-uri: an injected <base> tag can redirect relative scripts; add base-uri 'self' or 'none'",
            "csp.toml:15:11: warning: policy \"checkout\": no reporting destination: set report_path in csp.toml to see violations",
            "csp.toml:16:22: error: report_only_policy cannot name the policy itself",
        ],
        ..NONE
    },
    Case {
        name: "csp_misspelt_keys_and_bad_tag_directives",
        main: MAIN_CSP,
        csp: Some(t(r#"defualt_policy = "storefront"

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-42"
scripts = ["https://www.googletagmanager.com"]
sandbox = ["allow-scripts"]
img-src = "https://www.googletagmanager.com"

[policies.storefront]
nonce = "yes"
tag = ["gtm"]
"#)),
        expect: &[
            "csp.toml:1:1: error: unknown field `defualt_policy`, expected one of `default_policy`, `report_path`, `content_types`",
            "csp.toml:6:1: error: unknown CSP directive \"scripts\" (a tag lists approved sources per directive, plus approved_by and ticket)",
            "csp.toml:7:1: error: a tag can only add sources; \"sandbox\" takes no source list",
            "csp.toml:8:11: error: invalid type: string \"https://www.googletagmanager.com\", expected an array",
            "csp.toml:10:11: warning: policy \"storefront\": no script-src (nor default-src): any script may run",
            "csp.toml:10:11: warning: policy \"storefront\": no object-src: plugins may load; add object-src 'none'",
            "csp.toml:10:11: warning: policy \"storefront\": no base-uri: an injected <base> tag can redirect relative scripts; add base-uri 'self' or 'none'",
            "csp.toml:10:11: warning: policy \"storefront\": no reporting destination: set report_path in csp.toml to see violations",
            "csp.toml:11:9: error: invalid type: string \"yes\", expected a boolean",
            "csp.toml:12:1: error: unknown field `tag`, expected one of `mode`, `upstream_csp`, `nonce`, `tags`, `report_only_policy`, `directives`",
        ],
        ..NONE
    },
    Case {
        name: "csp_several_syntax_errors",
        main: MAIN_CSP,
        csp: Some(t(r#"default_policy = storefront

[tags.gtm]
approved_by = "security@example.com
ticket = "SEC-42"

[policies.storefront.directives]
default-src = ["'self'" "https://cdn.example.com"]
script-src = ["'self'"]
script-src = ["'none'"]
"#)),
        expect: &[
            "csp.toml:1:18: error: string values must be quoted, expected literal string",
            "csp.toml:4:36: error: unterminated string, expected a closing `\"` on the same line",
            "csp.toml:8:25: error: missing comma between array elements, expected `,`",
            "csp.toml:10:1: error: duplicate key `script-src`",
        ],
        ..NONE
    },
    Case {
        name: "csp_not_utf8",
        main: MAIN_CSP,
        csp: Some(b"[policies.storefront.directives]\nimg-src = [\"https://b\xfccher.de\"]\n"),
        expect: &["csp.toml:2:22: error: file is not valid UTF-8"],
        ..NONE
    },
    // ================================================================ campaigns.toml
    Case {
        name: "campaigns_bad_tag_sources",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(
            r#"tag_sources = ["utm_campaign", "query:", "body:utm", "header:X Campaign", "query:ref", "query:ref"]

[[launch]]
name = "newsletter"
tags = ["NEWS"]
action = "pass"
"#,
        )),
        expect: &[
            "campaigns.toml:1:16: error: invalid key \"utm_campaign\"; a tag source is query:NAME, cookie:NAME or header:NAME",
            "campaigns.toml:1:32: error: key \"query:\" has an empty name after ':'; a tag source is query:NAME, cookie:NAME or header:NAME",
            "campaigns.toml:1:42: error: unknown key kind \"body\" in \"body:utm\"; a tag source is query:NAME, cookie:NAME or header:NAME",
            "campaigns.toml:1:54: error: invalid header name \"X Campaign\" in \"header:X Campaign\"; a tag source is query:NAME, cookie:NAME or header:NAME",
            "campaigns.toml:1:88: warning: tag source listed twice",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_unknown_ingest_upstream",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingestion"
"#)),
        expect: &[
            "campaigns.toml:2:19: error: unknown upstream \"ingestion\" in seawall.toml (defined: app, ingest)",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_bad_dates",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingest"

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
starts = 2026-06-01T09:00:00
ends = 2026-06-30

[[launch]]
name = "winter-sale"
tags = ["WINTER"]
starts = 2026-12-01T09:00:00Z
ends = 2026-11-30T09:00:00Z

[[launch]]
name = "spring-sale"
tags = ["SPRING"]
starts = "2026-03-01T09:00:00Z"
"#)),
        expect: &[
            "campaigns.toml:7:10: error: starts must be a full date-time with a UTC offset, e.g. 2026-06-01T09:00:00Z",
            "campaigns.toml:8:8: error: ends must be a full date-time with a UTC offset, e.g. 2026-06-01T09:00:00Z",
            "campaigns.toml:14:8: error: `ends` must be after `starts`",
            "campaigns.toml:19:10: error: invalid type: string \"2026-03-01T09:00:00Z\", expected a date-time, written without quotes, e.g. 2026-06-01T09:00:00Z",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_duplicate_tags_and_names",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingest"

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]

[[launch]]
name = "summer-sale-2"
tags = ["summersale20", "SUMMER 2"]

[[launch]]
name = "summer-sale"
tags = []
"#)),
        expect: &[
            "campaigns.toml:10:9: error: tag \"summersale20\" already belongs to launch \"summer-sale\"",
            "campaigns.toml:10:25: error: invalid campaign tag \"SUMMER 2\"",
            "campaigns.toml:13:8: error: duplicate launch name \"summer-sale\" (first at 5:8)",
            "campaigns.toml:14:8: error: a launch needs at least one tag",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_divert_without_ingest_upstream",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]

[unregistered]
action = "divert"

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]

[[launch]]
name = "winter-sale"
tags = ["WINTER"]
action = "divert"

[[launch]]
name = "newsletter"
tags = ["NEWS"]
action = "pass"
"#)),
        expect: &[
            "campaigns.toml:3:1: error: [unregistered] action = \"divert\" needs `ingest_upstream`",
            "campaigns.toml:6:1: error: launch action \"divert\" (the default when `action` is not set) needs `ingest_upstream`",
            "campaigns.toml:10:1: error: launch action \"divert\" needs `ingest_upstream`",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_bad_launch_fields_and_limits",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingest"

[unregistered]
action = "block"
limit = { key = "global", rate = "50r/d", brust = 100 }

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
owner = "growth@example.com"
expected_peak_rps = -5
targets = ["api/v1/users/register"]
action = "stop"
limit = { key = "ip", rate = "300r/s" }
ticket_url = "https://jira.example.com/MKT-1234"
"#)),
        expect: &[
            "campaigns.toml:5:10: error: unknown value `block`, expected one of `divert`, `queue`, `pass`, `reject`",
            "campaigns.toml:6:34: error: invalid rate \"50r/d\": write N r/s, N r/m or N r/h, e.g. \"10r/s\"",
            "campaigns.toml:6:43: error: unknown field `brust`, expected one of `name`, `key`, `rate`, `burst`, `nodelay`, `delay`, `dry_run`, `status`, `max_keys`, `exempt`, `scope`",
            "campaigns.toml:12:21: error: expected_peak_rps must be a positive number",
            "campaigns.toml:13:12: error: target \"api/v1/users/register\" must be a path starting with '/'",
            "campaigns.toml:14:10: error: unknown value `stop`, expected one of `divert`, `queue`, `pass`, `pause`",
            "campaigns.toml:15:17: error: invalid key \"ip\"; a limit key is client_ip, global, header:NAME, cookie:NAME or query:NAME",
            "campaigns.toml:16:1: error: unknown field `ticket_url`, expected one of `name`, `tags`, `owner`, `ticket`, `starts`, `ends`, `expected_volume`, `expected_peak_rps`, `targets`, `methods`, `new_fields`, `action`, `limit`",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_empty_tag_sources",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
action = "pass"
"#)),
        expect: &[
            "campaigns.toml:1:1: error: tag_sources is empty: no request can carry a campaign tag",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_several_syntax_errors",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = ingest

[[launch]]
name = "summer-sale"
tags = ["SUMMERSALE20"]
starts = 2026-06-01 09:00
expected_peak_rps = 3OO
"#)),
        expect: &[
            "campaigns.toml:2:19: error: string values must be quoted, expected literal string",
            "campaigns.toml:7:10: error: starts must be a full date-time with a UTC offset, e.g. 2026-06-01T09:00:00Z",
            "campaigns.toml:8:21: error: `3OO` is not a number, and a string value must be quoted",
        ],
        ..NONE
    },
    Case {
        name: "campaigns_not_utf8",
        main: MAIN_CAMPAIGNS,
        campaigns: Some(b"tag_sources = [\"query:utm_campaign\"]\n# caf\xe9 launch\n"),
        expect: &["campaigns.toml:2:6: error: file is not valid UTF-8"],
        run_binary: true,
        ..NONE
    },
    // ================================================================ across files
    Case {
        name: "errors_in_all_three_files_sorted_by_file",
        main: t(r#"[server]
listen = ["127.0.0.1:8080"]
csp_file = "csp.toml"
campaigns_file = "campaigns.toml"

[upstreams.app]
servers = ["127.0.0.1:3000"]

[[routes]]
name = "site"
upstream = "app"
csp = "storefront"

  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "0r/s"
"#),
        csp: Some(t(r#"[policies.storefront.directives]
script-src = ["'self'", "https://cdn.example.com;"]
"#)),
        campaigns: Some(t(r#"tag_sources = ["query:utm_campaign"]
ingest_upstream = "ingest"
"#)),
        expect: &[
            "seawall.toml:17:10: error: rate \"0r/s\" must allow at least one request",
            "csp.toml:2:25: error: source \"https://cdn.example.com;\" contains ';' (it would start a new directive)",
            "campaigns.toml:2:19: error: unknown upstream \"ingest\" in seawall.toml (defined: app)",
        ],
        run_binary: true,
    },
];
