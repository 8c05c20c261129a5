//! The operators of a plan, each with the state it needs to turn changes of
//! its inputs into changes of its output.
//!
//! Changes are Z-set deltas: `(row, +n)` adds n copies, `(row, -n)` takes
//! them away. A batch of changes goes through the operators in order, each
//! reading its inputs' changes of this batch and writing its own.

use crate::expr::{AggFunc, Aggregate, Expr};
use crate::plan::JoinKind;
use crate::types::SqlType;
use ahash::AHashMap;
use smallvec::SmallVec;
use std::borrow::Cow;
use std::sync::Arc;

use crate::key::{Key, KeyIndex};
use crate::ordered::{self, OrderedCounts};
use rust_decimal::Decimal;

use crate::eval::{eval, eval_all, eval_text_into, truth};
use crate::value::{sql_cmp, sql_exact, Row, SharedRow, Value};

/// Rows are shared, not copied: a source's row, the change that carried
/// it and a join's or star's row of it are one allocation, as are a group's
/// output row and what the joins over it keep.
pub type Delta = Vec<(SharedRow, isize)>;

/// An operator's input delta: its own when the operator is the delta's only
/// reader (its rows can move into the operator's state), else shared.
pub type Input<'a> = Cow<'a, Delta>;

/// The row of the `at`th change of `input`: moved out when the input is
/// owned (the change keeps an empty row), else shared.
pub(crate) fn take_row(input: &mut Input<'_>, at: usize) -> SharedRow {
    match input {
        Cow::Borrowed(delta) => SharedRow::clone(&delta[at].0),
        Cow::Owned(delta) => std::mem::take(&mut delta[at].0),
    }
}

/// Adds up the changes of equal rows and drops those that cancel; rows keep
/// the order of their first change (an update's old row stays just before
/// its new one, which the star join's look-ups and slots make use of).
pub fn consolidate(delta: Delta) -> Delta {
    if delta.len() <= 1 {
        return delta.into_iter().filter(|(_, d)| *d != 0).collect();
    }
    let hasher = ahash::RandomState::new();
    let mut first: hashbrown::HashTable<usize> = hashbrown::HashTable::with_capacity(delta.len());
    let mut out: Delta = Vec::with_capacity(delta.len());
    for (row, d) in delta {
        let hash = hasher.hash_one(&row);
        match first.find(hash, |&i| out[i].0 == row) {
            Some(&i) => out[i].1 += d,
            None => {
                first.insert_unique(hash, out.len(), |&i| hasher.hash_one(&out[i].0));
                out.push((row, d));
            }
        }
    }
    out.retain(|(_, d)| *d != 0);
    out
}

pub fn filter(input: &Delta, predicate: &Expr) -> Delta {
    input.iter().filter(|(row, _)| truth(predicate, &row[..]) == Some(true)).cloned().collect()
}

/// Not consolidated: every operator takes unconsolidated changes, and the
/// views consolidate theirs, so hashing each (wide) mapped row here would
/// be done twice.
/// With a predicate, only the rows it keeps are mapped (a Filter below).
pub fn map(input: &Delta, predicate: Option<&Expr>, exprs: &[Expr]) -> Delta {
    input.iter().filter(|(row, _)| kept(predicate, row)).map(|(row, d)| (eval_row(exprs, row), *d)).collect()
}

/// Each expression over `row`, made as a shared row in one allocation.
#[inline]
fn eval_row(exprs: &[Expr], row: &[Value]) -> SharedRow {
    exprs.iter().map(|e| eval(e, row)).collect()
}

/// Whether a filter keeps a row (no filter keeps all).
#[inline]
fn kept(predicate: Option<&Expr>, row: &[Value]) -> bool {
    predicate.is_none_or(|p| truth(p, row) == Some(true))
}

/// The `Map` (with the filter under it) that a `GROUP BY` or a ranking
/// applies to its input's rows itself (see `Reduce::over_map`).
type InputMap = (Option<Expr>, Vec<Expr>);

/// ORDER BY columns and whether each is descending: an operator's, shared
/// by the entries it orders with them.
type OrderColumns = Arc<[(usize, bool)]>;

/// How a `STRING_AGG` over kept input rows orders its entries
/// ([`Reduce::row_order`]).
#[derive(Debug, Clone)]
enum RowOrder {
    /// By these input columns: each entry holds its input row
    /// ([`RowPiece`]).
    Columns(OrderColumns),
    /// By one integer column that is the input's primary key (a source's):
    /// each entry holds that key alone ([`KeyPiece`]), 24 bytes with its
    /// count instead of 56. A source gives a key's old row before its new
    /// one, and at most one row per key, so an entry stands for one row.
    Key { column: usize, desc: bool },
}

/// The input row a `GROUP BY` over kept rows mapped a row from, and the
/// aggregate's [`Reduce::row_order`].
type Kept<'a> = (&'a SharedRow, Option<&'a RowOrder>);

/// Maps `row` into `out` as `map` does; `false` when its filter drops it.
#[inline]
fn map_into(map: &InputMap, row: &[Value], out: &mut Row, skip: Option<usize>) -> bool {
    let (predicate, exprs) = map;
    if !kept(predicate.as_ref(), row) {
        return false;
    }
    out.clear();
    out.extend(exprs.iter().enumerate().map(|(c, e)| if Some(c) == skip { Value::Null } else { eval(e, row) }));
    true
}

/// The input column that holds a column of an operator's (mapped) rows
/// (`key`), read through the `Map` under it if any; `None` where the `Map`
/// computes it. For a one-column key: where a change's group or partition
/// is found without mapping its row, to load it ahead.
fn input_key_column(key: Option<usize>, map: Option<&InputMap>) -> Option<usize> {
    match map {
        None => key,
        Some((_, exprs)) => match exprs[key?] {
            Expr::Column(c) => Some(c),
            _ => None,
        },
    }
}

/// Starts loading the key column, by [`input_key_column`], of the change
/// at `at`: a change's row was made upstream long before, and reading its
/// key to load its group or partition ahead ([`key_at`]) waited for it.
#[inline]
pub(crate) fn prefetch_key_at(input: &Delta, at: usize, column: Option<usize>) {
    // The row's length is in its pointer: finding the value reads no row.
    if let Some(value) = input.get(at).zip(column).and_then(|((row, _), c)| row.get(c)) {
        crate::idmap::prefetch(value);
    }
}

/// The key, by [`input_key_column`], of the change at `at`.
#[inline]
fn key_at(input: &Delta, at: usize, column: Option<usize>) -> Option<&[Value]> {
    Some(std::slice::from_ref(&input.get(at)?.0[column?]))
}

/// The join key of `row` on `columns`; `None` when one of them is NULL
/// (NULL equals nothing in a join condition).
pub(crate) fn join_key(row: &[Value], columns: &[usize]) -> Option<Key> {
    if columns.iter().any(|&c| row[c].is_null()) {
        return None;
    }
    Some(Key::of(row, columns))
}

/// The rows of one join key, with their counts. Most keys of most joins
/// (and every key of a keyed star's inputs) hold one row counted once: it
/// sits in the index's own slot, with no count and no pointer to follow.
/// Few rows share a key in most other joins, so a list searched by row
/// beats hashing every (wide) row; a key with many (a busy customer's
/// orders) gets a hash map.
pub(crate) enum KeyRows {
    One(SharedRow),
    /// Rows and counts, none or more than one, or a count other than one.
    Few(Vec<(SharedRow, isize)>),
    Many(Box<AHashMap<SharedRow, isize>>),
}

/// Rows a key holds in a list before they move to a hash map.
const FEW_ROWS: usize = 16;

/// The count of a key's only row ([`KeyRows::One`]).
const ONCE: isize = 1;

impl KeyRows {
    pub(crate) fn one(row: SharedRow, d: isize) -> Self {
        match d {
            ONCE => KeyRows::One(row),
            _ => KeyRows::Few(vec![(row, d)]),
        }
    }

    pub(crate) fn iter(&self) -> KeyRowsIter<'_> {
        match self {
            KeyRows::One(row) => KeyRowsIter::One(Some(row)),
            KeyRows::Few(rows) => KeyRowsIter::Few(rows.iter()),
            KeyRows::Many(rows) => KeyRowsIter::Many(rows.iter()),
        }
    }

    /// Starts loading the values of a few rows (a key's only row, mostly),
    /// then, with `text`, the heap text they hold instead (call it once the
    /// values are in the cache).
    #[inline]
    pub(crate) fn prefetch(&self, text: bool) {
        let load = |row: &SharedRow| match text {
            true => crate::idmap::prefetch_row_text(row),
            false => crate::idmap::prefetch_values(row),
        };
        match self {
            KeyRows::One(row) => load(row),
            KeyRows::Few(rows) => rows.iter().take(2).for_each(|(row, _)| load(row)),
            KeyRows::Many(_) => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            KeyRows::One(_) => false,
            KeyRows::Few(rows) => rows.is_empty(),
            KeyRows::Many(rows) => rows.is_empty(),
        }
    }

    /// Adds `d` copies of `row` (kept, shared, only when it is new).
    pub(crate) fn add(&mut self, row: SharedRow, d: isize) {
        if d == 0 {
            return;
        }
        match self {
            KeyRows::One(_) => {
                let KeyRows::One(only) = std::mem::replace(self, KeyRows::Few(Vec::new())) else { unreachable!("matched above") };
                *self = match only == row {
                    true if d == -ONCE => KeyRows::Few(Vec::new()),
                    true => KeyRows::Few(vec![(only, ONCE + d)]),
                    false => KeyRows::Few(vec![(only, ONCE), (row, d)]),
                };
            }
            KeyRows::Few(rows) => match rows.iter().position(|(r, _)| *r == row) {
                Some(at) => {
                    rows[at].1 += d;
                    if rows[at].1 == 0 {
                        rows.swap_remove(at);
                    }
                    // Back to one row counted once: the common state again.
                    if let [(_, ONCE)] = rows[..] {
                        let (only, _) = rows.pop().expect("one row");
                        *self = KeyRows::One(only);
                    }
                }
                None if rows.is_empty() => *self = KeyRows::one(row, d),
                None if rows.len() < FEW_ROWS => rows.push((row, d)),
                None => {
                    let mut many: AHashMap<SharedRow, isize> = rows.drain(..).collect();
                    many.insert(row, d);
                    *self = KeyRows::Many(Box::new(many));
                }
            },
            KeyRows::Many(rows) => match rows.get_mut(&row) {
                Some(n) => {
                    *n += d;
                    if *n == 0 {
                        rows.remove(&row);
                    }
                }
                None => {
                    rows.insert(row, d);
                }
            },
        }
    }
}

