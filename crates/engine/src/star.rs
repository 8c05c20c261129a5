//! A chain of joins whose every condition reads the first input (the
//! root), maintained as one operator: the root's rows stored once, each
//! joined input indexed by its join key, and each change producing only the
//! output rows it changes.
//!
//! `orders JOIN users ON .. LEFT JOIN newest_address ON .. LEFT JOIN
//! order_item_lines ON .. LEFT JOIN newest_status ON ..` joins every input on
//! columns of `orders`. As binary joins it keeps each intermediate result
//! (the order with its user, then with its address, ...) in the next join's
//! state, and a change of an order's items passes through every later join.
//! Here a change of one input meets the root rows that refer to its key and
//! the other inputs' current rows, and nothing else is stored.
//!
//! The output is the binary joins' output, column for column: the root's
//! columns, then each input's (NULLs where a LEFT JOIN finds no row).
//!
//! Keyed (one output row per root row, kept by the view), a root row whose
//! inputs alone changed starts from the row the view holds, and only the
//! output columns reading a changed part are computed again: a status
//! event recomputes an order's two status columns, not its thirteen.

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};

use ahash::AHashMap;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::eval::{eval, eval_all, Columns, Parts};
use crate::expr::Expr;
use crate::key::{Key, KeyIndex};
use crate::ops::{add, join_key, only_row, take_row, Delta, Input, KeyRows};
use crate::plan::JoinKind;
use crate::value::{Row, SharedRow, Value};

/// A keyed star's row of a key ([`Star::step_keyed`]).
pub struct KeyedRow {
    pub key: Key,
    /// The key's row now; `None`: no row.
    pub row: Option<SharedRow>,
    /// Known to differ from the key's previous row (computed from it, with
    /// columns that changed): the view need not compare the two.
    pub differs: bool,
}

/// One joined input: its rows by join key.
struct Dim {
    kind: JoinKind,
    /// The root's columns of the condition, and this input's, pairwise.
    root_on: Vec<usize>,
    dim_on: Vec<usize>,
    width: usize,
    rows: KeyIndex<KeyRows>,
    /// Which of the star's [`Referred`] indexes holds the root rows by this
    /// input's join key.
    referred: usize,
}

/// The root rows' slots by the values of some root columns: the root rows
/// that refer to each key of the inputs joined on those columns. Inputs
/// joined on the same root columns (an order's items and its status, both
/// on `order_id`) share one, which is kept up to date once per root change.
struct Referred {
    root_on: Vec<usize>,
    /// The [`part_bit`]s of the inputs joined on these columns.
    parts: u32,
    slots: KeyIndex<Referrers>,
}

/// The root rows' slots that refer to one key of an input: a few per key
/// (a user's orders), kept in the index's own slot.
type Referrers = SmallVec<[u32; 4]>;

/// A row a join input contributes to an output row: one of its rows, or
/// the NULLs a LEFT JOIN pads with.
type Part<'a> = (Option<&'a [Value]>, isize);

impl Dim {
    /// The join key a root row looks this input up by; `None` when one of
    /// its columns is NULL (NULL equals nothing).
    fn key_of_root<'r>(&self, root: &'r [Value], buf: &'r mut Row) -> Option<&'r [Value]> {
        key_of_root(&self.root_on, root, buf)
    }

    /// Whether two root rows look this input up by the same key.
    fn same_key(&self, a: &[Value], b: &[Value]) -> bool {
        same_key(&self.root_on, a, b)
    }

    fn key_of_row(&self, row: &[Value]) -> Option<Key> {
        join_key(row, &self.dim_on)
    }

    /// Whether the `at`th change of `delta` inserts a row of `key` once.
    fn updates_key(&self, delta: &Delta, at: usize, key: &[Value]) -> bool {
        delta.get(at).is_some_and(|(row, d)| *d == 1 && self.dim_on.iter().zip(key).all(|(&c, k)| row[c] == *k))
    }

    /// Starts loading, for the changes four, two and one after the `at`th
    /// of `delta`, the change's key, then its key's slots, then the rows
    /// those hold (which applying a change compares with its row).
    fn prefetch_ahead(&self, referrers: &KeyIndex<Referrers>, delta: &Delta, at: usize) {
        let [c] = self.dim_on[..] else { return };
        // The change's row itself first: its key is read to load the rest.
        crate::ops::prefetch_key_at(delta, at + 4, Some(c));
        if let Some((row, _)) = delta.get(at + 2) {
            let key = std::slice::from_ref(&row[c]);
            self.rows.prefetch(key);
            referrers.prefetch(key);
        }
        if let Some(rows) = delta.get(at + 1).and_then(|(row, _)| self.rows.peek(std::slice::from_ref(&row[c]))) {
            rows.prefetch(false);
        }
    }
}

/// The root's rows, each stored once in a slot, found by value through a
/// table of slot numbers.
#[derive(Default)]
struct Roots {
    slots: Vec<(SharedRow, isize)>,
    free: Vec<u32>,
    by_row: HashTable<u32>,
    hasher: ahash::RandomState,
    /// The columns a row is hashed by: a key of the rows (a keyed star's),
    /// or `None` for the whole row. Rows are still found by equality of the
    /// whole row; a unique key only makes hashing cheaper (one id instead
    /// of every column) without making more rows share a hash.
    hashed: Option<Vec<usize>>,
    /// A keyed star's slots by its key of one column, instead of `by_row`:
    /// an order's slot is then found in a vector indexed by its id, which
    /// can be loaded a few changes ahead (a hash table's probe cannot).
    /// Each key has one findable row; should a second come (an input that
    /// gives a key's new row before taking its old one back), the slots
    /// go back to `by_row` for good.
    by_key: Option<(usize, KeyIndex<u32>)>,
}

impl Roots {
    fn hash(&self, row: &[Value]) -> u64 {
        hash_row(&self.hasher, self.hashed.as_deref(), row)
    }

