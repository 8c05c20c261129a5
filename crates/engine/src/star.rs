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

use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};

use ahash::AHashMap;
use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::eval::{eval_all, Columns, Parts};
use crate::expr::Expr;
use crate::key::{Key, KeyIndex};
use crate::ops::{add, join_key, take_row, Delta, Input, KeyRows};
use crate::plan::JoinKind;
use crate::value::{Row, SharedRow, Value};

/// One joined input: its rows by join key, and the root rows that refer to
/// each key.
struct Dim {
    kind: JoinKind,
    /// The root's columns of the condition, and this input's, pairwise.
    root_on: Vec<usize>,
    dim_on: Vec<usize>,
    width: usize,
    rows: KeyIndex<KeyRows>,
    referrers: KeyIndex<Referrers>,
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
        if let [c] = self.root_on[..] {
            return (!root[c].is_null()).then(|| std::slice::from_ref(&root[c]));
        }
        buf.clear();
        buf.extend(self.root_on.iter().map(|&c| root[c].clone()));
        (!buf.iter().any(Value::is_null)).then_some(&buf[..])
    }

    /// Whether two root rows look this input up by the same key.
    fn same_key(&self, a: &[Value], b: &[Value]) -> bool {
        self.root_on.iter().all(|&c| a[c] == b[c])
    }

    fn key_of_row(&self, row: &[Value]) -> Option<Key> {
        join_key(row, &self.dim_on)
    }

    /// Starts loading, for the changes two and one after the `at`th of
    /// `delta`, their key's slots and then the rows those hold (which
    /// applying a change compares with its row).
    fn prefetch_ahead(&self, delta: &Delta, at: usize) {
        let [c] = self.dim_on[..] else { return };
        if let Some((row, _)) = delta.get(at + 2) {
            let key = std::slice::from_ref(&row[c]);
            self.rows.prefetch(key);
            self.referrers.prefetch(key);
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
}

impl Roots {
    fn hash(&self, row: &[Value]) -> u64 {
        hash_row(&self.hasher, self.hashed.as_deref(), row)
    }

    fn find(&self, row: &SharedRow) -> Option<u32> {
        self.by_row.find(self.hash(row), |&s| self.slots[s as usize].0 == *row).copied()
    }

    /// Hashes the rows by these columns from now on (`None`: whole rows).
    fn hash_by(&mut self, columns: Option<Vec<usize>>) {
        self.hashed = columns;
        self.by_row.clear();
        for slot in 0..self.slots.len() as u32 {
            // A slot holds a findable row while its count is not zero.
            if self.slots[slot as usize].1 != 0 {
                self.link(slot);
            }
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
        let (slots, hasher, hashed) = (&self.slots, &self.hasher, self.hashed.as_deref());
        self.by_row.insert_unique(hash_row(hasher, hashed, &slots[slot as usize].0), slot, |&s| hash_row(hasher, hashed, &slots[s as usize].0));
    }

    /// Makes a slot's row no longer findable (the slot keeps it).
    fn unlink(&mut self, slot: u32) {
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
    roots: Roots,
    /// The expressions of a `Map` over the joins, computed here from each
    /// joined row as its inputs' rows side by side, so that the wide row is
    /// never copied, stored or passed on.
    project: Option<Vec<Expr>>,
    /// Set by [`Star::keyed`]: the root columns that hold the output's key.
    keyed: Option<Vec<usize>>,
    /// What a LEFT JOIN pads with: NULLs, as many as the widest input.
    nulls: Row,
}

impl Star {
    /// `dims`: for each joined input in join order, its kind, the condition
    /// as (root column, input column) pairs, and its width.
    /// `project`: the expressions of a `Map` over the joined rows, if any.
    pub fn new(dims: Vec<DimSpec>, project: Option<Vec<Expr>>) -> Self {
        let dims: Vec<Dim> = dims
            .into_iter()
            .map(|(kind, on, width)| Dim {
                kind,
                root_on: on.iter().map(|(l, _)| *l).collect(),
                dim_on: on.iter().map(|(_, r)| *r).collect(),
                width,
                rows: KeyIndex::default(),
                referrers: KeyIndex::default(),
            })
            .collect();
        let widest = dims.iter().map(|d: &Dim| d.width).max().unwrap_or(0);
        Star { dims, roots: Roots::default(), project, keyed: None, nulls: vec![Value::Null; widest] }
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
    /// may have changed, its row now (`None`: no row), as (key, row) pairs;
    /// a key may come twice (a removed root row, then its new one), the
    /// last one counting.
    ///
    /// Rows of inputs it owns move into its state; the others' are shared.
    pub fn step_keyed(&mut self, mut root: Input<'_>, mut dims: Vec<Input<'_>>) -> Vec<(Key, Option<SharedRow>)> {
        let key_columns = self.keyed.clone().expect("a keyed star");
        // Sized for a change of each root row and input row touching one
        // root row: growing these lists copied them over and over.
        let touched = root.len() + dims.iter().map(|d| d.len()).sum::<usize>();
        let mut updates = Vec::with_capacity(touched);
        // Removed root rows first: their key's new row, if any, comes after.
        for (row, d) in root.iter() {
            if *d < 0 {
                updates.push((Key::of(row, &key_columns), None));
            }
        }
        let mut dirty: Vec<u32> = Vec::with_capacity(touched);
        self.apply_root_collecting(&mut root, &mut dirty);
        for (i, delta) in dims.iter_mut().enumerate() {
            let dim = &mut self.dims[i];
            for at in 0..delta.len() {
                dim.prefetch_ahead(delta, at);
                let (row, d) = &delta[at];
                let d = *d;
                let Some(key) = dim.key_of_row(row) else { continue };
                add(&mut dim.rows, key.as_slice(), take_row(delta, at), d);
                if let Some(referrers) = dim.referrers.get(key.as_slice()) {
                    dirty.extend_from_slice(referrers);
                }
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        let mut memo = Memo::new(self.dims.len());
        for (i, &slot) in dirty.iter().enumerate() {
            self.prefetch_ahead(&dirty, i);
            let (row, n) = &self.roots.slots[slot as usize];
            if *n <= 0 {
                continue;
            }
            debug_assert_eq!(*n, 1, "a keyed star's root has one row per key");
            // Slots come in slot order: the previous root row seldom shares
            // a join key, and comparing for it costs more than it saves.
            memo.root = None;
            let mut out: Option<SharedRow> = None;
            self.product(row, 1, None, &mut memo, &mut out);
            updates.push((Key::of(row, &key_columns), out));
        }
        updates
    }

    /// Starts loading what recomputing the rows of the dirty root slots
    /// after the `i`th will read, one stage of the chain of pointers per
    /// slot ahead: the slot, then its row, then each input's slot for the
    /// row's keys, then those inputs' rows, then their text. The slots are
    /// spread over indexes of hundreds of thousands of rows, so the cost of
    /// a row is its cache misses; loaded ahead, they overlap instead of
    /// following one another (as the hand-written engine does).
    fn prefetch_ahead(&self, dirty: &[u32], i: usize) {
        let slot = |ahead: usize| dirty.get(i + ahead).map(|&s| s as usize);
        if let Some(s) = slot(5) {
            crate::idmap::prefetch(self.roots.slots.as_ptr().wrapping_add(s));
        }
        if let Some(s) = slot(4) {
            crate::idmap::prefetch_values(&self.roots.slots[s].0);
        }
        if let Some(s) = slot(3) {
            for (dim, key) in self.one_column_keys(&self.roots.slots[s].0) {
                dim.rows.prefetch(key);
            }
        }
        for (ahead, text) in [(2, false), (1, true)] {
            if let Some(s) = slot(ahead) {
                for (dim, key) in self.one_column_keys(&self.roots.slots[s].0) {
                    if let Some(rows) = dim.rows.peek(key) {
                        rows.prefetch(text);
                    }
                }
            }
        }
    }

    /// Each input joined on one root column, with the key a root row looks
    /// it up by: the keys loading ahead can use (an input joined on several
    /// columns has no integer key to load ahead, so its key is not built).
    fn one_column_keys<'a>(&'a self, root: &'a [Value]) -> impl Iterator<Item = (&'a Dim, &'a [Value])> {
        self.dims.iter().filter_map(move |dim| match dim.root_on[..] {
            [c] => Some((dim, std::slice::from_ref(&root[c]))),
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
            let Some(referrers) = dim.referrers.get(key.as_slice()) else { continue };
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
    /// or more copies of one; an owned root's new rows move into their slots.
    fn apply_root_collecting(&mut self, root: &mut Input<'_>, filled: &mut Vec<u32>) {
        let mut buf = Row::new();
        // A slot whose row just went, kept for the next new row.
        let mut vacated: Option<u32> = None;
        for at in 0..root.len() {
            let (row, d) = &root[at];
            if *d == 0 {
                continue;
            }
            match self.roots.find(row) {
                Some(slot) => {
                    let n = &mut self.roots.slots[slot as usize].1;
                    *n += d;
                    if *d > 0 {
                        filled.push(slot);
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
                    let slot = match vacated.take() {
                        Some(slot) => {
                            self.reuse(slot, row, d, &mut buf);
                            slot
                        }
                        None => self.fill(row, d, &mut buf),
                    };
                    filled.push(slot);
                }
            }
        }
        if let Some(slot) = vacated {
            self.vacate(slot, &mut buf);
        }
    }

    /// Puts `row` into a slot whose row went in this step, and moves the
    /// slot between referrers where the two rows' keys differ.
    fn reuse(&mut self, slot: u32, row: SharedRow, d: isize, buf: &mut Row) {
        let old = std::mem::replace(&mut self.roots.slots[slot as usize], (row, d)).0;
        self.roots.link(slot);
        let row = &self.roots.slots[slot as usize].0;
        for dim in &mut self.dims {
            if dim.same_key(&old, row) {
                continue;
            }
            if let Some(key) = dim.key_of_root(&old, buf) {
                unrefer(&mut dim.referrers, key, slot);
            }
            if let Some(key) = dim.key_of_root(row, buf) {
                refer(&mut dim.referrers, key, slot);
            }
        }
    }

    /// Puts a new root row into a free slot (or a new one) and makes each
    /// input's key refer to it.
    fn fill(&mut self, row: SharedRow, d: isize, buf: &mut Row) -> u32 {
        let slot = self.roots.insert(row, d);
        let row = &self.roots.slots[slot as usize].0;
        for dim in &mut self.dims {
            if let Some(key) = dim.key_of_root(row, buf) {
                refer(&mut dim.referrers, key, slot);
            }
        }
        slot
    }

    /// Frees a slot whose row went (and is already unlinked from the rows'
    /// table): no input's key refers to it any more.
    fn vacate(&mut self, slot: u32, buf: &mut Row) {
        let row = std::mem::take(&mut self.roots.slots[slot as usize].0);
        for dim in &mut self.dims {
            if let Some(key) = dim.key_of_root(&row, buf) {
                unrefer(&mut dim.referrers, key, slot);
            }
        }
        self.roots.free.push(slot);
    }
}

impl Star {
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
        // root (id, a, b); d1 (a, x) inner on a; d2 (b, y) left on b.
        let dims = || vec![(JoinKind::Inner, vec![(1, 0)], 2), (JoinKind::Left, vec![(2, 0)], 2)];
        let project: Vec<Expr> = [0, 4, 6, 2].into_iter().map(Expr::Column).collect();
        let mut star = Star::new(dims(), Some(project.clone()));
        let mut keyed = Star::new(dims(), Some(project));
        keyed.keyed(vec![0]);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
        let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
        // Each input's rows by their unique column.
        let mut live: [BTreeMap<i64, Row>; 3] = Default::default();
        let mut expected: BTreeMap<Row, isize> = BTreeMap::new();
        let mut got: BTreeMap<Row, Row> = BTreeMap::new();
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
            for (key, row) in keyed.step_keyed(
                // The root and one input owned (their rows move into the
                // star), the other borrowed (its rows shared).
                Cow::Owned(deltas[0].clone()),
                vec![Cow::Owned(deltas[1].clone()), Cow::Borrowed(&deltas[2])],
            ) {
                let key = key.as_slice().to_vec();
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

    /// The same changes through binary joins and through the star, batch by
    /// batch: the outputs agree, with rows of NULL keys, repeated rows, keys
    /// with several rows and LEFT JOIN padding coming and going.
    #[test]
    fn a_star_equals_its_chain_of_binary_joins() {
        // root (id, a, b); d1 (a, x) inner on a; d2 (b, y) left on b; d3 (a, z) left on a.
        let mut star =
            Star::new(vec![(JoinKind::Inner, vec![(1, 0)], 2), (JoinKind::Left, vec![(2, 0)], 2), (JoinKind::Left, vec![(1, 0)], 2)], None);
        let mut j1 = Join::new(JoinKind::Inner, &[(1, 0)], 2);
        let mut j2 = Join::new(JoinKind::Left, &[(2, 0)], 2);
        let mut j3 = Join::new(JoinKind::Left, &[(1, 0)], 2);
        // The same star with a Map over it: the expressions computed from
        // each joined row as it is put together.
        let project: Vec<Expr> = [0, 4, 6, 7, 8].into_iter().map(Expr::Column).collect();
        let mut projected = Star::new(
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
