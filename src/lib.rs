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
//! | [`config`] | the three TOML files: schema, located diagnostics, compilation into a [`snapshot::Spec`] |
//! | [`snapshot`] | the immutable live config, built from a spec in one step; one `ArcSwap` store per reload |
//! | [`state`] | what lives across reloads: metrics, in-flight counts, limiter and campaign state, readiness |
//! | [`admission`] | the decision for each request: report endpoint, route, campaign, limits, caps, divert |
//! | [`routing`] | ordered first-match routes (host, path, methods) |
//! | [`client_ip`] | trusted-proxy `X-Forwarded-For` resolution |
//! | [`upstream`] | pools: round robin, timeouts, health checks |
//! | [`limits`] | limit specs, the nginx-exact limiter, keys, state across reloads |
//! | [`csp`] | CSP sources, policy header values, nonces, the report endpoint |
//! | [`campaign`] | the campaign registry, request classification, observed rates |
//! | [`canary`] | canary releases: sticky split, window judge, rollback and freeze |
//! | [`proxy`] | `impl ProxyHttp`: reads a request's facts, acts on the admission decision |
//! | [`ctx`] | a request's own state across Pingora's phases, and how it ended |
//! | [`answers`] | responses Seawall writes itself (404, 429, 502, 503, 504), and why |
//! | [`access_log`] | the JSON access line |
//! | [`admin`] | `/metrics`, `/-/healthy`, `/-/ready`, `/-/config`, `POST /-/reload` |
//! | [`config_view`] | the JSON of `/-/config`: the config in force, as compiled |
//! | [`console`] | the incident console (`GET /`), `/-/status`, `/-/limits`: top rejected keys, ten minutes of history |
//! | [`reload`] | load, validate, build, swap, or keep the old config |
//! | [`watch`] | reload triggers: file changes (notify) and SIGHUP |
//! | [`diff`] | what a reload changed, for the log and `/-/config` |
//! | [`headers`] | the names of the headers Seawall reads and sets, and small parsers of their values |
//! | [`metrics`] | every metric family, registered once per instance |
//! | [`logging`] | diagnostics on stderr, and the once-a-second log throttle |
//! | [`server`] | the Pingora server and its services; why a start failed |
//! | [`drain`] | client connections across a drain: a request still to come is answered |
//! | [`fleet`] | limits shared by every instance, decided in Redis; fail modes; heartbeats |
//! | [`sd_notify`] | systemd readiness (`Type=notify`) |
//! | [`demo`] | the built-in demo origin, tag hosts and ingestion sink |
//!
//! # A request's way through
//!
//! ```text
//! new_ctx              ctx.snap = state.snapshot.load_full()        (one config per request)
//! request_filter       request id; facts = (peer, TLS, method, host, path, query, headers)
//!                      admission::admit(state, snap, facts, now):
//!                        client ip (trusted proxies)
//!                        -> report endpoint (csp::endpoint serves it)
//!                        -> route: routing::find, first match            -> 404
//!                        -> campaign::classify: launch / unregistered    -> 503 paused or rejected
//!                        -> limits: the campaign's, then the route's     -> 429 (+ Retry-After)
//!                             (one nginx decision; a reject charges none; a delay waits here)
//!                        -> in-flight caps: route, then upstream         -> 503 (+ Retry-After)
//!                        -> divert to the ingestion upstream, or the route's upstream
//!                      Seawall's own answers (answers::build) carry the route's CSP
//! upstream_peer        the chosen pool, round robin over healthy servers
//! upstream_request_filter  X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Request-Id,
//!                      X-Seawall-Campaign
//! response_filter      X-Request-Id, RateLimit headers, csp::apply (policy on HTML; nonce
//!                      rewriting in response_body_filter)
//! fail_to_proxy        Reason::from_error -> 502 / 503 / 504 via answers::build (a diverted
//!                      request's failure is a 503, never the app)
//! logging              metrics and the JSON access line, the one place for both
//! ```
//!
//! # Where a new feature goes
//!
//! A decision about a request is a step of [`admission::admit`] (a new [`admission::Verdict`]
//! or a field of [`admission::Pass`]); its config is a `src/config/*.rs` file that compiles
//! into a spec type owned by the feature's module; state that must outlive a reload lives in
//! [`state::State`] and is bound into the snapshot by [`snapshot::build`]; what it counts is
//! counted once, in admission or in `logging`.
#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod answers;
pub mod background;
pub mod campaign;
pub mod canary;
pub mod client_ip;
pub mod client_limits;
pub mod config;
pub mod config_view;
pub mod console;
pub mod csp;
pub mod ctx;
pub mod demo;
pub mod diff;
pub mod drain;
pub mod enqueue;
pub mod fleet;
pub mod headers;
pub mod json_line;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod queue;
pub mod reload;
pub mod routing;
pub mod sd_notify;
pub mod server;
pub mod snapshot;
pub mod state;
pub mod unreadable;
pub mod upstream;
pub mod watch;
