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

    /// Seawall: the `HeaderName` and its case. By default the case name is parsed; a
    /// `HeaderName` is used as it is, not parsed again from its own bytes (which for a custom
    /// name also allocated a copy).
    fn into_names(self) -> std::result::Result<(HeaderName, CaseHeaderName), InvalidHeaderName>
    where
        Self: Sized,
    {
        let case = self.into_case_header_name();
        let name = HeaderName::from_bytes(case.as_slice())?;
        Ok((name, case))
    }
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

    fn into_names(self) -> std::result::Result<(HeaderName, CaseHeaderName), InvalidHeaderName> {
        Ok((self.clone(), titled_header_name(self)))
    }
}

impl IntoCaseHeaderName for &HeaderName {
    fn into_case_header_name(self) -> CaseHeaderName {
        titled_header_name(self.clone())
    }

    fn into_names(self) -> std::result::Result<(HeaderName, CaseHeaderName), InvalidHeaderName> {
        Ok((self.clone(), titled_header_name(self.clone())))
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

/// Seawall: whether `case` is the case `name` is written in when no case is stored for it (the
/// titled form below, or the lowercase `HeaderName`), so that storing it is not needed.
pub(crate) fn is_canonical(name: &HeaderName, case: &CaseHeaderName) -> bool {
    case.as_slice() == titled_header_name_str(name).unwrap_or(name.as_str()).as_bytes()
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
        // Seawall: the other names browsers, nginx and common apps send in HTTP/1.1 (the case
        // map is only made for a name whose case differs from this table; see `HeaderCase`).
        header::ACCEPT => "Accept",
        header::ACCEPT_ENCODING => "Accept-Encoding",
        header::ACCEPT_LANGUAGE => "Accept-Language",
        header::ACCESS_CONTROL_ALLOW_ORIGIN => "Access-Control-Allow-Origin",
        header::AUTHORIZATION => "Authorization",
        header::CONTENT_DISPOSITION => "Content-Disposition",
        header::CONTENT_LANGUAGE => "Content-Language",
        header::CONTENT_RANGE => "Content-Range",
        header::CONTENT_SECURITY_POLICY => "Content-Security-Policy",
        header::CONTENT_SECURITY_POLICY_REPORT_ONLY => "Content-Security-Policy-Report-Only",
        header::COOKIE => "Cookie",
        header::ETAG => "ETag",
        header::EXPECT => "Expect",
        header::EXPIRES => "Expires",
        header::IF_MODIFIED_SINCE => "If-Modified-Since",
        header::IF_NONE_MATCH => "If-None-Match",
        header::LAST_MODIFIED => "Last-Modified",
        header::LINK => "Link",
        header::LOCATION => "Location",
        header::ORIGIN => "Origin",
        header::PRAGMA => "Pragma",
        header::RANGE => "Range",
        header::REFERER => "Referer",
        header::REFERRER_POLICY => "Referrer-Policy",
        header::RETRY_AFTER => "Retry-After",
        header::STRICT_TRANSPORT_SECURITY => "Strict-Transport-Security",
        header::UPGRADE => "Upgrade",
        header::UPGRADE_INSECURE_REQUESTS => "Upgrade-Insecure-Requests",
        header::USER_AGENT => "User-Agent",
        header::VARY => "Vary",
        header::WWW_AUTHENTICATE => "WWW-Authenticate",
        header::X_CONTENT_TYPE_OPTIONS => "X-Content-Type-Options",
        header::X_FRAME_OPTIONS => "X-Frame-Options",
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
        assert_eq!(case.as_slice(), b"x-request-id");
        let (name, case) = (&header::SERVER).into_names().unwrap();
        assert_eq!(name, header::SERVER);
        assert_eq!(case.as_slice(), b"Server");
        let (name, case) = "X-Foo".into_names().unwrap();
        assert_eq!(name.as_str(), "x-foo");
        assert_eq!(case.as_slice(), b"X-Foo");
        assert!("bad name".into_names().is_err());
    }
}
