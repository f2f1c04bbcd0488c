//! `csp.toml`: the security team's approved tags and the policies built from them.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::schema::{CspHead, CspModeFile, PolicyFile, UpstreamCspFile};
use super::{Reporter, check_name, de, list_names, table_value};
use crate::csp::{
    CspConfig, CspMode, Policy, Reporting, UpstreamCsp, build_header, endpoints_header, finish,
    source,
};

/// An approved tag: who approved it, and the sources it needs per directive.
struct Tag {
    directives: BTreeMap<String, Vec<String>>,
}

pub(super) fn compile(doc: DeTable<'_>, rep: &mut Reporter) -> CspConfig {
    let mut head_table = DeTable::new();
    let mut tags_v = None;
    let mut policies_v = None;
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "tags" => tags_v = Some(value),
            "policies" => policies_v = Some(value),
            _ => {
                head_table.insert(key, value);
            }
        }
    }
    let head: Option<CspHead> = de(table_value(0..0, head_table), rep);
    let report_path = head
        .as_ref()
        .and_then(|h| h.report_path.as_ref())
        .and_then(|p| check_report_path(p, rep));

    let mut tags: BTreeMap<String, Option<Tag>> = BTreeMap::new();
    if let Some(v) = tags_v {
        for (name, value) in sections(v, "tags", rep) {
            let tag = check_name("tag", &name, rep).and_then(|_| tag(value, rep));
            tags.insert(name.into_inner(), tag);
        }
    }

    let content_types = match head.as_ref().and_then(|h| h.content_types.as_ref()) {
        None => crate::csp::DEFAULT_CONTENT_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(list) => {
            let mut out = Vec::new();
            for ct in list {
                let v = ct.get_ref().trim().to_ascii_lowercase();
                let ok = v.split_once('/').is_some_and(|(a, b)| {
                    let tok = |t: &str| {
                        !t.is_empty()
                            && t.bytes()
                                .all(|c| c.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&c))
                    };
                    tok(a) && tok(b)
                });
                if ok {
                    out.push(v);
                } else {
                    rep.error(
                        ct.span(),
                        format!(
                            "invalid content type {:?}: write e.g. \"text/html\" (no parameters)",
                            ct.get_ref()
                        ),
                    );
                }
            }
            out
        }
    };
    let mut cfg = CspConfig {
        report_path: report_path.clone(),
        content_types,
        ..Default::default()
    };
    // Pass 1: every policy on its own. Pass 2: attach report-only companions.
    let mut companions: Vec<(Arc<str>, Spanned<String>)> = Vec::new();
    let mut built: BTreeMap<Arc<str>, Policy> = BTreeMap::new();
    if let Some(v) = policies_v {
        for (name, value) in sections(v, "policies", rep) {
            cfg.declared.insert(name.get_ref().clone());
            let Some(pname) = check_name("policy", &name, rep) else {
                continue;
            };
            let Some(pf) = de::<PolicyFile>(value, rep) else {
                continue;
            };
            let built_policy = policy(
                pname.clone(),
                name.span(),
                &pf,
                &tags,
                report_path.as_deref(),
                rep,
            );
            // Checked even when this policy has other errors, so all are reported in one run.
            if let Some(ro) = pf.report_only_policy.filter(|r| !r.get_ref().is_empty()) {
                companions.push((pname.clone(), ro));
            }
            if let Some(p) = built_policy {
                built.insert(pname, p);
            }
        }
    }
    let finished: BTreeMap<Arc<str>, Arc<Policy>> = built
        .iter()
        .map(|(n, p)| (n.clone(), Arc::new(clone_policy(p))))
        .collect();
    for (owner, ro) in companions {
        if ro.get_ref().as_str() == &*owner {
            rep.error(
                ro.span(),
                "report_only_policy cannot name the policy itself",
            );
            continue;
        }
        match finished.get(ro.get_ref().as_str()) {
            Some(companion) => {
                if let Some(p) = built.get_mut(&owner) {
                    p.set_companion(companion.clone());
                }
            }
            None if cfg.declared.contains(ro.get_ref()) => {}
            None => rep.error(
                ro.span(),
                format!(
                    "unknown policy {:?} in report_only_policy (defined: {})",
                    ro.get_ref(),
                    list_names(cfg.declared.iter().map(String::as_str))
                ),
            ),
        }
    }
    cfg.policies = built.into_iter().map(|(n, p)| (n, Arc::new(p))).collect();
    if let Some(d) = head.as_ref().and_then(|h| h.default_policy.as_ref()) {
        match cfg.policies.get(d.get_ref().as_str()) {
            Some(p) => cfg.default_policy = Some(p.clone()),
            None if d.get_ref() == "off" => {}
            None if cfg.declared.contains(d.get_ref()) => {}
            None => rep.error(
                d.span(),
                format!(
                    "unknown default_policy {:?} (defined: {}; or write \"off\")",
                    d.get_ref(),
                    list_names(cfg.declared.iter().map(String::as_str))
                ),
            ),
        }
    }
    cfg
}

