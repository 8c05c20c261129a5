//! Evaluating a planned expression over a row, with SQL's rules for NULL,
//! three-valued logic and exact numerics.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::expr::{BinaryOp, Expr, Func, Literal};
use crate::types::SqlType;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;

use crate::value::{sql_cmp, sql_exact, write_text, CompactDecimal, Value};

/// A literal as a value of its type.
pub fn literal(l: &Literal) -> Value {
    match l {
        Literal::Null => Value::Null,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(i) => Value::Int(*i),
        Literal::Decimal(d) => d.parse::<Decimal>().map(Value::decimal).unwrap_or(Value::Null),
        Literal::Double(f) => Value::Double(*f),
        Literal::Text(t) => Value::text(t),
    }
}

/// What an expression reads its columns from: a row, or a row in parts
/// (a join's inputs side by side, not copied into one row).
pub trait Columns {
    fn column(&self, c: usize) -> &Value;
}

impl Columns for [Value] {
    fn column(&self, c: usize) -> &Value {
        &self[c]
    }
}

impl Columns for Vec<Value> {
    fn column(&self, c: usize) -> &Value {
        &self[c]
    }
}

/// Rows side by side, read as one: column `c` of the whole is in the part
/// that covers it.
pub struct Parts<'p, 'a>(pub &'p [&'a [Value]]);

impl Columns for Parts<'_, '_> {
    fn column(&self, mut c: usize) -> &Value {
        for part in self.0 {
            if c < part.len() {
                return &part[c];
            }
            c -= part.len();
        }
        panic!("column {c} past the parts' end")
    }
}

/// Each expression over the row given in parts (side by side), collected
/// into a row of either kind: a `SharedRow` is made in one allocation.
#[inline]
pub fn eval_all<C: FromIterator<Value>>(exprs: &[Expr], parts: &[&[Value]]) -> C {
    let row = Parts(parts);
    exprs.iter().map(|e| eval(e, &row)).collect()
}

/// A column is read where the expression is evaluated; everything else
/// goes to [`computed`], whose entry and exit (saving registers for its
/// many cases) a column need not pay.
#[inline]
pub fn eval<R: Columns + ?Sized>(e: &Expr, row: &R) -> Value {
    match e {
        Expr::Column(c) => row.column(*c).clone(),
        _ => computed(e, row),
    }
}

/// An expression's value where it is only read (tested, compared): a
/// column is borrowed from the row, not cloned (a text's count written
/// twice) and dropped.
#[inline]
fn eval_ref<'a, R: Columns + ?Sized>(e: &Expr, row: &'a R) -> Cow<'a, Value> {
    match e {
        Expr::Column(c) => Cow::Borrowed(row.column(*c)),
        _ => Cow::Owned(computed(e, row)),
    }
}

/// A condition's truth as SQL's three-valued logic has it: `Some(true)`,
/// `Some(false)`, or `None` for NULL (unknown), which a `WHERE` or a `CASE
/// WHEN` treats as false. What a condition is mostly made of (`IS [NOT]
/// NULL`, `AND`, `OR`, `NOT`, comparisons) is decided here without making a
/// `Value` of each part (and going through [`computed`]'s entry for it);
/// anything else is evaluated and read as a boolean.
pub fn truth<R: Columns + ?Sized>(e: &Expr, row: &R) -> Option<bool> {
    // AND and OR look at the second side when the first is NULL; when the
    // first decides, the second cannot change the answer (evaluating is
    // free of effects: a failure is NULL), so it is not evaluated.
    match e {
        Expr::IsNull { expr, negated } => Some(is_null(expr, row) != *negated),
        Expr::Binary(BinaryOp::And, a, b) => connective(false, a, b, row),
        Expr::Binary(BinaryOp::Or, a, b) => connective(true, a, b, row),
        Expr::Not(x) => truth(x, row).map(|b| !b),
        // A comparison (AND and OR are matched above).
        Expr::Binary(op, a, b) if is_condition(*op) => {
            let (x, y) = (eval_ref(a, row), eval_ref(b, row));
            let o = sql_cmp(&x, &y)?;
            Some(match op {
                BinaryOp::Eq => o == Ordering::Equal,
                BinaryOp::NotEq => o != Ordering::Equal,
                BinaryOp::Lt => o == Ordering::Less,
                BinaryOp::LtEq => o != Ordering::Greater,
                BinaryOp::Gt => o == Ordering::Greater,
                BinaryOp::GtEq => o != Ordering::Less,
                _ => unreachable!("AND and OR are matched above"),
            })
        }
        _ => match *eval_ref(e, row) {
            Value::Bool(b) => Some(b),
            _ => None,
        },
    }
}