/// The rows of one key with their counts (no allocation per look-up, as a
/// boxed iterator would need).
pub(crate) enum KeyRowsIter<'a> {
    One(Option<&'a SharedRow>),
    Few(std::slice::Iter<'a, (SharedRow, isize)>),
    Many(std::collections::hash_map::Iter<'a, SharedRow, isize>),
}

impl<'a> Iterator for KeyRowsIter<'a> {
    type Item = (&'a SharedRow, &'a isize);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            KeyRowsIter::One(row) => row.take().map(|r| (r, &ONCE)),
            KeyRowsIter::Few(rows) => rows.next().map(|(r, n)| (r, n)),
            KeyRowsIter::Many(rows) => rows.next(),
        }
    }
}

/// Both sides of a join, indexed by the join columns.
pub struct Join {
    kind: JoinKind,
    left_on: Vec<usize>,
    right_on: Vec<usize>,
    right_width: usize,
    left: KeyIndex<KeyRows>,
    right: KeyIndex<KeyRows>,
}

fn joined(l: &[Value], r: &[Value]) -> SharedRow {
    l.iter().chain(r).cloned().collect()
}

fn padded(l: &[Value], width: usize) -> SharedRow {
    l.iter().cloned().chain(std::iter::repeat_n(Value::Null, width)).collect()
}

/// The slot of `key`'s row where `old` is its only row, counted once: an
/// update of the row (a `GROUP BY`'s or `DISTINCT ON`'s old row, then its
/// new one) is a write there, where taking one out and putting the other in
/// would empty the key's entry and fill it again.
pub(crate) fn only_row<'a>(index: &'a mut KeyIndex<KeyRows>, key: &[Value], old: &SharedRow) -> Option<&'a mut SharedRow> {
    match index.get_mut(key) {
        Some(KeyRows::One(only)) if only == old => Some(only),
        _ => None,
    }
}

/// Adds `d` copies of `row` to the rows of `key` in a join index; a key
/// left without rows goes.
pub(crate) fn add(index: &mut KeyIndex<KeyRows>, key: &[Value], row: SharedRow, d: isize) {
    match index.get_mut(key) {
        Some(rows) => {
            rows.add(row, d);
            if rows.is_empty() {
                index.remove(key);
            }
        }
        None => {
            index.insert(key, KeyRows::one(row, d));
        }
    }
}

impl Join {
    pub fn new(kind: JoinKind, on: &[(usize, usize)], right_width: usize) -> Self {
        Join {
            kind,
            left_on: on.iter().map(|(l, _)| *l).collect(),
            right_on: on.iter().map(|(_, r)| *r).collect(),
            right_width,
            left: KeyIndex::default(),
            right: KeyIndex::default(),
        }
    }

    /// ΔL ⋈ R, then L' ⋈ ΔR (L' = L + ΔL): the change of L ⋈ R. A left
    /// join also pads the left rows whose key has no right rows, and moves
    /// them in and out of that state as the right side changes.
    pub fn step(&mut self, left: &Delta, right: &Delta) -> Delta {
        let mut out = Vec::new();
        let left_join = self.kind == JoinKind::Left;
        for (l, d) in left {
            match join_key(l, &self.left_on) {
                Some(key) => {
                    match self.right.get(key.as_slice()) {
                        Some(rights) => out.extend(rights.iter().map(|(r, n)| (joined(l, r), d * n))),
                        None if left_join => out.push((padded(l, self.right_width), *d)),
                        None => {}
                    }
                    add(&mut self.left, key.as_slice(), SharedRow::clone(l), *d);
                }
                None if left_join => out.push((padded(l, self.right_width), *d)),
                None => {}
            }
        }
        // Right changes by key, so that a key's move between "no right rows"
        // and "some" is seen once.
        let mut by_key: AHashMap<Key, Vec<(&SharedRow, isize)>> = AHashMap::new();
        for (r, d) in right {
            if let Some(key) = join_key(r, &self.right_on) {
                by_key.entry(key).or_default().push((r, *d));
            }
        }
        for (key, changes) in by_key {
            let had = self.right.contains_key(key.as_slice());
            if let Some(lefts) = self.left.get(key.as_slice()) {
                for (r, d) in &changes {
                    out.extend(lefts.iter().map(|(l, n)| (joined(l, r), d * n)));
                }
            }
            for (r, d) in changes {
                add(&mut self.right, key.as_slice(), SharedRow::clone(r), d);
            }
            let has = self.right.contains_key(key.as_slice());
            if left_join && had != has {
                if let Some(lefts) = self.left.get(key.as_slice()) {
                    let sign = if has { -1 } else { 1 };
                    out.extend(lefts.iter().map(|(l, n)| (padded(l, self.right_width), sign * n)));
                }
            }
        }
        consolidate(out)
    }
}

/// GROUP BY: each group's aggregates, kept up to date change by change
/// (a running count or sum, or the values in order where the aggregate
/// needs them), and its output row.
pub struct Reduce {
    n_keys: usize,
    aggregates: Vec<Aggregate>,
    /// The expressions of a `Map` over the groups' rows (the group columns,
    /// then the aggregates), computed as each row is made.
    project: Option<Vec<Expr>>,
    /// The `Map` under the groups (with the filter under it), applied to
    /// each input row here ([`Reduce::over_map`]).
    map: Option<InputMap>,
    /// A `STRING_AGG` whose value the `Map` computes and nothing else
    /// reads: (the aggregate, its `Map` column). A retraction finds the
    /// entry by its row and keeps its length, so that column is not
    /// computed for it ([`Accumulator::retract_kept`]); an insertion's is
    /// written straight into the aggregate's text, no value made of it
    /// ([`Accumulator::add_kept_text`]).
    lazy: Option<(usize, usize)>,
    /// For each aggregate, the input columns (and directions) of its ORDER
    /// BY where it is a `STRING_AGG` over kept input rows whose ORDER BY the
    /// `Map` passes on: its entries are then [`RowPiece`]s, ordered by the
    /// input row's own columns instead of a copy of them, or [`KeyPiece`]s
    /// where that is the input's integer primary key alone.
    row_order: Vec<Option<RowOrder>>,
    /// The input's primary key where it is one integer column of a source
    /// ([`Reduce::over_source`]).
    input_key: Option<usize>,
    groups: KeyIndex<Group>,
}

struct Group {
    /// How many input rows the group has.
    rows: isize,
    accumulators: Vec<Accumulator>,
    output: Option<SharedRow>,
    /// Changed in the step at hand, and listed for its output: a flag in
    /// the slot the change found anyway, where a set of keys hashed each
    /// change's key once more.
    dirty: bool,
}

/// What one aggregate keeps of a group's rows.
enum Accumulator {
    /// `COUNT(*)`, or `COUNT(x)` of the non-NULL values.
    Count(i64),
    /// Exact sums: the sum, and how many values of each scale (SQL writes
    /// the sum with the largest scale among them; all scales' counts add up
    /// to how many values there are).
    Sum { sum: Decimal, scales: ScaleCounts },
    /// A double sum (or average): the sum and how many values.
    SumDouble { sum: f64, values: i64 },
    /// The distinct values, or the values in SQL order (MIN, MAX, DISTINCT
    /// aggregates), each with its count.
    Values(OrderedCounts<SqlOrdered>),
    /// `STRING_AGG`: its rows in the aggregate's ORDER BY, and the text
    /// their values make. Kept up to date change by change: a busy group's
    /// text is long, and writing it again from its values on every change
    /// read each value where it lies on the heap.
    Ordered { values: OrderedCounts<Piece>, text: AggText },
    /// `STRING_AGG` over kept input rows, ordered by their own columns.
    OrderedRows { values: OrderedCounts<RowPiece>, text: AggText },
    /// `STRING_AGG` over a source's rows, ordered by its integer primary
    /// key ([`RowOrder::Key`]).
    OrderedKeys { values: OrderedCounts<KeyPiece>, text: AggText },
}

/// A `STRING_AGG` row: its ORDER BY values, the row it is known by, and
/// the length of its value as text (what the text holds of it after each
/// separator).
#[derive(Debug)]
struct Piece {
    keys: SortKeys,
    of: PieceOf,
    len: u32,
}

/// What a `STRING_AGG` row is known by, after its ORDER BY values: the
/// input row, where the operator's input is a source's or view's rows
/// (shared with the state that keeps them, so that the value, often a
/// line of text made for it, is not kept a second time), else its value.
#[derive(Debug)]
enum PieceOf {
    Row(SharedRow),
    Value(Value),
}

impl PieceOf {
    /// Two input rows by their values; the very same row without reading
    /// them.
    fn cmp_rows(a: &SharedRow, b: &SharedRow) -> std::cmp::Ordering {
        if Arc::ptr_eq(a, b) {
            std::cmp::Ordering::Equal
        } else {
            a.cmp(b)
        }
    }
}

