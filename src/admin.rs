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
use subtle::ConstantTimeEq;

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

/// Why an admin request was not done; each becomes its answer (`AdminError::response`).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "not found: try / (the console), /-/status, /-/limits, /metrics, /-/healthy, /-/ready, \
         /-/config, /-/queues, POST /-/reload, \
         POST /-/canary/ROUTE/rollback, /-/queues/NAME/dead, POST /-/queues/NAME/pause, \
         /resume, /dead/redrive"
    )]
    NotFound,
    #[error("use {0}")]
    MethodNotAllowed(Method),
    #[error("a valid Authorization: Bearer token is required")]
    Unauthorized,
    #[error(
        "a POST from a page of another origin ({0}) is refused: the admin API takes POSTs from \
         its own console or from clients that send no Origin (curl)"
    )]
    CrossOrigin(String),
    #[error("reload rejected")]
    Reload(#[from] crate::reload::ReloadError),
    #[error("reload failed: {0}")]
    Internal(String),
}

impl AdminError {
    fn response(&self, generation: u64) -> Response<Vec<u8>> {
        let mut r = match self {
            AdminError::Reload(e) => {
                return json_reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "ok": false, "generation": generation, "errors": e.lines() }),
                );
            }
            AdminError::NotFound => text(StatusCode::NOT_FOUND, &format!("{self}\n")),
            AdminError::MethodNotAllowed(_) => {
                text(StatusCode::METHOD_NOT_ALLOWED, &format!("{self}\n"))
            }
            AdminError::Unauthorized => text(StatusCode::UNAUTHORIZED, &format!("{self}\n")),
            AdminError::CrossOrigin(_) => text(StatusCode::FORBIDDEN, &format!("{self}\n")),
            AdminError::Internal(_) => {
                text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{self}\n"))
            }
        };
        let header = match self {
            AdminError::MethodNotAllowed(m) => http::HeaderValue::from_str(m.as_str())
                .ok()
                .map(|v| (http::header::ALLOW, v)),
            AdminError::Unauthorized => Some((
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            )),
            _ => None,
        };
        if let Some((k, v)) = header {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

/// The POST endpoints need `Authorization: Bearer <token>` when a token is configured. The
/// comparison takes the same time whatever the bytes, so the token cannot be guessed byte by byte.
fn authorize(session: &ServerSession, token: Option<&str>) -> Result<(), AdminError> {
    let Some(token) = token else { return Ok(()) };
    let given = session
        .req_header()
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if bool::from(g.trim().as_bytes().ct_eq(token.as_bytes())) => Ok(()),
        _ => Err(AdminError::Unauthorized),
    }
}

/// A browser sends `Origin` with every cross-origin POST, and a page anywhere on the web can
/// send one to a loopback admin listener without a preflight (a "simple" request). So a POST
/// whose `Origin` is not this listener's own (`Host`) is refused, whether or not a token is
/// configured: the console's own POSTs carry its origin, curl and scripts send none.
fn same_origin(session: &ServerSession) -> Result<(), AdminError> {
    let req = session.req_header();
    let Some(origin) = req.headers.get(http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("?");
    let host = req
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a) if !host.is_empty() && a.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(AdminError::CrossOrigin(origin.to_string())),
    }
}

impl Admin {
    async fn reload(&self) -> Result<Response<Vec<u8>>, AdminError> {
        let state = self.state.clone();
        let generation = tokio::task::spawn_blocking(move || crate::reload::reload(&state))
            .await
            .map_err(|e| AdminError::Internal(e.to_string()))??;
        let st = self.state.status();
        Ok(json_reply(
            StatusCode::OK,
            json!({ "ok": true, "generation": generation,
                    "needs_restart": st.needs_restart, "changes": st.last_changes }),
        ))
    }

