//! Holds back the changes of a MySQL transaction until all of them have
//! arrived, so the view never shows half a transaction.
//!
//! Debezium's transaction metadata tags every change with its transaction id
//! and writes an END event, with the number of changes per table, to the
//! transaction topic once the transaction has committed. The changes and the
//! END travel on different topics, so any of them may arrive first.
//!
//! Each partition is a FIFO: a change in a transaction waits in its
//! partition's queue, and so does anything behind it, because the engine
//! applies each partition in offset order. Transactions are released in the
//! order of their END events (commit order, the transaction topic having one
//! partition), each once every one of its changes is here. Changes without
//! metadata (snapshot rows, status events) pass straight through unless
//! something is queued ahead of them.
//!
//! A transaction that stays incomplete longer than the timeout (an END or a
//! change lost upstream, a record that could not be decoded) is released as
//! it is, with a warning, so the view cannot stall behind it.
//!
//! Nothing here is persisted: [`TxAssembler::resume_offsets`] says where to
//! resume each partition so that whatever is held is read again after a
//! restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::change::Change;
use crate::decode::{TxId, TxMember};

/// How many transactions released by timeout are remembered, so that their
/// END, if it turns up later, is ignored instead of waited for.
const FORCED_MEMORY: usize = 1024;

/// Counters for `/status` and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TxStats {
    /// Changes waiting for the rest of their transaction.
    pub held_changes: usize,
    /// Transactions with changes or an END seen and not yet released.
    pub open_transactions: usize,
    /// Transactions released whole so far.
    pub released: u64,
    /// Transactions released incomplete after the timeout.
    pub timed_out: u64,
}

struct Held {
    change: Change,
    tx: Option<TxId>,
}

struct OpenTx {
    /// Distinct `total_order`s seen; a resent change counts once.
    orders: HashSet<u64>,
    /// Changes seen without a `total_order`.
    unnumbered: usize,
    /// Changes of this transaction still in a queue.
    held: usize,
    /// Changes expected in the consumed tables, once the END has arrived.
    expected: Option<usize>,
    /// Where the END was read (stream, offset).
    end_at: Option<(u32, i64)>,
    committed: bool,
    since: Instant,
}

impl OpenTx {
    fn new(now: Instant) -> Self {
        OpenTx { orders: HashSet::new(), unnumbered: 0, held: 0, expected: None, end_at: None, committed: false, since: now }
    }

    fn complete(&self) -> bool {
        self.expected.is_some_and(|e| self.orders.len() + self.unnumbered >= e)
    }
}

pub struct TxAssembler {
    /// Table names whose changes this pipeline consumes (`orders`, ...); END
    /// counts for other tables are not waited for.
    tables: HashSet<String>,
    timeout: Duration,
    queues: HashMap<u32, VecDeque<Held>>,
    open: HashMap<TxId, OpenTx>,
    /// Transactions whose END has arrived, in commit order, not yet released.
    ends: VecDeque<TxId>,
    forced: VecDeque<TxId>,
    stats: TxStats,
}

impl TxAssembler {
    pub fn new(tables: impl IntoIterator<Item = String>, timeout: Duration) -> Self {
        TxAssembler {
            tables: tables.into_iter().collect(),
            timeout,
            queues: HashMap::new(),
            open: HashMap::new(),
            ends: VecDeque::new(),
            forced: VecDeque::new(),
            stats: TxStats::default(),
        }
    }

    /// Takes a decoded change; pushes it to `out` at once when nothing holds
    /// it back.
    pub fn push_change(&mut self, change: Change, tx: Option<TxMember>, now: Instant, out: &mut Vec<Change>) {
        let tx = tx.map(|member| {
            let open = self.open.entry(member.id.clone()).or_insert_with(|| OpenTx::new(now));
            match member.total_order {
                Some(n) => {
                    open.orders.insert(n);
                }
                None => open.unnumbered += 1,
            }
            member.id
        });
        // A change without a position cannot be ordered against its partition.
        let Some(pos) = change.pos else {
            out.push(change);
            return;
        };
        let queue = self.queues.entry(pos.stream).or_default();
        if tx.is_none() && queue.is_empty() {
            out.push(change);
            return;
        }
        if let Some(open) = tx.as_ref().and_then(|id| self.open.get_mut(id)) {
            open.held += 1;
        }
        queue.push_back(Held { change, tx });
        self.stats.held_changes += 1;
    }

    /// Takes an END event read at `stream`/`offset` of the transaction topic.
    pub fn push_end(&mut self, id: TxId, collections: &[(String, u64)], event_count: u64, at: (u32, i64), now: Instant) {
        if self.forced.contains(&id) {
            return;
        }
        let expected = if collections.is_empty() {
            event_count as usize
        } else {
            collections.iter().filter(|(name, _)| self.consumes(name)).map(|(_, n)| *n as usize).sum()
        };
        let open = self.open.entry(id.clone()).or_insert_with(|| OpenTx::new(now));
        if open.end_at.is_some() && !open.committed {
            return; // the same END read twice
        }
        open.expected = Some(expected);
        open.end_at = Some(at);
        self.ends.push_back(id);
    }

