//! Keys of the engine's indexes: one value held inline (most join and view
//! keys are one column), or several.
//!
//! A hash look-up ends by comparing the stored key with the one sought; a
//! key held as a `Vec` sends that comparison through a pointer to memory
//! the look-up has not touched yet, a cache miss on every probe of a large
//! index. A [`Key`] of one value sits in the hash table's own slot.

use std::hash::{Hash, Hasher};

use crate::idmap::IdMap;
use crate::value::{SharedRow, Value};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Key {
    One(Value),
    Many(Box<[Value]>),
}

impl Key {
    pub fn from_slice(values: &[Value]) -> Key {
        match values {
            [one] => Key::One(one.clone()),
            many => Key::Many(many.into()),
        }
    }

    /// The key of `row` on `columns`.
    pub fn of(row: &[Value], columns: &[usize]) -> Key {
        match columns {
            [c] => Key::One(row[*c].clone()),
            many => Key::Many(many.iter().map(|&c| row[c].clone()).collect()),
        }
    }

    pub fn as_slice(&self) -> &[Value] {
        match self {
            Key::One(v) => std::slice::from_ref(v),
            Key::Many(vs) => vs,
        }
    }
}

impl From<Vec<Value>> for Key {
    fn from(mut values: Vec<Value>) -> Key {
        match values.len() {
            1 => Key::One(values.pop().expect("one value")),
            _ => Key::Many(values.into_boxed_slice()),
        }
    }
}

