//! Who is alive: a heartbeat key per instance, refreshed every second with a TTL of a few.
//!
//! `seawall:{instances}:NAME` holds the instance's details and expires [`TTL`] after its last
//! beat; the set `seawall:{instances}` names every instance that ever beat, so listing needs no
//! `SCAN` (one `SMEMBERS`, one `MGET`, all in one Cluster slot by the hash tag). Names whose key
//! expired are taken out of the set by whoever lists next.

use std::sync::Arc;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

use super::Inner;

/// An instance missing this many heartbeats in a row is no longer listed.
pub const TTL: std::time::Duration = std::time::Duration::from_secs(5);

pub const SET_KEY: &str = "seawall:{instances}";

pub fn key(name: &str) -> String {
    format!("{SET_KEY}:{name}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    pub name: String,
    pub version: String,
    /// Unix time (ms) the instance started.
    pub started_ms: u64,
}

/// The consumer name of an instance's life in a fleet queue's group: `NAME@STARTED_MS`.
pub fn consumer(name: &str, started_ms: u64) -> String {
    format!("{name}@{started_ms}")
}

/// The fleet queue consumers whose instance beat within [`TTL`], as of the last heartbeat.
///
/// A consumer not in the list died (SIGKILL, power loss), stopped, or was restarted (a new
/// life is a new consumer): what it left pending can be taken over at once, without waiting
/// out the visibility timeout that guards a live but slow delivery.
#[derive(Debug, Default)]
pub struct LiveConsumers(Mutex<Option<Arc<Vec<String>>>>);

impl LiveConsumers {
    pub(super) fn set(&self, live: &[Instance]) {
        let mut names: Vec<String> = live
            .iter()
            .map(|i| consumer(&i.name, i.started_ms))
            .collect();
        names.sort();
        *self.0.lock() = Some(Arc::new(names));
    }

    /// `None` until a heartbeat listed the instances: then every consumer counts as alive.
    pub fn get(&self) -> Option<Arc<Vec<String>>> {
        self.0.lock().clone()
    }
}

/// Refresh this instance's heartbeat; returns the live instances, this one included.
pub(super) async fn beat(inner: &Inner) -> redis::RedisResult<Vec<Instance>> {
    let me = Instance {
        name: inner.instance.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_ms: inner.started_ms,
    };
    let value = serde_json::to_string(&me).unwrap_or_default();
    let mut c = inner.conn.clone();
    redis::pipe()
        .cmd("SET")
        .arg(key(&me.name))
        .arg(value)
        .arg("PX")
        .arg(TTL.as_millis() as u64)
        .ignore()
        .cmd("SADD")
        .arg(SET_KEY)
        .arg(&me.name)
        .ignore()
        .exec_async(&mut c)
        .await?;
    list(&inner.conn).await
}

/// The live instances, by name.
pub async fn list(conn: &ConnectionManager) -> redis::RedisResult<Vec<Instance>> {
    let mut c = conn.clone();
    let names: Vec<String> = redis::cmd("SMEMBERS")
        .arg(SET_KEY)
        .query_async(&mut c)
        .await?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names.iter().map(|n| key(n)).collect();
    let values: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await?;
    let mut live = Vec::new();
    let mut gone = Vec::new();
    for (name, v) in names.into_iter().zip(values) {
        match v.and_then(|v| serde_json::from_str::<Instance>(&v).ok()) {
            Some(i) => live.push(i),
            None => gone.push(name),
        }
    }
    if !gone.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("SREM")
            .arg(SET_KEY)
            .arg(&gone)
            .query_async(&mut c)
            .await;
    }
    live.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(live)
}

/// On shutdown: leave the list at once rather than after the TTL.
pub(super) async fn leave(inner: &Inner) -> redis::RedisResult<()> {
    let mut c = inner.conn.clone();
    redis::pipe()
        .cmd("DEL")
        .arg(key(&inner.instance))
        .ignore()
        .cmd("SREM")
        .arg(SET_KEY)
        .arg(&inner.instance)
        .ignore()
        .exec_async(&mut c)
        .await
}
