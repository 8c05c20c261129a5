//! Values and rows: what flows between operators.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use rust_decimal::Decimal;

pub use crate::compact::{CompactDecimal, CompactText};

/// One SQL value. Equality is exact representation (an exact numeric's
/// scale counts: `1.0` and `1.00` are written differently, so they are
/// different rows); SQL comparison is [`sql_cmp`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// Its digits, scale and sign in 13 bytes ([`CompactDecimal::get`]).
    Decimal(CompactDecimal),
    Double(f64),
    /// Up to 14 bytes in place, longer text shared ([`CompactText`]).
    Text(CompactText),
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(i64),
}

/// A row: one value per column of the operator's output.
pub type Row = Vec<Value>;

/// A materialized view's row as it is stored and handed out: shared, so
/// that the view's index, its change and whoever serves it hold one copy.
pub type SharedRow = std::sync::Arc<[Value]>;

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Decimal(_) => 3,
            Value::Double(_) => 4,
            Value::Text(_) => 5,
            Value::Timestamp(_) => 6,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn text(s: &str) -> Value {
        Value::Text(CompactText::new(s))
    }

    pub fn decimal(d: Decimal) -> Value {
        Value::Decimal(d.into())
    }
}

impl PartialEq for Value {
    /// As [`Ord`] says, without ordering: rows are compared for equality on
    /// every hash look-up of the engine's state.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            // Equal digits and scale exactly when equal bytes (zero unsigned).
            (Value::Decimal(a), Value::Decimal(b)) => a == b,
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            // Rows copied from one row share its heap text: the same text is
            // equal without comparing its bytes.
            (Value::Text(a), Value::Text(b)) => std::ptr::eq(a.as_str(), b.as_str()) || a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.rank());
        match self {
            Value::Null => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(i) | Value::Timestamp(i) => i.hash(state),
            Value::Decimal(d) => d.hash(state),
            Value::Double(f) => f.to_bits().hash(state),
            Value::Text(t) => t.hash(state),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A total order for state (sorted sets, tie-breaks): by kind, then value;
/// exact numerics of equal value by scale.
impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) | (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
            (Value::Decimal(a), Value::Decimal(b)) => a.get().cmp(&b.get()).then(a.scale().cmp(&b.scale())),
            (Value::Double(a), Value::Double(b)) => a.total_cmp(b),
            (Value::Text(a), Value::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (a, b) => a.rank().cmp(&b.rank()),
        }
    }
}

/// SQL's comparison: `None` when either side is NULL; integers and exact
/// numerics compare by value.
pub fn sql_cmp(a: &Value, b: &Value) -> Option<Ordering> {
    Some(match (a, b) {
        // Ids and times, the most compared, without a call.
        (Value::Int(x), Value::Int(y)) | (Value::Timestamp(x), Value::Timestamp(y)) => x.cmp(y),
        (Value::Null, _) | (_, Value::Null) => return None,
        (Value::Int(x), Value::Decimal(y)) => Decimal::from(*x).cmp(&y.get()),
        (Value::Decimal(x), Value::Int(y)) => x.get().cmp(&Decimal::from(*y)),
        (Value::Decimal(x), Value::Decimal(y)) => x.get().cmp(&y.get()),
        (Value::Int(x), Value::Double(y)) => (*x as f64).total_cmp(y),
        (Value::Double(x), Value::Int(y)) => x.total_cmp(&(*y as f64)),
        (Value::Decimal(x), Value::Double(y)) => f64::try_from(x.get()).unwrap_or(f64::NAN).total_cmp(y),
        (Value::Double(x), Value::Decimal(y)) => x.total_cmp(&f64::try_from(y.get()).unwrap_or(f64::NAN)),
        (a, b) => a.cmp(b),
    })
}

/// `d` as SQL writes an exact numeric of `scale` digits after the point:
/// rust_decimal drops the scale of a zero product and keeps a negative
/// zero, which SQL does not have.
pub fn sql_exact(mut d: Decimal, scale: u32) -> Decimal {
    if d.scale() < scale {
        d.rescale(scale);
    }
    if d.is_zero() {
        d.set_sign_positive(true);
    }
    d
}

/// A value as SQL text: what `CAST(x AS TEXT)` and `CONCAT` write
/// (PostgreSQL's output formats).
pub fn write_text(v: &Value, out: &mut String) {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(itoa::Buffer::new().format(*i)),
        Value::Decimal(d) => match d.small() {
            Some((digits, scale)) => write_digits(digits < 0, itoa::Buffer::new().format(digits.unsigned_abs()), scale as usize, out),
            None => write_decimal(&d.get(), out),
        },
        Value::Double(f) => out.push_str(&format_double(*f)),
        Value::Text(t) => out.push_str(t),
        Value::Timestamp(t) => write_timestamp(*t, out),
    }
}

/// An exact numeric as `Decimal`'s `Display` writes it (all of its scale's
/// digits, a sign when negative), written in place from the integer of its
/// digits: formatting through `Display` cost more than the rest of a
/// `CONCAT`.
fn write_decimal(d: &Decimal, out: &mut String) {
    write_digits(d.is_sign_negative(), itoa::Buffer::new().format(d.mantissa().unsigned_abs()), d.scale() as usize, out);
}

/// An exact numeric of these digits (written in base 10) and scale, as
/// [`write_decimal`] writes it.
fn write_digits(negative: bool, digits: &str, scale: usize, out: &mut String) {
    if negative {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

/// A timestamptz as PostgreSQL writes it in UTC: `2026-12-02 09:27:55+00`,
/// with the fraction of a second only as long as it needs to be.
fn write_timestamp(micros: i64, out: &mut String) {
    let Some(ts) = chrono::DateTime::from_timestamp_micros(micros) else {
        out.push_str(itoa::Buffer::new().format(micros));
        return;
    };
    out.push_str(&ts.format("%Y-%m-%d %H:%M:%S").to_string());
    let fraction = micros.rem_euclid(1_000_000);
    if fraction > 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str("+00");
}

fn format_double(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sign, scale and size of digits, negative zero included, is
    /// written as `Decimal`'s own `Display` writes it, as a `Decimal` and
    /// as a value.
    #[test]
    fn a_decimal_is_written_as_its_display_writes_it() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let mut cases = vec![Decimal::ZERO, -Decimal::new(0, 2), Decimal::new(5, 2), Decimal::new(-5, 3), Decimal::MAX, Decimal::MIN];
        for _ in 0..20_000 {
            let size = 10i64.pow(rand::Rng::random_range(&mut rng, 0..18));
            let digits: i64 = rand::Rng::random_range(&mut rng, -size..=size);
            cases.push(Decimal::new(digits, rand::Rng::random_range(&mut rng, 0..=28)));
        }
        for d in cases {
            let mut written = String::new();
            write_decimal(&d, &mut written);
            assert_eq!(written, d.to_string(), "{d:?}");
            // As a value (zero without a sign), through its 64-bit digits
            // where they fit.
            let value = Value::decimal(d);
            let mut written = String::new();
            write_text(&value, &mut written);
            let Value::Decimal(compact) = value else { unreachable!() };
            assert_eq!(written, compact.get().to_string(), "{d:?}");
        }
    }
}
