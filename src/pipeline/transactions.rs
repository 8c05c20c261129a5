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
//! it is, with a warning, so the view cannot stall behind it. Lag is not
//! loss: the timeout only starts once every partition has been read up to
//! where the logs ended when the transaction's END (or, without one, its
//! first change) was read, since a missing change may simply not be read yet.
//! Without an END, a pause upstream is not loss either (Debezium slowed down
//! or stopped while it was sending a large transaction): the clock restarts
//! with each change of the transaction, and runs at the timeout's pace only
//! once something later than the transaction has been read behind it in one
//! of its partitions (proof that the upstream went on past it); otherwise it
//! waits [`STALL_FACTOR`] times as long.
//!
//! Released transactions are remembered (the newest few thousand, kept in
//! state snapshots too). Debezium sends the changes of the last transaction
//! again after it restarts, with the same transaction id, an END whose counts
//! include the changes sent before, and only the changes it resends: such a
//! change passes as if it had no transaction, and such an END is ignored,
//! instead of holding everything behind them until the timeout.
//!
//! What is held is not persisted: [`TxAssembler::resume_offsets`] says where
//! to resume each partition so that whatever is held is read again after a
//! restart.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::change::Change;
use crate::decode::{TxId, TxMember};

/// How many released transactions are remembered, so that their END or a
/// change of theirs, if one turns up again, is not waited for.
const RELEASED_MEMORY: usize = 4096;

/// How many timeouts a transaction without an END waits when nothing later
/// than it has been read: its END may be lost, or the upstream may only have
/// paused in the middle of it.
pub const STALL_FACTOR: u32 = 6;

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
    /// When the change was read: its wait is measured from here.
    since: Instant,
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
    /// When its newest change was read.
    last_change: Instant,
    /// Since when a record later than the transaction has been read behind
    /// one of its changes, in the same partition.
    overtaken: Option<Instant>,
    /// Each partition's end of log when the END (else the first change) was
    /// read: everything the transaction wrote lies before it.
    horizon: Vec<(u32, i64)>,
    /// Since when every partition has been read up to `horizon`: the timeout
    /// counts from here.
    caught_up: Option<Instant>,
}

impl OpenTx {
    fn new(now: Instant, horizon: Vec<(u32, i64)>) -> Self {
        OpenTx {
            orders: HashSet::new(),
            unnumbered: 0,
            held: 0,
            expected: None,
            end_at: None,
            committed: false,
            since: now,
            last_change: now,
            overtaken: None,
            horizon,
            caught_up: None,
        }
    }

    fn complete(&self) -> bool {
        self.expected.is_some_and(|e| self.orders.len() + self.unnumbered >= e)
    }

    fn timed_out(&self, now: Instant, timeout: Duration) -> bool {
        self.caught_up.is_some_and(|at| now.duration_since(at) >= timeout)
    }

    /// Whether a transaction whose END has not come is given up on: the
    /// timeout since both the partitions were read up to its horizon and its
    /// newest change came, or [`STALL_FACTOR`] times that while nothing
    /// later than it has been read.
    fn stalled(&self, now: Instant, timeout: Duration) -> bool {
        let Some(caught_up) = self.caught_up else { return false };
        let quiet = now.duration_since(caught_up.max(self.last_change));
        match self.overtaken {
            Some(at) => quiet >= timeout && now.duration_since(at) >= timeout,
            None => quiet >= timeout * STALL_FACTOR,
        }
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
    /// The newest released transactions, oldest first, and the same as a set.
    released: VecDeque<TxId>,
    released_set: HashSet<TxId>,
    /// Each partition's next offset to read and end of log, as last observed.
    reading: HashMap<u32, (i64, i64)>,
    stats: TxStats,
    /// How long each change released since the last [`Self::take_waits`] was held.
    waits: Vec<Duration>,
}

impl TxAssembler {
    pub fn new(tables: impl IntoIterator<Item = String>, timeout: Duration) -> Self {
        TxAssembler {
            tables: tables.into_iter().collect(),
            timeout,
            queues: HashMap::new(),
            open: HashMap::new(),
            ends: VecDeque::new(),
            released: VecDeque::new(),
            released_set: HashSet::new(),
            reading: HashMap::new(),
            stats: TxStats::default(),
            waits: Vec::new(),
        }
    }

