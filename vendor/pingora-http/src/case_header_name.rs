// Copyright 2026 Cloudflare, Inc.
//
// Licensed under the Apache License, Version 2.0 (the "License");
// you may not use this file except in compliance with the License.
// You may obtain a copy of the License at
//
// http://www.apache.org/licenses/LICENSE-2.0
//
// Unless required by applicable law or agreed to in writing, software
// distributed under the License is distributed on an "AS IS" BASIS,
// WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
// See the License for the specific language governing permissions and
// limitations under the License.

use crate::*;
use bytes::Bytes;
use http::header;
use http::header::InvalidHeaderName;

#[derive(Debug, Clone)]
pub struct CaseHeaderName(Repr);

// Seawall: a name whose case is its `HeaderName`'s own is kept as that `HeaderName`. Cloning
// one made by `HeaderName::from_static` costs nothing, where the copy into `Bytes` that this
// used to be cost an allocation (and a second one at its first clone).
#[derive(Debug, Clone)]
enum Repr {
    Bytes(Bytes),
    Name(HeaderName),
}

impl From<Bytes> for CaseHeaderName {
    fn from(b: Bytes) -> Self {
        CaseHeaderName(Repr::Bytes(b))
    }
}

impl CaseHeaderName {
    pub fn new(name: String) -> Self {
        Bytes::from(name).into()
    }
}

impl CaseHeaderName {
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Bytes(b) => b,
            Repr::Name(n) => n.as_str().as_bytes(),
        }
    }

    pub fn from_slice(buf: &[u8]) -> Self {
        Bytes::copy_from_slice(buf).into()
    }
}

/// A trait that converts into case-sensitive header names.
pub trait IntoCaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName;

    /// Seawall: the `HeaderName`, and the case it was given in. A name given as bytes or a
    /// string has its case (parsed once); a `HeaderName` carries none ([`NameCase::Neutral`]) and
    /// is used as it is, not parsed again from its own bytes.
    fn into_names(self) -> std::result::Result<(HeaderName, NameCase), InvalidHeaderName>
    where
        Self: Sized,
    {
        let case = self.into_case_header_name();
        let name = HeaderName::from_bytes(case.as_slice())?;
        Ok((name, NameCase::Given(case)))
    }
}

/// Seawall: the case a header name was given in.
pub enum NameCase {
    /// As bytes or a string: this case is kept on the wire.
    Given(CaseHeaderName),
    /// As a `HeaderName`: no case of its own; written as the header's other names are.
    Neutral,
}

impl IntoCaseHeaderName for CaseHeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        self
    }
}

impl IntoCaseHeaderName for String {
    fn into_case_header_name(self) -> CaseHeaderName {
        Bytes::from(self).into()
    }
}

impl IntoCaseHeaderName for &'static str {
    fn into_case_header_name(self) -> CaseHeaderName {
        Bytes::from_static(self.as_bytes()).into()
    }
}

impl IntoCaseHeaderName for HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_name(self)
    }

    fn into_names(self) -> std::result::Result<(HeaderName, NameCase), InvalidHeaderName> {
        Ok((self, NameCase::Neutral))
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_name(self.clone())
    }

    fn into_names(self) -> std::result::Result<(HeaderName, NameCase), InvalidHeaderName> {
        Ok((self.clone(), NameCase::Neutral))
    }
}

impl IntoCaseHeaderName for Bytes {
    fn into_case_header_name(self) -> CaseHeaderName {
        self.into()
    }
}

pub(crate) fn titled_header_name(header_name: HeaderName) -> CaseHeaderName {
    match titled_header_name_str(&header_name) {
        Some(s) => Bytes::from_static(s.as_bytes()).into(),
        None => CaseHeaderName(Repr::Name(header_name)),
    }
}

/// Seawall: whether `case` is `name` in lowercase (as a `HeaderName` holds it).
pub(crate) fn is_lowercase(name: &HeaderName, case: &[u8]) -> bool {
    case == name.as_str().as_bytes()
}

/// Seawall: the title case of a (lowercase) name: its first letter and each one after a `-`
/// in upper case (`x-request-id` -> `X-Request-Id`), except the few names conventionally
/// spelled otherwise.
fn title_exception(name: &HeaderName) -> Option<&'static str> {
    match *name {
        header::ETAG => Some("ETag"),
        header::WWW_AUTHENTICATE => Some("WWW-Authenticate"),
        _ => None,
    }
}

fn title_byte(lower: &[u8], i: usize) -> u8 {
    if i == 0 || lower[i - 1] == b'-' {
        lower[i].to_ascii_uppercase()
    } else {
        lower[i]
    }
}