impl Ord for PieceOf {
    /// A row taken out is mostly the very row put in (the state's, shared):
    /// found without comparing its values.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        match (self, other) {
            (PieceOf::Row(a), PieceOf::Row(b)) => PieceOf::cmp_rows(a, b),
            (PieceOf::Value(a), PieceOf::Value(b)) => a.cmp(b),
            (PieceOf::Row(_), PieceOf::Value(_)) => Less,
            (PieceOf::Value(_), PieceOf::Row(_)) => Greater,
        }
    }
}

impl Ord for Piece {
    /// By the ORDER BY values, then by the row (or value): rows tied on
    /// every ORDER BY value come in an order SQL leaves open. The length
    /// follows from the row.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.keys.cmp(&other.keys).then_with(|| self.of.cmp(&other.of))
    }
}

/// A `STRING_AGG` row known by its input row, which a source's or view's
/// state keeps, where the `Map` passes the ORDER BY columns on: ordered by
/// the input row's columns (the operator's, shared by its entries) as a
/// [`Piece`] is by its copies of them, in 56 bytes with its count instead
/// of 88 (an order's items: one per item). The first ORDER BY value, when
/// an integer (an id, mostly), is also held in place: a sorted list's
/// search then compares it without following a pointer per entry.
#[derive(Debug)]
struct RowPiece {
    order_by: OrderColumns,
    row: SharedRow,
    /// The first ORDER BY value, where `first_is_int`.
    first: i64,
    len: u32,
    first_is_int: bool,
}

impl RowPiece {
    fn new(order_by: &OrderColumns, row: &SharedRow, len: u32) -> Self {
        let (first, first_is_int) = match order_by.first().map(|&(c, _)| &row[c]) {
            Some(Value::Int(i)) => (*i, true),
            _ => (0, false),
        };
        RowPiece { order_by: Arc::clone(order_by), row: SharedRow::clone(row), first, len, first_is_int }
    }
}

impl Ord for RowPiece {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if self.first_is_int && other.first_is_int && self.first != other.first {
            let o = self.first.cmp(&other.first);
            return if self.order_by[0].1 { o.reverse() } else { o };
        }
        self.order_by
            .iter()
            .map(|&(c, desc)| order_by_cmp(&self.row[c], &other.row[c], desc))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| PieceOf::cmp_rows(&self.row, &other.row))
    }
}

/// A `STRING_AGG` entry of a source's row known by its integer primary key
/// ([`RowOrder::Key`]): the key, its bits flipped for a descending order (so
/// that entries sort by it plainly), and the length of its value as text.
/// Entries are equal by key alone: a retraction finds its entry whatever the
/// length it is made with.
#[derive(Debug)]
struct KeyPiece {
    /// Whether it sorts after every integer: a NULL key, as
    /// [`order_by_cmp`] orders it (after in ascending order, before in
    /// descending; a source keyed by a nullable column holds one such row).
    after: bool,
    key: i64,
    len: u32,
}

impl KeyPiece {
    fn new(column: usize, desc: bool, row: &[Value], len: u32) -> Self {
        match row[column] {
            Value::Int(key) => KeyPiece { after: desc, key: if desc { !key } else { key }, len },
            Value::Null => KeyPiece { after: !desc, key: 0, len },
            _ => unreachable!("an integer column holds integers"),
        }
    }
}

impl Ord for KeyPiece {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.after, self.key).cmp(&(other.after, other.key))
    }
}

impl TextPiece for KeyPiece {
    fn text_len(&self) -> u32 {
        self.len
    }
}

/// A `STRING_AGG` entry: its value's length as text, what the text holds
/// of it after each separator.
trait TextPiece: Ord {
    fn text_len(&self) -> u32;
}

impl TextPiece for Piece {
    fn text_len(&self) -> u32 {
        self.len
    }
}

impl TextPiece for RowPiece {
    fn text_len(&self) -> u32 {
        self.len
    }
}

/// A `STRING_AGG`'s text. Between batches it is only the output value the
/// group's row holds (shared with every copy of the row, not kept a second
/// time); a batch that changes the group edits it as a string, each copy of
/// a value written after a separator, and [`AggText::finish`] makes the
/// output of it again (the text after the first separator).
///
/// In 16 bytes, a value's (the string being edited is boxed, for the few
/// groups a batch is changing): an accumulator is then 48 bytes, not 64.
enum AggText {
    /// The output: NULL for no entries, else the text of the copies of
    /// the values, which has at least one copy (an empty text: one copy of
    /// an empty value).
    Done(Value),
    /// An empty output with no copy of any value (the entries all counted
    /// below zero).
    NoCopies,
    /// Boxed on purpose: a `String` in place would make every group's
    /// accumulators 16 bytes larger for the few a batch edits.
    #[allow(clippy::box_collection)]
    Editing(Box<String>),
}

/// Bytes an edited text is given beyond what it holds (a value's line).
const EDIT_ROOM: usize = 64;

impl AggText {
    const EMPTY: AggText = AggText::Done(Value::Null);

    /// The text to edit, with its leading separator.
    fn edit(&mut self, separator: &str) -> &mut String {
        if !matches!(self, AggText::Editing(_)) {
            let mut text = String::new();
            if let AggText::Done(Value::Text(t)) = self {
                // With room for a value more: most changes add one, at the end.
                text.reserve(2 * separator.len() + t.len() + EDIT_ROOM);
                text.push_str(separator);
                text.push_str(t);
            }
            *self = AggText::Editing(Box::new(text));
        }
        match self {
            AggText::Editing(text) => text,
            _ => unreachable!("made an editing text above"),
        }
    }

    /// The output: NULL for no values, else the text after the first
    /// separator; kept as the text from now on.
    fn finish(&mut self, empty: bool, separator: &str) -> Value {
        if let AggText::Editing(text) = self {
            *self = match (empty, text.is_empty()) {
                (true, _) => AggText::Done(Value::Null),
                (false, true) => AggText::NoCopies,
                (false, false) => AggText::Done(Value::text(text.get(separator.len()..).unwrap_or(""))),
            };
        }
        match self {
            AggText::Done(output) => output.clone(),
            AggText::NoCopies => Value::text(""),
            AggText::Editing(_) => unreachable!("finished above"),
        }
    }

    fn prefetch(&self) {
        let text = match self {
            AggText::Done(Value::Text(t)) => t.as_str(),
            AggText::Editing(t) => t.as_str(),
            _ => return,
        };
        crate::idmap::prefetch_bytes(text.as_ptr(), text.len().min(1024));
    }
}

/// How many values of each scale an exact sum has taken (a count below
/// zero is a retraction ahead of its insertion). Mostly one scale, as a
/// column's values have: held in place, not in a list of its own per group.
#[derive(Default)]
struct ScaleCounts(SmallVec<[(u32, isize); 1]>);

impl ScaleCounts {
    fn add(&mut self, scale: u32, d: isize) {
        match self.0.iter().position(|(s, _)| *s == scale) {
            Some(at) => {
                self.0[at].1 += d;
                if self.0[at].1 == 0 {
                    self.0.swap_remove(at);
                }
            }
            None if d != 0 => self.0.push((scale, d)),
            None => {}
        }
    }

    /// How many values there are, of every scale.
    fn values(&self) -> i64 {
        self.0.iter().map(|&(_, n)| n as i64).sum()
    }

    /// The largest scale counted (0 for none).
    fn largest(&self) -> u32 {
        self.0.iter().map(|(s, _)| *s).max().unwrap_or(0)
    }
}

/// A value ordered as SQL compares it; equal values of different scales by scale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlOrdered(Value);

impl Ord for SqlOrdered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        sql_cmp(&self.0, &other.0).unwrap_or(std::cmp::Ordering::Equal).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SqlOrdered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Accumulator {
    /// `row_order`: the aggregate's [`Reduce::row_order`].
    fn new(a: &Aggregate, row_order: Option<&RowOrder>) -> Self {
        match (a.func, a.distinct, row_order) {
            (AggFunc::StringAgg, _, Some(RowOrder::Columns(_))) => {
                Accumulator::OrderedRows { values: OrderedCounts::default(), text: AggText::EMPTY }
            }
            (AggFunc::StringAgg, _, Some(RowOrder::Key { .. })) => {
                Accumulator::OrderedKeys { values: OrderedCounts::default(), text: AggText::EMPTY }
            }
            (AggFunc::StringAgg, _, None) => Accumulator::Ordered { values: OrderedCounts::default(), text: AggText::EMPTY },
            (AggFunc::Count, false, _) => Accumulator::Count(0),
            (AggFunc::Sum | AggFunc::Avg, false, _) if a.ty == SqlType::Double => Accumulator::SumDouble { sum: 0.0, values: 0 },
            (AggFunc::Sum | AggFunc::Avg, false, _) => Accumulator::Sum { sum: Decimal::ZERO, scales: ScaleCounts::default() },
            _ => Accumulator::Values(OrderedCounts::default()),
        }
    }

    /// Starts loading what it keeps on the heap (a hint only).
    #[inline]
    fn prefetch(&self) {
        match self {
            Accumulator::Values(values) => values.prefetch(),
            Accumulator::Ordered { values, text } => {
                values.prefetch();
                text.prefetch();
            }
            Accumulator::OrderedRows { values, text } => {
                values.prefetch();
                text.prefetch();
            }
            Accumulator::OrderedKeys { values, text } => {
                values.prefetch();
                text.prefetch();
            }
            Accumulator::Count(_) | Accumulator::Sum { .. } | Accumulator::SumDouble { .. } => {}
        }
    }

