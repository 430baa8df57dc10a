//! Hand-built byte arrays: RFC 8285 examples, every malformed-input error, the
//! writer and the in-place extension mutators. Expected bytes are computed by hand
//! from the RFC layouts (see the comments), never copied from our own output.

use super::*;

/// Fixed header: V=2, X as given, CC=0, PT 96, seq 0x0102, ts 0x03040506,
/// SSRC 0x0708090a.
fn fixed(x: bool) -> [u8; 12] {
    [
        0x80 | if x { 0x10 } else { 0 },
        96,
        0x01,
        0x02,
        0x03,
        0x04,
        0x05,
        0x06,
        0x07,
        0x08,
        0x09,
        0x0a,
    ]
}

fn packet(x: bool, rest: &[u8]) -> Vec<u8> {
    let mut v = fixed(x).to_vec();
    v.extend_from_slice(rest);
    v
}

#[test]
fn rfc8285_one_byte_example() {
    // RFC 8285 section 4.2 figure: 0xBEDE, length 3 words; an element with L=0
    // (1 byte), one with L=1 (2 bytes), two padding bytes, one with L=3 (4 bytes).
    let p = packet(
        true,
        &[
            0xbe, 0xde, 0x00, 0x03, //
            0x10, 0xa1, 0x21, 0xb1, //
            0xb2, 0x00, 0x00, 0x33, //
            0xc1, 0xc2, 0xc3, 0xc4, //
            0xff, // payload
        ],
    );
    let pkt = RtpPacket::new_checked(&p[..]).unwrap();
    assert_eq!(pkt.header_len(), 12 + 4 + 12);
    assert_eq!(pkt.extension_form(), Some(ExtensionForm::OneByte));
    let got: Vec<_> = pkt.extensions().collect();
    assert_eq!(
        got,
        vec![
            (1, &[0xa1][..]),
            (2, &[0xb1, 0xb2][..]),
            (3, &[0xc1, 0xc2, 0xc3, 0xc4][..])
        ]
    );
    assert_eq!(pkt.extension(2), Some(&[0xb1, 0xb2][..]));
    assert_eq!(pkt.extension(4), None);
    assert_eq!(pkt.extension(0), None);
    assert_eq!(pkt.payload(), &[0xff]);
    assert_eq!(pkt.check_extensions(), Ok(()));
}

#[test]
fn rfc8285_two_byte_example() {
    // RFC 8285 section 4.3 figure: 0x1000, length 3; id 1 L=0, id 2 L=1, one
    // padding byte, id 3 L=4.
    let p = packet(
        true,
        &[
            0x10, 0x00, 0x00, 0x03, //
            0x01, 0x00, 0x02, 0x01, //
            0xd1, 0x00, 0x03, 0x04, //
            0xe1, 0xe2, 0xe3, 0xe4,
        ],
    );
    let pkt = RtpPacket::new_checked(&p[..]).unwrap();
    assert_eq!(
        pkt.extension_form(),
        Some(ExtensionForm::TwoByte { app_bits: 0 })
    );
    let got: Vec<_> = pkt.extensions().collect();
    assert_eq!(
        got,
        vec![
            (1, &[][..]),
            (2, &[0xd1][..]),
            (3, &[0xe1, 0xe2, 0xe3, 0xe4][..])
        ]
    );
    assert!(pkt.payload().is_empty());
}

#[test]
fn one_byte_id_15_stops_processing() {
    // id 1 L=0, then 0xF0 (id 15): what follows (id 2 L=0 0xbb) is ignored.
    let p = packet(
        true,
        &[0xbe, 0xde, 0, 2, 0x10, 0xaa, 0xf0, 0x20, 0xbb, 0, 0, 0],
    );
    let pkt = RtpPacket::new_checked(&p[..]).unwrap();
    assert_eq!(pkt.extensions().collect::<Vec<_>>(), vec![(1, &[0xaa][..])]);
    assert_eq!(pkt.extension(2), None);
    assert_eq!(pkt.check_extensions(), Ok(()));
}

