//! The plan a view compiles to: a tree of relational operators over column
//! positions, each of which the engine maintains incrementally.

use std::fmt;

use crate::expr::{Aggregate, Expr};
use ahash::AHashMap;

use crate::types::SqlType;

/// What key inference needs to know of the relations a plan reads.
pub trait RelationInfo {
    /// A source's or view's key (column positions), if it has one.
    fn key(&self, name: &str) -> Option<Vec<usize>>;
    /// Its columns that are a `ROW_NUMBER()`, each with its partition.
    fn row_numbers(&self, name: &str) -> Vec<(usize, Vec<usize>)>;
}

/// A column of a plan's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: SqlType,
    pub nullable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    /// Every left row, with NULLs where no right row matches.
    Left,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The rows of a source or of another view.
    Get {
        relation: String,
        columns: Vec<Column>,
    },
    Filter {
        input: Box<Plan>,
        predicate: Expr,
    },
    /// One output column per expression over the input row.
    Map {
        input: Box<Plan>,
        exprs: Vec<Expr>,
        names: Vec<String>,
    },
    /// Left columns, then right columns; `on` pairs a left and a right column
    /// that must be equal (and not NULL).
    Join {
        kind: JoinKind,
        left: Box<Plan>,
        right: Box<Plan>,
        on: Vec<(usize, usize)>,
    },
    /// The group columns, then one column per aggregate. The first
    /// `key_len` group columns are the key; the rest are determined by them
    /// (a scalar subquery's value, grouped along).
    Reduce {
        input: Box<Plan>,
        group_by: Vec<usize>,
        key_len: usize,
        aggregates: Vec<Aggregate>,
        names: Vec<String>,
    },
    /// The input with one more column: `ROW_NUMBER() OVER (PARTITION BY
    /// partition_by ORDER BY order_by)`.
    RowNumber {
        input: Box<Plan>,
        partition_by: Vec<usize>,
        order_by: Vec<(usize, bool)>,
        name: String,
    },
    /// The first row of each partition in `order_by` (`DISTINCT ON`, or
    /// `ROW_NUMBER() ... = 1`).
    TopOne {
        input: Box<Plan>,
        partition_by: Vec<usize>,
        order_by: Vec<(usize, bool)>,
    },
    /// Each distinct row once (`SELECT DISTINCT`).
    Distinct {
        input: Box<Plan>,
    },
}

impl Plan {
    /// The output columns.
    pub fn columns(&self) -> Vec<Column> {
        match self {
            Plan::Get { columns, .. } => columns.clone(),
            Plan::Filter { input, .. } | Plan::TopOne { input, .. } | Plan::Distinct { input } => input.columns(),
            Plan::Map { input, exprs, names } => {
                let inputs = input.columns();
                exprs
                    .iter()
                    .zip(names)
                    .map(|(e, name)| Column { name: name.clone(), ty: type_of(e, &inputs), nullable: nullable(e, &inputs) })
                    .collect()
            }
            Plan::Join { kind, left, right, .. } => {
                let mut columns = left.columns();
                columns.extend(right.columns().into_iter().map(|c| Column { nullable: c.nullable || *kind == JoinKind::Left, ..c }));
                columns
            }
            Plan::Reduce { input, group_by, aggregates, names, .. } => {
                let inputs = input.columns();
                let mut columns: Vec<Column> = group_by.iter().map(|&c| inputs[c].clone()).collect();
                for (a, name) in aggregates.iter().zip(&names[group_by.len()..]) {
                    let nullable = !matches!(a.func, crate::expr::AggFunc::Count);
                    columns.push(Column { name: name.clone(), ty: a.ty, nullable });
                }
                for (c, name) in columns.iter_mut().zip(names) {
                    c.name = name.clone();
                }
                columns
            }
            Plan::RowNumber { input, name, .. } => {
                let mut columns = input.columns();
                columns.push(Column { name: name.clone(), ty: SqlType::Int, nullable: false });
                columns
            }
        }
    }

    /// Column sets on which the output has at most one row each, as far as
    /// the plan shows: a source's primary key, a `GROUP BY`, a partition kept
    /// at its first row. Scalar subqueries need one to be planned as a join.
    pub fn unique_keys(&self, relations: &dyn RelationInfo) -> Vec<Vec<usize>> {
        match self {
            Plan::Get { relation, .. } => relations.key(relation).into_iter().collect(),
            Plan::Filter { input, predicate } => {
                let mut keys = input.unique_keys(relations);
                // `rn = 1` over ROW_NUMBER() keeps one row per partition.
                if let Some(c) = equals_one(predicate) {
                    keys.extend(input.row_numbers(relations).into_iter().filter(|(rn, _)| *rn == c).map(|(_, partition)| partition));
                }
                keys
            }
            Plan::TopOne { input, partition_by, .. } => {
                let mut keys = input.unique_keys(relations);
                keys.push(partition_by.clone());
                keys
            }
            Plan::RowNumber { input, .. } => input.unique_keys(relations),
            Plan::Distinct { input } => vec![(0..input.columns().len()).collect()],
            Plan::Map { input, exprs, .. } => {
                // A key survives when each of its columns is passed through.
                input.unique_keys(relations).into_iter().filter_map(|key| key.iter().map(|&c| passed_through(exprs, c)).collect()).collect()
            }
            Plan::Reduce { key_len, .. } => vec![(0..*key_len).collect()],
            Plan::Join { left, right, on, .. } => {
                // Each left row meets at most one right row when the join
                // covers a key of the right: the left's keys stay keys.
                let width = left.columns().len();
                let right_keys = right.unique_keys(relations);
                let covered = right_keys.iter().any(|key| key.iter().all(|k| on.iter().any(|(_, r)| r == k)));
                let left_keys = left.unique_keys(relations);
                if covered {
                    left_keys
                } else {
                    left_keys
                        .iter()
                        .flat_map(|l| right_keys.iter().map(move |r| l.iter().copied().chain(r.iter().map(|c| c + width)).collect()))
                        .collect()
                }
            }
        }
    }