    fn find(&self, row: &SharedRow) -> Option<u32> {
        if let Some((c, index)) = &self.by_key {
            return index.get(std::slice::from_ref(&row[*c])).copied().filter(|&s| self.slots[s as usize].0 == *row);
        }
        self.by_row.find(self.hash(row), |&s| self.slots[s as usize].0 == *row).copied()
    }

    /// Hashes the rows by these columns from now on (`None`: whole rows);
    /// a key of one column indexes them instead ([`Roots::by_key`]).
    fn hash_by(&mut self, columns: Option<Vec<usize>>) {
        self.by_key = match columns.as_deref() {
            Some(&[c]) => Some((c, KeyIndex::default())),
            _ => None,
        };
        self.hashed = columns;
        self.link_all();
    }

    /// Makes every slot that holds a row findable again, from nothing.
    fn link_all(&mut self) {
        self.by_row.clear();
        for slot in 0..self.slots.len() as u32 {
            // A slot holds a findable row while its count is not zero.
            if self.slots[slot as usize].1 != 0 {
                self.link(slot);
            }
        }
    }

    /// Starts loading, for the root changes eight, four and two after the
    /// `at`th, the change's key, then its slot in the key index, then the
    /// slot that holds it.
    fn prefetch_ahead(&self, root: &Delta, at: usize) {
        let Some((c, index)) = &self.by_key else { return };
        crate::ops::prefetch_key_at(root, at + 8, Some(*c));
        if let Some((row, _)) = root.get(at + 4) {
            index.prefetch(std::slice::from_ref(&row[*c]));
        }
        if let Some(&slot) = root.get(at + 2).and_then(|(row, _)| index.peek(std::slice::from_ref(&row[*c]))) {
            crate::idmap::prefetch(self.slots.as_ptr().wrapping_add(slot as usize));
        }
    }

    /// Stores a row that has no slot yet, counted `n` times.
    fn insert(&mut self, row: SharedRow, n: isize) -> u32 {
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = (row, n);
                slot
            }
            None => {
                self.slots.push((row, n));
                (self.slots.len() - 1) as u32
            }
        };
        self.link(slot);
        slot
    }

    /// Makes a slot's row findable.
    fn link(&mut self, slot: u32) {
        if let Some((c, index)) = &mut self.by_key {
            let key = std::slice::from_ref(&self.slots[slot as usize].0[*c]);
            if index.insert(key, slot).is_some_and(|other| other != slot) {
                // A second row of a key: found by whole rows from now on
                // (the index, which just lost the other, goes with it).
                self.by_key = None;
                self.link_all();
            }
            return;
        }
        let (slots, hasher, hashed) = (&self.slots, &self.hasher, self.hashed.as_deref());
        self.by_row.insert_unique(hash_row(hasher, hashed, &slots[slot as usize].0), slot, |&s| hash_row(hasher, hashed, &slots[s as usize].0));
    }

    /// Makes a slot's row no longer findable (the slot keeps it).
    fn unlink(&mut self, slot: u32) {
        if let Some((c, index)) = &mut self.by_key {
            let key = std::slice::from_ref(&self.slots[slot as usize].0[*c]);
            // The key's slot is this one (a second would have sent the
            // slots to `by_row`); should it not be, it stays.
            if let Some(other) = index.remove(key).filter(|&other| other != slot) {
                index.insert(key, other);
            }
            return;
        }
        let hash = self.hash(&self.slots[slot as usize].0);
        if let Ok(entry) = self.by_row.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
    }
}

/// The hash of a row by these columns (`None`: all of them).
fn hash_row(hasher: &ahash::RandomState, columns: Option<&[usize]>, row: &[Value]) -> u64 {
    match columns {
        None => hasher.hash_one(row),
        Some(columns) => {
            let mut state = hasher.build_hasher();
            columns.iter().for_each(|&c| row[c].hash(&mut state));
            state.finish()
        }
    }
}

/// A joined input: its kind, the condition as (root column, input column)
/// pairs, and its width.
pub type DimSpec = (JoinKind, Vec<(usize, usize)>, usize);

pub struct Star {
    dims: Vec<Dim>,
    /// The root rows by each set of root columns an input is joined on.
    referred: Vec<Referred>,
    roots: Roots,
    /// The expressions of a `Map` over the joins, computed here from each
    /// joined row as its inputs' rows side by side, so that the wide row is
    /// never copied, stored or passed on.
    project: Option<Vec<Expr>>,
    /// Set by [`Star::keyed`]: the root columns that hold the output's key.
    keyed: Option<Vec<usize>>,
    /// For each output column, the parts it reads ([`part_bit`]).
    reads: Vec<u32>,
    /// What a LEFT JOIN pads with: NULLs, as many as the widest input.
    nulls: Row,
}

impl Star {
    /// `root_width`: the root's columns. `dims`: for each joined input in
    /// join order, its kind, the condition as (root column, input column)
    /// pairs, and its width. `project`: the expressions of a `Map` over the
    /// joined rows, if any.
    pub fn new(root_width: usize, dims: Vec<DimSpec>, project: Option<Vec<Expr>>) -> Self {
        let mut referred: Vec<Referred> = Vec::new();
        let dims: Vec<Dim> = dims
            .into_iter()
            .enumerate()
            .map(|(j, (kind, on, width))| {
                let root_on: Vec<usize> = on.iter().map(|(l, _)| *l).collect();
                let at = match referred.iter().position(|r| r.root_on == root_on) {
                    Some(at) => at,
                    None => {
                        referred.push(Referred { root_on: root_on.clone(), parts: 0, slots: KeyIndex::default() });
                        referred.len() - 1
                    }
                };
                referred[at].parts |= part_bit(j + 1);
                Dim { kind, root_on, dim_on: on.iter().map(|(_, r)| *r).collect(), width, rows: KeyIndex::default(), referred: at }
            })
            .collect();
        let widest = dims.iter().map(|d: &Dim| d.width).max().unwrap_or(0);
        let reads = parts_read(root_width, &dims, project.as_deref());
        Star { dims, referred, roots: Roots::default(), project, keyed: None, reads, nulls: vec![Value::Null; widest] }
    }

