//! An ordered multiset (each key with its count) that is a sorted list
//! while it holds few keys and a B-tree once it holds many.
//!
//! The engine keeps one per group (a `STRING_AGG`'s values, a `MIN`'s or
//! `MAX`'s) and one per partition (a `DISTINCT ON`'s rows in order), and
//! most hold one to three keys: an order's items, its status events, a
//! user's addresses. A `BTreeMap` allocates a node of eleven entries for its
//! first key, 144 to 720 bytes here, hundreds of thousands of times; a
//! sorted list holds what it has.

use std::collections::BTreeMap;

/// Keys a list holds before they move to a B-tree: inserting into a sorted
/// list moves the keys after the new one, cheap while they are few.
const FEW_KEYS: usize = 32;

pub enum OrderedCounts<K> {
    /// Grown a little at a time (a `Vec` would hold four on its first
    /// key): most lists stay at one to three.
    Few(Vec<(K, isize)>),
    /// Boxed: the list's 24 bytes then hold either (one per group or
    /// partition, mostly lists), not 32.
    Many(Box<BTreeMap<K, isize>>),
}

impl<K> OrderedCounts<K> {
    /// Starts loading the sorted list's entries (a hint only; a B-tree's
    /// nodes are left alone).
    #[inline]
    pub fn prefetch(&self) {
        if let OrderedCounts::Few(entries) = self {
            crate::idmap::prefetch_bytes(entries.as_ptr().cast(), size_of_val(entries.as_slice()));
        }
    }
}

impl<K> Default for OrderedCounts<K> {
    fn default() -> Self {
        OrderedCounts::Few(Vec::new())
    }
}

impl<K: Ord> OrderedCounts<K> {
    /// Adds `d` to the count of `key`; at zero the key goes.
    pub fn add(&mut self, key: K, d: isize) {
        match self {
            OrderedCounts::Few(entries) => {
                let found = entries.binary_search_by(|(k, _)| k.cmp(&key));
                self.add_found(found, key, d);
            }
            OrderedCounts::Many(entries) => {
                use std::collections::btree_map::Entry;
                match entries.entry(key) {
                    Entry::Vacant(entry) => {
                        if d != 0 {
                            entry.insert(d);
                        }
                    }
                    Entry::Occupied(mut entry) => {
                        *entry.get_mut() += d;
                        if *entry.get() == 0 {
                            entry.remove();
                        }
                    }
                }
            }
        }
    }