/// Ordered as the slice of its values.
impl Ord for Key {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self, other) {
            // A view's or a join's key, mostly: sorting a batch by it is
            // then one integer comparison, not a walk over two slices.
            (Key::One(Value::Int(a)), Key::One(Value::Int(b))) => a.cmp(b),
            _ => self.as_slice().cmp(other.as_slice()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Hashed, compared and ordered as its values are, so that maps by `Key`
/// are looked up by `&[Value]`.
impl std::borrow::Borrow<[Value]> for Key {
    fn borrow(&self) -> &[Value] {
        self.as_slice()
    }
}

/// Written as the sequence of its values, as a slice of them is.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl From<&[Value]> for Key {
    fn from(values: &[Value]) -> Key {
        Key::from_slice(values)
    }
}

/// Hashed as the slice of its values, so that a look-up by `&[Value]`
/// (through `Borrow<[Value]>`) finds it.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

/// A hash map by [`Key`], looked up by `&[Value]`.
pub type KeyMap<V> = hashbrown::HashMap<Key, V, ahash::RandomState>;
/// Makes `row` the row of `key` (`None`: removes the key's row) and
/// returns the row it had. A key that stays finds its slot without a new
/// key being made.
pub fn replace_row(rows: &mut KeyIndex<SharedRow>, key: &[Value], row: Option<&SharedRow>) -> Option<SharedRow> {
    match row {
        Some(row) => rows.insert(key, row.clone()),
        None => rows.remove(key),
    }
}

/// An index by key for the engine's state: keys of one integer (ids, as
/// most primary and join keys are) in an [`IdMap`], a plain vector where
/// they are packed, so that a look-up is one slot instead of a hash probe's
/// control bytes and then its bucket; every other key in a hash map.
pub struct KeyIndex<V> {
    ints: IdMap<V>,
    others: KeyMap<V>,
}

impl<V> Default for KeyIndex<V> {
    fn default() -> Self {
        KeyIndex { ints: IdMap::default(), others: KeyMap::default() }
    }
}

/// The integer of a key of one integer column.
#[inline]
fn one_int(key: &[Value]) -> Option<i64> {
    match key {
        [Value::Int(i)] => Some(*i),
        _ => None,
    }
}

impl<V> KeyIndex<V> {
    pub fn len(&self) -> usize {
        self.ints.len() + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn get(&self, key: &[Value]) -> Option<&V> {
        match one_int(key) {
            Some(i) => self.ints.get(i),
            None => self.others.get(key),
        }
    }

    #[inline]
    pub fn get_mut(&mut self, key: &[Value]) -> Option<&mut V> {
        match one_int(key) {
            Some(i) => self.ints.get_mut(i),
            None => self.others.get_mut(key),
        }
    }

    /// Starts loading the slot of `key` into the cache without waiting for
    /// it (a key of one integer; a hint only, see [`IdMap::prefetch`]), so
    /// that a batch's look-ups a few keys apart overlap their cache misses.
    #[inline]
    pub fn prefetch(&self, key: &[Value]) {
        if let Some(i) = one_int(key) {
            self.ints.prefetch(i);
        }
    }

    /// The value under a key of one integer, for loading what it points to
    /// ahead of its use; `None` for other keys, whose look-up (a hash) would
    /// cost about what loading ahead saves.
    #[inline]
    pub fn peek(&self, key: &[Value]) -> Option<&V> {
        one_int(key).and_then(|i| self.ints.get(i))
    }

    pub fn contains_key(&self, key: &[Value]) -> bool {
        self.get(key).is_some()
    }

    /// Stores `value` under `key`, returning the value it replaced; the key
    /// is copied only when it was not there.
    pub fn insert(&mut self, key: &[Value], value: V) -> Option<V> {
        match one_int(key) {
            Some(i) => self.ints.insert(i, value),
            None => match self.others.get_mut(key) {
                Some(stored) => Some(std::mem::replace(stored, value)),
                None => self.others.insert(Key::from_slice(key), value),
            },
        }
    }

    pub fn remove(&mut self, key: &[Value]) -> Option<V> {
        match one_int(key) {
            Some(i) => self.ints.remove(i),
            None => self.others.remove(key),
        }
    }

    /// The value under `key`, inserted with `make` first if there is none.
    pub fn get_or_insert_with(&mut self, key: &[Value], make: impl FnOnce() -> V) -> &mut V {
        match one_int(key) {
            Some(i) => self.ints.get_or_insert_with(i, make),
            None => self.others.entry_ref(key).or_insert_with(make),
        }
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, &V)> {
        let ints = self.ints.iter().map(|(i, v)| (Key::One(Value::Int(i)), v));
        ints.chain(self.others.iter().map(|(k, v)| (k.clone(), v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.ints.values().chain(self.others.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_found_by_the_slice_of_its_values() {
        let mut map: KeyMap<u32> = KeyMap::default();
        map.insert(Key::from_slice(&[Value::Int(7)]), 1);
        map.insert(Key::from_slice(&[Value::Int(7), Value::text("a")]), 2);
        assert_eq!(map.get(&[Value::Int(7)][..]), Some(&1));
        assert_eq!(map.get(&[Value::Int(7), Value::text("a")][..]), Some(&2));
        assert_eq!(map.get(&[Value::Int(8)][..]), None);
        assert_eq!(map.get(&[Value::Int(7), Value::text("b")][..]), None);
    }

    /// The integer fast path orders keys as their slices do, beside keys of
    /// other kinds and lengths.
    #[test]
    fn keys_are_ordered_as_their_values() {
        let keys: Vec<Vec<Value>> = vec![
            vec![Value::Int(-3)],
            vec![Value::Int(5)],
            vec![Value::Int(i64::MAX)],
            vec![Value::Null],
            vec![Value::Timestamp(5)],
            vec![Value::text("a")],
            vec![Value::Int(5), Value::Int(1)],
            vec![Value::Int(4), Value::text("z")],
        ];
        for a in &keys {
            for b in &keys {
                assert_eq!(Key::from_slice(a).cmp(&Key::from_slice(b)), a.as_slice().cmp(b.as_slice()), "{a:?} against {b:?}");
            }
        }
    }

    /// Keys of one integer and any other keys side by side, against an
    /// ordinary map: inserts, replacements, removals and iteration agree.
    #[test]
    fn a_key_index_behaves_as_a_map_for_any_keys() {
        let mut index: KeyIndex<u32> = KeyIndex::default();
        let mut model: std::collections::BTreeMap<Vec<Value>, u32> = Default::default();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(11);
        let mut next = |m: u64| rand::Rng::random_range(&mut rng, 0..m);
        for step in 0..20_000u32 {
            let key: Vec<Value> = match next(5) {
                0 => vec![Value::Int(-(next(50) as i64))],
                1 => vec![Value::Int(next(1 << 40) as i64)],
                2 => vec![Value::Int(next(10) as i64), Value::Int(next(3) as i64)],
                3 => vec![Value::text(&format!("k{}", next(40)))],
                _ => vec![Value::Int(next(3_000) as i64)],
            };
            match next(4) {
                0 => assert_eq!(index.remove(&key), model.remove(&key), "step {step}"),
                1 => assert_eq!(*index.get_or_insert_with(&key, || step), *model.entry(key.clone()).or_insert(step), "step {step}"),
                _ => assert_eq!(index.insert(&key, step), model.insert(key.clone(), step), "step {step}"),
            }
            assert_eq!(index.get(&key), model.get(&key), "step {step}");
            assert_eq!(index.len(), model.len());
        }
        let mut all: Vec<(Vec<Value>, u32)> = index.iter().map(|(k, v)| (k.as_slice().to_vec(), *v)).collect();
        all.sort();
        assert_eq!(all, model.into_iter().collect::<Vec<_>>());
    }
}
