//! A catalog's views compiled into one graph of operators, and batches of
//! source changes pushed through it.

use ahash::AHashMap;

use crate::expr::Expr;
use crate::key::{replace_row, Key, KeyIndex, KeyMap};
use crate::ops::{self, consolidate, Delta, Distinct, Input, Join, Ranked, Reduce};
#[cfg(test)]
use crate::plan::JoinKind;
use crate::plan::{star_of, Plan, RelationInfo};
use crate::star::{KeyedRow, Star};
use crate::texts::SharedTexts;
use crate::value::{SharedRow, Value};
use smallvec::SmallVec;
use std::borrow::Cow;

/// A source or view to run, as the SQL front end declared it.
#[derive(Debug, Clone)]
pub struct RelationSpec {
    pub name: String,
    /// A source's primary key; `None`: the source is append-only, each of
    /// its rows an event of its own under the key its change names (see
    /// [`Dataflow::apply`]).
    pub key: Option<Vec<usize>>,
    /// `None` for a source.
    pub plan: Option<Plan>,
    pub materialized: bool,
}

enum Op {
    Source,
    /// A node of a dropped view: no input, no state.
    Dropped,
    Filter(Expr),
    /// The rows the predicate keeps (all without one), mapped.
    Map(Option<Expr>, Vec<Expr>),
    Join(Join),
    Star(Star),
    Reduce(Reduce),
    Ranked(Ranked),
    Distinct(Distinct),
}

struct Node {
    op: Op,
    inputs: Vec<usize>,
}

/// A source's rows by primary key: a change replaces what the key had, so
/// a stale or repeated before-image cannot leave a ghost row.
struct SourceState {
    name: String,
    key: Vec<usize>,
    node: usize,
    /// Whether a compiled view reads it: the rows of a source no view reads
    /// are not kept.
    read: bool,
    /// Declared without a primary key: rows come and never go.
    append_only: bool,
    rows: KeyIndex<SharedRow>,
    /// Its rows' long texts, one copy of each where a column's repeat.
    texts: SharedTexts,
}

/// A materialized view's rows by key.
pub struct ViewRows {
    pub name: String,
    node: usize,
    /// Key columns; `None`: the whole row is its own key, and equal rows
    /// are counted.
    pub key: Option<Vec<usize>>,
    rows: KeyIndex<SharedRow>,
    counts: AHashMap<SharedRow, isize>,
    /// Whether its node is a keyed star ([`Star::keyed`]) that gives each
    /// changed key's row, which [`Self::apply_keyed`] takes.
    keyed: bool,
    /// The changes a keyed star's step made, until the batch returns them.
    pending: Vec<RowChange>,
}

impl ViewRows {
    pub fn get(&self, key: &[Value]) -> Option<&SharedRow> {
        self.rows.get(key)
    }

    /// Every row, a row without a key as many times as it occurs.
    pub fn rows(&self) -> impl Iterator<Item = &[Value]> {
        let keyed = self.rows.values().map(|row| &row[..]);
        let counted = self.counts.iter().flat_map(|(row, n)| std::iter::repeat_n(&row[..], (*n).max(0) as usize));
        keyed.chain(counted)
    }

    pub fn len(&self) -> usize {
        self.rows.len() + self.counts.values().map(|n| (*n).max(0) as usize).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether its rows come by key from a keyed star ([`Star::keyed`]).
    pub fn is_keyed(&self) -> bool {
        self.keyed
    }

    /// The view's changes of this batch: the ones its keyed star made, or
    /// those of its node's delta.
    fn take_changes(&mut self, outputs: &mut [Delta]) -> Vec<RowChange> {
        if self.keyed {
            std::mem::take(&mut self.pending)
        } else {
            self.apply(std::mem::take(&mut outputs[self.node]))
        }
    }

    /// Applies the view's changes of one batch; returns one change per key
    /// that changed: `(key, before, after)`.
    fn apply(&mut self, delta: Delta) -> Vec<RowChange> {
        if self.key.is_none() {
            // A row added and taken away in one batch must not count as either.
            return self.apply_counted(consolidate(delta));
        }
        // Grouped by key first, and the few changes of each key added up
        // there: cheaper than hashing every (wide) row to consolidate.
        let columns = self.key.as_deref().unwrap_or_default();
        let mut by_key: KeyMap<SmallVec<[(SharedRow, isize); 2]>> = KeyMap::with_capacity_and_hasher(delta.len() / 2, Default::default());
        for (row, d) in delta {
            let changes = by_key.entry(Key::of(&row, columns)).or_default();
            match changes.iter_mut().find(|(r, _)| *r == row) {
                Some((_, n)) => *n += d,
                None => changes.push((row, d)),
            }
        }
        let mut changes = Vec::with_capacity(by_key.len());
        for (key, rows) in by_key {
            if rows.iter().all(|(_, n)| *n == 0) {
                continue; // changes that cancel: the key keeps its row
            }
            // What is left with a positive count is the key's row now.
            let after = rows.into_iter().find(|(_, n)| *n > 0).map(|(row, _)| row);
            if let Some(change) = self.replace(key, after) {
                changes.push(change);
            }
        }
        changes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        changes
    }
}

impl ViewRows {
    fn new(name: &str, node: usize, key: Option<Vec<usize>>) -> Self {
        ViewRows { name: name.to_string(), node, key, rows: KeyIndex::default(), counts: AHashMap::new(), keyed: false, pending: Vec::new() }
    }

