//! The admin listener: `/metrics`, `/-/healthy`, `/-/ready`, `/-/config`, `POST /-/reload`,
//! and the incident console's page and JSON ([`crate::console`]).
//!
//! It runs as its own Pingora service on `admin_listen` (loopback by default), never on a
//! public listener.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::csp::CspChoice;
use crate::state::State;

pub struct Admin {
    pub state: Arc<State>,
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

fn text(status: StatusCode, body: &str) -> Response<Vec<u8>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes().to_vec(),
    )
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(&v).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

/// Length-independent comparison, so the token cannot be guessed byte by byte from timings.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Admin {
    fn config_json(&self) -> serde_json::Value {
        let snap = self.state.snapshot.load();
        let status = self.state.status();
        let routes: Vec<_> = snap
            .routes
            .iter()
            .map(|r| {
                json!({
                    "name": &*r.name,
                    "upstream": &*r.upstream.name,
                    "csp": match &r.csp { CspChoice::Off => "off".to_string(), CspChoice::Policy(p) => p.name.to_string() },
                    "max_inflight": r.max_inflight,
                    "limits": r.limits.iter().map(|l| json!({
                        "name": &*l.name,
                        "key": l.key.to_string(),
                        "rate": l.rate.to_string(),
                        "burst": l.burst,
                        "nodelay": l.nodelay,
                        "delay": l.delay,
                        "dry_run": l.dry_run,
                        "status": l.status.as_u16(),
                        "max_keys": l.max_keys.get(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let upstreams: Vec<_> = snap
            .upstreams
            .values()
            .map(|u| {
                json!({
                    "name": &*u.name,
                    "servers": u.servers.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "healthy_servers": u.healthy_count(),
                    "max_inflight": u.max_inflight,
                })
            })
            .collect();
        json!({
            "generation": status.generation,
            "loaded_at": status.loaded_at.to_string(),
            "files": snap.files,
            "last_reload": status.last_reload.as_ref().map(|r| json!({
                "ok": r.ok,
                "error": if r.errors.is_empty() { None } else { Some(r.errors.join("\n")) },
                "errors": r.errors,
                "at": r.at,
            })),
            "needs_restart": status.needs_restart,
            "last_changes": status.last_changes,
            "warnings": snap.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "routes": routes,
            "upstreams": upstreams,
        })
    }

    async fn reload(&self, session: &ServerSession) -> Response<Vec<u8>> {
        let token = self.state.snapshot.load().admin_token.clone();
        if let Some(token) = token {
            let given = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !given.is_some_and(|g| same_secret(g.trim().as_bytes(), token.as_bytes())) {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "a valid Authorization: Bearer token is required\n",
                );
                r.headers_mut().insert(
                    http::header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static("Bearer"),
                );
                return r;
            }
        }
        let state = self.state.clone();
        let result = tokio::task::spawn_blocking(move || crate::reload::reload(&state)).await;
        match result {
            Ok(Ok(generation)) => json_reply(StatusCode::OK, {
                let st = self.state.status();
                json!({ "ok": true, "generation": generation,
                            "needs_restart": st.needs_restart, "changes": st.last_changes })
            }),
            Ok(Err(diags)) => json_reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({ "ok": false,
                        "generation": self.state.status().generation,
                        "errors": diags.errors().map(ToString::to_string).collect::<Vec<_>>() }),
            ),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("reload failed: {e}\n"),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let allowed = match path.as_str() {
            "/metrics" | "/-/healthy" | "/-/ready" | "/-/config" => Method::GET,
            "/-/reload" => Method::POST,
            p if crate::console::serves(p) => Method::GET,
            _ => {
                return text(
                    StatusCode::NOT_FOUND,
                    "not found: try / (the console), /-/status, /-/limits, /metrics, /-/healthy, \
                     /-/ready, /-/config, POST /-/reload\n",
                );
            }
        };
        if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, &format!("use {allowed}\n"));
            if let Ok(v) = http::HeaderValue::from_str(allowed.as_str()) {
                r.headers_mut().insert(http::header::ALLOW, v);
            }
            return r;
        }
        // The body of a POST carries nothing we use; read it so the connection can be reused.
        let _ = session.drain_request_body().await;
        match path.as_str() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.state.metrics.render(),
            ),
            "/-/healthy" => text(StatusCode::OK, "ok\n"),
            "/-/ready" => {
                if self.state.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: listeners are starting\n",
                    )
                }
            }
            "/-/config" => json_reply(StatusCode::OK, self.config_json()),
            p if crate::console::serves(p) => crate::console::respond(&self.state, p),
            _ => self.reload(session).await,
        }
    }
}
