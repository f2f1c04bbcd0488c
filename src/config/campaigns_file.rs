//! `campaigns.toml`: where tags are read, the ingestion upstream, the unregistered-tag policy and
//! the launch tickets.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::limits::compile_limit;
use super::main_file::Head;
use super::schema::{
    CampaignsHead, LaunchActionFile, LaunchFile, LimitFile, UnregisteredActionFile,
    UnregisteredFile,
};
use super::{Reporter, check_name, de, list_names, methods, table_value, values};
use crate::campaign::{
    CampaignsSpec, Launch, LaunchAction, Scope, Unregistered, UnregisteredAction, WRITE_METHODS,
};
use crate::limits::{KeySource, LimitSpec};

pub(super) fn compile(doc: DeTable<'_>, main: &Head, rep: &mut Reporter) -> Option<CampaignsSpec> {
    let mut head_table = DeTable::new();
    let mut unregistered_v = None;
    let mut launch_v = None;
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "unregistered" => unregistered_v = Some(value),
            "launch" => launch_v = Some(value),
            _ => {
                head_table.insert(key, value);
            }
        }
    }
    // Whether a key is written at all: one that is written but unreadable is reported as such,
    // not a second time as missing.
    let ingest_written = head_table.contains_key("ingest_upstream");
    let queue_written = head_table.contains_key("ingest_queue");
    let sources_written = head_table
        .get("tag_sources")
        .is_some_and(|v| !matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()));
    let mut ok = true;
    let head: CampaignsHead = match de(table_value(0..0, head_table), rep) {
        Some(h) => h,
        None => {
            ok = false;
            CampaignsHead {
                tag_sources: Vec::new(),
                ingest_upstream: None,
                ingest_queue: None,
            }
        }
    };
    let mut tag_sources = Vec::new();
    for s in &head.tag_sources {
        match values::named_source(s.get_ref()) {
            Ok(src) if tag_sources.contains(&src) => rep.warn(s.span(), "tag source listed twice"),
            Ok(src) => tag_sources.push(src),
            Err(e) => {
                rep.error(
                    s.span(),
                    format!("{e}; a tag source is query:NAME, cookie:NAME or header:NAME"),
                );
                ok = false;
            }
        }
    }
    let ingest = match &head.ingest_upstream {
        Some(u) => match main.upstreams.get(u.get_ref().as_str()) {
            Some(up) => Some(up.clone()),
            None => {
                if !main.declared_upstreams.contains(u.get_ref()) {
                    rep.error(
                        u.span(),
                        format!(
                            "unknown upstream {:?} in seawall.toml (defined: {})",
                            u.get_ref(),
                            list_names(main.declared_upstreams.iter().map(String::as_str))
                        ),
                    );
                }
                ok = false;
                None
            }
        },
        None => None,
    };
    let ingest_queue = match &head.ingest_queue {
        Some(q) => {
            let found = super::queues::lookup(main, q, rep, "ingest_queue");
            ok &= found.is_some();
            found
        }
        None => None,
    };

    let unregistered = match unregistered_v {
        Some(v) => {
            let span = v.span();
            let (v, limit_v) = take_limit(v, rep);
            match de::<UnregisteredFile>(v, rep) {
                Some(mut u) => {
                    u.limit = limit_v;
                    let action = u.action.map_or(UnregisteredAction::Pass, Into::into);
                    if action == UnregisteredAction::Divert && !ingest_written {
                        rep.error(
                            span.clone(),
                            "[unregistered] action = \"divert\" needs `ingest_upstream`",
                        );
                        ok = false;
                    }
                    if action == UnregisteredAction::Queue && !queue_written {
                        rep.error(
                            span.clone(),
                            "[unregistered] action = \"queue\" needs `ingest_queue`",
                        );
                        ok = false;
                    }
                    let limit = match &u.limit {
                        Some(l) => {
                            let spec = compile_limit(
                                l.get_ref(),
                                l.span(),
                                Some("unregistered"),
                                main.fleet_declared,
                                rep,
                            );
                            ok &= spec.is_some();
                            spec
                        }
                        None => None,
                    };
                    let keeps = action != UnregisteredAction::Pass;
                    let scope = scope(
                        &u.targets,
                        &u.methods,
                        keeps,
                        span.clone(),
                        "[unregistered]",
                        rep,
                    );
                    ok &= scope.is_some();
                    Unregistered {
                        action,
                        scope: scope.map_or_else(every_request, |(s, _)| s),
                        limit,
                    }
                }
                None => {
                    ok = false;
                    Unregistered {
                        action: UnregisteredAction::Pass,
                        scope: every_request(),
                        limit: None,
                    }
                }
            }
        }
        None => Unregistered {
            action: UnregisteredAction::Pass,
            scope: every_request(),
            limit: None,
        },
    };

    let mut launches = Vec::new();
    if let Some(v) = launch_v {
        let span = v.span();
        match v.into_inner() {
            DeValue::Array(items) => {
                let mut names: BTreeMap<String, usize> = BTreeMap::new();
                let mut tag_owner: BTreeMap<String, String> = BTreeMap::new();
                for item in items {
                    let ispan = item.span();
                    let (item, limit_v) = take_limit(item, rep);
                    let Some(mut lf) = de::<LaunchFile>(item, rep) else {
                        ok = false;
                        continue;
                    };
                    lf.limit = limit_v;
                    match launch(
                        lf,
                        ispan,
                        &mut names,
                        &mut tag_owner,
                        (ingest_written, queue_written),
                        main.fleet_declared,
                        rep,
                    ) {
                        Some(l) => launches.push(l),
                        None => ok = false,
                    }
                }
            }
            _ => {
                rep.error(span, "`launch` must be an array of [[launch]] tables");
                ok = false;
            }
        }
    }
    if !sources_written && !launches.is_empty() {
        rep.error(
            0..0,
            "tag_sources is empty: no request can carry a campaign tag",
        );
        ok = false;
    }
    let by_tag = launches
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.tags.iter().map(move |t| (t.clone(), i)))
        .collect();
    ok.then_some(CampaignsSpec {
        tag_sources,
        ingest,
        ingest_queue,
        unregistered,
        launches,
        by_tag,
    })
}

