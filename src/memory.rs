//! What the allocator does with freed memory: hands it back to the OS while
//! a state is restored, keeps it while the view runs.
//!
//! The binary's allocator is mimalloc, which by default hands pages back to
//! the OS a second after they empty. A running view replaces rows all the
//! time, so pages handed back were soon faulted in and zeroed again; under
//! load that cost the engine up to a tenth of its throughput, hence
//! [`keep_freed`] once the view runs. A restore is different: it fills the
//! tables on several threads and drops its buffers once, and a fresh
//! `cdcview serve` restoring 1M orders peaked at 1.39 GiB handing pages back
//! after 10 ms, 1.50-1.62 GiB after mimalloc's second and 1.70-1.85 GiB
//! keeping them, hence [`hand_back_freed`] (10 ms) until the view runs.
//! `MIMALLOC_PURGE_DELAY` in the environment wins over both.
//!
//! [`Allocator`] is the binary's global allocator: mimalloc, asked for
//! plain blocks wherever a plain block is aligned enough, with each
//! thread's most recently freed small blocks handed out again first
//! ([`recent`]).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_option_set, mi_option_t, mi_realloc, mi_realloc_aligned, mi_zalloc, mi_zalloc_aligned,
};

/// mimalloc as the global allocator.
///
/// The `mimalloc` crate's allocator asks for every block through
/// `mi_malloc_aligned`, even at the 8 bytes of alignment every block has.
/// When the block's size class has no free block at hand, mimalloc 3 then
/// takes its aligned path, which allocates `size + align - 1` bytes unless
/// the size class is a power of two: a row of 136 bytes took a block of
/// 160, a line's text of 61 bytes one of 80, and each paid the detour (the
/// `mimalloc` crate's pull request 170 proposes the same change). The
/// system allocator of Rust's standard library takes plain `malloc` under
/// the same condition as here.
pub struct Allocator;

/// The alignment every mimalloc block of a size that is a multiple of it
/// has: size classes are multiples of 8 bytes, of 16 from 16 bytes on, and
/// a page's first block starts at 16 (`MI_MAX_ALIGN_SIZE`,
/// `MI_PAGE_MIN_START_BLOCK_ALIGN` in mimalloc's `types.h`).
const PLAIN_ALIGN: usize = 16;

/// Whether a plain block of `size` bytes is aligned to `align`.
fn plain_fits(size: usize, align: usize) -> bool {
    align <= PLAIN_ALIGN && size.is_multiple_of(align)
}