    /// Makes the star give, instead of changes, each changed key's output
    /// row as it is now ([`Star::step_keyed`]). For a star the plan shows
    /// to have at most one row per key of `root_key` (root columns) and at
    /// most one row per join key in every input: then the output row of a
    /// root row is whatever the inputs hold now, and the row it replaces is
    /// the one the view keeps, so the old one need not be computed again.
    pub fn keyed(&mut self, root_key: Vec<usize>) {
        self.roots.hash_by(Some(root_key.clone()));
        self.keyed = Some(root_key);
    }

    /// Back to giving changes ([`Star::step`]): the state is the same.
    pub fn unkey(&mut self) {
        self.roots.hash_by(None);
        self.keyed = None;
    }

    pub fn is_keyed(&self) -> bool {
        self.keyed.is_some()
    }

    /// Applies these changes and returns, for every key whose output row
    /// changed, its row now (`None`: no row), as [`KeyedRow`]s; a key may
    /// come twice (a removed root row, then its new one), the last one
    /// counting. `previous` holds each key's row as the star last gave it
    /// (the view's rows): a root row whose inputs alone changed gets that
    /// row with only the columns that read them computed again, and no
    /// update when they come out the same.
    ///
    /// Rows of inputs it owns move into its state; the others' are shared.
    pub fn step_keyed(&mut self, mut root: Input<'_>, mut dims: Vec<Input<'_>>, previous: &KeyIndex<SharedRow>) -> Vec<KeyedRow> {
        let key_columns = self.keyed.clone().expect("a keyed star");
        // Sized for a change of each root row and input row touching one
        // root row: growing these lists copied them over and over.
        let touched = root.len() + dims.iter().map(|d| d.len()).sum::<usize>();
        let mut updates = Vec::with_capacity(touched);
        // Removed root rows first: their key's new row, if any, comes after.
        for (row, d) in root.iter() {
            if *d < 0 {
                updates.push(KeyedRow { key: Key::of(row, &key_columns), row: None, differs: false });
            }
        }
        let mut dirty: Vec<u64> = Vec::with_capacity(touched);
        self.apply_root_collecting(&mut root, &mut dirty);
        for (i, delta) in dims.iter_mut().enumerate() {
            let bit = part_bit(i + 1);
            let dim = &mut self.dims[i];
            let referrers = &self.referred[dim.referred].slots;
            let mut at = 0;
            while at < delta.len() {
                dim.prefetch_ahead(referrers, delta, at);
                let (row, d) = &delta[at];
                let d = *d;
                let Some(key) = dim.key_of_row(row) else {
                    at += 1;
                    continue;
                };
                if d == -1 && dim.updates_key(delta, at + 1, key.as_slice()) {
                    // An input keyed by its join key (a GROUP BY on it)
                    // gives a key's old row, then its new one: swapped in
                    // one look-up, with one look-up of its referrers.
                    match only_row(&mut dim.rows, key.as_slice(), &delta[at].0) {
                        Some(only) => {
                            *only = take_row(delta, at + 1);
                            dim.prefetch_ahead(referrers, delta, at + 1);
                            at += 1;
                        }
                        None => add(&mut dim.rows, key.as_slice(), take_row(delta, at), d),
                    }
                } else {
                    add(&mut dim.rows, key.as_slice(), take_row(delta, at), d);
                }
                if let Some(referrers) = referrers.get(key.as_slice()) {
                    dirty.extend(referrers.iter().map(|&slot| dirty_slot(slot, bit)));
                }
                at += 1;
            }
        }
        let dirty: Vec<Dirty> = merge_dirty(dirty)
            .into_iter()
            .map(|entry| Dirty { slot: dirty_slot_of(entry), parts: entry as u32, needed: self.parts_needed(entry as u32) })
            .collect();
        let mut memo = Memo::new(self.dims.len());
        for (i, &Dirty { slot, parts, needed }) in dirty.iter().enumerate() {
            self.prefetch_ahead(&dirty, i, previous, &key_columns);
            let (row, n) = &self.roots.slots[slot as usize];
            if *n <= 0 {
                continue;
            }
            debug_assert_eq!(*n, 1, "a keyed star's root has one row per key");
            let key = Key::of(row, &key_columns);
            if parts != EVERY_PART {
                if let Some(old) = previous.get(key.as_slice()) {
                    match self.patched(row, parts, needed, old) {
                        Some(now) => updates.push(KeyedRow { key, row: now, differs: true }),
                        // A changed root row's key was given no row above.
                        None if parts & ROOT != 0 => updates.push(KeyedRow { key, row: Some(SharedRow::clone(old)), differs: false }),
                        None => {}
                    }
                    continue;
                }
            }
            // Slots come in slot order: the previous root row seldom shares
            // a join key, and comparing for it costs more than it saves.
            memo.root = None;
            let mut out: Option<SharedRow> = None;
            self.product(row, 1, None, &mut memo, &mut out);
            updates.push(KeyedRow { key, row: out, differs: false });
        }
        updates
    }

