//! The campaign registry (campaigns.toml): launch tickets and the policy for unannounced tags.
//!
//! This module holds the compiled registry that config loading produces. Classification and
//! diversion of campaign-tagged traffic build on it (see the campaign issue); until then the
//! registry is parsed and validated but does not act, and the README says so.

use std::sync::Arc;

use crate::config::values::KeySource;
use crate::limits::LimitSpec;
use crate::upstream::Upstream;

pub use crate::config::schema::{LaunchAction, UnregisteredAction};

#[derive(Debug)]
pub struct Launch {
    pub name: Arc<str>,
    /// Lower-cased: tags compare case-insensitively.
    pub tags: Vec<String>,
    pub owner: Option<String>,
    pub ticket: Option<String>,
    pub starts: Option<jiff::Timestamp>,
    pub ends: Option<jiff::Timestamp>,
    pub expected_volume: Option<String>,
    pub expected_peak_rps: Option<f64>,
    /// Path prefixes this launch diverts; empty = every tagged request.
    pub targets: Vec<String>,
    pub new_fields: Vec<String>,
    pub action: LaunchAction,
    pub limit: Option<LimitSpec>,
}

#[derive(Debug)]
pub struct Unregistered {
    pub action: UnregisteredAction,
    pub limit: Option<LimitSpec>,
}

#[derive(Debug)]
pub struct Campaigns {
    pub tag_sources: Vec<KeySource>,
    pub ingest: Option<Arc<Upstream>>,
    pub unregistered: Unregistered,
    pub launches: Vec<Launch>,
}

impl Default for Campaigns {
    fn default() -> Self {
        Campaigns {
            tag_sources: Vec::new(),
            ingest: None,
            unregistered: Unregistered {
                action: UnregisteredAction::Pass,
                limit: None,
            },
            launches: Vec::new(),
        }
    }
}
