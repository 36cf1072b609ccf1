//! mimalloc as the global allocator, with two corrections for a program whose memory is
//! mostly long-lived small objects (the index: several per tracked Pod).
//!
//! - **Word-aligned requests go to `mi_malloc`.** The `mimalloc` crate sends every request to
//!   `mi_malloc_aligned`. In mimalloc 3.3, when the size class's current page has no free block
//!   at hand, that path over-allocates by `align - 1` bytes, which lands in the next size class,
//!   and the class's own page is then never refilled: nearly every boxed
//!   [`TrackedPod`](crate::index::TrackedPod) took a block of the next class (`cargo bench
//!   --bench index_memory`, which prints the usable size per part; "Each block in its size
//!   class" in
//!   docs/benchmarks.md#what-a-real-pod-costs-and-where-the-rest-went-real-control-plane-2026-11-25).
//!   Every mimalloc block is a multiple of 8 bytes from a 16-byte aligned page start, so
//!   `mi_malloc` meets any alignment up to 8, as mimalloc's own `mi_realloc_aligned` assumes.
//! - **Shrinking moves to the smaller size class.** mimalloc keeps a block in place when it
//!   shrinks to at least half its size, so a `Vec` grown to 4 entries and boxed at 2 keeps the
//!   4-entry block: every Pod's container history sat in a block twice its size.
//!   Shrinks happen where a value is boxed to keep (`into_boxed_slice`, `shrink_to_fit`),
//!   so copying them costs little and keeps what the index holds at its size class.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// The largest alignment every mimalloc block has (see the module documentation).
const WORD: usize = std::mem::size_of::<usize>();

/// mimalloc with word-aligned requests kept in their size class and shrinks that move
/// (install with `#[global_allocator]`).
pub struct Mimalloc;

// SAFETY: every block comes from mimalloc and goes back to it; alignments above a word use
// mimalloc's aligned calls, and a shrink copies only the bytes the caller keeps.
// (A global allocator cannot be written without `unsafe`.)
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation calls take any size and a power-of-two alignment.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= WORD {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, hence from mimalloc.
        unsafe { mi::mi_free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is a live block of `layout` from this allocator (the caller's
        // contract); a moved shrink copies `new_size < layout.size()` bytes into a fresh block
        // of at least `new_size` before the old one is freed.
        unsafe {
            // Growing reallocs (every `Vec::push` past capacity) skip the size-class lookups.
            let shrink = new_size < layout.size();
            if shrink && mi::mi_good_size(new_size) < mi::mi_usable_size(ptr.cast::<c_void>()) {
                let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
                let moved = self.alloc(new_layout);
                if !moved.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, moved, new_size);
                    mi::mi_free(ptr.cast());
                }
                return moved;
            }
            if layout.align() <= WORD {
                mi::mi_realloc(ptr.cast(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size class mimalloc gives the block of `layout` through [`Mimalloc`].
    fn block_size(layout: Layout, make: impl FnOnce(*mut u8) -> *mut u8) -> usize {
        // SAFETY: the block is allocated, measured and freed with the layout it has.
        unsafe {
            let ptr = make(Mimalloc.alloc(layout));
            assert!(!ptr.is_null());
            let usable = mi::mi_usable_size(ptr.cast());
            Mimalloc.dealloc(ptr, layout);
            usable
        }
    }

    #[test]
    fn word_aligned_blocks_stay_in_their_size_class() {
        // Enough blocks to run through several pages of the class: the over-allocation
        // this avoids starts when the first page's free list runs dry.
        let layout = Layout::from_size_align(160, 8).unwrap();
        // SAFETY: each block is allocated and freed with `layout`.
        let blocks: Vec<*mut u8> = (0..10_000).map(|_| unsafe { Mimalloc.alloc(layout) }).collect();
        for &ptr in &blocks {
            assert!(!ptr.is_null() && (ptr as usize).is_multiple_of(8));
            // SAFETY: a live block from mimalloc.
            assert_eq!(unsafe { mi::mi_usable_size(ptr.cast()) }, 160);
        }
        for ptr in blocks {
            // SAFETY: allocated above with `layout`.
            unsafe { Mimalloc.dealloc(ptr, layout) };
        }
    }

    #[test]
    fn larger_alignments_are_kept() {
        for align in [16, 64, 4096] {
            let layout = Layout::from_size_align(48, align).unwrap();
            // SAFETY: allocated and freed with `layout`.
            unsafe {
                let ptr = Mimalloc.alloc_zeroed(layout);
                assert!(!ptr.is_null() && (ptr as usize).is_multiple_of(align), "alignment {align}");
                assert!(std::slice::from_raw_parts(ptr, 48).iter().all(|b| *b == 0));
                Mimalloc.dealloc(ptr, layout);
            }
        }
    }

    #[test]
    fn a_shrink_moves_to_the_smaller_size_class_with_its_bytes() {
        let layout = Layout::from_size_align(256, 8).unwrap();
        let usable = block_size(layout, |ptr| {
            // SAFETY: `ptr` is a live 256-byte block of `layout`.
            unsafe {
                for i in 0..256 {
                    ptr.add(i).write(i as u8);
                }
                let shrunk = Mimalloc.realloc(ptr, layout, 128);
                assert!((0..128).all(|i| shrunk.add(i).read() == i as u8));
                shrunk
            }
        });
        // (`block_size` frees with the old layout: mimalloc's free ignores the size.)
        assert_eq!(usable, 128);
    }

    #[test]
    fn a_shrink_within_the_size_class_stays_in_place() {
        let layout = Layout::from_size_align(160, 8).unwrap();
        // SAFETY: `ptr` is a live 160-byte block; 150 bytes stay in the 160-byte class.
        let same = block_size(layout, |ptr| unsafe {
            let shrunk = Mimalloc.realloc(ptr, layout, 150);
            assert_eq!(shrunk, ptr);
            shrunk
        });
        assert_eq!(same, 160);
    }

    #[test]
    fn boxing_a_vec_of_three_grown_to_four_keeps_three() {
        // `into_boxed_slice` of 3 entries of 64 bytes grown to a capacity of 4.
        let layout = Layout::from_size_align(4 * 64, 8).unwrap();
        // SAFETY: a live 256-byte block shrunk to 192 bytes.
        let usable = block_size(layout, |ptr| unsafe { Mimalloc.realloc(ptr, layout, 192) });
        assert_eq!(usable, 192);
    }
}
