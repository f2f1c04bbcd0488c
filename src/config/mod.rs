//! Config loading: read the three files, check them, compile them into one [`Spec`] (which
//! [`crate::snapshot::build`] turns into the live snapshot).
//!
//! Three stages, each reporting every problem it finds before the next runs:
//! 1. parse: TOML syntax, with recovery, so several syntax errors show at once;
//! 2. schema: each section and each array entry is deserialized on its own ([`schema`], with
//!    `deny_unknown_fields`), so a bad route does not hide a bad upstream;
//! 3. meaning: names that must exist, rates, durations, networks, regexes, CSP sources, then
//!    compilation into the ready-to-use model.
//!
//! Nothing here panics on user input; the result is a snapshot or the full list of problems.

mod campaigns_file;
mod canary;
mod csp_file;
pub mod diag;
mod fleet;
mod limits;
mod main_file;
mod queues;
mod routes;
pub mod schema;
mod server;
mod server_limits;
mod upstreams;
pub mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diag::{Diagnostic, Diagnostics, Reporter, Severity, SourceFile};

use crate::snapshot::{FileDigest, Settings, Spec};

/// A successful load: the compiled spec plus its warnings.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Spec,
    pub diagnostics: Diagnostics,
}

/// Load, validate and compile `seawall.toml` and the two files it names.
pub fn load(main_path: &Path) -> Result<Loaded, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut syntax = SyntaxErrors::default();
    let mut digests = Vec::new();
    let Some(main) = read_file(main_path, &mut diags, &mut digests) else {
        return Err(diags);
    };
    let base_dir = main_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let main_doc = parse_doc(&main, &mut diags, &mut syntax);
    let head = main_file::compile_head(
        main_doc,
        &base_dir,
        &mut Reporter {
            file: &main,
            diags: &mut diags,
        },
    );

    let csp = match &head.csp_file {
        Some(p) => {
            let file = read_named(&main, p, &base_dir, &mut diags, &mut digests);
            file.map(|f| {
                let doc = parse_doc(&f, &mut diags, &mut syntax);
                csp_file::compile(
                    doc,
                    &mut Reporter {
                        file: &f,
                        diags: &mut diags,
                    },
                )
            })
        }
        None => Some(Default::default()),
    };
    let campaigns_src = head
        .campaigns_file
        .as_ref()
        .and_then(|p| read_named(&main, p, &base_dir, &mut diags, &mut digests));
    let campaigns = match (&head.campaigns_file, &campaigns_src) {
        (Some(_), Some(f)) => {
            let doc = parse_doc(f, &mut diags, &mut syntax);
            Some(campaigns_file::compile(
                doc,
                &head,
                &mut Reporter {
                    file: f,
                    diags: &mut diags,
                },
            ))
        }
        (Some(_), None) => None,
        (None, _) => Some(Some(Default::default())),
    };
    let campaigns = campaigns.flatten();
    // `None` when the CSP file could not be read (already reported at `csp_file`): routes then
    // skip their policy checks rather than call every policy unknown.
    let routes = routes::compile_routes(
        &head,
        csp.as_ref(),
        &mut Reporter {
            file: &main,
            diags: &mut diags,
        },
    );
    if let (Some(c), Some(f)) = (&campaigns, &campaigns_src) {
        campaigns_file::warn_against_routes(
            c,
            &routes,
            jiff::Timestamp::now(),
            &mut Reporter {
                file: f,
                diags: &mut diags,
            },
        );
    }
    let csp = csp.unwrap_or_default();
    syntax.drop_cascades(&mut diags);
    diags.sort(&digests.iter().map(|d| d.path.as_str()).collect::<Vec<_>>());
    if diags.has_errors() {
        return Err(diags);
    }
    let (Some(process), Some(campaigns)) = (head.process, campaigns) else {
        return Err(diags);
    };
    let warnings = diags.warnings().map(ToString::to_string).collect();
    Ok(Loaded {
        spec: Spec {
            settings: Settings {
                process,
                upstreams: head.upstreams,
                trusted: head.trusted,
                csp,
                access_log: head.access_log,
                admin_token: head.admin_token,
                fleet: head.fleet,
                queues: head.queues,
                files: digests,
                warnings,
            },
            routes,
            campaigns,
        },
        diagnostics: diags,
    })
}

