//! A map from integer keys to values that is a plain vector where the keys are
//! packed, as auto-increment ids are, and a hash map elsewhere.
//!
//! The engine looks a row up for nearly every change it applies, in tables of
//! hundreds of thousands of rows: there, the cost of a look-up is its cache
//! misses. A hash probe touches the control bytes and then the bucket; an index
//! into a vector touches the slot alone, and keys that arrive in order sit next
//! to each other. Keys that would leave the vector mostly empty (negative,
//! huge, or far apart) go to the hash map, so any key set works.

use ahash::AHashMap;

/// The vector's first size: small tables need no growth at all.
const MIN_DENSE: usize = 1024;

#[derive(Debug, Clone)]
pub struct IdMap<V> {
    /// `dense[k]` holds key `k`, for `0 <= k < dense.len()`.
    dense: Vec<Option<V>>,
    /// Every other key.
    sparse: AHashMap<i64, V>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { dense: Vec::new(), sparse: AHashMap::default(), len: 0 }
    }
}

impl<V> IdMap<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The vector index of `key`, if the vector covers it.
    fn slot(&self, key: i64) -> Option<usize> {
        usize::try_from(key).ok().filter(|&i| i < self.dense.len())
    }

    pub fn get(&self, key: i64) -> Option<&V> {
        match self.slot(key) {
            Some(i) => self.dense[i].as_ref(),
            None => self.sparse.get(&key),
        }
    }

    /// Starts loading the value under `key` into the cache, without waiting
    /// for it; does nothing where the key is not in the vector. A batch
    /// calls this a few changes ahead of the one it applies, so that the
    /// cache misses of several look-ups overlap instead of following one
    /// another.
    #[inline]
    pub fn prefetch(&self, key: i64) {
        if let Some(i) = self.slot(key) {
            prefetch(self.dense.as_ptr().wrapping_add(i));
        }
    }

    pub fn get_mut(&mut self, key: i64) -> Option<&mut V> {
        match self.slot(key) {
            Some(i) => self.dense[i].as_mut(),
            None => self.sparse.get_mut(&key),
        }
    }

    /// Stores `value` under `key`, returning the value it replaced.
    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        let old = match self.slot(key).or_else(|| self.grow_to(key)) {
            Some(i) => self.dense[i].replace(value),
            None => self.sparse.insert(key, value),
        };
        self.len += usize::from(old.is_none());
        old
    }

    /// The value under `key`, inserted with `make` first if there is none.
    pub fn get_or_insert_with(&mut self, key: i64, make: impl FnOnce() -> V) -> &mut V {
        use std::collections::hash_map::Entry;
        match self.slot(key).or_else(|| self.grow_to(key)) {
            Some(i) => {
                let entry = &mut self.dense[i];
                self.len += usize::from(entry.is_none());
                entry.get_or_insert_with(make)
            }
            None => match self.sparse.entry(key) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    self.len += 1;
                    e.insert(make())
                }
            },
        }
    }

    pub fn remove(&mut self, key: i64) -> Option<V> {
        let old = match self.slot(key) {
            Some(i) => self.dense[i].take(),
            None => self.sparse.remove(&key),
        };
        self.len -= usize::from(old.is_some());
        old
    }

    /// Makes room for values about to be inserted under `keys`, in the
    /// vector when they will go there (packed keys); otherwise the room would
    /// be wasted, and a hash map reserved ahead keeps its room for good, so
    /// nothing is reserved.
    pub fn reserve(&mut self, keys: impl ExactSizeIterator<Item = i64>) {
        let count = keys.len();
        let Some(Ok(max)) = keys.max().map(usize::try_from) else { return };
        if max < MIN_DENSE.max(2 * (self.len + count)) {
            self.dense.reserve((max + 1).saturating_sub(self.dense.len()));
        }
    }

    /// Every key and value: the vector's in ascending key order, then the
    /// hash map's in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &V)> {
        let dense = self.dense.iter().enumerate().filter_map(|(k, v)| Some((k as i64, v.as_ref()?)));
        dense.chain(self.sparse.iter().map(|(&k, v)| (k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    /// Every value, on all cores.
    pub fn par_values_mut(&mut self) -> impl rayon::iter::ParallelIterator<Item = &mut V>
    where
        V: Send,
    {
        use rayon::prelude::*;
        self.dense.par_iter_mut().filter_map(Option::as_mut).chain(self.sparse.par_iter_mut().map(|(_, v)| v))
    }

    /// Extends the vector to cover `key` if it would stay at least half full
    /// (counting the value about to be inserted), moving the keys it now
    /// covers out of the hash map; returns `key`'s index if it did.
    fn grow_to(&mut self, key: i64) -> Option<usize> {
        let index = usize::try_from(key).ok()?;
        let limit = MIN_DENSE.max(2 * (self.len + 1));
        if index >= limit {
            return None;
        }
        if self.sparse.is_empty() {
            // Slots are written only up to the key: the vector's spare room
            // (its capacity doubles, so ascending keys grow it O(log n) times)
            // is never touched, so it takes no resident memory, where slots
            // written empty ahead of the keys would, a third of the vector
            // on average.
            self.dense.resize_with((index + 1).max(MIN_DENSE), || None);
            return Some(index);
        }
        // Double at least, so that the keys moved out of the hash map are
        // looked for O(log n) times.
        let new_len = (index + 1).max(2 * self.dense.len()).max(MIN_DENSE).min(limit);
        self.dense.resize_with(new_len, || None);
        let covered: Vec<i64> = self.sparse.keys().copied().filter(|&k| usize::try_from(k).is_ok_and(|i| i < new_len)).collect();
        for k in covered {
            self.dense[k as usize] = self.sparse.remove(&k);
        }
        Some(index)
    }
}

/// Asks the CPU to bring the cache lines of the `T` at `at` into its cache.
/// A hint only: it reads nothing, and an address that is not mapped is
/// ignored, so `at` need not point at a live value.
#[inline]
pub fn prefetch<T>(at: *const T) {
    prefetch_bytes(at.cast(), size_of::<T>());
}

/// Asks the CPU to bring the cache lines of the `len` bytes at `at` into its
/// cache; a hint only, as [`prefetch`].
#[inline]
pub fn prefetch_bytes(at: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        const LINE: usize = 64;
        let start = at as usize & !(LINE - 1);
        let end = at as usize + len.max(1);
        for line in (start..end).step_by(LINE) {
            // SAFETY: a prefetch never faults and changes no memory.
            #[allow(unused_unsafe)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(line as *const i8)
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (at, len);
}

/// The reference counts an `Arc` keeps just before its value, which a
/// clone or a drop touches.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Starts loading a shared text's bytes and, when they are on the heap, the
/// reference counts that lie just before them (an `Arc`'s header), which a
/// clone or a drop touches; inline text is already where its holder is.
#[inline]
pub fn prefetch_text(text: &smol_str::SmolStr) {
    prefetch_heap_text(text.is_heap_allocated(), text);
}

/// [`prefetch_text`] of a text whose bytes are an `Arc<str>`'s when `heap`.
#[inline]
fn prefetch_heap_text(heap: bool, text: &str) {
    if heap {
        prefetch_bytes(text.as_ptr().wrapping_sub(ARC_HEADER), ARC_HEADER + text.len());
    }
}

/// Starts loading a row's values and, for each text among them that is on
/// the heap, its bytes and reference counts (which cloning the row's text
/// into an output row touches); a hint only, as [`prefetch`].
#[inline]
pub fn prefetch_row_text(row: &[crate::value::Value]) {
    for value in row {
        if let crate::value::Value::Text(text) = value {
            prefetch_heap_text(text.is_heap_allocated(), text);
        }
    }
}

/// Starts loading the reference counts of a row's texts that are on the
/// heap, which cloning the row touches (not their bytes: a clone does not
/// read them); a hint only, as [`prefetch`].
#[inline]
pub fn prefetch_text_counts(row: &[crate::value::Value]) {
    for value in row {
        if let crate::value::Value::Text(text) = value {
            if text.is_heap_allocated() {
                prefetch_bytes(text.as_ptr().wrapping_sub(ARC_HEADER), ARC_HEADER);
            }
        }
    }
}

/// Starts loading the values of a row held elsewhere (its heap buffer).
#[inline]
pub fn prefetch_values(row: &[crate::value::Value]) {
    prefetch_bytes(row.as_ptr().cast(), size_of_val(row));
}

/// Starts loading a shared row: its reference counts, which a clone or a
/// drop touches, and its values.
#[inline]
pub fn prefetch_shared(row: &crate::value::SharedRow) {
    prefetch_bytes(row.as_ptr().cast::<u8>().wrapping_sub(ARC_HEADER), ARC_HEADER + size_of_val(&row[..]));
}

impl<V> Extend<(i64, V)> for IdMap<V> {
    fn extend<I: IntoIterator<Item = (i64, V)>>(&mut self, pairs: I) {
        for (key, value) in pairs {
            self.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Random inserts and removes over packed, negative and huge keys behave
    /// exactly as an ordinary map does.
    #[test]
    fn behaves_as_a_map_for_any_keys() {
        for seed in 0..50 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut map = IdMap::default();
            let mut model = BTreeMap::new();
            for step in 0..5_000 {
                let key = match rng.random_range(0..10) {
                    0 => -rng.random_range(0..100),
                    1 => rng.random_range(0..i64::MAX),
                    2 => rng.random_range(1_000_000..1_000_100),
                    _ => rng.random_range(0..4_000),
                };
                if rng.random_bool(0.3) {
                    assert_eq!(map.remove(key), model.remove(&key), "seed {seed} step {step} remove {key}");
                } else if rng.random_bool(0.2) {
                    assert_eq!(map.get_or_insert_with(key, || step), model.entry(key).or_insert(step), "seed {seed} step {step} get_or_insert {key}");
                } else {
                    assert_eq!(map.insert(key, step), model.insert(key, step), "seed {seed} step {step} insert {key}");
                }
                assert_eq!(map.len(), model.len());
            }
            for (k, v) in &model {
                assert_eq!(map.get(*k), Some(v));
            }
            let mut all: Vec<(i64, usize)> = map.iter().map(|(k, v)| (k, *v)).collect();
            all.sort_unstable();
            assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }

    #[test]
    fn packed_keys_live_in_the_vector() {
        let mut map = IdMap::default();
        for k in 1..=100_000 {
            map.insert(k, k);
        }
        assert!(map.sparse.is_empty(), "ascending ids should all be dense");
        assert_eq!(map.dense.len(), 100_001, "no slot is written ahead of the keys");
        map.insert(-5, 0);
        map.insert(1 << 40, 0);
        assert_eq!(map.sparse.len(), 2);
        assert_eq!(map.get_or_insert_with(7, || 0), &mut 7);
        assert_eq!(*map.get_or_insert_with(100_001, || 1), 1);
    }
}