#[test]
fn malformed_elements_are_typed_errors() {
    let cases: &[&[u8]] = &[
        // one-byte: id 1 L=3 needs 4 data bytes, only 3 left in the block.
        &[0xbe, 0xde, 0, 1, 0x13, 1, 2, 3],
        // one-byte: id 0 with a non-zero length is not padding.
        &[0xbe, 0xde, 0, 1, 0x05, 0, 0, 0],
        // two-byte: id 5 in the last byte, no room for its length byte.
        &[0x10, 0x00, 0, 1, 0, 0, 0, 5],
        // two-byte: id 1 L=200, far past the 4-byte block.
        &[0x10, 0x00, 0, 1, 1, 200, 0, 0],
    ];
    for rest in cases {
        let p = packet(true, rest);
        let pkt = RtpPacket::new_checked(&p[..]).unwrap();
        assert_eq!(
            pkt.check_extensions(),
            Err(WireError::BadExtension),
            "{rest:x?}"
        );
        assert_eq!(pkt.validate(), Err(WireError::BadExtension));
        // The iterator stops instead of yielding garbage.
        assert_eq!(pkt.extensions().count(), 0);
        let mut buf = p.clone();
        buf.resize(200, 0);
        assert_eq!(
            set_extension(&mut buf, p.len(), 2, &[1]),
            Err(WireError::BadExtension)
        );
    }
}

#[test]
fn length_errors() {
    // Truncated: 11 bytes.
    assert_eq!(
        RtpPacket::new_checked(&fixed(false)[..11]),
        Err(WireError::Truncated)
    );
    // Version 3.
    let mut p = fixed(false);
    p[0] = 0xc0;
    assert_eq!(
        RtpPacket::new_checked(&p[..]),
        Err(WireError::BadVersion(3))
    );
    // CC=2 promises 8 bytes of CSRC, only 4 present.
    let mut p = packet(false, &[0, 0, 0, 1]);
    p[0] |= 2;
    assert_eq!(RtpPacket::new_checked(&p[..]), Err(WireError::CsrcOverrun));
    // X set, extension header present but length 2 words with only 4 bytes.
    let p = packet(true, &[0xbe, 0xde, 0, 2, 0x10, 0, 0, 0]);
    assert_eq!(
        RtpPacket::new_checked(&p[..]),
        Err(WireError::ExtensionOverrun)
    );
    // X set, only 3 bytes of the extension header.
    let p = packet(true, &[0xbe, 0xde, 0]);
    assert_eq!(
        RtpPacket::new_checked(&p[..]),
        Err(WireError::ExtensionOverrun)
    );
    // P set, padding count 5 but only 4 bytes after the header.
    let mut p = packet(false, &[0, 0, 0, 5]);
    p[0] |= 0x20;
    assert_eq!(RtpPacket::new_checked(&p[..]), Err(WireError::BadPadding));
    // P set, padding count 0.
    let mut p = packet(false, &[1, 2, 3, 0]);
    p[0] |= 0x20;
    assert_eq!(RtpPacket::new_checked(&p[..]), Err(WireError::BadPadding));
    // P set, count 4 with exactly 4 bytes after the header: empty payload, valid.
    let mut p = packet(false, &[0, 0, 0, 4]);
    p[0] |= 0x20;
    let pkt = RtpPacket::new_checked(&p[..]).unwrap();
    assert_eq!(pkt.padding_len(), 4);
    assert!(pkt.payload().is_empty());
}

#[test]
fn rfc3550_a1_payload_type_check() {
    for (pt, ok) in [(71, true), (72, false), (76, false), (77, true), (0, true)] {
        let mut p = fixed(false);
        p[1] = pt;
        let r = validate_rtp_header(&p);
        assert_eq!(r.is_ok(), ok, "pt {pt}");
        if !ok {
            assert_eq!(r.err(), Some(WireError::RtcpPayloadType(pt)));
        }
    }
    // A foreign extension profile is not inspected: still valid.
    let p = packet(true, &[0x12, 0x34, 0, 1, 0xff, 0xff, 0xff, 0xff]);
    assert!(validate_rtp_header(&p).is_ok());
}