/// AND (`decisive` false) or OR (`decisive` true): a side that is
/// `decisive` decides; else both sides known give the other answer, and
/// an unknown side leaves it unknown.
fn connective<R: Columns + ?Sized>(decisive: bool, a: &Expr, b: &Expr, row: &R) -> Option<bool> {
    match truth(a, row) {
        Some(x) if x == decisive => Some(decisive),
        x => match (x, truth(b, row)) {
            (_, Some(y)) if y == decisive => Some(decisive),
            (Some(_), Some(_)) => Some(!decisive),
            _ => None,
        },
    }
}

/// The operators whose answer is a truth value, which [`truth`] decides.
fn is_condition(op: BinaryOp) -> bool {
    use BinaryOp::*;
    matches!(op, And | Or | Eq | NotEq | Lt | LtEq | Gt | GtEq)
}

/// Whether an expression is NULL; a column's value is looked at in place.
#[inline]
fn is_null<R: Columns + ?Sized>(e: &Expr, row: &R) -> bool {
    eval_ref(e, row).is_null()
}

/// Writes an expression's value as text at the end of `out`, as
/// [`write_text`] writes [`eval`]'s value; `false` (nothing written) when it
/// is NULL. A `CASE` and a `CONCAT` are written piece by piece, so a line of
/// text made for a `STRING_AGG` is written where it goes, not made as a
/// value first and copied.
pub fn eval_text_into<R: Columns + ?Sized>(e: &Expr, row: &R, out: &mut String) -> bool {
    match e {
        Expr::Case { whens, otherwise } => {
            for (condition, result) in whens {
                if truth(condition, row) == Some(true) {
                    return eval_text_into(result, row, out);
                }
            }
            otherwise.as_ref().is_some_and(|o| eval_text_into(o, row, out))
        }
        // CONCAT skips NULLs and is never NULL itself.
        Expr::Call(Func::Concat, args) => {
            write_concat(args, row, out);
            true
        }
        Expr::Column(c) => write_value(row.column(*c), out),
        _ => write_value(&eval_ref(e, row), out),
    }
}

/// [`write_text`], `false` for NULL.
fn write_value(v: &Value, out: &mut String) -> bool {
    if v.is_null() {
        return false;
    }
    write_text(v, out);
    true
}

#[inline(never)]
fn computed<R: Columns + ?Sized>(e: &Expr, row: &R) -> Value {
    match e {
        Expr::Column(c) => row.column(*c).clone(),
        Expr::Literal(l, _) => literal(l),
        Expr::Not(x) => truth(x, row).map_or(Value::Null, |b| Value::Bool(!b)),
        Expr::Neg(x) => match eval(x, row) {
            Value::Int(i) => i.checked_neg().map_or(Value::Null, Value::Int),
            Value::Decimal(d) => Value::decimal(sql_exact(-d.get(), d.scale())),
            Value::Double(f) => Value::Double(-f),
            _ => Value::Null,
        },
        // Conditions as values (a boolean column, say): decided by `truth`.
        Expr::Binary(op, ..) if is_condition(*op) => truth(e, row).map_or(Value::Null, Value::Bool),
        Expr::Binary(op, a, b) => binary(*op, a, b, row),
        Expr::IsNull { expr, negated } => Value::Bool(is_null(expr, row) != *negated),
        Expr::InList { expr, list, negated } => {
            let v = eval_ref(expr, row);
            if v.is_null() {
                return Value::Null;
            }
            let mut unknown = false;
            for item in list {
                match sql_cmp(&v, &eval_ref(item, row)) {
                    Some(Ordering::Equal) => return Value::Bool(!negated),
                    None => unknown = true,
                    _ => {}
                }
            }
            if unknown {
                Value::Null
            } else {
                Value::Bool(*negated)
            }
        }
        Expr::Like { expr, pattern, negated } => match (&*eval_ref(expr, row), &*eval_ref(pattern, row)) {
            (Value::Text(s), Value::Text(p)) => Value::Bool(like(s.as_bytes(), p.as_bytes()) != *negated),
            _ => Value::Null,
        },
        Expr::Case { whens, otherwise } => {
            for (condition, result) in whens {
                if truth(condition, row) == Some(true) {
                    return eval(result, row);
                }
            }
            otherwise.as_ref().map_or(Value::Null, |o| eval(o, row))
        }
        Expr::Cast(x, ty) => cast(eval(x, row), *ty),
        Expr::Call(func, args) => call(*func, args, row),
    }
}

