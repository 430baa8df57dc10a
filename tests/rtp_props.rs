//! Property tests of the RTP writer, view and extension mutators.
//!
//! - builder output parses back to the values it was given;
//! - parse -> emit of a valid packet is byte-identical;
//! - add / replace / remove of an extension element behaves like the same edit on
//!   a plain list of `(id, data)`, leaves every other field alone, and add then
//!   remove restores the original bytes when the block form did not change.

use proptest::collection::vec;
use proptest::prelude::*;
use rtp_core::rtp::{
    remove_extension, set_extension, ExtensionForm, HeaderExtension, RtpBuilder, RtpHeader,
    RtpPacket,
};

#[derive(Debug, Clone)]
struct Fields {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    csrcs: Vec<u32>,
    payload: Vec<u8>,
    padding: u8,
}

fn fields() -> impl Strategy<Value = Fields> {
    (
        any::<bool>(),
        0u8..128,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
        vec(any::<u32>(), 0..=15),
        vec(any::<u8>(), 0..64),
        any::<u8>(),
    )
        .prop_map(
            |(marker, pt, seq, ts, ssrc, csrcs, payload, padding)| Fields {
                marker,
                pt,
                seq,
                ts,
                ssrc,
                csrcs,
                payload,
                padding,
            },
        )
}

/// Elements with distinct ids. Half the time restricted to what fits the
/// one-byte form, so both forms are exercised.
fn elements() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    prop_oneof![
        vec((1u8..=14, vec(any::<u8>(), 1..=16)), 0..6),
        vec((1u8..=255, vec(any::<u8>(), 0..=40)), 0..6),
    ]
    .prop_map(|mut v| {
        let mut seen = [false; 256];
        v.retain(|(id, _)| !std::mem::replace(&mut seen[usize::from(*id)], true));
        v
    })
}

fn borrowed(list: &[(u8, Vec<u8>)]) -> Vec<(u8, &[u8])> {
    list.iter().map(|(i, d)| (*i, d.as_slice())).collect()
}

fn build(f: &Fields, ext: &[(u8, &[u8])], buf: &mut [u8]) -> usize {
    RtpBuilder::new()
        .marker(f.marker)
        .payload_type(f.pt)
        .sequence_number(f.seq)
        .timestamp(f.ts)
        .ssrc(f.ssrc)
        .csrcs(&f.csrcs)
        .extensions(ext)
        .payload(&f.payload)
        .padding(f.padding)
        .emit(buf)
        .expect("valid fields must serialise")
}

fn owned_exts<T: AsRef<[u8]>>(p: &RtpPacket<T>) -> Vec<(u8, Vec<u8>)> {
    p.extensions().map(|(i, d)| (i, d.to_vec())).collect()
}

