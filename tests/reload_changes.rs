//! The reload change log covers every setting: for each key of the three files, a config that
//! differs in that key alone is described as changed, naming what changed.

use std::path::Path;

use seawall::snapshot::{self, Bindings};

const MAIN: &str = r#"[server]
listen = ["127.0.0.1:1"]
admin_listen = "127.0.0.1:2"
trusted_proxies = ["127.0.0.1/32"]
access_log = true
csp_file = "csp.toml"
campaigns_file = "campaigns.toml"
max_body = "1MiB"

[upstreams.app]
servers = ["127.0.0.1:9"]
connect_timeout = "1s"
read_timeout = "30s"
write_timeout = "30s"
max_inflight = 10
health_check = { path = "/healthz", interval = "5s", timeout = "1s" }

[upstreams.ingest]
servers = ["127.0.0.1:10"]

[upstreams.app-v2]
servers = ["127.0.0.1:11"]

[[routes]]
name = "signup"
path_prefix = "/signup"
methods = ["POST"]
host = "shop.test"
upstream = "app"
csp = "off"
max_inflight = 5
max_body = "64KiB"
  [[routes.limits]]
  name = "per-ip"
  key = "client_ip"
  rate = "5r/m"
  burst = 10
  nodelay = true
  dry_run = false
  status = 429
  max_keys = 1000
  exempt = ["10.0.0.0/8"]

[[routes]]
name = "site"
upstream = "app"
  [routes.canary]
  upstream = "app-v2"
  weight = 5
  window = "60s"
"#;

const CSP: &str = r#"default_policy = "shop"
report_path = "/_seawall/csp-report"
content_types = ["text/html"]

[tags.gtm]
approved_by = "security@example.com"
ticket = "SEC-1"
script-src = ["https://gtm.example"]

[policies.shop]
mode = "enforce"
upstream_csp = "replace"
nonce = false
tags = ["gtm"]
  [policies.shop.directives]
  default-src = ["'self'"]
  object-src = ["'none'"]
  base-uri = ["'self'"]

[policies.next]
mode = "report-only"
  [policies.next.directives]
  default-src = ["'self'"]
"#;

const CAMPAIGNS: &str = r#"tag_sources = ["query:ref"]
ingest_upstream = "ingest"

[unregistered]
action = "divert"
targets = ["/signup"]
methods = ["POST"]
limit = { key = "global", rate = "50r/s", burst = 100 }

[[launch]]
name = "sale"
tags = ["SALE"]
owner = "growth@example.com"
ticket = "MKT-1"
starts = 2026-01-01T00:00:00Z
ends = 2030-01-01T00:00:00Z
expected_volume = "50k"
expected_peak_rps = 300
targets = ["/signup"]
methods = ["POST"]
new_fields = ["company_size"]
action = "divert"
limit = { key = "global", rate = "300r/s", burst = 600 }
"#;

fn write(dir: &Path, main: &str, csp: &str, campaigns: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("csp.toml"), csp).unwrap();
    std::fs::write(dir.join("campaigns.toml"), campaigns).unwrap();
    std::fs::write(dir.join("seawall.toml"), main).unwrap();
    dir.join("seawall.toml")
}

fn changes(main: &str, csp: &str, campaigns: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let load = |m: &str, c: &str, k: &str| {
        let path = write(dir.path(), m, c, k);
        seawall::config::load(&path)
            .unwrap_or_else(|d| panic!("{d}"))
            .spec
    };
    let metrics = seawall::metrics::Metrics::new();
    let limits = seawall::limits::Registry::default();
    let stats = seawall::campaign::stats::Stats::default();
    let canaries = seawall::canary::Registry::default();
    let b = Bindings {
        limits: &limits,
        campaigns: &stats,
        canaries: &canaries,
        fleet: None,
        metrics: &metrics,
    };
    let old = snapshot::build(load(MAIN, CSP, CAMPAIGNS), None, &b);
    let new = snapshot::build(load(main, csp, campaigns), Some(&old), &b);
    seawall::diff::describe(&old, &new)
}

