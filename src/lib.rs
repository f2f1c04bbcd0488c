//! Seawall: an edge reverse proxy on Pingora for the day marketing succeeds.
//!
//! A campaign nobody announced sends thousands of sign-ups at the core app; Seawall sits in
//! front of it with nginx-exact rate limits, CSP built from the security team's approved tags,
//! diversion of campaign-tagged traffic to an ingestion upstream, and hot reload.
//!
//! # Components
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the three TOML files: schema, located diagnostics, compilation into a [`snapshot::Snapshot`] |
//! | [`snapshot`] | the immutable live config; one `ArcSwap` store per reload |
//! | [`state`] | what lives across reloads: metrics, in-flight counts, readiness, reload record |
//! | [`routing`] | ordered first-match routes (host, path, methods) |
//! | [`client_ip`] | trusted-proxy `X-Forwarded-For` resolution |
//! | [`upstream`] | pools: round robin, timeouts, health checks |
//! | [`limits`] | compiled rate limits (the limiter builds on them) |
//! | [`csp`] | CSP sources, directives and policy header values |
//! | [`campaign`] | the campaign registry |
//! | [`proxy`] | `impl ProxyHttp`: thin dispatch |
//! | [`answers`] | responses Seawall writes itself (404, 502, 503, 504) |
//! | [`admin`] | `/metrics`, `/-/healthy`, `/-/ready`, `/-/config`, `POST /-/reload` |
//! | [`console`] | the incident console (`GET /`), `/-/status`, `/-/limits`: top rejected keys, ten minutes of history |
//! | [`reload`] | load, validate, swap or keep the old config |
//! | [`watch`] | reload triggers: file changes (notify) and SIGHUP |
//! | [`diff`] | what a reload changed; upstream pools it keeps |
//! | [`header_names`] | the names of the headers Seawall reads and sets, as constants |
//! | [`server`] | the Pingora server and its services |
//! | [`drain`] | client connections across a drain: a request still to come is answered |
//! | [`sd_notify`] | systemd readiness (`Type=notify`) |
//! | [`demo`] | the built-in demo origin, tag hosts and ingestion sink |
//!
//! # A request's way through
//!
//! ```text
//! new_ctx              ctx.snap = state.snapshot.load_full()        (one config per request)
//! request_filter       request id; client ip (trusted proxies); route = first match
//!                      -> 404 / 503 (in-flight cap) answered here, via answers::build
//! upstream_peer        the route's pool, round robin over healthy servers
//! upstream_request_filter  X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Request-Id
//! response_filter      X-Request-Id on the upstream's response
//! fail_to_proxy        502 / 504 via answers::build (these skip response_filter)
//! logging              metrics and the JSON access line, the one place for both
//! ```
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod answers;
pub mod campaign;
pub mod client_ip;
pub mod config;
pub mod console;
pub mod csp;
pub mod demo;
pub mod diff;
pub mod drain;
pub mod header_names;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod sd_notify;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod upstream;
pub mod watch;
