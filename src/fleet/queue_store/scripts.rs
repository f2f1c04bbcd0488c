//! The fleet queue's Lua scripts (loaded once, `EVALSHA`, `SCRIPT LOAD` again on `NOSCRIPT`
//! by redis-rs) and the parsing of their answers: anything unexpected is an error, never a
//! panic.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use redis::{Script, ScriptInvocation, Value};

use super::{DEAD_GRACE, GROUP, PARKED, QueueKeys};
use crate::queue::store::{AppendLimits, DeadLetter};
use crate::queue::{Lead, rfc3339_ms};

pub(super) struct Scripts {
    append: &'static Script,
    lease: &'static Script,
    settle: &'static Script,
    redrive: &'static Script,
    stats: &'static Script,
}

macro_rules! script {
    ($file:literal) => {{
        static S: OnceLock<Script> = OnceLock::new();
        S.get_or_init(|| Script::new(include_str!($file)))
    }};
}

/// Whether a lease looks for abandoned entries this time, and how it tells them.
pub(super) struct Abandoned {
    pub look: bool,
    /// Any consumer's entry idle this long is taken over.
    pub visibility: Duration,
    /// The live consumers, when a heartbeat has listed them: a consumer not among them is gone
    /// and its entries are taken over after [`DEAD_GRACE`].
    pub live: Option<Arc<Vec<String>>>,
}

/// What one attempt decided, for settle.lua.
pub(super) enum Settle<'a> {
    Ack {
        id: &'a str,
    },
    Retry {
        id: &'a str,
        due_ms: u64,
    },
    Bury {
        id: &'a str,
        attempts: u32,
        last: &'a str,
        now_ms: u64,
    },
}

impl Scripts {
    pub(super) fn get() -> Scripts {
        Scripts {
            append: script!("append.lua"),
            lease: script!("lease.lua"),
            settle: script!("settle.lua"),
            redrive: script!("redrive.lua"),
            stats: script!("stats.lua"),
        }
    }

    pub(super) fn append(
        &self,
        k: &QueueKeys,
        lead: &Lead,
        limits: AppendLimits,
    ) -> ScriptInvocation<'static> {
        let mut inv = self.append.prepare_invoke();
        inv.key(&k.stream).key(&k.bytes);
        if let Some(key) = &lead.idempotency_key {
            inv.key(k.idem(key));
        }
        inv.arg(lead.encode())
            .arg(lead.accepted_at_ms)
            .arg(limits.max_bytes)
            .arg(&lead.receipt)
            .arg(limits.idempotency_ms.max(1));
        inv
    }

    pub(super) fn lease(
        &self,
        k: &QueueKeys,
        consumer: &str,
        max: usize,
        interval_us: u64,
        abandoned: Abandoned,
    ) -> ScriptInvocation<'static> {
        let Abandoned {
            look: takeover,
            visibility,
            live,
        } = abandoned;
        let mut inv = self.lease.prepare_invoke();
        inv.key(&k.stream)
            .key(&k.due)
            .key(&k.pace)
            .arg(GROUP)
            .arg(consumer)
            .arg(max)
            .arg(visibility.as_millis() as u64)
            .arg(interval_us)
            .arg(u8::from(takeover))
            .arg(PARKED)
            .arg(DEAD_GRACE.as_millis() as u64);
        // The live consumers, when a heartbeat has listed them (else all count as alive).
        match live {
            Some(live) => {
                inv.arg(1);
                for c in live.iter() {
                    inv.arg(c.as_str());
                }
            }
            None => {
                inv.arg(0);
            }
        }
        inv
    }

    pub(super) fn settle(
        &self,
        k: &QueueKeys,
        consumer: &str,
        op: Settle<'_>,
    ) -> ScriptInvocation<'static> {
        let mut inv = self.settle.prepare_invoke();
        inv.key(&k.stream).key(&k.due).key(&k.dead).key(&k.bytes);
        let (name, id, due, attempts, last, now) = match op {
            Settle::Ack { id } => ("ack", id, 0, 0, "", 0),
            Settle::Retry { id, due_ms } => ("retry", id, due_ms, 0, "", 0),
            Settle::Bury {
                id,
                attempts,
                last,
                now_ms,
            } => ("bury", id, 0, attempts, last, now_ms),
        };
        inv.arg(name)
            .arg(GROUP)
            .arg(id)
            .arg(consumer)
            .arg(PARKED)
            .arg(due)
            .arg(attempts)
            .arg(last)
            .arg(now);
        inv
    }

    pub(super) fn redrive(
        &self,
        k: &QueueKeys,
        now_ms: u64,
        batch: i64,
    ) -> ScriptInvocation<'static> {
        let mut inv = self.redrive.prepare_invoke();
        inv.key(&k.dead).key(&k.stream).arg(now_ms).arg(batch);
        inv
    }

    pub(super) fn stats(&self, k: &QueueKeys) -> ScriptInvocation<'static> {
        let mut inv = self.stats.prepare_invoke();
        inv.key(&k.stream).key(&k.bytes).key(&k.dead);
        inv
    }
}