fn read_file(
    path: &Path,
    diags: &mut Diagnostics,
    digests: &mut Vec<FileDigest>,
) -> Option<SourceFile> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => {
            digests.push(FileDigest {
                path: name.clone(),
                sha256: hex::encode(Sha256::digest(&bytes)),
            });
            match String::from_utf8(bytes) {
                Ok(text) => Some(SourceFile::new(name, text)),
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    let text = String::from_utf8_lossy(e.as_bytes()).into_owned();
                    let f = SourceFile::new(name, text);
                    diags.push(
                        &f,
                        at..at,
                        Severity::Error,
                        "file is not valid UTF-8".into(),
                    );
                    None
                }
            }
        }
        Err(e) => {
            diags.push_file(&name, Severity::Error, format!("cannot read file: {e}"));
            None
        }
    }
}

/// Read a file named by a key of the main file; a failure is reported at that key.
fn read_named(
    main: &SourceFile,
    rel: &Spanned<String>,
    base_dir: &Path,
    diags: &mut Diagnostics,
    digests: &mut Vec<FileDigest>,
) -> Option<SourceFile> {
    let path = resolve(base_dir, rel.get_ref());
    if let Err(e) = std::fs::metadata(&path) {
        diags.push(
            main,
            rel.span(),
            Severity::Error,
            format!("cannot read {}: {e}", path.display()),
        );
        return None;
    }
    read_file(&path, diags, digests)
}

/// Paths in the main file are relative to its directory.
pub fn resolve(base_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// Where the syntax errors are. The parser recovers by putting a placeholder where a value was
/// broken (`threads = 2 3` reads as the string "2 3", `x = tru` as `true`); a later complaint
/// about that placeholder ("expected an integer") would only mislead, so on a line that has a
/// syntax error only the syntax errors are kept. A file with syntax errors gets no warnings
/// either: a broken table header can hide whole sections ("no [[routes]]").
#[derive(Default)]
struct SyntaxErrors {
    /// Indices into `Diagnostics::items` of the syntax errors themselves.
    items: Vec<usize>,
    /// (file, line) of each.
    lines: Vec<(Arc<str>, usize)>,
}

impl SyntaxErrors {
    fn drop_cascades(&self, diags: &mut Diagnostics) {
        let mut i = 0;
        diags.items.retain(|d| {
            let keep = self.items.contains(&i)
                || !self.lines.iter().any(|(f, l)| {
                    *f == d.file && (*l == d.line || d.severity == Severity::Warning)
                });
            i += 1;
            keep
        });
    }
}

/// Parse with recovery: every syntax error is reported; whatever parsed is still checked.
fn parse_doc<'a>(
    file: &'a SourceFile,
    diags: &mut Diagnostics,
    syntax: &mut SyntaxErrors,
) -> DeTable<'a> {
    let (doc, errors) = DeTable::parse_recoverable(&file.text);
    let mut bare_words = Vec::new();
    for e in errors {
        let span = e.span().unwrap_or(0..0);
        let mut msg = tidy(e.message());
        let text = file.text.get(span.clone()).unwrap_or_default();
        if msg == "duplicate key" {
            msg = format!("duplicate key `{text}`");
        } else if msg == "invalid basic string, expected `\"`" {
            msg = "unterminated string, expected a closing `\"` on the same line".into();
        } else if msg.starts_with("invalid float, expected `inf`")
            || msg.starts_with("invalid float, expected `nan`")
        {
            // `ingest_upstream = ingest` is an unquoted string, not a misspelt `inf`.
            msg = "string values must be quoted, expected literal string".into();
            bare_words.push(span.clone());
        } else if msg.starts_with("string values must be quoted")
            && text.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
        {
            // `3OO` may be a mistyped number as much as an unquoted string (`1s`).
            msg = format!("`{text}` is not a number, and a string value must be quoted");
        } else if msg.starts_with("invalid boolean") {
            msg = format!("invalid value `{text}`: a boolean is true or false, a string is quoted");
            bare_words.push(span.clone());
        }
        syntax.items.push(diags.items.len());
        syntax
            .lines
            .push((file.name.clone(), file.locate(span.start).0));
        diags.push(file, span, Severity::Error, msg);
    }
    let mut doc = doc.into_inner();
    let fix = Placeholders {
        text: &file.text,
        bare_words,
    };
    fix.table(&mut doc);
    doc
}

