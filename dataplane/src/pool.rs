//! The per-worker frame pool: one contiguous allocation of fixed-size frames with
//! headroom (header growth, io_uring's recvmsg prefix) and tailroom (SRTP tags),
//! handed out by index and never freed on the hot path.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// Bytes per frame.
pub const FRAME_SIZE: usize = 2048;
/// Bytes kept free before the datagram.
pub const HEADROOM: usize = 64;
/// Bytes kept free after the largest datagram we accept (SRTP tag, MKI, SRTCP index).
pub const TAILROOM: usize = 64;
/// Largest datagram a frame receives.
pub const MAX_DATAGRAM: usize = FRAME_SIZE - HEADROOM - TAILROOM;
/// Largest pool: frame ids must fit io_uring's 16-bit buffer ids.
pub const MAX_FRAMES: usize = 1 << 16;

/// Index of a frame in its pool.
pub type FrameId = u32;

/// Fixed-size frames owned by one worker.
pub struct FramePool {
    base: NonNull<u8>,
    layout: Layout,
    frames: usize,
    free: Vec<FrameId>,
    /// Which frames are handed out: a frame freed twice (or an id out of range)
    /// is refused and counted, in release builds too, rather than handed out to
    /// two owners later (one session's packet written over another's).
    in_use: Vec<bool>,
    exhausted: u64,
    bad_frees: u64,
}

// SAFETY: the pool owns its allocation; it is moved to and then used by one thread.
unsafe impl Send for FramePool {}

impl std::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePool")
            .field("frames", &self.frames)
            .field("free", &self.free.len())
            .field("exhausted", &self.exhausted)
            .field("bad_frees", &self.bad_frees)
            .finish()
    }
}

impl FramePool {
    /// A pool of `frames` frames (clamped to 1..=[`MAX_FRAMES`]), allocated and
    /// zeroed now, on the calling thread (call it after pinning, so that the pages
    /// are first touched on the worker's NUMA node).
    pub fn new(frames: usize) -> Self {
        let frames = frames.clamp(1, MAX_FRAMES);
        let layout = Layout::from_size_align(frames * FRAME_SIZE, 4096).expect("frame pool layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        FramePool {
            base,
            layout,
            frames,
            free: (0..frames as FrameId).rev().collect(),
            in_use: vec![false; frames],
            exhausted: 0,
            bad_frees: 0,
        }
    }

    /// Number of frames.
    pub fn capacity(&self) -> usize {
        self.frames
    }

    /// Frames not handed out.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// How many times an allocation found the pool empty.
    pub fn exhausted(&self) -> u64 {
        self.exhausted
    }

    /// How many frees were refused: a frame freed twice, or an id out of range.
    pub fn bad_frees(&self) -> u64 {
        self.bad_frees
    }

    /// Takes a frame, or counts the exhaustion and returns `None`.
    #[inline]
    pub fn alloc(&mut self) -> Option<FrameId> {
        match self.free.pop() {
            Some(f) => {
                // Only frames marked free are on the free list (see `free`).
                self.in_use[f as usize] = true;
                Some(f)
            }
            None => {
                self.exhausted += 1;
                None
            }
        }
    }

    /// Returns a frame.
    #[inline]
    pub fn free(&mut self, f: FrameId) {
        match self.in_use.get_mut(f as usize) {
            Some(used) if *used => {
                *used = false;
                self.free.push(f);
            }
            _ => {
                // A bug in a caller; tests stop here, a release build counts it
                // and keeps the pool consistent.
                debug_assert!(false, "frame {f} freed twice or out of range");
                self.bad_frees += 1;
            }
        }
    }

    /// The whole frame.
    #[inline]
    pub fn frame_mut(&mut self, f: FrameId) -> &mut [u8] {
        assert!((f as usize) < self.frames, "frame id out of range");
        // SAFETY: in range; `&mut self` guarantees no other Rust reference into the
        // pool is alive. Frames lent to the kernel are not touched by their owner
        // until the kernel hands them back (see the backends).
        unsafe { std::slice::from_raw_parts_mut(self.ptr(f), FRAME_SIZE) }
    }

    /// Up to `N` different frames at once (the SRTP tags of a batch of packets
    /// are computed together). An id out of range, or one repeated, gives `None`
    /// in its place.
    pub fn frames_mut<const N: usize>(
        &mut self,
        ids: [Option<FrameId>; N],
    ) -> [Option<&mut [u8]>; N] {
        core::array::from_fn(|i| {
            let f =
                ids[i].filter(|&f| (f as usize) < self.frames && !ids[..i].contains(&Some(f)))?;
            // SAFETY: in range and different from every other id handed out here
            // (earlier repeats are refused above), so the slices do not overlap;
            // they borrow `self` mutably, as in `frame_mut`.
            Some(unsafe { std::slice::from_raw_parts_mut(self.ptr(f), FRAME_SIZE) })
        })
    }

    /// The whole frame, read-only.
    #[inline]
    pub fn frame(&self, f: FrameId) -> &[u8] {
        assert!((f as usize) < self.frames, "frame id out of range");
        // SAFETY: as in `frame_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.ptr(f), FRAME_SIZE) }
    }

    /// Raw pointer to the start of a frame, for the I/O backends.
    #[inline]
    pub fn ptr(&self, f: FrameId) -> *mut u8 {
        debug_assert!((f as usize) < self.frames);
        // SAFETY: in range of the allocation.
        unsafe { self.base.as_ptr().add(f as usize * FRAME_SIZE) }
    }
}

impl Drop for FramePool {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_every_frame_once_and_counts_exhaustion() {
        let mut p = FramePool::new(4);
        let got: Vec<_> = (0..4).map(|_| p.alloc().unwrap()).collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        assert_eq!(p.alloc(), None);
        assert_eq!(p.exhausted(), 1);
        p.frame_mut(got[2])[HEADROOM] = 7;
        assert_eq!(p.frame(got[2])[HEADROOM], 7);
        p.free(got[2]);
        assert_eq!(p.alloc(), Some(got[2]));
    }

    #[test]
    fn several_frames_at_once_never_alias() {
        let mut p = FramePool::new(4);
        let [a, b, c, d] = p.frames_mut([Some(2), Some(0), Some(2), Some(9)]);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(c.is_none(), "a repeated id is refused");
        assert!(d.is_none(), "an id out of range is refused");
        a[0] = 1;
        b[0] = 2;
        assert_eq!((p.frame(2)[0], p.frame(0)[0]), (1, 2));
    }

    /// A frame freed twice, or an id out of range, is refused: the pool never
    /// hands one frame to two owners. (Debug builds stop at the caller's bug;
    /// release builds count it.)
    #[test]
    fn a_frame_freed_twice_is_refused_not_handed_out_twice() {
        let mut p = FramePool::new(2);
        let f = p.alloc().unwrap();
        p.free(f);
        for bad in [f, 7] {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.free(bad)));
            assert_eq!(r.is_err(), cfg!(debug_assertions));
        }
        assert_eq!(p.bad_frees(), if cfg!(debug_assertions) { 0 } else { 2 });
        let (a, b) = (p.alloc().unwrap(), p.alloc().unwrap());
        assert_ne!(a, b);
        assert_eq!(p.alloc(), None);
    }
}