/// A policy as a companion (`report_only_policy`) is sent as Report-Only whatever its own mode.
fn clone_policy(p: &Policy) -> Policy {
    let mut c = Policy {
        name: p.name.clone(),
        mode: CspMode::ReportOnly,
        upstream_csp: p.upstream_csp,
        nonce: p.nonce,
        header_value: p.header_value.clone(),
        plain: p.plain.clone(),
        secure: p.secure.clone(),
        reporting_endpoint: p.reporting_endpoint.clone(),
        report_only: None,
        reporting_endpoints: None,
    };
    // Its own member only, whatever companion the original has or gets later.
    c.reporting_endpoints = endpoints_header(&c);
    c
}

/// The `[X.NAME]` sections of a table, with their names.
fn sections<'a>(
    v: Spanned<DeValue<'a>>,
    what: &str,
    rep: &mut Reporter,
) -> Vec<(Spanned<String>, Spanned<DeValue<'a>>)> {
    let span = v.span();
    match v.into_inner() {
        DeValue::Table(t) => t
            .into_iter()
            .map(|(k, v)| (Spanned::new(k.span(), k.get_ref().to_string()), v))
            .collect(),
        _ => {
            rep.error(
                span,
                format!("`{what}` must be a table of [{what}.NAME] sections"),
            );
            Vec::new()
        }
    }
}

fn check_report_path(p: &Spanned<String>, rep: &mut Reporter) -> Option<String> {
    let s = p.get_ref();
    let ok = s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b";,'\"".contains(&b));
    if ok {
        Some(s.clone())
    } else {
        rep.error(
            p.span(),
            format!("report_path {s:?} must be a path starting with '/', without spaces, ';', ',' or quotes"),
        );
        None
    }
}

