//! RTCP through the Engine on loopback: a terminated call sends its own reports
//! (SR for what it relays, RR blocks about what it receives, SDES, BYE at the
//! end), reads the peers' SRs and RRs (RTT, remote SR), exposes quality through
//! `rtcp_stats` and raises quality events; a pass-through call relays RTCP.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{builder, rtp_packet};
use rtp_control::rtcp::{Avpf, IntervalConfig, QualityMetric, XrConfig};
use rtp_control::{Engine, EngineEvent, LegConfig, RtcpConfig, RtcpMode};
use rtp_core::rtcp::{Compound, ReportBlock, RrRepr, RtcpPacket, RtcpWrite, SrRepr, XrBlock};
use rtp_core::time::NtpTime;

fn engine() -> Engine {
    builder(20).start().expect("engine starts")
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp_packet(0, ssrc, seq, 0xd5)
}

/// Fast reports for the test: AVPF timing with trr-int 300 ms.
fn terminate() -> RtcpConfig {
    RtcpConfig {
        mode: RtcpMode::Terminate,
        cname: Some("gw@test".into()),
        xr: XrConfig {
            voip_metrics: true,
            stats_summary: false,
        },
        interval: IntervalConfig {
            avpf: Some(Avpf {
                trr_int: Duration::from_millis(300),
            }),
            ..IntervalConfig::default()
        },
        ..RtcpConfig::default()
    }
}

fn rtcp_of(d: &[u8]) -> Option<Vec<RtcpPacket<'_>>> {
    (d.len() >= 8 && (200..=207).contains(&d[1]))
        .then(|| Compound::new(d).collect::<Result<Vec<_>, _>>().ok())
        .flatten()
}

const A: u32 = 0xAAAA_0001;
const B: u32 = 0xBBBB_0002;