    /// Makes each key's row the last one `updates` gives it; returns one
    /// change per key whose row changed.
    fn apply_keyed(&mut self, mut updates: Vec<KeyedRow>) -> Vec<RowChange> {
        // Stable: of a key's updates, the last one is its row now.
        updates.sort_by(|a, b| a.key.cmp(&b.key));
        let mut changes = Vec::with_capacity(updates.len());
        let mut i = 0;
        while i < updates.len() {
            self.prefetch_ahead(&updates, i);
            let mut last = i;
            while updates.get(last + 1).is_some_and(|next| next.key == updates[i].key) {
                last += 1;
            }
            let (after, differs) = (updates[last].row.take(), updates[last].differs);
            let key = std::mem::replace(&mut updates[i].key, Key::One(Value::Null));
            let change = if differs { Some(self.put(key, after)) } else { self.replace(key, after) };
            changes.extend(change);
            i = last + 1;
        }
        changes
    }

    /// Starts loading the view's slot two keys after the `i`th, and the row
    /// of the next: the slots are spread over an index of every row, so
    /// their cache misses overlap instead of following one another.
    fn prefetch_ahead(&self, updates: &[KeyedRow], i: usize) {
        if let Some(update) = updates.get(i + 2) {
            self.rows.prefetch(update.key.as_slice());
        }
        if let Some(row) = updates.get(i + 1).and_then(|update| self.rows.peek(update.key.as_slice())) {
            crate::idmap::prefetch_shared(row);
        }
    }

    /// Makes `after` the row of `key` (`None`: no row); the change, unless
    /// the key's row stays as it was.
    fn replace<R: AsRef<[Value]> + Into<SharedRow>>(&mut self, key: Key, after: Option<R>) -> Option<RowChange> {
        // Compared first: a key whose row stays is not written again.
        if self.rows.get(key.as_slice()).map(|row| &row[..]) == after.as_ref().map(|row| row.as_ref()) {
            return None;
        }
        Some(self.put(key, after.map(Into::into)))
    }

    /// Makes `after` the row of `key`, known to differ from its row now.
    fn put(&mut self, key: Key, after: Option<SharedRow>) -> RowChange {
        let before = match &after {
            Some(row) => self.rows.insert(key.as_slice(), SharedRow::clone(row)),
            None => self.rows.remove(key.as_slice()),
        };
        RowChange { key, before, after }
    }