    /// The output row of a root row whose `parts` alone changed since it
    /// was `old` (with the same output key): `None` when it is still `old`,
    /// `Some(None)` when an inner join's input lost the root row's key.
    /// Only the columns reading a changed part are computed again, and only
    /// the inputs they read (or that changed) are looked up: the others'
    /// place holds NULLs that no recomputed column reads.
    fn patched(&self, root: &[Value], parts: u32, needed: u32, old: &SharedRow) -> Option<Option<SharedRow>> {
        let mut joined: SmallVec<[&[Value]; 8]> = SmallVec::new();
        joined.push(root);
        let mut buf = Row::new();
        for (j, dim) in self.dims.iter().enumerate() {
            let pad = &self.nulls[..dim.width];
            if needed & part_bit(j + 1) == 0 {
                joined.push(pad);
                continue;
            }
            let rows = dim.key_of_root(root, &mut buf).and_then(|key| dim.rows.get(key));
            debug_assert!(rows.is_none_or(|rows| rows.iter().count() == 1), "a keyed star's inputs have one row per join key");
            match rows.and_then(|rows| rows.iter().next()) {
                Some((row, _)) => joined.push(row),
                None if dim.kind == JoinKind::Left => joined.push(pad),
                None => return Some(None),
            }
        }
        let mut changed: SmallVec<[(usize, Value); 8]> = SmallVec::new();
        for (c, &read) in self.reads.iter().enumerate() {
            if read & parts != 0 {
                let value = self.output_column(c, &joined);
                if value != old[c] {
                    changed.push((c, value));
                }
            }
        }
        if changed.is_empty() {
            return None;
        }
        let mut row: SharedRow = old.iter().cloned().collect();
        let columns = std::sync::Arc::get_mut(&mut row).expect("a row made here");
        for (c, value) in changed.drain(..) {
            columns[c] = value;
        }
        Some(Some(row))
    }

    /// The parts recomputing the row of a root row whose `parts` changed
    /// reads: those, and every part a column reading one of them reads.
    fn parts_needed(&self, parts: u32) -> u32 {
        match parts {
            EVERY_PART => EVERY_PART,
            _ => self.reads.iter().filter(|&&read| read & parts != 0).fold(parts, |needed, read| needed | read),
        }
    }

    /// Starts loading what recomputing the rows of the dirty root slots
    /// after the `i`th will read, one stage of the chain of pointers per
    /// slot ahead: the slot, then its row, then each input's slot for the
    /// row's keys (and the view's for its key), then those rows, then their
    /// text. The slots are spread over indexes of hundreds of thousands of
    /// rows, so the cost of a row is its cache misses; loaded ahead, they
    /// overlap instead of following one another (as the hand-written engine
    /// does). Inputs a slot's row will not look up are not loaded.
    fn prefetch_ahead(&self, dirty: &[Dirty], i: usize, previous: &KeyIndex<SharedRow>, key_columns: &[usize]) {
        let slot = |ahead: usize| dirty.get(i + ahead).map(|d| (d.slot as usize, d));
        if let Some((s, _)) = slot(5) {
            crate::idmap::prefetch(self.roots.slots.as_ptr().wrapping_add(s));
        }
        if let Some((s, _)) = slot(4) {
            crate::idmap::prefetch_values(&self.roots.slots[s].0);
        }
        if let Some((s, d)) = slot(3) {
            let root = &self.roots.slots[s].0;
            for (dim, key) in self.one_column_keys(root, d.needed) {
                dim.rows.prefetch(key);
            }
            if let Some(key) = previous_key(root, d.parts, key_columns) {
                previous.prefetch(key);
            }
        }
        for (ahead, text) in [(2, false), (1, true)] {
            if let Some((s, d)) = slot(ahead) {
                let root = &self.roots.slots[s].0;
                for (dim, key) in self.one_column_keys(root, d.needed) {
                    if let Some(rows) = dim.rows.peek(key) {
                        rows.prefetch(text);
                    }
                }
                if let Some(row) = previous_key(root, d.parts, key_columns).and_then(|key| previous.peek(key)) {
                    match text {
                        false => crate::idmap::prefetch_shared(row),
                        // A patched row is a clone of it: its texts' counts.
                        true => crate::idmap::prefetch_text_counts(row),
                    }
                }
            }
        }
    }