/// One entry as lease.lua hands it out.
#[derive(Debug)]
pub(super) struct RawEntry {
    pub id: String,
    pub lead: Vec<u8>,
    pub age_from_ms: u64,
    pub attempts: u32,
}

#[derive(Debug)]
pub(super) enum LeaseReply {
    /// No fleet pace token for this long.
    Wait {
        ms: u64,
    },
    Entries(Vec<RawEntry>),
}

fn int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a number: {:?}", String::from_utf8_lossy(b))),
        other => Err(format!("not a number: {other:?}")),
    }
}

fn bytes(v: Value) -> Result<Vec<u8>, String> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        other => Err(format!("not a string: {other:?}")),
    }
}

fn text(v: Value) -> Result<String, String> {
    String::from_utf8(bytes(v)?).map_err(|_| "not UTF-8".to_string())
}

pub(super) fn parse_lease(v: Value) -> Result<LeaseReply, String> {
    let Value::Array(items) = v else {
        return Err(format!("lease script answered {v:?}"));
    };
    if items.len() < 2 || (items.len() - 2) % 4 != 0 {
        return Err(format!("lease script answered {} values", items.len()));
    }
    if int(&items[0])? == 1 {
        return Ok(LeaseReply::Wait {
            ms: int(&items[1])?.max(1) as u64,
        });
    }
    let mut out = Vec::new();
    let mut it = items.into_iter().skip(2);
    while let (Some(id), Some(lead), Some(f), Some(n)) =
        (it.next(), it.next(), it.next(), it.next())
    {
        out.push(RawEntry {
            id: text(id)?,
            lead: bytes(lead)?,
            age_from_ms: int(&f)?.max(0) as u64,
            attempts: u32::try_from(int(&n)?.max(0)).unwrap_or(u32::MAX),
        });
    }
    Ok(LeaseReply::Entries(out))
}

/// `XREVRANGE dead + - COUNT n` as dead letters. A damaged one is listed with what is known.
pub(super) fn parse_dead(v: Value, with_body: bool) -> Result<Vec<DeadLetter>, String> {
    let Value::Array(rows) = v else {
        return Err(format!("XREVRANGE answered {v:?}"));
    };
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Value::Array(mut pair) = row else {
            return Err("a dead letter that is not an entry".into());
        };
        let (Some(Value::Array(fields)), Some(_id)) = (pair.pop(), pair.pop()) else {
            return Err("a dead letter without fields".into());
        };
        let (mut d, mut n, mut l, mut t) = (Vec::new(), 0i64, String::new(), 0i64);
        let mut it = fields.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            match bytes(name)?.as_slice() {
                b"d" => d = bytes(value)?,
                b"n" => n = int(&value)?,
                b"l" => l = text(value)?,
                b"t" => t = int(&value)?,
                _ => {}
            }
        }
        let died_at_ms = t.max(0) as u64;
        let attempts = u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        out.push(match Lead::decode(&d) {
            Ok(lead) => DeadLetter {
                receipt: lead.receipt,
                attempts,
                last: l,
                accepted_at_ms: lead.accepted_at_ms,
                died_at_ms,
                campaign: lead.campaign,
                method: lead.method,
                path: lead.path,
                body: with_body.then_some(lead.body),
            },
            Err(why) => DeadLetter {
                receipt: String::new(),
                attempts,
                last: format!(
                    "{l} (damaged entry: {why}; died {})",
                    rfc3339_ms(died_at_ms)
                ),
                accepted_at_ms: 0,
                died_at_ms,
                campaign: None,
                method: String::new(),
                path: String::new(),
                body: with_body.then(|| Bytes::from(d)),
            },
        });
    }
    Ok(out)
}
