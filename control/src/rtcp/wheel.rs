//! A hashed timer wheel: O(1) insert and cancel, and expiry that costs O(1) per
//! due entry plus one slot visit per elapsed tick.
//!
//! Entries live in a slab and are linked into the slot of their deadline tick
//! (`tick % slots`); an entry more than one revolution away stays in its slot and
//! is skipped (its round is checked) until its revolution comes. With 10 ms ticks
//! and 4096 slots a revolution is about 41 s, longer than any RTCP interval of a
//! point-to-point session, so nearly every visit of an entry is its expiry.

use core::time::Duration;

const NIL: u32 = u32::MAX;

/// A handle to a scheduled entry. Stale handles (of expired or cancelled
/// entries, even when the slab slot was reused) are recognised by a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    idx: u32,
    gen: u32,
}

#[derive(Debug)]
struct Node<T> {
    deadline: u64,
    prev: u32,
    next: u32,
    gen: u32,
    value: Option<T>,
}

/// The wheel, holding values of type `T` (e.g. a leg key).
#[derive(Debug)]
pub struct TimerWheel<T> {
    tick_ns: u64,
    heads: Vec<u32>,
    nodes: Vec<Node<T>>,
    free: Vec<u32>,
    /// Last tick processed; entries due at or before it have fired.
    current: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel of `slots` slots of `tick` each, starting at time zero.
    pub fn new(tick: Duration, slots: usize) -> Self {
        let slots = slots.clamp(1, 1 << 20);
        TimerWheel {
            tick_ns: (tick.as_nanos() as u64).max(1),
            heads: vec![NIL; slots],
            nodes: Vec::new(),
            free: Vec::new(),
            current: 0,
            len: 0,
        }
    }

    /// Entries scheduled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tick_of(&self, at: Duration) -> u64 {
        // Round up: an entry never fires before its time.
        let ns = at.as_nanos().min(u128::from(u64::MAX)) as u64;
        ns.div_ceil(self.tick_ns)
    }

    /// Schedules `value` at `at`; an `at` already past fires at the next advance.
    pub fn insert(&mut self, at: Duration, value: T) -> TimerId {
        let deadline = self.tick_of(at).max(self.current + 1);
        let idx = match self.free.pop() {
            Some(i) => {
                let n = &mut self.nodes[i as usize];
                n.gen = n.gen.wrapping_add(1);
                n.deadline = deadline;
                n.value = Some(value);
                i
            }
            None => {
                self.nodes.push(Node {
                    deadline,
                    prev: NIL,
                    next: NIL,
                    gen: 0,
                    value: Some(value),
                });
                (self.nodes.len() - 1) as u32
            }
        };
        self.link(idx);
        self.len += 1;
        TimerId {
            idx,
            gen: self.nodes[idx as usize].gen,
        }
    }

    fn slot(&self, deadline: u64) -> usize {
        (deadline % self.heads.len() as u64) as usize
    }

    fn link(&mut self, idx: u32) {
        let slot = self.slot(self.nodes[idx as usize].deadline);
        let head = self.heads[slot];
        {
            let n = &mut self.nodes[idx as usize];
            n.prev = NIL;
            n.next = head;
        }
        if head != NIL {
            self.nodes[head as usize].prev = idx;
        }
        self.heads[slot] = idx;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, deadline) = {
            let n = &self.nodes[idx as usize];
            (n.prev, n.next, n.deadline)
        };
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            let slot = self.slot(deadline);
            self.heads[slot] = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn release(&mut self, idx: u32) -> Option<T> {
        self.unlink(idx);
        self.free.push(idx);
        self.len -= 1;
        self.nodes[idx as usize].value.take()
    }

    /// Cancels an entry; returns its value if it was still scheduled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let n = self.nodes.get(id.idx as usize)?;
        if n.gen != id.gen || n.value.is_none() {
            return None;
        }
        self.release(id.idx)
    }

    /// Whether `id` is still scheduled.
    pub fn contains(&self, id: TimerId) -> bool {
        self.nodes
            .get(id.idx as usize)
            .is_some_and(|n| n.gen == id.gen && n.value.is_some())
    }

    /// Advances to `now` and appends every value due at or before it to `out`
    /// (in deadline-tick order; within a tick, any order).
    pub fn advance(&mut self, now: Duration, out: &mut Vec<T>) {
        let target = now.as_nanos().min(u128::from(u64::MAX)) as u64 / self.tick_ns;
        if target <= self.current {
            return;
        }
        let slots = self.heads.len() as u64;
        // After a long pause, one visit of every slot covers all elapsed ticks.
        let first = if target - self.current > slots {
            target - slots + 1
        } else {
            self.current + 1
        };
        for tick in first..=target {
            let slot = self.slot(tick);
            let mut at = self.heads[slot];
            while at != NIL {
                let next = self.nodes[at as usize].next;
                if self.nodes[at as usize].deadline <= target {
                    if let Some(v) = self.release(at) {
                        out.push(v);
                    }
                }
                at = next;
            }
        }
        self.current = target;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn fires_in_order_and_not_early() {
        let mut w = TimerWheel::new(ms(10), 16);
        w.insert(ms(25), 'b');
        w.insert(ms(5), 'a');
        w.insert(ms(500), 'c'); // several revolutions away
        let mut out = Vec::new();
        w.advance(ms(20), &mut out);
        assert_eq!(out, vec!['a']);
        w.advance(ms(29), &mut out);
        assert_eq!(out, vec!['a']);
        w.advance(ms(30), &mut out);
        assert_eq!(out, vec!['a', 'b']);
        w.advance(ms(490), &mut out);
        assert_eq!(out.len(), 2);
        w.advance(ms(10_000), &mut out);
        assert_eq!(out, vec!['a', 'b', 'c']);
        assert!(w.is_empty());
    }

    #[test]
    fn cancel_and_stale_ids() {
        let mut w = TimerWheel::new(ms(10), 8);
        let a = w.insert(ms(50), 1);
        let b = w.insert(ms(50), 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        let c = w.insert(ms(60), 3); // reuses a's node
        assert_eq!(w.cancel(a), None, "stale id must not cancel the new entry");
        assert!(w.contains(c) && w.contains(b));
        let mut out = Vec::new();
        w.advance(ms(100), &mut out);
        out.sort_unstable();
        assert_eq!(out, vec![2, 3]);
        assert_eq!(w.cancel(b), None);
    }

    #[test]
    fn past_deadline_fires_next_advance() {
        let mut w = TimerWheel::new(ms(10), 8);
        let mut out = Vec::new();
        w.advance(ms(100), &mut out);
        w.insert(ms(30), 7);
        w.advance(ms(105), &mut out);
        assert!(out.is_empty());
        w.advance(ms(110), &mut out);
        assert_eq!(out, vec![7]);
    }
}
