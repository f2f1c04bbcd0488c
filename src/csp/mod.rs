//! Content-Security-Policy: policies built from the security team's approved tags.
//!
//! The header value of each policy is built once, when the config is compiled: directives in a
//! fixed order, sources de-duplicated in first-seen order, each tag's hosts added to the matching
//! directive. Only a nonce (when enabled) would differ per response.

pub mod apply;
pub mod endpoint;
pub mod nonce;
pub mod report;
pub mod source;

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderValue;

/// How a policy is sent: `Content-Security-Policy` or `Content-Security-Policy-Report-Only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CspMode {
    Enforce,
    ReportOnly,
}

/// What happens to the origin's own CSP header on a response that gets a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamCsp {
    /// Seawall's policy replaces it.
    Replace,
    /// Both go out; the browser enforces both (it can only tighten).
    Keep,
}

/// A compiled policy: everything a response needs, built once at config load.
#[derive(Debug)]
pub struct Policy {
    pub name: Arc<str>,
    pub mode: CspMode,
    pub upstream_csp: UpstreamCsp,
    pub nonce: bool,
    /// The full header value (HTTPS variant) with the nonce shown as `'nonce-...'`; what
    /// `/-/config` and the change log show.
    pub header_value: String,
    /// For plain-HTTP pages: `report-uri` only. Chromium ignores `report-uri` when `report-to`
    /// is present, and ignores `Reporting-Endpoints` outside secure contexts, so on HTTP a policy
    /// with `report-to` would never report.
    pub plain: Wire,
    /// For HTTPS pages: `report-uri` and `report-to` (with `Reporting-Endpoints`).
    pub secure: Wire,
    /// `Reporting-Endpoints` member for this policy, e.g. `seawall-storefront="/_seawall/csp-report?policy=storefront"`.
    pub reporting_endpoint: Option<String>,
    /// A second policy sent alongside as `Content-Security-Policy-Report-Only` (rollout).
    /// Attach it with [`Policy::set_companion`].
    pub report_only: Option<Arc<Policy>>,
    /// The whole `Reporting-Endpoints` value HTTPS pages get: this policy's member and its
    /// companion's, joined once at load ([`endpoints_header`]).
    pub reporting_endpoints: Option<HeaderValue>,
}

impl Policy {
    /// Whether a response under this policy, or under its companion, carries a nonce.
    pub fn wants_nonce(&self) -> bool {
        self.nonce || self.report_only.as_ref().is_some_and(|c| c.nonce)
    }

    /// Attach the `report_only_policy` companion, and the endpoints header naming both.
    pub fn set_companion(&mut self, companion: Arc<Policy>) {
        self.report_only = Some(companion);
        self.reporting_endpoints = endpoints_header(self);
    }
}

/// `Reporting-Endpoints` for a policy and its companion, if either reports.
pub fn endpoints_header(p: &Policy) -> Option<HeaderValue> {
    let members: Vec<&str> = p
        .reporting_endpoint
        .iter()
        .chain(
            p.report_only
                .iter()
                .filter_map(|c| c.reporting_endpoint.as_ref()),
        )
        .map(String::as_str)
        .collect();
    if members.is_empty() {
        return None;
    }
    HeaderValue::from_str(&members.join(", ")).ok()
}

/// A policy's header value, ready to send.
#[derive(Debug, Clone)]
pub struct Wire {
    /// The value when the policy has no nonce.
    pub value: HeaderValue,
    /// With `nonce = true`: the value is `prefix + nonce + suffix`.
    pub nonce_parts: Option<(String, String)>,
}

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.header_value == other.header_value
            && self.mode == other.mode
    }
}

impl Eq for Policy {}

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
    /// Content types (lower-case, without parameters) whose responses get the header.
    pub content_types: Vec<String>,
    /// Every policy name written, valid or not (so a route naming a broken policy is reported
    /// once, at the policy, not again as "unknown").
    pub declared: std::collections::BTreeSet<String>,
}

/// Responses CSP applies to when csp.toml does not say: HTML documents.
pub const DEFAULT_CONTENT_TYPES: &[&str] = &["text/html"];

/// The nonce slot while a header is being built; never sent.
const NONCE_SLOT: &str = "'nonce-\u{0}'";

/// Directive → sources, as written in the policy and contributed by its tags.
pub type Directives = Vec<(String, Vec<String>)>;

