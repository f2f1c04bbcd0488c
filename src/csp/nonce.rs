//! Stamping the response's nonce on the `<script>` tags the origin marked, as the body streams.
//!
//! The origin marks scripts it vouches for with the placeholder `nonce="__SEAWALL_NONCE__"`;
//! Seawall replaces the placeholder with the response's fresh nonce (the same one it puts in the
//! header). Unmarked scripts are left alone: stamping every `<script>` would bless an injected
//! one too. The rewriting is lol_html's streaming parser, chunk by chunk, with a memory limit.

use std::sync::Arc;

use bytes::Bytes;
use lol_html::send::{HtmlRewriter, Settings};
use lol_html::{MemorySettings, element};
use parking_lot::Mutex;

/// What an origin writes where the nonce goes.
pub const PLACEHOLDER: &str = "__SEAWALL_NONCE__";

/// lol_html's buffers for one response may not grow past this; a page whose single tag is
/// larger than this is passed on unrewritten from that point (and the event logged).
pub const MEMORY_LIMIT: usize = 1 << 20;

type Sink = Box<dyn FnMut(&[u8]) + Send>;

/// Behind a mutex only so the request context stays `Sync`, as Pingora requires; one request's
/// body filter is the only user, so the lock is never contended.
pub struct NonceRewriter {
    rewriter: Mutex<Option<HtmlRewriter<'static, Sink>>>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl NonceRewriter {
    pub fn new(nonce: String) -> NonceRewriter {
        let out = Arc::new(Mutex::new(Vec::with_capacity(16 * 1024)));
        let sink_out = out.clone();
        let sink: Sink = Box::new(move |chunk: &[u8]| sink_out.lock().extend_from_slice(chunk));
        let selector = format!("script[nonce=\"{PLACEHOLDER}\"]");
        let settings = Settings::new_send()
            .with_memory_settings(MemorySettings::new().with_max_allowed_memory_usage(MEMORY_LIMIT))
            .append_element_content_handler(element!(selector, move |el| {
                el.set_attribute("nonce", &nonce)?;
                Ok(())
            }));
        NonceRewriter {
            rewriter: Mutex::new(Some(HtmlRewriter::new(settings, sink))),
            out,
        }
    }

    /// Feed one body chunk (and the end of the body); returns what is ready to send. After a
    /// rewriting error the rest of the body passes through as it is.
    pub fn feed(&mut self, chunk: Option<&Bytes>, end: bool) -> Bytes {
        let mut passthrough = None;
        let rewriter = self.rewriter.get_mut();
        if let Some(r) = rewriter.as_mut() {
            if let Some(c) = chunk
                && let Err(e) = r.write(c)
            {
                tracing::warn!(error = %e, "nonce rewriting stopped; the rest of the page passes unchanged");
                *rewriter = None;
                passthrough = chunk.cloned();
            }
        } else {
            passthrough = chunk.cloned();
        }
        if end
            && let Some(r) = rewriter.take()
            && let Err(e) = r.end()
        {
            tracing::warn!(error = %e, "nonce rewriting failed at the end of the page");
        }
        let mut out = std::mem::take(&mut *self.out.lock());
        if let Some(p) = passthrough {
            out.extend_from_slice(&p);
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&str]) -> String {
        let mut r = NonceRewriter::new("N0NCE".into());
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let end = i == chunks.len() - 1;
            out.extend_from_slice(&r.feed(Some(&Bytes::from(c.to_string())), end));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn stamps_only_marked_scripts_even_across_chunks() {
        let html = run(&[
            "<html><script nonce=\"__SEAWALL_",
            "NONCE__\" src=\"/a.js\"></script><script src=\"/b.js\"></script>",
            "<script nonce=\"other\"></script><p>__SEAWALL_NONCE__</p></html>",
        ]);
        assert_eq!(
            html,
            "<html><script nonce=\"N0NCE\" src=\"/a.js\"></script><script src=\"/b.js\"></script>\
             <script nonce=\"other\"></script><p>__SEAWALL_NONCE__</p></html>"
        );
    }
}
