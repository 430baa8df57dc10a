//! Outgoing flights (RFC 6347 4.2.4): the messages kept for retransmission, the
//! record writer (epochs, sequence numbers, protection), and the packing of
//! handshake fragments into datagrams that fit the MTU.

use super::crypto::RecordCipher;
use super::messages::{put_hs_header, HS_HEADER_LEN};
use super::record::{write_record, CT_CHANGE_CIPHER_SPEC, CT_HANDSHAKE, DTLS12, HEADER_LEN};

/// One message of a flight, kept for retransmission.
#[derive(Debug, Clone)]
pub(crate) enum OutMsg {
    Handshake {
        msg_type: u8,
        seq: u16,
        epoch: u16,
        body: Vec<u8>,
    },
    ChangeCipherSpec,
}

/// The write side of the record layer.
#[derive(Debug, Default)]
pub(crate) struct RecordWriter {
    /// The epoch of new records (alerts, application data): 1 once we sent our
    /// ChangeCipherSpec.
    pub(crate) epoch: u16,
    /// Next sequence number per epoch (a retransmitted flight still writes
    /// epoch-0 records after the switch).
    seq: [u64; 2],
    /// Epoch-1 protection, installed when the keys are derived.
    pub(crate) cipher: Option<RecordCipher>,
}

impl RecordWriter {
    /// Continues epoch 0 at `seq` if that is ahead (a stateless server answers
    /// with the ClientHello's record sequence number, RFC 6347 4.2.1).
    pub(crate) fn skip_epoch0_to(&mut self, seq: u64) {
        self.seq[0] = self.seq[0].max(seq);
    }

    /// Bytes protection adds to a record of `epoch`.
    pub(crate) fn overhead(&self, epoch: u16) -> usize {
        match (epoch, &self.cipher) {
            (0, _) | (_, None) => 0,
            (_, Some(c)) => c.overhead(),
        }
    }

    /// The epoch for an alert: the current one if its keys exist.
    pub(crate) fn alert_epoch(&self) -> u16 {
        if self.cipher.is_some() {
            self.epoch
        } else {
            0
        }
    }

    /// Appends one record in `epoch` (protected in epoch 1).
    pub(crate) fn push(&mut self, out: &mut Vec<u8>, ct: u8, epoch: u16, plain: &[u8]) {
        let e = usize::from(epoch.min(1));
        let seq = self.seq[e];
        self.seq[e] += 1;
        let es = (u64::from(epoch) << 48) | seq;
        match (epoch, &self.cipher) {
            (0, _) => write_record(out, ct, DTLS12, 0, seq, plain),
            (_, Some(c)) => {
                let body = c.seal(es, ct, plain);
                write_record(out, ct, DTLS12, epoch, seq, &body);
            }
            // Epoch 1 without keys cannot happen: keys are installed before any
            // epoch-1 message is queued.
            (_, None) => {}
        }
    }

    /// Writes a flight with fresh record sequence numbers: messages fragmented
    /// to fit `mtu`, records packed into as few datagrams as fit.
    pub(crate) fn write_flight(&mut self, flight: &[OutMsg], mtu: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut dgram: Vec<u8> = Vec::with_capacity(mtu);
        for m in flight {
            match m {
                OutMsg::ChangeCipherSpec => {
                    if !dgram.is_empty() && dgram.len() + HEADER_LEN + 1 > mtu {
                        out.push(std::mem::take(&mut dgram));
                    }
                    self.push(&mut dgram, CT_CHANGE_CIPHER_SPEC, 0, &[1]);
                }
                OutMsg::Handshake {
                    msg_type,
                    seq,
                    epoch,
                    body,
                } => {
                    let per_record = HEADER_LEN + HS_HEADER_LEN + self.overhead(*epoch);
                    let mut off = 0;
                    loop {
                        let mut room = mtu.saturating_sub(dgram.len() + per_record);
                        if !dgram.is_empty()
                            && (room == 0 || (room < body.len() - off && room < 32))
                        {
                            // Too little space left: start a new datagram.
                            out.push(std::mem::take(&mut dgram));
                            room = mtu.saturating_sub(per_record);
                        }
                        // The MTU floor leaves room for at least one byte per record.
                        let n = room.max(1).min(body.len() - off);
                        let mut plain = Vec::with_capacity(HS_HEADER_LEN + n);
                        put_hs_header(&mut plain, *msg_type, body.len(), *seq, off, n);
                        plain.extend_from_slice(&body[off..off + n]);
                        self.push(&mut dgram, CT_HANDSHAKE, *epoch, &plain);
                        off += n;
                        if off >= body.len() {
                            break;
                        }
                    }
                }
            }
        }
        if !dgram.is_empty() {
            out.push(dgram);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::record::parse_records;

    #[test]
    fn fragments_fit_and_pack() {
        let mut w = RecordWriter::default();
        let flight = vec![
            OutMsg::Handshake {
                msg_type: 2,
                seq: 0,
                epoch: 0,
                body: vec![1; 70],
            },
            OutMsg::Handshake {
                msg_type: 11,
                seq: 1,
                epoch: 0,
                body: vec![2; 500],
            },
            OutMsg::Handshake {
                msg_type: 14,
                seq: 2,
                epoch: 0,
                body: vec![],
            },
        ];
        let d = w.write_flight(&flight, 200);
        assert!(d.iter().all(|x| x.len() <= 200));
        let records: usize = d.iter().map(|x| parse_records(x).0.len()).sum();
        // 70 + 500 bytes at <= 175 per record, plus the empty ServerHelloDone.
        assert!(records >= 5);
        // Sequence numbers continue on retransmission.
        let again = w.write_flight(&flight, 1200);
        assert_eq!(again.len(), 1, "everything fits one datagram at MTU 1200");
        assert_eq!(parse_records(&again[0]).0[0].seq, records as u64);
    }
}