    /// A view without a key: each change of a row's count is one change per
    /// copy (the row is its own key).
    fn apply_counted(&mut self, delta: Delta) -> Vec<RowChange> {
        let mut changes = Vec::new();
        for (row, d) in delta {
            let n = self.counts.entry(row.clone()).or_default();
            *n += d;
            if *n == 0 {
                self.counts.remove(&row);
            }
            let key = Key::from_slice(&row);
            let (before, after) = if d > 0 { (None, Some(row)) } else { (Some(row), None) };
            changes.extend(std::iter::repeat_n(RowChange { key, before, after }, d.unsigned_abs()));
        }
        changes.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        changes
    }
}

/// A `Map` (with the filter under it, if any) of a source's or view's rows,
/// split into what it reads, the filter and the expressions: a `GROUP BY`
/// or a `DISTINCT ON` over it maps each row as it takes it, so no mapped
/// row is made and dropped for every change. (A `Map` over joins stays with
/// the joins, which compute it without making the joined row.)
fn unmapped(plan: &Plan) -> Option<(&Plan, Option<Expr>, &Vec<Expr>)> {
    let Plan::Map { input, exprs, .. } = plan else { return None };
    match &**input {
        Plan::Filter { input: get, predicate } if matches!(**get, Plan::Get { .. }) => Some((&**get, Some(predicate.clone()), exprs)),
        get @ Plan::Get { .. } => Some((get, None, exprs)),
        _ => None,
    }
}

/// The primary key of the source `get` reads, where it is one integer
/// column: a source gives a key's old row before its new one and at most
/// one row per key, which lets a `GROUP BY` over it know a row by that key
/// alone ([`Reduce::over_source`]).
fn integer_source_key(relations: &[RelationSpec], get: &Plan) -> Option<usize> {
    let Plan::Get { relation, columns } = get else { return None };
    let source = relations.iter().find(|r| r.name == *relation && r.plan.is_none())?;
    match source.key.as_deref()? {
        &[column] if columns.get(column).is_some_and(|c| c.ty == crate::types::SqlType::Int) => Some(column),
        _ => None,
    }
}

/// How many changes ahead a batch starts loading a source's row.
const SOURCE_LOOKAHEAD: usize = 4;

/// A source key's row before and after one change.
type KeyEdit = (Key, Option<SharedRow>, Option<SharedRow>);

/// A source's delta for one batch of changes of its rows by key: each key's
/// row before its first change out, after its last one in, nothing where
/// the two are the same. (Grouping by key, which is mostly one integer,
/// costs less than hashing whole rows to consolidate.)
fn net_delta(mut edits: Vec<KeyEdit>) -> Delta {
    // Stable: a key's changes stay in the order they were made.
    edits.sort_by(|a, b| a.0.cmp(&b.0));
    let mut delta = Vec::with_capacity(edits.len() * 2);
    let mut edits = edits.into_iter().peekable();
    while let Some((key, before, mut after)) = edits.next() {
        while let Some((_, _, later)) = edits.next_if(|(next, _, _)| *next == key) {
            after = later;
        }
        if before == after {
            continue;
        }
        delta.extend(before.map(|row| (row, -1)));
        delta.extend(after.map(|row| (row, 1)));
    }
    delta
}

/// One changed row of a materialized view.
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    /// The view's key columns of the row (the whole row for a view without
    /// a key), held inline when it is one value, as most keys are.
    pub key: Key,
    pub before: Option<SharedRow>,
    pub after: Option<SharedRow>,
}

/// A change of a source row: the row with this primary key is now `after`
/// (or gone).
#[derive(Debug, Clone)]
pub struct SourceChange {
    pub source: usize,
    /// The row's primary key: one value (most keys) in place.
    pub key: Key,
    /// Made where it is decoded and kept as it is: the source's row, the
    /// deltas and the operators' state share it.
    pub after: Option<SharedRow>,
}

pub struct Dataflow {
    nodes: Vec<Node>,
    sources: Vec<SourceState>,
    views: Vec<ViewRows>,
    /// Each view's (materialized or not) output node, by name.
    roots: AHashMap<String, usize>,
}

impl Dataflow {
    /// Compiles every materialized view of `relations`; views share their
    /// sources and the views they read.
    pub fn new(relations: &[RelationSpec]) -> Self {
        Self::with_views(relations, None)
    }

    /// Compiles the materialized views named in `only` (all when `None`),
    /// and what they read, nothing else.
    pub fn with_views(relations: &[RelationSpec], only: Option<&[String]>) -> Self {
        let mut flow = Dataflow { nodes: Vec::new(), sources: Vec::new(), views: Vec::new(), roots: AHashMap::new() };
        for relation in relations {
            if relation.plan.is_none() {
                let node = flow.push(Op::Source, Vec::new());
                flow.sources.push(SourceState {
                    name: relation.name.clone(),
                    key: relation.key.clone().unwrap_or_default(),
                    node,
                    read: false,
                    append_only: relation.key.is_none(),
                    rows: KeyIndex::default(),
                    texts: SharedTexts::default(),
                });
                flow.roots.insert(relation.name.clone(), node);
            }
        }
        for relation in relations {
            let wanted = only.is_none_or(|names| names.contains(&relation.name));
            if relation.materialized && wanted {
                let node = flow.compile_view(relations, &relation.name);
                flow.views.push(ViewRows::new(&relation.name, node, relation.key.clone()));
            }
        }
        for source in &mut flow.sources {
            source.read = flow.nodes.iter().any(|n| n.inputs.contains(&source.node));
        }
        for at in 0..flow.views.len() {
            flow.key_star(relations, at);
        }
        flow
    }