    /// Records where each partition stands: `(stream, next offset to read,
    /// end of log)`. The timeout of an incomplete transaction waits until the
    /// partitions have been read up to where their logs ended when it was seen.
    pub fn observe(&mut self, partitions: impl IntoIterator<Item = (u32, i64, i64)>) {
        self.reading.clear();
        self.reading.extend(partitions.into_iter().map(|(stream, next, end)| (stream, (next, end))));
    }

    fn horizon(&self) -> Vec<(u32, i64)> {
        self.reading.iter().map(|(&stream, &(_, end))| (stream, end)).collect()
    }

    /// The transactions released most recently, oldest first, for a snapshot.
    pub fn released_ids(&self) -> impl Iterator<Item = &TxId> {
        self.released.iter()
    }

    /// Remembers transactions released before a restart (from a snapshot).
    pub fn remember_released(&mut self, ids: impl IntoIterator<Item = TxId>) {
        for id in ids {
            self.note_released(id);
        }
    }

    fn note_released(&mut self, id: TxId) {
        if !self.released_set.insert(id.clone()) {
            return;
        }
        if self.released.len() == RELEASED_MEMORY {
            if let Some(old) = self.released.pop_front() {
                self.released_set.remove(&old);
            }
        }
        self.released.push_back(id);
    }

