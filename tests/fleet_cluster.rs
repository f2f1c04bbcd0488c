//! Redis Cluster: a request's fleet limits, its campaign's and its route's, go to Redis in one
//! `EVALSHA`, and Cluster runs a script only when all its keys hash to one slot (otherwise it
//! answers CROSSSLOT and every such request would take `on_store_error`). Proven on a real
//! redis-server in cluster mode, one node serving all 16,384 slots: it refuses a cross-slot
//! script exactly as a sharded Cluster does, and `CLUSTER KEYSLOT` computes slots as every
//! Cluster client does.

mod common;

use std::time::Duration;

use seawall::fleet::{FleetCheck, FleetKey};

use common::fleet::{Mode, by_redis, limit, no_cache, spec, up};
use common::redis::RedisServer;

/// A one-node Cluster that owns every slot and is ready to serve them.
async fn cluster() -> Option<RedisServer> {
    let redis = RedisServer::builder()
        .arg("--cluster-enabled")
        .arg("yes")
        .arg("--cluster-config-file")
        .arg("nodes.conf")
        .start()?;
    let _: String = redis.cmd(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
    assert_eventually!(
        Duration::from_secs(10),
        "the one-node cluster reports cluster_state:ok",
        redis
            .cmd::<String>(&["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
    );
    Some(redis)
}

#[tokio::test]
async fn a_campaigns_and_a_routes_fleet_limits_are_decided_in_one_call_on_redis_cluster() {
    let Some(redis) = cluster().await else {
        return;
    };
    let (fleet, _) = up(spec(&redis), no_cache()).await;
    // A launch's limit (scope "campaign", key global) checked first, then two of the route's
    // (per client address and per API key), as admission orders them.
    let campaign = fleet.limit(
        "campaign",
        &limit(
            "campaign-flood",
            "global",
            "100r/s",
            50,
            Mode::NoDelay,
            false,
        ),
    );
    let per_ip = fleet.limit(
        "signup",
        &limit("per-ip", "client_ip", "5r/m", 10, Mode::NoDelay, false),
    );
    let per_key = fleet.limit(
        "signup",
        &limit(
            "per-key",
            "header:x-api-key",
            "10r/s",
            20,
            Mode::NoDelay,
            false,
        ),
    );
    let checks = [
        FleetCheck {
            limit: &campaign,
            key: Some(FleetKey::global()),
        },
        FleetCheck {
            limit: &per_ip,
            key: Some(FleetKey::client_ip("192.0.2.7".parse().unwrap())),
        },
        FleetCheck {
            limit: &per_key,
            key: Some(FleetKey::value(b"k-1")),
        },
    ];
    let slots: Vec<i64> = checks
        .iter()
        .map(|c| {
            let k = c.limit.redis_key(&c.key.unwrap());
            redis.cmd(&["CLUSTER", "KEYSLOT", &k])
        })
        .collect();
    assert!(
        slots.windows(2).all(|w| w[0] == w[1]),
        "one request's fleet keys hash to slots {slots:?}"
    );
    // Redis answers (no CROSSSLOT, no fallback), and keeps deciding: the route's per-ip limit
    // (not the last limit, so a fresh key's first request is charged, as in nginx) lets its
    // burst through, then rejects.
    for _ in 0..10 {
        let (d, _) = by_redis(&fleet, &checks).await;
        assert_eq!(d.rejected, None);
    }
    let (d, _) = by_redis(&fleet, &checks).await;
    assert_eq!(d.rejected, Some(1), "per-ip rejects after its burst");
    assert_eq!(redis.command_calls().get("evalsha"), Some(&11));
}