    /// Lets a view's star give its rows by key ([`Star::keyed`]) when the
    /// plan shows each key has at most one root row, each join key at most
    /// one row of its input, and the view's key is root columns the view
    /// passes through.
    fn key_star(&mut self, relations: &[RelationSpec], at: usize) {
        let view = &self.views[at];
        if self.views.iter().filter(|v| v.node == view.node).count() > 1 {
            return; // two views of one node: each takes its changes
        }
        let Some(root_key) = relations.iter().find(|r| r.name == view.name).and_then(|spec| keyed_star_root_key(relations, spec)) else {
            return;
        };
        let Op::Star(star) = &mut self.nodes[view.node].op else { return };
        star.keyed(root_key);
        self.views[at].keyed = true;
    }

    /// The output node of a view, compiled the first time it is read.
    fn compile_view(&mut self, relations: &[RelationSpec], name: &str) -> usize {
        if let Some(&node) = self.roots.get(name) {
            return node;
        }
        let Some(plan) = relations.iter().find(|r| r.name == name).and_then(|r| r.plan.as_ref()) else {
            unreachable!("the planner resolved {name} to a declared view")
        };
        let node = self.compile(relations, plan);
        self.roots.insert(name.to_string(), node);
        node
    }

    fn push(&mut self, op: Op, inputs: Vec<usize>) -> usize {
        self.nodes.push(Node { op, inputs });
        self.nodes.len() - 1
    }

    fn compile(&mut self, relations: &[RelationSpec], plan: &Plan) -> usize {
        match plan {
            Plan::Get { relation, .. } => self.compile_view(relations, relation),
            Plan::Filter { input, predicate } => {
                let i = self.compile(relations, input);
                self.push(Op::Filter(predicate.clone()), vec![i])
            }
            Plan::Join { .. } if star_of(plan).is_some() => self.compile_star(relations, plan, None),
            Plan::Map { input, exprs, .. } if star_of(input).is_some() => self.compile_star(relations, input, Some(exprs.clone())),
            // A Map over a GROUP BY (a view's SELECT list over its groups) is
            // computed where each group's row is made: no second copy of
            // every changed group's rows.
            Plan::Map { input, exprs, .. } if matches!(**input, Plan::Reduce { .. }) => self.compile_reduce(relations, input, Some(exprs.clone())),
            // The same over the rows kept in order (a DISTINCT ON's SELECT list).
            Plan::Map { input, exprs, .. } if matches!(**input, Plan::RowNumber { .. } | Plan::TopOne { .. }) => {
                self.compile_ranked(relations, input, Some(exprs.clone()))
            }
            // A Map over a Filter maps the rows it keeps: no copy of each kept row.
            Plan::Map { input, exprs, .. } => {
                let (input, predicate) = match &**input {
                    Plan::Filter { input, predicate } => (&**input, Some(predicate.clone())),
                    input => (input, None),
                };
                let i = self.compile(relations, input);
                self.push(Op::Map(predicate, exprs.clone()), vec![i])
            }
            Plan::Join { kind, left, right, on } => {
                let (l, r) = (self.compile(relations, left), self.compile(relations, right));
                self.push(Op::Join(Join::new(*kind, on, right.columns().len())), vec![l, r])
            }
            Plan::Reduce { .. } => self.compile_reduce(relations, plan, None),
            Plan::RowNumber { .. } | Plan::TopOne { .. } => self.compile_ranked(relations, plan, None),
            Plan::Distinct { input } => {
                let i = self.compile(relations, input);
                self.push(Op::Distinct(Distinct::default()), vec![i])
            }
        }
    }

    /// A `ROW_NUMBER()` or a `TopOne`, with the `Map` over it when there is one.
    fn compile_ranked(&mut self, relations: &[RelationSpec], plan: &Plan, project: Option<Vec<Expr>>) -> usize {
        let (input, partition_by, order_by, number) = match plan {
            Plan::RowNumber { input, partition_by, order_by, .. } => (input, partition_by, order_by, true),
            Plan::TopOne { input, partition_by, order_by } => (input, partition_by, order_by, false),
            _ => unreachable!("the caller matched a RowNumber or a TopOne"),
        };
        let ranked = Ranked::new(partition_by.clone(), order_by.clone(), number, project);
        let (i, mut ranked) = match unmapped(input) {
            Some((get, predicate, exprs)) => (self.compile(relations, get), ranked.over_map(predicate, exprs.clone())),
            None => (self.compile(relations, input), ranked),
        };
        if !number && self.sources.iter().any(|s| s.node == i && s.append_only) {
            ranked = ranked.over_append_only();
        }
        self.push(Op::Ranked(ranked), vec![i])
    }

