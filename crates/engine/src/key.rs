//! Keys of the engine's indexes: one value held inline (most join and view
//! keys are one column), or several.
//!
//! A hash look-up ends by comparing the stored key with the one sought; a
//! key held as a `Vec` sends that comparison through a pointer to memory
//! the look-up has not touched yet, a cache miss on every probe of a large
//! index. A [`Key`] of one value sits in the hash table's own slot.

use std::hash::{Hash, Hasher};

use crate::value::Value;

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

impl From<&[Value]> for Key {
    fn from(values: &[Value]) -> Key {
        Key::from_slice(values)
    }
}

/// Hashed as the slice of its values, so that a look-up by `&[Value]`
/// ([`hashbrown::Equivalent`]) finds it.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

impl hashbrown::Equivalent<Key> for [Value] {
    fn equivalent(&self, key: &Key) -> bool {
        self == key.as_slice()
    }
}

/// A hash map by [`Key`], looked up by `&[Value]`.
pub type KeyMap<V> = hashbrown::HashMap<Key, V, ahash::RandomState>;
/// Makes `row` the row of `key` (`None`: removes the key's row) and
/// returns the row it had. A key that stays finds its slot without a new
/// key being made.
pub fn replace_row(rows: &mut KeyMap<Vec<Value>>, key: &[Value], row: Option<&Vec<Value>>) -> Option<Vec<Value>> {
    match row {
        Some(row) => match rows.get_mut(key) {
            Some(stored) => Some(std::mem::replace(stored, row.clone())),
            None => rows.insert(Key::from_slice(key), row.clone()),
        },
        None => rows.remove(key),
    }
}

/// A set of [`Key`]s.
pub type KeySet = hashbrown::HashSet<Key, ahash::RandomState>;

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
}
