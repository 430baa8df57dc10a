use super::*;

fn one(buf: &[u8]) -> RtcpPacket<'_> {
    let mut it = Compound::new(buf);
    let p = it.next().expect("a packet").expect("valid");
    assert!(it.next().is_none());
    p
}

#[test]
fn rr_hand_bytes() {
    // V=2 P=0 RC=1, PT=201, length 7 words (32 bytes), SSRC 0x11223344, one block:
    // ssrc 0xaabbccdd, fraction 0x40 (25%), cumulative lost -2 (0xfffffe),
    // ext seq 0x0001_0005, jitter 17, LSR 0x01020304, DLSR 0x00010000 (1 s).
    let bytes = [
        0x81, 201, 0, 7, 0x11, 0x22, 0x33, 0x44, 0xaa, 0xbb, 0xcc, 0xdd, 0x40, 0xff, 0xff, 0xfe, 0,
        1, 0, 5, 0, 0, 0, 17, 1, 2, 3, 4, 0, 1, 0, 0,
    ];
    let RtcpPacket::Rr(rr) = one(&bytes) else {
        panic!("not an RR")
    };
    assert_eq!(rr.ssrc(), 0x1122_3344);
    let b: Vec<_> = rr.report_blocks().collect();
    assert_eq!(
        b,
        vec![ReportBlock {
            ssrc: 0xaabb_ccdd,
            fraction_lost: 0x40,
            cumulative_lost: -2,
            ext_highest_seq: 0x0001_0005,
            jitter: 17,
            lsr: 0x0102_0304,
            dlsr: 0x0001_0000,
        }]
    );
    let mut out = [0u8; 64];
    let n = RrRepr {
        ssrc: 0x1122_3344,
        reports: &b,
    }
    .emit(&mut out)
    .unwrap();
    assert_eq!(&out[..n], &bytes[..]);
}

#[test]
fn cumulative_lost_clamps_to_24_bits() {
    let mut out = [0u8; 64];
    let blocks = [ReportBlock {
        cumulative_lost: 10_000_000,
        ..Default::default()
    }];
    let n = RrRepr {
        ssrc: 1,
        reports: &blocks,
    }
    .emit(&mut out)
    .unwrap();
    assert_eq!(&out[13..16], &[0x7f, 0xff, 0xff]);
    let RtcpPacket::Rr(rr) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(
        rr.report_blocks().next().unwrap().cumulative_lost,
        0x7f_ffff
    );
}

#[test]
fn sdes_cname_layout() {
    // One chunk, SSRC 1, CNAME "ab": items 01 02 'a' 'b' fill a word exactly, so the
    // END byte needs a word of its own (END + 3 zeros): 4 + 4 + 4 + 4 = 16 bytes,
    // length field 3.
    let mut out = [0u8; 64];
    let items: [(u8, &[u8]); 1] = [(sdes::item::CNAME, b"ab")];
    let chunks = [(1u32, &items[..])];
    let n = SdesRepr { chunks: &chunks }.emit(&mut out).unwrap();
    assert_eq!(n, 16);
    assert_eq!(
        &out[..n],
        &[0x81, 202, 0, 3, 0, 0, 0, 1, 1, 2, b'a', b'b', 0, 0, 0, 0]
    );
    let RtcpPacket::Sdes(s) = one(&out[..n]) else {
        panic!()
    };
    let c = s.chunks().next().unwrap();
    assert_eq!((c.ssrc, c.find(sdes::item::CNAME)), (1, Some(&b"ab"[..])));
}

#[test]
fn sdes_item_overrun_is_error() {
    // CNAME claims 9 bytes but the chunk has 2.
    let bytes = [0x81, 202, 0, 2, 0, 0, 0, 1, 1, 9, b'a', b'b'];
    assert_eq!(Compound::new(&bytes).next(), Some(Err(RtcpError::BadItem)));
}

#[test]
fn bye_with_reason_pads() {
    let mut out = [0u8; 64];
    let n = ByeRepr {
        ssrcs: &[7],
        reason: Some(b"done"),
    }
    .emit(&mut out)
    .unwrap();
    // header 4 + ssrc 4 + len byte + "done" = 13, padded with zeros to 16.
    assert_eq!(
        &out[..n],
        &[0x81, 203, 0, 3, 0, 0, 0, 7, 4, b'd', b'o', b'n', b'e', 0, 0, 0]
    );
    let RtcpPacket::Bye(b) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![7]);
    assert_eq!(b.reason(), Some(&b"done"[..]));
}