#[test]
fn setters_write_the_right_bytes() {
    // CC=1 with CSRC 0, payload [9, 9].
    let mut p = packet(false, &[0, 0, 0, 0, 9, 9]);
    p[0] |= 1;
    let mut pkt = RtpPacket::new_checked(&mut p[..]).unwrap();
    pkt.set_marker(true);
    pkt.set_payload_type(0);
    pkt.set_sequence_number(0xfffe);
    pkt.set_timestamp(0x1122_3344);
    pkt.set_ssrc(0xcafe_babe);
    pkt.set_csrc(0, 0x0102_0304).unwrap();
    assert_eq!(pkt.set_csrc(1, 0), Err(WireError::InvalidValue));
    pkt.payload_mut().copy_from_slice(&[7, 8]);
    assert_eq!(
        pkt.as_bytes(),
        &[
            0x81, 0x80, 0xff, 0xfe, 0x11, 0x22, 0x33, 0x44, 0xca, 0xfe, 0xba, 0xbe, 1, 2, 3, 4, 7,
            8
        ]
    );
    pkt.set_version(1);
    assert_eq!(pkt.version(), 1);
    // Flipping P on a packet whose last byte (8) exceeds the payload must not let
    // any accessor panic.
    pkt.set_version(2);
    pkt.set_padding(true);
    assert!(pkt.payload().is_empty());
    assert_eq!(pkt.payload_mut().len(), 0);
}

#[test]
fn extension_mut_rewrites_in_place() {
    let mut p = packet(true, &[0xbe, 0xde, 0, 1, 0x21, 0xaa, 0xbb, 0]);
    let mut pkt = RtpPacket::new_checked(&mut p[..]).unwrap();
    pkt.extension_mut(2).unwrap().copy_from_slice(&[1, 2]);
    assert!(pkt.extension_mut(3).is_none());
    assert_eq!(&p[16..20], &[0x21, 1, 2, 0]);
}

#[test]
fn builder_writes_hand_computed_bytes() {
    let exts: [(u8, &[u8]); 2] = [(1, &[0xaa]), (2, &[0xbb, 0xcc])];
    let mut buf = [0u8; 64];
    let n = RtpBuilder::new()
        .marker(true)
        .payload_type(111)
        .sequence_number(0x0102)
        .timestamp(0x0304_0506)
        .ssrc(0x0708_090a)
        .csrcs(&[0xdead_beef])
        .extensions(&exts)
        .payload(&[0x55; 3])
        .padding(2)
        .emit(&mut buf)
        .unwrap();
    // 12 fixed + 4 CSRC + 4 ext header + 5 element bytes padded to 8 + 3 + 2.
    assert_eq!(n, 12 + 4 + 4 + 8 + 3 + 2);
    let want: [u8; 33] = [
        0xb1, // V=2 P=1 X=1 CC=1
        0xef, // M=1 PT=111
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, //
        0xde, 0xad, 0xbe, 0xef, // CSRC
        0xbe, 0xde, 0x00, 0x02, // one-byte form, 2 words
        0x10, 0xaa, 0x21, 0xbb, 0xcc, 0x00, 0x00, 0x00, // id1 L0, id2 L1, pad
        0x55, 0x55, 0x55, // payload
        0x00, 0x02, // RTP padding, count 2
    ];
    assert_eq!(&buf[..n], &want);
    let pkt = RtpPacket::new_checked(&buf[..n]).unwrap();
    assert_eq!(pkt.payload(), &[0x55; 3]);
    assert_eq!(pkt.extension(2), Some(&[0xbb, 0xcc][..]));

    // Too small by one byte.
    let mut small = [0u8; 32];
    assert_eq!(
        RtpBuilder::new().payload(&[0; 20]).emit(&mut small[..31]),
        Err(WireError::BufferTooSmall)
    );
    // 16 CSRCs, PT 128, id 0, 256-byte element.
    assert_eq!(
        RtpBuilder::new().csrcs(&[0; 16]).emit(&mut buf),
        Err(WireError::InvalidValue)
    );
    assert_eq!(
        RtpBuilder::new().payload_type(128).emit(&mut buf),
        Err(WireError::InvalidValue)
    );
    let bad: [(u8, &[u8]); 1] = [(0, &[1])];
    assert_eq!(
        RtpBuilder::new().extensions(&bad).emit(&mut buf),
        Err(WireError::InvalidValue)
    );
    let big = [0u8; 256];
    let bad: [(u8, &[u8]); 1] = [(1, &big)];
    assert_eq!(
        RtpBuilder::new().extensions(&bad).emit(&mut [0u8; 400]),
        Err(WireError::InvalidValue)
    );
}