    /// A `GROUP BY`, with the `Map` over it when there is one.
    fn compile_reduce(&mut self, relations: &[RelationSpec], plan: &Plan, project: Option<Vec<Expr>>) -> usize {
        let Plan::Reduce { input, group_by, aggregates, .. } = plan else { unreachable!("the caller matched a Reduce") };
        debug_assert!(group_by.iter().enumerate().all(|(k, &c)| k == c), "the planner puts the group columns first");
        let reduce = Reduce::new(group_by.len(), aggregates.clone(), project);
        let (i, reduce) = match unmapped(input) {
            Some((get, predicate, exprs)) => {
                (self.compile(relations, get), reduce.over_source(integer_source_key(relations, get)).over_map(predicate, exprs.clone()))
            }
            None => (self.compile(relations, input), reduce),
        };
        self.push(Op::Reduce(reduce), vec![i])
    }

    /// A chain of joins [`star_of`] accepts, as one [`Star`] node, with
    /// the `Map` over it when there is one.
    fn compile_star(&mut self, relations: &[RelationSpec], joins: &Plan, project: Option<Vec<Expr>>) -> usize {
        let (root, dims) = star_of(joins).expect("the caller checked the shape");
        let mut inputs = vec![self.compile(relations, root)];
        inputs.extend(dims.iter().map(|(_, _, dim)| self.compile(relations, dim)));
        let dims = dims.into_iter().map(|(kind, on, dim)| (kind, on, dim.columns().len())).collect();
        self.push(Op::Star(Star::new(root.columns().len(), dims, project)), inputs)
    }

    /// The position of a source, for [`SourceChange::source`].
    pub fn source(&self, name: &str) -> Option<usize> {
        self.sources.iter().position(|s| s.name == name)
    }

    /// The key columns of a source.
    pub fn source_key(&self, source: usize) -> &[usize] {
        &self.sources[source].key
    }

    /// The names of the sources a compiled view reads, by position.
    pub fn read_sources(&self) -> impl Iterator<Item = (usize, &str)> {
        self.sources.iter().enumerate().filter(|(_, s)| s.read).map(|(i, s)| (i, s.name.as_str()))
    }

    /// A source's rows by key, as the last changes left them.
    pub fn source_rows(&self, source: usize) -> impl Iterator<Item = (Key, &[Value])> {
        self.sources[source].rows.iter().map(|(key, row)| (key, &row[..]))
    }

    pub fn views(&self) -> &[ViewRows] {
        &self.views
    }

    /// Applies one batch of source changes; returns each materialized
    /// view's changed rows (by view, in declaration order).
    ///
    /// A source without a primary key is append-only: a change's key names
    /// one event (where it was read), so a change for a key that already
    /// has its row is that event read again, and one without a row takes
    /// nothing back; both change nothing. Operators over it can then keep
    /// less (a `DISTINCT ON` only each partition's first row).
    pub fn apply(&mut self, changes: Vec<SourceChange>) -> Vec<Vec<RowChange>> {
        let mut outputs: Vec<Delta> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        // Each source's list sized at once: grown, a large batch's was
        // copied again and again.
        let mut per_source = vec![0; self.sources.len()];
        changes.iter().for_each(|c| per_source[c.source] += 1);
        let mut edits: Vec<Vec<KeyEdit>> = per_source.into_iter().map(Vec::with_capacity).collect();
        let mut changes = changes.into_iter();
        while let Some(mut change) = changes.next() {
            // The rows of a source are spread over an index of every row:
            // loaded a few changes ahead, their cache misses overlap.
            if let Some(ahead) = changes.as_slice().get(SOURCE_LOOKAHEAD) {
                self.sources[ahead.source].rows.prefetch(ahead.key.as_slice());
            }
            // Then the row it holds, which the change's before-image is.
            if let Some(row) = changes.as_slice().get(SOURCE_LOOKAHEAD / 2).and_then(|a| self.sources[a.source].rows.peek(a.key.as_slice())) {
                crate::idmap::prefetch_values(row);
            }
            let source = &mut self.sources[change.source];
            if !source.read {
                continue;
            }
            if let Some(after) = change.after.as_mut() {
                source.texts.share(after);
            }
            if source.append_only {
                // A row only comes; one that is there already was read again
                // (one look-up finds that and stores a new row).
                let Some(after) = change.after else { continue };
                let mut new = false;
                source.rows.get_or_insert_with(change.key.as_slice(), || {
                    new = true;
                    SharedRow::clone(&after)
                });
                if new {
                    edits[change.source].push((change.key, None, Some(after)));
                }
                continue;
            }
            let before = replace_row(&mut source.rows, change.key.as_slice(), change.after.as_ref());
            edits[change.source].push((change.key, before, change.after));
        }
        for (source, edits) in self.sources.iter().zip(edits) {
            outputs[source.node] = net_delta(edits);
        }
        self.run_nodes(0, &mut outputs);
        self.views.iter_mut().map(|v| v.take_changes(&mut outputs)).collect()
    }

