//! Reload time for a large config: 1,000 routes, 2,000 limits, 10 upstreams, with CSP and
//! campaigns. Measures the whole `reload::reload` path an SRE's save triggers: read the three
//! files, parse, validate, compile, describe the changes, carry pools and limiter state, swap.
//! Target (from the hot-reload issue): under 50 ms.
//!
//! `cargo bench --bench reload`

use std::fmt::Write as _;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};

fn write_config(dir: &Path) {
    let mut main = String::from(
        "[server]\nlisten = [\"127.0.0.1:18080\"]\nadmin_listen = \"127.0.0.1:19901\"\n\
         threads = 2\ncsp_file = \"csp.toml\"\ncampaigns_file = \"campaigns.toml\"\n\n",
    );
    for u in 0..10 {
        writeln!(
            main,
            "[upstreams.u{u}]\nservers = [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n",
            3000 + u,
            4000 + u
        )
        .unwrap();
    }
    for r in 0..1000 {
        writeln!(
            main,
            "[[routes]]\nname = \"r{r}\"\npath_prefix = \"/r{r}/\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"u{}\"\n\
             [[routes.limits]]\nname = \"per-ip\"\nkey = \"client_ip\"\nrate = \"{}r/m\"\nburst = 10\nnodelay = true\n\
             [[routes.limits]]\nname = \"global\"\nkey = \"global\"\nrate = \"{}r/s\"\nburst = 100\n",
            r % 10,
            5 + r % 50,
            100 + r
        )
        .unwrap();
    }
    std::fs::write(dir.join("seawall.toml"), main).unwrap();
    let mut csp =
        String::from("default_policy = \"p0\"\nreport_path = \"/_seawall/csp-report\"\n\n");
    for t in 0..20 {
        writeln!(
            csp,
            "[tags.t{t}]\napproved_by = \"sec@example.com\"\nticket = \"SEC-{t}\"\n\
             script-src = [\"https://cdn{t}.example.com\"]\nimg-src = [\"https://img{t}.example.com\"]\n"
        )
        .unwrap();
    }
    for p in 0..5 {
        writeln!(
            csp,
            "[policies.p{p}]\ntags = [\"t{p}\", \"t{}\", \"t{}\"]\n  [policies.p{p}.directives]\n  \
             default-src = [\"'self'\"]\n  object-src = [\"'none'\"]\n  base-uri = [\"'self'\"]\n",
            p + 5,
            p + 10
        )
        .unwrap();
    }
    std::fs::write(dir.join("csp.toml"), csp).unwrap();
    let mut campaigns = String::from(
        "tag_sources = [\"query:ref\", \"cookie:utm_campaign\"]\ningest_upstream = \"u9\"\n\n\
         [unregistered]\naction = \"divert\"\nlimit = { key = \"global\", rate = \"50r/s\", burst = 100 }\n\n",
    );
    for l in 0..50 {
        writeln!(
            campaigns,
            "[[launch]]\nname = \"launch{l}\"\ntags = [\"TAG{l}\"]\nstarts = 2026-01-01T00:00:00Z\n\
             ends = 2036-01-01T00:00:00Z\nexpected_peak_rps = 100\ntargets = [\"/r{l}/\"]\n\
             limit = {{ key = \"global\", rate = \"100r/s\", burst = 200 }}\n"
        )
        .unwrap();
    }
    std::fs::write(dir.join("campaigns.toml"), campaigns).unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path());
    let path = dir.path().join("seawall.toml");
    let loaded = seawall::config::load(&path).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(loaded.spec.routes.len(), 1000);
    assert_eq!(
        loaded
            .spec
            .routes
            .iter()
            .map(|r| r.limits.len())
            .sum::<usize>(),
        2000
    );
    let state = seawall::state::State::new(path.clone(), loaded.spec).expect("the state starts");
    let mut g = c.benchmark_group("reload");
    g.sample_size(30);
    g.bench_function(
        "1000 routes, 2000 limits: load + validate + compile + swap",
        |b| b.iter(|| seawall::reload::reload(&state).expect("the config is valid")),
    );
    g.bench_function("parse + validate + compile only (config::load)", |b| {
        b.iter(|| seawall::config::load(&path).expect("valid"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