#[test]
fn an_unchanged_config_is_no_change() {
    assert_eq!(changes(MAIN, CSP, CAMPAIGNS), Vec::<String>::new());
}

#[test]
fn every_setting_is_described_when_it_changes() {
    // (file, what is replaced, by what, a word the change line must contain)
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "main",
            "trusted_proxies = [\"127.0.0.1/32\"]",
            "trusted_proxies = [\"10.0.0.0/8\"]",
            "trusted_proxies",
        ),
        (
            "main",
            "access_log = true",
            "access_log = false",
            "access_log",
        ),
        (
            "main",
            "max_body = \"1MiB\"",
            "max_body = \"2MiB\"",
            "max_body",
        ),
        (
            "main",
            "connect_timeout = \"1s\"",
            "connect_timeout = \"2s\"",
            "upstream app",
        ),
        (
            "main",
            "read_timeout = \"30s\"",
            "read_timeout = \"31s\"",
            "upstream app",
        ),
        (
            "main",
            "write_timeout = \"30s\"",
            "write_timeout = \"31s\"",
            "upstream app",
        ),
        (
            "main",
            "max_inflight = 10",
            "max_inflight = 11",
            "upstream app",
        ),
        (
            "main",
            "timeout = \"1s\" }",
            "timeout = \"2s\" }",
            "upstream app",
        ),
        (
            "main",
            "servers = [\"127.0.0.1:10\"]",
            "servers = [\"127.0.0.1:11\"]",
            "upstream ingest",
        ),
        (
            "main",
            "path_prefix = \"/signup\"",
            "path_prefix = \"/join\"",
            "route signup",
        ),
        (
            "main",
            "methods = [\"POST\"]",
            "methods = [\"PUT\"]",
            "route signup",
        ),
        (
            "main",
            "host = \"shop.test\"",
            "host = \"www.shop.test\"",
            "route signup",
        ),
        ("main", "csp = \"off\"", "csp = \"next\"", "route signup"),
        (
            "main",
            "max_inflight = 5",
            "max_inflight = 6",
            "route signup",
        ),
        (
            "main",
            "max_body = \"64KiB\"",
            "max_body = \"65KiB\"",
            "route signup",
        ),
        (
            "main",
            "rate = \"5r/m\"",
            "rate = \"6r/m\"",
            "limit signup/per-ip",
        ),
        ("main", "burst = 10", "burst = 11", "limit signup/per-ip"),
        (
            "main",
            "nodelay = true",
            "nodelay = false",
            "limit signup/per-ip",
        ),
        (
            "main",
            "dry_run = false",
            "dry_run = true",
            "limit signup/per-ip",
        ),
        (
            "main",
            "status = 429",
            "status = 503",
            "limit signup/per-ip",
        ),
        (
            "main",
            "max_keys = 1000",
            "max_keys = 2000",
            "limit signup/per-ip",
        ),
        (
            "main",
            "exempt = [\"10.0.0.0/8\"]",
            "exempt = [\"10.1.0.0/16\"]",
            "limit signup/per-ip",
        ),
        (
            "main",
            "key = \"client_ip\"",
            "key = \"header:x-user\"",
            "limit signup/per-ip",
        ),
        (
            "csp",
            "default_policy = \"shop\"",
            "default_policy = \"next\"",
            "default_policy",
        ),
        (
            "csp",
            "report_path = \"/_seawall/csp-report\"",
            "report_path = \"/csp\"",
            "report_path",
        ),
        (
            "csp",
            "content_types = [\"text/html\"]",
            "content_types = [\"text/html\", \"application/xhtml+xml\"]",
            "content_types",
        ),
        (
            "csp",
            "mode = \"enforce\"",
            "mode = \"report-only\"",
            "CSP policy shop",
        ),
        (
            "csp",
            "upstream_csp = \"replace\"",
            "upstream_csp = \"keep\"",
            "CSP policy shop",
        ),
        ("csp", "nonce = false", "nonce = true", "CSP policy shop"),
        (
            "csp",
            "script-src = [\"https://gtm.example\"]",
            "script-src = [\"https://gtm2.example\"]",
            "CSP policy shop",
        ),
        (
            "csp",
            "tags = [\"gtm\"]\n",
            "tags = [\"gtm\"]\nreport_only_policy = \"next\"\n",
            "CSP policy shop",
        ),
        (
            "campaigns",
            "tag_sources = [\"query:ref\"]",
            "tag_sources = [\"query:ref\", \"cookie:ref\"]",
            "tag_sources",
        ),
        (
            "campaigns",
            "ingest_upstream = \"ingest\"",
            "ingest_upstream = \"app\"",
            "ingest_upstream",
        ),
        (
            "campaigns",
            "action = \"divert\"\ntargets = [\"/signup\"]\nmethods = [\"POST\"]\nlimit",
            "action = \"pass\"\ntargets = [\"/signup\"]\nmethods = [\"POST\"]\nlimit",
            "[unregistered]",
        ),
        (
            "campaigns",
            "targets = [\"/signup\"]\nmethods = [\"POST\"]\nlimit = { key = \"global\", rate = \"50r/s\"",
            "targets = [\"/join\"]\nmethods = [\"POST\"]\nlimit = { key = \"global\", rate = \"50r/s\"",
            "[unregistered]",
        ),
        (
            "campaigns",
            "rate = \"50r/s\"",
            "rate = \"60r/s\"",
            "[unregistered]",
        ),
        (
            "campaigns",
            "tags = [\"SALE\"]",
            "tags = [\"SALE\", \"SALE2\"]",
            "launch sale",
        ),
        (
            "campaigns",
            "owner = \"growth@example.com\"",
            "owner = \"ops@example.com\"",
            "launch sale",
        ),
        (
            "campaigns",
            "ticket = \"MKT-1\"",
            "ticket = \"MKT-2\"",
            "launch sale",
        ),
        (
            "campaigns",
            "ends = 2030-01-01T00:00:00Z",
            "ends = 2031-01-01T00:00:00Z",
            "launch sale",
        ),
        (
            "campaigns",
            "expected_volume = \"50k\"",
            "expected_volume = \"60k\"",
            "launch sale",
        ),
        (
            "campaigns",
            "expected_peak_rps = 300",
            "expected_peak_rps = 400",
            "launch sale",
        ),
        (
            "campaigns",
            "new_fields = [\"company_size\"]",
            "new_fields = []",
            "launch sale",
        ),
        (
            "campaigns",
            "action = \"divert\"\nlimit = { key = \"global\", rate = \"300r/s\"",
            "action = \"pause\"\nlimit = { key = \"global\", rate = \"300r/s\"",
            "launch sale",
        ),
        (
            "campaigns",
            "rate = \"300r/s\"",
            "rate = \"301r/s\"",
            "launch sale",
        ),
    ];
    let mut missed = Vec::new();
    for (file, from, to, word) in cases {
        let edit = |text: &str, f: &str| {
            if *file == f {
                assert!(text.contains(from), "{from:?} not in {f}");
                text.replacen(from, to, 1)
            } else {
                text.to_string()
            }
        };
        let got = changes(
            &edit(MAIN, "main"),
            &edit(CSP, "csp"),
            &edit(CAMPAIGNS, "campaigns"),
        );
        if !got.iter().any(|c| c.contains(word)) {
            missed.push(format!("{file}: {from:?} -> {to:?} gave {got:?}"));
        }
    }
    assert!(
        missed.is_empty(),
        "changes not described:\n{}",
        missed.join("\n")
    );
}
