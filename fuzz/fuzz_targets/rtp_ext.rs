//! RFC 8285 extensions: iterator and lookup on arbitrary packets, then
//! set / remove in place; whatever the mutators accept must check again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_core::rtp::{remove_extension, set_extension, RtpPacket};

fuzz_target!(|input: &[u8]| {
    // First bytes steer the edit: id, data length, headroom.
    let [id, dlen, headroom, rest @ ..] = input else {
        return;
    };
    let Ok(p) = RtpPacket::new_checked(rest) else {
        return;
    };
    let _ = p.check_extensions();
    for (i, d) in p.extensions() {
        assert_ne!(i, 0);
        let _ = d.len();
    }
    let _ = p.extension(*id);

    let data_len = usize::from(*dlen).min(rest.len());
    let data = &rest[..data_len];
    let mut buf = rest.to_vec();
    buf.resize(rest.len() + usize::from(*headroom), 0);
    if let Ok(n) = set_extension(&mut buf, rest.len(), *id, data) {
        let q = RtpPacket::new_checked(&buf[..n]).expect("set output checks");
        assert_eq!(q.extension(*id), Some(data));
        let m = remove_extension(&mut buf, n, *id).expect("remove after set");
        let r = RtpPacket::new_checked(&buf[..m]).expect("remove output checks");
        assert_eq!(r.extension(*id), None);
    }
});