/// `||` and `+ - * /`: NULL when either side is (conditions go to [`truth`]).
fn binary<R: Columns + ?Sized>(op: BinaryOp, a: &Expr, b: &Expr, row: &R) -> Value {
    let (x, y) = (eval_ref(a, row), eval_ref(b, row));
    if x.is_null() || y.is_null() {
        return Value::Null;
    }
    match op {
        BinaryOp::Concat => {
            let mut out = String::new();
            write_text(&x, &mut out);
            write_text(&y, &mut out);
            Value::text(&out)
        }
        _ => arithmetic(op, &x, &y),
    }
}

fn as_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(d.get()),
        _ => None,
    }
}

pub(crate) fn as_double(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Decimal(d) => d.get().to_f64(),
        Value::Double(f) => Some(*f),
        _ => None,
    }
}

/// `+ - * /` with SQL's result types: integers stay integers (a quotient
/// truncates), exact numerics keep the scale SQL gives them, a double wins.
fn arithmetic(op: BinaryOp, x: &Value, y: &Value) -> Value {
    match (x, y) {
        (Value::Int(a), Value::Int(b)) => {
            let r = match op {
                BinaryOp::Add => a.checked_add(*b),
                BinaryOp::Sub => a.checked_sub(*b),
                BinaryOp::Mul => a.checked_mul(*b),
                _ => a.checked_div(*b),
            };
            r.map_or(Value::Null, Value::Int)
        }
        (Value::Double(_), _) | (_, Value::Double(_)) => {
            let (Some(a), Some(b)) = (as_double(x), as_double(y)) else { return Value::Null };
            Value::Double(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                _ => a / b,
            })
        }
        _ => {
            if let Some(v) = small_exact(op, x, y) {
                return Value::Decimal(v);
            }
            let (Some(a), Some(b)) = (as_decimal(x), as_decimal(y)) else { return Value::Null };
            decimal_arithmetic(op, a, b)
        }
    }
}

/// `+ - * /` of two exact numerics through `Decimal`, with SQL's scale.
fn decimal_arithmetic(op: BinaryOp, a: Decimal, b: Decimal) -> Value {
    let r = match op {
        BinaryOp::Add => a.checked_add(b).map(|r| sql_exact(r, a.scale().max(b.scale()))),
        BinaryOp::Sub => a.checked_sub(b).map(|r| sql_exact(r, a.scale().max(b.scale()))),
        BinaryOp::Mul => a.checked_mul(b).map(|r| sql_exact(r, a.scale() + b.scale())),
        // PostgreSQL's numeric division: at least 16 significant digits,
        // and no fewer decimals than either operand.
        _ => decimal_div(a, b),
    };
    r.map_or(Value::Null, Value::decimal)
}

/// `+ - *` of exact numerics (or an integer and one) whose digits fit in
/// 64 bits, in integers: what `Decimal` computes, with SQL's scale (a
/// line's `quantity * price`, a sum's terms), without its general
/// arithmetic. `None` when the result would not fit (or for a quotient):
/// `Decimal` decides then.
fn small_exact(op: BinaryOp, x: &Value, y: &Value) -> Option<CompactDecimal> {
    let parts = |v: &Value| match v {
        Value::Int(i) => Some((*i, 0)),
        Value::Decimal(d) => d.small(),
        _ => None,
    };
    let ((a, sa), (b, sb)) = (parts(x)?, parts(y)?);
    let (a, b) = (i128::from(a), i128::from(b));
    match op {
        BinaryOp::Mul => CompactDecimal::from_parts(a * b, sa + sb),
        BinaryOp::Add | BinaryOp::Sub => {
            // Both at the larger scale, as SQL writes a sum.
            let scale = sa.max(sb);
            let a = a.checked_mul(10i128.checked_pow(scale - sa)?)?;
            let b = b.checked_mul(10i128.checked_pow(scale - sb)?)?;
            CompactDecimal::from_parts(if op == BinaryOp::Add { a.checked_add(b)? } else { a.checked_sub(b)? }, scale)
        }
        _ => None,
    }
}

