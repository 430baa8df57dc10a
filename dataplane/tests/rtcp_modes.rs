//! Per-session RTCP modes: `Terminate` copies every RTCP packet to the control
//! plane and relays only feedback (with media SSRCs mapped); `Forward` relays
//! everything with report-block SSRCs mapped when media SSRCs are rewritten. And
//! the sender numbers a sender report needs, in snapshots.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::*;
use rtp_core::rtcp::{
    sdes_item, Compound, PliRepr, ReportBlock, RrRepr, RtcpPacket, RtcpWrite, SdesRepr,
};
use rtp_dataplane::{Event, Rewrite, RtcpMode, SessionSpec};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const A_SSRC: u32 = 0xA1A1_A1A1;
const B_SSRC: u32 = 0xB2B2_B2B2;
/// What leg 0 sends to A instead of B's SSRC.
const REWRITTEN: u32 = 0x0000_C0DE;

/// RR from A about `media`, SDES, PLI about `media`.
fn rr_sdes_pli(media: u32) -> Vec<u8> {
    let mut buf = [0u8; 256];
    let block = ReportBlock {
        ssrc: media,
        fraction_lost: 7,
        ..ReportBlock::default()
    };
    let mut n = RrRepr {
        ssrc: A_SSRC,
        reports: &[block],
    }
    .emit(&mut buf)
    .unwrap();
    let items: &[(u8, &[u8])] = &[(sdes_item::CNAME, b"a@x")];
    n += SdesRepr {
        chunks: &[(A_SSRC, items)],
    }
    .emit(&mut buf[n..])
    .unwrap();
    n += PliRepr {
        sender_ssrc: A_SSRC,
        media_ssrc: media,
    }
    .emit(&mut buf[n..])
    .unwrap();
    buf[..n].to_vec()
}

fn session(
    mode: RtcpMode,
) -> (
    rtp_dataplane::Dataplane,
    std::net::UdpSocket,
    std::net::UdpSocket,
    std::net::SocketAddr,
) {
    let dp = start(rtp_dataplane::BackendKind::Mmsg);
    let h = &dp.workers()[0];
    let (a, b) = (peer(V4), peer(V4));
    let (mut leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, addr1, _) = per_session_leg(V4, false);
    leg0.rewrite = Rewrite {
        ssrc: Some(REWRITTEN),
        ..Rewrite::default()
    };
    leg1.remote = Some(b.local_addr().unwrap());
    add_session(
        h,
        SessionSpec {
            id: 1,
            legs: [leg0, leg1],
            rtcp_to_control: false,
            rtcp_mode: mode,
        },
    );
    // Media both ways so that both legs are latched and know their SSRCs.
    assert_eq!(flow(&a, addr0, None, &b, None, A_SSRC, 0, 5).len(), 5);
    let got = flow(&b, addr1, None, &a, None, B_SSRC, 100, 10);
    assert_eq!(got.len(), 10);
    assert_eq!(&got[0][8..12], &REWRITTEN.to_be_bytes());
    (dp, a, b, addr0)
}

#[test]
fn terminate_relays_only_feedback_and_copies_everything() {
    let (dp, a, b, addr0) = session(RtcpMode::Terminate);
    let h = &dp.workers()[0];
    let compound = rr_sdes_pli(REWRITTEN);
    a.send_to(&compound, addr0).unwrap();
    let (got, _) = recv(&b).expect("the PLI is relayed");
    let pkts: Vec<_> = Compound::new(&got).map(Result::unwrap).collect();
    assert_eq!(pkts.len(), 1, "only the feedback packet: {pkts:?}");
    match pkts[0] {
        // A asked about the SSRC it saw (REWRITTEN); B knows its own.
        RtcpPacket::Pli(p) => assert_eq!((p.sender_ssrc, p.media_ssrc), (A_SSRC, B_SSRC)),
        ref p => panic!("expected PLI, got {p:?}"),
    }
    // The control plane got the whole compound, as received.
    let e = wait_event(h, "RTCP copy", |e| matches!(e, Event::Rtcp { .. }));
    let Event::Rtcp { session, leg, data } = e else {
        unreachable!()
    };
    assert_eq!((session, leg), (1, 0));
    assert_eq!(data, compound);
    // A report without feedback goes no further.
    let mut only_rr = compound.clone();
    only_rr.truncate(32); // the RR (8 + 24 bytes)
    a.send_to(&only_rr, addr0).unwrap();
    wait_event(
        h,
        "RTCP copy",
        |e| matches!(e, Event::Rtcp { data, .. } if data.len() == 32),
    );
    b.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        recv(&b).is_none(),
        "SR/RR/SDES must not be relayed when terminated"
    );
    let s = snapshot(h, 1);
    assert_eq!(s.legs[0].counters.rx_rtcp, 2);
    assert_eq!(s.legs[1].counters.tx_rtcp, 1);
    dp.shutdown();
}

#[test]
fn forward_maps_report_block_ssrcs() {
    let (dp, a, b, addr0) = session(RtcpMode::Forward);
    a.send_to(&rr_sdes_pli(REWRITTEN), addr0).unwrap();
    let (got, _) = recv(&b).expect("RTCP relayed");
    let pkts: Vec<_> = Compound::new(&got).map(Result::unwrap).collect();
    assert_eq!(pkts.len(), 3);
    match pkts[0] {
        RtcpPacket::Rr(rr) => {
            let blocks: Vec<_> = rr.report_blocks().collect();
            assert_eq!(blocks[0].ssrc, B_SSRC);
            assert_eq!(blocks[0].fraction_lost, 7);
        }
        ref p => panic!("expected RR, got {p:?}"),
    }
    assert!(matches!(pkts[2], RtcpPacket::Pli(p) if p.media_ssrc == B_SSRC));
    dp.shutdown();
}

#[test]
fn snapshots_carry_sender_numbers_and_burst_counts() {
    let (dp, _a, _b, _) = session(RtcpMode::Terminate);
    let s = snapshot(&dp.workers()[0], 1);
    // Leg 0 sent B's 10 packets to A: 160-byte payloads, last timestamp 109 x 160.
    let tx = s.legs[0].sender;
    assert_eq!(
        (tx.ssrc, tx.packets, tx.payload_octets),
        (REWRITTEN, 10, 1600)
    );
    assert_eq!(tx.last_rtp_ts, 109 * 160);
    assert!(tx.last_sent_ago.unwrap() < Duration::from_secs(5));
    // Leg 1 sent A's 5.
    assert_eq!(s.legs[1].sender.packets, 5);
    let q = s.legs[1].quality.unwrap();
    assert_eq!(q.ssrc, B_SSRC);
    // No loss: everything counted is one gap (the first packet of the probation
    // of RFC 3550 A.1 is not counted by the tracker, as by the expected count).
    assert_eq!((q.burst.bursts, q.burst.gap_lost), (0, 0));
    assert_eq!(q.burst.gap_packets, q.expected, "{q:?}");
    dp.shutdown();
}