#[test]
fn nack_pack_and_expand() {
    // 100 lost, and 101, 103, 116 within the bitmask (bits 0, 2, 15); 117 is 17 past
    // 100 so it starts a new entry.
    let mut pairs = [NackPair::default(); 4];
    let n = NackPair::pack(&[100, 101, 103, 116, 117], &mut pairs).unwrap();
    assert_eq!(
        &pairs[..n],
        &[
            NackPair {
                pid: 100,
                blp: 0b1000_0000_0000_0101
            },
            NackPair { pid: 117, blp: 0 }
        ]
    );
    let mut out = [0u8; 64];
    let len = NackRepr {
        sender_ssrc: 1,
        media_ssrc: 2,
        pairs: &pairs[..n],
    }
    .emit(&mut out)
    .unwrap();
    assert_eq!(&out[..4], &[0x81, 205, 0, 4]);
    let RtcpPacket::Nack(nack) = one(&out[..len]) else {
        panic!()
    };
    assert_eq!(
        nack.lost().collect::<Vec<_>>(),
        vec![100, 101, 103, 116, 117]
    );
}

#[test]
fn remb_bitrate_encoding() {
    // 1_000_000 bit/s: 1e6 >> 2 = 250000 < 2^18, so exp 2, mantissa 250000 (0x3d090).
    assert_eq!(RembRepr::encode_bitrate(1_000_000), (2, 250_000));
    let mut out = [0u8; 64];
    let n = RembRepr {
        sender_ssrc: 9,
        bitrate: 1_000_000,
        ssrcs: &[0x1234],
    }
    .emit(&mut out)
    .unwrap();
    // FCI: 'REMB', num 1, exp<<2 | mantissa>>16 = 0x08 | 0x03 = 0x0b, 0xd0 0x90.
    assert_eq!(&out[12..20], &[b'R', b'E', b'M', b'B', 1, 0x0b, 0xd0, 0x90]);
    let RtcpPacket::Remb(r) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(r.bitrate, 1_000_000);
    assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![0x1234]);
}

#[test]
fn twcc_hand_decoded() {
    // base 10, count 3, ref time 1, fb count 0; one 2-bit vector chunk
    // (1, 0, 2 -> 11 01 00 10 00 00 00 00 = 0xd200), deltas: small 4, large -1 (0xffff).
    let body = [
        0x8f, 205, 0, 6, 0, 0, 0, 1, 0, 0, 0, 2, 0, 10, 0, 3, 0, 0, 1, 0, 0xd2, 0x00, 4, 0xff,
        0xff, 0, 0, 3,
    ];
    // Padding: 0x8f has P clear; use P set instead since the last 3 bytes pad.
    let mut bytes = body;
    bytes[0] = 0xaf;
    let RtcpPacket::Twcc(t) = one(&bytes) else {
        panic!()
    };
    assert_eq!((t.base_seq, t.status_count, t.reference_time), (10, 3, 1));
    let p: Vec<_> = t.packets().collect();
    assert_eq!(
        p,
        vec![
            (10, TwccStatus::Small(4)),
            (11, TwccStatus::NotReceived),
            (12, TwccStatus::Large(-1))
        ]
    );
}

#[test]
fn twcc_writer_round_trip_long_run() {
    let mut st = vec![TwccStatus::Small(1); 20];
    st.extend([TwccStatus::NotReceived; 3]);
    st.push(TwccStatus::Large(-300));
    let mut out = [0u8; 256];
    let n = TwccRepr {
        sender_ssrc: 1,
        media_ssrc: 2,
        base_seq: 65530,
        reference_time: -5,
        fb_pkt_count: 9,
        statuses: &st,
    }
    .emit(&mut out)
    .unwrap();
    let RtcpPacket::Twcc(t) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(t.reference_time, -5);
    let got: Vec<_> = t.packets().collect();
    assert_eq!(got.len(), st.len());
    for (i, (seq, s)) in got.iter().enumerate() {
        assert_eq!(*seq, 65530u16.wrapping_add(i as u16));
        assert_eq!(*s, st[i]);
    }
}

#[test]
fn xr_blocks_round_trip() {
    let dlrr = [0u8, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0, 7];
    let blocks = [
        XrBlock::Rrt {
            ntp_time: 0x0102_0304_0506_0708,
        },
        XrBlock::Dlrr { items: &dlrr },
        XrBlock::LossRle {
            thinning: 2,
            ssrc: 3,
            begin_seq: 10,
            end_seq: 20,
            chunks: &[0x40, 0x05, 0, 0],
        },
        XrBlock::VoipMetrics(VoipMetrics {
            ssrc: 4,
            r_factor: 90,
            mos_lq: 41,
            jb_abs_max: 300,
            ..Default::default()
        }),
        XrBlock::StatsSummary(StatsSummary {
            flags: 0xe0,
            ssrc: 5,
            lost_packets: 3,
            dev_ttl: 1,
            ..Default::default()
        }),
    ];
    let mut out = [0u8; 256];
    let n = XrRepr {
        ssrc: 77,
        blocks: &blocks,
    }
    .emit(&mut out)
    .unwrap();
    let RtcpPacket::Xr(x) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(x.ssrc, 77);
    let got: Vec<_> = x.blocks().collect();
    assert_eq!(got, blocks.to_vec());
    assert_eq!(
        got[1].dlrr_items().next(),
        Some(DlrrItem {
            ssrc: 5,
            lrr: 6,
            dlrr: 7
        })
    );
}

