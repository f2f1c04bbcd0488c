//! Content-Security-Policy: policies built from the security team's approved tags.
//!
//! The header value of each policy is built once, when the config is compiled: directives in a
//! fixed order, sources de-duplicated in first-seen order, each tag's hosts added to the matching
//! directive. Only a nonce (when enabled) would differ per response.

pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::config::schema::{CspMode, UpstreamCsp};

/// A compiled policy.
#[derive(Debug, PartialEq, Eq)]
pub struct Policy {
    pub name: Arc<str>,
    pub mode: CspMode,
    pub upstream_csp: UpstreamCsp,
    pub nonce: bool,
    /// The full header value, reporting directives included.
    pub header_value: String,
    /// A second policy sent alongside as `Content-Security-Policy-Report-Only` (rollout).
    pub report_only: Option<Arc<Policy>>,
}

/// What a route does about CSP, with csp.toml's `default_policy` already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CspChoice {
    Off,
    Policy(Arc<Policy>),
}

#[derive(Debug, Default)]
pub struct CspConfig {
    pub policies: BTreeMap<Arc<str>, Arc<Policy>>,
    pub default_policy: Option<Arc<Policy>>,
    pub report_path: Option<String>,
    /// Every policy name written, valid or not (so a route naming a broken policy is reported
    /// once, at the policy, not again as "unknown").
    pub declared: std::collections::BTreeSet<String>,
}

/// Directive → sources, as written in the policy and contributed by its tags.
pub type Directives = Vec<(String, Vec<String>)>;

/// Position of a directive in the header: `default-src` first, then the source-list directives
/// in the order of [`source::SOURCE_LIST_DIRECTIVES`], then the rest alphabetically.
fn directive_rank(name: &str) -> (usize, &str) {
    let list = source::SOURCE_LIST_DIRECTIVES;
    let rank = list.iter().position(|d| *d == name).unwrap_or(list.len());
    (rank, name)
}

/// Compose a policy's directives with its tags' hosts and render the header value.
///
/// A tag that needs a directive the policy does not set starts that directive from the
/// policy's `default-src` (what the browser would have used), so adding a tag never removes
/// what the fallback allowed. `'none'` is dropped from a directive once a tag adds a source.
pub fn build_header(
    base: &BTreeMap<String, Vec<String>>,
    tags: &[&BTreeMap<String, Vec<String>>],
    report_path: Option<&str>,
) -> String {
    let mut dirs: BTreeMap<String, Vec<String>> = base.clone();
    let fallback = base.get("default-src").cloned().unwrap_or_default();
    for tag in tags {
        for (name, hosts) in tag.iter() {
            let entry = dirs.entry(name.clone()).or_insert_with(|| {
                if source::is_source_list_directive(name) && name != "default-src" {
                    fallback.clone()
                } else {
                    Vec::new()
                }
            });
            entry.extend(hosts.iter().cloned());
            if entry.len() > 1 {
                entry.retain(|s| s != "'none'");
            }
        }
    }
    let mut ordered: Vec<(&String, &Vec<String>)> = dirs.iter().collect();
    ordered.sort_by(|a, b| directive_rank(a.0).cmp(&directive_rank(b.0)));
    let mut out = String::new();
    for (name, sources) in ordered {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(name);
        let mut seen: Vec<&str> = Vec::with_capacity(sources.len());
        for s in sources {
            if !seen.contains(&s.as_str()) {
                seen.push(s);
                out.push(' ');
                out.push_str(s);
            }
        }
    }
    if let Some(path) = report_path {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str("report-uri ");
        out.push_str(path);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn composes_tags_in_a_stable_deduplicated_order() {
        let base = map(&[
            ("object-src", &["'none'"]),
            ("script-src", &["'self'"]),
            ("default-src", &["'self'"]),
        ]);
        let gtm = map(&[
            (
                "script-src",
                &["https://www.googletagmanager.com", "'self'"],
            ),
            ("connect-src", &["https://www.google.com"]),
        ]);
        let h = build_header(&base, &[&gtm, &gtm], Some("/_seawall/csp-report"));
        assert_eq!(
            h,
            "default-src 'self'; script-src 'self' https://www.googletagmanager.com; \
             connect-src 'self' https://www.google.com; object-src 'none'; \
             report-uri /_seawall/csp-report"
        );
    }

    #[test]
    fn none_is_dropped_when_a_tag_adds_a_source() {
        let base = map(&[("img-src", &["'none'"])]);
        let tag = map(&[("img-src", &["https://x.example"])]);
        assert_eq!(
            build_header(&base, &[&tag], None),
            "img-src https://x.example"
        );
    }
}
