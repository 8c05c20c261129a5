//! A map from integer keys to values that is a plain vector where the keys are
//! packed, as auto-increment ids are, pages of slots where they come in runs
//! far from zero, and a hash map elsewhere.
//!
//! The engine looks a row up for nearly every change it applies, in tables of
//! hundreds of thousands of rows: there, the cost of a look-up is its cache
//! misses. A hash probe touches the control bytes and then the bucket; an index
//! into a vector touches the slot alone, and keys that arrive in order sit next
//! to each other. Keys that would leave the vector mostly empty (negative,
//! huge, or far apart) go to the hash map, so any key set works; where such
//! keys come in runs (an event source's positions, `stream << 40 | offset`,
//! or the negative numbers of events without one), a run's keys go to a page
//! of slots found by the key's high bits, so that they sit next to each
//! other too, in a slot of the value's size.

use ahash::AHashMap;

/// The vector's first size: small tables need no growth at all.
const MIN_DENSE: usize = 1024;

/// A page holds the keys that differ in their low `PAGE_BITS` bits only.
const PAGE_BITS: u32 = 8;
const PAGE_SLOTS: usize = 1 << PAGE_BITS;

/// The page of `key`: its bits above the slot's (an arithmetic shift, so
/// that negative keys have pages of their own).
#[inline]
fn page_of(key: i64) -> i64 {
    key >> PAGE_BITS
}

/// The slot of `key` in its page.
#[inline]
fn slot_in_page(key: i64) -> usize {
    (key & (PAGE_SLOTS as i64 - 1)) as usize
}

/// Keys of one page, in slots by their low bits.
#[derive(Debug, Clone)]
struct Page<V> {
    slots: Box<[Option<V>]>,
    /// How many slots hold a value: an emptied page goes.
    len: usize,
}

impl<V> Page<V> {
    fn new() -> Self {
        Page { slots: (0..PAGE_SLOTS).map(|_| None).collect(), len: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct IdMap<V> {
    /// `dense[k]` holds key `k`, for `0 <= k < dense.len()`.
    dense: Vec<Option<V>>,
    /// Keys beyond the vector that came in runs, by [`page_of`]: every key
    /// of a page that is here (and beyond the vector) is in it, not in
    /// `sparse`.
    pages: AHashMap<i64, Page<V>>,
    /// Every other key.
    sparse: AHashMap<i64, V>,
    len: usize,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { dense: Vec::new(), pages: AHashMap::default(), sparse: AHashMap::default(), len: 0 }
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
            None => match self.page(key) {
                Some(page) => page.slots[slot_in_page(key)].as_ref(),
                None => self.sparse.get(&key),
            },
        }
    }

    /// The page of `key`, if there is one.
    #[inline]
    fn page(&self, key: i64) -> Option<&Page<V>> {
        if self.pages.is_empty() {
            return None;
        }
        self.pages.get(&page_of(key))
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
            None => match page_mut(&mut self.pages, key) {
                Some(page) => page.slots[slot_in_page(key)].as_mut(),
                None => self.sparse.get_mut(&key),
            },
        }
    }