/// Every path, every method: the scope of `pass`, which only attributes.
fn every_request() -> Scope {
    Scope {
        targets: Vec::new(),
        methods: None,
    }
}

/// The requests an action applies to, from `targets` and `methods`, and where each target is
/// written. `keeps_from_app`: the action
/// keeps requests from the app (divert, queue, pause, reject); its methods then default to
/// POST, PUT, PATCH, DELETE, and catching GET on every path is warned about.
fn scope(
    targets: &[Spanned<String>],
    ms: &Option<Spanned<Vec<Spanned<String>>>>,
    keeps_from_app: bool,
    at: std::ops::Range<usize>,
    what: &str,
    rep: &mut Reporter,
) -> Option<(Scope, Vec<std::ops::Range<usize>>)> {
    let mut ok = true;
    let mut paths: Vec<String> = Vec::new();
    let mut spans = Vec::new();
    for t in targets {
        if !t.get_ref().starts_with('/') {
            rep.error(
                t.span(),
                format!("target {:?} must be a path starting with '/'", t.get_ref()),
            );
            ok = false;
            continue;
        }
        match super::routes::request_path(t, rep) {
            Some(p) if paths.contains(&p) => {}
            Some(p) => {
                paths.push(p);
                spans.push(t.span());
            }
            None => ok = false,
        }
    }
    let methods = match ms {
        Some(m) if m.get_ref().is_empty() => {
            rep.error(
                m.span(),
                "`methods` is empty, so the action applies to nothing; omit it for the default \
                 (POST, PUT, PATCH, DELETE)",
            );
            None
        }
        Some(m) => methods(m, rep).map(Some),
        None if keeps_from_app => Some(Some(WRITE_METHODS.to_vec())),
        None => Some(None),
    };
    let scope = Scope {
        targets: paths,
        methods: methods?,
    };
    if keeps_from_app && scope.catches_page_views() {
        rep.warn(
            ms.as_ref().map_or(at, |m| m.span()),
            format!(
                "{what}: its action catches GET requests on every path, so a tagged link to any \
                 page (a newsletter's) is kept from the app; set `targets`, or leave GET out of \
                 `methods`"
            ),
        );
    }
    ok.then_some((scope, spans))
}

