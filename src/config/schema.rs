//! The file schema: what the three TOML files may say, exactly as written.
//!
//! Kept apart from the compiled model ([`crate::snapshot`]) so the files can stay friendly (strings
//! for rates and durations) while the model holds only checked, ready-to-use values. Every struct
//! denies unknown fields: a misspelt key (`brust = 10`) is an error with its location, never a
//! silently ignored setting. Values that need checking keep their [`Spanned`] location.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

// ---------------------------------------------------------------- seawall.toml

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    #[serde(default)]
    pub listen: Vec<S<String>>,
    #[serde(default)]
    pub tls: Vec<S<TlsFile>>,
    pub admin_listen: Option<S<String>>,
    pub admin_token_file: Option<S<String>>,
    #[serde(default)]
    pub trusted_proxies: Vec<S<String>>,
    pub threads: Option<S<i64>>,
    pub csp_file: Option<S<String>>,
    pub campaigns_file: Option<S<String>>,
    /// Seawall addition: the JSON access log: `true` (stdout, the default), `false`, or a file.
    pub access_log: Option<S<AccessLogFile>>,
    /// Seawall addition: where Pingora's upgrade socket and pid file live.
    pub upgrade_sock: Option<S<String>>,
    pub pid_file: Option<S<String>>,
    /// Seawall addition: how long SIGTERM waits before stopping the runtimes (default 5s).
    pub grace_period: Option<S<String>>,
    /// A larger request body gets 413 (a route may set its own).
    pub max_body: Option<S<String>>,
    /// The client limits of `crate::client_limits` (nginx's `client_header_timeout`,
    /// `keepalive_timeout`, `large_client_header_buffers`).
    pub header_timeout: Option<S<String>>,
    pub keepalive_timeout: Option<S<String>>,
    pub max_header_bytes: Option<S<String>>,
}

/// `access_log = true | false | "path"`.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "access_log must be true (stdout), false, or a file path"
)]
pub enum AccessLogFile {
    On(bool),
    Path(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub listen: S<String>,
    pub cert: S<String>,
    pub key: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamFile {
    pub servers: S<Vec<S<String>>>,
    pub connect_timeout: Option<S<String>>,
    pub read_timeout: Option<S<String>>,
    pub write_timeout: Option<S<String>>,
    pub health_check: Option<S<HealthCheckFile>>,
    pub max_inflight: Option<S<i64>>,
    /// Seawall additions: TLS to the servers, its server name, HTTP/2.
    pub tls: Option<bool>,
    pub sni: Option<S<String>>,
    pub http2: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    pub path: S<String>,
    pub interval: Option<S<String>>,
    pub timeout: Option<S<String>>,
}

/// A route without its `limits`: those are read one by one so each bad limit is reported.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub name: S<String>,
    pub host: Option<S<String>>,
    pub path: Option<S<String>>,
    pub path_prefix: Option<S<String>>,
    pub path_regex: Option<S<String>>,
    pub methods: Option<S<Vec<S<String>>>>,
    /// One of `upstream` and `queue` (checked when the route is compiled).
    pub upstream: Option<S<String>>,
    pub queue: Option<S<String>>,
    pub csp: Option<S<String>>,
    pub max_inflight: Option<S<i64>>,
    pub max_body: Option<S<String>>,
}

/// `[[routes.limits]]`, and the inline `limit = {...}` of campaigns (where `name` is optional).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitFile {
    pub name: Option<S<String>>,
    pub key: S<String>,
    pub rate: S<String>,
    pub burst: Option<S<i64>>,
    pub nodelay: Option<bool>,
    pub delay: Option<S<i64>>,
    pub dry_run: Option<bool>,
    pub status: Option<S<i64>>,
    pub max_keys: Option<S<i64>>,
    #[serde(default)]
    pub exempt: Vec<S<String>>,
    /// `local` (default) or `fleet`: decided in Redis for every instance (needs `[fleet]`).
    pub scope: Option<S<ScopeFile>>,
}

/// A limit's `scope`.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ScopeFile {
    Local,
    Fleet,
}

impl From<ScopeFile> for crate::limits::Scope {
    fn from(s: ScopeFile) -> Self {
        match s {
            ScopeFile::Local => crate::limits::Scope::Local,
            ScopeFile::Fleet => crate::limits::Scope::Fleet,
        }
    }
}

// ---------------------------------------------------------------- csp.toml

/// `csp.toml` without `tags`, which are read by hand: a tag mixes fixed keys with directive names.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CspHead {
    pub default_policy: Option<S<String>>,
    pub report_path: Option<S<String>>,
    /// Seawall addition: response content types that get the header (default `["text/html"]`).
    pub content_types: Option<Vec<S<String>>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CspModeFile {
    Enforce,
    ReportOnly,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamCspFile {
    Replace,
    Keep,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub mode: Option<CspModeFile>,
    pub upstream_csp: Option<UpstreamCspFile>,
    pub nonce: Option<bool>,
    #[serde(default)]
    pub tags: Vec<S<String>>,
    pub report_only_policy: Option<S<String>>,
    #[serde(default)]
    pub directives: BTreeMap<S<String>, Vec<S<String>>>,
}

// ---------------------------------------------------------------- campaigns.toml

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignsHead {
    #[serde(default)]
    pub tag_sources: Vec<S<String>>,
    pub ingest_upstream: Option<S<String>>,
    /// A `[queues.NAME]` of seawall.toml, for `action = "queue"`.
    pub ingest_queue: Option<S<String>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnregisteredActionFile {
    Divert,
    Queue,
    Pass,
    Reject,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LaunchActionFile {
    Divert,
    Queue,
    Pass,
    Pause,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnregisteredFile {
    pub action: Option<UnregisteredActionFile>,
    #[serde(default)]
    pub targets: Vec<S<String>>,
    pub methods: Option<S<Vec<S<String>>>>,
    pub limit: Option<S<LimitFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchFile {
    pub name: S<String>,
    pub tags: S<Vec<S<String>>>,
    pub owner: Option<String>,
    pub ticket: Option<String>,
    pub starts: Option<S<toml::value::Datetime>>,
    pub ends: Option<S<toml::value::Datetime>>,
    pub expected_volume: Option<String>,
    pub expected_peak_rps: Option<S<f64>>,
    #[serde(default)]
    pub targets: Vec<S<String>>,
    pub methods: Option<S<Vec<S<String>>>>,
    #[serde(default)]
    pub new_fields: Vec<String>,
    pub action: Option<LaunchActionFile>,
    pub limit: Option<S<LimitFile>>,
}