    /// The sources and views this plan reads directly, each once.
    pub fn reads(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_reads(&mut out);
        out
    }

    fn collect_reads<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Plan::Get { relation, .. } if !out.contains(&relation.as_str()) => out.push(relation),
            Plan::Get { .. } => {}
            Plan::Filter { input, .. }
            | Plan::Map { input, .. }
            | Plan::Reduce { input, .. }
            | Plan::RowNumber { input, .. }
            | Plan::TopOne { input, .. }
            | Plan::Distinct { input } => input.collect_reads(out),
            Plan::Join { left, right, .. } => {
                left.collect_reads(out);
                right.collect_reads(out);
            }
        }
    }

    /// The output columns that are a `ROW_NUMBER()`, each with its partition.
    pub fn row_numbers(&self, relations: &dyn RelationInfo) -> Vec<(usize, Vec<usize>)> {
        match self {
            Plan::Get { relation, .. } => relations.row_numbers(relation),
            Plan::Filter { input, .. } | Plan::TopOne { input, .. } | Plan::Distinct { input } => input.row_numbers(relations),
            Plan::RowNumber { input, partition_by, .. } => {
                let mut out = input.row_numbers(relations);
                out.push((input.columns().len(), partition_by.clone()));
                out
            }
            Plan::Map { input, exprs, .. } => input
                .row_numbers(relations)
                .into_iter()
                .filter_map(|(rn, partition)| {
                    Some((passed_through(exprs, rn)?, partition.iter().map(|&c| passed_through(exprs, c)).collect::<Option<Vec<_>>>()?))
                })
                .collect(),
            Plan::Join { left, right, .. } => {
                let width = left.columns().len();
                let mut out = left.row_numbers(relations);
                out.extend(right.row_numbers(relations).into_iter().map(|(rn, p)| (rn + width, p.into_iter().map(|c| c + width).collect())));
                out
            }
            Plan::Reduce { .. } => Vec::new(),
        }
    }

    /// `in_star`: this node is a join of a star already announced above it.
    fn explain(&self, f: &mut fmt::Formatter<'_>, depth: usize, in_star: bool) -> fmt::Result {
        let pad = "  ".repeat(depth);
        let list = |cols: &[usize]| cols.iter().map(|c| format!("#{c}")).collect::<Vec<_>>().join(", ");
        let order =
            |cols: &[(usize, bool)]| cols.iter().map(|(c, d)| format!("#{c}{}", if *d { " DESC" } else { "" })).collect::<Vec<_>>().join(", ");
        match self {
            Plan::Get { relation, columns } => {
                writeln!(f, "{pad}Get {relation} ({})", columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", "))
            }
            Plan::Filter { input, predicate } => {
                writeln!(f, "{pad}Filter {predicate}")?;
                input.explain(f, depth + 1, false)
            }
            Plan::Map { input, exprs, names } => {
                let items: Vec<String> = exprs.iter().zip(names).map(|(e, n)| format!("{e} AS {n}")).collect();
                writeln!(f, "{pad}Map {}", items.join(", "))?;
                input.explain(f, depth + 1, false)
            }
            Plan::Join { kind, left, right, on } => {
                if !in_star {
                    if let Some((root, dims)) = star_of(self) {
                        let name = match root {
                            Plan::Get { relation, .. } => relation.clone(),
                            _ => "its first input".into(),
                        };
                        writeln!(f, "{pad}-- the {} joins below run as one Star operator on the rows of {name}", dims.len())?;
                    }
                }
                let chain = in_star || star_of(self).is_some();
                let width = left.columns().len();
                let on: Vec<String> = on.iter().map(|(l, r)| format!("#{l} = #{}", r + width)).collect();
                writeln!(f, "{pad}{} on {}", if *kind == JoinKind::Left { "LeftJoin" } else { "Join" }, on.join(" AND "))?;
                left.explain(f, depth + 1, chain)?;
                right.explain(f, depth + 1, false)
            }
            Plan::Reduce { input, group_by, aggregates, .. } => {
                let aggs: Vec<String> = aggregates.iter().map(|a| a.to_string()).collect();
                writeln!(f, "{pad}Reduce group by [{}] aggregates [{}]", list(group_by), aggs.join(", "))?;
                input.explain(f, depth + 1, false)
            }
            Plan::RowNumber { input, partition_by, order_by, name } => {
                writeln!(f, "{pad}RowNumber {name} partition by [{}] order by [{}]", list(partition_by), order(order_by))?;
                input.explain(f, depth + 1, false)
            }
            Plan::TopOne { input, partition_by, order_by } => {
                writeln!(f, "{pad}TopOne partition by [{}] order by [{}]", list(partition_by), order(order_by))?;
                input.explain(f, depth + 1, false)
            }
            Plan::Distinct { input } => {
                writeln!(f, "{pad}Distinct")?;
                input.explain(f, depth + 1, false)
            }
        }
    }
}