    /// Finds `key` once and adds to its count what `f` returns, given the
    /// key as stored (or `key` itself when absent), its count (0 when
    /// absent) and the keys after it with their counts: a look at a key's
    /// neighbours and the change of its count in one search of a list. A
    /// stored key is kept; `key` is stored when it is new.
    pub fn change(&mut self, key: K, f: impl FnOnce(&K, isize, Iter<'_, K>) -> isize) {
        let entries = match self {
            OrderedCounts::Few(entries) => entries,
            OrderedCounts::Many(map) => {
                use std::ops::Bound::{Excluded, Unbounded};
                let later = Iter::Range(map.range((Excluded(&key), Unbounded)));
                let d = match map.get_key_value(&key) {
                    Some((stored, n)) => f(stored, *n, later),
                    None => f(&key, 0, later),
                };
                return self.add(key, d);
            }
        };
        let found = entries.binary_search_by(|(k, _)| k.cmp(&key));
        let d = match found {
            Ok(at) => f(&entries[at].0, entries[at].1, Iter::Few(entries[at + 1..].iter())),
            Err(at) => f(&key, 0, Iter::Few(entries[at..].iter())),
        };
        self.add_found(found, key, d);
    }

    /// [`Self::add`] on a list, where a search of it for `key` gave `found`.
    fn add_found(&mut self, found: Result<usize, usize>, key: K, d: isize) {
        let OrderedCounts::Few(entries) = self else { unreachable!("a list was searched") };
        match found {
            Ok(at) => {
                entries[at].1 += d;
                if entries[at].1 == 0 {
                    entries.remove(at);
                }
            }
            Err(_) if d == 0 => {}
            Err(at) if entries.len() < FEW_KEYS => {
                if entries.len() == entries.capacity() {
                    entries.reserve_exact(entries.len().div_ceil(2).max(1));
                }
                entries.insert(at, (key, d));
            }
            Err(_) => {
                let mut many: BTreeMap<K, isize> = entries.drain(..).collect();
                many.insert(key, d);
                *self = OrderedCounts::Many(Box::new(many));
            }
        }
    }

    /// The keys with their counts, in order.
    pub fn iter(&self) -> Iter<'_, K> {
        match self {
            OrderedCounts::Few(entries) => Iter::Few(entries.iter()),
            OrderedCounts::Many(entries) => Iter::Many(entries.iter()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            OrderedCounts::Few(entries) => entries.len(),
            OrderedCounts::Many(entries) => entries.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest key.
    pub fn first(&self) -> Option<&K> {
        self.iter().next().map(|(k, _)| k)
    }

    /// The largest key.
    pub fn last(&self) -> Option<&K> {
        match self {
            OrderedCounts::Few(entries) => entries.last().map(|(k, _)| k),
            OrderedCounts::Many(entries) => entries.keys().next_back(),
        }
    }
}

pub enum Iter<'a, K> {
    Few(std::slice::Iter<'a, (K, isize)>),
    Many(std::collections::btree_map::Iter<'a, K, isize>),
    Range(std::collections::btree_map::Range<'a, K, isize>),
}

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = (&'a K, isize);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Few(entries) => entries.next().map(|(k, n)| (k, *n)),
            Iter::Many(entries) => entries.next().map(|(k, n)| (k, *n)),
            Iter::Range(entries) => entries.next().map(|(k, n)| (k, *n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Against a `BTreeMap` of counts, across the move from list to tree:
    /// the same keys, counts and order after every change (by `add` or
    /// `change`, which sees the key's count and the keys after it as the
    /// map has them), and the same count and keys after any key.
    #[test]
    fn ordered_counts_agree_with_a_btree_map() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for round in 0..200 {
            let mut ours = OrderedCounts::default();
            let mut model: BTreeMap<i64, isize> = BTreeMap::new();
            // Some rounds stay few, some grow past the list's limit.
            let keys = if round % 2 == 0 { 8 } else { 3 * FEW_KEYS as i64 };
            for _ in 0..400 {
                let key = rng.random_range(0..keys);
                let d = rng.random_range(-2i64..=2) as isize;
                if rng.random_bool(0.5) {
                    ours.add(key, d);
                } else {
                    // What `change` shows of the key before it counts `d`.
                    ours.change(key, |stored, n, later| {
                        assert_eq!((*stored, n), (key, model.get(&key).copied().unwrap_or(0)), "round {round}");
                        let later: Vec<(i64, isize)> = later.map(|(k, n)| (*k, n)).collect();
                        let expected: Vec<(i64, isize)> = model.range(key + 1..).map(|(k, n)| (*k, *n)).collect();
                        assert_eq!(later, expected, "round {round}, after {key}");
                        d
                    });
                }
                let n = model.entry(key).or_default();
                *n += d;
                if *n == 0 {
                    model.remove(&key);
                }
                let expected: Vec<(i64, isize)> = model.iter().map(|(k, n)| (*k, *n)).collect();
                let got: Vec<(i64, isize)> = ours.iter().map(|(k, n)| (*k, n)).collect();
                assert_eq!(got, expected, "round {round}");
                assert_eq!(ours.len(), model.len());
                assert_eq!(ours.first(), model.keys().next());
                assert_eq!(ours.last(), model.keys().next_back());
                // Any key, there or not, changed by nothing: its count and
                // the keys after it, and the counts stay as they were.
                let probe = rng.random_range(-1..=keys);
                ours.change(probe, |stored, n, later| {
                    assert_eq!((*stored, n), (probe, model.get(&probe).copied().unwrap_or(0)), "round {round}, probe {probe}");
                    let later: Vec<(i64, isize)> = later.map(|(k, n)| (*k, n)).collect();
                    let expected: Vec<(i64, isize)> = model.range(probe + 1..).map(|(k, n)| (*k, *n)).collect();
                    assert_eq!(later, expected, "round {round}, after {probe}");
                    0
                });
                assert_eq!(ours.len(), model.len(), "round {round}, probe {probe}");
            }
        }
    }
}
