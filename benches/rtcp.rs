//! RTCP parse and write costs for a typical compound: SR with two report blocks,
//! SDES CNAME, REMB and a generic NACK (four packets, 136 bytes).
//!
//! Run: `cargo bench -p rtp-core --bench rtcp`. Criterion prints the time per
//! iteration, which is one compound datagram.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rtp_core::rtcp::*;

const BLOCKS: [ReportBlock; 2] = [
    ReportBlock {
        ssrc: 0xaabb_ccdd,
        fraction_lost: 3,
        cumulative_lost: 120,
        ext_highest_seq: 0x0001_2345,
        jitter: 40,
        lsr: 0x1234_5678,
        dlsr: 0x0000_8000,
    },
    ReportBlock {
        ssrc: 0x0102_0304,
        fraction_lost: 0,
        cumulative_lost: 0,
        ext_highest_seq: 77,
        jitter: 2,
        lsr: 0,
        dlsr: 0,
    },
];

fn write(buf: &mut [u8]) -> usize {
    let items: [(u8, &[u8]); 1] = [(sdes_item::CNAME, b"4f3c2a1b@rtp-core")];
    let chunks = [(0x1111_1111u32, &items[..])];
    let nack = [NackPair {
        pid: 500,
        blp: 0x0202,
    }];
    let mut b = CompoundBuilder::new(buf);
    b.push(&SrRepr {
        ssrc: 0x1111_1111,
        ntp_time: 0xe9a0_0000_4000_0000,
        rtp_timestamp: 160_000,
        packet_count: 1000,
        octet_count: 160_000,
        reports: &BLOCKS,
    })
    .and_then(|b| b.push(&SdesRepr { chunks: &chunks }))
    .and_then(|b| {
        b.push(&RembRepr {
            sender_ssrc: 0x1111_1111,
            bitrate: 2_500_000,
            ssrcs: &[0xaabb_ccdd],
        })
    })
    .and_then(|b| {
        b.push(&NackRepr {
            sender_ssrc: 0x1111_1111,
            media_ssrc: 0xaabb_ccdd,
            pairs: &nack,
        })
    })
    .expect("compound");
    b.len()
}

fn parse(d: &[u8]) -> u64 {
    let mut acc = 0u64;
    for p in Compound::new(d) {
        match p {
            Ok(RtcpPacket::Sr(sr)) => {
                acc += u64::from(sr.ssrc());
                for rb in sr.report_blocks() {
                    acc += u64::from(rb.jitter) + rb.cumulative_lost as u64;
                }
            }
            Ok(RtcpPacket::Sdes(s)) => {
                for c in s.chunks() {
                    acc += c.find(sdes_item::CNAME).map_or(0, |v| v.len() as u64);
                }
            }
            Ok(RtcpPacket::Remb(r)) => acc += r.bitrate,
            Ok(RtcpPacket::Nack(n)) => acc += n.lost().map(u64::from).sum::<u64>(),
            Ok(_) => acc += 1,
            Err(_) => acc += 1000,
        }
    }
    acc
}

fn benches(c: &mut Criterion) {
    let mut buf = [0u8; 1500];
    let n = write(&mut buf);
    let datagram = buf[..n].to_vec();
    let mut g = c.benchmark_group("rtcp_compound");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_sr2_sdes_remb_nack", |b| {
        b.iter(|| parse(black_box(&datagram)))
    });
    g.bench_function("write_sr2_sdes_remb_nack", |b| {
        b.iter(|| write(black_box(&mut buf)))
    });
    g.finish();
}

criterion_group!(rtcp, benches);
criterion_main!(rtcp);