    /// Stores `value` under `key`, returning the value it replaced.
    pub fn insert(&mut self, key: i64, value: V) -> Option<V> {
        let old = match self.slot(key).or_else(|| self.grow_to(key)) {
            Some(i) => self.dense[i].replace(value),
            None => match page_for_insert(&mut self.pages, &mut self.sparse, key) {
                Some(page) => {
                    let old = page.slots[slot_in_page(key)].replace(value);
                    page.len += usize::from(old.is_none());
                    old
                }
                None => self.sparse.insert(key, value),
            },
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
            None => {
                if let Some(page) = page_for_insert(&mut self.pages, &mut self.sparse, key) {
                    let entry = &mut page.slots[slot_in_page(key)];
                    let new = usize::from(entry.is_none());
                    page.len += new;
                    self.len += new;
                    return entry.get_or_insert_with(make);
                }
                match self.sparse.entry(key) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => {
                        self.len += 1;
                        e.insert(make())
                    }
                }
            }
        }
    }

    pub fn remove(&mut self, key: i64) -> Option<V> {
        let old = match self.slot(key) {
            Some(i) => self.dense[i].take(),
            None => match page_mut(&mut self.pages, key) {
                Some(page) => {
                    let old = page.slots[slot_in_page(key)].take();
                    page.len -= usize::from(old.is_some());
                    if page.len == 0 {
                        self.pages.remove(&page_of(key));
                    }
                    old
                }
                None => self.sparse.remove(&key),
            },
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
    /// pages' and the hash map's in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &V)> {
        let dense = self.dense.iter().enumerate().filter_map(|(k, v)| Some((k as i64, v.as_ref()?)));
        let paged = self
            .pages
            .iter()
            .flat_map(|(&page, p)| p.slots.iter().enumerate().filter_map(move |(i, v)| Some(((page << PAGE_BITS) + i as i64, v.as_ref()?))));
        dense.chain(paged).chain(self.sparse.iter().map(|(&k, v)| (k, v)))
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
        let paged = self.pages.par_iter_mut().flat_map_iter(|(_, p)| p.slots.iter_mut().filter_map(Option::as_mut));
        self.dense.par_iter_mut().filter_map(Option::as_mut).chain(paged).chain(self.sparse.par_iter_mut().map(|(_, v)| v))
    }

    /// Extends the vector to cover `key` if it would stay at least half full
    /// (counting the value about to be inserted), moving the keys it now
    /// covers out of the pages and the hash map; returns `key`'s index if it
    /// did.
    fn grow_to(&mut self, key: i64) -> Option<usize> {
        let index = usize::try_from(key).ok()?;
        let limit = MIN_DENSE.max(2 * (self.len + 1));
        if index >= limit {
            return None;
        }
        if self.sparse.is_empty() && self.pages.is_empty() {
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
        // A page partly covered keeps its keys beyond the vector (a look-up
        // tries the vector first); one wholly covered goes.
        let new_end = new_len as i64;
        let covered_pages: Vec<i64> = self.pages.keys().copied().filter(|&p| p >= 0 && p << PAGE_BITS < new_end).collect();
        for p in covered_pages {
            let page = self.pages.get_mut(&p).expect("listed above");
            let first = p << PAGE_BITS;
            for (i, slot) in page.slots.iter_mut().enumerate().take((new_end - first) as usize) {
                if let Some(value) = slot.take() {
                    page.len -= 1;
                    self.dense[first as usize + i] = Some(value);
                }
            }
            if page.len == 0 {
                self.pages.remove(&p);
            }
        }
        Some(index)
    }
}

/// The page of `key`, if there is one.
#[inline]
fn page_mut<V>(pages: &mut AHashMap<i64, Page<V>>, key: i64) -> Option<&mut Page<V>> {
    if pages.is_empty() {
        return None;
    }
    pages.get_mut(&page_of(key))
}

/// The page a key beyond the vector goes to: its page if there is one,
/// or a new one when the key extends a run of keys in the hash map (the
/// two below it, or the two above it), which then moves there with the
/// rest of its page's keys; `None`: the key goes to the hash map.
///
/// A page is made for a run only, so that keys far apart keep a hash
/// map's slot each instead of a page each.
fn page_for_insert<'a, V>(pages: &'a mut AHashMap<i64, Page<V>>, sparse: &mut AHashMap<i64, V>, key: i64) -> Option<&'a mut Page<V>> {
    use std::collections::hash_map::Entry;
    // One look-up of the page, which a run's every key makes.
    let vacant = match pages.entry(page_of(key)) {
        Entry::Occupied(page) => return Some(page.into_mut()),
        Entry::Vacant(vacant) => vacant,
    };
    let run = |a: i64, b: i64| sparse.contains_key(&a) && sparse.contains_key(&b);
    let in_run = key.checked_sub(2).is_some_and(|below| run(below, below + 1)) || key.checked_add(2).is_some_and(|above| run(above - 1, above));
    if !in_run {
        return None;
    }
    let mut new = Page::new();
    let first = *vacant.key() << PAGE_BITS;
    for k in (0..PAGE_SLOTS as i64).map(|i| first + i) {
        if let Some(value) = sparse.remove(&k) {
            new.slots[slot_in_page(k)] = Some(value);
            new.len += 1;
        }
    }
    Some(vacant.insert(new))
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
                let key = match rng.random_range(0..12) {
                    0 => -rng.random_range(0..100),
                    1 => rng.random_range(0..i64::MAX),
                    2 => rng.random_range(1_000_000..1_000_100),
                    // Runs far from zero, across pages, and at the ends.
                    3 => (4 << 40) + rng.random_range(-300..300),
                    4 => rng.random_range(i64::MIN..i64::MIN + 300),
                    5 => rng.random_range(i64::MAX - 300..=i64::MAX),
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

    /// Keys in runs far from zero (an event source's positions, or the
    /// negative keys of unplaced events) go to pages, scattered ones to the
    /// hash map; a vector grown over a page takes its keys.
    #[test]
    fn runs_far_from_zero_live_in_pages() {
        let mut map = IdMap::default();
        for k in 0..10_000 {
            map.insert((4 << 40) + k, k);
            map.insert(-1 - k, k);
        }
        assert_eq!(map.sparse.len(), 0, "every key of a run is in a page");
        assert_eq!(map.pages.len(), 2 * 10_000 / PAGE_SLOTS + 2, "pages of 256 slots (a run's first page is partly used)");
        for k in 0..100 {
            map.insert(k * 1_000_003 + (1 << 50), k);
        }
        assert_eq!(map.sparse.len(), 100, "scattered keys stay in the hash map");
        assert_eq!(map.get((4 << 40) + 9_999), Some(&9_999));
        assert_eq!(map.get(-10_000), Some(&9_999));
        assert_eq!(map.get(-10_001), None);
        for k in 0..10_000 {
            assert_eq!(map.remove((4 << 40) + k), Some(k));
        }
        assert_eq!(map.pages.len(), 10_000 / PAGE_SLOTS + 1, "emptied pages go");

        let mut map = IdMap::default();
        for k in 1_500..1_800 {
            map.insert(k, k);
        }
        assert!(map.dense.is_empty() && !map.pages.is_empty(), "keys beyond the vector's reach while the map is small");
        for k in 0..1_600 {
            map.insert(k, k);
        }
        assert!(map.dense.len() >= 1_600);
        assert_eq!((0..1_800).map(|k| map.get(k).copied()).collect::<Vec<_>>(), (0..1_800).map(Some).collect::<Vec<_>>());
        assert_eq!(map.len(), 1_800);
        assert_eq!(map.iter().count(), 1_800);
    }
}
