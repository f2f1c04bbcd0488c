//! The spool's one writing thread: batches what is waiting into one transaction (group
//! commit), fsyncs it when any of it must be durable, then answers every caller.

use super::*;

pub(super) struct Writer {
    pub(super) inner: Arc<Inner>,
    pub(super) rx: mpsc::Receiver<Op>,
    pub(super) next_seq: u64,
    pub(super) opts: SpoolOptions,
    /// A non-durable commit is waiting for an fsync.
    pub(super) dirty: bool,
    /// The idempotency window last asked for, to forget older keys.
    pub(super) idem_ms: u64,
    pub(super) last_purge: Instant,
}

/// What to tell each caller once the transaction is committed (or not).
enum Pending {
    Append(Reply<Result<Accepted, Refusal>>, Result<Accepted, Refusal>),
    Unit(Reply<Result<(), StoreError>>, Option<u64>),
    Count(Reply<Result<u64, StoreError>>, u64),
}

impl Writer {
    pub(super) fn run(mut self) {
        loop {
            let wait = if self.dirty {
                LAZY_SYNC
            } else {
                Duration::from_secs(60)
            };
            let first = match self.rx.recv_timeout(wait) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            if !self.opts.no_grouping {
                let deadline = Instant::now() + self.opts.commit_window;
                while batch.len() < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(op) => batch.push(op),
                        Err(_) => {
                            let left = deadline.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            match self.rx.recv_timeout(left) {
                                Ok(op) => batch.push(op),
                                Err(_) => break,
                            }
                        }
                    }
                }
            }
            self.apply(batch);
        }
        if self.dirty {
            self.idle();
        }
    }

    /// Nothing to do: make pending bookkeeping durable, forget old idempotency keys.
    fn idle(&mut self) {
        let now = crate::queue::WallClock::now_ms(&crate::queue::SystemClock);
        let purge = self.idem_ms > 0 && self.last_purge.elapsed() >= Duration::from_secs(30);
        if !self.dirty && !purge {
            return;
        }
        let r = (|| -> Result<(), StoreError> {
            let mut txn = self.inner.db.begin_write().map_err(err)?;
            txn.set_durability(Durability::Immediate).map_err(err)?;
            if purge {
                let cutoff = now.saturating_sub(self.idem_ms);
                let mut exp = txn.open_table(IDEM_EXP).map_err(err)?;
                let mut idem = txn.open_table(IDEM).map_err(err)?;
                let old: Vec<(u64, String)> = exp
                    .range(..(cutoff, ""))
                    .map_err(err)?
                    .take(10_000)
                    .filter_map(|r| r.ok())
                    .map(|(k, _)| {
                        let (t, key) = k.value();
                        (t, key.to_string())
                    })
                    .collect();
                for (t, key) in &old {
                    exp.remove((*t, key.as_str())).map_err(err)?;
                    let same = idem.get(key.as_str()).map_err(err)?.map(|v| v.value().0);
                    if same == Some(*t) {
                        idem.remove(key.as_str()).map_err(err)?;
                    }
                }
            }
            txn.commit().map_err(err)
        })();
        match r {
            Ok(()) => {
                self.dirty = false;
                if purge {
                    self.last_purge = Instant::now();
                }
            }
            Err(e) => {
                tracing::error!(file = %self.inner.file.display(), error = %e, "spool commit failed")
            }
        }
    }

    fn apply(&mut self, batch: Vec<Op>) {
        let durable = batch
            .iter()
            .any(|op| !matches!(op, Op::Ack(..) | Op::Retry(..)));
        let mut pending = Vec::with_capacity(batch.len());
        let seq_before = self.next_seq;
        let result = self.transact(batch, durable, &mut pending);
        let failed = match result {
            Ok(stats) => {
                self.inner.depth.store(stats.depth, Ordering::Relaxed);
                self.inner.bytes.store(stats.bytes, Ordering::Relaxed);
                self.inner.dead.store(stats.dead, Ordering::Relaxed);
                self.inner
                    .oldest_ms
                    .store(stats.oldest_ms.unwrap_or(0), Ordering::Relaxed);
                self.dirty = !durable;
                None
            }
            Err(e) => {
                tracing::error!(file = %self.inner.file.display(), error = %e, "spool commit failed");
                self.next_seq = seq_before;
                Some(e)
            }
        };
        let mut leased = self.inner.leased.lock();
        for p in pending {
            match p {
                Pending::Append(tx, r) => {
                    let _ = tx.send(match &failed {
                        Some(e) => Err(Refusal::StoreError(e.0.clone())),
                        None => r,
                    });
                }
                Pending::Unit(tx, seq) => {
                    // Released even when the commit failed: the entry is then as it was (due),
                    // and the worker must be able to lease it again.
                    if let Some(s) = seq {
                        leased.remove(&s);
                    }
                    let _ = tx.send(failed.clone().map_or(Ok(()), Err));
                }
                Pending::Count(tx, n) => {
                    let _ = tx.send(failed.clone().map_or(Ok(n), Err));
                }
            }
        }
    }

    fn transact(
        &mut self,
        batch: Vec<Op>,
        durable: bool,
        pending: &mut Vec<Pending>,
    ) -> Result<StoreStats, StoreError> {
        let mut txn = self.inner.db.begin_write().map_err(err)?;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        })
        .map_err(err)?;
        let stats;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(err)?;
            let mut state = txn.open_table(STATE).map_err(err)?;
            let mut due = txn.open_table(DUE).map_err(err)?;
            let mut dead = txn.open_table(DEAD).map_err(err)?;
            let mut dead_order = txn.open_table(DEAD_ORDER).map_err(err)?;
            let mut idem = txn.open_table(IDEM).map_err(err)?;
            let mut idem_exp = txn.open_table(IDEM_EXP).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut bytes = self.inner.bytes.load(Ordering::Relaxed);
            for op in batch {
                match op {
                    Op::Append(lead, limits, tx) => {
                        self.idem_ms = self.idem_ms.max(limits.idempotency_ms);
                        let r = (|| {
                            if lead.body.len() as u64 > limits.max_body {
                                return Ok(Err(Refusal::TooLarge));
                            }
                            if let Some(key) = &lead.idempotency_key
                                && let Some(v) = idem.get(key.as_str()).map_err(err)?
                            {
                                let (t, receipt) = v.value();
                                if t + limits.idempotency_ms > lead.accepted_at_ms {
                                    return Ok(Ok(Accepted {
                                        receipt: receipt.to_string(),
                                        duplicate: true,
                                    }));
                                }
                            }
                            let record = lead.encode();
                            if bytes + record.len() as u64 > limits.max_bytes {
                                return Ok(Err(Refusal::Full));
                            }
                            let seq = self.next_seq;
                            self.next_seq += 1;
                            let now = lead.accepted_at_ms;
                            entries.insert(seq, record.as_slice()).map_err(err)?;
                            let st = State {
                                attempts: 0,
                                due_ms: now,
                                age_from_ms: now,
                                died_ms: 0,
                                last: String::new(),
                            };
                            state.insert(seq, st.encode().as_slice()).map_err(err)?;
                            due.insert((now, seq), ()).map_err(err)?;
                            if let Some(key) = &lead.idempotency_key {
                                if let Some(old) = idem
                                    .insert(key.as_str(), (now, lead.receipt.as_str()))
                                    .map_err(err)?
                                {
                                    let t = old.value().0;
                                    drop(old);
                                    idem_exp.remove((t, key.as_str())).map_err(err)?;
                                }
                                idem_exp.insert((now, key.as_str()), ()).map_err(err)?;
                            }
                            bytes += record.len() as u64;
                            Ok::<_, StoreError>(Ok(Accepted {
                                receipt: lead.receipt.clone(),
                                duplicate: false,
                            }))
                        })()?;
                        pending.push(Pending::Append(tx, r));
                    }
                    Op::Ack(seq, tx) => {
                        if let Some(v) = entries.remove(seq).map_err(err)? {
                            bytes = bytes.saturating_sub(v.value().len() as u64);
                        }
                        if let Some(s) = state.remove(seq).map_err(err)? {
                            let st = State::decode(s.value());
                            drop(s);
                            due.remove((st.due_ms, seq)).map_err(err)?;
                        }
                        pending.push(Pending::Unit(tx, Some(seq)));
                    }
                    Op::Retry(seq, new, tx) => {
                        let old = state
                            .get(seq)
                            .map_err(err)?
                            .map(|s| State::decode(s.value()));
                        if let Some(old) = old {
                            due.remove((old.due_ms, seq)).map_err(err)?;
                            let st = State {
                                age_from_ms: old.age_from_ms,
                                ..new
                            };
                            state.insert(seq, st.encode().as_slice()).map_err(err)?;
                            due.insert((st.due_ms, seq), ()).map_err(err)?;
                        }
                        pending.push(Pending::Unit(tx, Some(seq)));
                    }
                    Op::Bury(seq, attempts, last, now, tx) => {
                        let record = entries
                            .remove(seq)
                            .map_err(err)?
                            .map(|v| v.value().to_vec());
                        let old = state
                            .get(seq)
                            .map_err(err)?
                            .map(|s| State::decode(s.value()));
                        if let (Some(record), Some(old)) = (record, old) {
                            due.remove((old.due_ms, seq)).map_err(err)?;
                            dead.insert(seq, record.as_slice()).map_err(err)?;
                            let st = State {
                                attempts,
                                died_ms: now,
                                last,
                                ..old
                            };
                            state.insert(seq, st.encode().as_slice()).map_err(err)?;
                            dead_order.insert((now, seq), ()).map_err(err)?;
                        }
                        pending.push(Pending::Unit(tx, Some(seq)));
                    }
                    Op::Redrive(now, tx) => {
                        let mut n = 0;
                        while let Some(seq) = dead_order
                            .pop_first()
                            .map_err(err)?
                            .map(|(k, _)| k.value().1)
                        {
                            let Some(record) =
                                dead.remove(seq).map_err(err)?.map(|v| v.value().to_vec())
                            else {
                                continue;
                            };
                            entries.insert(seq, record.as_slice()).map_err(err)?;
                            let st = State {
                                attempts: 0,
                                due_ms: now,
                                age_from_ms: now,
                                died_ms: 0,
                                last: String::new(),
                            };
                            state.insert(seq, st.encode().as_slice()).map_err(err)?;
                            due.insert((now, seq), ()).map_err(err)?;
                            n += 1;
                        }
                        pending.push(Pending::Count(tx, n));
                    }
                }
            }
            meta.insert("next_seq", self.next_seq).map_err(err)?;
            meta.insert("bytes", bytes).map_err(err)?;
            stats = StoreStats {
                depth: entries.len().map_err(err)?,
                bytes,
                oldest_ms: entries
                    .first()
                    .map_err(err)?
                    .map(|(_, v)| accepted_at(v.value())),
                dead: dead.len().map_err(err)?,
            };
        }
        txn.commit().map_err(err)?;
        Ok(stats)
    }
}
