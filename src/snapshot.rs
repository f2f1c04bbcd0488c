//! The whole live configuration as one immutable value, and the handle requests read it from.
//!
//! Each request takes the snapshot once (in `new_ctx`) and keeps that `Arc` to its end, so every
//! phase of a request sees one consistent config and a reload is a single `store`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::campaign::Campaigns;
use crate::client_ip::TrustedProxies;
use crate::config::diag::Diagnostic;
use crate::csp::CspConfig;
use crate::routing::Route;
use crate::upstream::Upstream;

/// Settings read once at start. A reload that changes them is reported as "needs restart".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSettings {
    pub listen: Vec<SocketAddr>,
    /// TLS listeners (HTTP/2 and HTTP/1.1 by ALPN).
    pub tls: Vec<TlsListener>,
    pub admin_listen: SocketAddr,
    pub threads: usize,
    pub upgrade_sock: PathBuf,
    pub pid_file: PathBuf,
    pub grace_period: Duration,
}

/// A `[[server.tls]]` listener. The certificate is loaded when the process starts; the digest
/// lets a reload notice that the files changed (which then needs a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub digest: String,
}

/// The sha256 of one loaded file, for `/-/config`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileDigest {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug)]
pub struct Snapshot {
    pub process: ProcessSettings,
    pub routes: Vec<Route>,
    pub upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    pub trusted: TrustedProxies,
    pub csp: CspConfig,
    pub campaigns: Campaigns,
    /// `[queues.NAME]`: specs only; the running queues (stores, workers) live in
    /// `crate::queue::Queues`, kept across reloads by name.
    pub queues: BTreeMap<Arc<str>, Arc<crate::queue::QueueSpec>>,
    pub access_log: bool,
    /// If set, POST admin endpoints require `Authorization: Bearer <token>`.
    pub admin_token: Option<String>,
    pub files: Vec<FileDigest>,
    /// Warnings from the load that produced this snapshot (shadowed routes and the like).
    pub warnings: Vec<Diagnostic>,
}

/// The one place the live snapshot is kept.
pub type Shared = Arc<ArcSwap<Snapshot>>;
