//! STUN parsing, and every check of the ICE-lite responder, never panic,
//! whatever the bytes: the message accessors, then an `IceLite` with known
//! credentials fed the datagram as it came (both components), then the same
//! bytes as the attributes of a check signed with its credentials (so that the
//! checks after authentication run too), before and after an ICE restart.
#![no_main]

use std::net::SocketAddr;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rtp_control::{IceCredentials, IceLegParams, IceLite};
use rtp_core::stun::{Class, MessageWriter, StunMessage, BINDING};

const PWD: &str = "fuzz+password+fuzz+pass";

fn creds(ufrag: &str, pwd: &str) -> IceCredentials {
    IceCredentials {
        ufrag: ufrag.into(),
        pwd: pwd.into(),
    }
}

/// A Binding request: USERNAME `FuZz:PeEr`, then `data` read as attributes
/// (type: 2 bytes, length: 1 byte, value), MESSAGE-INTEGRITY with `PWD`,
/// FINGERPRINT.
fn signed(data: &[u8], buf: &mut [u8]) -> usize {
    let Ok(mut w) = MessageWriter::new(buf, Class::Request, BINDING, &[7; 12]) else {
        return 0;
    };
    let _ = w.username("FuZz:PeEr");
    let mut rest = data;
    while let [t0, t1, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        if w.attribute(u16::from_be_bytes([*t0, *t1]), &tail[..n]).is_err() {
            break;
        }
        rest = &tail[n..];
    }
    let _ = w
        .message_integrity(PWD.as_bytes())
        .and_then(|w| w.fingerprint());
    w.finish()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = StunMessage::new_checked(data) {
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
    }

    let mut ice = IceLite::new(IceLegParams {
        local: creds("FuZz", PWD),
        remote: Some(creds("PeEr", "peer+password+peer+pass")),
    });
    let now = Instant::now();
    let from: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    for component in [1, 2] {
        let _ = ice.on_datagram(data, from, component, now);
    }
    let mut buf = [0u8; 2048];
    let n = signed(data, &mut buf);
    let _ = ice.on_datagram(&buf[..n], from, 1, now);
    // After a restart the same check authenticates with the previous
    // credentials; the guard refuses the source as one of "our" ports.
    ice.set_params(IceLegParams {
        local: creds("NeWu", "new+password+new+passwd"),
        remote: None,
    });
    let _ = ice.on_datagram_guarded(&buf[..n], from, 2, now, |a| a.port() == 5000);
});