/// Seawall: whether `case` is the title case of `name`.
pub(crate) fn is_title_case(name: &HeaderName, case: &[u8]) -> bool {
    if let Some(t) = title_exception(name) {
        return case == t.as_bytes();
    }
    let lower = name.as_str().as_bytes();
    case.len() == lower.len() && (0..lower.len()).all(|i| case[i] == title_byte(lower, i))
}

/// Seawall: writes the title case of `name` to `buf`.
pub(crate) fn put_title_case(name: &HeaderName, buf: &mut impl bytes::BufMut) {
    if let Some(t) = title_exception(name) {
        return buf.put_slice(t.as_bytes());
    }
    let lower = name.as_str().as_bytes();
    let mut chunk = [0u8; 64];
    let mut start = 0;
    while start < lower.len() {
        let end = (start + chunk.len()).min(lower.len());
        for i in start..end {
            chunk[i - start] = title_byte(lower, i);
        }
        buf.put_slice(&chunk[..end - start]);
        start = end;
    }
}

/// Seawall: the title case of `name`, as a `CaseHeaderName`.
pub(crate) fn title_case_name(name: &HeaderName) -> CaseHeaderName {
    if let Some(t) = title_exception(name) {
        return Bytes::from_static(t.as_bytes()).into();
    }
    let mut v = Vec::with_capacity(name.as_str().len());
    put_title_case(name, &mut v);
    Bytes::from(v).into()
}

/// Seawall: `name` in lowercase, as a `CaseHeaderName` (no copy).
pub(crate) fn lowercase_name(name: &HeaderName) -> CaseHeaderName {
    CaseHeaderName(Repr::Name(name.clone()))
}

pub(crate) fn titled_header_name_str(header_name: &HeaderName) -> Option<&'static str> {
    Some(match *header_name {
        header::ACCEPT_RANGES => "Accept-Ranges",
        header::AGE => "Age",
        header::CACHE_CONTROL => "Cache-Control",
        header::CONNECTION => "Connection",
        header::CONTENT_TYPE => "Content-Type",
        header::CONTENT_ENCODING => "Content-Encoding",
        header::CONTENT_LENGTH => "Content-Length",
        header::DATE => "Date",
        header::TRANSFER_ENCODING => "Transfer-Encoding",
        header::HOST => "Host",
        header::SERVER => "Server",
        header::SET_COOKIE => "Set-Cookie",
        // TODO: add more const header here to map to their titled case
        // TODO: automatically upper case the first letter?
        _ => {
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_case_header_name() {
        assert_eq!("FoO".into_case_header_name().as_slice(), b"FoO");
        assert_eq!("FoO".to_string().into_case_header_name().as_slice(), b"FoO");
        assert_eq!(header::SERVER.into_case_header_name().as_slice(), b"Server");
    }

    #[test]
    fn into_names_keeps_a_header_name_and_parses_the_rest() {
        let custom = HeaderName::from_static("x-request-id");
        let (name, case) = custom.clone().into_names().unwrap();
        assert_eq!(name, custom);
        assert!(matches!(case, NameCase::Neutral));
        let (name, case) = (&header::SERVER).into_names().unwrap();
        assert_eq!(name, header::SERVER);
        assert!(matches!(case, NameCase::Neutral));
        let (name, case) = "X-Foo".into_names().unwrap();
        assert_eq!(name.as_str(), "x-foo");
        assert!(matches!(case, NameCase::Given(c) if c.as_slice() == b"X-Foo"));
        assert!("bad name".into_names().is_err());
    }

    #[test]
    fn title_case() {
        let t = |n: &str| {
            let name = HeaderName::from_bytes(n.as_bytes()).unwrap();
            let mut v = vec![];
            put_title_case(&name, &mut v);
            assert_eq!(title_case_name(&name).as_slice(), &v[..]);
            assert!(is_title_case(&name, &v));
            String::from_utf8(v).unwrap()
        };
        assert_eq!(t("x-request-id"), "X-Request-Id");
        assert_eq!(t("etag"), "ETag");
        assert_eq!(t("content-security-policy"), "Content-Security-Policy");
        assert_eq!(t("-x--y"), "-X--Y");
        let long = format!("x-{}", "ab-".repeat(40));
        assert_eq!(t(&long), format!("X-{}", "Ab-".repeat(40)));
        assert!(!is_title_case(&header::ETAG, b"Etag"));
        assert!(!is_title_case(&header::HOST, b"host"));
        assert!(is_lowercase(&header::HOST, b"host"));
        assert!(!is_lowercase(&header::HOST, b"Host"));
    }
}
