//! Putting a policy on a response: which responses, which headers, and the origin's own CSP.

use base64::Engine;
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use super::{CspConfig, CspMode, Policy, UpstreamCsp};

pub const CSP: HeaderName = http::header::CONTENT_SECURITY_POLICY;
pub const CSP_REPORT_ONLY: HeaderName = http::header::CONTENT_SECURITY_POLICY_REPORT_ONLY;
pub const REPORTING_ENDPOINTS: HeaderName = HeaderName::from_static("reporting-endpoints");

/// A fresh 128-bit nonce, base64.
pub fn new_nonce() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

fn value_of(p: &Policy, secure: bool, nonce: Option<&str>) -> HeaderValue {
    let w = if secure { &p.secure } else { &p.plain };
    match (&w.nonce_parts, nonce) {
        (Some((prefix, suffix)), Some(n)) => HeaderValue::from_str(&format!("{prefix}{n}{suffix}"))
            .unwrap_or_else(|_| w.value.clone()),
        _ => w.value.clone(),
    }
}

/// The headers a response under `policy` carries, and the nonce they use (if any).
///
/// The policy goes out as `Content-Security-Policy` (or `-Report-Only` in `report-only` mode);
/// its `report_only_policy` companion as `Content-Security-Policy-Report-Only`. `nonce_ok =
/// false` (a body that cannot be rewritten) sends nonce policies without their nonce, never with
/// a placeholder. `secure` (an HTTPS page) adds `report-to` and one `Reporting-Endpoints` for
/// both policies; plain-HTTP pages report through `report-uri` only (see [`Policy::plain`]).
pub fn headers(
    policy: &Policy,
    nonce_ok: bool,
    secure: bool,
) -> (Vec<(HeaderName, HeaderValue)>, Option<String>) {
    let nonce = (policy.wants_nonce() && nonce_ok).then(new_nonce);
    let mut out = Vec::with_capacity(3);
    let name = match policy.mode {
        CspMode::Enforce => CSP,
        CspMode::ReportOnly => CSP_REPORT_ONLY,
    };
    out.push((name, value_of(policy, secure, nonce.as_deref())));
    if let Some(c) = &policy.report_only {
        out.push((CSP_REPORT_ONLY, value_of(c, secure, nonce.as_deref())));
    }
    if secure && let Some(v) = &policy.reporting_endpoints {
        out.push((REPORTING_ENDPOINTS, v.clone()));
    }
    (out, nonce)
}

/// Is this response one the policies apply to (by its content type)?
pub fn applies(cfg: &CspConfig, resp: &ResponseHeader) -> bool {
    let Some(essence) = crate::headers::media_type_of(&resp.headers) else {
        return false;
    };
    cfg.content_types
        .iter()
        .any(|t| t.eq_ignore_ascii_case(essence))
}

/// Put `headers` on an upstream response. `replace` drops the origin's own CSP headers first;
/// `keep` leaves them, so the browser enforces both (the intersection: it can only tighten).
pub fn put(
    resp: &mut ResponseHeader,
    policy: &Policy,
    headers: Vec<(HeaderName, HeaderValue)>,
) -> pingora::Result<()> {
    if policy.upstream_csp == UpstreamCsp::Replace {
        resp.remove_header(&CSP);
        resp.remove_header(&CSP_REPORT_ONLY);
    }
    for (k, v) in headers {
        if k == REPORTING_ENDPOINTS {
            resp.insert_header(k, v)?;
        } else {
            resp.append_header(k, v)?;
        }
    }
    Ok(())
}
