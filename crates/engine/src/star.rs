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

use ahash::AHashMap;
use hashbrown::HashTable;

use crate::eval::{eval, Parts};
use crate::expr::Expr;
use crate::key::{Key, KeyMap};
use crate::ops::{Delta, KeyRows};
use crate::plan::JoinKind;
use crate::value::{Row, Value};

/// One joined input: its rows by join key, and the root rows that refer to
/// each key.
struct Dim {
    kind: JoinKind,
    /// The root's columns of the condition, and this input's, pairwise.
    root_on: Vec<usize>,
    dim_on: Vec<usize>,
    width: usize,
    rows: KeyMap<KeyRows>,
    referrers: KeyMap<Vec<u32>>,
}

/// Scratch space reused across the output rows of a step: a composite
/// join key.
#[derive(Default)]
struct Buffers {
    key: Row,
}

/// A row a join input contributes to an output row: one of its rows, or
/// the NULLs a LEFT JOIN pads with.
type Part<'a> = (Option<&'a Row>, isize);

impl Dim {
    /// The join key a root row looks this input up by; `None` when one of
    /// its columns is NULL (NULL equals nothing).
    fn key_of_root<'r>(&self, root: &'r Row, buf: &'r mut Row) -> Option<&'r [Value]> {
        if let [c] = self.root_on[..] {
            return (!root[c].is_null()).then(|| std::slice::from_ref(&root[c]));
        }
        buf.clear();
        buf.extend(self.root_on.iter().map(|&c| root[c].clone()));
        (!buf.iter().any(Value::is_null)).then_some(&buf[..])
    }

    fn key_of_row(&self, row: &Row) -> Option<Key> {
        if self.dim_on.iter().any(|&c| row[c].is_null()) {
            return None;
        }
        Some(match self.dim_on[..] {
            [c] => Key::One(row[c].clone()),
            _ => Key::Many(self.dim_on.iter().map(|&c| row[c].clone()).collect()),
        })
    }
}

/// The root's rows, each stored once in a slot, found by value through a
/// table of slot numbers.
#[derive(Default)]
struct Roots {
    slots: Vec<(Row, isize)>,
    free: Vec<u32>,
    by_row: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl Roots {
    fn find(&self, row: &Row) -> Option<u32> {
        let hash = self.hasher.hash_one(row);
        self.by_row.find(hash, |&s| self.slots[s as usize].0 == *row).copied()
    }

    /// The slot of `row`, and whether it was just made.
    fn slot(&mut self, row: &Row) -> (u32, bool) {
        if let Some(slot) = self.find(row) {
            return (slot, false);
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = (row.clone(), 0);
                slot
            }
            None => {
                self.slots.push((row.clone(), 0));
                (self.slots.len() - 1) as u32
            }
        };
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_row.insert_unique(hasher.hash_one(row), slot, |&s| hasher.hash_one(&slots[s as usize].0));
        (slot, true)
    }

