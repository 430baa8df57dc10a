//! Handshake reassembly: fragments in any order, with overlap and duplicates,
//! bounded per message and in total.

use std::collections::BTreeMap;

use super::messages::Fragment;

/// How far ahead of the next expected message we buffer.
const MAX_AHEAD: u16 = 16;
/// The most disjoint byte ranges one message may be in (tiny-fragment floods).
const MAX_RANGES: usize = 64;

#[derive(Debug)]
struct Partial {
    msg_type: u8,
    epoch: u16,
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(usize, usize)>,
}

impl Partial {
    fn complete(&self) -> bool {
        (self.have.len() == 1 && self.have[0] == (0, self.data.len())) || self.data.is_empty()
    }

    fn add(&mut self, off: usize, body: &[u8]) {
        let end = off + body.len();
        self.data[off..end].copy_from_slice(body);
        self.have.push((off, end));
        self.have.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(self.have.len());
        for &(s, e) in &self.have {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        self.have = merged;
    }
}

/// A complete message, ready to process.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) msg_type: u8,
    pub(crate) seq: u16,
    pub(crate) epoch: u16,
    pub(crate) body: Vec<u8>,
}

/// What [`Reassembler::push`] did with a fragment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PushResult {
    /// Stored (or a harmless duplicate of buffered data).
    Buffered,
    /// From a message already processed (the peer retransmits).
    Old,
    /// Dropped: over a limit or inconsistent with earlier fragments.
    Dropped,
}

/// Reassembles the peer's handshake messages in message_seq order.
#[derive(Debug)]
pub(crate) struct Reassembler {
    next_seq: u16,
    partial: BTreeMap<u16, Partial>,
    buffered: usize,
    max_message: usize,
    max_buffered: usize,
}

impl Reassembler {
    pub(crate) fn new(max_message: usize, max_buffered: usize) -> Self {
        Reassembler {
            next_seq: 0,
            partial: BTreeMap::new(),
            buffered: 0,
            max_message,
            max_buffered,
        }
    }

    /// Bytes reserved for buffered messages.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// The message_seq of the next message to deliver.
    pub(crate) fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Skips to `seq` (after a HelloVerifyRequest, or the first ClientHello of a
    /// stateless server), dropping everything buffered.
    pub(crate) fn reset_to(&mut self, seq: u16) {
        self.next_seq = seq;
        self.clear();
    }

    pub(crate) fn clear(&mut self) {
        self.partial.clear();
        self.buffered = 0;
    }

    pub(crate) fn push(&mut self, f: &Fragment<'_>, epoch: u16) -> PushResult {
        if f.message_seq < self.next_seq {
            return PushResult::Old;
        }
        if f.message_seq - self.next_seq > MAX_AHEAD || f.length > self.max_message {
            return PushResult::Dropped;
        }
        let p = match self.partial.get_mut(&f.message_seq) {
            Some(p) => p,
            None => {
                if self.buffered + f.length > self.max_buffered {
                    return PushResult::Dropped;
                }
                self.buffered += f.length;
                self.partial.entry(f.message_seq).or_insert(Partial {
                    msg_type: f.msg_type,
                    epoch,
                    data: vec![0; f.length],
                    have: Vec::new(),
                })
            }
        };
        if p.msg_type != f.msg_type || p.data.len() != f.length || p.epoch != epoch {
            return PushResult::Dropped;
        }
        p.add(f.offset, f.body);
        if p.have.len() > MAX_RANGES {
            // Too scattered: forget it; the peer's retransmission starts afresh.
            self.partial.remove(&f.message_seq);
            self.buffered -= f.length;
            return PushResult::Dropped;
        }
        PushResult::Buffered
    }

    /// The next complete message in order, if any.
    pub(crate) fn pop(&mut self) -> Option<Message> {
        let complete = self.partial.get(&self.next_seq)?.complete();
        if !complete {
            return None;
        }
        let p = self.partial.remove(&self.next_seq)?;
        self.buffered -= p.data.len();
        let m = Message {
            msg_type: p.msg_type,
            seq: self.next_seq,
            epoch: p.epoch,
            body: p.data,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(seq: u16, len: usize, off: usize, body: &[u8]) -> Fragment<'_> {
        Fragment {
            msg_type: 11,
            length: len,
            message_seq: seq,
            offset: off,
            body,
        }
    }

    #[test]
    fn out_of_order_overlapping() {
        let msg: Vec<u8> = (0..100u8).collect();
        let mut r = Reassembler::new(1000, 2000);
        assert_eq!(r.push(&frag(1, 10, 0, &[0; 10]), 0), PushResult::Buffered);
        assert_eq!(
            r.push(&frag(0, 100, 60, &msg[60..]), 0),
            PushResult::Buffered
        );
        assert!(r.pop().is_none());
        assert_eq!(
            r.push(&frag(0, 100, 10, &msg[10..70]), 0),
            PushResult::Buffered
        );
        assert_eq!(
            r.push(&frag(0, 100, 10, &msg[10..70]), 0),
            PushResult::Buffered
        );
        assert!(r.pop().is_none());
        r.push(&frag(0, 100, 0, &msg[..15]), 0);
        let m = r.pop().unwrap();
        assert_eq!(m.body, msg);
        assert_eq!(r.pop().unwrap().seq, 1);
        assert_eq!(r.push(&frag(0, 100, 0, &msg[..15]), 0), PushResult::Old);
        // Inconsistent length for a buffered message.
        r.push(&frag(5, 10, 0, &[0; 5]), 0);
        assert_eq!(r.push(&frag(5, 11, 0, &[0; 5]), 0), PushResult::Dropped);
        // Limits.
        assert_eq!(r.push(&frag(6, 1001, 0, &[]), 0), PushResult::Dropped);
        let before = r.buffered();
        let mut last = PushResult::Buffered;
        for i in 0..100 {
            last = r.push(&frag(7, 1000, i * 3, &[1]), 0);
            if last == PushResult::Dropped {
                break;
            }
        }
        assert_eq!(last, PushResult::Dropped, "scattered fragments are dropped");
        assert_eq!(r.buffered(), before);
        assert_eq!(r.push(&frag(100, 10, 0, &[]), 0), PushResult::Dropped);
    }
}