/// `a / b` as PostgreSQL's numeric division writes it; `None` for a zero divisor.
pub(crate) fn decimal_div(a: Decimal, b: Decimal) -> Option<Decimal> {
    let scale = division_scale(a, b);
    a.checked_div(b).map(|r| sql_exact(r.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero), scale))
}

/// The scale PostgreSQL gives `a / b` (its `select_div_scale`): at least 16
/// significant digits, estimated from the weights and first digits of the
/// operands in base 10000, and no fewer decimals than either operand.
fn division_scale(a: Decimal, b: Decimal) -> u32 {
    let (weight_a, first_a) = base_10000_lead(a);
    let (weight_b, first_b) = base_10000_lead(b);
    let mut qweight = weight_a - weight_b;
    if first_a <= first_b {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4).max(a.scale() as i64).max(b.scale() as i64).clamp(0, 28);
    rscale as u32
}

/// The weight (position of the first non-zero base-10000 digit, 0 for the
/// units) and that digit, as PostgreSQL's numeric stores them.
fn base_10000_lead(d: Decimal) -> (i64, u32) {
    if d.is_zero() {
        return (0, 0);
    }
    let text = d.abs().to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let int = int.trim_start_matches('0');
    if !int.is_empty() {
        let lead = match int.len() % 4 {
            0 => 4,
            n => n,
        };
        return (((int.len() - 1) / 4) as i64, int[..lead].parse().unwrap_or(0));
    }
    let zeros = frac.chars().take_while(|c| *c == '0').count();
    let group = zeros / 4 * 4;
    let digits: String = frac.chars().skip(group).chain(std::iter::repeat('0')).take(4).collect();
    (-((zeros / 4) as i64 + 1), digits.parse().unwrap_or(0))
}

fn call<R: Columns + ?Sized>(func: Func, args: &[Expr], row: &R) -> Value {
    let arg = |i: usize| eval(&args[i], row);
    match func {
        Func::Coalesce => args.iter().map(|a| eval_ref(a, row)).find(|v| !v.is_null()).map_or(Value::Null, Cow::into_owned),
        Func::Nullif => {
            let (a, b) = (arg(0), arg(1));
            if sql_cmp(&a, &b) == Some(Ordering::Equal) {
                Value::Null
            } else {
                a
            }
        }
        Func::Concat => {
            let mut out = String::with_capacity(TEXT_CAPACITY);
            write_concat(args, row, &mut out);
            Value::text(&out)
        }
        Func::ConcatWs => {
            let Value::Text(sep) = arg(0) else { return Value::Null };
            let mut out = String::with_capacity(TEXT_CAPACITY);
            let mut first = true;
            for a in &args[1..] {
                let v = eval_ref(a, row);
                if v.is_null() {
                    continue;
                }
                if !first {
                    out.push_str(&sep);
                }
                first = false;
                write_text(&v, &mut out);
            }
            Value::text(&out)
        }
        // Character by character, as PostgreSQL does (`upper('ß')` is `ß`).
        Func::Lower => text_fn(arg(0), |s| s.chars().map(|c| single(c.to_lowercase(), c)).collect()),
        Func::Upper => text_fn(arg(0), |s| s.chars().map(|c| single(c.to_uppercase(), c)).collect()),
        Func::Trim => text_fn(arg(0), |s| s.trim_matches(' ').to_string()),
        Func::Length => match &*eval_ref(&args[0], row) {
            Value::Text(s) => Value::Int(s.chars().count() as i64),
            _ => Value::Null,
        },
        Func::ToTimestamp => match as_double(&eval_ref(&args[0], row)) {
            Some(secs) if secs.is_finite() => Value::Timestamp((secs * 1_000_000.0).round() as i64),
            _ => Value::Null,
        },
    }
}

/// The case mapping of `c` when it is one character, else `c` itself.
fn single(mut mapped: impl Iterator<Item = char>, c: char) -> char {
    match (mapped.next(), mapped.next()) {
        (Some(m), None) => m,
        _ => c,
    }
}

/// What a text built piece by piece starts with: most fit (a line of an
/// order's items, an address), so the text is not grown several times.
const TEXT_CAPACITY: usize = 96;

/// Writes `CONCAT(args)` at the end of `out` (its NULL arguments write
/// nothing).
fn write_concat<R: Columns + ?Sized>(args: &[Expr], row: &R, out: &mut String) {
    for a in args {
        write_arg(a, row, out);
    }
}

