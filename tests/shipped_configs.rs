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
