//! `[queues.NAME]` of seawall.toml: durable queues of whole requests (CONFIG.md, "Queues").

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::main_file::Head;
use super::{Reporter, check_name, de, int_in, list_names, resolve, table_value, values};
use crate::queue::{AcceptedAnswer, QueueSpec, RetrySpec, StoreKind};

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    store: Option<S<StoreName>>,
    path: Option<S<String>>,
    max_bytes: Option<S<String>>,
    max_body: Option<S<String>>,
    deliver_to: S<String>,
    rate: S<String>,
    max_inflight: Option<S<i64>>,
    max_attempts: Option<S<i64>>,
    max_age: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum StoreName {
    Spool,
    Redis,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryFile {
    initial: Option<S<String>>,
    max: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptedFile {
    status: Option<S<i64>>,
    body: Option<S<String>>,
    content_type: Option<S<String>>,
    redirect: Option<S<String>>,
}

pub const DEFAULT_MAX_BYTES: u64 = 512 << 20;
pub const DEFAULT_MAX_BODY: u64 = 64 << 10;
pub const DEFAULT_MAX_INFLIGHT: u32 = 4;
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(72 * 3600);
pub const DEFAULT_RETRY: RetrySpec = RetrySpec {
    initial: Duration::from_secs(1),
    max: Duration::from_secs(300),
};

/// Read `[queues]` into `head.queues` (needs `head.upstreams`, so it runs after them).
pub(super) fn compile(
    value: Spanned<DeValue<'_>>,
    has_fleet: bool,
    base_dir: &Path,
    head: &mut Head,
    rep: &mut Reporter,
) {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        rep.error(span, "`queues` must be a table of [queues.NAME] sections");
        return;
    };
    let mut paths: BTreeMap<std::path::PathBuf, String> = BTreeMap::new();
    for (key, v) in table {
        let name_s = Spanned::new(key.span(), key.get_ref().to_string());
        head.declared_queues.insert(name_s.get_ref().clone());
        let name = check_name("queue", &name_s, rep);
        let vspan = v.span();
        let (retry_v, accepted_v, rest) = match v.into_inner() {
            DeValue::Table(mut t) => (
                t.remove("retry"),
                t.remove("accepted"),
                table_value(vspan, t),
            ),
            other => (None, None, Spanned::new(vspan, other)),
        };
        let retry = retry_v.map(|r| (r.span(), de::<RetryFile>(r, rep)));
        let accepted = accepted_v.map(|a| (a.span(), de::<AcceptedFile>(a, rep)));
        let Some(q) = de::<QueueFile>(rest, rep) else {
            continue;
        };
        let Some(name) = name else { continue };
        if let Some(spec) = queue(
            &name, q, retry, accepted, has_fleet, base_dir, head, &mut paths, rep,
        ) {
            head.queues.insert(name, Arc::new(spec));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn queue(
    name: &Arc<str>,
    q: QueueFile,
    retry: Option<(std::ops::Range<usize>, Option<RetryFile>)>,
    accepted: Option<(std::ops::Range<usize>, Option<AcceptedFile>)>,
    has_fleet: bool,
    base_dir: &Path,
    head: &Head,
    paths: &mut BTreeMap<std::path::PathBuf, String>,
    rep: &mut Reporter,
) -> Option<QueueSpec> {
    let mut ok = true;
    let store = match q.store.as_ref().map(|s| (*s.get_ref(), s.span())) {
        Some((StoreName::Redis, span)) => {
            if !has_fleet {
                rep.error(
                    span,
                    "store = \"redis\" needs a [fleet] section (the Redis the instances share)",
                );
                ok = false;
            }
            if let Some(p) = &q.path {
                rep.warn(p.span(), "path is not used with store = \"redis\"");
            }
            Some(StoreKind::Redis)
        }
        _ => {
            let rel = q
                .path
                .as_ref()
                .map_or_else(|| format!("spool/{name}"), |p| p.get_ref().clone());
            let path = resolve(base_dir, &rel);
            let at = q.path.as_ref().map_or(0..0, |p| p.span());
            if rel.trim().is_empty() {
                rep.error(at, "a queue's path must not be empty");
                ok = false;
                None
            } else if let Some(other) = paths.get(&path) {
                rep.error(
                    at,
                    format!(
                        "spool path {} is already used by queue {other:?}",
                        path.display()
                    ),
                );
                ok = false;
                None
            } else {
                paths.insert(path.clone(), name.to_string());
                Some(StoreKind::Spool { path })
            }
        }
    };
    let size = |v: &Option<S<String>>, default: u64, rep: &mut Reporter| match v {
        Some(s) => values::size(s.get_ref())
            .map_err(|e| rep.error(s.span(), e))
            .ok(),
        None => Some(default),
    };
    let max_bytes = size(&q.max_bytes, DEFAULT_MAX_BYTES, rep);
    let max_body = size(&q.max_body, DEFAULT_MAX_BODY, rep);
    if let (Some(b), Some(mb), Some(s)) = (max_bytes, max_body, &q.max_body)
        && mb > b
    {
        rep.error(s.span(), format!("max_body ({mb} bytes) is larger than max_bytes ({b} bytes): no request could be queued"));
        ok = false;
    }
    let deliver_to = match head.upstreams.get(q.deliver_to.get_ref().as_str()) {
        Some(u) => Some(u.clone()),
        None => {
            if !head.declared_upstreams.contains(q.deliver_to.get_ref()) {
                rep.error(
                    q.deliver_to.span(),
                    format!(
                        "deliver_to names unknown upstream {:?} (defined: {})",
                        q.deliver_to.get_ref(),
                        list_names(head.declared_upstreams.iter().map(String::as_str))
                    ),
                );
            }
            None
        }
    };
    let rate = values::rate(q.rate.get_ref())
        .map_err(|e| rep.error(q.rate.span(), e))
        .ok();
    let max_inflight = q
        .max_inflight
        .as_ref()
        .map_or(Some(DEFAULT_MAX_INFLIGHT), |m| {
            int_in::<u32>(m, "max_inflight", 1, 10_000, rep)
        });
    let max_attempts = q
        .max_attempts
        .as_ref()
        .map_or(Some(DEFAULT_MAX_ATTEMPTS), |m| {
            int_in::<u32>(m, "max_attempts", 1, 1_000, rep)
        });
    let duration = |v: &Option<S<String>>, default: Duration, rep: &mut Reporter| match v {
        Some(d) => values::duration(d.get_ref())
            .map_err(|e| rep.error(d.span(), e))
            .ok(),
        None => Some(default),
    };
    let max_age = duration(&q.max_age, DEFAULT_MAX_AGE, rep);
    let retry = match retry {
        None => Some(DEFAULT_RETRY),
        Some((_, None)) => None,
        Some((_, Some(r))) => {
            let initial = duration(&r.initial, DEFAULT_RETRY.initial, rep);
            let max = duration(
                &r.max,
                DEFAULT_RETRY.max.max(initial.unwrap_or_default()),
                rep,
            );
            match (initial, max) {
                (Some(i), Some(m)) if m < i => {
                    let at = r.max.as_ref().map_or(0..0, |m| m.span());
                    rep.error(at, "retry.max must not be below retry.initial");
                    None
                }
                (Some(initial), Some(max)) => Some(RetrySpec { initial, max }),
                _ => None,
            }
        }
    };
    let accepted = match accepted {
        None => Some(AcceptedAnswer::default()),
        Some((_, None)) => None,
        Some((span, Some(a))) => accepted_answer(span, a, rep),
    };
    let (
        Some(store),
        Some(max_bytes),
        Some(max_body),
        Some(deliver_to),
        Some(rate),
        Some(max_inflight),
        Some(max_attempts),
        Some(max_age),
        Some(retry),
        Some(accepted),
        true,
    ) = (
        store,
        max_bytes,
        max_body,
        deliver_to,
        rate,
        max_inflight,
        max_attempts,
        max_age,
        retry,
        accepted,
        ok,
    )
    else {
        return None;
    };
    Some(QueueSpec {
        name: name.clone(),
        store,
        max_bytes,
        max_body,
        deliver_to,
        rate_mrps: rate.milli_per_sec.get(),
        rate_text: rate.to_string(),
        max_inflight,
        retry,
        max_attempts,
        max_age,
        accepted,
    })
}

fn accepted_answer(
    span: std::ops::Range<usize>,
    a: AcceptedFile,
    rep: &mut Reporter,
) -> Option<AcceptedAnswer> {
    if let Some(r) = &a.redirect {
        if a.status.is_some() || a.body.is_some() || a.content_type.is_some() {
            rep.error(
                span,
                "accepted takes either status/body/content_type or redirect (a 303), not both",
            );
            return None;
        }
        let target = r.get_ref();
        let ok = target.starts_with('/')
            || target.starts_with("https://")
            || target.starts_with("http://");
        return match HeaderValue::from_str(target) {
            Ok(location) if ok => Some(AcceptedAnswer::Redirect { location }),
            _ => {
                rep.error(
                    r.span(),
                    format!("accepted.redirect {target:?} must be a path starting with '/' or an http(s) URL"),
                );
                None
            }
        };
    }
    let status = match &a.status {
        Some(s) => int_in::<u16>(s, "accepted.status", 200, 299, rep)
            .and_then(|c| StatusCode::from_u16(c).ok()),
        None => Some(StatusCode::ACCEPTED),
    };
    let content_type = match &a.content_type {
        Some(c) => match HeaderValue::from_str(c.get_ref()) {
            Ok(v) if !c.get_ref().trim().is_empty() => Some(v),
            _ => {
                rep.error(c.span(), format!("invalid content_type {:?}", c.get_ref()));
                None
            }
        },
        None => Some(HeaderValue::from_static("text/plain; charset=utf-8")),
    };
    let body = match &a.body {
        Some(b) => Bytes::from(b.get_ref().clone()),
        None => Bytes::new(),
    };
    Some(AcceptedAnswer::Status {
        status: status?,
        body,
        content_type: content_type?,
    })
}

/// A `queue = "NAME"` (on a route, or `ingest_queue` in campaigns.toml) that must exist.
pub(super) fn lookup(
    head: &Head,
    q: &Spanned<String>,
    rep: &mut Reporter,
    what: &str,
) -> Option<Arc<str>> {
    let name = q.get_ref().as_str();
    if let Some((k, _)) = head.queues.get_key_value(name) {
        return Some(k.clone());
    }
    if !head.declared_queues.contains(name) {
        rep.error(
            q.span(),
            format!(
                "{what} names unknown queue {name:?} (seawall.toml defines: {})",
                list_names(head.declared_queues.iter().map(String::as_str))
            ),
        );
    }
    None
}