    async fn route(&self, session: &mut ServerSession) -> Result<Response<Vec<u8>>, AdminError> {
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let endpoint = Endpoint::parse(&path).ok_or(AdminError::NotFound)?;
        let allowed = endpoint.method();
        if method != allowed && !(allowed == Method::GET && method == Method::HEAD) {
            return Err(AdminError::MethodNotAllowed(allowed));
        }
        // Every POST changes something; dead letters with their bodies are leads' personal
        // data: both need the token when one is configured.
        let with_bodies = matches!(endpoint, Endpoint::QueueDead(_))
            && session
                .req_header()
                .uri
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "body=1" || p == "body=true"));
        if allowed == Method::POST {
            same_origin(session)?;
        }
        if allowed == Method::POST || with_bodies {
            authorize(session, self.state.snapshot.load().admin_token.as_deref())?;
        }
        // The body of a POST carries nothing we use; read it so the connection can be reused.
        let _ = session.drain_request_body().await;
        Ok(match endpoint {
            Endpoint::Metrics => {
                self.state.queues.refresh_gauges();
                reply(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    self.state.metrics.render(),
                )
            }
            Endpoint::Healthy => text(StatusCode::OK, "ok\n"),
            Endpoint::Ready => {
                if self.state.ready.load(Ordering::Acquire) {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: listeners are starting\n",
                    )
                }
            }
            Endpoint::Config => {
                let mut v = crate::config_view::config_json(&self.state);
                v["fleet"] = crate::config_view::fleet_json(&self.state).await;
                json_reply(StatusCode::OK, v)
            }
            Endpoint::Reload => return self.reload().await,
            Endpoint::CanaryRollback(route) => self.canary_rollback(route),
            Endpoint::Queues => json_reply(StatusCode::OK, self.state.queues.status_json()),
            Endpoint::QueueDead(q) => {
                queue_reply(self.state.queues.dead_json(q, with_bodies).await)
            }
            Endpoint::QueuePause(q) => queue_reply(self.state.queues.pause(q)),
            Endpoint::QueueResume(q) => queue_reply(self.state.queues.resume(q)),
            Endpoint::QueueRedrive(q) => queue_reply(self.state.queues.redrive(q).await),
            Endpoint::Console(p) => crate::console::respond(&self.state, p).await,
        })
    }

    fn canary_rollback(&self, route: &str) -> Response<Vec<u8>> {
        use crate::canary::RollbackError;
        let (already, rollback) = match self.state.canaries.rollback(route, self.state.wall_now()) {
            Ok(r) => (false, r),
            Err(RollbackError::AlreadyRolledBack(r)) => (true, r),
            Err(RollbackError::NoCanary) => {
                return text(
                    StatusCode::NOT_FOUND,
                    &format!("route {route:?} has no canary\n"),
                );
            }
        };
        json_reply(
            StatusCode::OK,
            json!({
                "route": route,
                "rolled_back": true,
                "already": already,
                "at": rollback.at.to_string(),
                "trigger": rollback.trigger.label(),
                "reason": rollback.reason,
            }),
        )
    }
}

/// A queue admin action's answer: 404 for an unknown queue, 500 for a store error.
fn queue_reply(
    r: Result<serde_json::Value, crate::queue::registry::AdminError>,
) -> Response<Vec<u8>> {
    use crate::queue::registry::AdminError as Q;
    match r {
        Ok(v) => json_reply(StatusCode::OK, v),
        Err(e @ Q::UnknownQueue(_)) => text(StatusCode::NOT_FOUND, &format!("{e}\n")),
        Err(e @ Q::Store(_)) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// The admin API's endpoints, by path.
enum Endpoint<'a> {
    Metrics,
    Healthy,
    Ready,
    Config,
    Reload,
    /// `POST /-/canary/ROUTE/rollback`.
    CanaryRollback(&'a str),
    /// `GET /-/queues`.
    Queues,
    /// `GET /-/queues/NAME/dead` (`?body=1`: with bodies, behind the token).
    QueueDead(&'a str),
    QueuePause(&'a str),
    QueueResume(&'a str),
    QueueRedrive(&'a str),
    /// The console's page, its assets, `/-/status` and `/-/limits` ([`crate::console`]).
    Console(&'a str),
}

impl<'a> Endpoint<'a> {
    fn parse(path: &'a str) -> Option<Endpoint<'a>> {
        Some(match path {
            "/metrics" => Endpoint::Metrics,
            "/-/healthy" => Endpoint::Healthy,
            "/-/ready" => Endpoint::Ready,
            "/-/config" => Endpoint::Config,
            "/-/reload" => Endpoint::Reload,
            "/-/queues" => Endpoint::Queues,
            p if crate::console::serves(p) => Endpoint::Console(p),
            _ => {
                // A name is one path segment.
                let name = |s: &'a str| (!s.is_empty() && !s.contains('/')).then_some(s);
                if let Some(rest) = path.strip_prefix("/-/canary/") {
                    return Some(Endpoint::CanaryRollback(name(
                        rest.strip_suffix("/rollback")?,
                    )?));
                }
                let rest = path.strip_prefix("/-/queues/")?;
                let (q, action) = rest.split_once('/')?;
                let q = name(q)?;
                match action {
                    "dead" => Endpoint::QueueDead(q),
                    "pause" => Endpoint::QueuePause(q),
                    "resume" => Endpoint::QueueResume(q),
                    "dead/redrive" => Endpoint::QueueRedrive(q),
                    _ => return None,
                }
            }
        })
    }

    /// The method the endpoint takes (a GET endpoint answers HEAD too).
    fn method(&self) -> Method {
        match self {
            Endpoint::Reload
            | Endpoint::CanaryRollback(_)
            | Endpoint::QueuePause(_)
            | Endpoint::QueueResume(_)
            | Endpoint::QueueRedrive(_) => Method::POST,
            _ => Method::GET,
        }
    }
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match self.route(session).await {
            Ok(r) => r,
            Err(e) => e.response(self.state.status().generation),
        }
    }
}