/// Undo two recoveries of the parser that would mislead later checks:
/// - a value it could not read at all (`a == 1`) comes back as `0` with an empty span at the
///   start of the file: give it its key's place, so a complaint about it lands on that line;
/// - an unquoted word starting like `inf`, `nan`, `true` or `false` comes back as that float or
///   boolean: read it as the string it is, as the parser does for other unquoted words.
struct Placeholders<'a> {
    text: &'a str,
    bare_words: Vec<std::ops::Range<usize>>,
}

impl<'a> Placeholders<'a> {
    fn table(&self, table: &mut DeTable<'a>) {
        for (k, v) in table.iter_mut() {
            self.value(v, k.span());
        }
    }

    fn value(&self, v: &mut Spanned<DeValue<'a>>, parent: std::ops::Range<usize>) {
        let span = if v.span().is_empty() {
            parent
        } else {
            v.span()
        };
        let bare = self.bare_words.contains(&span)
            && matches!(v.get_ref(), DeValue::Float(_) | DeValue::Boolean(_));
        let inner = if bare {
            DeValue::String(self.text.get(span.clone()).unwrap_or_default().into())
        } else {
            std::mem::replace(v.get_mut(), DeValue::Boolean(false))
        };
        *v = Spanned::new(span.clone(), inner);
        match v.get_mut() {
            DeValue::Table(t) => self.table(t),
            DeValue::Array(items) => {
                for item in items.iter_mut() {
                    self.value(item, span.clone());
                }
            }
            _ => {}
        }
    }
}

/// Deserialize one value into a schema type, reporting every schema problem in it.
///
/// serde stops at the first error, so for a table this strips unknown keys first (each reported
/// with the list of known ones), then on a type error reports it, removes the offending key and
/// tries again. A value that still deserializes is returned even though errors were reported:
/// the load fails anyway, and checking the rest finds the remaining problems in the same run.
fn de<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Option<T> {
    let span = value.span();
    let (mut table, fields) = match (value.into_inner(), struct_fields::<T>()) {
        (DeValue::Table(t), Some(fields)) => (t, fields),
        (other, _) => return de_once(Spanned::new(span, other), rep),
    };
    let unknown: Vec<_> = table
        .keys()
        .filter(|k| !fields.contains(&k.get_ref().as_ref()))
        .cloned()
        .collect();
    for k in unknown {
        rep.error(
            k.span(),
            format!(
                "unknown field `{}`, expected one of {}",
                k.get_ref(),
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        table.remove(k.get_ref().as_ref());
    }
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..=fields.len() {
        let attempt = Spanned::new(span.clone(), DeValue::Table(table.clone()));
        let err = match T::deserialize(ValueDeserializer::from(attempt)) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let msg = tidy(err.message());
        if removed
            .iter()
            .any(|k| msg == format!("missing field `{k}`"))
        {
            return None;
        }
        let at = err.span().unwrap_or(span.clone());
        rep.error(at.clone(), msg);
        let culprit = table
            .iter()
            .find(|(k, v)| {
                let (ks, vs) = (k.span(), v.span());
                (ks.start <= at.start && at.start < ks.end.max(ks.start + 1))
                    || (vs.start <= at.start && at.start < vs.end.max(vs.start + 1))
            })
            .map(|(k, _)| k.get_ref().to_string());
        match culprit {
            Some(k) => {
                table.remove(k.as_str());
                removed.push(k);
            }
            None => return None,
        }
    }
    None
}

fn de_once<T: DeserializeOwned>(value: Spanned<DeValue<'_>>, rep: &mut Reporter) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            rep.error(e.span().unwrap_or(span), tidy(e.message()));
            None
        }
    }
}

