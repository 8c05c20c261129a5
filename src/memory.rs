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
//! plain blocks wherever a plain block is aligned enough.

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
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { mi_free(ptr as *mut c_void) }
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