#[test]
fn builder_picks_two_byte_form() {
    // id 15 forces two-byte form: 0x1000, id 15 L=1 data, id 1 L=0 -> 5 bytes -> 2 words.
    let exts: [(u8, &[u8]); 2] = [(15, &[0x77]), (1, &[])];
    let mut buf = [0u8; 64];
    let n = RtpBuilder::new().extensions(&exts).emit(&mut buf).unwrap();
    assert_eq!(&buf[12..n], &[0x10, 0x00, 0, 2, 15, 1, 0x77, 1, 0, 0, 0, 0]);
    assert_eq!(buf[0], 0x90);
}

#[test]
fn add_to_packet_without_extension() {
    // Payload [1,2,3], RTP padding of 1 byte (count 1) kept at the end.
    let mut buf = [0u8; 64];
    let base = packet(false, &[1, 2, 3, 1]);
    buf[..16].copy_from_slice(&base);
    buf[0] |= 0x20;
    let n = set_extension(&mut buf, 16, 3, &[0xab, 0xcd]).unwrap();
    // + 4 ext header + (1 + 2 = 3 bytes padded to 4).
    assert_eq!(n, 24);
    assert_eq!(buf[0], 0xb0); // V=2 P=1 X=1
    assert_eq!(
        &buf[12..24],
        &[0xbe, 0xde, 0, 1, 0x31, 0xab, 0xcd, 0, 1, 2, 3, 1]
    );
    let pkt = RtpPacket::new_checked(&buf[..n]).unwrap();
    assert_eq!(pkt.payload(), &[1, 2, 3]);

    // Replace with same size: element rewritten in place.
    let n = set_extension(&mut buf, n, 3, &[0x11, 0x22]).unwrap();
    assert_eq!(
        &buf[12..24],
        &[0xbe, 0xde, 0, 1, 0x31, 0x11, 0x22, 0, 1, 2, 3, 1]
    );

    // Remove the only element: the block disappears and X is cleared.
    let n = remove_extension(&mut buf, n, 3).unwrap();
    assert_eq!(n, 16);
    assert_eq!(
        &buf[..16],
        &{
            let mut b = base.clone();
            b[0] |= 0x20;
            b
        }[..]
    );
    // Removing an absent id is a no-op.
    assert_eq!(remove_extension(&mut buf, n, 3), Ok(16));
}