    /// Takes in (`d` > 0) or takes out (`d` < 0) one input row: `row` as
    /// the aggregate reads it, and `kept`, the input row it was mapped
    /// from when a source's or view's state keeps that one (with the
    /// aggregate's [`Reduce::row_order`]).
    fn update(&mut self, a: &Aggregate, row: &[Value], kept: Option<Kept<'_>>, d: isize) {
        self.update_with(a, row, a.arg.map(|c| &row[c]), kept, d);
    }

    /// A retraction of a `STRING_AGG` entry known by its input row `kept`,
    /// without its value where the entry is there (its stored length says
    /// what to cut from the text); else as [`Self::update`] with `value()`.
    fn retract_kept(&mut self, a: &Aggregate, row: &[Value], kept: Kept<'_>, d: isize, value: impl FnOnce() -> Value) {
        let separator = a.separator.as_deref().unwrap_or("");
        let done = match (&mut *self, kept.1) {
            (Accumulator::OrderedRows { values, text }, Some(RowOrder::Columns(order_by))) => {
                let piece = RowPiece::new(order_by, kept.0, 0);
                retract_stored(values, text, piece, d, separator)
            }
            (Accumulator::OrderedKeys { values, text }, Some(&RowOrder::Key { column, desc })) => {
                retract_stored(values, text, KeyPiece::new(column, desc, kept.0, 0), d, separator)
            }
            (Accumulator::Ordered { values, text }, _) => {
                let piece = Piece { keys: sort_keys(a, row), of: PieceOf::Row(SharedRow::clone(kept.0)), len: 0 };
                retract_stored(values, text, piece, d, separator)
            }
            _ => false,
        };
        if !done {
            let value = value();
            self.update_with(a, row, Some(&value), Some(kept), d);
        }
    }

    /// [`Self::update`] with the aggregate's argument given.
    fn update_with(&mut self, a: &Aggregate, row: &[Value], arg: Option<&Value>, kept: Option<Kept<'_>>, d: isize) {
        if arg.is_some_and(Value::is_null) {
            return; // aggregates skip NULLs
        }
        match self {
            Accumulator::Count(n) => *n += d as i64,
            Accumulator::Sum { sum, scales } => {
                let v = match arg {
                    Some(Value::Int(i)) => Decimal::from(*i),
                    Some(Value::Decimal(x)) => x.get(),
                    _ => return,
                };
                // A change takes one row in or out, mostly: no product then.
                match d {
                    1 => *sum += v,
                    -1 => *sum -= v,
                    _ => *sum += v * Decimal::from(d as i64),
                }
                scales.add(v.scale(), d);
            }
            Accumulator::SumDouble { sum, values } => {
                *sum += arg.map_or(0.0, |v| crate::eval::as_double(v).unwrap_or(f64::NAN)) * d as f64;
                *values += d as i64;
            }
            Accumulator::Values(values) => values.add(SqlOrdered(arg.cloned().unwrap_or(Value::Null)), d),
            Accumulator::Ordered { .. } | Accumulator::OrderedRows { .. } | Accumulator::OrderedKeys { .. } => {
                let value = arg.unwrap_or(&Value::Null);
                let mut scratch = String::new();
                let value_text = text_of(value, &mut scratch);
                match (kept, self) {
                    (Some(kept), acc) => acc.add_kept_text(a, row, value_text, kept, d),
                    (None, Accumulator::Ordered { values, text }) => {
                        let piece = Piece { keys: sort_keys(a, row), of: PieceOf::Value(value.clone()), len: value_text.len() as u32 };
                        add_piece(values, text, piece, value_text, d, a.separator.as_deref().unwrap_or(""));
                    }
                    (None, _) => panic!("a STRING_AGG over kept rows is given its row"),
                }
            }
        }
    }

    /// Takes in `d` copies of a `STRING_AGG` entry known by its input row
    /// `kept`, whose value is the text `value` (not NULL): written where it
    /// was made ([`Reduce::lazy`]), no value made of it, or a value's text
    /// ([`Self::update_with`]).
    fn add_kept_text(&mut self, a: &Aggregate, row: &[Value], value: &str, kept: Kept<'_>, d: isize) {
        let separator = a.separator.as_deref().unwrap_or("");
        match self {
            Accumulator::OrderedRows { values, text } => {
                let Some(RowOrder::Columns(order_by)) = kept.1 else { unreachable!("a STRING_AGG over kept rows has their ORDER BY columns") };
                let piece = RowPiece::new(order_by, kept.0, value.len() as u32);
                add_piece(values, text, piece, value, d, separator);
            }
            Accumulator::OrderedKeys { values, text } => {
                let Some(&RowOrder::Key { column, desc }) = kept.1 else { unreachable!("a STRING_AGG over a source's rows has its key column") };
                add_piece(values, text, KeyPiece::new(column, desc, kept.0, value.len() as u32), value, d, separator);
            }
            Accumulator::Ordered { values, text } => {
                let piece = Piece { keys: sort_keys(a, row), of: PieceOf::Row(SharedRow::clone(kept.0)), len: value.len() as u32 };
                add_piece(values, text, piece, value, d, separator);
            }
            // Not a STRING_AGG: as any value.
            other => other.update_with(a, row, Some(&Value::text(value)), Some(kept), d),
        }
    }

    fn value(&mut self, a: &Aggregate) -> Value {
        match self {
            Accumulator::Count(n) => Value::Int(*n),
            Accumulator::SumDouble { values: 0, .. } => Value::Null,
            Accumulator::Sum { scales, .. } if scales.values() == 0 => Value::Null,
            Accumulator::Sum { sum, scales } => {
                let sum = sql_exact(*sum, scales.largest());
                if a.func == AggFunc::Avg {
                    // PostgreSQL's AVG of numeric is its numeric division of the sum by the count.
                    crate::eval::decimal_div(sum, Decimal::from(scales.values())).map_or(Value::Null, Value::decimal)
                } else {
                    Value::decimal(sum)
                }
            }
            Accumulator::SumDouble { sum, values } => Value::Double(if a.func == AggFunc::Avg { *sum / *values as f64 } else { *sum }),
            Accumulator::Values(values) => match a.func {
                AggFunc::Count => Value::Int(values.len() as i64),
                AggFunc::Min => values.first().map_or(Value::Null, |v| v.0.clone()),
                AggFunc::Max => values.last().map_or(Value::Null, |v| v.0.clone()),
                // SUM or AVG of the distinct values.
                _ => {
                    let mut each = Accumulator::new(&Aggregate { distinct: false, ..a.clone() }, None);
                    let one = Aggregate { arg: Some(0), ..a.clone() };
                    for (v, _) in values.iter() {
                        each.update(&one, std::slice::from_ref(&v.0), None, 1);
                    }
                    each.value(a)
                }
            },
            Accumulator::Ordered { values, text } => text.finish(values.is_empty(), a.separator.as_deref().unwrap_or("")),
            Accumulator::OrderedRows { values, text } => text.finish(values.is_empty(), a.separator.as_deref().unwrap_or("")),
            Accumulator::OrderedKeys { values, text } => text.finish(values.is_empty(), a.separator.as_deref().unwrap_or("")),
        }
    }
}

impl Reduce {
    pub fn new(n_keys: usize, aggregates: Vec<Aggregate>, project: Option<Vec<Expr>>) -> Self {
        let row_order = vec![None; aggregates.len()];
        Reduce { n_keys, aggregates, project, map: None, lazy: None, row_order, input_key: None, groups: KeyIndex::default() }
    }

    /// Tells the operator that its input is a source whose primary key is
    /// this one integer column (before [`Reduce::over_map`], which orders
    /// a `STRING_AGG` by that key alone by it: [`RowOrder::Key`]).
    pub fn over_source(mut self, key: Option<usize>) -> Self {
        self.input_key = key;
        self
    }

    /// Groups the rows a `Map` (and the filter under it) would give of its
    /// input, mapping each row as it comes instead of taking mapped rows.
    pub fn over_map(mut self, predicate: Option<Expr>, exprs: Vec<Expr>) -> Self {
        self.lazy = lazy_string_agg(self.n_keys, &self.aggregates, &exprs);
        self.row_order = self.aggregates.iter().map(|a| row_order(a, &exprs, self.input_key)).collect();
        self.map = Some((predicate, exprs));
        self
    }

