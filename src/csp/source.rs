//! CSP3 source expressions and directive names, checked at load time.
//!
//! A browser drops what it cannot parse, silently: one stray `;` starts a new directive, a `,` a
//! new policy, a non-ASCII character deletes the whole directive. So every configured source is
//! checked against the grammar here and refused with its location (ref/csp.md).

/// Directives whose value is a source list.
pub const SOURCE_LIST_DIRECTIVES: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "fenced-frame-src",
    "base-uri",
    "form-action",
    "frame-ancestors",
];

/// Other directives a policy may carry, with values that are not source lists (checked loosely).
pub const OTHER_DIRECTIVES: &[&str] = &[
    "sandbox",
    "upgrade-insecure-requests",
    "require-trusted-types-for",
    "trusted-types",
    "webrtc",
];

/// Directives Seawall writes itself from `report_path`; configuring them by hand is refused.
pub const REPORTING_DIRECTIVES: &[&str] = &["report-uri", "report-to"];

const KEYWORDS: &[&str] = &[
    "'self'",
    "'none'",
    "'unsafe-inline'",
    "'unsafe-eval'",
    "'strict-dynamic'",
    "'unsafe-hashes'",
    "'report-sample'",
    "'unsafe-allow-redirects'",
    "'wasm-unsafe-eval'",
    "'inline-speculation-rules'",
    "'trusted-types-eval'",
];

pub fn is_source_list_directive(name: &str) -> bool {
    SOURCE_LIST_DIRECTIVES.contains(&name)
}

/// Check a directive name; the message says what to write instead.
pub fn check_directive_name(name: &str) -> Result<(), String> {
    if SOURCE_LIST_DIRECTIVES.contains(&name) || OTHER_DIRECTIVES.contains(&name) {
        return Ok(());
    }
    if REPORTING_DIRECTIVES.contains(&name) {
        return Err(format!(
            "directive {name:?} is written by Seawall from csp.toml's report_path; remove it here"
        ));
    }
    if name == "block-all-mixed-content" || name == "prefetch-src" || name == "plugin-types" {
        return Err(format!(
            "directive {name:?} is deprecated and ignored by browsers"
        ));
    }
    Err(format!("unknown CSP directive {name:?}"))
}

/// The characters that would break the header or the policy if they reached it.
fn forbidden_char(s: &str) -> Option<String> {
    for c in s.chars() {
        let what = match c {
            ';' => "';' (it would start a new directive)",
            ',' => "',' (it would start a new policy)",
            '\r' | '\n' | '\0' => "a control character (CR, LF or NUL would split the response)",
            c if c.is_whitespace() => "whitespace (it would add a second source; use two strings)",
            c if !c.is_ascii() => {
                "a non-ASCII character (browsers drop the whole directive; punycode the host name)"
            }
            c if c.is_ascii_control() => "a control character",
            _ => continue,
        };
        return Some(what.to_string());
    }
    None
}

fn is_base64ish(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(&b))
}

/// Check one source expression of a source-list directive against the CSP3 grammar.
pub fn check_source(src: &str) -> Result<(), String> {
    if src.is_empty() {
        return Err("empty source".into());
    }
    if let Some(what) = forbidden_char(src) {
        return Err(format!("source {src:?} contains {what}"));
    }
    if src.starts_with('\'') {
        if KEYWORDS.contains(&src) {
            return Ok(());
        }
        let inner = src.strip_prefix('\'').and_then(|s| s.strip_suffix('\''));
        if let Some(inner) = inner {
            for prefix in ["nonce-", "sha256-", "sha384-", "sha512-"] {
                if let Some(v) = inner.strip_prefix(prefix) {
                    return if is_base64ish(v) {
                        Ok(())
                    } else {
                        Err(format!(
                            "source {src:?}: the value after '{prefix}' is not base64"
                        ))
                    };
                }
            }
        }
        return Err(format!(
            "unknown keyword source {src:?} (keywords are quoted, e.g. 'self', 'none', 'nonce-...')"
        ));
    }
    if src.contains('\'') || src.contains('"') {
        return Err(format!(
            "source {src:?} contains a quote; only keywords are quoted"
        ));
    }
    let self_like = [
        "self",
        "none",
        "unsafe-inline",
        "unsafe-eval",
        "strict-dynamic",
    ];
    if self_like.contains(&src) {
        return Err(format!("keyword {src:?} must be quoted: write \"'{src}'\""));
    }
    if src == "*" {
        return Ok(());
    }
    // scheme-source: "https:", "data:", "blob:"
    if let Some(scheme) = src.strip_suffix(':') {
        return check_scheme(scheme).map_err(|e| format!("source {src:?}: {e}"));
    }
    check_host_source(src).map_err(|e| format!("source {src:?}: {e}"))
}

fn check_scheme(s: &str) -> Result<(), String> {
    let mut bytes = s.bytes();
    let ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid scheme {s:?}"))
    }
}

fn check_host_source(src: &str) -> Result<(), String> {
    let rest = match src.split_once("://") {
        Some((scheme, rest)) => {
            check_scheme(scheme)?;
            rest
        }
        None => src,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port
        && p != "*"
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("invalid port {p:?}"));
    }
    if host != "*" {
        let name = host.strip_prefix("*.").unwrap_or(host);
        let name = name.strip_suffix('.').unwrap_or(name);
        let label_ok =
            |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !name.split('.').all(label_ok) {
            return Err(if host.contains('*') {
                "a wildcard is allowed only as the whole leftmost label (\"*.example.com\")".into()
            } else {
                format!("invalid host {host:?}")
            });
        }
    }
    if path.bytes().any(|b| b"?#".contains(&b)) {
        return Err("a source path cannot carry a query or fragment".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_sources() {
        for s in [
            "'self'",
            "'none'",
            "'nonce-abc123+/=='",
            "'sha256-AbC_-='",
            "https:",
            "data:",
            "*",
            "https://www.googletagmanager.com",
            "https://*.google-analytics.com",
            "cdn.example.com:443",
            "https://example.com:*/js/",
            "example.com.",
        ] {
            assert_eq!(check_source(s), Ok(()), "{s}");
        }
    }

    #[test]
    fn bad_sources_say_why() {
        let cases = [
            ("https://a.com; script-src *", "';'"),
            ("https://a.com,https://b.com", "','"),
            ("https://a.com https://b.com", "whitespace"),
            ("https://a.com\r\nX: y", "control character"),
            ("https://bücher.de", "non-ASCII"),
            ("self", "must be quoted"),
            ("'unsafe-everything'", "unknown keyword"),
            ("'nonce-'", "not base64"),
            ("https://a.*.com", "leftmost"),
            ("https://a.com:80x", "invalid port"),
            ("\"https://a.com\"", "quote"),
            ("1nvalid://x.com", "invalid scheme"),
            ("https://a.com/x?y", "query"),
            ("", "empty"),
        ];
        for (src, want) in cases {
            let err = check_source(src).unwrap_err();
            assert!(err.contains(want), "{src:?}: {err}");
        }
    }

    #[test]
    fn directive_names() {
        assert!(check_directive_name("script-src").is_ok());
        assert!(check_directive_name("upgrade-insecure-requests").is_ok());
        assert!(
            check_directive_name("script_src")
                .unwrap_err()
                .contains("unknown")
        );
        assert!(
            check_directive_name("report-uri")
                .unwrap_err()
                .contains("report_path")
        );
    }
}