    /// Runs the operators from `first` on, in order, each on its inputs'
    /// deltas in `outputs`.
    fn run_nodes(&mut self, first: usize, outputs: &mut [Delta]) {
        let readers = self.readers();
        for id in first..self.nodes.len() {
            if let Op::Star(star) = &self.nodes[id].op {
                if star.is_keyed() {
                    outputs[id] = self.run_keyed_star(id, outputs, &readers);
                    continue;
                }
            }
            let node = &mut self.nodes[id];
            if matches!(node.op, Op::Source | Op::Dropped) || node.inputs.iter().all(|&i| outputs[i].is_empty()) {
                continue;
            }
            let input = |k: usize| &outputs[node.inputs[k]];
            let out = match &mut node.op {
                Op::Source | Op::Dropped => unreachable!("skipped above"),
                Op::Filter(predicate) => ops::filter(input(0), predicate),
                Op::Map(predicate, exprs) => ops::map(input(0), predicate.as_ref(), exprs),
                Op::Join(join) => join.step(input(0), input(1)),
                Op::Star(star) => {
                    let dims: Vec<&Delta> = (1..node.inputs.len()).map(input).collect();
                    star.step(input(0), &dims)
                }
                Op::Reduce(reduce) => reduce.step(input(0)),
                Op::Ranked(ranked) => ranked.step(input(0)),
                Op::Distinct(distinct) => distinct.step(input(0)),
            };
            outputs[id] = out;
        }
    }

    /// Runs a keyed star into its view's rows; returns the view's change as
    /// a delta when another operator reads it.
    fn run_keyed_star(&mut self, id: usize, outputs: &mut [Delta], readers: &[usize]) -> Delta {
        let node = &mut self.nodes[id];
        if node.inputs.iter().all(|&i| outputs[i].is_empty()) {
            return Vec::new();
        }
        let Op::Star(star) = &mut node.op else { unreachable!("the caller matched a star") };
        // The deltas only the star reads are its own: their rows move into
        // its state instead of being copied.
        let owned: Vec<Option<Delta>> = node.inputs.iter().map(|&i| (readers[i] == 1).then(|| std::mem::take(&mut outputs[i]))).collect();
        let mut inputs: Vec<Input> =
            owned.into_iter().zip(&node.inputs).map(|(own, &i)| own.map_or(Cow::Borrowed(&outputs[i]), Cow::Owned)).collect();
        let root = inputs.remove(0);
        let view = self.views.iter_mut().find(|v| v.node == id && v.keyed).expect("a keyed star feeds its view");
        let updates = star.step_keyed(root, inputs, &view.rows);
        let changes = view.apply_keyed(updates);
        // Read by another operator (its view is keyed: not counted).
        let delta = if readers[id] > 0 {
            changes.iter().flat_map(|c| c.before.iter().map(|r| (r.clone(), -1)).chain(c.after.iter().map(|r| (r.clone(), 1)))).collect()
        } else {
            Vec::new()
        };
        // Mostly the batch's only step of this view: the list itself is
        // kept, not its changes copied into another.
        if view.pending.is_empty() {
            view.pending = changes;
        } else {
            view.pending.extend(changes);
        }
        delta
    }

    /// How many readers each node's delta has in a batch: the nodes that
    /// take it as an input (once per input), and a view that takes its
    /// changes from it.
    fn readers(&self) -> Vec<usize> {
        let mut readers = vec![0; self.nodes.len()];
        self.nodes.iter().flat_map(|n| &n.inputs).for_each(|&i| readers[i] += 1);
        self.views.iter().filter(|v| !v.keyed).for_each(|v| readers[v.node] += 1);
        readers
    }

    /// Keeps the rows of every source, whether a view reads it or not, so
    /// that a view added later ([`Self::add_view`]) starts from them.
    pub fn keep_every_source(&mut self) {
        for source in &mut self.sources {
            source.read = true;
        }
    }

