//! The operators of a plan, each with the state it needs to turn changes of
//! its inputs into changes of its output.
//!
//! Changes are Z-set deltas: `(row, +n)` adds n copies, `(row, -n)` takes
//! them away. A batch of changes goes through the operators in order, each
//! reading its inputs' changes of this batch and writing its own.

use std::collections::BTreeMap;

use crate::expr::{AggFunc, Aggregate, Expr};
use crate::plan::JoinKind;
use crate::types::SqlType;
use ahash::{AHashMap, AHashSet};
use rust_decimal::Decimal;

use crate::eval::eval;
use crate::value::{sql_cmp, sql_exact, Row, Value};

pub type Delta = Vec<(Row, isize)>;

/// Adds up the changes of equal rows and drops those that cancel.
pub fn consolidate(delta: Delta) -> Delta {
    if delta.len() <= 1 {
        return delta.into_iter().filter(|(_, d)| *d != 0).collect();
    }
    let mut sum: AHashMap<Row, isize> = AHashMap::with_capacity(delta.len());
    for (row, d) in delta {
        *sum.entry(row).or_default() += d;
    }
    sum.into_iter().filter(|(_, d)| *d != 0).collect()
}

pub fn filter(input: &Delta, predicate: &Expr) -> Delta {
    input.iter().filter(|(row, _)| matches!(eval(predicate, row), Value::Bool(true))).cloned().collect()
}

pub fn map(input: &Delta, exprs: &[Expr]) -> Delta {
    consolidate(input.iter().map(|(row, d)| (exprs.iter().map(|e| eval(e, row)).collect(), *d)).collect())
}

fn key_of(row: &[Value], columns: &[usize]) -> Option<Row> {
    let key: Row = columns.iter().map(|&c| row[c].clone()).collect();
    // NULL equals nothing in a join condition.
    (!key.iter().any(Value::is_null)).then_some(key)
}

/// The rows of one join key, with their counts. Few rows share a key in
/// most joins, so a list searched by row beats hashing every (wide) row.
type KeyRows = Vec<(Row, isize)>;

/// Both sides of a join, indexed by the join columns.
pub struct Join {
    kind: JoinKind,
    left_on: Vec<usize>,
    right_on: Vec<usize>,
    right_width: usize,
    left: AHashMap<Row, KeyRows>,
    right: AHashMap<Row, KeyRows>,
}

fn joined(l: &[Value], r: &[Value]) -> Row {
    let mut row = Vec::with_capacity(l.len() + r.len());
    row.extend_from_slice(l);
    row.extend_from_slice(r);
    row
}

fn padded(l: &[Value], width: usize) -> Row {
    let mut row = Vec::with_capacity(l.len() + width);
    row.extend_from_slice(l);
    row.extend(std::iter::repeat_n(Value::Null, width));
    row
}

/// Adds `d` to the count of `row`, which goes when it reaches zero.
fn count_in(rows: &mut AHashMap<Row, isize>, row: &Row, d: isize) {
    let n = rows.entry(row.clone()).or_default();
    *n += d;
    if *n == 0 {
        rows.remove(row);
    }
}

/// [`count_in`] for an ordered multiset.
fn count_in_order<K: Ord + Clone>(rows: &mut BTreeMap<K, isize>, row: &K, d: isize) {
    let n = rows.entry(row.clone()).or_default();
    *n += d;
    if *n == 0 {
        rows.remove(row);
    }
}

fn add(index: &mut AHashMap<Row, KeyRows>, key: Row, row: &Row, d: isize) {
    use std::collections::hash_map::Entry;
    match index.entry(key) {
        Entry::Occupied(mut entry) => {
            let rows = entry.get_mut();
            match rows.iter().position(|(r, _)| r == row) {
                Some(at) => {
                    rows[at].1 += d;
                    if rows[at].1 == 0 {
                        rows.swap_remove(at);
                    }
                }
                None => rows.push((row.clone(), d)),
            }
            if rows.is_empty() {
                entry.remove();
            }
        }
        Entry::Vacant(entry) => {
            entry.insert(vec![(row.clone(), d)]);
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
            left: AHashMap::new(),
            right: AHashMap::new(),
        }
    }

    /// ΔL ⋈ R, then L' ⋈ ΔR (L' = L + ΔL): the change of L ⋈ R. A left
    /// join also pads the left rows whose key has no right rows, and moves
    /// them in and out of that state as the right side changes.
    pub fn step(&mut self, left: &Delta, right: &Delta) -> Delta {
        let mut out = Vec::new();
        let left_join = self.kind == JoinKind::Left;
        for (l, d) in left {
            match key_of(l, &self.left_on) {
                Some(key) => {
                    match self.right.get(&key) {
                        Some(rights) => out.extend(rights.iter().map(|(r, n)| (joined(l, r), d * n))),
                        None if left_join => out.push((padded(l, self.right_width), *d)),
                        None => {}
                    }
                    add(&mut self.left, key, l, *d);
                }
                None if left_join => out.push((padded(l, self.right_width), *d)),
                None => {}
            }
        }
        // Right changes by key, so that a key's move between "no right rows"
        // and "some" is seen once.
        let mut by_key: AHashMap<Row, Vec<(&Row, isize)>> = AHashMap::new();
        for (r, d) in right {
            if let Some(key) = key_of(r, &self.right_on) {
                by_key.entry(key).or_default().push((r, *d));
            }
        }
        for (key, changes) in by_key {
            let had = self.right.contains_key(&key);
            if let Some(lefts) = self.left.get(&key) {
                for (r, d) in &changes {
                    out.extend(lefts.iter().map(|(l, n)| (joined(l, r), d * n)));
                }
            }
            for (r, d) in changes {
                add(&mut self.right, key.clone(), r, d);
            }
            let has = self.right.contains_key(&key);
            if left_join && had != has {
                if let Some(lefts) = self.left.get(&key) {
                    let sign = if has { -1 } else { 1 };
                    out.extend(lefts.iter().map(|(l, n)| (padded(l, self.right_width), sign * n)));
                }
            }
        }
        consolidate(out)
    }
}

