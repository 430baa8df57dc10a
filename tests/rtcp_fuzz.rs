//! Fuzz-style test for the RTCP parsers: random bytes and mutations of valid packets
//! go through the compound iterator, every typed view and every accessor. Nothing may
//! panic; the run is seeded and bounded so CI can run it in seconds.

use rand::{rngs::StdRng, Rng, SeedableRng};
use rtp_core::rtcp::*;

/// Touches every accessor and iterator of a packet.
fn walk(p: &RtcpPacket<'_>) -> usize {
    let mut n = 0usize;
    match p {
        RtcpPacket::Sr(sr) => {
            n += sr.report_blocks().count() + sr.extension().len();
            n += (sr.ssrc() ^ sr.packet_count() ^ sr.octet_count() ^ sr.rtp_timestamp()) as usize
                & 1;
            n += sr.ntp_time() as usize & 1;
        }
        RtcpPacket::Rr(rr) => n += rr.report_blocks().count() + rr.extension().len(),
        RtcpPacket::Sdes(s) => {
            for c in s.chunks() {
                for i in c.items() {
                    n += i.value.len() + i.priv_parts().map_or(0, |(a, b)| a.len() + b.len());
                }
            }
        }
        RtcpPacket::Bye(b) => n += b.ssrcs().count() + b.reason().map_or(0, <[u8]>::len),
        RtcpPacket::App(a) => n += a.data.len(),
        RtcpPacket::Xr(x) => {
            for b in x.blocks() {
                n += b.dlrr_items().count() + usize::from(b.block_type());
            }
        }
        RtcpPacket::Nack(k) => n += k.lost().count(),
        RtcpPacket::Twcc(t) => n += t.packets().count(),
        RtcpPacket::Ccfb(c) => {
            for s in c.streams() {
                n += s.metrics().count();
            }
        }
        RtcpPacket::Fir(f) => n += f.entries().count(),
        RtcpPacket::Remb(r) => n += r.ssrcs().count(),
        RtcpPacket::Pli(_) | RtcpPacket::OtherFb { .. } | RtcpPacket::Unknown { .. } => n += 1,
    }
    n
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    let blocks = [ReportBlock::default(); 2];
    let items: [(u8, &[u8]); 2] = [(1, b"cname"), (8, b"\x02abxyz")];
    let chunks = [(1u32, &items[..])];
    let st = [
        TwccStatus::Small(1),
        TwccStatus::NotReceived,
        TwccStatus::Large(-2),
    ];
    let dlrr = [0u8; 12];
    let xr = [
        XrBlock::Rrt { ntp_time: 1 },
        XrBlock::Dlrr { items: &dlrr },
        XrBlock::StatsSummary(StatsSummary::default()),
        XrBlock::VoipMetrics(VoipMetrics::default()),
        XrBlock::LossRle {
            thinning: 0,
            ssrc: 1,
            begin_seq: 0,
            end_seq: 1,
            chunks: &[0, 1, 0, 0],
        },
    ];
    let m = [CcfbMetric::default(); 3];
    let cb = [CcfbReprBlock {
        ssrc: 1,
        begin_seq: 0,
        metrics: &m,
    }];
    let writers: Vec<Box<dyn RtcpWrite>> = vec![
        Box::new(SrRepr {
            reports: &blocks,
            ..Default::default()
        }),
        Box::new(RrRepr {
            ssrc: 1,
            reports: &blocks,
        }),
        Box::new(SdesRepr { chunks: &chunks }),
        Box::new(ByeRepr {
            ssrcs: &[1, 2],
            reason: Some(b"bye"),
        }),
        Box::new(App {
            subtype: 1,
            ssrc: 1,
            name: *b"abcd",
            data: &[1, 2, 3, 4],
        }),
        Box::new(NackRepr {
            sender_ssrc: 1,
            media_ssrc: 2,
            pairs: &[NackPair { pid: 1, blp: 3 }],
        }),
        Box::new(TwccRepr {
            sender_ssrc: 1,
            media_ssrc: 2,
            base_seq: 0,
            reference_time: 0,
            fb_pkt_count: 0,
            statuses: &st,
        }),
        Box::new(XrRepr {
            ssrc: 1,
            blocks: &xr,
        }),
        Box::new(CcfbRepr {
            sender_ssrc: 1,
            blocks: &cb,
            report_timestamp: 0,
        }),
        Box::new(Pli {
            sender_ssrc: 1,
            media_ssrc: 2,
        }),
        Box::new(FirRepr {
            sender_ssrc: 1,
            entries: &[FirEntry { ssrc: 1, seq: 1 }],
        }),
        Box::new(RembRepr {
            sender_ssrc: 1,
            bitrate: 1 << 40,
            ssrcs: &[1],
        }),
    ];
    for w in &writers {
        let n = w.emit(&mut buf).unwrap();
        out.push(buf[..n].to_vec());
    }
    // And one compound of all of them.
    let all: Vec<u8> = out.concat();
    out.push(all);
    out
}

#[test]
fn no_panic_on_random_or_mutated_input() {
    let mut rng = StdRng::seed_from_u64(0x05ee_d7c9);
    let seeds = seeds();
    let mut parsed_ok = 0usize;
    let mut errors = 0usize;
    for round in 0..60_000 {
        let input: Vec<u8> = if round % 3 == 0 {
            let len = rng.gen_range(0..96);
            (0..len).map(|_| rng.gen()).collect()
        } else {
            let mut v = seeds[rng.gen_range(0..seeds.len())].clone();
            for _ in 0..rng.gen_range(1..5) {
                match rng.gen_range(0..4) {
                    0 if !v.is_empty() => {
                        let i = rng.gen_range(0..v.len());
                        v[i] = rng.gen();
                    }
                    1 if !v.is_empty() => {
                        let i = rng.gen_range(0..v.len());
                        v[i] ^= 1 << rng.gen_range(0..8);
                    }
                    2 => {
                        let cut = rng.gen_range(0..=v.len());
                        v.truncate(cut);
                    }
                    _ => v.push(rng.gen()),
                }
            }
            v
        };
        let _ = validate_compound(&input, round % 2 == 0);
        let _ = RtcpHeader::parse(&input);
        for r in Compound::new(&input).take(64) {
            match r {
                Ok(p) => {
                    parsed_ok += 1;
                    std::hint::black_box(walk(&p));
                }
                Err(_) => errors += 1,
            }
        }
    }
    // The corpus must actually reach both the typed views and the error paths.
    assert!(parsed_ok > 10_000, "only {parsed_ok} packets parsed");
    assert!(errors > 10_000, "only {errors} errors seen");
}