    /// Takes a decoded change; pushes it to `out` at once when nothing holds
    /// it back.
    pub fn push_change(&mut self, change: Change, tx: Option<TxMember>, now: Instant, out: &mut Vec<Change>) {
        // A change of a transaction released already is a resend: nothing to wait for.
        let tx = tx.filter(|member| !self.released_set.contains(&member.id));
        let horizon = if tx.as_ref().is_some_and(|member| !self.open.contains_key(&member.id)) { self.horizon() } else { Vec::new() };
        let tx = tx.map(|member| {
            let open = self.open.entry(member.id.clone()).or_insert_with(|| OpenTx::new(now, horizon));
            open.last_change = now;
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
        // A partition is in commit order: whatever comes behind another
        // transaction's change was written after that transaction.
        if let Some(ahead) = queue.back().and_then(|held| held.tx.as_ref()).filter(|&ahead| tx.as_ref() != Some(ahead)) {
            if let Some(open) = self.open.get_mut(ahead) {
                open.overtaken.get_or_insert(now);
            }
        }
        if let Some(open) = tx.as_ref().and_then(|id| self.open.get_mut(id)) {
            open.held += 1;
        }
        queue.push_back(Held { change, tx, since: now });
        self.stats.held_changes += 1;
    }

    /// Takes an END event read at `stream`/`offset` of the transaction topic.
    pub fn push_end(&mut self, id: TxId, collections: &[(String, u64)], event_count: u64, at: (u32, i64), now: Instant) {
        if self.released_set.contains(&id) {
            return; // resent after a Debezium restart, or late after a timeout
        }
        let expected = if collections.is_empty() {
            event_count as usize
        } else {
            collections.iter().filter(|(name, _)| self.consumes(name)).map(|(_, n)| *n as usize).sum()
        };
        let horizon = self.horizon();
        let open = self.open.entry(id.clone()).or_insert_with(|| OpenTx::new(now, Vec::new()));
        if open.end_at.is_some() {
            return; // the same END read twice
        }
        open.expected = Some(expected);
        open.end_at = Some(at);
        // The changes were all written before the END: wait until the
        // partitions are read up to where they ended now, then time out.
        open.horizon = horizon;
        open.caught_up = None;
        self.ends.push_back(id);
    }

    /// Releases every transaction that can go, in commit order, and whatever
    /// waited behind it; then gives up on any transaction older than the
    /// timeout.
    pub fn release(&mut self, now: Instant, out: &mut Vec<Change>) {
        // Start the timeout of every transaction whose horizon has been read up to.
        let reading = &self.reading;
        let reached = |horizon: &[(u32, i64)]| horizon.iter().all(|(stream, end)| reading.get(stream).is_none_or(|(next, _)| next >= end));
        for open in self.open.values_mut().filter(|o| o.caught_up.is_none() && reached(&o.horizon)) {
            open.caught_up = Some(now);
        }
        loop {
            let mut committed = false;
            while let Some(id) = self.ends.front() {
                let Some(open) = self.open.get(id) else {
                    // Released already, by an earlier END for the same id.
                    self.ends.pop_front();
                    continue;
                };
                if !open.complete() && !open.timed_out(now, self.timeout) {
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
                self.drain(now, out);
            }
            // A queue stuck on a transaction whose END never came.
            let stale = self.queues.values().filter_map(|q| q.front()?.tx.clone()).find(|id| {
                let open = &self.open[id];
                !open.committed && open.end_at.is_none() && open.stalled(now, self.timeout)
            });
            match stale {
                Some(id) => {
                    self.give_up(&id, "no END arrived for it");
                    self.commit(&id);
                    self.drain(now, out);
                }
                None if !committed => break,
                None => {}
            }
        }
        self.stats.open_transactions = self.open.len();
    }

    /// How long each change released since the last call was held back
    /// (changes that went at once are not listed).
    pub fn take_waits(&mut self) -> Vec<Duration> {
        std::mem::take(&mut self.waits)
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
    }

    /// Lets the transaction's held changes go once they reach their queues' heads.
    fn commit(&mut self, id: &TxId) {
        self.open.get_mut(id).expect("a transaction being released is open").committed = true;
        self.note_released(id.clone());
    }

    /// Pops every queue's head while it may go: no transaction, or a
    /// committed one.
    fn drain(&mut self, now: Instant, out: &mut Vec<Change>) {
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
                self.waits.push(now.saturating_duration_since(head.since));
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
        let order =
            Order { order_id: offset, user_id: 1, total: Decimal::ONE, order_date: Some(Timestamp(0)), order_status: None, updated_date: None };
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
    fn each_held_change_reports_how_long_it_waited() {
        let start = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        a.push_change(change(0, 1), None, start, &mut out);
        a.push_change(change(0, 2), member("t1", 1), start, &mut out);
        a.push_change(change(0, 3), None, start + Duration::from_millis(5), &mut out);
        assert!(a.take_waits().is_empty(), "nothing released from a queue yet");
        end(&mut a, "t1", 1, 0, 5, start);
        a.release(start + Duration::from_millis(30), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(a.take_waits(), vec![Duration::from_millis(30), Duration::from_millis(25)], "only the held two, each from its own arrival");
        assert!(a.take_waits().is_empty(), "taken once");
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

    /// Debezium pausing in the middle of a large transaction (a slow host, a
    /// restart) is not loss: the transaction waits for its END as long as
    /// its changes keep coming, and is only given up on after a pause many
    /// timeouts long.
    #[test]
    fn a_transaction_whose_upstream_pauses_midway_is_not_released_in_part() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        for end_comes in [true, false] {
            let mut a = assembler();
            let mut out = Vec::new();
            a.push_change(change(0, 1), member("t1", 1), start, &mut out);
            a.push_change(change(1, 1), member("t1", 2), start, &mut out);
            a.release(start, &mut out);
            a.release(secs(11), &mut out);
            a.push_change(change(1, 2), member("t1", 3), secs(30), &mut out);
            a.release(secs(45), &mut out);
            assert!(out.is_empty(), "end_comes: {end_comes}: released in part while its changes still came");
            if end_comes {
                a.push_change(change(1, 3), member("t1", 4), secs(89), &mut out);
                end(&mut a, "t1", 1, 3, 0, secs(89));
                a.release(secs(89), &mut out);
                assert_eq!(out.len(), 4);
                assert_eq!(a.stats().timed_out, 0);
            } else {
                a.release(secs(89), &mut out);
                assert!(out.is_empty(), "a pause under {STALL_FACTOR} timeouts");
                a.release(secs(90), &mut out);
                assert_eq!(out.len(), 3, "given up on after {STALL_FACTOR} timeouts without a change");
                assert_eq!(a.stats().timed_out, 1);
            }
        }
    }

    /// Something behind a transaction in its partition proves the upstream
    /// went on past it: from then on its END is waited for one timeout only.
    #[test]
    fn a_transaction_overtaken_in_its_partition_waits_one_timeout() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        let mut a = assembler();
        let mut out = Vec::new();
        a.push_change(change(0, 1), member("t1", 1), start, &mut out);
        a.release(start, &mut out);
        a.push_change(change(0, 2), member("t2", 1), secs(5), &mut out);
        a.release(secs(14), &mut out);
        assert!(out.is_empty(), "t2 came 9 s ago");
        a.release(secs(15), &mut out);
        assert_eq!(offsets(&out), vec![(0, 1)], "t1 only: nothing is behind t2");
        assert_eq!(a.stats().held_changes, 1);
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

    /// After a Debezium restart the last transaction comes again: the same
    /// id, one of its changes, and an END counting more changes than will
    /// ever come. Nothing may wait for it, whether the transaction was
    /// released in this run or before a restart (remembered from a snapshot).
    #[test]
    fn a_transaction_sent_again_after_it_was_released_holds_nothing_back() {
        let now = Instant::now();
        for from_snapshot in [false, true] {
            let mut a = assembler();
            let mut out = Vec::new();
            if from_snapshot {
                a.remember_released(["t1".into()]);
            } else {
                a.push_change(change(0, 1), member("t1", 1), now, &mut out);
                a.push_change(change(1, 1), member("t1", 2), now, &mut out);
                end(&mut a, "t1", 1, 1, 0, now);
                a.release(now, &mut out);
                assert_eq!(out.len(), 2);
            }
            out.clear();
            a.push_change(change(1, 2), member("t1", 3), now, &mut out);
            end(&mut a, "t1", 1, 2, 1, now);
            a.push_change(change(0, 2), None, now, &mut out);
            a.release(now, &mut out);
            assert_eq!(offsets(&out), vec![(1, 2), (0, 2)], "from_snapshot: {from_snapshot}");
            assert_eq!(a.stats().held_changes, 0);
            assert_eq!(a.stats().open_transactions, 0);
            assert_eq!(a.stats().timed_out, 0);
            assert!(a.resume_offsets().is_empty());
            assert_eq!(a.released_ids().cloned().collect::<Vec<TxId>>(), vec![TxId::from("t1")]);
        }
    }

    /// A change not read yet is not lost: the timeout starts only once every
    /// partition has been read up to where the logs ended when the END came.
    #[test]
    fn the_timeout_waits_until_the_partitions_are_read_up_to_the_end() {
        let start = Instant::now();
        let mut a = assembler();
        let mut out = Vec::new();
        // Partition 1 has 500 records still to read when t1's END arrives.
        a.observe([(0, 11, 11), (1, 100, 600), (TX_STREAM, 1, 1)]);
        a.push_change(change(0, 10), member("t1", 1), start, &mut out);
        end(&mut a, "t1", 1, 1, 0, start);
        a.release(start, &mut out);
        let much_later = start + Duration::from_secs(60);
        a.observe([(0, 11, 11), (1, 400, 900), (TX_STREAM, 1, 1)]);
        a.release(much_later, &mut out);
        assert!(out.is_empty(), "partition 1 still lags behind where it ended at the END: no timeout yet");
        // Read up to offset 600: the item was not there; now the clock runs.
        a.observe([(0, 11, 11), (1, 600, 900), (TX_STREAM, 1, 1)]);
        a.release(much_later, &mut out);
        assert!(out.is_empty(), "the timeout counts from here");
        a.release(much_later + Duration::from_secs(11), &mut out);
        assert_eq!(offsets(&out), vec![(0, 10)]);
        assert_eq!(a.stats().timed_out, 1);
    }
}
