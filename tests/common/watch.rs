//! Measuring the whole process: heap bytes (the server runs in the test's process) and open
//! descriptors, and the lock that keeps other cases out while a case measures.
//!
//! [`HeapWatch`] counts only in a test binary that installs [`Counting`] as its allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: common::watch::Counting = common::watch::Counting;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting the bytes held and the peak since [`HeapWatch::start`].
pub struct Counting;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = HEAP_NOW.fetch_add(n, Relaxed) + n;
    HEAP_PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every method forwards its arguments unchanged to `System` and returns what `System`
// returns, so `System`'s guarantees are `Counting`'s; the counters never touch the memory.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        HEAP_NOW.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds `realloc`'s rules.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            match new_size.checked_sub(layout.size()) {
                Some(more) => grew(more),
                None => {
                    HEAP_NOW.fetch_sub(layout.size() - new_size, Relaxed);
                }
            }
        }
        p
    }
}

/// The heap's growth above its level when the watch started.
pub struct HeapWatch {
    base: usize,
}

impl HeapWatch {
    /// Panics if [`Counting`] is not this binary's allocator: the growth would always read 0.
    pub fn start() -> HeapWatch {
        let base = HEAP_NOW.load(Relaxed);
        assert!(
            base > 0,
            "HeapWatch needs `#[global_allocator] static _: Counting` in the test binary"
        );
        HEAP_PEAK.store(base, Relaxed);
        HeapWatch { base }
    }

    /// The highest heap level since `start`, above the level at `start`.
    pub fn peak_growth(&self) -> usize {
        HEAP_PEAK.load(Relaxed).saturating_sub(self.base)
    }
}

/// Cases that measure the whole process (heap, descriptors) take this lock for writing, every
/// other case for reading, so nothing else runs while they measure.
pub static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}
