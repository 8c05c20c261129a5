//! An order's items as its view row shows them: ids ascending, each item's
//! line total, and the rendered lines joined by ` | `. The joined text is
//! shared with the view row that shows it, so an edit writes a new text
//! (the previous row keeps the old one) from the old text and the one line
//! that changed; joining it again from every item's stored row would read
//! each of them from wherever it sits in memory.

use rust_decimal::Decimal;
use smallvec::SmallVec;

use crate::change::Text;
use cdcview_engine::idmap::{prefetch_bytes, prefetch_text};

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

/// One item as [`ItemList::upsert_all`] takes it: id, line, line total.
pub type ItemLine<'a> = (i64, Option<&'a str>, Option<Decimal>);

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ItemList {
    items: SmallVec<[ItemRef; 4]>,
    /// The lines of `items`, in order, joined by [`SEPARATOR`].
    details: Text,
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
    pub fn details(&self) -> Option<&Text> {
        (!self.details.is_empty()).then_some(&self.details)
    }

    /// Each item's id, line (if it has one) and line total, ids ascending.
    pub fn entries(&self) -> impl Iterator<Item = ItemLine<'_>> + '_ {
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
    /// joined text with its reference counts (which lie before it), and the
    /// entries once there are too many to keep inline.
    pub fn prefetch_heap(&self) {
        prefetch_text(&self.details);
        if self.items.spilled() {
            prefetch_bytes(self.items.as_ptr().cast(), size_of_val(self.items.as_slice()));
        }
    }

    /// The exact sum of the line totals, as SQL's `SUM` of `DECIMAL(10,2)`
    /// products writes it (`0.00` when they cancel out or there are none).
    pub fn total(&self) -> Decimal {
        let sum = self.items.iter().filter_map(|item| item.line_total).fold(Decimal::new(0, 2), |sum, t| sum + t);
        super::order_details::sql_exact(sum, 2)
    }

    /// Adds item `id`, or replaces it, with its line (if any) and line total.
    /// `scratch` is a buffer to write the new joined text in.
    pub fn upsert(&mut self, id: i64, line: Option<&str>, line_total: Option<Decimal>, scratch: &mut String) {
        self.upsert_all([(id, line, line_total)], scratch);
    }

    /// [`upsert`](Self::upsert) for many items, writing the joined text once
    /// (a restore fills each order's list this way).
    pub fn upsert_all<'a>(&mut self, items: impl IntoIterator<Item = ItemLine<'a>>, scratch: &mut String) {
        self.edit(scratch, |list, text| {
            for (id, line, line_total) in items {
                list.remove_in(id, text);
                list.insert_in(id, line, line_total, text);
            }
        });
    }

    /// Removes item `id`; false when it is not in the list.
    pub fn remove(&mut self, id: i64, scratch: &mut String) -> bool {
        if self.items.binary_search_by_key(&id, |item| item.id).is_err() {
            return false;
        }
        self.edit(scratch, |list, text| {
            list.remove_in(id, text);
        });
        true
    }

    /// Runs `edit` on the entries and on a copy of the joined text in
    /// `scratch`, then keeps the edited text as a new shared text (unless
    /// it came out the same).
    fn edit(&mut self, scratch: &mut String, edit: impl FnOnce(&mut Self, &mut String)) {
        scratch.clear();
        scratch.push_str(&self.details);
        edit(self, scratch);
        if *scratch != self.details {
            self.details = Text::from(scratch.as_str());
        }
    }

    /// Removes item `id` from the entries and its line from `text`; false
    /// when it is not in the list.
    fn remove_in(&mut self, id: i64, text: &mut String) -> bool {
        let Ok(at) = self.items.binary_search_by_key(&id, |item| item.id) else { return false };
        let removed = self.items.remove(at);
        if removed.line_len > 0 {
            self.remove_line(at, removed.line_len as usize, text);
        }
        true
    }

    /// Adds item `id`, which is not in the list, to the entries and its line
    /// (if any) to `text`.
    fn insert_in(&mut self, id: i64, line: Option<&str>, line_total: Option<Decimal>, text: &mut String) {
        let at = self.items.partition_point(|item| item.id < id);
        let line_len = match line {
            Some(line) => {
                self.insert_line(at, line, text);
                u32::try_from(line.len()).expect("a line is shorter than 4 GiB")
            }
            None => 0,
        };
        self.items.insert(at, ItemRef { id, line_total, line_len });
    }

    /// Where the line of the item at index `at` starts in the joined text,
    /// and whether a line comes before it.
    fn line_start(&self, at: usize) -> (usize, bool) {
        let before = self.items[..at].iter().filter(|item| item.line_len > 0);
        before.fold((0, false), |(start, _), item| (start + item.line_len as usize + SEPARATOR.len(), true))
    }

    /// Puts `line` into the joined `text` as the line of index `at` (whose
    /// entry is not in `items` yet).
    fn insert_line(&self, at: usize, line: &str, text: &mut String) {
        let start = if at == self.items.len() {
            // Appending, the common case (ids grow): no walk over the list.
            (text.len() + SEPARATOR.len(), !text.is_empty())
        } else {
            self.line_start(at)
        };
        match start {
            // After the previous line: " | line", before whatever followed it.
            (start, true) => text.insert_str(start - SEPARATOR.len(), &[SEPARATOR, line].concat()),
            (_, false) if text.is_empty() => text.push_str(line),
            (_, false) => text.insert_str(0, &[line, SEPARATOR].concat()),
        }
    }

    /// Takes the line of `len` bytes that belonged to index `at` (whose entry
    /// has left `items`) out of the joined `text`, with one separator.
    fn remove_line(&self, at: usize, len: usize, text: &mut String) {
        match self.line_start(at) {
            (start, true) => drop(text.drain(start - SEPARATOR.len()..start + len)),
            (_, false) if text.len() == len => text.clear(),
            (_, false) => drop(text.drain(..len + SEPARATOR.len())),
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
            let mut scratch = String::new();
            let mut model: BTreeMap<i64, (Option<String>, Option<Decimal>)> = BTreeMap::new();
            for step in 0..300 {
                let id = rng.random_range(0..12);
                if rng.random_bool(0.3) {
                    assert_eq!(list.remove(id, &mut scratch), model.remove(&id).is_some());
                } else {
                    let line = rng.random_bool(0.8).then(|| format!("item {id} step {step}"));
                    let total = rng.random_bool(0.8).then(|| Decimal::new(rng.random_range(0..10_000), 2));
                    list.upsert(id, line.as_deref(), total, &mut scratch);
                    model.insert(id, (line, total));
                }
                let lines: Vec<&str> = model.values().filter_map(|(l, _)| l.as_deref()).collect();
                let joined = lines.join(SEPARATOR);
                assert_eq!(list.details().map(Text::as_str), (!joined.is_empty()).then_some(joined.as_str()), "seed {seed} step {step}");
                assert_eq!(list.count(), model.len() as i64);
                let total = model.values().filter_map(|(_, t)| *t).fold(Decimal::new(0, 2), |a, b| a + b);
                assert_eq!(list.total(), total);
                let entries: Vec<_> = list.entries().map(|(id, line, total)| (id, line.map(str::to_string), total)).collect();
                let expected: Vec<_> = model.iter().map(|(&id, (line, total))| (id, line.clone(), *total)).collect();
                assert_eq!(entries, expected, "seed {seed} step {step}");
            }
        }
    }

    /// Filling a list in one go gives what item-by-item upserts give.
    #[test]
    fn upsert_all_equals_one_upsert_at_a_time() {
        let lines: Vec<(i64, Option<String>, Option<Decimal>)> =
            [(3, Some("c"), Some(300)), (1, None, Some(100)), (7, Some("g"), None), (5, Some("e"), Some(500)), (3, Some("c2"), Some(301))]
                .into_iter()
                .map(|(id, line, total)| (id, line.map(str::to_string), total.map(|t| Decimal::new(t, 2))))
                .collect();
        let mut scratch = String::new();
        let (mut one_by_one, mut at_once) = (ItemList::default(), ItemList::default());
        for (id, line, total) in &lines {
            one_by_one.upsert(*id, line.as_deref(), *total, &mut scratch);
        }
        at_once.upsert_all(lines.iter().map(|(id, line, total)| (*id, line.as_deref(), *total)), &mut scratch);
        assert_eq!(at_once, one_by_one);
        assert_eq!(at_once.details().map(Text::as_str), Some("c2 | e | g"));
        assert_eq!(at_once.total(), Decimal::new(901, 2));
    }

    /// An edit leaves a copy of the joined text taken before it (a view
    /// row's) as it was.
    #[test]
    fn an_edit_writes_a_new_text() {
        let long = "a line long enough not to be stored inline";
        let mut scratch = String::new();
        let mut list = ItemList::default();
        list.upsert(1, Some(long), None, &mut scratch);
        let shown = list.details().cloned().unwrap();
        list.upsert(2, Some(long), None, &mut scratch);
        assert_eq!(shown.as_str(), long);
        assert_eq!(list.details().map(Text::as_str), Some([long, long].join(SEPARATOR).as_str()));
        assert!(list.remove(1, &mut scratch));
        assert!(!list.remove(1, &mut scratch));
        assert_eq!(list.details().map(Text::as_str), Some(long));
    }

    /// As MySQL's `SUM(quantity * price)` writes it: totals that cancel out
    /// give `0.00`, not `0` or `-0.00`.
    #[test]
    fn a_total_that_cancels_out_is_zero_with_the_scale() {
        let mut scratch = String::new();
        let mut list = ItemList::default();
        assert_eq!(list.total().to_string(), "0.00");
        list.upsert(1, Some("a"), Some("-1.50".parse().unwrap()), &mut scratch);
        list.upsert(2, Some("b"), Some("1.50".parse().unwrap()), &mut scratch);
        assert_eq!(list.total().to_string(), "0.00");
        list.upsert(3, Some("c"), Some("-0.25".parse().unwrap()), &mut scratch);
        assert_eq!(list.total().to_string(), "-0.25");
    }
}
