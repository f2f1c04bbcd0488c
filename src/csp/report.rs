//! Violation reports: what browsers POST to `report_path`, read as untrusted input.
//!
//! Both formats are accepted: `report-uri`'s `application/csp-report` (`{"csp-report": {...}}`)
//! and the Reporting API's `application/reports+json` (an array of `{"type": "csp-violation",
//! "body": {...}}`). Bodies are bounded, the endpoint is rate-limited per client, and every
//! value that becomes a metric label comes from a bounded set.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::Value;

use super::source::{OTHER_DIRECTIVES, SOURCE_LIST_DIRECTIVES};

/// Largest report body accepted; browsers send a few KiB at most.
pub const MAX_BODY: usize = 64 * 1024;
/// Distinct blocked hosts that get their own label; later ones count as `other`.
pub const MAX_HOST_LABELS: usize = 100;
/// The most violations read from one Reporting API batch (a page load sends a few).
const MAX_PER_BATCH: usize = 20;
/// New host labels one client may introduce: 5 at once, then one about every 17 minutes. A real
/// browser reports the few hosts a page blocks; a forged report naming 100 hosts gets 5.
pub const NEW_LABELS_PER_CLIENT: crate::limits::limiter::Params = crate::limits::limiter::Params {
    rate_m: 5 * 1000 / 3600,
    burst_m: 4_000,
    delay_m: u64::MAX,
    max_keys: 10_000,
};
/// A host label nobody reported for this long is dropped, with its series: labels forged once
/// do not stay for good.
pub const LABEL_IDLE_MS: u64 = 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub directive: String,
    pub blocked: String,
    pub document: String,
    pub disposition: String,
}

fn str_field<'a>(v: &'a Value, names: &[&str]) -> &'a str {
    names
        .iter()
        .find_map(|n| v.get(*n).and_then(Value::as_str))
        .unwrap_or("")
}

fn violation(body: &Value) -> Violation {
    // `effective-directive` is the precise one; old browsers send only `violated-directive`,
    // which may carry the whole directive ("script-src 'self'").
    let directive = str_field(body, &["effective-directive", "effectiveDirective"]);
    let directive = if directive.is_empty() {
        str_field(body, &["violated-directive", "violatedDirective"])
            .split_whitespace()
            .next()
            .unwrap_or("")
    } else {
        directive
    };
    Violation {
        directive: directive.to_string(),
        blocked: str_field(body, &["blocked-uri", "blockedURL"]).to_string(),
        document: str_field(body, &["document-uri", "documentURL"]).to_string(),
        disposition: str_field(body, &["disposition"]).to_string(),
    }
}

/// The two report formats, by the request's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `report-uri`'s `application/csp-report` (old browsers send `application/json`).
    CspReport,
    /// The Reporting API's `application/reports+json`.
    Reports,
}

impl Format {
    /// The format of a `Content-Type` value, or `None` for one that is not a report.
    pub fn of(content_type: &str) -> Option<Format> {
        let mt = crate::headers::media_type(content_type);
        let is = |t: &str| mt.eq_ignore_ascii_case(t);
        if is("application/csp-report") || is("application/json") {
            Some(Format::CspReport)
        } else if is("application/reports+json") {
            Some(Format::Reports)
        } else {
            None
        }
    }
}

/// Parse a report body. `Err` says why it is not a report (for the 400 answer).
pub fn parse(format: Format, body: &[u8]) -> Result<Vec<Violation>, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    match format {
        Format::CspReport => {
            let r = v.get("csp-report").ok_or("no \"csp-report\" object")?;
            Ok(vec![violation(r)])
        }
        Format::Reports => {
            let list = v.as_array().ok_or("a reports+json body is an array")?;
            Ok(list
                .iter()
                .filter(|r| r.get("type").and_then(Value::as_str) == Some("csp-violation"))
                .filter_map(|r| r.get("body"))
                .take(MAX_PER_BATCH)
                .map(violation)
                .collect())
        }
    }
}

/// `inline`, `eval`, ... as they are; a URL as its host (and port); anything else `other`.
pub fn blocked_host(blocked: &str) -> String {
    let b = blocked.trim();
    if matches!(
        b,
        "inline" | "eval" | "wasm-eval" | "trusted-types-policy" | "trusted-types-sink"
    ) {
        return b.to_string();
    }
    if let Some((scheme, rest)) = b.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b".-:[]".contains(&c));
        if ok && scheme.bytes().all(|c| c.is_ascii_alphanumeric()) {
            return host.to_ascii_lowercase();
        }
        return "other".into();
    }
    match b.split(':').next() {
        Some(s @ ("data" | "blob" | "filesystem")) => s.to_string(),
        _ if b.is_empty() => "none".into(),
        _ => "other".into(),
    }
}

/// A directive label from a known set.
pub fn directive_label(d: &str) -> &str {
    if SOURCE_LIST_DIRECTIVES.contains(&d) || OTHER_DIRECTIVES.contains(&d) {
        d
    } else {
        "other"
    }
}