    /// Each input joined on one root column, with the key a root row looks
    /// it up by: the keys loading ahead can use (an input joined on several
    /// columns has no integer key to load ahead, so its key is not built).
    /// Only the inputs in `needed` ([`Self::parts_needed`]) are given.
    fn one_column_keys<'a>(&'a self, root: &'a [Value], needed: u32) -> impl Iterator<Item = (&'a Dim, &'a [Value])> {
        self.dims.iter().enumerate().filter_map(move |(j, dim)| match dim.root_on[..] {
            [c] if needed & part_bit(j + 1) != 0 => root.get(c).map(|v| (dim, std::slice::from_ref(v))),
            _ => None,
        })
    }

    /// The change of `root ⋈ d1 ⋈ ... ⋈ dk` for these changes of its inputs.
    /// Each input's changes meet the root as it was and the inputs before
    /// it as they are now (their changes applied), the ones after as they
    /// were; the root's changes then meet every input as it is now. The
    /// parts add up to new output minus old, term by term.
    pub fn step(&mut self, root: &Delta, dims: &[&Delta]) -> Delta {
        let mut out = Vec::new();
        for (i, delta) in dims.iter().enumerate() {
            if !delta.is_empty() {
                self.apply_dim(i, delta, &mut out);
            }
        }
        // An update arrives as its old row and its new one, one after the
        // other: they mostly look the inputs up by the same keys.
        let mut memo = Memo::new(self.dims.len());
        for (row, d) in root {
            self.product(row, *d, None, &mut memo, &mut out);
        }
        self.apply_root(root);
        out
    }

    fn apply_dim(&mut self, i: usize, delta: &Delta, out: &mut Delta) {
        let mut by_key: AHashMap<Key, Vec<(&SharedRow, isize)>> = AHashMap::new();
        for (row, d) in delta {
            // A row whose key has a NULL meets no root row.
            if let Some(key) = self.dims[i].key_of_row(row) {
                by_key.entry(key).or_default().push((row, *d));
            }
        }
        for (key, changes) in by_key {
            let dim = &mut self.dims[i];
            let had = dim.rows.contains_key(key.as_slice());
            for (row, d) in &changes {
                add(&mut dim.rows, key.as_slice(), SharedRow::clone(row), *d);
            }
            let has = dim.rows.contains_key(key.as_slice());
            let dim = &self.dims[i];
            let Some(referrers) = self.referred[dim.referred].slots.get(key.as_slice()) else { continue };
            // What the input contributes to each referring root row changes
            // by its changed rows; under a LEFT JOIN, the NULL padding goes
            // when the key gets rows and comes back when it loses them.
            let mut parts: Vec<Part> = changes.iter().map(|(row, d)| (Some(&row[..]), *d)).collect();
            if dim.kind == JoinKind::Left && had != has {
                parts.push((None, if has { -1 } else { 1 }));
            }
            // The root rows of one key often share the other inputs' keys
            // too (a user's orders, for the user's address).
            let mut memo = Memo::new(self.dims.len());
            for &slot in referrers {
                let (row, n) = &self.roots.slots[slot as usize];
                self.product(row, *n, Some((i, &parts)), &mut memo, out);
            }
        }
    }

    /// Adds to `out` the output rows of `root` (counted `n` times), with
    /// every input as its state has it, except input `i` of `special`,
    /// which contributes the given parts. Each input is looked up once (or
    /// not at all, when `memo`'s previous root row had the same key).
    fn product<'a, O: Output>(&'a self, root: &'a [Value], n: isize, special: Option<(usize, &'a [Part<'a>])>, memo: &mut Memo<'a>, out: &mut O) {
        let mut found: SmallVec<[Found<'a>; 8]> = SmallVec::new();
        let previous = memo.root.replace(root);
        for (j, dim) in self.dims.iter().enumerate() {
            if let Some((i, changed)) = special {
                if i == j {
                    found.push(Found::Parts(changed, &self.nulls[..dim.width]));
                    continue;
                }
            }
            let rows = match (previous, memo.found[j]) {
                (Some(previous), Some(rows)) if dim.same_key(previous, root) => rows,
                _ => {
                    let rows = dim.key_of_root(root, &mut memo.key).and_then(|key| dim.rows.get(key));
                    memo.found[j] = Some(rows);
                    rows
                }
            };
            found.push(match rows {
                Some(rows) => Found::Rows(rows),
                None if dim.kind == JoinKind::Left => Found::Pad(&self.nulls[..dim.width]),
                // An inner join without a match: no output row. The inputs
                // after this one are not looked up, so forget what the memo
                // has of them.
                None => {
                    memo.found[j + 1..].iter_mut().for_each(|f| *f = None);
                    return;
                }
            });
        }
        let mut parts: SmallVec<[&'a [Value]; 8]> = SmallVec::new();
        parts.push(root);
        self.emit(&found, n, &mut parts, out);
    }

    /// The output rows of the joined row in `parts` (each input's row side
    /// by side, none copied) with every combination of the rows `found`
    /// for the inputs after it.
    fn emit<'a, O: Output>(&self, found: &[Found<'a>], n: isize, parts: &mut SmallVec<[&'a [Value]; 8]>, out: &mut O) {
        let Some((first, rest)) = found.split_first() else {
            out.put(self, parts, n);
            return;
        };
        let mut with = |part: &'a [Value], m: isize, parts: &mut SmallVec<[&'a [Value]; 8]>| {
            parts.push(part);
            self.emit(rest, n * m, parts, out);
            parts.pop();
        };
        match *first {
            Found::Rows(rows) => rows.iter().for_each(|(r, m)| with(r, *m, parts)),
            Found::Pad(nulls) => with(nulls, 1, parts),
            Found::Parts(changed, nulls) => changed.iter().for_each(|&(part, m)| with(part.unwrap_or(nulls), m, parts)),
        }
    }

    /// Takes the root's changes into its slots and into each input's
    /// referrers. An update (a row that goes, then a new one) keeps its
    /// slot, so the referrers change only for the keys that changed.
    fn apply_root(&mut self, root: &Delta) {
        self.apply_root_collecting(&mut Cow::Borrowed(root), &mut Vec::new());
    }

    /// [`Self::apply_root`], adding to `filled` the slots that got a row
    /// or more copies of one, each with the parts of its joined row that
    /// changed ([`dirty_slot`]); an owned root's new rows move into their
    /// slots.
    fn apply_root_collecting(&mut self, root: &mut Input<'_>, filled: &mut Vec<u64>) {
        let mut buf = Row::new();
        // A slot whose row just went, kept for the next new row.
        let mut vacated: Option<u32> = None;
        for at in 0..root.len() {
            self.roots.prefetch_ahead(root, at);
            let (row, d) = &root[at];
            if *d == 0 {
                continue;
            }
            match self.roots.find(row) {
                Some(slot) => {
                    let n = &mut self.roots.slots[slot as usize].1;
                    *n += d;
                    if *d > 0 {
                        filled.push(dirty_slot(slot, EVERY_PART));
                    }
                    if *n == 0 {
                        self.roots.unlink(slot);
                        if let Some(earlier) = vacated.replace(slot) {
                            self.vacate(earlier, &mut buf);
                        }
                    }
                }
                None => {
                    let d = *d;
                    let row = take_row(root, at);
                    filled.push(match vacated.take() {
                        Some(slot) => dirty_slot(slot, self.reuse(slot, row, d, &mut buf)),
                        None => dirty_slot(self.fill(row, d, &mut buf), EVERY_PART),
                    });
                }
            }
        }
        if let Some(slot) = vacated {
            self.vacate(slot, &mut buf);
        }
    }

    /// Puts `row` into a slot whose row went in this step, and moves the
    /// slot between referrers where the two rows' keys differ.
    ///
    /// Returns the parts of the slot's joined row that changed: the root,
    /// and each input it looks up by another key now; everything when the
    /// new row has another output key (a keyed star's) than the old.
    fn reuse(&mut self, slot: u32, row: SharedRow, d: isize, buf: &mut Row) -> u32 {
        let old = std::mem::replace(&mut self.roots.slots[slot as usize], (row, d)).0;
        self.roots.link(slot);
        let row = &self.roots.slots[slot as usize].0;
        let mut parts = match &self.keyed {
            Some(key) if key.iter().all(|&c| old[c] == row[c]) => ROOT,
            _ => EVERY_PART,
        };
        for referred in &mut self.referred {
            if same_key(&referred.root_on, &old, row) {
                continue;
            }
            parts |= referred.parts;
            if let Some(key) = key_of_root(&referred.root_on, &old, buf) {
                unrefer(&mut referred.slots, key, slot);
            }
            if let Some(key) = key_of_root(&referred.root_on, row, buf) {
                refer(&mut referred.slots, key, slot);
            }
        }
        parts
    }

    /// Puts a new root row into a free slot (or a new one) and makes each
    /// input's key refer to it.
    fn fill(&mut self, row: SharedRow, d: isize, buf: &mut Row) -> u32 {
        let slot = self.roots.insert(row, d);
        let row = &self.roots.slots[slot as usize].0;
        for referred in &mut self.referred {
            if let Some(key) = key_of_root(&referred.root_on, row, buf) {
                refer(&mut referred.slots, key, slot);
            }
        }
        slot
    }

    /// Frees a slot whose row went (and is already unlinked from the rows'
    /// table): no input's key refers to it any more.
    fn vacate(&mut self, slot: u32, buf: &mut Row) {
        let row = std::mem::take(&mut self.roots.slots[slot as usize].0);
        for referred in &mut self.referred {
            if let Some(key) = key_of_root(&referred.root_on, &row, buf) {
                unrefer(&mut referred.slots, key, slot);
            }
        }
        self.roots.free.push(slot);
    }
}