/// Position of a directive in the header: `default-src` first, then the source-list directives
/// in the order of [`source::SOURCE_LIST_DIRECTIVES`], then the rest alphabetically.
fn directive_rank(name: &str) -> (usize, &str) {
    let list = source::SOURCE_LIST_DIRECTIVES;
    let rank = list.iter().position(|d| *d == name).unwrap_or(list.len());
    (rank, name)
}

/// How a policy reports: `report-uri` for every browser, `report-to` + `Reporting-Endpoints` for
/// the Reporting API. The policy's name rides in the URL so reports can be told apart.
pub struct Reporting<'a> {
    pub path: &'a str,
    pub policy: &'a str,
    /// Add `report-to` (HTTPS pages only; see [`Policy::plain`]).
    pub report_to: bool,
}

impl Reporting<'_> {
    pub fn url(&self) -> String {
        format!("{}?policy={}", self.path, self.policy)
    }

    pub fn endpoint_name(&self) -> String {
        format!("seawall-{}", self.policy)
    }
}

/// Compose a policy's directives with its tags' hosts and render the header value.
///
/// A tag that needs a directive the policy does not set starts that directive from the
/// policy's `default-src` (what the browser would have used), so adding a tag never removes
/// what the fallback allowed. `'none'` is dropped from a directive once a tag adds a source.
/// With `nonce`, a nonce slot is added to `script-src` (created from `default-src` if absent).
pub fn build_header(
    base: &BTreeMap<String, Vec<String>>,
    tags: &[&BTreeMap<String, Vec<String>>],
    nonce: bool,
    report: Option<&Reporting<'_>>,
) -> String {
    let mut dirs: BTreeMap<String, Vec<String>> = base.clone();
    let fallback = base.get("default-src").cloned().unwrap_or_default();
    let mut add = |name: &str, sources: &[String]| {
        let entry = dirs.entry(name.to_string()).or_insert_with(|| {
            if source::is_source_list_directive(name) && name != "default-src" {
                fallback.clone()
            } else {
                Vec::new()
            }
        });
        entry.extend(sources.iter().cloned());
        if entry.len() > 1 {
            entry.retain(|s| s != "'none'");
        }
    };
    for tag in tags {
        for (name, hosts) in tag.iter() {
            add(name, hosts);
        }
    }
    if nonce {
        add("script-src", &[NONCE_SLOT.to_string()]);
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
    if let Some(r) = report {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str("report-uri ");
        out.push_str(&r.url());
        if r.report_to {
            out.push_str("; report-to ");
            out.push_str(&r.endpoint_name());
        }
    }
    out
}

/// Turn a built header into its shown form (nonce as `'nonce-...'`) and its send-ready parts:
/// the value, or the two halves around the nonce.
pub fn finish(header: &str) -> (String, Wire) {
    match header.split_once(NONCE_SLOT) {
        Some((prefix, suffix)) => {
            let shown = format!("{prefix}'nonce-...'{suffix}");
            // Without a nonce (a page that cannot be rewritten) the slot is simply left out,
            // never filled with a fixed value.
            let without = format!("{}{}", prefix.trim_end(), suffix);
            let value = HeaderValue::from_str(&without)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
            let parts = Some((format!("{prefix}'nonce-"), format!("'{suffix}")));
            (
                shown,
                Wire {
                    value,
                    nonce_parts: parts,
                },
            )
        }
        None => {
            // Sources were checked against the grammar: a header value cannot fail here.
            let value = HeaderValue::from_str(header)
                .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
            (
                header.to_string(),
                Wire {
                    value,
                    nonce_parts: None,
                },
            )
        }
    }
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
        let report = Reporting {
            path: "/_seawall/csp-report",
            policy: "storefront",
            report_to: true,
        };
        let h = build_header(&base, &[&gtm, &gtm], false, Some(&report));
        assert_eq!(
            h,
            "default-src 'self'; script-src 'self' https://www.googletagmanager.com; \
             connect-src 'self' https://www.google.com; object-src 'none'; \
             report-uri /_seawall/csp-report?policy=storefront; report-to seawall-storefront"
        );
    }

    #[test]
    fn none_is_dropped_when_a_tag_adds_a_source() {
        let base = map(&[("img-src", &["'none'"])]);
        let tag = map(&[("img-src", &["https://x.example"])]);
        assert_eq!(
            build_header(&base, &[&tag], false, None),
            "img-src https://x.example"
        );
    }
}