/// Writes an argument of `CONCAT` as text: a text literal or a column as
/// it stands, without making a value of it first.
fn write_arg<R: Columns + ?Sized>(a: &Expr, row: &R, out: &mut String) {
    match a {
        Expr::Literal(Literal::Text(t), _) => out.push_str(t),
        Expr::Column(c) => write_text(row.column(*c), out),
        _ => write_text(&eval(a, row), out),
    }
}

fn text_fn(v: Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Text(s) => Value::text(&f(&s)),
        _ => Value::Null,
    }
}

/// `CAST(v AS ty)`; a value that does not convert is NULL (PostgreSQL
/// would stop the query; a view cannot, so the row shows NULL).
pub fn cast(v: Value, ty: SqlType) -> Value {
    if v.is_null() {
        return v;
    }
    match ty {
        SqlType::Text => {
            let mut out = String::new();
            write_text(&v, &mut out);
            Value::text(&out)
        }
        SqlType::Int => match v {
            Value::Int(_) => v,
            Value::Decimal(d) => d.get().round().to_i64().map_or(Value::Null, Value::Int),
            Value::Double(f) => Some(f.round()).filter(|f| f.is_finite() && f.abs() < 9.2e18).map_or(Value::Null, |f| Value::Int(f as i64)),
            Value::Text(s) => s.trim().parse().map_or(Value::Null, Value::Int),
            Value::Bool(b) => Value::Int(b.into()),
            _ => Value::Null,
        },
        SqlType::Decimal { scale } => {
            let d = match v {
                Value::Int(i) => Some(Decimal::from(i)),
                Value::Decimal(d) => Some(d.get()),
                Value::Double(f) => Decimal::from_f64(f),
                Value::Text(s) => s.trim().parse().ok(),
                _ => None,
            };
            match (d, scale) {
                (Some(d), Some(s)) => Value::decimal(sql_exact(d.round_dp_with_strategy(s, rust_decimal::RoundingStrategy::MidpointAwayFromZero), s)),
                (Some(d), None) => Value::decimal(d),
                (None, _) => Value::Null,
            }
        }
        SqlType::Double => match v {
            Value::Text(s) => s.trim().parse().map_or(Value::Null, Value::Double),
            other => as_double(&other).map_or(Value::Null, Value::Double),
        },
        SqlType::Bool => match v {
            Value::Bool(_) => v,
            Value::Int(i) => Value::Bool(i != 0),
            Value::Text(s) => match s.trim().to_lowercase().as_str() {
                "t" | "true" | "yes" | "on" | "1" => Value::Bool(true),
                "f" | "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => Value::Null,
            },
            _ => Value::Null,
        },
        SqlType::Timestamp => match v {
            Value::Timestamp(_) => v,
            Value::Text(s) => parse_timestamp(&s).map_or(Value::Null, Value::Timestamp),
            _ => Value::Null,
        },
    }
}

fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for format in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = chrono::DateTime::parse_from_str(s, format) {
            return Some(t.timestamp_micros());
        }
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// SQL's LIKE: `%` any run, `_` any one character.
fn like(s: &[u8], p: &[u8]) -> bool {
    let text: Vec<char> = String::from_utf8_lossy(s).chars().collect();
    let pattern: Vec<char> = String::from_utf8_lossy(p).chars().collect();
    let (mut ti, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < text.len() {
        if pi < pattern.len() && (pattern[pi] == '_' || pattern[pi] == text[ti]) {
            ti += 1;
            pi += 1;
        } else if pi < pattern.len() && pattern[pi] == '%' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < pattern.len() && pattern[pi] == '%' {
        pi += 1;
    }
    pi == pattern.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_written_in_place_is_the_values_text() {
        use crate::expr::Literal;
        let col = |c| Expr::Column(c);
        let text = |t: &str| Expr::Literal(Literal::Text(t.into()), SqlType::Text);
        let concat = Expr::Call(
            Func::Concat,
            vec![col(0), text(" (Qty: "), col(1), text(", Total: "), Expr::Binary(BinaryOp::Mul, Box::new(col(1)), Box::new(col(2))), text(")")],
        );
        let both = Expr::Binary(
            BinaryOp::And,
            Box::new(Expr::IsNull { expr: Box::new(col(0)), negated: true }),
            Box::new(Expr::IsNull { expr: Box::new(col(1)), negated: true }),
        );
        let line = Expr::Case { whens: vec![(both, concat.clone())], otherwise: None };
        let or_else =
            Expr::Case { whens: vec![(Expr::IsNull { expr: Box::new(col(0)), negated: false }, text("none"))], otherwise: Some(Box::new(col(1))) };
        let rows = [
            vec![Value::text("Thing"), Value::Int(3), Value::decimal(Decimal::new(1250, 2))],
            vec![Value::Null, Value::Int(3), Value::decimal(Decimal::new(1250, 2))],
            vec![Value::text("Thing"), Value::Null, Value::Null],
        ];
        for row in &rows {
            for e in [&concat, &line, &or_else, &col(0), &col(2), &text("x")] {
                let mut out = String::from("before|");
                let written = eval_text_into(e, &row[..], &mut out);
                let value = eval(e, &row[..]);
                let mut expected = String::from("before|");
                write_text(&value, &mut expected);
                assert_eq!((written, out), (!value.is_null(), expected), "{e:?} over {row:?}");
            }
        }
    }

    /// Integers' arithmetic against `Decimal`'s, through the slow path it
    /// replaces: random digits and scales, with products and sums at the
    /// edges of 64 and 96 bits.
    #[test]
    fn small_exact_arithmetic_is_what_decimal_computes() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let slow = |op: BinaryOp, x: &Value, y: &Value| -> Value {
            let (Some(a), Some(b)) = (as_decimal(x), as_decimal(y)) else { unreachable!() };
            let r = match op {
                BinaryOp::Add => a.checked_add(b).map(|r| sql_exact(r, a.scale().max(b.scale()))),
                BinaryOp::Sub => a.checked_sub(b).map(|r| sql_exact(r, a.scale().max(b.scale()))),
                _ => a.checked_mul(b).map(|r| sql_exact(r, a.scale() + b.scale())),
            };
            r.map_or(Value::Null, Value::decimal)
        };
        let mut checked = 0;
        for _ in 0..20_000 {
            let value = |r: u64, s: u64| {
                let digits = match r % 4 {
                    0 => (s % 10_000) as i64,
                    1 => (s >> 1) as i64,
                    2 => (s % 1_000_000_007) as i64,
                    _ => 0,
                };
                let digits = if r & 8 != 0 { -digits } else { digits };
                match r % 7 {
                    0 => Value::Int(digits),
                    _ => Value::decimal(Decimal::from_i128_with_scale(i128::from(digits), ((r >> 8) % 29) as u32)),
                }
            };
            let (x, y) = (value(next(), next()), value(next(), next()));
            if matches!((&x, &y), (Value::Int(_), Value::Int(_))) {
                continue;
            }
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
                if let Some(fast) = small_exact(op, &x, &y) {
                    assert_eq!(Value::Decimal(fast), slow(op, &x, &y), "{x:?} {op:?} {y:?}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 30_000, "{checked} of 60,000 went the fast way");
    }

    /// SQL's three-valued AND, OR and NOT, written out as the standard's
    /// tables (T, F, N for NULL), and comparisons with NULL unknown: through
    /// `truth` and through `eval`, which must agree.
    #[test]
    fn conditions_follow_sqls_three_valued_logic() {
        use crate::expr::Literal;
        let lit = |t: &str| match t {
            "T" => Expr::Literal(Literal::Bool(true), SqlType::Bool),
            "F" => Expr::Literal(Literal::Bool(false), SqlType::Bool),
            _ => Expr::Literal(Literal::Null, SqlType::Bool),
        };
        let as_truth = |t: &str| match t {
            "T" => Some(true),
            "F" => Some(false),
            _ => None,
        };
        let bin = |op, a: Expr, b: Expr| Expr::Binary(op, Box::new(a), Box::new(b));
        let row: [Value; 2] = [Value::Int(1), Value::Null];
        let check = |e: &Expr, want: Option<bool>| {
            assert_eq!(truth(e, &row[..]), want, "truth of {e:?}");
            assert_eq!(eval(e, &row[..]), want.map_or(Value::Null, Value::Bool), "value of {e:?}");
        };
        // x AND y, x OR y for x, y in (T, F, N).
        for (x, y, and, or) in [
            ("T", "T", "T", "T"),
            ("T", "F", "F", "T"),
            ("T", "N", "N", "T"),
            ("F", "T", "F", "T"),
            ("F", "F", "F", "F"),
            ("F", "N", "F", "N"),
            ("N", "T", "N", "T"),
            ("N", "F", "F", "N"),
            ("N", "N", "N", "N"),
        ] {
            check(&bin(BinaryOp::And, lit(x), lit(y)), as_truth(and));
            check(&bin(BinaryOp::Or, lit(x), lit(y)), as_truth(or));
        }
        for (x, not) in [("T", "F"), ("F", "T"), ("N", "N")] {
            check(&Expr::Not(Box::new(lit(x))), as_truth(not));
        }
        let (one, null) = (Expr::Column(0), Expr::Column(1));
        let two = Expr::Literal(Literal::Int(2), SqlType::Int);
        check(&bin(BinaryOp::Lt, one.clone(), two.clone()), Some(true));
        check(&bin(BinaryOp::GtEq, one.clone(), two.clone()), Some(false));
        check(&bin(BinaryOp::Eq, null.clone(), two.clone()), None);
        check(&bin(BinaryOp::NotEq, two.clone(), null.clone()), None);
        check(&Expr::IsNull { expr: Box::new(null.clone()), negated: false }, Some(true));
        check(&Expr::IsNull { expr: Box::new(one.clone()), negated: true }, Some(true));
        // NULL compared, then decided by the other side of an OR.
        check(&bin(BinaryOp::Or, bin(BinaryOp::Eq, null.clone(), two.clone()), bin(BinaryOp::Lt, one, two)), Some(true));
        // A CASE takes a branch only on TRUE, not on NULL.
        let case = Expr::Case { whens: vec![(bin(BinaryOp::Eq, null, lit("T")), lit("T"))], otherwise: Some(Box::new(lit("F"))) };
        check(&case, Some(false));
    }

    #[test]
    fn like_matches_runs_and_single_characters() {
        assert!(like(b"Alice", b"A%"));
        assert!(like(b"Alice", b"_lic_"));
        assert!(!like(b"Alice", b"_lic"));
        assert!(like(b"", b"%"));
        assert!(like("Zoë".as_bytes(), "Zo_".as_bytes()));
    }

    #[test]
    fn products_and_sums_keep_sqls_scale() {
        let d = |s: &str| Value::decimal(s.parse().unwrap());
        let render = |v: Value| {
            let mut out = String::new();
            write_text(&v, &mut out);
            out
        };
        assert_eq!(render(arithmetic(BinaryOp::Mul, &Value::Int(0), &d("1.50"))), "0.00");
        assert_eq!(render(arithmetic(BinaryOp::Mul, &Value::Int(-1), &d("0.00"))), "0.00");
        assert_eq!(render(arithmetic(BinaryOp::Add, &d("1.5"), &d("2.25"))), "3.75");
        assert_eq!(render(arithmetic(BinaryOp::Add, &d("1.50"), &d("2.50"))), "4.00");
        assert_eq!(render(arithmetic(BinaryOp::Div, &Value::Int(7), &Value::Int(2))), "3");
        // PostgreSQL: SELECT 1.00 / 3, 10 / 4.0, 100000 / 3.0, 0.001 / 7
        assert_eq!(render(arithmetic(BinaryOp::Div, &d("1.00"), &Value::Int(3))), "0.33333333333333333333");
        assert_eq!(render(arithmetic(BinaryOp::Div, &Value::Int(10), &d("4.0"))), "2.5000000000000000");
        assert_eq!(render(arithmetic(BinaryOp::Div, &Value::Int(100000), &d("3.0"))), "33333.333333333333");
        assert_eq!(render(arithmetic(BinaryOp::Div, &d("0.001"), &Value::Int(7))), "0.00014285714285714286");
        // PostgreSQL: SELECT 99999999.99 / 2147483647, -99999999.99 / 2147483647, 0.00/5, 500.00/3, 99999999.99/7, 123.45/-4
        for (a, b, want) in [
            ("99999999.99", 2147483647, "0.04656612874780135637"),
            ("-99999999.99", 2147483647, "-0.04656612874780135637"),
            ("0.00", 5, "0.00000000000000000000"),
            ("500.00", 3, "166.6666666666666667"),
            ("99999999.99", 7, "14285714.284285714286"),
            ("123.45", -4, "-30.8625000000000000"),
        ] {
            assert_eq!(render(arithmetic(BinaryOp::Div, &d(a), &Value::Int(b))), want, "{a} / {b}");
        }
    }
}
