//! The dataplane with libsrtp peers on both sides: a libsrtp sender's SRTP/SRTCP
//! (AES-CM-80) is unprotected by a worker, re-keyed to AES-GCM-128 and accepted by
//! a libsrtp receiver, and back, on both I/O backends, across the sequence wrap.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use libsrtp_shim::Session;
use rtp_core::srtp::{SrtpConfig, SrtpProfile};
use rtp_dataplane::ports::udp_socket;
use rtp_dataplane::{
    BackendChoice, BackendKind, Command, Dataplane, DataplaneConfig, Event, LegSpec, LegSrtp,
    LocalBinding, SessionSpec,
};

const CM: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;
const GCM: SrtpProfile = SrtpProfile::AeadAes128Gcm;

fn key_salt(p: SrtpProfile, seed: u8) -> Vec<u8> {
    (0..(p.key_len() + p.salt_len()) as u8)
        .map(|i| i.wrapping_mul(seed).wrapping_add(seed))
        .collect()
}

fn cfg(p: SrtpProfile, seed: u8) -> SrtpConfig {
    SrtpConfig::from_key_salt(p, &key_salt(p, seed)).unwrap()
}

fn lib(p: SrtpProfile, seed: u8, outbound: bool) -> Session {
    Session::new(p, &key_salt(p, seed), outbound, 1024).unwrap()
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut v = vec![0x80, 0x00];
    v.extend(seq.to_be_bytes());
    v.extend((u32::from(seq) * 160).to_be_bytes());
    v.extend(ssrc.to_be_bytes());
    v.extend((0..160).map(|i| (i as u8) ^ (seq as u8)));
    v
}

fn sr(ssrc: u32, n: u32) -> Vec<u8> {
    let mut v = vec![0x80, 200, 0, 6];
    v.extend(ssrc.to_be_bytes());
    v.extend([0u8; 8]); // NTP
    v.extend(n.to_be_bytes()); // RTP timestamp
    v.extend(n.to_be_bytes()); // packets
    v.extend((n * 160).to_be_bytes()); // octets
    v
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    loop {
        match s.recv(&mut buf) {
            Ok(n) => return buf[..n].to_vec(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("nothing relayed: {e}"),
        }
    }
}

fn send(s: &UdpSocket, lib: &mut Session, plain: &[u8], to: SocketAddr, rtcp: bool) {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 64, 0);
    let n = if rtcp {
        lib.protect_rtcp(&mut buf, plain.len()).unwrap()
    } else {
        lib.protect(&mut buf, plain.len()).unwrap()
    };
    s.send_to(&buf[..n], to).unwrap();
}

fn open(lib: &mut Session, mut pkt: Vec<u8>, rtcp: bool) -> Vec<u8> {
    let n = if rtcp {
        lib.unprotect_rtcp(&mut pkt)
    } else {
        lib.unprotect(&mut pkt)
    }
    .expect("libsrtp accepts what the dataplane sent");
    pkt.truncate(n);
    pkt
}

#[test]
fn libsrtp_peers_on_both_sides_of_a_rekeying_relay() {
    for backend in [BackendKind::Mmsg, BackendKind::IoUring] {
        let dp = Dataplane::start(DataplaneConfig {
            backend: BackendChoice::Only(backend),
            pool_frames: 512,
            ..DataplaneConfig::default()
        })
        .unwrap();
        let h = &dp.workers()[0];
        let (a, b) = (peer(), peer());
        let lo: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let s0 = udp_socket(lo, false, None).unwrap();
        let s1 = udp_socket(lo, false, None).unwrap();
        let (addr0, addr1) = (s0.local_addr().unwrap(), s1.local_addr().unwrap());
        let mut leg0 = LegSpec::new(LocalBinding::PerSession {
            rtp: s0,
            rtcp: None,
        });
        leg0.srtp = Some(LegSrtp {
            inbound: cfg(CM, 3),
            outbound: cfg(CM, 5),
        });
        let mut leg1 = LegSpec::new(LocalBinding::PerSession {
            rtp: s1,
            rtcp: None,
        });
        leg1.remote = Some(b.local_addr().unwrap());
        leg1.srtp = Some(LegSrtp {
            inbound: cfg(GCM, 7),
            outbound: cfg(GCM, 9),
        });
        h.send(Command::AddSession(Box::new(SessionSpec {
            id: 1,
            legs: [leg0, leg1],
            rtcp_to_control: false,
            rtcp_mode: Default::default(),
        })))
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match h.poll_event() {
                Some(Event::SessionAdded(1)) => break,
                Some(e @ Event::Error { .. }) => panic!("{e:?}"),
                _ => assert!(Instant::now() < deadline, "session not added"),
            }
        }
        let (mut a_tx, mut b_rx) = (lib(CM, 3, true), lib(GCM, 9, false));
        let (mut b_tx, mut a_rx) = (lib(GCM, 7, true), lib(CM, 5, false));
        for i in 0..300u16 {
            let seq = 65_400u16.wrapping_add(i); // ROC 0 -> 1
            send(&a, &mut a_tx, &rtp(0xA1, seq), addr0, false);
            assert_eq!(
                open(&mut b_rx, recv(&b), false),
                rtp(0xA1, seq),
                "{backend:?} A->B {seq}"
            );
            send(&b, &mut b_tx, &rtp(0xB1, seq), addr1, false);
            assert_eq!(
                open(&mut a_rx, recv(&a), false),
                rtp(0xB1, seq),
                "{backend:?} B->A {seq}"
            );
            if i % 50 == 0 {
                let n = u32::from(i);
                send(&a, &mut a_tx, &sr(0xA1, n), addr0, true);
                assert_eq!(open(&mut b_rx, recv(&b), true), sr(0xA1, n));
                send(&b, &mut b_tx, &sr(0xB1, n), addr1, true);
                assert_eq!(open(&mut a_rx, recv(&a), true), sr(0xB1, n));
            }
        }
        dp.shutdown();
    }
}
