//! Session slots in fixed-size chunks.
//!
//! A `Vec` of slots doubles as it grows: at 100,000 sessions it holds 131,072
//! slots, a third of them empty, and copies every session on each doubling. Chunks
//! of [`CHUNK`] slots never move once allocated and waste at most one chunk's
//! tail; a slot is found with one shift and one mask, through a table of chunk
//! pointers small enough to stay in cache.

use std::ops::{Index, IndexMut};

/// Slots per chunk.
pub(crate) const CHUNK: usize = 64;

pub(crate) struct Slab<T> {
    chunks: Vec<Box<[Option<T>]>>,
    len: usize,
}

impl<T> Slab<T> {
    pub(crate) fn new() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }

    /// Number of slots (used or not).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds an empty slot at the end and returns its index.
    pub(crate) fn push_empty(&mut self) -> usize {
        if self.len == self.chunks.len() * CHUNK {
            self.chunks
                .push(std::iter::repeat_with(|| None).take(CHUNK).collect());
        }
        self.len += 1;
        self.len - 1
    }

    pub(crate) fn get(&self, i: usize) -> Option<&Option<T>> {
        (i < self.len).then(|| &self.chunks[i / CHUNK][i % CHUNK])
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut Option<T>> {
        (i < self.len).then(|| &mut self.chunks[i / CHUNK][i % CHUNK])
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = Option<T>;
    fn index(&self, i: usize) -> &Option<T> {
        self.get(i).expect("slot index in range")
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    fn index_mut(&mut self, i: usize) -> &mut Option<T> {
        self.get_mut(i).expect("slot index in range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_across_chunks_keep_their_values() {
        let mut s: Slab<u32> = Slab::new();
        for i in 0..(3 * CHUNK + 5) {
            assert_eq!(s.push_empty(), i);
            s[i] = Some(i as u32 * 2);
        }
        assert_eq!(s.len(), 3 * CHUNK + 5);
        assert_eq!(s.chunks.len(), 4);
        for i in 0..s.len() {
            assert_eq!(s[i], Some(i as u32 * 2));
        }
        s[CHUNK].take();
        assert_eq!(s.get(CHUNK), Some(&None));
        assert_eq!(s.get(s.len()), None);
        assert_eq!(s.get_mut(s.len()), None);
        assert_eq!(
            (0..s.len()).filter(|&i| s[i].is_some()).count(),
            3 * CHUNK + 4
        );
    }
}