impl Star {
    /// Column `c` of the output row of the joined row in `parts`.
    fn output_column(&self, c: usize, parts: &[&[Value]]) -> Value {
        match &self.project {
            Some(exprs) => eval(&exprs[c], &Parts(parts)),
            None => Parts(parts).column(c).clone(),
        }
    }

    /// The output row of the joined row in `parts`, in one allocation.
    fn joined(&self, parts: &[&[Value]]) -> SharedRow {
        match &self.project {
            Some(exprs) => eval_all(exprs, parts),
            None => {
                let whole = Parts(parts);
                (0..parts.iter().map(|p| p.len()).sum()).map(|c| whole.column(c).clone()).collect()
            }
        }
    }
}

/// Where a star's output rows go: a delta, or the one row of a keyed
/// star's root row, made as the view keeps it.
trait Output {
    fn put(&mut self, star: &Star, parts: &[&[Value]], n: isize);
}

impl Output for Delta {
    fn put(&mut self, star: &Star, parts: &[&[Value]], n: isize) {
        self.push((star.joined(parts), n));
    }
}

impl Output for Option<SharedRow> {
    fn put(&mut self, star: &Star, parts: &[&[Value]], _: isize) {
        debug_assert!(self.is_none(), "a keyed star's inputs have one row per join key");
        *self = Some(star.joined(parts));
    }
}

/// What one input contributes to the output rows of one root row.
#[derive(Clone, Copy)]
enum Found<'a> {
    /// The rows of the root row's key.
    Rows(&'a KeyRows),
    /// No row: a LEFT JOIN pads with these NULLs.
    Pad(&'a [Value]),
    /// The changed rows of the input whose changes are being applied, and
    /// the NULLs it pads with.
    Parts(&'a [Part<'a>], &'a [Value]),
}

/// The look-ups of the previous root row, by input: reused for the next
/// root row when it has the same key.
struct Memo<'a> {
    root: Option<&'a [Value]>,
    found: Vec<Option<Option<&'a KeyRows>>>,
    /// Scratch space for a composite key.
    key: Row,
}

impl Memo<'_> {
    fn new(dims: usize) -> Self {
        Memo { root: None, found: vec![None; dims], key: Row::new() }
    }
}

/// The bit of part `p` of a joined row in a dirty slot's parts: the root
/// is part 0, the inputs follow. Inputs past the 31st share the last bit
/// (a change of one counts as a change of each).
fn part_bit(p: usize) -> u32 {
    1 << p.min(31)
}

const ROOT: u32 = 1;

/// A joined row all of whose parts may have changed: a new root row.
const EVERY_PART: u32 = u32::MAX;

/// A dirty root slot and the parts that changed for it, in one number
/// (slot above, parts below), so that sorting brings a slot's together.
fn dirty_slot(slot: u32, parts: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(parts)
}

fn dirty_slot_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// A dirty root slot: the parts of its joined row that changed, and the
/// parts recomputing its row reads ([`Star::parts_needed`]).
#[derive(Clone, Copy)]
struct Dirty {
    slot: u32,
    parts: u32,
    needed: u32,
}

/// For each output column of a star over a root `root_width` columns wide
/// and these inputs, the parts it reads ([`part_bit`]).
fn parts_read(root_width: usize, dims: &[Dim], project: Option<&[Expr]>) -> Vec<u32> {
    let widths: SmallVec<[usize; 8]> = std::iter::once(root_width).chain(dims.iter().map(|d| d.width)).collect();
    let part_of = |mut c: usize| {
        for (p, &width) in widths.iter().enumerate() {
            if c < width {
                return part_bit(p);
            }
            c -= width;
        }
        panic!("column {c} past the joined row's end")
    };
    match project {
        Some(exprs) => exprs
            .iter()
            .map(|e| {
                let mut columns = Vec::new();
                e.columns(&mut columns);
                columns.into_iter().fold(0, |parts, c| parts | part_of(c))
            })
            .collect(),
        None => (0..widths.iter().sum()).map(part_of).collect(),
    }
}

/// Sorted, with each slot once and all its parts.
fn merge_dirty(mut dirty: Vec<u64>) -> Vec<u64> {
    dirty.sort_unstable();
    dirty.dedup_by(|next, kept| {
        let same = dirty_slot_of(*next) == dirty_slot_of(*kept);
        if same {
            *kept |= *next;
        }
        same
    });
    dirty
}

