//! A keyed table of rows with an index from a parent key to its children.

use std::collections::BTreeSet;

use ahash::AHashMap;

/// A row with a primary key and, optionally, the key of the row it belongs to.
pub trait Keyed {
    fn key(&self) -> i64;
    fn parent(&self) -> Option<i64>;
}

/// The current state of one input table: rows by primary key, and the keys of
/// the children of each parent in ascending order.
#[derive(Debug, Clone)]
pub struct Table<R> {
    rows: AHashMap<i64, R>,
    children: AHashMap<i64, BTreeSet<i64>>,
}

impl<R> Default for Table<R> {
    fn default() -> Self {
        Table { rows: AHashMap::default(), children: AHashMap::default() }
    }
}

impl<R: Keyed> Table<R> {
    pub fn get(&self, key: i64) -> Option<&R> {
        self.rows.get(&key)
    }

    /// Upserts every row of `rows`, with room made for all of them first.
    pub fn extend(&mut self, rows: Vec<R>) {
        self.rows.reserve(rows.len());
        for row in rows {
            self.upsert(row);
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Stores `row`, returning the row it replaced.
    pub fn upsert(&mut self, row: R) -> Option<R> {
        let (key, parent) = (row.key(), row.parent());
        let old = self.rows.insert(key, row);
        if let Some(old_parent) = old.as_ref().and_then(Keyed::parent) {
            if Some(old_parent) != parent {
                self.unlink(old_parent, key);
            }
        }
        if let Some(parent) = parent {
            self.children.entry(parent).or_default().insert(key);
        }
        old
    }

    /// Removes the row with `key`, returning it.
    pub fn remove(&mut self, key: i64) -> Option<R> {
        let old = self.rows.remove(&key)?;
        if let Some(parent) = old.parent() {
            self.unlink(parent, key);
        }
        Some(old)
    }

    /// The keys of `parent`'s children, ascending.
    pub fn children(&self, parent: i64) -> impl DoubleEndedIterator<Item = i64> + '_ {
        self.children.get(&parent).into_iter().flatten().copied()
    }

    pub fn rows(&self) -> impl Iterator<Item = &R> {
        self.rows.values()
    }

    fn unlink(&mut self, parent: i64, key: i64) {
        if let Some(set) = self.children.get_mut(&parent) {
            set.remove(&key);
            if set.is_empty() {
                self.children.remove(&parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Row(i64, i64);
    impl Keyed for Row {
        fn key(&self) -> i64 {
            self.0
        }
        fn parent(&self) -> Option<i64> {
            Some(self.1)
        }
    }

    #[test]
    fn moving_a_row_updates_both_parents() {
        let mut t = Table::default();
        t.upsert(Row(2, 10));
        t.upsert(Row(1, 10));
        assert_eq!(t.children(10).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(t.upsert(Row(1, 20)), Some(Row(1, 10)));
        assert_eq!(t.children(10).collect::<Vec<_>>(), vec![2]);
        assert_eq!(t.children(20).collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.remove(2), Some(Row(2, 10)));
        assert_eq!(t.children(10).count(), 0);
        assert_eq!(t.remove(2), None);
    }
}
