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

use libmimalloc_sys::{mi_option_set, mi_option_t};

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