// SAFETY: each method hands the layout's request to the mimalloc function
// that meets it (plain when `plain_fits`, else aligned), and every block,
// plain or aligned, is freed by `mi_free` and resized by either `realloc`.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(block) = recent::take(layout) {
            return block;
        }
        if plain_fits(layout.size(), layout.align()) {
            unsafe { mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain_fits(layout.size(), layout.align()) {
            unsafe { mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !recent::keep(ptr, layout) {
            unsafe { mi_free(ptr as *mut c_void) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain_fits(new_size, layout.align()) {
            unsafe { mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe { mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align()) as *mut u8 }
        }
    }
}

/// Each thread's most recently freed small blocks, handed out again first.
///
/// mimalloc hands out a page's free blocks in the order its free list
/// holds them, which is mostly the order they were freed long before: the
/// link to the next free block is then read from memory out of the cache,
/// and the block is written there again. That one load was a tenth of the
/// engine benchmark's time (a view row freed by the consumer, a new one
/// made in the next batch). Freed last, taken first: a block taken from
/// here was freed a moment ago and is still in the cache, and neither
/// taking nor keeping it reads mimalloc's page.
///
/// Blocks are kept by their exact size (a multiple of 8 bytes, up to
/// `MAX_SIZE`, at most 16 bytes of alignment): a block freed at a size
/// was allocated (or resized) at it, so it holds that many bytes; it is
/// handed out again only where its address has the alignment asked for.
/// A block freed by another thread than the one that allocated it is
/// mimalloc's all the same, and `mi_free` takes it from any thread later.
/// A thread keeps at most `BUDGET` bytes, and gives them back when it
/// ends.
mod recent {
    use std::alloc::Layout;
    use std::cell::Cell;
    use std::ffi::c_void;

    use libmimalloc_sys::{mi_free, mi_zalloc};

    /// The largest size kept (view and source rows, most texts).
    pub const MAX_SIZE: usize = 256;
    const CLASSES: usize = MAX_SIZE / 8;
    /// Blocks kept per size: a batch's rows of one size and more. With 256
    /// the engine benchmark's view rows (about 1,300 freed per batch of
    /// 1,000 changes) mostly went back to mimalloc, and it ran as without
    /// any; with 2,048 it ran 11-20% faster.
    const DEPTH: usize = 2048;
    /// The most bytes of blocks one thread keeps. Half of it (1 MiB) ran
    /// slower than this, and twice as much no faster.
    const BUDGET: usize = 2 << 20;

    struct Stacks {
        len: [u16; CLASSES],
        bytes: usize,
        blocks: [[*mut u8; DEPTH]; CLASSES],
    }

    /// Where a thread's stacks are: none yet, or given back (the thread
    /// ends; blocks then go straight to mimalloc).
    const CLOSED: *mut Stacks = std::ptr::dangling_mut();

    thread_local! {
        // Constant, without a destructor: reached with no check of state,
        // from any allocation, even while the thread's other thread-locals
        // are torn down. The stacks themselves (half a megabyte of pointers,
        // touched as they fill) are on mimalloc's heap, not in every
        // thread's static storage, whose share of a thread's stack
        // overflowed it.
        static STACKS: Cell<*mut Stacks> = const { Cell::new(std::ptr::null_mut()) };
        static FLUSH: Flush = const { Flush };
    }

    /// Gives a thread's kept blocks back to mimalloc when the thread ends.
    struct Flush;

    impl Drop for Flush {
        fn drop(&mut self) {
            let Some(stacks) = held(STACKS.replace(CLOSED)) else { return };
            // SAFETY: this thread's stacks, made by `open` and no longer
            // reachable; `mi_free` does not allocate or free through Rust.
            unsafe {
                let kept = &*stacks;
                for (len, blocks) in kept.len.iter().zip(&kept.blocks) {
                    for &block in &blocks[..*len as usize] {
                        mi_free(block as *mut c_void);
                    }
                }
                mi_free(stacks as *mut c_void);
            }
        }
    }

    /// The stacks `STACKS` points to, unless it points to none yet or to
    /// [`CLOSED`].
    #[inline]
    fn held(stacks: *mut Stacks) -> Option<*mut Stacks> {
        (!stacks.is_null() && stacks != CLOSED).then_some(stacks)
    }

    /// This thread's stacks, made on first use; `None` once given back or
    /// if mimalloc has no memory for them.
    #[inline]
    fn stacks() -> Option<*mut Stacks> {
        let stacks = STACKS.get();
        if stacks.is_null() {
            return open();
        }
        held(stacks)
    }

    #[cold]
    fn open() -> Option<*mut Stacks> {
        // Zeroed: no block kept. Straight from mimalloc, not through the
        // global allocator this serves.
        let stacks = unsafe { mi_zalloc(size_of::<Stacks>()) } as *mut Stacks;
        if stacks.is_null() {
            return None;
        }
        STACKS.set(stacks);
        // Registering the destructor may allocate, which finds the stacks.
        // A thread already tearing its thread-locals down keeps none.
        if FLUSH.try_with(|_| ()).is_err() {
            STACKS.set(CLOSED);
            unsafe { mi_free(stacks as *mut c_void) };
            return None;
        }
        Some(stacks)
    }

    /// The size class of a layout whose blocks are kept.
    #[inline]
    fn class(layout: Layout) -> Option<usize> {
        let size = layout.size();
        (size != 0 && size <= MAX_SIZE && size.is_multiple_of(8) && layout.align() <= 16).then(|| size / 8 - 1)
    }

    /// A block of `layout` freed by this thread a moment ago, if one is kept.
    #[inline]
    pub fn take(layout: Layout) -> Option<*mut u8> {
        let class = class(layout)?;
        // Taking never makes the stacks: a thread that has freed nothing
        // has nothing kept.
        let stacks = held(STACKS.get())?;
        // SAFETY: this thread's stacks; nothing here allocates, so no other
        // reference to them is live.
        let stacks = unsafe { &mut *stacks };
        let len = stacks.len[class] as usize;
        let block = stacks.blocks[class][len.checked_sub(1)?];
        // Kept from a request of the same size that asked for less
        // alignment (a layout's size need not be a multiple of it).
        if !(block as usize).is_multiple_of(layout.align()) {
            return None;
        }
        stacks.len[class] = (len - 1) as u16;
        stacks.bytes -= layout.size();
        Some(block)
    }

    /// Keeps a freed block of `layout` for this thread's next allocation of
    /// its size; `false` when it is not kept (mimalloc is to free it).
    #[inline]
    pub fn keep(block: *mut u8, layout: Layout) -> bool {
        let Some(class) = class(layout) else { return false };
        let Some(stacks) = stacks() else { return false };
        // SAFETY: as in `take`.
        let stacks = unsafe { &mut *stacks };
        let len = stacks.len[class] as usize;
        if len == DEPTH || stacks.bytes + layout.size() > BUDGET {
            return false;
        }
        stacks.blocks[class][len] = block;
        stacks.len[class] = (len + 1) as u16;
        stacks.bytes += layout.size();
        true
    }
}

/// mimalloc's `mi_option_purge_delay` (numbered in its `mimalloc.h`; the
/// bindings name no constant for it).
const PURGE_DELAY: mi_option_t = 15;
/// Soon after a page empties, in milliseconds (mimalloc's default is 1000).
const SOON_MS: std::os::raw::c_long = 10;
/// mimalloc's value for "never".
const NEVER: std::os::raw::c_long = -1;

/// From now on, keep freed pages for reuse instead of handing them back.
pub fn keep_freed() {
    set_purge_delay(NEVER);
}

/// From now on, hand freed pages back to the OS shortly after they empty.
pub fn hand_back_freed() {
    set_purge_delay(SOON_MS);
}

/// From now on, hand freed pages back to the OS as soon as they empty
/// (slower: for measuring what a state holds, see [`release_freed_now`]).
pub fn hand_back_at_once() {
    set_purge_delay(0);
}

/// Has this thread's empty pages handed back now: after
/// [`hand_back_at_once`], what stays resident is what live blocks hold
/// (with the free space of the pages they sit in).
pub fn release_freed_now() {
    // SAFETY: asks mimalloc to collect this thread's free pages; no pointer
    // is involved.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

fn set_purge_delay(ms: std::os::raw::c_long) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options by its number; mimalloc reads
        // it again each time it schedules a purge. No pointer is involved.
        unsafe { mi_option_set(PURGE_DELAY, ms) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to a few pages, at every alignment up to a page, many
    /// blocks at a time (so that size classes run out of free blocks and
    /// take their slow paths): each block is aligned, holds its bytes through
    /// a resize, and is freed.
    #[test]
    fn blocks_are_aligned_and_keep_their_bytes() {
        let sizes = (1..=512).chain((520..=20_000).step_by(88));
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                let layout = Layout::from_size_align(size, align).unwrap();
                let blocks: Vec<*mut u8> = (0..40)
                    .map(|i| unsafe {
                        let p = if i % 2 == 0 { Allocator.alloc(layout) } else { Allocator.alloc_zeroed(layout) };
                        assert!(!p.is_null() && (p as usize).is_multiple_of(align), "size {size}, align {align}: {p:p}");
                        if i % 2 == 1 {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0), "zeroed {size}/{align}");
                        }
                        p.write_bytes(i as u8, size);
                        p
                    })
                    .collect();
                for (i, p) in blocks.into_iter().enumerate() {
                    unsafe {
                        let grown = size * 2 + 8;
                        let q = Allocator.realloc(p, layout, grown);
                        assert!(!q.is_null() && (q as usize).is_multiple_of(align), "realloc {size}->{grown}, align {align}");
                        assert!(std::slice::from_raw_parts(q, size).iter().all(|&b| b == i as u8));
                        Allocator.dealloc(q, Layout::from_size_align(grown, align).unwrap());
                    }
                }
            }
        }
    }

    /// A block freed at a size is the next one of that size on this
    /// thread, but not where the request asks for more alignment than its
    /// address has.
    #[test]
    fn a_freed_small_block_is_handed_out_again_first_when_aligned_enough() {
        unsafe {
            let row = Layout::from_size_align(224, 16).unwrap();
            let a = Allocator.alloc(row);
            Allocator.dealloc(a, row);
            assert_eq!(Allocator.alloc(row), a, "the block just freed comes back first");
            Allocator.dealloc(a, row);
            // 8 bytes at 8 and at 16 bytes of alignment share a size class.
            let loose = Layout::from_size_align(8, 8).unwrap();
            let strict = Layout::from_size_align(8, 16).unwrap();
            let blocks: Vec<*mut u8> = (0..8).map(|_| Allocator.alloc(loose)).collect();
            let odd = *blocks.iter().find(|p| !(**p as usize).is_multiple_of(16)).expect("8-byte blocks are 8-aligned only, half of them");
            for &p in blocks.iter().filter(|&&p| p != odd) {
                Allocator.dealloc(p, loose);
            }
            Allocator.dealloc(odd, loose);
            let p = Allocator.alloc(strict);
            assert!((p as usize).is_multiple_of(16), "{p:p}");
            assert_eq!(Allocator.alloc(loose), odd, "the block kept for 8-byte alignment is still there");
            Allocator.dealloc(p, strict);
            Allocator.dealloc(odd, loose);
        }
    }

    #[test]
    fn sets_mimallocs_purge_delay_unless_the_environment_does() {
        let purge_delay = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            let before = purge_delay();
            keep_freed();
            assert_eq!(purge_delay(), before);
            return;
        }
        // mimalloc's default: option 15 is indeed the purge delay.
        assert_eq!(purge_delay(), 1000);
        keep_freed();
        assert_eq!(purge_delay(), NEVER);
        hand_back_freed();
        assert_eq!(purge_delay(), SOON_MS);
    }
}