    /// Releases every transaction that can go, in commit order, and whatever
    /// waited behind it; then gives up on any transaction older than the
    /// timeout.
    pub fn release(&mut self, now: Instant, out: &mut Vec<Change>) {
        loop {
            let mut committed = false;
            while let Some(id) = self.ends.front() {
                let Some(open) = self.open.get(id) else {
                    // Released already, by an earlier END for the same id.
                    self.ends.pop_front();
                    continue;
                };
                if !open.complete() && now.duration_since(open.since) < self.timeout {
                    break;
                }
                let id = self.ends.pop_front().expect("front exists");
                committed = true;
                if self.open[&id].complete() {
                    self.stats.released += 1;
                } else {
                    self.give_up(&id, "its END arrived but some of its changes did not");
                }
                self.commit(&id);
            }
            if committed {
                self.drain(out);
            }
            // A queue stuck on a transaction whose END never came.
            let stale = self.queues.values().filter_map(|q| q.front()?.tx.clone()).find(|id| {
                let open = &self.open[id];
                !open.committed && open.end_at.is_none() && now.duration_since(open.since) >= self.timeout
            });
            match stale {
                Some(id) => {
                    self.give_up(&id, "no END arrived for it");
                    self.commit(&id);
                    self.drain(out);
                }
                None if !committed => break,
                None => {}
            }
        }
        self.stats.open_transactions = self.open.len();
    }

    /// Where to resume each stream after a restart so that nothing held is
    /// lost: the first held change of each partition, and the END of the
    /// oldest unreleased transaction on the transaction topic. Streams not
    /// listed resume where the source stands.
    pub fn resume_offsets(&self) -> HashMap<u32, i64> {
        let mut resume: HashMap<u32, i64> = HashMap::new();
        let mut earliest = |stream: u32, offset: i64| {
            let at = resume.entry(stream).or_insert(offset);
            *at = (*at).min(offset);
        };
        for queue in self.queues.values() {
            if let Some(pos) = queue.front().and_then(|h| h.change.pos) {
                earliest(pos.stream, pos.offset);
            }
        }
        for open in self.open.values().filter(|o| !o.committed || o.held > 0) {
            if let Some((stream, offset)) = open.end_at {
                earliest(stream, offset);
            }
        }
        resume
    }

    pub fn stats(&self) -> TxStats {
        self.stats
    }

    fn consumes(&self, collection: &str) -> bool {
        let table = collection.rsplit('.').next().unwrap_or(collection);
        self.tables.contains(table)
    }

    fn give_up(&mut self, id: &TxId, why: &str) {
        let open = &self.open[id];
        tracing::warn!(
            transaction = %id,
            seen = open.orders.len() + open.unnumbered,
            expected = ?open.expected,
            waited_ms = open.since.elapsed().as_millis() as u64,
            "releasing an incomplete transaction after the timeout: {why}"
        );
        self.stats.timed_out += 1;
        if open.end_at.is_none() {
            if self.forced.len() == FORCED_MEMORY {
                self.forced.pop_front();
            }
            self.forced.push_back(id.clone());
        }
    }

    /// Lets the transaction's held changes go once they reach their queues' heads.
    fn commit(&mut self, id: &TxId) {
        self.open.get_mut(id).expect("a transaction being released is open").committed = true;
    }

