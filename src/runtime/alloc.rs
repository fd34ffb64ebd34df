//! Upkeep of the global allocator (mimalloc, set in `main.rs`).
//!
//! mimalloc returns freed pages to the OS only when the thread that owns them calls into the
//! allocator again. A shard that goes quiet after a burst of connections would keep that memory
//! resident for ever; [`collect`], called from each shard's periodic sweep, lets it go.
//! Measured with `wsgate-loadgen connect -n 19000` (see BENCHMARKS.md, "Idle memory").

/// Runs this thread's pending mimalloc purges (not a forced full collection). Harmless when
/// mimalloc is not the global allocator (tests): its heaps are then empty.
#[allow(unsafe_code)]
pub(crate) fn collect() {
    // SAFETY: `mi_collect` takes no pointers and only walks this thread's own heap; it may be
    // called at any time from any thread that uses (or does not use) mimalloc.
    unsafe { libmimalloc_sys::mi_collect(false) }
}
