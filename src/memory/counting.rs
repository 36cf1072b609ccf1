//! An allocator that counts what is live: [`super::Mimalloc`] underneath, three counters beside it.
//!
//! RSS says how much memory the process holds, not why. With this allocator installed (the
//! `heap-counts` build of the operator, `benches/index_memory.rs`) the gap between the bytes
//! the program asked for, the bytes mimalloc's size classes gave it, and RSS tells live data,
//! rounding and fragmentation apart. It costs a few atomic additions per allocation, so the
//! operator's default build does not use it.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// mimalloc, counting live bytes and allocations (install with `#[global_allocator]`).
pub struct CountingMimalloc;

static ASKED: AtomicUsize = AtomicUsize::new(0);
static USABLE: AtomicUsize = AtomicUsize::new(0);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Live allocations by size asked; the last slot counts every larger one.
static BY_SIZE: [AtomicUsize; 1025] = [const { AtomicUsize::new(0) }; 1025];
/// Live bytes of the allocations larger than 1 KiB, by power of two (slot k: up to 2^k).
static LARGE_BYTES: [AtomicUsize; 64] = [const { AtomicUsize::new(0) }; 64];

/// What is live on the heap at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapCounts {
    /// Bytes asked for.
    pub asked: usize,
    /// Bytes mimalloc gave for them (its size classes round up).
    pub usable: usize,
    /// Allocations.
    pub allocations: usize,
}

/// The live counts, or `None` when [`CountingMimalloc`] is not the global allocator (then
/// nothing has ever been counted: any running program has live allocations).
pub fn heap_counts() -> Option<HeapCounts> {
    let allocations = ALLOCATIONS.load(Relaxed);
    (allocations > 0).then(|| HeapCounts { asked: ASKED.load(Relaxed), usable: USABLE.load(Relaxed), allocations })
}

/// Live allocations by size asked (index: bytes; the last slot: anything larger).
pub fn live_by_size() -> Vec<usize> {
    BY_SIZE.iter().map(|n| n.load(Relaxed)).collect()
}

/// Live bytes in allocations larger than 1 KiB, by size rounded up to a power of two:
/// `(2^k, bytes)` for each k that holds any.
pub fn live_large_bytes() -> Vec<(usize, usize)> {
    LARGE_BYTES.iter().enumerate().map(|(k, n)| (1usize << k, n.load(Relaxed))).filter(|(_, n)| *n > 0).collect()
}

fn usable(ptr: *const u8) -> usize {
    // SAFETY: only called with pointers mimalloc returned and that are still live.
    unsafe { libmimalloc_sys::mi_usable_size(ptr.cast()) }
}

/// Counts a live allocation of `size` bytes at `ptr` in, or out.
fn count(ptr: *const u8, size: usize, live: bool) {
    let add = |counter: &AtomicUsize, n: usize| {
        if live {
            counter.fetch_add(n, Relaxed)
        } else {
            counter.fetch_sub(n, Relaxed)
        }
    };
    add(&ASKED, size);
    add(&USABLE, usable(ptr));
    add(&ALLOCATIONS, 1);
    add(&BY_SIZE[size.min(BY_SIZE.len() - 1)], 1);
    if size >= BY_SIZE.len() {
        add(&LARGE_BYTES[size.next_power_of_two().trailing_zeros() as usize % LARGE_BYTES.len()], size);
    }
}

// SAFETY: every call is passed on to mimalloc unchanged; the counters only observe it.
// (A global allocator cannot be written without `unsafe`.)
unsafe impl GlobalAlloc for CountingMimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let ptr = unsafe { super::Mimalloc.alloc(layout) };
        if !ptr.is_null() {
            count(ptr, layout.size(), true);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        let ptr = unsafe { super::Mimalloc.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(ptr, layout.size(), true);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(ptr, layout.size(), false);
        // SAFETY: as in `alloc`.
        unsafe { super::Mimalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(ptr, layout.size(), false);
        // SAFETY: as in `alloc`.
        let moved = unsafe { super::Mimalloc.realloc(ptr, layout, new_size) };
        if moved.is_null() {
            count(ptr, layout.size(), true);
        } else {
            count(moved, new_size, true);
        }
        moved
    }
}
