//! Fixed-iteration fuzzing of the RTP view, RFC 8285 iterator and mutators, the
//! header writer and the RFC 7983 classifier: seeded random bytes and seeded
//! mutations of valid packets go into every entry point; nothing may panic, and
//! whatever a mutator accepts must come out as a packet that checks again.
//!
//! (RTCP cases live in their own file.) Runs well under 5 s in a debug build.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_core::demux::{classify, PacketKind};
use rtp_core::rtp::{
    remove_extension, set_extension, validate_rtp_header, RtpBuilder, RtpHeader, RtpPacket,
};

const ITERATIONS: usize = 100_000;

/// Reads everything a checked packet offers; returns a value so the work is used.
fn exercise_view(bytes: &[u8]) -> usize {
    let mut acc = usize::from(classify(bytes) == PacketKind::Rtp);
    let _ = validate_rtp_header(bytes);
    let Ok(p) = RtpPacket::new_checked(bytes) else {
        return acc;
    };
    // Checked: every accessor must work.
    acc += usize::from(p.version())
        + usize::from(p.marker())
        + usize::from(p.payload_type())
        + usize::from(p.sequence_number())
        + p.timestamp() as usize
        + p.ssrc() as usize
        + p.csrcs().count()
        + p.header_len()
        + p.padding_len()
        + p.payload().len()
        + p.extension_data().map_or(0, <[u8]>::len);
    for i in 0..16 {
        acc += p.csrc(i).map_or(0, |c| c as usize);
    }
    assert!(p.header_len() <= bytes.len());
    assert!(p.payload_range().end <= bytes.len());
    let ok = p.check_extensions().is_ok();
    let mut count = 0;
    for (id, data) in p.extensions() {
        assert_ne!(id, 0);
        acc += data.len();
        count += 1;
    }
    if ok && p.extension_form().is_some() {
        // A block that checks yields an element per extension(id) lookup.
        for (id, data) in p.extensions() {
            assert!(p.extension(id).is_some());
            let _ = data;
        }
    }
    for id in [0u8, 1, 2, 14, 15, 16, 255] {
        acc += p.extension(id).map_or(0, <[u8]>::len);
    }
    let _ = p.validate();
    // Parse -> emit keeps the header bytes after byte 0 (byte 0 differs only when
    // the P bit is set, which `emit` leaves clear).
    let h = RtpHeader::parse(&p);
    let mut out = [0u8; 2048];
    if let Ok(n) = h.emit(&mut out) {
        assert_eq!(n, p.header_len());
        assert_eq!(&out[1..n], &bytes[1..n]);
        assert_eq!(out[0] & !0x20, bytes[0] & !0x20);
    }
    acc + count
}

/// Runs the mutators on a copy with `headroom` spare bytes.
/// Returns whether `set_extension` accepted the edit.
fn exercise_mutators(bytes: &[u8], id: u8, data: &[u8], headroom: usize) -> bool {
    let mut buf = bytes.to_vec();
    buf.resize(bytes.len() + headroom, 0xee);
    let before = buf.clone();
    let res = set_extension(&mut buf, bytes.len(), id, data);
    match res {
        Ok(n) => {
            let p = RtpPacket::new_checked(&buf[..n]).expect("set_extension output must check");
            assert_eq!(p.check_extensions(), Ok(()));
            assert_eq!(p.extension(id), Some(data));
            let m = remove_extension(&mut buf, n, id).expect("remove after set");
            let q = RtpPacket::new_checked(&buf[..m]).expect("remove output must check");
            assert_eq!(q.extension(id), None);
        }
        Err(_) => assert_eq!(buf, before, "a failed set_extension must not modify"),
    }
    let mut buf = before.clone();
    if let Ok(n) = remove_extension(&mut buf, bytes.len(), id) {
        let p = RtpPacket::new_checked(&buf[..n]).expect("remove output must check");
        assert_eq!(p.extension(id), None);
    }
    // Setters on a mutable checked view, then the accessors again.
    let mut buf = bytes.to_vec();
    if let Ok(mut p) = RtpPacket::new_checked(&mut buf[..]) {
        p.set_marker(id & 1 == 1);
        p.set_payload_type(id);
        p.set_sequence_number(u16::from(id));
        p.set_timestamp(u32::from(id));
        p.set_ssrc(!u32::from(id));
        let _ = p.set_csrc(usize::from(id % 16), 7);
        p.payload_mut().fill(id);
        if let Some(e) = p.extension_mut(id) {
            e.fill(0x5a);
        }
        p.set_padding(id & 2 == 2);
        p.set_version(id);
        let _ = exercise_view(p.as_bytes());
        let _ = p.payload_mut().len();
    }
    res.is_ok()
}