fn assert_fields<T: AsRef<[u8]>>(p: &RtpPacket<T>, f: &Fields) {
    assert_eq!(p.version(), 2);
    assert_eq!(p.marker(), f.marker);
    assert_eq!(p.payload_type(), f.pt);
    assert_eq!(p.sequence_number(), f.seq);
    assert_eq!(p.timestamp(), f.ts);
    assert_eq!(p.ssrc(), f.ssrc);
    assert_eq!(p.csrcs().collect::<Vec<_>>(), f.csrcs);
    assert_eq!(p.payload(), &f.payload[..]);
    assert_eq!(p.padding_len(), usize::from(f.padding));
    assert_eq!(p.has_padding(), f.padding != 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn builder_output_parses_back(f in fields(), ext in elements()) {
        let ext_b = borrowed(&ext);
        let mut buf = [0u8; 2048];
        let n = build(&f, &ext_b, &mut buf);
        let p = RtpPacket::new_checked(&buf[..n]).expect("builder output must parse");
        assert_fields(&p, &f);
        prop_assert_eq!(p.validate().is_ok(), !(72..=76).contains(&f.pt));
        prop_assert_eq!(owned_exts(&p), ext.clone());
        prop_assert_eq!(p.has_extension(), !ext.is_empty());
        if !ext.is_empty() {
            let one = ext.iter().all(|(i, d)| *i <= 14 && (1..=16).contains(&d.len()));
            let want = if one { ExtensionForm::OneByte } else { ExtensionForm::TwoByte { app_bits: 0 } };
            prop_assert_eq!(p.extension_form(), Some(want));
        }
        for (id, data) in &ext {
            prop_assert_eq!(p.extension(*id), Some(&data[..]));
        }
        // The header length is a multiple of 4 (RFC 3550 5.3.1 and RFC 8285).
        prop_assert_eq!(p.header_len() % 4, 0);
    }

    #[test]
    fn parse_then_emit_is_byte_identical(
        f in fields(),
        raw in proptest::option::of((any::<u16>(), vec(any::<u8>(), 0..10))),
    ) {
        // A valid packet with an arbitrary (possibly foreign-profile) raw block.
        let body: Vec<u8> = raw.as_ref().map(|(_, w)| {
            let mut b = w.clone();
            b.resize(w.len().div_ceil(4) * 4, 0);
            b
        }).unwrap_or_default();
        let mut buf = [0u8; 2048];
        let mut b = RtpBuilder::new()
            .marker(f.marker).payload_type(f.pt).sequence_number(f.seq).timestamp(f.ts)
            .ssrc(f.ssrc).csrcs(&f.csrcs).payload(&f.payload).padding(f.padding);
        if let Some((profile, _)) = raw {
            b = b.raw_extension(profile, &body);
        }
        let n = b.emit(&mut buf).unwrap();
        let input = buf[..n].to_vec();

        let p = RtpPacket::new_checked(&input[..]).unwrap();
        let h = RtpHeader::parse(&p);
        prop_assert_eq!(h.csrc_list(), &f.csrcs[..]);
        let mut out = [0u8; 2048];
        let m = h.emit_packet(p.payload(), p.padding_len() as u8, &mut out).unwrap();
        prop_assert_eq!(&out[..m], &input[..]);
        // The header alone, too.
        let hl = h.emit(&mut out).unwrap();
        prop_assert_eq!(hl, p.header_len());
        prop_assert_eq!(&out[1..hl], &input[1..hl]);
    }

    #[test]
    fn set_and_remove_extension_follow_the_list_model(
        f in fields(),
        ext in elements(),
        new_id in 1u8..=255,
        new_data in vec(any::<u8>(), 0..=20),
        headroom in 0usize..64,
    ) {
        let ext_b = borrowed(&ext);
        let mut buf = vec![0u8; 2048];
        let n = build(&f, &ext_b, &mut buf);
        let orig = buf[..n].to_vec();
        let orig_form = RtpPacket::new_checked(&orig[..]).unwrap().extension_form();
        buf.truncate(n + headroom);

        // Model: drop any element with new_id, append the new one.
        let mut model: Vec<(u8, Vec<u8>)> = ext.iter().filter(|(i, _)| *i != new_id).cloned().collect();
        model.push((new_id, new_data.clone()));

        match set_extension(&mut buf, n, new_id, &new_data) {
            Err(e) => {
                // Only lack of room may fail, and then nothing changed.
                prop_assert_eq!(e, rtp_core::WireError::BufferTooSmall);
                prop_assert_eq!(&buf[..n], &orig[..]);
            }
            Ok(m) => {
                prop_assert!(m <= buf.len());
                let p = RtpPacket::new_checked(&buf[..m]).unwrap();
                assert_fields(&p, &f);
                prop_assert_eq!(p.check_extensions(), Ok(()));
                prop_assert_eq!(owned_exts(&p), model.clone());
                let form = p.extension_form().unwrap();
                let want_two = matches!(orig_form, Some(ExtensionForm::TwoByte { .. }))
                    || !(new_id <= 14 && (1..=16).contains(&new_data.len()));
                prop_assert_eq!(matches!(form, ExtensionForm::TwoByte { .. }), want_two);
                prop_assert_eq!(p.header_len() % 4, 0);

                // Remove it again.
                let r = remove_extension(&mut buf, m, new_id).unwrap();
                let q = RtpPacket::new_checked(&buf[..r]).unwrap();
                assert_fields(&q, &f);
                let without: Vec<_> = model[..model.len() - 1].to_vec();
                prop_assert_eq!(owned_exts(&q), without.clone());
                prop_assert_eq!(q.has_extension(), !without.is_empty());
                // A fresh id on a compact block, no form switch: exact original bytes.
                let fresh = !ext.iter().any(|(i, _)| *i == new_id);
                if fresh && (orig_form.is_none() || Some(form) == orig_form) {
                    prop_assert_eq!(&buf[..r], &orig[..]);
                }
            }
        }
    }

    #[test]
    fn remove_existing_follows_the_list_model(
        f in fields(),
        ext in elements(),
        pick in any::<prop::sample::Index>(),
    ) {
        prop_assume!(!ext.is_empty());
        let victim = ext[pick.index(ext.len())].0;
        let ext_b = borrowed(&ext);
        let mut buf = [0u8; 2048];
        let n = build(&f, &ext_b, &mut buf);
        let m = remove_extension(&mut buf, n, victim).unwrap();
        prop_assert!(m <= n); // block padding may absorb the removed bytes
        let p = RtpPacket::new_checked(&buf[..m]).unwrap();
        assert_fields(&p, &f);
        let model: Vec<_> = ext.iter().filter(|(i, _)| *i != victim).cloned().collect();
        prop_assert_eq!(owned_exts(&p), model.clone());
        // What the builder writes for the smaller list is what the remover left.
        let mut fresh = [0u8; 2048];
        let model_b = borrowed(&model);
        let k = build(&f, &model_b, &mut fresh);
        let same_form = model.is_empty()
            || RtpPacket::new_checked(&fresh[..k]).unwrap().extension_form() == p.extension_form();
        if same_form {
            prop_assert_eq!(&buf[..m], &fresh[..k]);
        }
    }
}

#[test]
fn raw_header_extension_roundtrip_keeps_app_bits() {
    // Two-byte form with appbits 0xA: parse keeps the profile, the iterator still
    // understands it, and adding an element keeps the appbits.
    let mut buf = [0u8; 64];
    let body = [1u8, 1, 0x42, 0];
    let n = RtpBuilder::new()
        .raw_extension(0x100a, &body)
        .emit(&mut buf)
        .unwrap();
    let p = RtpPacket::new_checked(&buf[..n]).unwrap();
    assert_eq!(
        p.extension_form(),
        Some(ExtensionForm::TwoByte { app_bits: 0xa })
    );
    assert!(matches!(
        RtpHeader::parse(&p).extension,
        HeaderExtension::Raw {
            profile: 0x100a,
            ..
        }
    ));
    let m = set_extension(&mut buf, n, 2, &[7]).unwrap();
    let p = RtpPacket::new_checked(&buf[..m]).unwrap();
    assert_eq!(p.extension_profile(), Some(0x100a));
    assert_eq!(
        p.extensions().collect::<Vec<_>>(),
        vec![(1, &[0x42][..]), (2, &[7][..])]
    );
}