/// The field names of a `#[derive(Deserialize)]` struct, or `None` for other types. serde hands
/// them to `deserialize_struct`; a deserializer that only records them is enough to learn them.
fn struct_fields<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    use serde::de::{Deserializer, Error as _, Visitor};

    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    struct Probe<'a>(&'a mut Option<&'static [&'static str]>);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop::custom(""))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A table value from a table, for [`de`].
fn table_value<'a>(span: std::ops::Range<usize>, t: DeTable<'a>) -> Spanned<DeValue<'a>> {
    Spanned::new(span, DeValue::Table(t))
}

/// One line per message, without serde's trailing newline, and in TOML's words rather than
/// Rust's ("expected i64" is "expected an integer", "struct LimitFile" is "a table").
fn tidy(msg: &str) -> String {
    let mut m = msg.trim().replace('\n', " ");
    if let Some(i) = m.find("expected struct ") {
        m.replace_range(i.., "expected a table");
    }
    for (rust, toml) in [
        ("expected i64", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected an array"),
        ("invalid type: sequence", "invalid type: array"),
        ("expected a map", "expected a table"),
        ("invalid type: map", "invalid type: table"),
        ("invalid type: floating point", "invalid type: float"),
        ("unknown variant", "unknown value"),
        (
            "expected a TOML datetime",
            "expected a date-time, written without quotes, e.g. 2026-06-01T09:00:00Z",
        ),
    ] {
        m = m.replace(rust, toml);
    }
    m
}

/// Names of routes, upstreams, limits, policies, tags and launches become metric labels and log
/// fields: keep them to a safe alphabet.
fn check_name(kind: &str, name: &Spanned<String>, rep: &mut Reporter) -> Option<Arc<str>> {
    let n = name.get_ref();
    let ok = n.len() <= 64
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Some(Arc::from(n.as_str()))
    } else {
        rep.error(
            name.span(),
            format!(
                "invalid {kind} name {n:?}: use letters, digits, '_', '.', '-' \
                 (starting with a letter or digit, at most 64)"
            ),
        );
        None
    }
}

/// `i64` from TOML into a bounded integer, with a message naming the field.
fn int_in<T: TryFrom<i64>>(
    v: &Spanned<i64>,
    field: &str,
    min: i64,
    max: i64,
    rep: &mut Reporter,
) -> Option<T> {
    let x = *v.get_ref();
    if x < min || x > max {
        rep.error(
            v.span(),
            format!("{field} must be between {min} and {max}, not {x}"),
        );
        return None;
    }
    T::try_from(x).ok()
}

/// `methods = [...]`: HTTP methods, in any case. `None` when one is invalid (reported).
fn methods(ms: &Spanned<Vec<Spanned<String>>>, rep: &mut Reporter) -> Option<Vec<http::Method>> {
    let mut out = Vec::new();
    let mut ok = true;
    for m in ms.get_ref() {
        let upper = m.get_ref().to_ascii_uppercase();
        match http::Method::from_bytes(upper.as_bytes()) {
            Ok(method) if !upper.is_empty() => {
                if !out.contains(&method) {
                    out.push(method);
                }
            }
            _ => {
                rep.error(m.span(), format!("invalid HTTP method {:?}", m.get_ref()));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// "a, b, c" for error messages that list what is defined.
fn list_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
