//! Every config shipped in conf/ loads without errors or warnings: they are documentation, and a
//! newcomer copies them.

use std::path::Path;

fn assert_clean(path: &str) {
    match seawall::config::load(Path::new(path)) {
        Ok(loaded) => {
            let warnings: Vec<String> = loaded
                .diagnostics
                .items
                .iter()
                .map(ToString::to_string)
                .collect();
            assert!(
                warnings.is_empty(),
                "{path} has warnings:\n{}",
                warnings.join("\n")
            );
        }
        Err(d) => panic!("{path} does not load:\n{d}"),
    }
}

#[test]
fn example_config_is_clean() {
    assert_clean("conf/seawall.toml");
}

#[test]
fn demo_config_is_clean() {
    assert_clean("conf/demo/seawall.toml");
}

/// The Grafana dashboard queries only metrics Seawall registers (a renamed metric would leave a
/// panel silently empty).
#[test]
fn grafana_dashboard_uses_only_real_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("conf/grafana/seawall.json").unwrap())
            .unwrap();
    let registered = include_str!("../src/metrics.rs");
    let text = dash.to_string();
    let mut names: Vec<&str> = text
        .match_indices("seawall_")
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 12, "{names:?}");
    for n in names {
        let base = n.strip_suffix("_bucket").unwrap_or(n);
        assert!(
            registered.contains(&format!("\"{base}\"")),
            "dashboard uses {n}, which Seawall does not register"
        );
    }
}