/// Take the inline `limit = {...}` out of a table and read it on its own, so a misspelt key in
/// it is reported without hiding its other problems (or the rest of the table's).
fn take_limit<'a>(
    v: Spanned<DeValue<'a>>,
    rep: &mut Reporter,
) -> (Spanned<DeValue<'a>>, Option<Spanned<LimitFile>>) {
    let span = v.span();
    match v.into_inner() {
        DeValue::Table(mut t) => {
            let limit = t.remove("limit").and_then(|l| {
                let lspan = l.span();
                de::<LimitFile>(l, rep).map(|lf| Spanned::new(lspan, lf))
            });
            (table_value(span, t), limit)
        }
        other => (Spanned::new(span, other), None),
    }
}

fn to_timestamp(
    d: &Spanned<toml::value::Datetime>,
    field: &str,
    rep: &mut Reporter,
) -> Option<jiff::Timestamp> {
    let dt = d.get_ref();
    if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
        rep.error(
            d.span(),
            format!(
                "{field} must be a full date-time with a UTC offset, e.g. 2026-06-01T09:00:00Z"
            ),
        );
        return None;
    }
    match dt.to_string().parse::<jiff::Timestamp>() {
        Ok(t) => Some(t),
        Err(e) => {
            rep.error(d.span(), format!("invalid {field}: {e}"));
            None
        }
    }
}

fn launch(
    lf: LaunchFile,
    span: std::ops::Range<usize>,
    names: &mut BTreeMap<String, usize>,
    tag_owner: &mut BTreeMap<String, String>,
    (has_ingest, has_queue): (bool, bool),
    fleet_declared: bool,
    rep: &mut Reporter,
) -> Option<Launch<LimitSpec, ()>> {
    let mut ok = true;
    let name = check_name("launch", &lf.name, rep);
    if let Some(first) = names.get(lf.name.get_ref()) {
        let (line, col) = rep.file.locate(*first);
        rep.error(
            lf.name.span(),
            format!(
                "duplicate launch name {:?} (first at {line}:{col})",
                lf.name.get_ref()
            ),
        );
        ok = false;
    } else {
        names.insert(lf.name.get_ref().clone(), lf.name.span().start);
    }
    let mut tags = Vec::new();
    if lf.tags.get_ref().is_empty() {
        rep.error(lf.tags.span(), "a launch needs at least one tag");
        ok = false;
    }
    for t in lf.tags.get_ref() {
        let v = t.get_ref().trim();
        if v.is_empty() || v.len() > 128 || v.chars().any(|c| c.is_control() || c.is_whitespace()) {
            rep.error(t.span(), format!("invalid campaign tag {:?}", t.get_ref()));
            ok = false;
            continue;
        }
        let lower = v.to_lowercase();
        let owner = lf.name.get_ref().clone();
        if let Some(prev) = tag_owner.insert(lower.clone(), owner.clone())
            && prev != owner
        {
            rep.error(
                t.span(),
                format!("tag {v:?} already belongs to launch {prev:?}"),
            );
            ok = false;
        }
        if !tags.contains(&lower) {
            tags.push(lower);
        }
    }
    let starts = lf.starts.as_ref().map(|d| to_timestamp(d, "starts", rep));
    let ends = lf.ends.as_ref().map(|d| to_timestamp(d, "ends", rep));
    if let (Some(Some(s)), Some(Some(e)), Some(ed)) = (starts, ends, &lf.ends)
        && e <= s
    {
        rep.error(ed.span(), "`ends` must be after `starts`");
        ok = false;
    }
    ok &= !matches!(starts, Some(None)) && !matches!(ends, Some(None));
    if let Some(r) = &lf.expected_peak_rps
        && !(*r.get_ref() > 0.0 && r.get_ref().is_finite())
    {
        rep.error(r.span(), "expected_peak_rps must be a positive number");
        ok = false;
    }
    let action = lf.action.map_or(LaunchAction::Divert, Into::into);
    let keeps = action != LaunchAction::Pass;
    let what = format!("launch {:?}", lf.name.get_ref());
    let scope = scope(&lf.targets, &lf.methods, keeps, span.clone(), &what, rep);
    ok &= scope.is_some();
    if action == LaunchAction::Divert && !has_ingest {
        rep.error(
            span.start..span.start,
            if lf.action.is_some() {
                "launch action \"divert\" needs `ingest_upstream`"
            } else {
                "launch action \"divert\" (the default when `action` is not set) needs \
                 `ingest_upstream`"
            },
        );
        ok = false;
    }
    if action == LaunchAction::Queue && !has_queue {
        rep.error(
            span.start..span.start,
            "launch action \"queue\" needs `ingest_queue`",
        );
        ok = false;
    }
    let limit = match &lf.limit {
        Some(l) => {
            let default_name = format!("campaign-{}", lf.name.get_ref());
            let spec = compile_limit(
                l.get_ref(),
                l.span(),
                Some(&default_name),
                fleet_declared,
                rep,
            );
            ok &= spec.is_some();
            spec
        }
        None => None,
    };
    let name = name?;
    ok.then(|| Launch {
        name: Arc::clone(&name),
        tags,
        owner: lf.owner,
        ticket: lf.ticket,
        starts: starts.flatten(),
        ends: ends.flatten(),
        expected_volume: lf.expected_volume,
        expected_peak_rps: lf.expected_peak_rps.map(|r| r.into_inner()),
        target_spans: scope.as_ref().map_or_else(Vec::new, |(_, s)| s.clone()),
        scope: scope.map_or_else(every_request, |(s, _)| s),
        new_fields: lf.new_fields,
        action,
        limit,
        name_span: lf.name.span(),
        counter: (),
    })
}

