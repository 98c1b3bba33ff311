//! A heap buffer aligned for O_DIRECT I/O.

use std::alloc::{alloc_zeroed, dealloc, Layout};

/// Alignment used for every O_DIRECT transfer (covers 512- and 4096-byte devices).
pub const DIRECT_ALIGN: usize = 4096;

/// Zero-initialised bytes whose start is aligned to `DIRECT_ALIGN`.
pub struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is uniquely owned heap memory, like Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    /// Allocates `len` zeroed bytes (at least one alignment unit).
    pub fn new(len: usize) -> AlignedBuf {
        let len = len.max(DIRECT_ALIGN).next_multiple_of(DIRECT_ALIGN);
        let layout = match Layout::from_size_align(len, DIRECT_ALIGN) {
            Ok(l) => l,
            Err(_) => std::alloc::handle_alloc_error(Layout::new::<u8>()),
        };
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Grows to at least `len` bytes; contents are not preserved.
    pub fn ensure(&mut self, len: usize) {
        if self.len < len {
            *self = AlignedBuf::new(len);
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr points to len initialised bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: ptr points to len initialised bytes uniquely owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Layout::from_size_align(self.len, DIRECT_ALIGN) {
            // SAFETY: ptr was allocated with exactly this layout in new().
            unsafe { dealloc(self.ptr, layout) };
        }
    }
}
