//! A small, fast upstream for the load scenarios (not part of Seawall): every path answers 200
//! with the same `text/html` page of about `body_bytes` bytes (text/html so that Seawall adds
//! its CSP header), `/healthz` answers "ok". It counts what it served at `/__stats`.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

/// Serves on 127.0.0.1:`port` with `threads` tokio worker threads, until killed.
pub fn run(port: u16, threads: usize, body_bytes: usize) {
    let mut page =
        String::from("<!doctype html><html><head><title>load test</title></head><body><p>");
    while page.len() + 20 < body_bytes {
        page.push_str("lorem ipsum dolor ");
    }
    page.push_str("</p></body></html>\n");
    let page: &'static str = Box::leak(page.into_boxed_str());
    let served = Arc::new(AtomicU64::new(0));
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let router = Router::new()
                .route("/healthz", get(|| async { "ok\n" }))
                .route(
                    "/__stats",
                    get(|State(s): State<Arc<AtomicU64>>| async move {
                        format!("{{\"served\":{}}}\n", s.load(Ordering::Relaxed))
                    }),
                )
                .fallback(move |State(s): State<Arc<AtomicU64>>| async move {
                    s.fetch_add(1, Ordering::Relaxed);
                    Html(page)
                })
                .with_state(served);
            let l = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind");
            axum::serve(l, router).await.expect("serve");
        });
}