#[test]
fn compound_with_broken_middle_packet() {
    let mut buf = [0u8; 256];
    let mut b = CompoundBuilder::new(&mut buf);
    b.push(&RrRepr {
        ssrc: 1,
        reports: &[],
    })
    .unwrap();
    b.push(&ByeRepr {
        ssrcs: &[1],
        reason: None,
    })
    .unwrap();
    b.push(&Pli {
        sender_ssrc: 1,
        media_ssrc: 2,
    })
    .unwrap();
    let len = b.len();
    let mut data = buf[..len].to_vec();
    // Break the BYE: claim 2 sources while the length allows 1.
    data[8] = 0x82;
    let r: Vec<_> = Compound::new(&data).collect();
    assert!(matches!(r[0], Ok(RtcpPacket::Rr(_))));
    assert_eq!(r[1], Err(RtcpError::CountMismatch));
    assert!(matches!(r[2], Ok(RtcpPacket::Pli(_))));
    assert_eq!(validate_compound(&data, true), Ok(3));
}

#[test]
fn header_errors() {
    assert_eq!(RtcpHeader::parse(&[0x80, 200]), Err(RtcpError::Truncated));
    assert_eq!(
        RtcpHeader::parse(&[0x40, 200, 0, 0]),
        Err(RtcpError::BadVersion(1))
    );
    assert_eq!(
        // Length 2 words means 12 bytes; only 8 are there.
        RtcpHeader::parse(&[0x80, 201, 0, 2, 0, 0, 0, 0]),
        Err(RtcpError::BadLength)
    );
    // Padding count 0 and padding larger than the body.
    assert_eq!(
        RtcpHeader::parse(&[0xa0, 201, 0, 1, 0, 0, 0, 0]),
        Err(RtcpError::BadPadding)
    );
    assert_eq!(
        RtcpHeader::parse(&[0xa0, 201, 0, 1, 0, 0, 0, 9]),
        Err(RtcpError::BadPadding)
    );
    // Bad version stops the iteration.
    let bytes = [0x40, 200, 0, 0, 0x81, 201, 0, 1, 0, 0, 0, 1];
    assert_eq!(Compound::new(&bytes).count(), 1);
}

#[test]
fn strict_validation() {
    let mut buf = [0u8; 64];
    let n = Pli {
        sender_ssrc: 1,
        media_ssrc: 2,
    }
    .emit(&mut buf)
    .unwrap();
    // Reduced-size (RFC 5506): a lone PLI is fine when not strict.
    assert_eq!(validate_compound(&buf[..n], false), Ok(1));
    assert_eq!(
        validate_compound(&buf[..n], true),
        Err(RtcpError::NotCompliant)
    );
}

#[test]
fn fir_and_ccfb() {
    let mut out = [0u8; 128];
    let n = FirRepr {
        sender_ssrc: 1,
        entries: &[FirEntry { ssrc: 5, seq: 9 }],
    }
    .emit(&mut out)
    .unwrap();
    let RtcpPacket::Fir(f) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(
        f.entries().collect::<Vec<_>>(),
        vec![FirEntry { ssrc: 5, seq: 9 }]
    );

    let m = [
        CcfbMetric {
            received: true,
            ecn: 1,
            ato: 100,
        },
        CcfbMetric::default(),
        CcfbMetric {
            received: true,
            ecn: 0,
            ato: 0x1fff,
        },
    ];
    let blocks = [CcfbReprBlock {
        ssrc: 3,
        begin_seq: 65535,
        metrics: &m,
    }];
    let n = CcfbRepr {
        sender_ssrc: 1,
        blocks: &blocks,
        report_timestamp: 0xdead_beef,
    }
    .emit(&mut out)
    .unwrap();
    // header 4 + ssrc 4 + block header 8 + 3 metrics (6) + 2 pad + ts 4 = 28.
    assert_eq!(n, 28);
    let RtcpPacket::Ccfb(c) = one(&out[..n]) else {
        panic!()
    };
    assert_eq!(c.report_timestamp, 0xdead_beef);
    let s = c.streams().next().unwrap();
    assert_eq!((s.ssrc, s.begin_seq), (3, 65535));
    assert_eq!(s.metrics().collect::<Vec<_>>(), m.to_vec());
}
