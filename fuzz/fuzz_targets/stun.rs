//! STUN parsing and every check an ICE-lite responder makes on a datagram never
//! panic, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtp_core::stun::StunMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = StunMessage::new_checked(data) else { return };
    let _ = (m.class(), m.method(), m.transaction_id());
    for a in m.attributes() {
        std::hint::black_box(a);
    }
    let _ = m.username();
    let _ = m.priority();
    let _ = m.use_candidate();
    let _ = m.ice_role();
    let _ = m.xor_mapped_address();
    let _ = m.error_code();
    let _ = m.check_fingerprint();
    let _ = m.check_integrity(b"a-password-of-22-chars");
    let _ = m.unknown_required::<4>();
});