/// GROUP BY: each group's rows (the aggregates' inputs) and its output row.
pub struct Reduce {
    n_keys: usize,
    aggregates: Vec<Aggregate>,
    groups: AHashMap<Row, Group>,
}

#[derive(Default)]
struct Group {
    rows: AHashMap<Row, isize>,
    output: Option<Row>,
}

impl Reduce {
    pub fn new(n_keys: usize, aggregates: Vec<Aggregate>) -> Self {
        Reduce { n_keys, aggregates, groups: AHashMap::new() }
    }

    pub fn step(&mut self, input: &Delta) -> Delta {
        let mut dirty: AHashSet<Row> = AHashSet::new();
        for (row, d) in input {
            let key: Row = row[..self.n_keys].to_vec();
            let rest: Row = row[self.n_keys..].to_vec();
            count_in(&mut self.groups.entry(key.clone()).or_default().rows, &rest, *d);
            dirty.insert(key);
        }
        let mut out = Vec::new();
        for key in dirty {
            let group = self.groups.get_mut(&key).expect("a dirty group exists");
            let new = (!group.rows.is_empty()).then(|| {
                let mut row = key.clone();
                row.extend(self.aggregates.iter().map(|a| aggregate(a, &group.rows, self.n_keys)));
                row
            });
            if new != group.output {
                if let Some(old) = group.output.take() {
                    out.push((old, -1));
                }
                if let Some(new) = &new {
                    out.push((new.clone(), 1));
                }
                group.output = new;
            }
            if group.rows.is_empty() {
                self.groups.remove(&key);
            }
        }
        out
    }
}

/// One aggregate over a group's rows (columns after the `n_keys` group
/// columns, which the group's rows do not repeat).
fn aggregate(a: &Aggregate, rows: &AHashMap<Row, isize>, n_keys: usize) -> Value {
    let at = |c: usize| c - n_keys;
    let values = || rows.iter().filter_map(move |(row, n)| a.arg.map(|c| (&row[at(c)], *n)));
    let non_null = || values().filter(|(v, _)| !v.is_null());
    match a.func {
        AggFunc::Count => {
            if a.arg.is_none() {
                Value::Int(rows.values().sum::<isize>() as i64)
            } else if a.distinct {
                Value::Int(non_null().map(|(v, _)| v).collect::<AHashSet<_>>().len() as i64)
            } else {
                Value::Int(non_null().map(|(_, n)| n).sum::<isize>() as i64)
            }
        }
        AggFunc::Sum | AggFunc::Avg => {
            let distinct: Vec<(&Value, isize)> = if a.distinct {
                non_null().map(|(v, _)| v).collect::<AHashSet<_>>().into_iter().map(|v| (v, 1)).collect()
            } else {
                non_null().collect()
            };
            if distinct.is_empty() {
                return Value::Null;
            }
            let count: isize = distinct.iter().map(|(_, n)| n).sum();
            match a.ty {
                SqlType::Double => {
                    let sum: f64 = distinct.iter().map(|(v, n)| double(v) * *n as f64).sum();
                    Value::Double(if a.func == AggFunc::Avg { sum / count as f64 } else { sum })
                }
                _ => {
                    let mut sum = Decimal::ZERO;
                    let mut scale = 0;
                    for (v, n) in &distinct {
                        let d = match v {
                            Value::Int(i) => Decimal::from(*i),
                            Value::Decimal(d) => *d,
                            _ => continue,
                        };
                        scale = scale.max(d.scale());
                        sum += d * Decimal::from(*n as i64);
                    }
                    if a.func == AggFunc::Avg {
                        // PostgreSQL's AVG of numeric is its numeric division of the sum by the count.
                        crate::eval::decimal_div(sql_exact(sum, scale), Decimal::from(count as i64)).map_or(Value::Null, Value::Decimal)
                    } else {
                        Value::Decimal(sql_exact(sum, scale))
                    }
                }
            }
        }
        AggFunc::Min => non_null()
            .map(|(v, _)| v)
            .min_by(|x, y| sql_cmp(x, y).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(y)))
            .cloned()
            .unwrap_or(Value::Null),
        AggFunc::Max => non_null()
            .map(|(v, _)| v)
            .max_by(|x, y| sql_cmp(x, y).unwrap_or(std::cmp::Ordering::Equal).then(x.cmp(y)))
            .cloned()
            .unwrap_or(Value::Null),
        AggFunc::StringAgg => {
            let mut items: Vec<(Vec<SortKey>, &Value, isize)> = rows
                .iter()
                .filter_map(|(row, n)| {
                    let v = &row[at(a.arg?)];
                    (!v.is_null()).then(|| (a.order_by.iter().map(|(c, desc)| SortKey { value: row[at(*c)].clone(), desc: *desc }).collect(), v, *n))
                })
                .collect();
            if items.is_empty() {
                return Value::Null;
            }
            items.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(y.1)));
            let separator = a.separator.as_deref().unwrap_or("");
            let mut out = String::new();
            for (i, (_, v, n)) in items.iter().enumerate() {
                for k in 0..*n {
                    if i > 0 || k > 0 {
                        out.push_str(separator);
                    }
                    crate::value::write_text(v, &mut out);
                }
            }
            Value::text(&out)
        }
    }
}

