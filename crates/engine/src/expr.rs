//! Scalar expressions after name resolution: columns are positions in the
//! input row, every node has a type.

use std::fmt;

use crate::plan::Column;
use crate::types::{self, SqlType};

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Int(i64),
    /// An exact numeric as written (`12.50`): its digits and its scale.
    Decimal(String),
    Double(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    /// `||` on text.
    Concat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Coalesce,
    Nullif,
    /// NULL arguments are skipped.
    Concat,
    /// The first argument is the separator; NULL arguments are skipped.
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Length,
    /// Seconds since the epoch to a timestamp.
    ToTimestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Column(usize),
    Literal(Literal, SqlType),
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        negated: bool,
    },
    /// `CASE WHEN c THEN r ... ELSE e END` (a simple CASE is rewritten to this form).
    Case {
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    Cast(Box<Expr>, SqlType),
    Call(Func, Vec<Expr>),
}

impl Expr {
    /// The input columns the expression reads.
    pub fn columns(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Column(c) => out.push(*c),
            Expr::Literal(..) => {}
            Expr::Not(e) | Expr::Neg(e) | Expr::IsNull { expr: e, .. } | Expr::Cast(e, _) => e.columns(out),
            Expr::Binary(_, a, b) | Expr::Like { expr: a, pattern: b, .. } => {
                a.columns(out);
                b.columns(out);
            }
            Expr::InList { expr, list, .. } => {
                expr.columns(out);
                list.iter().for_each(|e| e.columns(out));
            }
            Expr::Case { whens, otherwise } => {
                for (c, r) in whens {
                    c.columns(out);
                    r.columns(out);
                }
                if let Some(e) = otherwise {
                    e.columns(out);
                }
            }
            Expr::Call(_, args) => args.iter().for_each(|e| e.columns(out)),
        }
    }

    /// The same expression with every column `c` read as `map(c)`.
    pub fn remap(&self, map: &impl Fn(usize) -> usize) -> Expr {
        let b = |e: &Expr| Box::new(e.remap(map));
        match self {
            Expr::Column(c) => Expr::Column(map(*c)),
            Expr::Literal(..) => self.clone(),
            Expr::Not(e) => Expr::Not(b(e)),
            Expr::Neg(e) => Expr::Neg(b(e)),
            Expr::Binary(op, x, y) => Expr::Binary(*op, b(x), b(y)),
            Expr::IsNull { expr, negated } => Expr::IsNull { expr: b(expr), negated: *negated },
            Expr::InList { expr, list, negated } => {
                Expr::InList { expr: b(expr), list: list.iter().map(|e| e.remap(map)).collect(), negated: *negated }
            }
            Expr::Like { expr, pattern, negated } => Expr::Like { expr: b(expr), pattern: b(pattern), negated: *negated },
            Expr::Case { whens, otherwise } => {
                Expr::Case { whens: whens.iter().map(|(c, r)| (c.remap(map), r.remap(map))).collect(), otherwise: otherwise.as_ref().map(|e| b(e)) }
            }
            Expr::Cast(e, t) => Expr::Cast(b(e), *t),
            Expr::Call(f, args) => Expr::Call(*f, args.iter().map(|e| e.remap(map)).collect()),
        }
    }
}

/// An aggregate of a `GROUP BY`, over one input column (`None` for `COUNT(*)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub func: AggFunc,
    pub arg: Option<usize>,
    pub distinct: bool,
    /// `STRING_AGG`'s separator.
    pub separator: Option<String>,
    /// `STRING_AGG(x, sep ORDER BY ...)`: input columns, descending or not.
    pub order_by: Vec<(usize, bool)>,
    pub ty: SqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFunc {
    Count,
    Sum,
    Min,
    Max,
    Avg,
    StringAgg,
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Column(c) => write!(f, "#{c}"),
            Expr::Literal(Literal::Null, _) => f.write_str("NULL"),
            Expr::Literal(Literal::Bool(b), _) => write!(f, "{b}"),
            Expr::Literal(Literal::Int(i), _) => write!(f, "{i}"),
            Expr::Literal(Literal::Decimal(d), _) => f.write_str(d),
            Expr::Literal(Literal::Double(d), _) => write!(f, "{d:?}"),
            Expr::Literal(Literal::Text(t), _) => write!(f, "'{}'", t.replace('\'', "''")),
            Expr::Not(e) => write!(f, "NOT {e}"),
            Expr::Neg(e) => write!(f, "-{e}"),
            Expr::Binary(op, a, b) => write!(f, "({a} {} {b})", op_text(*op)),
            Expr::IsNull { expr, negated } => write!(f, "{expr} IS {}NULL", if *negated { "NOT " } else { "" }),
            Expr::InList { expr, list, negated } => {
                write!(f, "{expr} {}IN (", if *negated { "NOT " } else { "" })?;
                comma_separated(f, list)?;
                f.write_str(")")
            }
            Expr::Like { expr, pattern, negated } => write!(f, "{expr} {}LIKE {pattern}", if *negated { "NOT " } else { "" }),
            Expr::Case { whens, otherwise } => {
                f.write_str("CASE")?;
                for (c, r) in whens {
                    write!(f, " WHEN {c} THEN {r}")?;
                }
                if let Some(e) = otherwise {
                    write!(f, " ELSE {e}")?;
                }
                f.write_str(" END")
            }
            Expr::Cast(e, t) => write!(f, "{e}::{t}"),
            Expr::Call(func, args) => {
                write!(f, "{func:?}(")?;
                comma_separated(f, args)?;
                f.write_str(")")
            }
        }
    }
}