#[test]
fn add_converts_one_byte_block_to_two_byte() {
    // One-byte block: id 1 L=0 [0xaa], padding 0, id 2 L=1 [0xbb 0xcc], then 2
    // padding bytes -> 2 words. Payload [0x99].
    let orig = packet(
        true,
        &[
            0xbe, 0xde, 0, 2, 0x10, 0xaa, 0x00, 0x21, 0xbb, 0xcc, 0, 0, 0x99,
        ],
    );
    let mut buf = [0u8; 64];
    buf[..orig.len()].copy_from_slice(&orig);
    // id 20 cannot be one-byte: convert. Two-byte layout: [1,1,aa][2,2,bb,cc]
    // [20,0] = 3 + 4 + 2 = 9 bytes -> 3 words.
    let n = set_extension(&mut buf, orig.len(), 20, &[]).unwrap();
    assert_eq!(n, 12 + 4 + 12 + 1);
    assert_eq!(
        &buf[12..n],
        &[0x10, 0x00, 0, 3, 1, 1, 0xaa, 2, 2, 0xbb, 0xcc, 20, 0, 0, 0, 0, 0x99]
    );
    // Removing id 1 keeps the two-byte form: [2,2,bb,cc][20,0] = 6 -> 2 words.
    let n = remove_extension(&mut buf, n, 1).unwrap();
    assert_eq!(
        &buf[12..n],
        &[0x10, 0x00, 0, 2, 2, 2, 0xbb, 0xcc, 20, 0, 0, 0, 0x99]
    );
}

#[test]
fn add_without_room_is_buffer_too_small_and_leaves_bytes() {
    let orig = packet(false, &[1, 2, 3]);
    let mut buf = orig.clone();
    buf.extend_from_slice(&[0xee; 7]); // 7 spare bytes, 8 needed.
    let before = buf.clone();
    assert_eq!(
        set_extension(&mut buf, orig.len(), 1, &[5, 6, 7]),
        Err(WireError::BufferTooSmall)
    );
    assert_eq!(buf, before);
    // Bad arguments.
    assert_eq!(
        set_extension(&mut buf, 15, 0, &[1]),
        Err(WireError::InvalidValue)
    );
    assert_eq!(
        set_extension(&mut buf, 15, 1, &[0; 256]),
        Err(WireError::InvalidValue)
    );
    assert_eq!(
        set_extension(&mut buf, 99, 1, &[1]),
        Err(WireError::InvalidValue)
    );
    assert_eq!(
        set_extension(&mut buf, 5, 1, &[1]),
        Err(WireError::Truncated)
    );
    // A foreign profile block is left alone.
    let mut p = packet(true, &[0x12, 0x34, 0, 0]);
    p.resize(40, 0);
    assert_eq!(
        set_extension(&mut p, 16, 1, &[1]),
        Err(WireError::BadExtension)
    );
}

#[test]
fn header_parse_emit_is_byte_identical() {
    let p = packet(true, &[0x10, 0x03, 0, 1, 7, 1, 0x42, 0, 0xde, 0xad]);
    let pkt = RtpPacket::new_checked(&p[..]).unwrap();
    let h = RtpHeader::parse(&pkt);
    assert_eq!(h.sequence_number, 0x0102);
    assert_eq!(
        h.extension,
        HeaderExtension::Raw {
            profile: 0x1003,
            body: &[7, 1, 0x42, 0]
        }
    );
    let mut out = [0u8; 64];
    let n = h.emit_packet(pkt.payload(), 0, &mut out).unwrap();
    assert_eq!(&out[..n], &p[..]);
}

#[test]
fn rewrite_drops_what_follows_id_15() {
    // id 1 L=0 [0xaa], id 15 terminator, then bytes that must be ignored.
    let orig = packet(
        true,
        &[0xbe, 0xde, 0, 2, 0x10, 0xaa, 0xf0, 0x20, 0xbb, 0, 0, 0],
    );
    let mut buf = [0u8; 64];
    buf[..orig.len()].copy_from_slice(&orig);
    // Add id 2 L=0 [0xcc]: [0x10 aa][0x20 cc] = 4 bytes = 1 word.
    let n = set_extension(&mut buf, orig.len(), 2, &[0xcc]).unwrap();
    assert_eq!(&buf[12..n], &[0xbe, 0xde, 0, 1, 0x10, 0xaa, 0x20, 0xcc]);
}