    pub fn step(&mut self, input: &Delta) -> Delta {
        let mut dirty: Vec<Key> = Vec::new();
        let column = input_key_column((self.n_keys == 1).then_some(0), self.map.as_ref());
        let mut mapped = Row::new();
        // A lazy STRING_AGG's value of the row at hand.
        let mut line = String::new();
        for (i, (input_row, d)) in input.iter().enumerate() {
            // Groups are spread over an index of hundreds of thousands:
            // loaded a few changes ahead, their cache misses overlap. First
            // the slot, then the accumulators, then what they keep on the
            // heap.
            prefetch_key_at(input, i + 8, column);
            if let Some(key) = key_at(input, i + 4, column) {
                self.groups.prefetch(key);
            }
            if let Some(group) = key_at(input, i + 2, column).and_then(|key| self.groups.peek(key)) {
                crate::idmap::prefetch_bytes(group.accumulators.as_ptr().cast(), size_of_val(group.accumulators.as_slice()));
            }
            if let Some(group) = key_at(input, i + 1, column).and_then(|key| self.groups.peek(key)) {
                group.accumulators.iter().for_each(Accumulator::prefetch);
            }
            // The Map under the GROUP BY, row by row into one buffer: no
            // mapped row is allocated, nor a delta of them. A lazy
            // STRING_AGG's value is written straight into its text, and a
            // retraction's is computed only if its entry is not found.
            let lazy = self.lazy;
            let (row, kept): (&[Value], _) = match &self.map {
                None => (&input_row[..], None),
                Some(map) if map_into(map, input_row, &mut mapped, lazy.map(|(_, c)| c)) => (&mapped, Some(input_row)),
                Some(_) => continue,
            };
            let key = &row[..self.n_keys];
            let (aggregates, row_order) = (&self.aggregates, &self.row_order);
            let group = self.groups.get_or_insert_with(key, || Group {
                rows: 0,
                accumulators: aggregates.iter().zip(row_order).map(|(a, order)| Accumulator::new(a, order.as_ref())).collect(),
                output: None,
                dirty: false,
            });
            group.rows += d;
            if !group.dirty {
                group.dirty = true;
                dirty.push(Key::from_slice(key));
            }
            for (at, (acc, a)) in group.accumulators.iter_mut().zip(aggregates).enumerate() {
                let kept = kept.map(|row| (row, row_order[at].as_ref()));
                match (lazy, &self.map, kept) {
                    (Some((agg, column)), Some((_, exprs)), Some(kept)) if agg == at && *d < 0 => {
                        acc.retract_kept(a, row, kept, *d, || eval(&exprs[column], &input_row[..]))
                    }
                    (Some((agg, column)), Some((_, exprs)), Some(kept)) if agg == at => {
                        line.clear();
                        if eval_text_into(&exprs[column], &input_row[..], &mut line) {
                            acc.add_kept_text(a, row, &line, kept, *d);
                        }
                    }
                    _ => acc.update(a, row, kept, *d),
                }
            }
        }
        let mut out = Vec::new();
        for key in dirty {
            let key = key.as_slice();
            let group = self.groups.get_mut(key).expect("a dirty group exists");
            group.dirty = false;
            let new = (group.rows > 0).then(|| {
                let values = group.accumulators.iter_mut().zip(&self.aggregates).map(|(acc, a)| acc.value(a));
                match &self.project {
                    Some(exprs) => {
                        let values: SmallVec<[Value; 8]> = values.collect();
                        eval_all::<SharedRow>(exprs, &[key, &values])
                    }
                    None => key.iter().cloned().chain(values).collect(),
                }
            });
            if !same_row(new.as_deref(), group.output.as_deref()) {
                if let Some(old) = group.output.take() {
                    out.push((old, -1));
                }
                if let Some(new) = &new {
                    out.push((new.clone(), 1));
                }
                group.output = new;
            }
            if group.rows == 0 {
                self.groups.remove(key);
            }
        }
        out
    }
}

/// A retraction of `piece` (its length not known yet) where the entry is
/// there: its stored length is cut from the text, without the value.
/// `false` when there is no such entry.
fn retract_stored<P: TextPiece>(values: &mut OrderedCounts<P>, text: &mut AggText, piece: P, d: isize, separator: &str) -> bool {
    let mut found = false;
    values.change(piece, |entry, count, later| {
        if count <= 0 {
            return 0;
        }
        found = true;
        edit_text(text.edit(separator), entry.text_len(), count, later, "", d, separator);
        d
    });
    found
}

/// Counts `d` more copies of `piece`, whose value is `value`, in a
/// `STRING_AGG`'s entries and its text.
fn add_piece<P: TextPiece>(values: &mut OrderedCounts<P>, text: &mut AggText, piece: P, value: &str, d: isize, separator: &str) {
    let text = text.edit(separator);
    values.change(piece, |entry, count, later| {
        edit_text(text, entry.text_len(), count, later, value, d, separator);
        d
    });
}

/// Changes a `STRING_AGG` text for `d` more copies of an entry whose value
/// is `value` (fewer when negative), `len` bytes long, counted `count`
/// times before, with the entries ordered after it `later`. An entry's
/// copies sit together, each as separator then value, before the copies of
/// every entry ordered after it; a count below zero (a retraction ahead of
/// its insertion) writes no copy.
fn edit_text<P: TextPiece>(text: &mut String, len: u32, count: isize, later: ordered::Iter<'_, P>, value: &str, d: isize, separator: &str) {
    let (before, after) = (count.max(0) as usize, (count + d).max(0) as usize);
    if before == after {
        return;
    }
    let later: usize = later.map(|(p, n)| n.max(0) as usize * (separator.len() + p.text_len() as usize)).sum();
    // Where the value's copies end (they are all alike: which ones come or
    // go does not matter).
    let end = text.len() - later;
    let piece_len = separator.len() + len as usize;
    if after < before {
        text.replace_range(end - (before - after) * piece_len..end, "");
        return;
    }
    // Written in place at the end (rows mostly come in order), else moved in.
    let copies = after - before;
    if end == text.len() {
        for _ in 0..copies {
            text.push_str(separator);
            text.push_str(value);
        }
        return;
    }
    let mut piece = String::with_capacity(piece_len * copies);
    for _ in 0..copies {
        piece.push_str(separator);
        piece.push_str(value);
    }
    text.insert_str(end, &piece);
}

/// The input columns of a `STRING_AGG`'s ORDER BY over the rows a `Map`
/// with these expressions makes, where the `Map` passes each on
/// ([`Reduce::row_order`]); `input_key`: the input's integer primary key
/// column, if it is a source's.
fn row_order(a: &Aggregate, exprs: &[Expr], input_key: Option<usize>) -> Option<RowOrder> {
    if a.func != AggFunc::StringAgg {
        return None;
    }
    let columns: OrderColumns = a
        .order_by
        .iter()
        .map(|&(c, desc)| match exprs[c] {
            Expr::Column(input) => Some((input, desc)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    match columns[..] {
        [(column, desc)] if Some(column) == input_key => Some(RowOrder::Key { column, desc }),
        _ => Some(RowOrder::Columns(columns)),
    }
}

/// A `STRING_AGG` row's ORDER BY values.
fn sort_keys(a: &Aggregate, row: &[Value]) -> SortKeys {
    a.order_by.iter().map(|&(c, desc)| SortKey { value: row[c].clone(), desc }).collect()
}

/// The `STRING_AGG` of a `Reduce` over a `Map` whose value a retraction
/// need not compute ([`Reduce::lazy`]): its argument is a column the `Map`
/// computes (not one it passes on) that no group column, other aggregate
/// or ORDER BY reads. Returns (the aggregate, the column).
fn lazy_string_agg(n_keys: usize, aggregates: &[Aggregate], exprs: &[Expr]) -> Option<(usize, usize)> {
    let reads = |c: usize| {
        c < n_keys || aggregates.iter().filter(|a| a.arg == Some(c)).count() > 1 || aggregates.iter().any(|a| a.order_by.iter().any(|&(o, _)| o == c))
    };
    aggregates.iter().enumerate().find_map(|(at, a)| match (a.func, a.arg) {
        (AggFunc::StringAgg, Some(c)) if !matches!(exprs[c], Expr::Column(_)) && !reads(c) => Some((at, c)),
        _ => None,
    })
}

/// A value as SQL text: a text as it is, another value written into
/// `scratch`.
fn text_of<'a>(v: &'a Value, scratch: &'a mut String) -> &'a str {
    match v {
        Value::Text(t) => t.as_str(),
        Value::Null => "",
        other => {
            scratch.clear();
            crate::value::write_text(other, scratch);
            scratch
        }
    }
}

/// Whether a group's output row stays: compared from the last column, as
/// counts and sums change more often than a long aggregated text, whose
/// comparison would read through its common prefix first.
fn same_row(a: Option<&[Value]>, b: Option<&[Value]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().rev().zip(b.iter().rev()).all(|(x, y)| x == y),
        (None, None) => true,
        _ => false,
    }
}

/// A row's ORDER BY values. One (an id, mostly) is held in place: a sorted
/// list's search compares them without following a pointer per entry.
pub type SortKeys = SmallVec<[SortKey; 1]>;

/// A value in an ORDER BY: ascending puts NULLs last, descending first (as
/// PostgreSQL does by default).
/// Values equal to SQL (`1.0` and `1.00`) tie, so that the next ORDER BY
/// column decides, as in SQL.
#[derive(Clone, Debug)]
pub struct SortKey {
    value: Value,
    desc: bool,
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        order_by_cmp(&self.value, &other.value, self.desc)
    }
}

/// How ORDER BY puts two values (see [`SortKey`]).
fn order_by_cmp(a: &Value, b: &Value, desc: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let o = match (a.is_null(), b.is_null()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => sql_cmp(a, b).unwrap_or(Equal),
    };
    if desc {
        o.reverse()
    } else {
        o
    }
}

/// A partition's row, in the order of the ORDER BY columns (as
/// [`SortKey`]s put them), then of the whole row. The columns and their
/// directions are the operator's, shared by its rows: no row holds a copy
/// of its ORDER BY values (three of them took an allocation per row).
#[derive(Clone, Debug)]
struct RankedRow {
    order_by: OrderColumns,
    row: SharedRow,
}

impl Ord for RankedRow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        ranked_cmp(&self.order_by, &self.row, &other.row)
    }
}

/// Two rows of a partition in the order of the ORDER BY columns, then of
/// the whole row.
fn ranked_cmp(order_by: &[(usize, bool)], a: &SharedRow, b: &SharedRow) -> std::cmp::Ordering {
    order_by.iter().map(|&(c, desc)| order_by_cmp(&a[c], &b[c], desc)).find(|o| o.is_ne()).unwrap_or_else(|| a.cmp(b))
}

/// `PartialOrd`, `PartialEq` and `Eq` as each type's own `Ord` says.
macro_rules! order_by_ord {
    ($($t:ty),*) => {$(
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other).is_eq()
            }
        }

        impl Eq for $t {}
    )*};
}