    fn release(&mut self, slot: u32) {
        let hash = self.hasher.hash_one(&self.slots[slot as usize].0);
        if let Ok(entry) = self.by_row.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        self.slots[slot as usize] = (Vec::new(), 0);
        self.free.push(slot);
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
                rows: KeyMap::default(),
                referrers: KeyMap::default(),
            })
            .collect();
        let widest = dims.iter().map(|d: &Dim| d.width).max().unwrap_or(0);
        Star { dims, roots: Roots::default(), project, nulls: vec![Value::Null; widest] }
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
        let mut bufs = Buffers::default();
        for (row, d) in root {
            self.product(row, *d, None, &mut bufs, &mut out);
        }
        self.apply_root(root);
        out
    }

    fn apply_dim(&mut self, i: usize, delta: &Delta, out: &mut Delta) {
        let mut by_key: AHashMap<Key, Vec<(&Row, isize)>> = AHashMap::new();
        for (row, d) in delta {
            // A row whose key has a NULL meets no root row.
            if let Some(key) = self.dims[i].key_of_row(row) {
                by_key.entry(key).or_default().push((row, *d));
            }
        }
        let mut bufs = Buffers::default();
        for (key, changes) in by_key {
            let dim = &mut self.dims[i];
            let had = dim.rows.contains_key(&key);
            for (row, d) in &changes {
                add(&mut dim.rows, &key, row, *d);
            }
            let Some(referrers) = dim.referrers.get(&key) else { continue };
            let has = dim.rows.contains_key(&key);
            // What the input contributes to each referring root row changes
            // by its changed rows; under a LEFT JOIN, the NULL padding goes
            // when the key gets rows and comes back when it loses them.
            let mut parts: Vec<Part> = changes.iter().map(|(row, d)| (Some(*row), *d)).collect();
            if dim.kind == JoinKind::Left && had != has {
                parts.push((None, if has { -1 } else { 1 }));
            }
            let referrers = referrers.clone();
            for slot in referrers {
                let (row, n) = &self.roots.slots[slot as usize];
                self.product(row, *n, Some((i, &parts)), &mut bufs, out);
            }
        }
    }

    /// Adds to `out` the output rows of `root` (counted `n` times), with
    /// every input as its state has it, except input `i` of `special`,
    /// which contributes the given parts.
    fn product(&self, root: &Row, n: isize, special: Option<(usize, &[Part])>, bufs: &mut Buffers, out: &mut Delta) {
        let mut parts: Vec<&[Value]> = Vec::with_capacity(self.dims.len() + 1);
        parts.push(root);
        self.extend(0, root, n, special, &mut parts, &mut bufs.key, out);
    }

    /// Adds input `j`'s matches to the joined row in `parts` (each input's
    /// row side by side, none copied), and the inputs after it, down to the
    /// output rows.
    #[allow(clippy::too_many_arguments)]
    fn extend<'a>(
        &'a self,
        j: usize,
        root: &Row,
        n: isize,
        special: Option<(usize, &[Part<'a>])>,
        parts: &mut Vec<&'a [Value]>,
        buf: &mut Row,
        out: &mut Delta,
    ) {
        let Some(dim) = self.dims.get(j) else {
            let row = match &self.project {
                Some(exprs) => {
                    let joined = Parts(parts);
                    exprs.iter().map(|e| eval(e, &joined)).collect()
                }
                None => {
                    let mut row = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                    parts.iter().for_each(|p| row.extend_from_slice(p));
                    row
                }
            };
            out.push((row, n));
            return;
        };
        let nulls = &self.nulls[..dim.width];
        let mut emit = |part: Option<&'a Row>, m: isize, parts: &mut Vec<&'a [Value]>, buf: &mut Row| {
            parts.push(part.map_or(nulls, |r| &r[..]));
            self.extend(j + 1, root, n * m, special, parts, buf, out);
            parts.pop();
        };
        if let Some((i, changed)) = special {
            if i == j {
                for &(part, m) in changed {
                    emit(part, m, parts, buf);
                }
                return;
            }
        }
        let mut key_buf = std::mem::take(buf);
        let rows = dim.key_of_root(root, &mut key_buf).and_then(|key| dim.rows.get(key));
        match rows {
            Some(rows) => {
                for (r, m) in rows.iter() {
                    emit(Some(r), *m, parts, buf);
                }
            }
            None if dim.kind == JoinKind::Left => emit(None, 1, parts, buf),
            None => {}
        }
        *buf = key_buf;
    }

    /// Takes the root's changes into its slots and into each input's
    /// referrers.
    fn apply_root(&mut self, root: &Delta) {
        let mut buf = Row::new();
        for (row, d) in root {
            let (slot, new) = self.roots.slot(row);
            if new {
                for dim in &mut self.dims {
                    if let Some(key) = dim.key_of_root(row, &mut buf) {
                        match dim.referrers.get_mut(key) {
                            Some(slots) => slots.push(slot),
                            None => {
                                dim.referrers.insert(Key::from_slice(key), vec![slot]);
                            }
                        }
                    }
                }
            }
            let n = &mut self.roots.slots[slot as usize].1;
            *n += d;
            if *n == 0 {
                for dim in &mut self.dims {
                    if let Some(key) = dim.key_of_root(row, &mut buf) {
                        if let Some(slots) = dim.referrers.get_mut(key) {
                            slots.retain(|&s| s != slot);
                            if slots.is_empty() {
                                dim.referrers.remove(key);
                            }
                        }
                    }
                }
                self.roots.release(slot);
            }
        }
    }
}

fn add(index: &mut KeyMap<KeyRows>, key: &Key, row: &Row, d: isize) {
    match index.get_mut(key) {
        Some(rows) => {
            rows.add(row, d);
            if rows.is_empty() {
                index.remove(key);
            }
        }
        None => {
            index.insert(key.clone(), KeyRows::one(row, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{consolidate, Join};

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    fn sorted(delta: Delta) -> Delta {
        let mut d = consolidate(delta);
        d.sort();
        d
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
        let mut seed = 7u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        let mut live: [Vec<Row>; 4] = Default::default();
        for _ in 0..300 {
            let mut deltas: [Delta; 4] = Default::default();
            for _ in 0..1 + next(6) {
                let input = next(4) as usize;
                let remove = !live[input].is_empty() && next(3) == 0;
                if remove {
                    let at = next(live[input].len() as u64) as usize;
                    let row = live[input].swap_remove(at);
                    deltas[input].push((row, -1));
                } else {
                    let key = |k: u64| if k == 0 { Value::Null } else { int(k as i64) };
                    let row =
                        if input == 0 { vec![int(next(20) as i64), key(next(5)), key(next(5))] } else { vec![key(next(5)), int(next(3) as i64)] };
                    live[input].push(row.clone());
                    deltas[input].push((row, 1));
                }
            }
            let a = j1.step(&deltas[0], &deltas[1]);
            let b = j2.step(&a, &deltas[2]);
            let expected = j3.step(&b, &deltas[3]);
            let got = star.step(&deltas[0], &[&deltas[1], &deltas[2], &deltas[3]]);
            let got_projected = projected.step(&deltas[0], &[&deltas[1], &deltas[2], &deltas[3]]);
            assert_eq!(sorted(got_projected), sorted(crate::ops::map(&expected, &project)));
            assert_eq!(sorted(got), sorted(expected));
        }
    }
}
