//! Interop with Wireshark's dissectors: every RTCP type our writers produce (and an
//! RTP packet with header extensions) goes into a pcap, `tshark` decodes it, and the
//! test asserts no malformed packet or expert error and that tshark reads back the
//! values we wrote. Needs `tshark` (installed by `.ci/install.sh`); fails, not skips,
//! without it.

use std::process::Command;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;
use rtp_core::rtcp::*;
use rtp_core::rtp::RtpBuilder;

const RTCP_PORT: u16 = 5005;
const RTP_PORT: u16 = 5004;

/// Ethernet + IPv4 + UDP around `payload` (addresses live only in the file).
fn frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8];
    f[12] = 0x08; // IPv4
    let ip_len = (20 + 8 + payload.len()) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
    let mut sum = 0u32;
    for c in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    udp[2..4].copy_from_slice(&dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn emit(p: &dyn RtcpWrite) -> Vec<u8> {
    let mut buf = [0u8; 1500];
    let n = p.emit(&mut buf).expect("emit");
    buf[..n].to_vec()
}

/// Runs tshark and returns its `-T fields` lines, one per frame.
fn tshark(path: &std::path::Path, fields: &[&str], filter: Option<&str>) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n")
        .arg("-r")
        .arg(path)
        .arg("-d")
        .arg(format!("udp.port=={RTCP_PORT},rtcp"))
        .arg("-d")
        .arg(format!("udp.port=={RTP_PORT},rtp"))
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-E",
            "occurrence=a",
            "-E",
            "aggregator=,",
        ]);
    if let Some(f) = filter {
        cmd.arg("-Y").arg(f);
    }
    for f in fields {
        cmd.arg("-e").arg(f);
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run tshark ({e}); install it with `sudo bash .ci/install.sh`")
    });
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        panic!("tshark failed: {err}");
    }
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn tshark_reads_every_packet_type_we_write() {
    let blocks = [
        ReportBlock {
            ssrc: 0xaabb_ccdd,
            fraction_lost: 64,
            cumulative_lost: 1234,
            ext_highest_seq: 0x0002_0010,
            jitter: 77,
            lsr: 0x1234_5678,
            dlsr: 0x0001_8000,
        },
        ReportBlock {
            ssrc: 0x0102_0304,
            fraction_lost: 0,
            cumulative_lost: -3,
            ext_highest_seq: 99,
            jitter: 5,
            lsr: 0,
            dlsr: 0,
        },
    ];
    let cname: [(u8, &[u8]); 2] = [
        (sdes_item::CNAME, b"user@host"),
        (sdes_item::TOOL, b"rtp-core"),
    ];
    let sdes_chunks = [(0x1111_1111u32, &cname[..])];
    let mut nack_pairs = [NackPair::default(); 4];
    let nn = NackPair::pack(&[500, 502, 510, 700], &mut nack_pairs).unwrap();
    let twcc_st = [
        TwccStatus::Small(10),
        TwccStatus::NotReceived,
        TwccStatus::Small(3),
        TwccStatus::Large(-40),
        TwccStatus::Small(0),
    ];
    let dlrr = [0x22u8, 0x22, 0x22, 0x22, 0, 0, 0, 1, 0, 0, 0, 2];
    let xr_blocks = [
        XrBlock::Rrt {
            ntp_time: 0xe000_0000_8000_0000,
        },
        XrBlock::Dlrr { items: &dlrr },
        XrBlock::LossRle {
            thinning: 0,
            ssrc: 0x3333_3333,
            begin_seq: 1,
            end_seq: 30,
            chunks: &[0x40, 0x1d, 0, 0],
        },
        XrBlock::StatsSummary(StatsSummary {
            flags: 0xe0,
            ssrc: 0x3333_3333,
            begin_seq: 1,
            end_seq: 30,
            lost_packets: 2,
            ..Default::default()
        }),
        XrBlock::VoipMetrics(VoipMetrics {
            ssrc: 0x3333_3333,
            r_factor: 88,
            mos_lq: 41,
            mos_cq: 40,
            ..Default::default()
        }),
    ];

    // (frame payload, expected tshark rtcp.pt list)
    let mut payloads: Vec<(u16, Vec<u8>)> = Vec::new();
    let sr = emit(&SrRepr {
        ssrc: 0x1111_1111,
        ntp_time: 0xe9a0_0000_4000_0000,
        rtp_timestamp: 160_000,
        packet_count: 1000,
        octet_count: 160_000,
        reports: &blocks,
    });
    // A compound: SR + SDES.
    let mut compound = sr.clone();
    compound.extend(emit(&SdesRepr {
        chunks: &sdes_chunks,
    }));
    payloads.push((RTCP_PORT, compound)); // 1
    payloads.push((
        RTCP_PORT,
        emit(&RrRepr {
            ssrc: 0x2222_2222,
            reports: &blocks[..1],
        }),
    )); // 2
    payloads.push((
        RTCP_PORT,
        emit(&ByeRepr {
            ssrcs: &[0x1111_1111],
            reason: Some(b"call ended"),
        }),
    )); // 3
    payloads.push((
        RTCP_PORT,
        emit(&App {
            subtype: 3,
            ssrc: 0x1111_1111,
            name: *b"TEST",
            data: b"abcd",
        }),
    )); // 4
    payloads.push((
        RTCP_PORT,
        emit(&NackRepr {
            sender_ssrc: 0x2222_2222,
            media_ssrc: 0x1111_1111,
            pairs: &nack_pairs[..nn],
        }),
    )); // 5
    payloads.push((
        RTCP_PORT,
        emit(&Pli {
            sender_ssrc: 0x2222_2222,
            media_ssrc: 0x1111_1111,
        }),
    )); // 6
    payloads.push((
        RTCP_PORT,
        emit(&FirRepr {
            sender_ssrc: 0x2222_2222,
            entries: &[FirEntry {
                ssrc: 0x1111_1111,
                seq: 42,
            }],
        }),
    )); // 7
    payloads.push((
        RTCP_PORT,
        emit(&RembRepr {
            sender_ssrc: 0x2222_2222,
            bitrate: 2_500_000,
            ssrcs: &[0x1111_1111],
        }),
    )); // 8
    payloads.push((
        RTCP_PORT,
        emit(&TwccRepr {
            sender_ssrc: 0x2222_2222,
            media_ssrc: 0x1111_1111,
            base_seq: 300,
            reference_time: 12,
            fb_pkt_count: 7,
            statuses: &twcc_st,
        }),
    )); // 9
    payloads.push((
        RTCP_PORT,
        emit(&XrRepr {
            ssrc: 0x2222_2222,
            blocks: &xr_blocks,
        }),
    )); // 10
    let metrics = [
        CcfbMetric {
            received: true,
            ecn: 0,
            ato: 10,
        },
        CcfbMetric::default(),
    ];
    let ccfb_blocks = [CcfbReprBlock {
        ssrc: 0x1111_1111,
        begin_seq: 10,
        metrics: &metrics,
    }];
    payloads.push((
        RTCP_PORT,
        emit(&CcfbRepr {
            sender_ssrc: 0x2222_2222,
            blocks: &ccfb_blocks,
            report_timestamp: 0x1234_0000,
        }),
    )); // 11
    let mut rtp = [0u8; 300];
    let ext_a = [0x12u8, 0x34];
    let ext_b = [7u8];
    let exts: [(u8, &[u8]); 2] = [(1, &ext_a), (3, &ext_b)];
    let n = RtpBuilder::new()
        .payload_type(0)
        .sequence_number(4242)
        .timestamp(8000)
        .ssrc(0x5555_5555)
        .extensions(&exts)
        .payload(&[0xffu8; 160])
        .emit(&mut rtp)
        .expect("rtp emit");
    payloads.push((RTP_PORT, rtp[..n].to_vec())); // 12

    // Every payload must also parse with our own iterator without error.
    for (port, p) in &payloads {
        if *port == RTCP_PORT {
            for r in Compound::new(p) {
                r.expect("our own output parses");
            }
        }
    }

    let dir = std::env::temp_dir().join(format!("rtp-core-tshark-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("all_types.pcap");
    {
        let file = std::fs::File::create(&path).unwrap();
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..Default::default()
        };
        let mut w = PcapWriter::with_header(file, header).unwrap();
        for (i, (port, p)) in payloads.iter().enumerate() {
            let f = frame(*port, p);
            w.write_packet(&PcapPacket::new(
                Duration::from_millis(i as u64 * 20),
                f.len() as u32,
                &f,
            ))
            .unwrap();
        }
    }

    // No malformed packets, no expert errors.
    let bad = tshark(
        &path,
        &["frame.number", "_ws.expert.message"],
        Some("_ws.malformed || _ws.expert.severity >= error"),
    );
    assert!(bad.is_empty(), "tshark flags problems: {bad:#?}");

    let fields = [
        "frame.number",
        "rtcp.pt",
        "rtcp.senderssrc",
        "rtcp.ssrc.identifier",
        "rtcp.ssrc.fraction",
        "rtcp.ssrc.cum_nr",
        "rtcp.ssrc.ext_high",
        "rtcp.ssrc.jitter",
        "rtcp.ssrc.lsr",
        "rtcp.ssrc.dlsr",
        "rtcp.sdes.text",
        "rtcp.sender.packetcount",
        "rtcp.rtpfb.nack_pid",
        "rtcp.rtpfb.nack_blp",
        "rtcp.psfb.fir.fci.csn",
        "rtcp.psfb.remb.fci.br_exp",
        "rtcp.psfb.remb.fci.br_mantissa",
        "rtcp.rtpfb.transportcc.baseseq",
        "rtcp.rtpfb.transportcc.statuscount",
        "rtcp.rtpfb.transportcc.pktcount",
        "rtcp.xr.bt",
        "rtcp.xr.voipmetrics.rfactor",
        "rtcp.app.name",
        "rtp.ssrc",
        "rtp.seq",
        "rtcp.mediassrc",
    ];
    let lines = tshark(&path, &fields, None);
    assert_eq!(lines.len(), payloads.len(), "{lines:#?}");
    if std::env::var_os("RTP_CORE_TSHARK_DUMP").is_some() {
        eprintln!("{lines:#?}");
    }
    let get = |frame: usize, field: &str| -> String {
        let i = fields.iter().position(|f| *f == field).unwrap();
        lines[frame - 1].split('|').nth(i).unwrap_or("").to_owned()
    };

    // 1: SR + SDES compound.
    assert_eq!(get(1, "rtcp.pt"), "200,202");
    assert_eq!(get(1, "rtcp.senderssrc"), "0x11111111");
    // The SDES chunk's SSRC is reported under the same field, after the blocks.
    assert_eq!(
        get(1, "rtcp.ssrc.identifier"),
        "0xaabbccdd,0x01020304,0x11111111"
    );
    assert_eq!(get(1, "rtcp.ssrc.fraction"), "64,0");
    assert_eq!(get(1, "rtcp.ssrc.cum_nr"), "1234,-3");
    assert_eq!(get(1, "rtcp.ssrc.ext_high"), "131088,99");
    assert_eq!(get(1, "rtcp.ssrc.jitter"), "77,5");
    assert_eq!(get(1, "rtcp.ssrc.lsr"), format!("{},0", 0x1234_5678));
    assert_eq!(get(1, "rtcp.ssrc.dlsr"), "98304,0");
    assert_eq!(get(1, "rtcp.sender.packetcount"), "1000");
    assert_eq!(get(1, "rtcp.sdes.text"), "user@host,rtp-core");
    // 2: RR.
    assert_eq!(get(2, "rtcp.pt"), "201");
    assert_eq!(get(2, "rtcp.senderssrc"), "0x22222222");
    assert_eq!(get(2, "rtcp.ssrc.identifier"), "0xaabbccdd");
    // 3: BYE (tshark shows the reason under the SDES text field).
    assert_eq!(get(3, "rtcp.pt"), "203");
    assert_eq!(get(3, "rtcp.ssrc.identifier"), "0x11111111");
    assert_eq!(get(3, "rtcp.sdes.text"), "call ended");
    // 4: APP.
    assert_eq!(get(4, "rtcp.pt"), "204");
    assert_eq!(get(4, "rtcp.app.name"), "TEST");
    // 5: NACK. 500 with 502 (bit 1) and 510 (bit 9): blp 0x0202; 700 alone. tshark
    // expands the bitmask itself and lists every lost packet ID it implies.
    assert_eq!(get(5, "rtcp.pt"), "205");
    assert_eq!(get(5, "rtcp.rtpfb.nack_pid"), "500,502,510,700");
    assert_eq!(get(5, "rtcp.rtpfb.nack_blp"), "0x0202,0x0000");
    assert_eq!(get(5, "rtcp.mediassrc"), "0x11111111");
    // 6: PLI.
    assert_eq!(get(6, "rtcp.pt"), "206");
    assert_eq!(get(6, "rtcp.mediassrc"), "0x11111111");
    // 7: FIR.
    assert_eq!(get(7, "rtcp.psfb.fir.fci.csn"), "42");
    // 8: REMB. 2.5e6 >> 4 = 156250 < 2^18, so exponent 4 and an exact mantissa.
    assert_eq!(get(8, "rtcp.psfb.remb.fci.br_exp"), "4");
    assert_eq!(get(8, "rtcp.psfb.remb.fci.br_mantissa"), "156250");
    // 9: TWCC.
    assert_eq!(get(9, "rtcp.rtpfb.transportcc.baseseq"), "300");
    assert_eq!(get(9, "rtcp.rtpfb.transportcc.statuscount"), "5");
    assert_eq!(get(9, "rtcp.rtpfb.transportcc.pktcount"), "7");
    // 10: XR with RRT, DLRR, loss RLE, stats summary, VoIP metrics.
    assert_eq!(get(10, "rtcp.pt"), "207");
    assert_eq!(get(10, "rtcp.xr.bt"), "4,5,1,6,7");
    assert_eq!(get(10, "rtcp.xr.voipmetrics.rfactor"), "88");
    // 11: RFC 8888 feedback: Wireshark 4.0 has no dissector for FMT 11; it must still
    // see an RTPFB packet of the right length and not call it malformed (checked above).
    assert_eq!(get(11, "rtcp.pt"), "205");
    assert_eq!(get(11, "rtcp.senderssrc"), "0x22222222");
    // 12: RTP with extensions.
    assert_eq!(get(12, "rtp.ssrc"), "0x55555555");
    assert_eq!(get(12, "rtp.seq"), "4242");

    std::fs::remove_dir_all(&dir).ok();
}