    /// Compiles one more materialized view on operators of its own (it
    /// shares none with the running views, so they need not replay), fills
    /// it from the sources' current rows, and returns its rows as
    /// insertions. Every source it reads must have its rows kept.
    pub fn add_view(&mut self, relations: &[RelationSpec], name: &str) -> Result<Vec<RowChange>, String> {
        let spec = relations.iter().find(|r| r.name == name && r.plan.is_some()).ok_or_else(|| format!("no view named {name}"))?;
        if self.views.iter().any(|v| v.name == name) {
            return Err(format!("view {name} is already maintained"));
        }
        let first = self.nodes.len();
        let sources_only: AHashMap<String, usize> = self.sources.iter().map(|s| (s.name.clone(), s.node)).collect();
        let running = std::mem::replace(&mut self.roots, sources_only);
        let node = self.compile_view(relations, name);
        self.roots = running;
        let mut outputs: Vec<Delta> = (0..self.nodes.len()).map(|_| Vec::new()).collect();
        for source in &self.sources {
            if self.nodes[first..].iter().any(|n| n.inputs.contains(&source.node)) {
                if !source.read {
                    self.nodes.truncate(first);
                    return Err(format!("the rows of source {} are not kept", source.name));
                }
                outputs[source.node] = source.rows.values().map(|row| (row.clone(), 1)).collect();
            }
        }
        self.views.push(ViewRows::new(name, node, spec.key.clone()));
        let at = self.views.len() - 1;
        self.key_star(relations, at);
        self.run_nodes(first, &mut outputs);
        Ok(self.views[at].take_changes(&mut outputs))
    }

    /// Stops maintaining a view: its operators that no other view reads
    /// drop their state. Returns whether it was maintained.
    pub fn drop_view(&mut self, name: &str) -> bool {
        let Some(at) = self.views.iter().position(|v| v.name == name) else { return false };
        let view = self.views.remove(at);
        if let (true, Op::Star(star)) = (view.keyed, &mut self.nodes[view.node].op) {
            // A view that reads it keeps the star: its state is the same
            // either way, and it goes on giving changes.
            star.unkey();
        }
        let mut needed = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = self.views.iter().map(|v| v.node).collect();
        while let Some(id) = stack.pop() {
            if !std::mem::replace(&mut needed[id], true) {
                stack.extend(self.nodes[id].inputs.iter().copied());
            }
        }
        for (id, node) in self.nodes.iter_mut().enumerate() {
            if !needed[id] && !matches!(node.op, Op::Source) {
                *node = Node { op: Op::Dropped, inputs: Vec::new() };
            }
        }
        let nodes = &self.nodes;
        self.roots.retain(|_, id| !matches!(nodes[*id].op, Op::Dropped));
        true
    }
}

/// The relations' keys, as key inference reads them.
struct Specs<'a>(&'a [RelationSpec]);

impl RelationInfo for Specs<'_> {
    fn key(&self, name: &str) -> Option<Vec<usize>> {
        self.0.iter().find(|r| r.name == name).and_then(|r| r.key.clone())
    }

    fn row_numbers(&self, name: &str) -> Vec<(usize, Vec<usize>)> {
        self.0.iter().find(|r| r.name == name).and_then(|r| r.plan.as_ref()).map_or_else(Vec::new, |plan| plan.row_numbers(self))
    }
}