/// A tag mixes fixed keys (`approved_by`, `ticket`) with directive names, so it is read by hand.
fn tag(value: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Option<Tag> {
    let span = value.span();
    let DeValue::Table(t) = value.into_inner() else {
        rep.error(span, "a tag must be a table");
        return None;
    };
    let mut ok = true;
    // Whether each key is present: one that is present but empty is reported once, as such,
    // not a second time as missing.
    let mut approved = false;
    let mut ticket = false;
    let mut directives = BTreeMap::new();
    for (key, v) in t {
        let k = key.get_ref().as_ref();
        match k {
            "approved_by" | "ticket" => {
                let good = v.get_ref().as_str().is_some_and(|s| !s.trim().is_empty());
                if !good {
                    rep.error(v.span(), format!("`{k}` must be a non-empty string"));
                    ok = false;
                }
                if k == "approved_by" {
                    approved = true;
                } else {
                    ticket = true;
                }
            }
            _ => {
                if let Err(e) = source::check_directive_name(k) {
                    rep.error(key.span(), format!("{e} (a tag lists approved sources per directive, plus approved_by and ticket)"));
                    ok = false;
                    continue;
                }
                if !source::is_source_list_directive(k) {
                    rep.error(
                        key.span(),
                        format!("a tag can only add sources; {k:?} takes no source list"),
                    );
                    ok = false;
                    continue;
                }
                match source_list(v, rep) {
                    Some(list) => {
                        directives.insert(k.to_string(), list);
                    }
                    None => ok = false,
                }
            }
        }
    }
    if !approved {
        rep.error(
            span.start..span.start,
            "tag has no `approved_by`: every approved tag names who approved it",
        );
        ok = false;
    }
    if !ticket {
        rep.error(
            span.start..span.start,
            "tag has no `ticket`: every approved tag names its review ticket",
        );
        ok = false;
    }
    ok.then_some(Tag { directives })
}

/// An array of source expressions, each checked against the grammar.
fn source_list(v: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Option<Vec<String>> {
    let list: Vec<Spanned<String>> = de(v, rep)?;
    check_sources(&list, rep)
}

fn check_sources(list: &[Spanned<String>], rep: &mut Reporter) -> Option<Vec<String>> {
    let mut ok = true;
    for s in list {
        if let Err(e) = source::check_source(s.get_ref()) {
            rep.error(s.span(), e);
            ok = false;
        }
    }
    if list.len() > 1
        && let Some(none) = list.iter().find(|s| s.get_ref() == "'none'")
    {
        rep.error(
            none.span(),
            "'none' must be the only source of its directive",
        );
        ok = false;
    }
    ok.then(|| list.iter().map(|s| s.get_ref().clone()).collect())
}

fn policy(
    name: Arc<str>,
    name_span: std::ops::Range<usize>,
    pf: &PolicyFile,
    tags: &BTreeMap<String, Option<Tag>>,
    report_path: Option<&str>,
    rep: &mut Reporter,
) -> Option<Policy> {
    let mut ok = true;
    let mut base = BTreeMap::new();
    for (dname, sources) in &pf.directives {
        let d = dname.get_ref();
        if let Err(e) = source::check_directive_name(d) {
            rep.error(dname.span(), e);
            ok = false;
            continue;
        }
        let checked = if source::is_source_list_directive(d) {
            check_sources(sources, rep)
        } else {
            check_tokens(sources, rep)
        };
        match checked {
            Some(list) => {
                base.insert(d.clone(), list);
            }
            None => ok = false,
        }
    }
    let mut used: Vec<&BTreeMap<String, Vec<String>>> = Vec::new();
    for t in &pf.tags {
        match tags.get(t.get_ref()) {
            Some(Some(tag)) => used.push(&tag.directives),
            Some(None) => ok = false,
            None => {
                rep.error(
                    t.span(),
                    format!(
                        "unknown tag {:?} (approved tags: {})",
                        t.get_ref(),
                        list_names(tags.keys().map(String::as_str))
                    ),
                );
                ok = false;
            }
        }
    }
    if !ok {
        return None;
    }
    let nonce = pf.nonce.unwrap_or(false);
    let reporting = |report_to| {
        report_path.map(|path| Reporting {
            path,
            policy: &name,
            report_to,
        })
    };
    let secure_header = build_header(&base, &used, nonce, reporting(true).as_ref());
    evaluate(&name, &secure_header, report_path.is_some(), name_span, rep);
    let (header_value, secure) = finish(&secure_header);
    let (_, plain) = finish(&build_header(
        &base,
        &used,
        nonce,
        reporting(false).as_ref(),
    ));
    let mut policy = Policy {
        mode: pf.mode.map_or(CspMode::Enforce, CspMode::from),
        upstream_csp: pf
            .upstream_csp
            .map_or(UpstreamCsp::Replace, UpstreamCsp::from),
        nonce,
        header_value,
        plain,
        secure,
        reporting_endpoint: reporting(true)
            .map(|r| format!("{}=\"{}\"", r.endpoint_name(), r.url())),
        report_only: None,
        reporting_endpoints: None,
        name,
    };
    policy.reporting_endpoints = endpoints_header(&policy);
    Some(policy)
}

/// Values of directives that are not source lists (`sandbox allow-scripts`, ...): plain tokens.
fn check_tokens(list: &[Spanned<String>], rep: &mut Reporter) -> Option<Vec<String>> {
    let mut ok = true;
    for s in list {
        let good = !s.get_ref().is_empty()
            && s.get_ref()
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b";,".contains(&b));
        if !good {
            rep.error(
                s.span(),
                format!("invalid directive value {:?}", s.get_ref()),
            );
            ok = false;
        }
    }
    ok.then(|| list.iter().map(|s| s.get_ref().clone()).collect())
}

/// Warnings for what google/csp-evaluator flags, on the composed policy (tags included).
fn evaluate(
    name: &str,
    header: &str,
    reporting: bool,
    span: std::ops::Range<usize>,
    rep: &mut Reporter,
) {
    let dirs: BTreeMap<&str, Vec<&str>> = header
        .split(';')
        .filter_map(|d| {
            let mut it = d.split_whitespace();
            it.next().map(|n| (n, it.collect()))
        })
        .collect();
    let script = dirs.get("script-src").or_else(|| dirs.get("default-src"));
    let mut warn = |msg: String| rep.warn(span.clone(), format!("policy {name:?}: {msg}"));
    match script {
        None => warn("no script-src (nor default-src): any script may run".into()),
        Some(sources) => {
            for s in sources {
                let why = match *s {
                    "'unsafe-inline'" => {
                        "'unsafe-inline' in script-src lets injected inline scripts run"
                    }
                    "'unsafe-eval'" => "'unsafe-eval' in script-src allows eval()",
                    "*" => "'*' in script-src allows scripts from any host",
                    "https:" | "http:" => {
                        "a bare scheme in script-src allows scripts from any host"
                    }
                    "data:" => "data: in script-src allows scripts from data: URLs",
                    _ => continue,
                };
                warn(why.to_string());
            }
        }
    }
    if !dirs.contains_key("object-src") && dirs.get("default-src").is_none_or(|d| d != &["'none'"])
    {
        warn("no object-src: plugins may load; add object-src 'none'".into());
    }
    if !dirs.contains_key("base-uri") {
        warn("no base-uri: an injected <base> tag can redirect relative scripts; add base-uri 'self' or 'none'".into());
    }
    if !reporting {
        warn("no reporting destination: set report_path in csp.toml to see violations".into());
    }
}

impl From<CspModeFile> for CspMode {
    fn from(m: CspModeFile) -> Self {
        match m {
            CspModeFile::Enforce => CspMode::Enforce,
            CspModeFile::ReportOnly => CspMode::ReportOnly,
        }
    }
}

impl From<UpstreamCspFile> for UpstreamCsp {
    fn from(u: UpstreamCspFile) -> Self {
        match u {
            UpstreamCspFile::Replace => UpstreamCsp::Replace,
            UpstreamCspFile::Keep => UpstreamCsp::Keep,
        }
    }
}