    /// Pops every queue's head while it may go: no transaction, or a
    /// committed one.
    fn drain(&mut self, out: &mut Vec<Change>) {
        for queue in self.queues.values_mut() {
            while let Some(head) = queue.front() {
                if let Some(id) = &head.tx {
                    let open = self.open.get_mut(id).expect("a held change's transaction is open");
                    if !open.committed {
                        break;
                    }
                    open.held -= 1;
                }
                let head = queue.pop_front().expect("head exists");
                self.stats.held_changes -= 1;
                out.push(head.change);
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        self.open.retain(|_, o| !(o.committed && o.held == 0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::change::{Order, RowChange, SourcePos, TableChange, Timestamp};
    use rust_decimal::Decimal;

    const TX_STREAM: u32 = 9;

    fn change(stream: u32, offset: i64) -> Change {
        let order = Order {
            order_id: offset,
            user_id: 1,
            total: Decimal::ONE,
            order_date: Some(Timestamp(0)),
            order_status: None,
            updated_date: None,
        };
        Change { pos: Some(SourcePos { stream, offset }), data: TableChange::Orders(RowChange::insert(order)) }
    }

    fn member(id: &str, n: u64) -> Option<TxMember> {
        Some(TxMember { id: id.into(), total_order: Some(n) })
    }

    fn offsets(out: &[Change]) -> Vec<(u32, i64)> {
        out.iter().map(|c| (c.pos.unwrap().stream, c.pos.unwrap().offset)).collect()
    }

    fn assembler() -> TxAssembler {
        TxAssembler::new(["orders".to_string(), "order_items".to_string()], Duration::from_secs(10))
    }

    fn end(a: &mut TxAssembler, id: &str, orders: u64, items: u64, offset: i64, now: Instant) {
        let collections = [("shop.orders".to_string(), orders), ("shop.order_items".to_string(), items), ("shop.audit".to_string(), 4)];
        a.push_end(id.into(), &collections, orders + items + 4, (TX_STREAM, offset), now);
    }

    #[test]
    fn a_transaction_is_released_only_when_its_end_and_all_its_changes_are_here() {
        let now = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        a.push_change(change(0, 10), member("t1", 1), now, &mut out);
        end(&mut a, "t1", 1, 2, 0, now);
        a.push_change(change(1, 20), member("t1", 2), now, &mut out);
        a.release(now, &mut out);
        assert!(out.is_empty(), "one item is still missing");
        assert_eq!(a.resume_offsets(), HashMap::from([(0, 10), (1, 20), (TX_STREAM, 0)]));
        a.push_change(change(1, 21), member("t1", 3), now, &mut out);
        a.release(now, &mut out);
        let mut sorted = offsets(&out);
        sorted.sort();
        assert_eq!(sorted, vec![(0, 10), (1, 20), (1, 21)]);
        assert_eq!(a.stats(), TxStats { held_changes: 0, open_transactions: 0, released: 1, timed_out: 0 });
        assert!(a.resume_offsets().is_empty());
    }

    #[test]
    fn changes_without_metadata_pass_unless_something_waits_ahead_of_them() {
        let now = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        a.push_change(change(0, 1), None, now, &mut out);
        a.push_change(change(0, 2), member("t1", 1), now, &mut out);
        a.push_change(change(0, 3), None, now, &mut out);
        a.push_change(change(1, 7), None, now, &mut out);
        assert_eq!(offsets(&out), vec![(0, 1), (1, 7)]);
        end(&mut a, "t1", 1, 0, 5, now);
        a.release(now, &mut out);
        assert_eq!(offsets(&out), vec![(0, 1), (1, 7), (0, 2), (0, 3)], "partition order is kept");
    }

    #[test]
    fn transactions_are_released_in_commit_order() {
        let now = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        // t2 is complete first, but t1 committed before it: t2 waits.
        a.push_change(change(0, 1), member("t1", 1), now, &mut out);
        a.push_change(change(0, 2), member("t2", 1), now, &mut out);
        end(&mut a, "t1", 1, 1, 0, now);
        end(&mut a, "t2", 1, 0, 1, now);
        a.release(now, &mut out);
        assert!(out.is_empty());
        assert_eq!(a.resume_offsets()[&TX_STREAM], 0);
        a.push_change(change(1, 1), member("t1", 2), now, &mut out);
        a.release(now, &mut out);
        let mut got = offsets(&out);
        got.sort();
        assert_eq!(got, vec![(0, 1), (0, 2), (1, 1)]);
        assert_eq!(a.stats().released, 2);
    }

    #[test]
    fn a_resent_change_counts_once() {
        let now = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        a.push_change(change(0, 1), member("t1", 1), now, &mut out);
        a.push_change(change(0, 2), member("t1", 1), now, &mut out);
        end(&mut a, "t1", 1, 1, 0, now);
        a.release(now, &mut out);
        assert!(out.is_empty(), "the item has not arrived; the order twice does not make up for it");
        a.push_change(change(1, 1), member("t1", 2), now, &mut out);
        a.release(now, &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn incomplete_transactions_are_released_after_the_timeout() {
        let start = Instant::now();
        let later = start + Duration::from_secs(11);
        let mut a = assembler();
        let mut out = Vec::new();
        // An END whose item never comes.
        a.push_change(change(0, 1), member("t1", 1), start, &mut out);
        end(&mut a, "t1", 1, 1, 0, start);
        // Changes whose END never comes.
        a.push_change(change(1, 1), member("t2", 1), start, &mut out);
        a.push_change(change(1, 2), None, start, &mut out);
        a.release(start, &mut out);
        assert!(out.is_empty());
        a.release(later, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(a.stats().timed_out, 2);
        // t2's END turning up late is ignored instead of waited for.
        end(&mut a, "t2", 1, 0, 1, later);
        a.release(later, &mut out);
        assert_eq!(a.stats().open_transactions, 0);
        assert!(a.resume_offsets().is_empty());
    }

    #[test]
    fn an_end_for_tables_not_consumed_releases_at_once() {
        let now = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        end(&mut a, "t1", 0, 0, 0, now);
        a.push_change(change(0, 1), member("t2", 1), now, &mut out);
        end(&mut a, "t2", 1, 0, 1, now);
        a.release(now, &mut out);
        assert_eq!(offsets(&out), vec![(0, 1)]);
        assert_eq!(a.stats().released, 2);
    }
}