/// The host labels of `seawall_csp_violations_total`: at most [`MAX_HOST_LABELS`], each client
/// introducing few new ones ([`NEW_LABELS_PER_CLIENT`]), idle ones expiring
/// ([`LABEL_IDLE_MS`]). So one anonymous report cannot fill the set and turn every later real
/// host into `other`.
pub struct HostLabels {
    /// Label -> last time (ms) it was reported.
    seen: Mutex<HashMap<String, u64>>,
    introductions: crate::limits::limiter::Limiter,
}

impl Default for HostLabels {
    fn default() -> Self {
        HostLabels {
            seen: Mutex::default(),
            introductions: crate::limits::limiter::Limiter::new(NEW_LABELS_PER_CLIENT),
        }
    }
}

impl HostLabels {
    /// The label for `host` reported by the client keyed `client` (a limiter key).
    pub fn label(&self, host: String, client: u64, now_ms: u64) -> String {
        use crate::limits::limiter::Lookup;
        let mut seen = self.seen.lock();
        if let Some(last) = seen.get_mut(&host) {
            *last = now_ms;
            return host;
        }
        let room = seen.len() < MAX_HOST_LABELS;
        if room
            && !matches!(
                self.introductions.lookup(client, now_ms, true),
                Lookup::Reject { .. }
            )
        {
            seen.insert(host.clone(), now_ms);
            return host;
        }
        "other".into()
    }

    /// Drop the labels nobody reported for [`LABEL_IDLE_MS`]; returns them, so their series can
    /// be removed too.
    pub fn expire(&self, now_ms: u64) -> Vec<String> {
        let mut gone = Vec::new();
        self.seen.lock().retain(|host, last| {
            let keep = now_ms.saturating_sub(*last) < LABEL_IDLE_MS;
            if !keep {
                gone.push(host.clone());
            }
            keep
        });
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_report_formats() {
        let legacy = br#"{"csp-report":{"document-uri":"http://shop.test/","blocked-uri":"http://evil.test:8080/x.js?y","violated-directive":"script-src-elem","effective-directive":"script-src-elem","disposition":"enforce"}}"#;
        let v = parse(Format::CspReport, legacy).unwrap();
        assert_eq!(v[0].directive, "script-src-elem");
        assert_eq!(blocked_host(&v[0].blocked), "evil.test:8080");
        let api = br#"[{"type":"csp-violation","body":{"documentURL":"http://shop.test/","blockedURL":"inline","effectiveDirective":"script-src-elem","disposition":"report"}},{"type":"deprecation","body":{}}]"#;
        let v = parse(Format::Reports, api).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].blocked, "inline");
        assert_eq!(v[0].disposition, "report");
        let old = br#"{"csp-report":{"violated-directive":"img-src 'self'","blocked-uri":"data"}}"#;
        assert_eq!(
            parse(Format::of("application/json").unwrap(), old).unwrap()[0].directive,
            "img-src"
        );
    }

    #[test]
    fn rejects_what_is_not_a_report() {
        assert!(parse(Format::CspReport, b"not json").is_err());
        assert!(parse(Format::CspReport, b"{}").is_err());
        assert_eq!(Format::of("text/plain"), None);
        assert_eq!(
            Format::of("Application/CSP-Report; x=1"),
            Some(Format::CspReport)
        );
        assert!(parse(Format::Reports, b"{}").is_err());
    }

    #[test]
    fn labels_are_bounded() {
        assert_eq!(
            blocked_host("https://user@CDN.Example.com/a"),
            "cdn.example.com"
        );
        assert_eq!(blocked_host("javascript:alert(1)"), "other");
        assert_eq!(blocked_host("data:text/plain,x"), "data");
        assert_eq!(blocked_host("https://a\"b/"), "other");
        assert_eq!(directive_label("script-src"), "script-src");
        assert_eq!(directive_label("made-up"), "other");
        // Each client may bring in a few labels; many clients may fill the set, no more.
        let h = HostLabels::default();
        for i in 0..MAX_HOST_LABELS {
            assert_eq!(
                h.label(format!("h{i}.test"), i as u64, 1_000),
                format!("h{i}.test")
            );
        }
        assert_eq!(h.label("new.test".into(), 9_999, 1_000), "other");
        assert_eq!(h.label("h1.test".into(), 9_999, 1_000), "h1.test");
    }

    #[test]
    fn one_client_cannot_fill_the_labels_and_idle_labels_expire() {
        let h = HostLabels::default();
        let forged: Vec<String> = (0..MAX_HOST_LABELS)
            .map(|i| h.label(format!("fake{i}.test"), 7, 1_000))
            .collect();
        assert_eq!(forged.iter().filter(|l| *l != "other").count(), 5);
        // A real host reported by a real visitor still gets its label.
        assert_eq!(
            h.label("cdn.example.com".into(), 8, 2_000),
            "cdn.example.com"
        );
        // An hour later the forged labels expire; the one still reported stays.
        assert_eq!(
            h.label("cdn.example.com".into(), 8, LABEL_IDLE_MS),
            "cdn.example.com"
        );
        let mut gone = h.expire(1_000 + LABEL_IDLE_MS);
        gone.sort();
        assert_eq!(gone.len(), 5);
        assert!(gone.iter().all(|g| g.starts_with("fake")));
        assert!(h.expire(1_000 + LABEL_IDLE_MS).is_empty());
    }
}
