//! The background task: bring an unreachable store back, keep the heartbeat, read Redis's
//! persistence settings on every (re)connect.
//!
//! Requests never reconnect: after a failure they take `on_store_error` at once and leave the
//! connection alone until a probe here succeeds. So a dead Redis costs a request nothing but
//! the one timeout that found it dead, and the edge never queues requests behind reconnects.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Inner, instances, script};
use crate::limits::limiter::{Clock, MonotonicClock};

/// A probe may wait this long for a new connection (the request path never does).
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub(super) async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut first = true;
    loop {
        if !first {
            let up = inner.up.load(std::sync::atomic::Ordering::Acquire);
            let wait = if up {
                inner.opts.heartbeat
            } else {
                inner.opts.probe
            };
            tokio::select! {
                _ = stop.changed() => break,
                _ = tokio::time::sleep(wait) => {}
                // Down since: wait one backoff (`probe`), then probe.
                _ = inner.went_down.notified(), if up => continue,
            }
        }
        first = false;
        if !inner.up.load(std::sync::atomic::Ordering::Acquire) {
            match probe(&inner).await {
                Ok(()) => inner.mark_up(),
                Err(e) => {
                    inner.mark_down(&e);
                    continue;
                }
            }
        }
        if inner.left.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        match tokio::time::timeout(PROBE_TIMEOUT, instances::beat(&inner)).await {
            Ok(Ok(live)) => {
                inner.metrics.instances.set(live.len() as i64);
                inner.live.set(&live);
            }
            Ok(Err(e)) => inner.mark_down(&format!("heartbeat: {e}")),
            Err(_) => inner.mark_down("heartbeat: no answer within 1s"),
        }
        let now = MonotonicClock.now_ms();
        for l in inner.limits.lock().values() {
            l.fallback.reclaim(now);
        }
    }
    let _ = tokio::time::timeout(PROBE_TIMEOUT, instances::leave(&inner)).await;
}

/// PING, load the script, read the persistence settings.
async fn probe(inner: &Inner) -> Result<(), String> {
    let mut c = inner.conn.clone();
    let ready = async {
        redis::cmd("PING").query_async::<String>(&mut c).await?;
        script::script().prepare_invoke().load_async(&mut c).await?;
        redis::RedisResult::Ok(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, ready).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => return Err("no answer within 1s".into()),
    }
    let persistence = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .arg("appendfsync")
        .query_async::<Vec<String>>(&mut c)
        .await
        .map_err(|e| e.to_string())
        .map(|pairs| {
            let get = |name: &str| {
                pairs
                    .chunks_exact(2)
                    .find(|p| p[0] == name)
                    .map_or_else(String::new, |p| p[1].clone())
            };
            (get("appendonly"), get("appendfsync"))
        });
    if inner
        .durable_queues
        .load(std::sync::atomic::Ordering::Acquire)
        && let Some(w) = durability_warning(persistence.clone())
    {
        tracing::warn!(redis = %inner.spec.redis, "{w}");
    }
    *inner.persistence.lock() = Some(persistence);
    Ok(())
}

pub(super) fn durability_warning(p: Result<(String, String), String>) -> Option<String> {
    match p {
        Ok((only, fsync)) if only == "yes" && fsync == "always" => None,
        Ok((only, fsync)) => Some(format!(
            "Redis has appendonly {only:?}, appendfsync {fsync:?}: a fleet queue's accepted \
             request can be lost if Redis crashes; durability needs appendonly yes and \
             appendfsync always"
        )),
        Err(e) => Some(format!(
            "cannot read Redis's appendonly/appendfsync ({e}): a fleet queue's durability \
             depends on appendonly yes and appendfsync always; check them by hand"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_holds_only_with_an_fsync_per_write() {
        let p = |a: &str, b: &str| Ok((a.to_string(), b.to_string()));
        assert_eq!(durability_warning(p("yes", "always")), None);
        assert!(
            durability_warning(p("yes", "everysec"))
                .unwrap()
                .contains("appendfsync \"everysec\"")
        );
        assert!(durability_warning(p("no", "always")).is_some());
        assert!(
            durability_warning(Err("ERR unknown command".into()))
                .unwrap()
                .contains("check them by hand")
        );
    }
}
