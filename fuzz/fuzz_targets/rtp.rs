//! RTP view: checked parse, every accessor, validation, and parse -> emit of the
//! header reproduces the input header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_core::rtp::{validate_rtp_header, RtpHeader, RtpPacket};

fuzz_target!(|data: &[u8]| {
    let _ = validate_rtp_header(data);
    let Ok(p) = RtpPacket::new_checked(data) else {
        return;
    };
    let _ = (p.marker(), p.payload_type(), p.sequence_number(), p.timestamp(), p.ssrc());
    let _ = (p.csrcs().count(), p.payload().len(), p.padding_len());
    let h = RtpHeader::parse(&p);
    let mut out = vec![0u8; data.len()];
    let n = h.emit(&mut out).expect("a parsed header re-emits");
    assert_eq!(&out[1..n], &data[1..n]);
});
