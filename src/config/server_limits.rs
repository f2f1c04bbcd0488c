//! `[server] header_timeout`, `keepalive_timeout`, `max_header_bytes`: checked here, kept in
//! [`ClientLimits`].

use std::time::Duration;

use toml::Spanned;

use super::{Reporter, values};
use crate::client_limits::{self, ClientLimits, MAX_HEADER_BYTES_LIMIT};

/// Below this a header timeout cuts off real clients on a slow link (nginx's default is 60 s).
const MIN_HEADER_TIMEOUT: Duration = Duration::from_millis(100);
/// nginx's own smallest `large_client_header_buffers` is 1 KiB; less breaks ordinary browsers.
const MIN_HEADER_BYTES: usize = 1024;

/// The limits as written, or `None` after reporting what is wrong with them.
pub(super) fn compile(
    header_timeout: Option<&Spanned<String>>,
    keepalive_timeout: Option<&Spanned<String>>,
    max_header_bytes: Option<&Spanned<String>>,
    rep: &mut Reporter,
) -> Option<ClientLimits> {
    let d = ClientLimits::default();
    let header_timeout = match header_timeout {
        None => Some(d.header_timeout),
        Some(v) => match values::duration(v.get_ref()) {
            Ok(t) if t < MIN_HEADER_TIMEOUT => {
                rep.error(v.span(), "header_timeout must be at least 100ms");
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                rep.error(v.span(), e);
                None
            }
        },
    };
    let keepalive_timeout = match keepalive_timeout {
        None => Some(d.keepalive_timeout),
        Some(v) => match values::duration(v.get_ref()) {
            Ok(t) if t.subsec_nanos() != 0 => {
                rep.error(
                    v.span(),
                    "keepalive_timeout must be whole seconds (Pingora counts it in seconds)",
                );
                None
            }
            Ok(t) => Some(t),
            Err(e) => {
                rep.error(v.span(), e);
                None
            }
        },
    };
    let max_header_bytes = match max_header_bytes {
        None => Some(d.max_header_bytes),
        Some(v) => match client_limits::parse_size(v.get_ref()) {
            Ok(n) if !(MIN_HEADER_BYTES..=MAX_HEADER_BYTES_LIMIT).contains(&n) => {
                rep.error(
                    v.span(),
                    format!(
                        "max_header_bytes must be between 1KiB and 1MiB - 1 byte \
                         (Pingora's own bound), not {n} bytes"
                    ),
                );
                None
            }
            Ok(n) => Some(n),
            Err(e) => {
                rep.error(v.span(), e);
                None
            }
        },
    };
    Some(ClientLimits {
        header_timeout: header_timeout?,
        keepalive_timeout: keepalive_timeout?,
        max_header_bytes: max_header_bytes?,
    })
}
