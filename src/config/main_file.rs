//! `seawall.toml`: its sections, each read by its own module ([`super::server`],
//! [`super::upstreams`], [`super::routes`] with [`super::limits`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::routes::{RawRoute, raw_routes};
use super::schema::ServerFile;
use super::server::server_settings;
use super::upstreams::upstreams;
use super::{Reporter, de};
use crate::client_ip::TrustedProxies;
use crate::snapshot::ProcessSettings;
use crate::upstream::Upstream;

/// Default `max_body`: 10 MiB, ten times nginx's 1 MiB `client_max_body_size` (sign-up forms
/// with an uploaded avatar are larger than 1 MiB; anything bigger is not a form).
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// Default admin listener: loopback only (CONFIG.md).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// What the main file says, with routes kept raw until the CSP policies they name are compiled.
pub(crate) struct Head {
    pub process: Option<ProcessSettings>,
    pub trusted: TrustedProxies,
    pub upstreams: BTreeMap<Arc<str>, Arc<Upstream>>,
    /// Every upstream name written, valid or not, so a route naming a broken upstream is not
    /// reported a second time as "unknown".
    pub declared_upstreams: BTreeSet<String>,
    pub csp_file: Option<Spanned<String>>,
    pub campaigns_file: Option<Spanned<String>>,
    pub access_log: crate::access_log::Destination,
    /// `[server] max_body`, the default of every route's.
    pub max_body: u64,
    pub admin_token: Option<String>,
    pub routes: Vec<RawRoute>,
    /// `[fleet]`, when written and valid.
    pub fleet: Option<crate::fleet::FleetSpec>,
    /// `[fleet]` is written (valid or not): a `scope = "fleet"` limit is then not reported again.
    pub fleet_declared: bool,
    pub queues: BTreeMap<Arc<str>, Arc<crate::queue::QueueSpec>>,
    /// Every queue name written, valid or not (as `declared_upstreams`).
    pub declared_queues: BTreeSet<String>,
}

pub(super) fn compile_head(doc: DeTable<'_>, base_dir: &Path, rep: &mut Reporter) -> Head {
    let mut head = Head {
        process: None,
        trusted: TrustedProxies::default(),
        upstreams: BTreeMap::new(),
        declared_upstreams: BTreeSet::new(),
        csp_file: None,
        campaigns_file: None,
        access_log: crate::access_log::Destination::Stdout,
        max_body: DEFAULT_MAX_BODY,
        admin_token: None,
        routes: Vec::new(),
        fleet: None,
        fleet_declared: false,
        queues: BTreeMap::new(),
        declared_queues: BTreeSet::new(),
    };
    let mut server = None;
    let mut queues = None;
    let has_fleet = doc.contains_key("fleet");
    for (key, value) in doc {
        match key.get_ref().as_ref() {
            "server" => server = Some(value),
            "upstreams" => upstreams(value, &mut head, rep),
            "routes" => head.routes = raw_routes(value, rep),
            "queues" => queues = Some(value),
            "fleet" => {
                head.fleet_declared = true;
                head.fleet = super::fleet::compile(value, base_dir, rep);
            }
            other => rep.error(
                key.span(),
                format!(
                    "unknown section {other:?} (expected server, upstreams, routes, queues, fleet)"
                ),
            ),
        }
    }
    if let Some(q) = queues {
        super::queues::compile(q, has_fleet, base_dir, &mut head, rep);
    }
    match server {
        Some(v) => {
            // A `listen` that is written but unreadable is reported as such, not as "no listeners".
            let written = matches!(v.get_ref(), DeValue::Table(t)
                if t.contains_key("listen") || t.contains_key("tls"));
            if let Some(s) = de::<ServerFile>(v, rep) {
                server_settings(s, written, base_dir, &mut head, rep);
            }
        }
        None => rep.error(0..0, "missing [server] section (it holds `listen`)"),
    }
    head
}
