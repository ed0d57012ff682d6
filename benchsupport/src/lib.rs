//! What the Streamify benchmarks share: [`CountingAlloc`], a global allocator that counts
//! every allocation and reallocation, so a bench can report heap allocations per frame;
//! [`best_of`], the report's timing; and [`gop`], the synthetic stream the flv and rtmp
//! benches measure.
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
use std::time::{Duration, Instant};

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

/// Best-of-15-rounds time per call of `f` (10 calls a round): the least disturbed figure on a
/// shared machine.
pub fn best_of(mut f: impl FnMut()) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..15 {
        let start = Instant::now();
        for _ in 0..10 {
            f();
        }
        best = best.min(start.elapsed() / 10);
    }
    best
}

/// One 2-second GOP of a 720p30 2.5 Mbit/s stream with AAC 128 kbit/s: a ~60 KB keyframe,
/// 59 ~10 KB inter frames, 94 ~370 B audio frames.
pub mod gop {
    /// Video frames per second.
    pub const FPS: u32 = 30;
    /// Video frames in the GOP.
    pub const GOP: usize = 60;
    /// Bytes of the keyframe's slice.
    pub const KEYFRAME_BYTES: usize = 60_000;
    /// Bytes of an inter frame's slice.
    pub const INTER_BYTES: usize = 10_000;
    /// Bytes of an AAC frame.
    pub const AUDIO_FRAME_BYTES: usize = 370;
    /// AAC frames in the GOP's 2 s (1024 samples each at 48 kHz).
    pub const AUDIO_FRAMES: u32 = 94;

    /// Milliseconds of video frame `i`.
    pub fn video_ms(i: usize) -> u32 {
        i as u32 * 1000 / FPS
    }

    /// Milliseconds of AAC frame `i`.
    pub fn audio_ms(i: u32) -> u32 {
        i * 1024 * 1000 / 48_000
    }

    /// Deterministic slice-like bytes, never 0, so they never form an Annex-B start code
    /// (real slices are emulation-prevented).
    pub fn filler(len: usize, seed: u32) -> impl Iterator<Item = u8> {
        let mut x = seed | 1;
        (0..len).map(move |_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x as u8) | 1
        })
    }
}
