//! A value's text and exact numeric in fifteen bytes or fewer, with an
//! alignment of one, so that a [`Value`](crate::value::Value) takes 16
//! bytes (its kind's byte, then these) instead of 24.
//!
//! The engine holds millions of values (every source row, every view row,
//! every group's and partition's output): eight bytes fewer each is about
//! a tenth of its state on the shop's workload.

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use rust_decimal::Decimal;

/// Bytes of text held in place; longer text is shared on the heap.
pub const INLINE_TEXT: usize = 14;
/// The first byte of a text on the heap (an inline text's first byte is
/// its length, at most [`INLINE_TEXT`]).
const HEAP: u8 = 0xFF;

/// Text: up to 14 bytes in place (the first byte their length), else an
/// `Arc<str>` (the first byte [`HEAP`], then its length in six bytes and
/// its address in eight), shared by every clone as a `SmolStr`'s is.
pub struct CompactText {
    bytes: [u8; 15],
}

impl CompactText {
    pub fn new(text: &str) -> Self {
        let mut bytes = [0u8; 15];
        let len = text.len();
        if len <= INLINE_TEXT {
            bytes[0] = len as u8;
            bytes[1..1 + len].copy_from_slice(text.as_bytes());
        } else {
            assert!(len < 1 << 48, "a text of {len} bytes");
            let address = Arc::into_raw(Arc::<str>::from(text)).cast::<u8>().expose_provenance();
            bytes[0] = HEAP;
            bytes[1..7].copy_from_slice(&(len as u64).to_le_bytes()[..6]);
            bytes[7..15].copy_from_slice(&(address as u64).to_le_bytes());
        }
        CompactText { bytes }
    }

    /// The shared text's `Arc<str>` pointer, when it is on the heap.
    #[inline]
    fn heap(&self) -> Option<*const str> {
        if self.bytes[0] != HEAP {
            return None;
        }
        let mut len = [0u8; 8];
        len[..6].copy_from_slice(&self.bytes[1..7]);
        let address = u64::from_le_bytes(self.bytes[7..15].try_into().expect("eight bytes")) as usize;
        let data = std::ptr::with_exposed_provenance::<u8>(address);
        Some(std::ptr::slice_from_raw_parts(data, u64::from_le_bytes(len) as usize) as *const str)
    }

    /// Whether the text is on the heap (shared by its clones), not in place.
    #[inline]
    pub fn is_heap(&self) -> bool {
        self.bytes[0] == HEAP
    }

    /// How many values hold the text, where it is on the heap.
    pub fn holders(&self) -> Option<usize> {
        let text = self.heap()?;
        // SAFETY: the pointer is a live `Arc<str>`'s (see `as_str`); the
        // count this value holds is kept (not dropped here).
        let arc = ManuallyDrop::new(unsafe { Arc::from_raw(text) });
        Some(Arc::strong_count(&arc))
    }

    #[inline]
    pub fn as_str(&self) -> &str {
        match self.heap() {
            // SAFETY: the pointer came from `Arc::into_raw` of a `str`, and
            // this value holds one of its counts until it drops: the text
            // lives at least as long as `&self`.
            Some(text) => unsafe { &*text },
            // SAFETY: `new` copied a `str`'s bytes, its length first.
            None => unsafe { std::str::from_utf8_unchecked(&self.bytes[1..1 + self.bytes[0] as usize]) },
        }
    }

    pub fn is_heap_allocated(&self) -> bool {
        self.bytes[0] == HEAP
    }
}

impl Clone for CompactText {
    #[inline]
    fn clone(&self) -> Self {
        if let Some(text) = self.heap() {
            // SAFETY: the pointer is a live `Arc<str>`'s (see `as_str`); the
            // clone's count is forgotten here and given back by the new
            // value's drop.
            let arc = ManuallyDrop::new(unsafe { Arc::from_raw(text) });
            std::mem::forget(Arc::clone(&arc));
        }
        CompactText { bytes: self.bytes }
    }
}

impl Drop for CompactText {
    #[inline]
    fn drop(&mut self) {
        if let Some(text) = self.heap() {
            // SAFETY: gives back the count this value held (from `new` or
            // `clone`); the bytes are not read again.
            drop(unsafe { Arc::from_raw(text) });
        }
    }
}

impl std::ops::Deref for CompactText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for CompactText {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CompactText {}

/// Hashed as its `str`, as a `SmolStr` is.
impl std::hash::Hash for CompactText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for CompactText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CompactText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Written as a string, as a `SmolStr` was: snapshots keep their encoding.
impl serde::Serialize for CompactText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for CompactText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(CompactText::new(&text))
    }
}

/// An exact numeric in 13 bytes: its scale and sign, then the 96 bits of
/// its digits. Zero has no sign (SQL has no negative zero), so two values
/// are equal exactly when their bytes are.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompactDecimal {
    bytes: [u8; 13],
}

impl CompactDecimal {
    /// The decimal, as `rust_decimal` computes with it.
    #[inline]
    pub fn get(&self) -> Decimal {
        // `Decimal::serialize`'s layout: flags (scale in bits 16-23, sign in
        // bit 31), then the low, middle and high 32 bits of the digits.
        let mut parts = [0u8; 16];
        parts[2] = self.bytes[0] & 0x7F;
        parts[3] = self.bytes[0] & 0x80;
        parts[4..].copy_from_slice(&self.bytes[1..]);
        Decimal::deserialize(parts)
    }

    pub fn scale(&self) -> u32 {
        u32::from(self.bytes[0] & 0x7F)
    }