fn comma_separated(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

fn op_text(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Eq => "=",
        BinaryOp::NotEq => "<>",
        BinaryOp::Lt => "<",
        BinaryOp::LtEq => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::GtEq => ">=",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Concat => "||",
    }
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}(", self.func)?;
        if self.distinct {
            f.write_str("DISTINCT ")?;
        }
        match self.arg {
            Some(c) => write!(f, "#{c}")?,
            None => f.write_str("*")?,
        }
        if let Some(sep) = &self.separator {
            write!(f, ", '{sep}'")?;
        }
        for (i, (c, desc)) in self.order_by.iter().enumerate() {
            write!(f, "{}#{c}{}", if i == 0 { " ORDER BY " } else { ", " }, if *desc { " DESC" } else { "" })?;
        }
        f.write_str(")")
    }
}

/// The type of `e` over `inputs`, or why it has none. A NULL literal takes
/// the type its neighbours give it.
pub fn infer(e: &Expr, inputs: &[Column]) -> std::result::Result<SqlType, String> {
    infer_opt(e, inputs).map(|t| t.unwrap_or(SqlType::Text))
}

fn infer_opt(e: &Expr, inputs: &[Column]) -> std::result::Result<Option<SqlType>, String> {
    use SqlType::*;
    let t = |x: &Expr| infer_opt(x, inputs);
    let both = |a: Option<SqlType>, b: Option<SqlType>, what: &str| -> std::result::Result<Option<SqlType>, String> {
        match (a, b) {
            (Some(a), Some(b)) => types::common(a, b).map(Some).ok_or_else(|| format!("{what}: {a} and {b} do not mix")),
            (a, b) => Ok(a.or(b)),
        }
    };
    Ok(match e {
        Expr::Column(c) => Some(inputs.get(*c).ok_or_else(|| format!("no column #{c}"))?.ty),
        Expr::Literal(Literal::Null, _) => None,
        Expr::Literal(_, ty) => Some(*ty),
        Expr::Not(x) => {
            expect(t(x)?, Bool, "NOT")?;
            Some(Bool)
        }
        Expr::Neg(x) => match t(x)? {
            Some(ty) if !ty.is_numeric() => return Err(format!("minus of {ty}")),
            ty => ty,
        },
        Expr::Binary(op, a, b) => {
            let (ta, tb) = (t(a)?, t(b)?);
            match op {
                BinaryOp::And | BinaryOp::Or => {
                    expect(ta, Bool, "AND/OR")?;
                    expect(tb, Bool, "AND/OR")?;
                    Some(Bool)
                }
                BinaryOp::Concat => Some(Text),
                BinaryOp::Div if matches!(ta, Some(Decimal { .. })) || matches!(tb, Some(Decimal { .. })) => {
                    return Err("a division of exact numerics: not supported yet (PostgreSQL's quotient can need more significant digits than the \
                                engine holds exactly, 28); divide integers, or cast to double precision"
                        .into());
                }
                BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div => match (ta, tb) {
                    (Some(x), Some(y)) => {
                        let c = match op {
                            BinaryOp::Add => '+',
                            BinaryOp::Sub => '-',
                            BinaryOp::Mul => '*',
                            _ => '/',
                        };
                        Some(types::arithmetic(c, x, y).ok_or_else(|| format!("the operands of {c} do not mix: {x} and {y}"))?)
                    }
                    (x, y) => x.or(y),
                },
                _ => {
                    both(ta, tb, "a comparison")?;
                    Some(Bool)
                }
            }
        }
        Expr::IsNull { .. } => Some(Bool),
        Expr::InList { expr, list, .. } => {
            let mut ty = t(expr)?;
            for x in list {
                ty = both(ty, t(x)?, "IN")?;
            }
            Some(Bool)
        }
        Expr::Like { expr, pattern, .. } => {
            expect(t(expr)?, Text, "LIKE")?;
            expect(t(pattern)?, Text, "LIKE")?;
            Some(Bool)
        }
        Expr::Case { whens, otherwise } => {
            let mut ty = None;
            for (c, r) in whens {
                expect(t(c)?, Bool, "a WHEN condition")?;
                ty = both(ty, t(r)?, "CASE")?;
            }
            if let Some(o) = otherwise {
                ty = both(ty, t(o)?, "CASE")?;
            }
            ty
        }
        Expr::Cast(x, to) => {
            if let Some(from) = t(x)? {
                let ok = from == *to || *to == Text || from == Text || (from.is_numeric() && to.is_numeric()) || (from == Int && *to == Bool);
                if !ok {
                    return Err(format!("a cast from {from} to {to}"));
                }
            }
            Some(*to)
        }
        Expr::Call(func, args) => {
            let tys: Vec<Option<SqlType>> = args.iter().map(t).collect::<std::result::Result<_, _>>()?;
            match func {
                Func::Coalesce => tys.into_iter().try_fold(None, |acc, x| both(acc, x, "COALESCE"))?,
                Func::Nullif => both(tys[0], tys[1], "NULLIF").map(|_| tys[0])?,
                Func::Concat | Func::ConcatWs => Some(Text),
                Func::Lower | Func::Upper | Func::Trim => {
                    expect(tys[0], Text, "a text function")?;
                    Some(Text)
                }
                Func::Length => {
                    expect(tys[0], Text, "LENGTH")?;
                    Some(Int)
                }
                Func::ToTimestamp => match tys[0] {
                    Some(ty) if !ty.is_numeric() => return Err(format!("to_timestamp of {ty} (it takes seconds since the epoch)")),
                    _ => Some(Timestamp),
                },
            }
        }
    })
}

fn expect(got: Option<SqlType>, want: SqlType, what: &str) -> std::result::Result<(), String> {
    match got {
        Some(g) if g != want => Err(format!("{what} needs {want}, not {g}")),
        _ => Ok(()),
    }
}