fn random_bytes(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.gen_range(0..96);
    let mut v: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    // Steer most inputs into the RTP first-byte range so the parser gets past the
    // version check.
    if let Some(b) = v.first_mut() {
        if rng.gen_bool(0.8) {
            *b = (*b & 0x3f) | 0x80;
        }
    }
    v
}

fn valid_packet(rng: &mut StdRng) -> Vec<u8> {
    let n_ext = rng.gen_range(0..5);
    let mut data = Vec::new();
    for _ in 0..n_ext {
        let len = rng.gen_range(0..20);
        data.push((0..len).map(|_| rng.gen()).collect::<Vec<u8>>());
    }
    let exts: Vec<(u8, &[u8])> = data
        .iter()
        .map(|d| (rng.gen_range(1..=20u8), d.as_slice()))
        .collect();
    let csrcs: Vec<u32> = (0..rng.gen_range(0..4)).map(|_| rng.gen()).collect();
    let payload: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
    let mut buf = [0u8; 1024];
    let n = RtpBuilder::new()
        .payload_type(rng.gen_range(0..128))
        .sequence_number(rng.gen())
        .csrcs(&csrcs)
        .extensions(&exts)
        .payload(&payload)
        .padding(if rng.gen_bool(0.2) {
            rng.gen_range(1..8)
        } else {
            0
        })
        .emit(&mut buf)
        .expect("generated packet must serialise");
    buf[..n].to_vec()
}

fn mutate(rng: &mut StdRng, v: &mut Vec<u8>) {
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..4) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] = rng.gen();
            }
            2 => {
                let keep = rng.gen_range(0..=v.len());
                v.truncate(keep);
            }
            _ => v.push(rng.gen()),
        }
    }
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0001);
    let mut sink = 0usize;
    let mut checked = 0usize;
    let mut edited = 0usize;
    for i in 0..ITERATIONS {
        let bytes = match i % 3 {
            0 => random_bytes(&mut rng),
            1 => valid_packet(&mut rng),
            _ => {
                let mut v = valid_packet(&mut rng);
                mutate(&mut rng, &mut v);
                v
            }
        };
        sink = sink.wrapping_add(exercise_view(&bytes));
        checked += usize::from(RtpPacket::new_checked(&bytes[..]).is_ok());
        let id = if rng.gen_bool(0.5) {
            rng.gen_range(0..=16)
        } else {
            rng.gen()
        };
        let max = if rng.gen_bool(0.05) { 300 } else { 20 };
        let dlen = rng.gen_range(0..=max);
        let data: Vec<u8> = (0..dlen).map(|_| rng.gen()).collect();
        let headroom = rng.gen_range(0..48);
        edited += usize::from(exercise_mutators(&bytes, id, &data, headroom));
    }
    assert!(edited > ITERATIONS / 10, "only {edited} edits accepted");
    // The corpus must actually reach the checked paths, else this test proves little.
    assert!(checked > ITERATIONS / 3, "only {checked} inputs checked");
    assert_ne!(sink, 0);
}

#[test]
fn classify_never_panics_on_short_inputs() {
    // Every 0-, 1- and 2-byte input.
    assert_eq!(classify(&[]), PacketKind::Unknown);
    for a in 0..=255u8 {
        let _ = classify(&[a]);
        for b in 0..=255u8 {
            let k = classify(&[a, b]);
            let rtp_range = (128..=191).contains(&a);
            assert_eq!(
                matches!(k, PacketKind::Rtp | PacketKind::Rtcp),
                rtp_range,
                "{a} {b}"
            );
        }
    }
}
