//! What the Streamify benchmarks share: [`CountingAlloc`], a global allocator that counts
//! every allocation and reallocation, so a bench can report heap allocations per frame.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: benchsupport::CountingAlloc = benchsupport::CountingAlloc;
//!
//! let before = benchsupport::allocations();
//! // ... the measured work ...
//! let per_frame = (benchsupport::allocations() - before) as f64 / frames as f64;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwards to the system allocator and counts every `alloc` and `realloc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations and reallocations counted so far (by [`CountingAlloc`] when it is the
/// program's global allocator; 0 otherwise).
pub fn allocations() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}