/// A chain of two or more joins whose every condition reads the chain's
/// first input (the root), as the root and each joined input with its kind
/// and condition: `orders` joined to its user, address, items and status.
/// Such a chain runs as one `Star` operator (`crate::star`).
///
/// A condition on a column an earlier inner join made equal to a root
/// column (`JOIN user_city c ON c.user_id = u.user_id` after `JOIN users u
/// ON u.user_id = o.user_id`) reads that root column instead: every joined
/// row has the same value in both. Not after a LEFT JOIN, whose padded
/// rows have NULL there.
pub type StarDims<'a> = Vec<(JoinKind, Vec<(usize, usize)>, &'a Plan)>;

pub fn star_of(plan: &Plan) -> Option<(&Plan, StarDims<'_>)> {
    let mut chain = Vec::new();
    let mut at = plan;
    while let Plan::Join { kind, left, right, on } = at {
        chain.push((*kind, on.as_slice(), right.as_ref()));
        at = left;
    }
    chain.reverse();
    let root_width = at.columns().len();
    if chain.len() < 2 {
        return None;
    }
    let mut same_as_root: AHashMap<usize, usize> = AHashMap::new();
    let mut offset = root_width;
    let mut dims = Vec::with_capacity(chain.len());
    for (kind, on, dim) in chain {
        let root_column = |l: usize| if l < root_width { Some(l) } else { same_as_root.get(&l).copied() };
        let on: Vec<(usize, usize)> = on.iter().map(|&(l, r)| Some((root_column(l)?, r))).collect::<Option<_>>()?;
        if on.is_empty() {
            return None;
        }
        if kind == JoinKind::Inner {
            same_as_root.extend(on.iter().map(|&(l, r)| (offset + r, l)));
        }
        offset += dim.columns().len();
        dims.push((kind, on, dim));
    }
    Some((at, dims))
}

/// The output position of input column `c`, if an expression passes it through.
fn passed_through(exprs: &[Expr], c: usize) -> Option<usize> {
    exprs.iter().position(|e| *e == Expr::Column(c))
}

/// The column `c` of a predicate `#c = 1`.
fn equals_one(predicate: &Expr) -> Option<usize> {
    use crate::expr::{BinaryOp, Literal};
    match predicate {
        Expr::Binary(BinaryOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Column(c), Expr::Literal(Literal::Int(1), _)) | (Expr::Literal(Literal::Int(1), _), Expr::Column(c)) => Some(*c),
            _ => None,
        },
        _ => None,
    }
}

/// `EXPLAIN`: one operator a line, inputs indented below it; `#n` is the
/// input's column `n` (a join's right columns follow its left ones).
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.explain(f, 0, false)
    }
}

/// The type of `e` over `inputs` (the planner has checked that it has one).
pub fn type_of(e: &Expr, inputs: &[Column]) -> SqlType {
    crate::expr::infer(e, inputs).unwrap_or(SqlType::Text)
}

/// Whether `e` can be NULL over `inputs`.
pub fn nullable(e: &Expr, inputs: &[Column]) -> bool {
    use crate::expr::{Func, Literal};
    match e {
        Expr::Column(c) => inputs[*c].nullable,
        Expr::Literal(l, _) => *l == Literal::Null,
        Expr::IsNull { .. } => false,
        Expr::Call(Func::Coalesce, args) => args.iter().all(|a| nullable(a, inputs)),
        Expr::Call(Func::Concat | Func::ConcatWs, args) => matches!(e, Expr::Call(Func::ConcatWs, _)) && nullable(&args[0], inputs),
        Expr::Call(Func::Nullif, _) => true,
        Expr::Case { whens, otherwise } => otherwise.as_ref().is_none_or(|o| nullable(o, inputs)) || whens.iter().any(|(_, r)| nullable(r, inputs)),
        Expr::Not(x) | Expr::Neg(x) | Expr::Cast(x, _) => nullable(x, inputs),
        Expr::Call(_, args) => args.iter().any(|a| nullable(a, inputs)),
        Expr::Binary(_, a, b) | Expr::Like { expr: a, pattern: b, .. } => nullable(a, inputs) || nullable(b, inputs),
        Expr::InList { expr, list, .. } => nullable(expr, inputs) || list.iter().any(|a| nullable(a, inputs)),
    }
}
