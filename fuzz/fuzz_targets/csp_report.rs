//! CSP violation reports, as the report endpoint reads them: anyone can POST one.
//!
//! The input is a `Content-Type` value, a newline, then the body. Properties: nothing panics;
//! a `csp-report` body gives one violation and a `reports+json` batch at most 20; the
//! `blocked_host` and `directive_label` of every violation, which become metric labels, stay
//! in their bounded alphabets; the host label set never grows past its cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use seawall::csp::report::{self, Format, HostLabels, MAX_HOST_LABELS};
use seawall::csp::source::{OTHER_DIRECTIVES, SOURCE_LIST_DIRECTIVES};

/// The fixed words `blocked_host` may answer instead of a host.
const WORDS: &[&str] = &[
    "inline",
    "eval",
    "wasm-eval",
    "trusted-types-policy",
    "trusted-types-sink",
    "data",
    "blob",
    "filesystem",
    "none",
    "other",
];

fn host_label_ok(h: &str) -> bool {
    WORDS.contains(&h)
        || (!h.is_empty()
            && h.len() <= 253
            && h.bytes().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || b".-:[]".contains(&c)
            }))
}

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(ct) = std::str::from_utf8(ct) else {
        return;
    };
    // The endpoint answers 415 to another media type; both parsers still get the body, as a
    // forged Content-Type can pick either.
    let format = Format::of(ct);
    let labels = HostLabels::default();
    for f in [Format::CspReport, Format::Reports] {
        let Ok(violations) = report::parse(f, body) else {
            continue;
        };
        match f {
            Format::CspReport => assert_eq!(violations.len(), 1),
            Format::Reports => assert!(violations.len() <= 20, "{}", violations.len()),
        }
        for (i, v) in violations.iter().enumerate() {
            let host = report::blocked_host(&v.blocked);
            assert!(host_label_ok(&host), "blocked_host({:?}) = {host:?}", v.blocked);
            let d = report::directive_label(&v.directive);
            assert!(
                d == "other" || SOURCE_LIST_DIRECTIVES.contains(&d) || OTHER_DIRECTIVES.contains(&d),
                "directive_label({:?}) = {d:?}",
                v.directive
            );
            let label = labels.label(host.clone(), i as u64, 1_000);
            assert!(label == host || label == "other", "{label:?} for {host:?}");
        }
        if Some(f) == format {
            // What the endpoint would have counted is bounded too.
            assert!(labels.expire(u64::MAX).len() <= MAX_HOST_LABELS);
        }
    }
});