/// The key of a root row's previous output row, to load ahead, when the
/// row will be patched and its key is one column.
fn previous_key<'a>(root: &'a [Value], parts: u32, key_columns: &[usize]) -> Option<&'a [Value]> {
    match key_columns {
        [c] if parts != EVERY_PART => root.get(*c).map(std::slice::from_ref),
        _ => None,
    }
}

/// The key a root row looks up the inputs joined on `root_on` by; `None`
/// when one of its columns is NULL (NULL equals nothing).
fn key_of_root<'r>(root_on: &[usize], root: &'r [Value], buf: &'r mut Row) -> Option<&'r [Value]> {
    if let [c] = root_on[..] {
        return (!root[c].is_null()).then(|| std::slice::from_ref(&root[c]));
    }
    buf.clear();
    buf.extend(root_on.iter().map(|&c| root[c].clone()));
    (!buf.iter().any(Value::is_null)).then_some(&buf[..])
}

/// Whether two root rows have the same values in the columns `root_on`.
fn same_key(root_on: &[usize], a: &[Value], b: &[Value]) -> bool {
    root_on.iter().all(|&c| a[c] == b[c])
}

fn refer(referrers: &mut KeyIndex<Referrers>, key: &[Value], slot: u32) {
    referrers.get_or_insert_with(key, Referrers::new).push(slot);
}