/// The root columns of a materialized view's key, when its plan is a star
/// (with or without a `Map` over it) that can run keyed: the key is root
/// columns passed through, which cover a key of the root, and every joined
/// input is unique on its join columns.
pub fn keyed_star_root_key(relations: &[RelationSpec], spec: &RelationSpec) -> Option<Vec<usize>> {
    let info = Specs(relations);
    let plan = spec.plan.as_ref()?;
    let (joins, project) = match plan {
        Plan::Map { input, exprs, .. } => (input.as_ref(), Some(exprs)),
        joins => (joins, None),
    };
    let (root, dims) = star_of(joins)?;
    let root_width = root.columns().len();
    let root_key: Vec<usize> = spec
        .key
        .as_ref()?
        .iter()
        .map(|&k| match project {
            Some(exprs) => match exprs.get(k)? {
                Expr::Column(c) if *c < root_width => Some(*c),
                _ => None,
            },
            None => (k < root_width).then_some(k),
        })
        .collect::<Option<_>>()?;
    let covers = |columns: &[usize], keys: Vec<Vec<usize>>| keys.iter().any(|key| key.iter().all(|c| columns.contains(c)));
    if !covers(&root_key, root.unique_keys(&info)) {
        return None;
    }
    for (_, on, dim) in &dims {
        let dim_on: Vec<usize> = on.iter().map(|(_, r)| *r).collect();
        if !covers(&dim_on, dim.unique_keys(&info)) {
            return None;
        }
    }
    Some(root_key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Column;
    use crate::types::SqlType;

    fn get(name: &str, width: usize) -> Plan {
        let columns = (0..width).map(|i| Column { name: format!("c{i}"), ty: SqlType::Int, nullable: true }).collect();
        Plan::Get { relation: name.into(), columns }
    }

    fn join(kind: JoinKind, left: Plan, right: Plan, on: Vec<(usize, usize)>) -> Plan {
        Plan::Join { kind, left: Box::new(left), right: Box::new(right), on }
    }

    /// orders (3 columns) JOIN users ON users.0 = orders.1, JOIN user_city ON
    /// user_city.0 = users.0 (column 3): user_city's condition reads
    /// orders.1 instead. After a LEFT JOIN the same shape is no star.
    #[test]
    fn a_condition_on_a_column_an_inner_join_equated_with_the_root_reads_the_root() {
        let chain = |kind| join(JoinKind::Inner, join(kind, get("orders", 3), get("users", 2), vec![(1, 0)]), get("user_city", 2), vec![(3, 0)]);
        let inner = chain(JoinKind::Inner);
        let (root, dims) = star_of(&inner).expect("a star");
        assert_eq!(*root, get("orders", 3));
        let conditions: Vec<_> = dims.iter().map(|(_, on, _)| on.clone()).collect();
        assert_eq!(conditions, vec![vec![(1, 0)], vec![(1, 0)]]);
        assert!(star_of(&chain(JoinKind::Left)).is_none());
    }

    /// A `DISTINCT ON` over a source without a primary key keeps only each
    /// partition's first row, and gives what a recomputation over every
    /// event gives; an event read again (a key that has its row) and a
    /// change without a row change nothing.
    #[test]
    fn a_first_row_per_partition_over_an_append_only_source_keeps_only_the_first() {
        use crate::value::Value::Int;
        let specs = [
            RelationSpec { name: "events".into(), key: None, plan: None, materialized: false },
            RelationSpec {
                name: "newest".into(),
                key: Some(vec![0]),
                plan: Some(Plan::TopOne { input: Box::new(get("events", 3)), partition_by: vec![0], order_by: vec![(1, true), (2, true)] }),
                materialized: true,
            },
        ];
        let mut flow = Dataflow::new(&specs);
        let Op::Ranked(ranked) = &flow.nodes[flow.views[0].node].op else { panic!("a ranking") };
        assert!(ranked.append_only);
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut events: Vec<Vec<Value>> = Vec::new();
        for batch in 0..40 {
            let mut changes = Vec::new();
            for _ in 0..25 {
                let row = vec![Int(rng.random_range(0..6)), Int(rng.random_range(0..20)), Int(rng.random_range(0..4))];
                let key = Key::One(Int(events.len() as i64));
                events.push(row.clone());
                changes.push(SourceChange { source: 0, key, after: Some(row.into()) });
            }
            // Read again, with what another row holds, or taken back: no change.
            let again = rng.random_range(0..events.len()) as i64;
            changes.push(SourceChange { source: 0, key: Key::One(Int(again)), after: Some(vec![Int(99), Int(99), Int(99)].into()) });
            changes.push(SourceChange { source: 0, key: Key::One(Int(again)), after: None });
            flow.apply(changes);
            let mut expected: Vec<Vec<Value>> = Vec::new();
            for partition in 0..6 {
                let first = events.iter().filter(|e| e[0] == Int(partition)).max_by(|a, b| (&a[1], &a[2]).cmp(&(&b[1], &b[2])));
                expected.extend(first.cloned());
            }
            let mut got: Vec<Vec<Value>> = flow.views[0].rows().map(|r| r.to_vec()).collect();
            got.sort();
            assert_eq!(got, expected, "after batch {batch}");
        }
        let Op::Ranked(ranked) = &flow.nodes[flow.views[0].node].op else { panic!("a ranking") };
        assert_eq!(ranked.rows_kept(), 6, "one row per partition");
    }

    /// A key changed several times in a batch contributes its row before
    /// the first change and after the last; a key back where it started
    /// contributes nothing.
    #[test]
    fn a_sources_delta_nets_each_keys_changes() {
        use crate::value::Value::Int;
        let row = |k: i64, v: i64| SharedRow::from(vec![Int(k), Int(v)]);
        let edits = vec![
            (Key::One(Int(2)), Some(row(2, 1)), Some(row(2, 2))),
            (Key::One(Int(1)), None, Some(row(1, 1))),
            (Key::One(Int(2)), Some(row(2, 2)), Some(row(2, 3))),
            (Key::One(Int(3)), Some(row(3, 1)), Some(row(3, 2))),
            (Key::One(Int(1)), Some(row(1, 1)), None),
            (Key::One(Int(3)), Some(row(3, 2)), Some(row(3, 1))),
            (Key::One(Int(4)), Some(row(4, 1)), None),
        ];
        let mut delta = net_delta(edits);
        delta.sort();
        assert_eq!(delta, vec![(row(2, 1), -1), (row(2, 3), 1), (row(4, 1), -1)]);
    }
}
