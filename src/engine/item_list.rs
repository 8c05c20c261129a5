//! An order's items as its view row shows them: ids ascending, each item's
//! line total, and the rendered lines joined by ` | `. One item's change edits
//! the joined text in place; joining it again from every item's stored row
//! would read each of them from wherever it sits in memory.

use rust_decimal::Decimal;
use smallvec::SmallVec;

use super::idmap::prefetch_bytes;

const SEPARATOR: &str = " | ";

/// What the list keeps of one item.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ItemRef {
    id: i64,
    /// `quantity × price`; absent when the quantity is NULL.
    line_total: Option<Decimal>,
    /// The length of the item's line in the joined text; 0 when the item has
    /// no line (a rendered line is never empty). Records are at most a few
    /// MiB, so a line's length fits.
    line_len: u32,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ItemList {
    items: SmallVec<[ItemRef; 4]>,
    /// The lines of `items`, in order, joined by [`SEPARATOR`].
    details: String,
}

impl ItemList {
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The number of items, lines or not.
    pub fn count(&self) -> i64 {
        self.items.len() as i64
    }

    /// The joined lines, or `None` when no item has one.
    pub fn details(&self) -> Option<&str> {
        (!self.details.is_empty()).then_some(self.details.as_str())
    }

    /// Each item's id, line (if it has one) and line total, ids ascending.
    pub fn entries(&self) -> impl Iterator<Item = (i64, Option<&str>, Option<Decimal>)> + '_ {
        let mut start = 0;
        self.items.iter().map(move |item| {
            let line = (item.line_len > 0).then(|| {
                let line = &self.details[start..start + item.line_len as usize];
                start += item.line_len as usize + SEPARATOR.len();
                line
            });
            (item.id, line, item.line_total)
        })
    }

    /// Starts loading the list's heap memory, which an edit reads: the
    /// joined text, and the entries once there are too many to keep inline.
    pub fn prefetch_heap(&self) {
        prefetch_bytes(self.details.as_ptr(), self.details.len());
        if self.items.spilled() {
            prefetch_bytes(self.items.as_ptr().cast(), size_of_val(self.items.as_slice()));
        }
    }

    /// The exact sum of the line totals.
    pub fn total(&self) -> Decimal {
        self.items.iter().filter_map(|item| item.line_total).fold(Decimal::new(0, 2), |sum, t| sum + t)
    }

    /// Adds item `id`, or replaces it, with its line (if any) and line total.
    pub fn upsert(&mut self, id: i64, line: Option<&str>, line_total: Option<Decimal>) {
        self.remove(id);
        let at = self.items.partition_point(|item| item.id < id);
        let line_len = match line {
            Some(line) => {
                self.insert_line(at, line);
                u32::try_from(line.len()).expect("a line is shorter than 4 GiB")
            }
            None => 0,
        };
        self.items.insert(at, ItemRef { id, line_total, line_len });
    }

    /// Removes item `id`; false when it is not in the list.
    pub fn remove(&mut self, id: i64) -> bool {
        let Ok(at) = self.items.binary_search_by_key(&id, |item| item.id) else { return false };
        let removed = self.items.remove(at);
        if removed.line_len > 0 {
            self.remove_line(at, removed.line_len as usize);
        }
        true
    }

    /// Where the line of the item at index `at` starts in the joined text,
    /// and whether a line comes before it.
    fn line_start(&self, at: usize) -> (usize, bool) {
        let before = self.items[..at].iter().filter(|item| item.line_len > 0);
        before.fold((0, false), |(start, _), item| (start + item.line_len as usize + SEPARATOR.len(), true))
    }

    /// Puts `line` into the joined text as the line of index `at` (whose
    /// entry is not in `items` yet).
    fn insert_line(&mut self, at: usize, line: &str) {
        let start = if at == self.items.len() {
            // Appending, the common case (ids grow): no walk over the list.
            (self.details.len() + SEPARATOR.len(), !self.details.is_empty())
        } else {
            self.line_start(at)
        };
        match start {
            // After the previous line: " | line", before whatever followed it.
            (start, true) => self.details.insert_str(start - SEPARATOR.len(), &[SEPARATOR, line].concat()),
            (_, false) if self.details.is_empty() => self.details.push_str(line),
            (_, false) => self.details.insert_str(0, &[line, SEPARATOR].concat()),
        }
    }

    /// Takes the line of `len` bytes that belonged to index `at` (whose entry
    /// has left `items`) out of the joined text, with one separator.
    fn remove_line(&mut self, at: usize, len: usize) {
        match self.line_start(at) {
            (start, true) => drop(self.details.drain(start - SEPARATOR.len()..start + len)),
            (_, false) if self.details.len() == len => self.details.clear(),
            (_, false) => drop(self.details.drain(..len + SEPARATOR.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Edits in place give what joining every line from scratch gives.
    #[test]
    fn edits_equal_joining_from_scratch() {
        for seed in 0..200 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut list = ItemList::default();
            let mut model: BTreeMap<i64, (Option<String>, Option<Decimal>)> = BTreeMap::new();
            for step in 0..300 {
                let id = rng.random_range(0..12);
                if rng.random_bool(0.3) {
                    assert_eq!(list.remove(id), model.remove(&id).is_some());
                } else {
                    let line = rng.random_bool(0.8).then(|| format!("item {id} step {step}"));
                    let total = rng.random_bool(0.8).then(|| Decimal::new(rng.random_range(0..10_000), 2));
                    list.upsert(id, line.as_deref(), total);
                    model.insert(id, (line, total));
                }
                let lines: Vec<&str> = model.values().filter_map(|(l, _)| l.as_deref()).collect();
                let joined = lines.join(SEPARATOR);
                assert_eq!(list.details(), (!joined.is_empty()).then_some(joined.as_str()), "seed {seed} step {step}");
                assert_eq!(list.count(), model.len() as i64);
                let total = model.values().filter_map(|(_, t)| *t).fold(Decimal::new(0, 2), |a, b| a + b);
                assert_eq!(list.total(), total);
                let entries: Vec<_> = list.entries().map(|(id, line, total)| (id, line.map(str::to_string), total)).collect();
                let expected: Vec<_> = model.iter().map(|(&id, (line, total))| (id, line.clone(), *total)).collect();
                assert_eq!(entries, expected, "seed {seed} step {step}");
            }
        }
    }
}