fn double(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Decimal(d) => f64::try_from(*d).unwrap_or(f64::NAN),
        Value::Double(f) => *f,
        _ => f64::NAN,
    }
}

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
        use std::cmp::Ordering::*;
        let o = match (self.value.is_null(), other.value.is_null()) {
            (true, true) => Equal,
            (true, false) => Greater,
            (false, true) => Less,
            _ => sql_cmp(&self.value, &other.value).unwrap_or(Equal),
        };
        if self.desc {
            o.reverse()
        } else {
            o
        }
    }
}

impl PartialEq for SortKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for SortKey {}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The rows of each partition in order: `ROW_NUMBER()` numbers them,
/// `TopOne` keeps the first.
pub struct Ranked {
    partition_by: Vec<usize>,
    order_by: Vec<(usize, bool)>,
    /// Number every row (`ROW_NUMBER`) or keep the first (`TopOne`).
    number: bool,
    partitions: AHashMap<Row, Partition>,
}

#[derive(Default)]
struct Partition {
    rows: BTreeMap<(Vec<SortKey>, Row), isize>,
    output: Vec<Row>,
}

impl Ranked {
    pub fn new(partition_by: Vec<usize>, order_by: Vec<(usize, bool)>, number: bool) -> Self {
        Ranked { partition_by, order_by, number, partitions: AHashMap::new() }
    }

    pub fn step(&mut self, input: &Delta) -> Delta {
        let mut dirty: AHashSet<Row> = AHashSet::new();
        for (row, d) in input {
            let key: Row = self.partition_by.iter().map(|&c| row[c].clone()).collect();
            let sort: Vec<SortKey> = self.order_by.iter().map(|&(c, desc)| SortKey { value: row[c].clone(), desc }).collect();
            count_in_order(&mut self.partitions.entry(key.clone()).or_default().rows, &(sort, row.clone()), *d);
            dirty.insert(key);
        }
        let mut out = Vec::new();
        for key in dirty {
            let partition = self.partitions.get_mut(&key).expect("a dirty partition exists");
            let mut new = Vec::new();
            'rows: for ((_, row), n) in &partition.rows {
                for _ in 0..*n {
                    if self.number {
                        let mut numbered = row.clone();
                        numbered.push(Value::Int(new.len() as i64 + 1));
                        new.push(numbered);
                    } else {
                        new.push(row.clone());
                        break 'rows;
                    }
                }
            }
            // Only the rows whose number changed leave and come back.
            let unchanged = partition.output.iter().zip(&new).take_while(|(a, b)| a == b).count();
            out.extend(partition.output[unchanged..].iter().map(|r| (r.clone(), -1)));
            out.extend(new[unchanged..].iter().map(|r| (r.clone(), 1)));
            partition.output = new;
            if partition.rows.is_empty() {
                self.partitions.remove(&key);
            }
        }
        consolidate(out)
    }
}

/// Each distinct row once.
#[derive(Default)]
pub struct Distinct {
    counts: AHashMap<Row, isize>,
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