    /// Its digits as a signed integer and its scale, where the digits fit
    /// in 64 bits (prices, quantities and their products mostly do): the
    /// engine computes with these in integers instead of through `Decimal`.
    #[inline]
    pub fn small(&self) -> Option<(i64, u32)> {
        // The low, middle and high 32 bits of the digits, little-endian.
        let low = u64::from_le_bytes(self.bytes[1..9].try_into().expect("eight bytes"));
        if self.bytes[9..13] != [0; 4] || low > i64::MAX as u64 {
            return None;
        }
        let digits = low as i64;
        Some((if self.bytes[0] & 0x80 != 0 { -digits } else { digits }, self.scale()))
    }

    /// The exact numeric `digits` × 10^-`scale`; `None` past 96 bits of
    /// digits or a scale of 28 (where `Decimal` would round).
    #[inline]
    pub fn from_parts(digits: i128, scale: u32) -> Option<Self> {
        let magnitude = digits.unsigned_abs();
        if scale > 28 || magnitude >> 96 != 0 {
            return None;
        }
        let mut bytes = [0u8; 13];
        // Zero has no sign.
        bytes[0] = scale as u8 | if digits < 0 { 0x80 } else { 0 };
        bytes[1..].copy_from_slice(&magnitude.to_le_bytes()[..12]);
        Some(CompactDecimal { bytes })
    }
}

impl From<Decimal> for CompactDecimal {
    #[inline]
    fn from(mut d: Decimal) -> Self {
        if d.is_zero() {
            d.set_sign_positive(true);
        }
        let parts = d.serialize();
        let mut bytes = [0u8; 13];
        bytes[0] = parts[2] | (parts[3] & 0x80);
        bytes[1..].copy_from_slice(&parts[4..]);
        CompactDecimal { bytes }
    }
}

impl fmt::Debug for CompactDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.get(), f)
    }
}

impl std::str::FromStr for CompactDecimal {
    type Err = rust_decimal::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<Decimal>().map(CompactDecimal::from)
    }
}

impl fmt::Display for CompactDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

/// Written as its `Decimal` is: snapshots keep their encoding.
impl serde::Serialize for CompactDecimal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.get(), serializer)
    }
}

impl<'de> serde::Deserialize<'de> for CompactDecimal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <Decimal as serde::Deserialize>::deserialize(deserializer).map(CompactDecimal::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_of_any_length_reads_back_and_clones_share_heap_text() {
        for len in [0, 1, 13, 14, 15, 23, 24, 100, 5000] {
            let text: String = "ab€".chars().cycle().take(len).collect();
            let compact = CompactText::new(&text);
            assert_eq!(compact.as_str(), text);
            assert_eq!(compact.is_heap_allocated(), text.len() > INLINE_TEXT, "{len}");
            let copies: Vec<CompactText> = (0..3).map(|_| compact.clone()).collect();
            drop(compact);
            for copy in &copies {
                assert_eq!(copy.as_str(), text);
                if text.len() > INLINE_TEXT {
                    assert!(std::ptr::eq(copy.as_str(), copies[0].as_str()), "one heap text");
                }
            }
        }
    }

    #[test]
    fn heap_text_is_freed_with_its_last_holder() {
        let text = CompactText::new("a text longer than fourteen bytes");
        let Some(raw) = text.heap() else { panic!("on the heap") };
        // SAFETY: borrows the live count of `text` without taking it.
        let counts = || Arc::strong_count(&ManuallyDrop::new(unsafe { Arc::from_raw(raw) }));
        let copy = text.clone();
        assert_eq!(counts(), 2);
        drop(text);
        assert_eq!(counts(), 1);
        assert_eq!(copy.as_str(), "a text longer than fourteen bytes");
    }

    #[test]
    fn decimals_keep_their_digits_scale_and_sign() {
        for text in ["0", "0.00", "1.50", "-1.50", "79228162514264337593543950335", "-0.0000000000000000000000000001", "12345.6789"] {
            let d: Decimal = text.parse().unwrap();
            let compact = CompactDecimal::from(d);
            assert_eq!(compact.get(), d);
            assert_eq!(compact.get().to_string(), text);
            assert_eq!(compact.scale(), d.scale());
        }
        let negative_zero = -"0.00".parse::<Decimal>().unwrap();
        assert_eq!(CompactDecimal::from(negative_zero), CompactDecimal::from("0.00".parse::<Decimal>().unwrap()));
        assert_eq!(CompactDecimal::from(negative_zero).get().to_string(), "0.00");
        assert_ne!(CompactDecimal::from("1.0".parse::<Decimal>().unwrap()), CompactDecimal::from("1.00".parse::<Decimal>().unwrap()));
    }

    #[test]
    fn small_digits_read_back_as_the_decimal_has_them() {
        for text in ["0", "0.00", "1.50", "-1.50", "-0.0000000000000000000000000001", "9223372036854775807", "-922337203685477.5807", "12345.6789"] {
            let d: Decimal = text.parse().unwrap();
            let compact = CompactDecimal::from(d);
            let (digits, scale) = compact.small().expect("fits in 64 bits");
            assert_eq!((i128::from(digits), scale), (d.mantissa(), d.scale()), "{text}");
            assert_eq!(CompactDecimal::from_parts(i128::from(digits), scale), Some(compact), "{text}");
        }
        for text in ["9223372036854775808", "-79228162514264337593543950335"] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(CompactDecimal::from(d).small(), None, "{text}");
            assert_eq!(CompactDecimal::from_parts(d.mantissa(), d.scale()), Some(CompactDecimal::from(d)), "{text}");
        }
        assert_eq!(CompactDecimal::from_parts(1 << 96, 0), None);
        assert_eq!(CompactDecimal::from_parts(1, 29), None);
    }

    #[test]
    fn a_value_takes_sixteen_bytes() {
        assert_eq!(size_of::<crate::value::Value>(), 16);
        assert_eq!(size_of::<Option<crate::value::Value>>(), 16);
    }
}
