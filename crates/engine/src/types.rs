//! SQL types of columns and expressions, and the rules for the type of a result.

use std::fmt;

/// The types the engine computes with. Exact numerics keep their scale, as
/// SQL does: `DECIMAL(10,2) * INT` is written with two digits after the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SqlType {
    Bool,
    /// Any SQL integer (SMALLINT, INT, BIGINT), held as 64 bits.
    Int,
    /// An exact numeric; `scale` is `None` when it depends on the value (a
    /// quotient, or NUMERIC without a scale).
    Decimal {
        scale: Option<u32>,
    },
    Double,
    Text,
    /// A point in time (TIMESTAMP WITH TIME ZONE; a TIMESTAMP is taken as UTC).
    Timestamp,
}

impl SqlType {
    pub fn is_numeric(self) -> bool {
        matches!(self, SqlType::Int | SqlType::Decimal { .. } | SqlType::Double)
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Bool => f.write_str("boolean"),
            SqlType::Int => f.write_str("bigint"),
            SqlType::Decimal { scale: Some(s) } => write!(f, "numeric(_,{s})"),
            SqlType::Decimal { scale: None } => f.write_str("numeric"),
            SqlType::Double => f.write_str("double precision"),
            SqlType::Text => f.write_str("text"),
            SqlType::Timestamp => f.write_str("timestamptz"),
        }
    }
}

/// The type of `a op b` for `+ - * /`, by SQL's rules for exact numerics:
/// a sum keeps the larger scale, a product adds the scales, a quotient's
/// scale depends on the values; integers stay integers; a double wins.
pub fn arithmetic(op: char, a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType::*;
    let scale = |t: SqlType| match t {
        Int => Some(Some(0)),
        Decimal { scale } => Some(scale),
        _ => None,
    };
    Some(match (a, b) {
        (Int, Int) => Int,
        (Double, x) | (x, Double) if x.is_numeric() => Double,
        _ => {
            let (sa, sb) = (scale(a)?, scale(b)?);
            let scale = match op {
                '+' | '-' => sa.zip(sb).map(|(x, y)| x.max(y)),
                '*' => sa.zip(sb).map(|(x, y)| x + y),
                _ => None,
            };
            Decimal { scale }
        }
    })
}

/// The common type of the branches of CASE or COALESCE.
pub fn common(a: SqlType, b: SqlType) -> Option<SqlType> {
    use SqlType::*;
    if a == b {
        return Some(a);
    }
    match (a, b) {
        (Decimal { scale: x }, Decimal { scale: y }) => Some(Decimal { scale: x.zip(y).map(|(x, y)| x.max(y)) }),
        (Int, Decimal { scale }) | (Decimal { scale }, Int) => Some(Decimal { scale }),
        (Double, x) | (x, Double) if x.is_numeric() => Some(Double),
        _ => None,
    }
}