order_by_ord!(SortKey, RankedRow, Piece, PieceOf, RowPiece, KeyPiece);

/// The rows of each partition in order: `ROW_NUMBER()` numbers them,
/// `TopOne` keeps the first.
pub struct Ranked {
    partition_by: Vec<usize>,
    order_by: OrderColumns,
    /// Number every row (`ROW_NUMBER`) or keep the first (`TopOne`).
    number: bool,
    /// The expressions of a `Map` over the output rows (a numbered row's
    /// number last), computed as each row is given.
    project: Option<Vec<Expr>>,
    /// The `Map` under the partitions (with the filter under it), applied
    /// to each input row here ([`Ranked::over_map`]).
    map: Option<InputMap>,
    /// Whether the partitions keep the input's rows themselves, mapping
    /// only the rows they give: see [`Ranked::over_map`].
    keeps_input: bool,
    /// Whether the input only ever adds rows: see [`Ranked::over_append_only`].
    pub(crate) append_only: bool,
    partitions: KeyIndex<Partition>,
}

#[derive(Default)]
struct Partition {
    rows: PartitionRows,
    /// Its output rows: a `TopOne`'s one row in the partition's own slot.
    output: SmallVec<[SharedRow; 1]>,
}

/// What a partition keeps of its rows.
enum PartitionRows {
    /// Every row, in order.
    Rows(OrderedCounts<RankedRow>),
    /// A partition's only row and its count, or over an append-only input
    /// ([`Ranked::over_append_only`]) its first row alone and how many
    /// copies of it came: in the partition's own slot, where a list of one
    /// row took a block of its own (a user's newest address, an order's
    /// newest status event, whose list had room for four: 160 bytes).
    One(SharedRow, isize),
}

impl Default for PartitionRows {
    fn default() -> Self {
        PartitionRows::Rows(OrderedCounts::default())
    }
}

impl PartitionRows {
    fn len(&self) -> usize {
        match self {
            PartitionRows::Rows(rows) => rows.len(),
            PartitionRows::One(..) => 1,
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            PartitionRows::Rows(rows) => rows.is_empty(),
            PartitionRows::One(..) => false,
        }
    }

    /// The rows in order, each with its count.
    fn iter(&self) -> impl Iterator<Item = (&SharedRow, isize)> {
        let (rows, first) = match self {
            PartitionRows::Rows(rows) => (Some(rows.iter().map(|(r, n)| (&r.row, n))), None),
            PartitionRows::One(row, n) => (None, Some((row, *n))),
        };
        rows.into_iter().flatten().chain(first)
    }

    /// Starts loading the rows' list (a hint only, as
    /// [`OrderedCounts::prefetch`]); a first row is in the slot itself.
    fn prefetch(&self) {
        if let PartitionRows::Rows(rows) = self {
            rows.prefetch();
        }
    }

    /// The first row, if it is at hand without a search.
    fn first_row(&self) -> Option<&SharedRow> {
        match self {
            PartitionRows::Rows(OrderedCounts::Few(entries)) => entries.first().map(|(first, _)| &first.row),
            PartitionRows::Rows(OrderedCounts::Many(_)) => None,
            PartitionRows::One(row, _) => Some(row),
        }
    }
}

impl Ranked {
    pub fn new(partition_by: Vec<usize>, order_by: Vec<(usize, bool)>, number: bool, project: Option<Vec<Expr>>) -> Self {
        Ranked {
            partition_by,
            order_by: order_by.into(),
            number,
            project,
            map: None,
            keeps_input: false,
            append_only: false,
            partitions: KeyIndex::default(),
        }
    }

    /// Keeps only each partition's first row, for an input that never takes
    /// a row back (an append-only source's events): a row after the first
    /// can then never become first. A `TopOne` only; numbered rows need
    /// every row.
    pub fn over_append_only(mut self) -> Self {
        assert!(!self.number, "ROW_NUMBER numbers every row");
        self.append_only = true;
        self
    }

    /// Ranks the rows a `Map` (and the filter under it) would give of its
    /// input (a source's or a view's rows, which their own state keeps).
    ///
    /// Where the partition and ORDER BY columns are input columns the `Map`
    /// passes on, the partitions keep the input's rows, shared with the
    /// state that holds them, ordered by those columns: a row is mapped only
    /// when it is given, not when it comes, and no mapped copy is kept (an
    /// address's line of text, a status event's five columns). Ties on the
    /// ORDER BY columns are then ordered by the input row instead of the
    /// mapped one, an order SQL leaves open either way. Otherwise each row
    /// is mapped as it comes, and the mapped row is the one kept.
    pub fn over_map(mut self, predicate: Option<Expr>, exprs: Vec<Expr>) -> Self {
        let map = (predicate, exprs);
        let input_column = |c: usize| input_key_column(Some(c), Some(&map));
        let partition_by: Option<Vec<usize>> = self.partition_by.iter().map(|&c| input_column(c)).collect();
        let order_by: Option<Vec<(usize, bool)>> = self.order_by.iter().map(|&(c, desc)| input_column(c).map(|i| (i, desc))).collect();
        if let (Some(partition_by), Some(order_by)) = (partition_by, order_by) {
            self.partition_by = partition_by;
            self.order_by = order_by.into();
            self.keeps_input = true;
        }
        self.map = Some(map);
        self
    }

    /// How many rows the partitions keep, for tests.
    #[cfg(test)]
    pub(crate) fn rows_kept(&self) -> usize {
        self.partitions.values().map(|p| p.rows.len()).sum()
    }

    pub fn step(&mut self, input: &Delta) -> Delta {
        // The changed partitions, a partition once per change: a set hashed
        // every change's key once more (2% of a status event), and a
        // partition seen again finds its output as its first visit left it.
        let mut dirty: Vec<Key> = Vec::new();
        let mut key_buf = Row::new();
        let one_column = match self.partition_by[..] {
            [c] => Some(c),
            _ => None,
        };
        let column = input_key_column(one_column, self.map.as_ref().filter(|_| !self.keeps_input));
        for (i, (input_row, d)) in input.iter().enumerate() {
            // Loaded ahead as a group's: the slot, then the rows in order.
            prefetch_key_at(input, i + 8, column);
            if let Some(key) = key_at(input, i + 4, column) {
                self.partitions.prefetch(key);
            }
            if let Some(partition) = key_at(input, i + 2, column).and_then(|key| self.partitions.peek(key)) {
                partition.rows.prefetch();
            }
            // Then the first row's values, which a new row is compared with.
            if let Some(first) = key_at(input, i + 1, column).and_then(|key| self.partitions.peek(key)).and_then(|p| p.rows.first_row()) {
                crate::idmap::prefetch_values(first);
            }
            // The row mapped is the one kept.
            let row = match &self.map {
                None => SharedRow::clone(input_row),
                Some((predicate, _)) if !kept(predicate.as_ref(), input_row) => continue,
                Some(_) if self.keeps_input => SharedRow::clone(input_row),
                Some((_, exprs)) => eval_row(exprs, input_row),
            };
            key_buf.clear();
            key_buf.extend(self.partition_by.iter().map(|&c| row[c].clone()));
            let key = &key_buf[..];
            let rows = &mut self.partitions.get_or_insert_with(key, Partition::default).rows;
            match rows {
                PartitionRows::One(first, n) if self.append_only => {
                    debug_assert!(*d > 0, "an append-only input takes no row back");
                    match ranked_cmp(&self.order_by, &row, first) {
                        // Behind the first row: never given.
                        std::cmp::Ordering::Greater => continue,
                        std::cmp::Ordering::Equal => *n += d,
                        // The new first row: the old one can never come back.
                        std::cmp::Ordering::Less => (*first, *n) = (row, *d),
                    }
                }
                PartitionRows::One(only, n) if ranked_cmp(&self.order_by, &row, only).is_eq() => {
                    *n += d;
                    if *n == 0 {
                        *rows = PartitionRows::default();
                    }
                }
                // A second row: the partition's rows go to a list.
                PartitionRows::One(..) => {
                    let PartitionRows::One(only, n) = std::mem::take(rows) else { unreachable!("matched above") };
                    let mut list = OrderedCounts::default();
                    list.add(RankedRow { order_by: Arc::clone(&self.order_by), row: only }, n);
                    list.add(RankedRow { order_by: Arc::clone(&self.order_by), row }, *d);
                    *rows = PartitionRows::Rows(list);
                }
                // A partition's first row.
                PartitionRows::Rows(list) if list.is_empty() => *rows = PartitionRows::One(row, *d),
                PartitionRows::Rows(list) => list.add(RankedRow { order_by: Arc::clone(&self.order_by), row }, *d),
            }
            dirty.push(Key::from_slice(key));
        }
        let mut out = Vec::new();
        let project = self.project.as_deref();
        // The `Map` the partitions' rows still need when they are given.
        let map = self.map.as_ref().filter(|_| self.keeps_input).map(|(_, exprs)| &exprs[..]);
        let mut mapped = Row::new();
        for key in dirty {
            // Emptied and removed at an earlier visit.
            let Some(partition) = self.partitions.get_mut(key.as_slice()) else { continue };
            let mut new: SmallVec<[SharedRow; 1]> = SmallVec::with_capacity(if self.number { partition.rows.len() } else { 1 });
            'rows: for (row, n) in partition.rows.iter() {
                for _ in 0..n {
                    if self.number {
                        new.push(ranked_output(map, project, row, Some(new.len() as i64 + 1), &mut mapped));
                    } else {
                        new.push(ranked_output(map, project, row, None, &mut mapped));
                        break 'rows;
                    }
                }
            }
            // Only the rows whose number changed leave and come back.
            let unchanged = partition.output.iter().zip(&new).take_while(|(a, b)| a == b).count();
            // The rows it replaces leave as they are, not copied.
            let old = std::mem::replace(&mut partition.output, new);
            out.extend(old.into_iter().skip(unchanged).map(|r| (r, -1)));
            out.extend(partition.output[unchanged..].iter().map(|r| (r.clone(), 1)));
            if partition.rows.is_empty() {
                self.partitions.remove(key.as_slice());
            }
        }
        // Each partition gives at most its old first row and its new one,
        // which differ, and partitions differ in their key columns: only
        // numbered rows can cancel (a row that keeps its number).
        if self.number {
            consolidate(out)
        } else {
            out
        }
    }
}