#[test]
fn terminated_call_reports_measures_and_says_bye() {
    let e = engine();
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig {
                rtcp: terminate(),
                ..LegConfig::default()
            },
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                rtcp: terminate(),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    let (to0, to1) = (call.legs[0].local, call.legs[1].local);
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let (mut seq, mut our_srs_at_a, mut rr_blocks_at_b) = (0u16, Vec::new(), Vec::new());
    let mut sr_sent_by_a: Option<u64> = None;
    let mut a_rr_sent = false;
    // 3 s of media both ways, 20 ms apart; A skips every 10th packet (10 % loss).
    while start.elapsed() < Duration::from_secs(3) {
        if seq % 10 != 5 {
            a.send_to(&rtp(A, seq), to0).unwrap();
        }
        b.send_to(&rtp(B, seq), to1).unwrap();
        seq += 1;
        if seq == 50 {
            // A's SR (it sends media too).
            let ntp = NtpTime::from_unix(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap(),
            );
            let n = SrRepr {
                ssrc: A,
                ntp_time: ntp.0,
                rtp_timestamp: 50 * 160,
                packet_count: 45,
                octet_count: 45 * 160,
                reports: &[],
            }
            .emit(&mut buf)
            .unwrap();
            a.send_to(&buf[..n], to0).unwrap();
            sr_sent_by_a = Some(ntp.0);
        }
        // Drain what the peers got.
        for (sock, is_a) in [(&a, true), (&b, false)] {
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                let Some(pkts) = rtcp_of(&buf[..n]) else {
                    continue;
                };
                for p in pkts {
                    match p {
                        RtcpPacket::Sr(sr) if is_a => {
                            our_srs_at_a.push((sr.ssrc(), sr.ntp_time(), sr.packet_count()));
                            // A answers with an RR echoing our SR (no hold time).
                            if !a_rr_sent {
                                let blk = ReportBlock {
                                    ssrc: sr.ssrc(),
                                    lsr: NtpTime(sr.ntp_time()).to_compact(),
                                    dlsr: 0,
                                    ..ReportBlock::default()
                                };
                                let m = RrRepr {
                                    ssrc: A,
                                    reports: &[blk],
                                }
                                .emit(&mut [0u8; 64][..])
                                .unwrap();
                                let mut rr = [0u8; 64];
                                RrRepr {
                                    ssrc: A,
                                    reports: &[blk],
                                }
                                .emit(&mut rr)
                                .unwrap();
                                a.send_to(&rr[..m], to0).unwrap();
                                a_rr_sent = true;
                            }
                        }
                        RtcpPacket::Sr(sr) => rr_blocks_at_b.extend(sr.report_blocks()),
                        RtcpPacket::Rr(rr) if !is_a => rr_blocks_at_b.extend(rr.report_blocks()),
                        _ => {}
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Our SRs to A carry the SSRC of the media A gets (B's) and its packet count.
    assert!(
        our_srs_at_a.len() >= 3,
        "SRs at A: {our_srs_at_a:?} {:?}",
        e.rtcp_stats(call.id)
    );
    assert!(our_srs_at_a.iter().all(|s| s.0 == B));
    assert!(
        our_srs_at_a.last().unwrap().2 > u32::from(seq) / 2,
        "{our_srs_at_a:?}"
    );
    // B gets report blocks about its own stream (leg 1 receives B, no loss) - and
    // leg 1 sends SRs to B for A's media.
    assert!(!rr_blocks_at_b.is_empty());
    let last_b = rr_blocks_at_b.last().unwrap();
    assert_eq!(last_b.ssrc, B);
    assert_eq!(last_b.cumulative_lost, 0);
    let st = e.rtcp_stats(call.id).unwrap();
    // Leg 0 parsed A's SR.
    let sr = st[0].remote_sr.expect("A's SR read");
    assert_eq!(
        (sr.ssrc, sr.ntp, sr.packets),
        (A, sr_sent_by_a.unwrap(), 45)
    );
    // RTT from A's echo: loopback, well under 50 ms.
    let rtt = st[0].quality.rtt_ms.expect("RTT measured");
    assert!((0.0..50.0).contains(&rtt), "rtt {rtt}");
    assert_eq!(st[0].received.absurd_rtt, 0);
    // Leg 0 receives A with 10 % loss.
    assert!(
        (st[0].quality.loss_total - 0.1).abs() < 0.03,
        "{:?}",
        st[0].quality
    );
    let mos = st[0].quality.mos.unwrap();
    assert!(mos > 1.0 && mos < 4.4, "mos {mos}");
    assert!(st[0].reports_sent >= 3 && st[1].reports_sent >= 3);
    assert!(st[0].quality.rx_bitrate > 0.0);
    // Delete: both peers get a BYE.
    e.delete_call(call.id).unwrap();
    for sock in [&a, &b] {
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut bye = false;
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Some(p) = rtcp_of(&buf[..n]) {
                if p.iter().any(|p| matches!(p, RtcpPacket::Bye(_))) {
                    bye = true;
                    break;
                }
            }
        }
        assert!(bye, "BYE at the end");
    }
    e.shutdown();
}

#[test]
fn loss_raises_a_quality_event_and_xr_carries_voip_metrics() {
    let e = engine();
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig {
                rtcp: terminate(),
                ..LegConfig::default()
            },
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    let to0 = call.legs[0].local;
    // A's first packet makes leg 0 latch so that reports can reach A.
    let mut buf = [0u8; 2048];
    let mut voip = None;
    let start = Instant::now();
    let mut seq = 0u16;
    let mut event = None;
    while start.elapsed() < Duration::from_secs(4) && (event.is_none() || voip.is_none()) {
        // 30 % loss.
        if seq % 10 >= 3 {
            a.send_to(&rtp(A, seq), to0).unwrap();
        }
        seq += 1;
        while let Ok((n, _)) = a.recv_from(&mut buf) {
            for p in rtcp_of(&buf[..n]).unwrap_or_default() {
                if let RtcpPacket::Xr(x) = p {
                    for blk in x.blocks() {
                        if let XrBlock::VoipMetrics(v) = blk {
                            voip = Some(v);
                        }
                    }
                }
            }
        }
        while let Some(ev) = e.next_event(Duration::ZERO) {
            if let EngineEvent::Quality {
                call: c,
                leg,
                alert,
            } = ev
            {
                if c == call.id && alert.metric == QualityMetric::Loss && alert.raised {
                    event = Some((leg, alert));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let (leg, alert) = event.expect("loss alarm");
    assert_eq!(leg, 0);
    // Loss of one 50 ms check interval: noisy, but above the 5 % threshold.
    assert!(alert.value > 0.05, "{alert:?}");
    let q = e.rtcp_stats(call.id).unwrap()[0].quality;
    assert!((q.loss_total - 0.3).abs() < 0.08, "{q:?}");
    let v = voip.expect("XR VoIP metrics");
    assert_eq!(v.ssrc, A);
    // 30 % of 256 = 76.8, loss counted from the first packet received.
    assert!((60..=90).contains(&v.loss_rate), "{v:?}");
    assert!(v.mos_lq < 40 && v.mos_lq >= 10);
    e.shutdown();
}

#[test]
fn pass_through_relays_rtcp() {
    let e = engine();
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig::default(),
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    let to0: SocketAddr = call.legs[0].local;
    let mut rr = [0u8; 64];
    let n = RrRepr {
        ssrc: A,
        reports: &[],
    }
    .emit(&mut rr)
    .unwrap();
    a.send_to(&rr[..n], to0).unwrap();
    b.set_nonblocking(false).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 256];
    let (m, _) = b.recv_from(&mut buf).expect("RR relayed");
    assert_eq!(&buf[..m], &rr[..n]);
    // Quality comes from the receive statistics even without RTCP termination.
    a.set_nonblocking(true).unwrap();
    for seq in 0..40u16 {
        if seq % 4 != 3 {
            a.send_to(&rtp(A, seq), to0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // A few statistics sweeps (every 50 ms here) after the last packet.
    std::thread::sleep(Duration::from_millis(300));
    let st = e.rtcp_stats(call.id).unwrap();
    assert_eq!(st[0].mode, RtcpMode::Forward);
    assert_eq!(st[0].reports_sent, 0);
    // 10 of 40 skipped, the last (seq 39) among them; RFC 3550 A.1 counts from
    // the packet that ends the probation (seq 1): 9 lost of 38 expected.
    assert!(
        (st[0].quality.loss_total - 9.0 / 38.0).abs() < 1e-9,
        "{:?}",
        st[0].quality
    );
    // MOS is the E-model of the last interval's figures (G.711 with PLC).
    let q = st[0].quality;
    let (mos, _) = rtp_control::rtcp::quality::estimate_mos(
        rtp_core::stats::Codec::G711Plc,
        q.loss,
        q.jitter_ms,
        None,
        20.0,
    );
    assert_eq!(q.mos, Some(mos));
    e.shutdown();
}

/// A secure leg's reports are SRTCP (protected by the dataplane with the leg's
/// outbound keys), and consecutive SRs map NTP to RTP time consistently with the
/// media clock of the stream they describe.
#[test]
fn secure_leg_gets_srtcp_with_a_consistent_ntp_rtp_mapping() {
    use rtp_control::dataplane::LegSrtp;
    use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let key = |seed: u8| {
        let ks: Vec<u8> = (0..30u8)
            .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
            .collect();
        SrtpConfig::from_key_salt(p, &ks).unwrap()
    };
    let e = engine();
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig {
                srtp: Some(LegSrtp {
                    inbound: key(3),
                    outbound: key(5),
                }),
                rtcp: terminate(),
                ..LegConfig::default()
            },
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                rtcp: terminate(),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    let (to0, to1) = (call.legs[0].local, call.legs[1].local);
    let mut a_tx = SrtpContext::new(key(3)).unwrap();
    let mut a_rx = SrtpContext::new(key(5)).unwrap();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut srs = Vec::new();
    let mut seq = 0u16;
    while start.elapsed() < Duration::from_secs(3) {
        // Media paced on the wall clock: seq n at n x 20 ms (timestamp n x 160).
        let due = start + Duration::from_millis(20 * u64::from(seq));
        if Instant::now() >= due {
            let mut pkt = rtp(A, seq);
            let n = pkt.len();
            pkt.resize(n + 16, 0);
            let n = a_tx.protect_rtp(&mut pkt, n).unwrap();
            a.send_to(&pkt[..n], to0).unwrap();
            b.send_to(&rtp(B, seq), to1).unwrap();
            seq += 1;
        }
        while let Ok((n, _)) = a.recv_from(&mut buf) {
            if !(200..=207).contains(&buf[1]) {
                continue; // SRTP media
            }
            let len = a_rx
                .unprotect_rtcp(&mut buf[..n])
                .expect("our RTCP to a secure leg is SRTCP with its keys")
                .len;
            for p in Compound::new(&buf[..len]) {
                if let Ok(RtcpPacket::Sr(sr)) = p {
                    srs.push((sr.ntp_time(), sr.rtp_timestamp()));
                }
            }
        }
        while b.recv_from(&mut buf).is_ok() {}
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(srs.len() >= 3, "SRs: {}", srs.len());
    for w in srs.windows(2) {
        let dt = NtpTime(w[1].0).to_unix().as_secs_f64() - NtpTime(w[0].0).to_unix().as_secs_f64();
        let dts = f64::from(w[1].1.wrapping_sub(w[0].1));
        // Within two packets (40 ms at 8 kHz) of the wall-clock distance.
        assert!(
            (dts - dt * 8000.0).abs() < 320.0,
            "{:?}: {dts} units in {dt} s",
            w
        );
    }
    e.shutdown();
}
