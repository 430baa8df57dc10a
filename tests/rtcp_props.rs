//! Property tests: every RTCP writer's output parses back to the values written, and
//! for canonical encodings re-emitting what was parsed gives the same bytes.

use proptest::prelude::*;
use rtp_core::rtcp::*;

/// An SDES chunk with owned items, for comparison.
type OwnedChunk = (u32, Vec<(u8, Vec<u8>)>);

fn block() -> impl Strategy<Value = ReportBlock> {
    (
        any::<u32>(),
        any::<u8>(),
        -0x80_0000i32..0x80_0000,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(ssrc, f, c, e, j, l, d)| ReportBlock {
            ssrc,
            fraction_lost: f,
            cumulative_lost: c,
            ext_highest_seq: e,
            jitter: j,
            lsr: l,
            dlsr: d,
        })
}

fn emit(p: &dyn RtcpWrite) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = p.emit(&mut buf).expect("emit");
    buf.truncate(n);
    buf
}

fn single(bytes: &[u8]) -> RtcpPacket<'_> {
    let mut it = Compound::new(bytes);
    let p = it.next().unwrap().unwrap();
    assert!(it.next().is_none());
    p
}

proptest! {
    #[test]
    fn sr_round_trip(ssrc: u32, ntp: u64, ts: u32, pc: u32, oc: u32,
                     blocks in proptest::collection::vec(block(), 0..31)) {
        let bytes = emit(&SrRepr { ssrc, ntp_time: ntp, rtp_timestamp: ts, packet_count: pc,
                                   octet_count: oc, reports: &blocks });
        let RtcpPacket::Sr(sr) = single(&bytes) else { panic!("not SR") };
        prop_assert_eq!((sr.ssrc(), sr.ntp_time(), sr.rtp_timestamp(), sr.packet_count(), sr.octet_count()),
                        (ssrc, ntp, ts, pc, oc));
        let got: Vec<_> = sr.report_blocks().collect();
        prop_assert_eq!(&got, &blocks);
        let again = emit(&SrRepr { ssrc: sr.ssrc(), ntp_time: sr.ntp_time(), rtp_timestamp: sr.rtp_timestamp(),
                                   packet_count: sr.packet_count(), octet_count: sr.octet_count(), reports: &got });
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn rr_round_trip(ssrc: u32, blocks in proptest::collection::vec(block(), 0..31)) {
        let bytes = emit(&RrRepr { ssrc, reports: &blocks });
        let RtcpPacket::Rr(rr) = single(&bytes) else { panic!("not RR") };
        prop_assert_eq!(rr.ssrc(), ssrc);
        prop_assert_eq!(rr.report_blocks().collect::<Vec<_>>(), blocks);
    }

    #[test]
    fn sdes_round_trip(chunks in proptest::collection::vec(
        (any::<u32>(), proptest::collection::vec((1u8..=8, proptest::collection::vec(any::<u8>(), 0..40)), 0..5)),
        0..6)) {
        let items: Vec<Vec<(u8, &[u8])>> = chunks.iter()
            .map(|(_, it)| it.iter().map(|(k, v)| (*k, v.as_slice())).collect()).collect();
        let repr: Vec<(u32, SdesItemList<'_>)> = chunks.iter().zip(&items).map(|((s, _), i)| (*s, i.as_slice())).collect();
        let bytes = emit(&SdesRepr { chunks: &repr });
        let RtcpPacket::Sdes(s) = single(&bytes) else { panic!("not SDES") };
        let got: Vec<OwnedChunk> = s.chunks()
            .map(|c| (c.ssrc, c.items().map(|i| (i.kind, i.value.to_vec())).collect())).collect();
        prop_assert_eq!(got, chunks);
    }

    #[test]
    fn bye_app_round_trip(ssrcs in proptest::collection::vec(any::<u32>(), 0..31),
                          reason in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..255)),
                          sub in 0u8..32, name: [u8; 4], words in proptest::collection::vec(any::<u32>(), 0..20)) {
        let bytes = emit(&ByeRepr { ssrcs: &ssrcs, reason: reason.as_deref() });
        let RtcpPacket::Bye(b) = single(&bytes) else { panic!("not BYE") };
        prop_assert_eq!(b.ssrcs().collect::<Vec<_>>(), ssrcs.clone());
        prop_assert_eq!(b.reason(), reason.as_deref());
        let again = emit(&ByeRepr { ssrcs: &b.ssrcs().collect::<Vec<_>>(), reason: b.reason() });
        prop_assert_eq!(again, bytes);

        let data: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let app = App { subtype: sub, ssrc: 7, name, data: &data };
        let bytes = emit(&app);
        let RtcpPacket::App(a) = single(&bytes) else { panic!("not APP") };
        prop_assert_eq!(a, app);
    }

    #[test]
    fn nack_round_trip(mut seqs in proptest::collection::vec(any::<u16>(), 1..60)) {
        seqs.sort_unstable();
        seqs.dedup();
        let mut pairs = vec![NackPair::default(); seqs.len()];
        let n = NackPair::pack(&seqs, &mut pairs).unwrap();
        let bytes = emit(&NackRepr { sender_ssrc: 1, media_ssrc: 2, pairs: &pairs[..n] });
        let RtcpPacket::Nack(nack) = single(&bytes) else { panic!("not NACK") };
        let mut lost: Vec<u16> = nack.lost().collect();
        lost.sort_unstable();
        prop_assert_eq!(lost, seqs);
        let again = emit(&NackRepr { sender_ssrc: nack.sender_ssrc, media_ssrc: nack.media_ssrc,
                                     pairs: &nack.pairs().collect::<Vec<_>>() });
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn twcc_round_trip(base: u16, rt in -0x80_0000i32..0x80_0000, fbc: u8,
                       st in proptest::collection::vec(prop_oneof![
                           Just(TwccStatus::NotReceived),
                           any::<u8>().prop_map(TwccStatus::Small),
                           any::<i16>().prop_map(TwccStatus::Large),
                       ], 1..200)) {
        let bytes = emit(&TwccRepr { sender_ssrc: 1, media_ssrc: 2, base_seq: base, reference_time: rt,
                                     fb_pkt_count: fbc, statuses: &st });
        let RtcpPacket::Twcc(t) = single(&bytes) else { panic!("not TWCC") };
        prop_assert_eq!((t.base_seq, t.reference_time, t.fb_pkt_count, usize::from(t.status_count)),
                        (base, rt, fbc, st.len()));
        let got: Vec<_> = t.packets().collect();
        for (i, (seq, s)) in got.iter().enumerate() {
            prop_assert_eq!(*seq, base.wrapping_add(i as u16));
            prop_assert_eq!(*s, st[i]);
        }
        prop_assert_eq!(got.len(), st.len());
    }

    #[test]
    fn remb_fir_pli(bitrate in 0u64..(1u64 << 40), ssrcs in proptest::collection::vec(any::<u32>(), 0..10),
                    entries in proptest::collection::vec((any::<u32>(), any::<u8>()), 1..10)) {
        let bytes = emit(&RembRepr { sender_ssrc: 3, bitrate, ssrcs: &ssrcs });
        let RtcpPacket::Remb(r) = single(&bytes) else { panic!("not REMB") };
        let (exp, _) = RembRepr::encode_bitrate(bitrate);
        // Rounded down to an 18-bit mantissa: the error is below one unit of 2^exp.
        prop_assert!(r.bitrate <= bitrate && bitrate - r.bitrate < (1u64 << exp));
        prop_assert_eq!(r.ssrcs().collect::<Vec<_>>(), ssrcs);

        let e: Vec<FirEntry> = entries.iter().map(|(s, q)| FirEntry { ssrc: *s, seq: *q }).collect();
        let bytes = emit(&FirRepr { sender_ssrc: 4, entries: &e });
        let RtcpPacket::Fir(f) = single(&bytes) else { panic!("not FIR") };
        prop_assert_eq!(f.entries().collect::<Vec<_>>(), e);

        let pli = Pli { sender_ssrc: 5, media_ssrc: 6 };
        let bytes = emit(&pli);
        prop_assert_eq!(single(&bytes), RtcpPacket::Pli(pli));
    }

    #[test]
    fn xr_and_ccfb(ssrc: u32, rrt: u64, dlrr in proptest::collection::vec(any::<u8>(), 0..5),
                   chunks in proptest::collection::vec(any::<u16>(), 0..8),
                   metrics in proptest::collection::vec((any::<bool>(), 0u8..4, 0u16..0x2000), 0..20),
                   begin: u16, ts: u32) {
        let dlrr_bytes: Vec<u8> = dlrr.iter().flat_map(|b| [*b; 12]).collect();
        // RLE chunks are written up to a 32-bit boundary; use whole words so the
        // parsed block equals the written one.
        let mut chunk_bytes: Vec<u8> = chunks.iter().flat_map(|c| c.to_be_bytes()).collect();
        if !chunk_bytes.len().is_multiple_of(4) { chunk_bytes.extend([0, 0]); }
        let blocks = [
            XrBlock::Rrt { ntp_time: rrt },
            XrBlock::Dlrr { items: &dlrr_bytes },
            XrBlock::DupRle { thinning: 1, ssrc, begin_seq: 1, end_seq: 2, chunks: &chunk_bytes },
            XrBlock::VoipMetrics(VoipMetrics { ssrc, gmin: 16, jb_nominal: 40, ..Default::default() }),
        ];
        let bytes = emit(&XrRepr { ssrc, blocks: &blocks });
        let RtcpPacket::Xr(x) = single(&bytes) else { panic!("not XR") };
        let got: Vec<_> = x.blocks().collect();
        prop_assert_eq!(&got, &blocks.to_vec());
        prop_assert_eq!(emit(&XrRepr { ssrc: x.ssrc, blocks: &got }), bytes);

        let m: Vec<CcfbMetric> = metrics.iter().map(|(r, e, a)| CcfbMetric { received: *r, ecn: *e, ato: *a }).collect();
        let b = [CcfbReprBlock { ssrc, begin_seq: begin, metrics: &m }];
        let bytes = emit(&CcfbRepr { sender_ssrc: 9, blocks: &b, report_timestamp: ts });
        let RtcpPacket::Ccfb(c) = single(&bytes) else { panic!("not CCFB") };
        prop_assert_eq!(c.report_timestamp, ts);
        let s = c.streams().next().unwrap();
        prop_assert_eq!((s.ssrc, s.begin_seq), (ssrc, begin));
        prop_assert_eq!(s.metrics().collect::<Vec<_>>(), m);
    }

    #[test]
    fn compound_builder_order(n_rr in 0usize..3, with_bye: bool) {
        let mut buf = [0u8; 2048];
        let mut b = CompoundBuilder::new(&mut buf);
        for i in 0..n_rr { b.push(&RrRepr { ssrc: i as u32, reports: &[] }).unwrap(); }
        if with_bye { b.push(&ByeRepr { ssrcs: &[1], reason: Some(b"x") }).unwrap(); }
        let out = b.finish();
        let kinds: Vec<u8> = Compound::new(out).map(|p| p.unwrap().packet_type()).collect();
        let mut want = vec![pt::RR; n_rr];
        if with_bye { want.push(pt::BYE); }
        prop_assert_eq!(kinds, want);
    }
}
