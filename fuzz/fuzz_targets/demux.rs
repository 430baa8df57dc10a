//! RFC 7983 classification never panics and agrees with the first-byte table.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_core::demux::{classify, PacketKind};

fuzz_target!(|data: &[u8]| {
    let kind = classify(data);
    if let Some(&b) = data.first() {
        let rtp_range = (128..=191).contains(&b) && data.len() >= 2;
        assert_eq!(matches!(kind, PacketKind::Rtp | PacketKind::Rtcp), rtp_range);
    } else {
        assert_eq!(kind, PacketKind::Unknown);
    }
});