/// The output row of a kept `row` (with its number, if numbered): through
/// the `Map` under the ranking if the kept row is its input's (`map`, into
/// the `mapped` buffer), then through the `Map` over it if there is one.
fn ranked_output(map: Option<&[Expr]>, project: Option<&[Expr]>, row: &SharedRow, number: Option<i64>, mapped: &mut Row) -> SharedRow {
    let number = number.map(Value::Int);
    let Some(map) = map else {
        return match (project, number) {
            (Some(exprs), number) => eval_all(exprs, &[row, number.as_slice()]),
            // The kept row itself, shared.
            (None, None) => SharedRow::clone(row),
            (None, Some(number)) => row.iter().cloned().chain([number]).collect(),
        };
    };
    match (project, number) {
        (None, None) => eval_row(map, row),
        (project, number) => {
            mapped.clear();
            mapped.extend(map.iter().map(|e| eval(e, &row[..])));
            match project {
                Some(exprs) => eval_all(exprs, &[mapped, number.as_slice()]),
                None => mapped.drain(..).chain(number).collect(),
            }
        }
    }
}

/// Each distinct row once.
#[derive(Default)]
pub struct Distinct {
    counts: AHashMap<SharedRow, isize>,
}

impl Distinct {
    pub fn step(&mut self, input: &Delta) -> Delta {
        let mut out = Vec::new();
        for (row, d) in input {
            let n = self.counts.entry(row.clone()).or_default();
            let before = *n > 0;
            *n += d;
            let after = *n > 0;
            if *n == 0 {
                self.counts.remove(row);
            }
            if before != after {
                out.push((row.clone(), if after { 1 } else { -1 }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A key's rows hold what the changes add up to, through one row, a few
    /// and many, counts other than one and retractions ahead of insertions;
    /// one row counted once is held as such again whenever it is so.
    #[test]
    fn a_keys_rows_are_the_sum_of_its_changes() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for round in 0..200 {
            let distinct = if round % 2 == 0 { 3 } else { 40 };
            let (mut rows, mut model) = (None::<KeyRows>, BTreeMap::<i64, isize>::new());
            for _ in 0..300 {
                let (value, d) = (rng.random_range(0..distinct), [-1, 1, 1, 2][rng.random_range(0..4)]);
                let row: SharedRow = SharedRow::from([Value::Int(value)]);
                match &mut rows {
                    Some(rows) => rows.add(row, d),
                    None => rows = Some(KeyRows::one(row, d)),
                }
                *model.entry(value).or_default() += d;
                model.retain(|_, n| *n != 0);
                let held = rows.as_ref().expect("rows");
                let mut got: Vec<(i64, isize)> = held.iter().map(|(r, n)| (int_of(&r[0]), *n)).collect();
                got.sort_unstable();
                assert_eq!(got, model.iter().map(|(v, n)| (*v, *n)).collect::<Vec<_>>(), "round {round}");
                assert_eq!(held.is_empty(), model.is_empty());
                if let [(_, 1)] = got[..] {
                    assert!(matches!(held, KeyRows::One(_) | KeyRows::Many(_)), "round {round}: one row counted once is held as such");
                }
            }
        }
        assert_eq!(size_of::<Option<KeyRows>>(), 24, "a key's only row takes a slot of 24 bytes");
    }

    fn int_of(value: &Value) -> i64 {
        match value {
            Value::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }

    /// An exact sum is written with the largest scale among the values it
    /// holds: a scale goes when its last value does, and a value taken out
    /// ahead of being put in still counts.
    #[test]
    fn scale_counts_give_the_largest_scale_held() {
        let mut scales = ScaleCounts::default();
        assert_eq!(scales.largest(), 0);
        scales.add(2, 1);
        scales.add(2, 1);
        scales.add(4, 1);
        assert_eq!(scales.largest(), 4);
        scales.add(4, -1);
        assert_eq!(scales.largest(), 2);
        scales.add(2, -1);
        assert_eq!(scales.largest(), 2, "one value of scale 2 is left");
        scales.add(2, -1);
        assert_eq!(scales.largest(), 0);
        scales.add(3, -1);
        assert_eq!(scales.largest(), 3, "a retraction ahead of its insertion counts");
        scales.add(3, 0);
        scales.add(1, 0);
        assert_eq!(scales.0.len(), 1, "adding nothing keeps no scale");
    }

    /// A ranking that keeps its input's rows (the `Map` under it passes its
    /// partition and ORDER BY columns on) gives the rows a ranking of the
    /// mapped rows gives, batch after batch, numbered or first only, and
    /// with a filter under the `Map`.
    #[test]
    fn a_ranking_keeping_input_rows_gives_what_one_of_mapped_rows_gives() {
        use crate::expr::{BinaryOp, Literal};
        // Input (id, group, score, name); mapped (group, name || '!', score, id),
        // ranked by score descending, then id.
        let exprs = vec![
            Expr::Column(1),
            Expr::Binary(BinaryOp::Concat, Box::new(Expr::Column(3)), Box::new(Expr::Literal(Literal::Text("!".into()), SqlType::Text))),
            Expr::Column(2),
            Expr::Column(0),
        ];
        let low_scores = Expr::Binary(BinaryOp::Lt, Box::new(Expr::Column(2)), Box::new(Expr::Literal(Literal::Int(3), SqlType::Int)));
        for (number, predicate) in [(false, None), (true, None), (false, Some(low_scores.clone())), (true, Some(low_scores))] {
            let order_by = vec![(2, true), (3, false)];
            let project = Some(vec![Expr::Column(1), Expr::Column(0)]).filter(|_| !number);
            let mut keeping = Ranked::new(vec![0], order_by.clone(), number, project.clone()).over_map(predicate.clone(), exprs.clone());
            assert!(keeping.keeps_input);
            let mut mapping = Ranked::new(vec![0], order_by, number, project);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
            let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m) as i64;
            let mut live: Vec<SharedRow> = Vec::new();
            // Ids are unique, so that the order is total (ties are ordered
            // differently by the two, as SQL allows).
            let mut ids = 0..;
            for _ in 0..500 {
                let mut delta: Delta = Vec::new();
                for _ in 0..1 + next(5) {
                    if !live.is_empty() && next(3) == 0 {
                        let row = live.swap_remove(next(live.len() as u64) as usize);
                        delta.push((row, -1));
                    } else {
                        let row: SharedRow =
                            [Value::Int(ids.next().unwrap()), Value::Int(next(4)), Value::Int(next(5)), Value::text(&format!("n{}", next(9)))].into();
                        live.push(row.clone());
                        delta.push((row, 1));
                    }
                }
                let premapped = map(&delta, predicate.as_ref(), &exprs);
                let sorted = |delta: Delta| {
                    let mut delta = consolidate(delta);
                    delta.sort();
                    delta
                };
                assert_eq!(sorted(keeping.step(&delta)), sorted(mapping.step(&premapped)), "number {number}");
            }
        }
    }

    /// Rows coming and going in random batches (copies of a row, a row
    /// taken back in the batch that gives it, partitions of one row and of
    /// several): the rows given, added up, are at every step what the
    /// partitions' rows give written from scratch, first only or numbered.
    #[test]
    fn a_ranking_gives_what_its_rows_give_from_scratch() {
        use std::collections::BTreeMap;
        for number in [false, true] {
            let mut ranked = Ranked::new(vec![0], vec![(1, true)], number, None);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
            let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m) as i64;
            let mut live: Vec<(i64, i64)> = Vec::new();
            let mut given: BTreeMap<Vec<Value>, isize> = BTreeMap::new();
            for step in 0..2_000 {
                let mut delta: Delta = Vec::new();
                for _ in 0..1 + next(4) {
                    let row = if !live.is_empty() && next(2) == 0 {
                        let row = live.swap_remove(next(live.len() as u64) as usize);
                        delta.push(([Value::Int(row.0), Value::Int(row.1)].into(), -1));
                        row
                    } else {
                        // Mostly one row per partition, some with several.
                        let row = (next(40), if next(4) == 0 { next(3) } else { 0 });
                        live.push(row);
                        delta.push(([Value::Int(row.0), Value::Int(row.1)].into(), 1));
                        row
                    };
                    // Now and then the row comes and goes again in the batch.
                    if next(8) == 0 {
                        let shared: SharedRow = [Value::Int(row.0), Value::Int(row.1)].into();
                        delta.insert(next(delta.len() as u64 + 1) as usize, (shared.clone(), -1));
                        delta.push((shared, 1));
                    }
                }
                for (row, d) in ranked.step(&delta) {
                    *given.entry(row.to_vec()).or_default() += d;
                }
                given.retain(|_, n| *n != 0);
                let mut expected: BTreeMap<Vec<Value>, isize> = BTreeMap::new();
                let mut by_partition: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
                live.iter().for_each(|&(p, v)| by_partition.entry(p).or_default().push(v));
                for (p, mut values) in by_partition {
                    values.sort_by(|a, b| b.cmp(a));
                    let kept = if number { values.len() } else { 1 };
                    for (i, v) in values.into_iter().take(kept).enumerate() {
                        let mut row = vec![Value::Int(p), Value::Int(v)];
                        if number {
                            row.push(Value::Int(i as i64 + 1));
                        }
                        *expected.entry(row).or_default() += 1;
                    }
                }
                assert_eq!(given, expected, "number {number}, step {step}");
            }
        }
    }

    /// A partition changed twice in one batch gives its change once, and
    /// one emptied by a batch's changes gives its old row back once.
    #[test]
    fn a_partition_changed_twice_in_a_batch_gives_one_change() {
        let row = |p: i64, v: i64| -> SharedRow { [Value::Int(p), Value::Int(v)].into() };
        for number in [false, true] {
            let mut ranked = Ranked::new(vec![0], vec![(1, false)], number, None);
            let sorted = |mut delta: Delta| {
                delta.sort();
                delta
            };
            let numbered = |r: SharedRow, n: i64| -> SharedRow {
                if number {
                    r.iter().cloned().chain([Value::Int(n)]).collect()
                } else {
                    r
                }
            };
            let first = sorted(ranked.step(&vec![(row(1, 5), 1), (row(1, 3), 1), (row(2, 7), 1)]));
            let mut expected = vec![(numbered(row(1, 3), 1), 1), (numbered(row(2, 7), 1), 1)];
            if number {
                expected.push((numbered(row(1, 5), 2), 1));
            }
            assert_eq!(first, sorted(expected), "number {number}");
            let emptied = sorted(ranked.step(&vec![(row(1, 3), -1), (row(1, 5), -1)]));
            let mut expected = vec![(numbered(row(1, 3), 1), -1)];
            if number {
                expected.push((numbered(row(1, 5), 2), -1));
            }
            assert_eq!(emptied, sorted(expected), "number {number}");
            assert_eq!(ranked.step(&vec![(row(1, 4), 1)]), vec![(numbered(row(1, 4), 1), 1)], "number {number}");
        }
    }

    /// `STRING_AGG(column 1, separator ORDER BY column 2)`.
    fn string_agg_of_column_1(separator: &str, desc: bool) -> Aggregate {
        Aggregate {
            func: AggFunc::StringAgg,
            arg: Some(1),
            distinct: false,
            separator: Some(separator.into()),
            order_by: vec![(2, desc)],
            ty: SqlType::Text,
        }
    }

    #[test]
    fn string_agg_over_a_source_by_its_integer_key_equals_the_text_written_from_scratch() {
        // A source's rows [group, value, id], id its primary key (NULL in
        // one row at most, as a source keyed by a nullable column holds):
        // each change takes a key's old row out before its new one goes in,
        // as a source's delta does. Ordered by the key alone (ascending and
        // descending, NULL last and first), each entry holds the key, not
        // the row.
        for (computed, desc) in [(false, false), (true, false), (false, true), (true, true)] {
            let aggregate = string_agg_of_column_1(", ", desc);
            let mut exprs: Vec<Expr> = (0..3).map(Expr::Column).collect();
            if computed {
                exprs[1] = Expr::Call(crate::expr::Func::Concat, vec![Expr::Column(1)]);
            }
            let mut reduce = Reduce::new(1, vec![aggregate], None).over_source(Some(2)).over_map(None, exprs);
            assert!(matches!(reduce.row_order[..], [Some(RowOrder::Key { column: 2, desc: d })] if d == desc));
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
            let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
            // The source's rows by key.
            let mut table: BTreeMap<Option<i64>, SharedRow> = BTreeMap::new();
            for batch in 0..3_000 {
                let mut delta: Delta = Vec::new();
                // Keys changed at most once a batch, in key order, as a
                // source's netted delta gives them.
                let mut keys: Vec<Option<i64>> = (0..1 + next(4)).map(|_| Some(next(41) as i64 - 20).filter(|&k| k != 20)).collect();
                keys.sort_unstable();
                keys.dedup();
                for id in keys {
                    let value = match next(4) {
                        0 => Value::text(&"a line past the inline size ".repeat(1 + next(2) as usize)),
                        1 => Value::text(""),
                        _ => Value::text(&format!("v{}", next(30))),
                    };
                    let key = id.map_or(Value::Null, Value::Int);
                    let after: Option<SharedRow> = (next(3) != 0).then(|| vec![Value::Int(next(3) as i64), value, key].into());
                    let before = match &after {
                        Some(row) => table.insert(id, SharedRow::clone(row)),
                        None => table.remove(&id),
                    };
                    delta.extend(before.map(|row| (row, -1)));
                    delta.extend(after.map(|row| (row, 1)));
                }
                let groups: Vec<Value> = reduce.groups.values().filter_map(|g| g.output.as_ref().map(|row| row[0].clone())).collect();
                reduce.step(&delta);
                if let Some(group) = reduce.groups.values().next() {
                    assert!(matches!(group.accumulators[0], Accumulator::OrderedKeys { .. }), "entries known by their key");
                }
                // Every group's text, written from the table.
                for group in (0..3).map(Value::Int).chain(groups) {
                    let mut rows: Vec<&SharedRow> = table.values().filter(|r| r[0] == group).collect();
                    // NULL after every integer, as PostgreSQL sorts it.
                    rows.sort_by_key(|r| match r[2] {
                        Value::Int(id) => (false, id),
                        _ => (true, 0),
                    });
                    if desc {
                        rows.reverse();
                    }
                    let texts: Vec<String> = rows
                        .iter()
                        .map(|r| {
                            let mut text = String::new();
                            crate::value::write_text(&r[1], &mut text);
                            text
                        })
                        .collect();
                    let output = reduce.groups.get(std::slice::from_ref(&group)).and_then(|g| g.output.as_ref()).map(|row| row[1].clone());
                    let expected = (!rows.is_empty()).then(|| Value::text(&texts.join(", ")));
                    assert_eq!(output, expected, "computed {computed}, descending {desc}, batch {batch}, group {group:?}");
                }
            }
        }
    }

    /// A `STRING_AGG` text kept change by change equals the text written
    /// from the group's rows after every batch: values put in and taken out
    /// anywhere in the order, repeated, tied on the sort key, not text,
    /// empty, and taken out ahead of being put in within a batch.
    #[test]
    fn string_agg_edited_in_place_equals_the_text_written_from_scratch() {
        // Over a source's rows (a `Map` under it), its rows are known by the
        // input rows; else by their values. A `Map` that computes the value
        // (CONCAT(x), the same text) lets a retraction leave it uncomputed.
        // Ascending and descending.
        for (over_source, computed, desc) in
            [(false, false, false), (true, false, false), (true, true, false), (false, false, true), (true, false, true)]
        {
            let aggregate = string_agg_of_column_1(" | ", desc);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
            let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
            let mut reduce = Reduce::new(1, vec![aggregate.clone()], None);
            if over_source {
                let mut exprs: Vec<Expr> = (0..3).map(Expr::Column).collect();
                if computed {
                    exprs[1] = Expr::Call(crate::expr::Func::Concat, vec![Expr::Column(1)]);
                }
                reduce = reduce.over_map(None, exprs);
                assert_eq!(reduce.lazy.is_some(), computed);
            }
            // The rows of every group with their counts.
            let mut live: BTreeMap<(i64, Row), isize> = BTreeMap::new();
            for batch in 0..3_000 {
                let mut delta = Vec::new();
                for _ in 0..1 + next(4) {
                    let group = next(3) as i64;
                    let value = match next(6) {
                        0 => Value::Int(next(20) as i64),
                        1 => Value::text(&"long text past the inline size ".repeat(1 + next(2) as usize)),
                        // An empty value: a group of it alone writes an empty
                        // text, which is still one copy to add to.
                        2 => Value::text(""),
                        _ => Value::text(&format!("v{}", next(30))),
                    };
                    // The ORDER BY column: mostly an integer, sometimes NULL.
                    let order = if next(7) == 0 { Value::Null } else { Value::Int(next(6) as i64) };
                    let row = vec![Value::Int(group), value, order];
                    if next(8) == 0 {
                        delta.push((row.clone(), -1));
                        delta.push((row, 1));
                        continue;
                    }
                    // Only rows that are there are taken out, as from a view.
                    let present = live.get(&(group, row.clone())).copied().unwrap_or(0);
                    let d = if present > 0 && next(2) == 0 { -1 } else { 1 };
                    *live.entry((group, row.clone())).or_default() += d;
                    delta.push((row, d));
                }
                let delta: Delta = delta.into_iter().map(|(row, d): (Row, isize)| (row.into(), d)).collect();
                for (row, _) in reduce.step(&delta).into_iter().filter(|(_, d)| *d > 0) {
                    let Value::Int(group) = row[0] else { panic!("a group key") };
                    // The group's text written from its rows: by the sort column,
                    // then the value; each row as many times as it counts.
                    let mut rows: Vec<(&Row, isize)> = live.iter().filter(|((g, _), _)| *g == group).map(|((_, r), n)| (r, *n)).collect();
                    rows.sort_by(|(a, _), (b, _)| {
                        (SortKey { value: a[2].clone(), desc }, &a[1]).cmp(&(SortKey { value: b[2].clone(), desc }, &b[1]))
                    });
                    let mut parts = Vec::new();
                    for (r, n) in rows {
                        let mut text = String::new();
                        crate::value::write_text(&r[1], &mut text);
                        parts.extend(std::iter::repeat_n(text, n.max(0) as usize));
                    }
                    assert_eq!(
                        row[1],
                        Value::text(&parts.join(" | ")),
                        "over a source {over_source}, computed {computed}, descending {desc}, batch {batch}, group {group}"
                    );
                }
            }
        }
    }
}