fn unrefer(referrers: &mut KeyIndex<Referrers>, key: &[Value], slot: u32) {
    if let Some(slots) = referrers.get_mut(key) {
        if let Some(at) = slots.iter().position(|&s| s == slot) {
            slots.swap_remove(at);
        }
        if slots.is_empty() {
            referrers.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{consolidate, Join};
    use std::collections::BTreeMap;

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    fn sorted(delta: Delta) -> Delta {
        let mut d = consolidate(delta);
        d.sort();
        d
    }

    /// A keyed star's rows by key equal the rows its changes add up to, over
    /// random upserts and deletes that keep the root unique on its first
    /// column and each input unique on its join column: rows moving between
    /// keys, join keys going NULL, inputs' rows coming and going under
    /// inner and LEFT joins.
    #[test]
    fn a_keyed_star_keeps_the_rows_its_changes_add_up_to() {
        // root (id, a, b); d1 (a, x) inner on a; d2 (b, y) left on b; the
        // output reads the root alone, each input alone, and both inputs
        // (x + y) and an input with the root (COALESCE(y, b)), so that a
        // change of one input recomputes some columns and keeps the others.
        let dims = || vec![(JoinKind::Inner, vec![(1, 0)], 2), (JoinKind::Left, vec![(2, 0)], 2)];
        let mut project: Vec<Expr> = [0, 4, 6, 2].into_iter().map(Expr::Column).collect();
        project.push(Expr::Binary(crate::expr::BinaryOp::Add, Box::new(Expr::Column(4)), Box::new(Expr::Column(6))));
        project.push(Expr::Call(crate::expr::Func::Coalesce, vec![Expr::Column(6), Expr::Column(2)]));
        let mut star = Star::new(3, dims(), Some(project.clone()));
        let mut keyed = Star::new(3, dims(), Some(project));
        keyed.keyed(vec![0]);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
        let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
        // Each input's rows by their unique column.
        let mut live: [BTreeMap<i64, Row>; 3] = Default::default();
        let mut expected: BTreeMap<Row, isize> = BTreeMap::new();
        let mut got: BTreeMap<Row, Row> = BTreeMap::new();
        // The same rows by key, as the view keeps them for the star.
        let mut previous: KeyIndex<SharedRow> = KeyIndex::default();
        for batch in 0..2_000 {
            let mut deltas: [Delta; 3] = Default::default();
            let mut touched: [Vec<i64>; 3] = Default::default();
            for _ in 0..1 + next(5) {
                let input = next(3) as usize;
                let id = next(if input == 0 { 12 } else { 5 }) as i64;
                if touched[input].contains(&id) {
                    continue; // one change per row and batch, as a source consolidates them
                }
                touched[input].push(id);
                let key = |k: u64| if k == 0 { Value::Null } else { int(k as i64) };
                let new = if next(4) == 0 {
                    None
                } else if input == 0 {
                    Some(vec![int(id), key(next(5)), key(next(5))])
                } else {
                    Some(vec![int(id), int(next(3) as i64)])
                };
                let old = match &new {
                    Some(row) => live[input].insert(id, row.clone()),
                    None => live[input].remove(&id),
                };
                if old == new {
                    continue;
                }
                deltas[input].extend(old.map(|r| (r.into(), -1)));
                deltas[input].extend(new.map(|r| (r.into(), 1)));
            }
            for (row, d) in star.step(&deltas[0], &[&deltas[1], &deltas[2]]) {
                *expected.entry(row.to_vec()).or_default() += d;
            }
            expected.retain(|_, n| *n != 0);
            let updates = keyed.step_keyed(
                // The root and one input owned (their rows move into the
                // star), the other borrowed (its rows shared).
                Cow::Owned(deltas[0].clone()),
                vec![Cow::Owned(deltas[1].clone()), Cow::Borrowed(&deltas[2])],
                &previous,
            );
            // A key's last update is its row now, as the view takes them.
            let mut last: BTreeMap<Row, (Option<SharedRow>, bool)> = BTreeMap::new();
            for KeyedRow { key, row, differs } in updates {
                last.insert(key.as_slice().to_vec(), (row, differs));
            }
            for (key, (row, differs)) in last {
                let before = match &row {
                    Some(row) => previous.insert(&key, row.clone()),
                    None => previous.remove(&key),
                };
                assert!(!differs || before != row, "batch {batch}: a row said to differ is the same");
                match row {
                    Some(row) => got.insert(key, row.to_vec()),
                    None => got.remove(&key),
                };
            }
            let expected_rows: Vec<&Row> = expected
                .iter()
                .map(|(row, n)| {
                    assert_eq!(*n, 1, "batch {batch}: one row per key");
                    row
                })
                .collect();
            let got_rows: Vec<&Row> = got.values().collect();
            assert_eq!(got_rows, expected_rows, "batch {batch}");
        }
    }

    /// A keyed star finds its root rows by key ([`Roots::by_key`]) until a
    /// key has a second findable row (here a root that gives a key's new
    /// row before taking its old one back); from then on by whole rows,
    /// with the same view rows as before.
    #[test]
    fn a_keyed_star_takes_a_keys_new_row_before_its_old_one_back() {
        let row = |values: &[i64]| -> SharedRow { values.iter().map(|&v| int(v)).collect() };
        let mut star = Star::new(2, vec![(JoinKind::Left, vec![(1, 0)], 2)], None);
        star.keyed(vec![0]);
        let mut view: KeyIndex<SharedRow> = KeyIndex::default();
        let mut step = |star: &mut Star, root: Delta, dim: Delta| {
            for KeyedRow { key, row, .. } in star.step_keyed(Cow::Owned(root), vec![Cow::Owned(dim)], &view) {
                match row {
                    Some(row) => view.insert(key.as_slice(), row),
                    None => view.remove(key.as_slice()),
                };
            }
            let mut rows: Vec<Row> = view.values().map(|r| r.to_vec()).collect();
            rows.sort();
            rows
        };
        let padded = |id: i64, a: i64| vec![int(id), int(a), Value::Null, Value::Null];
        let joined = |values: &[i64]| values.iter().map(|&v| int(v)).collect::<Row>();

        let rows = step(&mut star, vec![(row(&[1, 10]), 1), (row(&[2, 20]), 1)], vec![(row(&[10, 100]), 1)]);
        assert_eq!(rows, vec![joined(&[1, 10, 10, 100]), padded(2, 20)]);
        assert!(star.roots.by_key.is_some(), "a key of one column indexes the roots");

        let rows = step(&mut star, vec![(row(&[1, 20]), 1), (row(&[1, 10]), -1)], vec![]);
        assert_eq!(rows, vec![padded(1, 20), padded(2, 20)]);
        assert!(star.roots.by_key.is_none(), "a second row of key 1 sends the roots back to whole rows");

        let rows = step(&mut star, vec![], vec![(row(&[20, 200]), 1)]);
        assert_eq!(rows, vec![joined(&[1, 20, 20, 200]), joined(&[2, 20, 20, 200])]);
        let rows = step(&mut star, vec![(row(&[1, 20]), -1)], vec![]);
        assert_eq!(rows, vec![joined(&[2, 20, 20, 200])]);
    }

    /// The same changes through binary joins and through the star, batch by
    /// batch: the outputs agree, with rows of NULL keys, repeated rows, keys
    /// with several rows and LEFT JOIN padding coming and going.
    #[test]
    fn a_star_equals_its_chain_of_binary_joins() {
        // root (id, a, b); d1 (a, x) inner on a; d2 (b, y) left on b; d3 (a, z) left on a.
        let mut star =
            Star::new(3, vec![(JoinKind::Inner, vec![(1, 0)], 2), (JoinKind::Left, vec![(2, 0)], 2), (JoinKind::Left, vec![(1, 0)], 2)], None);
        let mut j1 = Join::new(JoinKind::Inner, &[(1, 0)], 2);
        let mut j2 = Join::new(JoinKind::Left, &[(2, 0)], 2);
        let mut j3 = Join::new(JoinKind::Left, &[(1, 0)], 2);
        // The same star with a Map over it: the expressions computed from
        // each joined row as it is put together.
        let project: Vec<Expr> = [0, 4, 6, 7, 8].into_iter().map(Expr::Column).collect();
        let mut projected = Star::new(
            3,
            vec![(JoinKind::Inner, vec![(1, 0)], 2), (JoinKind::Left, vec![(2, 0)], 2), (JoinKind::Left, vec![(1, 0)], 2)],
            Some(project.clone()),
        );
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
        let mut live: [Vec<Row>; 4] = Default::default();
        for _ in 0..600 {
            let mut deltas: [Delta; 4] = Default::default();
            for _ in 0..1 + next(6) {
                let input = next(4) as usize;
                let remove = !live[input].is_empty() && next(3) == 0;
                let update = !live[input].is_empty() && next(3) == 0;
                if update {
                    // An update: the old row, then the new one (one column
                    // changed, a join key or not), as a source emits it.
                    let at = next(live[input].len() as u64) as usize;
                    let old = live[input][at].clone();
                    let mut new = old.clone();
                    let column = next(new.len() as u64) as usize;
                    new[column] = if next(4) == 0 { Value::Null } else { int(next(5) as i64) };
                    live[input][at] = new.clone();
                    deltas[input].push((old.into(), -1));
                    deltas[input].push((new.into(), 1));
                } else if remove {
                    let at = next(live[input].len() as u64) as usize;
                    let row = live[input].swap_remove(at);
                    deltas[input].push((row.into(), -1));
                } else {
                    let key = |k: u64| if k == 0 { Value::Null } else { int(k as i64) };
                    let row =
                        if input == 0 { vec![int(next(20) as i64), key(next(5)), key(next(5))] } else { vec![key(next(5)), int(next(3) as i64)] };
                    live[input].push(row.clone());
                    deltas[input].push((row.into(), 1));
                }
            }
            let a = j1.step(&deltas[0], &deltas[1]);
            let b = j2.step(&a, &deltas[2]);
            let expected = j3.step(&b, &deltas[3]);
            let got = star.step(&deltas[0], &[&deltas[1], &deltas[2], &deltas[3]]);
            let got_projected = projected.step(&deltas[0], &[&deltas[1], &deltas[2], &deltas[3]]);
            assert_eq!(sorted(got_projected), sorted(crate::ops::map(&expected, None, &project)));
            assert_eq!(sorted(got), sorted(expected));
        }
    }
}
