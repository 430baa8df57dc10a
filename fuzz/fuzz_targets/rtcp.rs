//! Fuzz target: the RTCP compound iterator and every typed view must accept or
//! reject arbitrary bytes without panicking, and strict validation must agree with
//! the iterator about where packets end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_core::rtcp::{validate_compound, Compound, RtcpPacket};
use std::hint::black_box;

fuzz_target!(|data: &[u8]| {
    let _ = validate_compound(data, true);
    for p in Compound::new(data).flatten() {
        match p {
            RtcpPacket::Sr(sr) => {
                black_box(sr.report_blocks().count());
            }
            RtcpPacket::Rr(rr) => {
                black_box(rr.report_blocks().count());
            }
            RtcpPacket::Sdes(s) => s.chunks().for_each(|c| {
                black_box(c.items().count());
            }),
            RtcpPacket::Bye(b) => {
                black_box((b.ssrcs().count(), b.reason()));
            }
            RtcpPacket::Xr(x) => x.blocks().for_each(|b| {
                black_box(b.dlrr_items().count());
            }),
            RtcpPacket::Nack(n) => {
                black_box(n.lost().count());
            }
            RtcpPacket::Twcc(t) => {
                black_box(t.packets().count());
            }
            RtcpPacket::Ccfb(c) => c.streams().for_each(|s| {
                black_box(s.metrics().count());
            }),
            RtcpPacket::Fir(f) => {
                black_box(f.entries().count());
            }
            RtcpPacket::Remb(r) => {
                black_box(r.ssrcs().count());
            }
            _ => {}
        }
    }
});
