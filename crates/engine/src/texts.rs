//! Long texts shared between a source's rows: one copy of each distinct
//! text of a column where its values repeat (dictionary encoding).
//!
//! A text longer than a value holds in place (see [`CompactText`]) takes a
//! block of its own per row; product names, streets or statuses repeat
//! across rows, and a source keeps every row. A column's texts are looked
//! up as its rows come, and a text seen before is shared with the rows
//! that have it. A column whose texts mostly differ (emails, say) stops
//! being looked up, and its texts are let go.

use hashbrown::HashSet;

use crate::value::{CompactText, SharedRow, Value};

/// Distinct texts a column keeps at most: beyond, texts only held here
/// are let go, and if the column is still full, new texts are not kept.
const MOST_TEXTS: usize = 1 << 16;

/// Look-ups after which a column whose texts were found less than half
/// the time stops being looked up.
const TRIAL: u64 = 1 << 16;

/// One source's columns of texts.
#[derive(Default)]
pub struct SharedTexts {
    columns: Vec<ColumnTexts>,
}

#[derive(Default)]
struct ColumnTexts {
    texts: HashSet<CompactText, ahash::RandomState>,
    looked: u64,
    found: u64,
    /// The look-up from which a full column may let go of texts again:
    /// a column full of texts its rows hold is swept once per
    /// [`MOST_TEXTS`] look-ups at most.
    next_sweep: u64,
    /// Its texts mostly differ: no longer looked up.
    off: bool,
}

impl SharedTexts {
    /// Makes `row`'s long texts the copies this source's rows already
    /// share, where there are some, and keeps new ones for the rows to
    /// come. A row someone else holds too is left as it is.
    pub fn share(&mut self, row: &mut SharedRow) {
        if !row.iter().any(|v| matches!(v, Value::Text(t) if t.is_heap())) {
            return;
        }
        let Some(values) = std::sync::Arc::get_mut(row) else { return };
        if self.columns.len() < values.len() {
            self.columns.resize_with(values.len(), ColumnTexts::default);
        }
        for (value, column) in values.iter_mut().zip(&mut self.columns) {
            if let Value::Text(text) = value {
                if text.is_heap() && !column.off {
                    column.share(text);
                }
            }
        }
    }
}

impl ColumnTexts {
    fn share(&mut self, text: &mut CompactText) {
        self.looked += 1;
        match self.texts.get(text) {
            Some(kept) => {
                self.found += 1;
                *text = kept.clone();
            }
            None => {
                if self.texts.len() >= MOST_TEXTS && self.looked >= self.next_sweep {
                    // Texts no row holds any longer go first.
                    self.texts.retain(|t| t.holders() != Some(1));
                    self.next_sweep = self.looked + MOST_TEXTS as u64;
                }
                if self.texts.len() < MOST_TEXTS {
                    self.texts.insert(text.clone());
                }
            }
        }
        if self.looked == TRIAL && self.found < TRIAL / 2 {
            self.off = true;
            self.texts = HashSet::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[&str]) -> SharedRow {
        values.iter().map(|v| Value::text(v)).collect()
    }

    fn text_at(row: &SharedRow, c: usize) -> &CompactText {
        match &row[c] {
            Value::Text(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_repeated_long_text_is_one_copy_and_short_or_unique_ones_are_left() {
        let mut texts = SharedTexts::default();
        let name = "Ergonomic Granite Keyboard";
        let mut a = row(&["short", name]);
        let mut b = row(&["short", name]);
        texts.share(&mut a);
        texts.share(&mut b);
        assert_eq!(a, row(&["short", name]), "the values stay the same");
        assert_eq!(text_at(&a, 1).as_ptr(), text_at(&b, 1).as_ptr(), "one copy of the long text");
        assert_eq!(text_at(&a, 1).holders(), Some(3), "the two rows and the dictionary");
        // A row held elsewhere too is not changed.
        let mut c = row(&["x", name]);
        let held = c.clone();
        texts.share(&mut c);
        assert_ne!(text_at(&c, 1).as_ptr(), text_at(&a, 1).as_ptr());
        drop(held);
    }

    #[test]
    fn a_column_of_distinct_texts_stops_being_looked_up_and_lets_them_go() {
        let mut texts = SharedTexts::default();
        let mut kept = Vec::new();
        for i in 0..TRIAL {
            let mut r = row(&[&format!("user{i}@example.com"), "Ergonomic Granite Keyboard"]);
            texts.share(&mut r);
            kept.push(r);
        }
        assert!(texts.columns[0].off && texts.columns[0].texts.is_empty(), "emails differ");
        assert!(!texts.columns[1].off && texts.columns[1].texts.len() == 1, "names repeat");
        assert_eq!(text_at(&kept[0], 0).holders(), Some(1), "the row alone holds its email");
    }

    #[test]
    fn a_full_column_lets_go_of_texts_no_row_holds() {
        let mut texts = SharedTexts::default();
        for i in 0..MOST_TEXTS {
            // Found as often as not: the column stays on.
            for _ in 0..2 {
                let mut r = row(&[&format!("a long text number {i}")]);
                texts.share(&mut r);
            }
        }
        assert_eq!(texts.columns[0].texts.len(), MOST_TEXTS);
        let mut r = row(&["one more long text here"]);
        texts.share(&mut r);
        assert_eq!(texts.columns[0].texts.len(), 1, "only the new text is held by a row");
    }
}