/// `seawall check` warnings that need the routes: launches whose window has ended, targets no
/// route can match, and a campaign limit far below the launch's own expected peak.
pub(super) fn warn_against_routes(
    c: &CampaignsSpec,
    routes: &[crate::routing::RouteSpec],
    now: jiff::Timestamp,
    rep: &mut Reporter,
) {
    for l in &c.launches {
        if let Some(end) = l.ends
            && end < now
        {
            rep.warn(
                l.name_span.clone(),
                format!(
                    "launch {:?} ended at {end}: its tags now count as unregistered; \
                     remove it or move `ends`",
                    l.name
                ),
            );
        }
        for (t, span) in l.scope.targets.iter().zip(&l.target_spans) {
            if !routes.iter().any(|r| r.path.matches(t)) {
                rep.warn(
                    span.clone(),
                    format!("target {t:?} matches no route: such requests get 404 before any campaign rule"),
                );
            }
        }
        if let (Some(limit), Some(expected)) = (&l.limit, l.expected_peak_rps) {
            let per_sec = limit.rate.count as f64 / limit.rate.per_secs as f64;
            let global = matches!(limit.key, KeySource::Global);
            if global && per_sec * 2.0 < expected {
                rep.warn(
                    l.name_span.clone(),
                    format!(
                        "launch {:?}: limit {} is far below expected_peak_rps {expected}: \
                         most of the expected traffic would be rejected with 429",
                        l.name, limit.rate
                    ),
                );
            }
        }
    }
}

impl From<UnregisteredActionFile> for UnregisteredAction {
    fn from(a: UnregisteredActionFile) -> Self {
        match a {
            UnregisteredActionFile::Divert => UnregisteredAction::Divert,
            UnregisteredActionFile::Queue => UnregisteredAction::Queue,
            UnregisteredActionFile::Pass => UnregisteredAction::Pass,
            UnregisteredActionFile::Reject => UnregisteredAction::Reject,
        }
    }
}

impl From<LaunchActionFile> for LaunchAction {
    fn from(a: LaunchActionFile) -> Self {
        match a {
            LaunchActionFile::Divert => LaunchAction::Divert,
            LaunchActionFile::Queue => LaunchAction::Queue,
            LaunchActionFile::Pass => LaunchAction::Pass,
            LaunchActionFile::Pause => LaunchAction::Pause,
        }
    }
}
