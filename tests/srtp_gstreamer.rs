//! Interop with a real SRTP peer: GStreamer's `srtpenc`/`srtpdec` (libsrtp 2 inside),
//! both directions, across a sequence-number wrap (ROC 0 -> 1), for every suite both
//! support. Needs `gst-launch-1.0` with the bad plugins (installed by
//! `.ci/install.sh`); fails, not skips, without it. Recipes: shared/interop, 2a/2b.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

#[path = "support/gst.rs"]
mod gst;
use gst::{gst_path, hex, Reap};

const SSRC: u32 = 287_454_020;

/// (profile, GStreamer cipher, GStreamer RTP auth, RTCP auth)
const SUITES: [(SrtpProfile, &str, &str, &str); 5] = [
    (
        SrtpProfile::AesCm128HmacSha1_80,
        "aes-128-icm",
        "hmac-sha1-80",
        "hmac-sha1-80",
    ),
    (
        SrtpProfile::AesCm128HmacSha1_32,
        "aes-128-icm",
        "hmac-sha1-32",
        "hmac-sha1-80",
    ),
    (
        SrtpProfile::AesCm256HmacSha1_80,
        "aes-256-icm",
        "hmac-sha1-80",
        "hmac-sha1-80",
    ),
    (SrtpProfile::AeadAes128Gcm, "aes-128-gcm", "null", "null"),
    (SrtpProfile::AeadAes256Gcm, "aes-256-gcm", "null", "null"),
];

fn key_salt(p: SrtpProfile) -> Vec<u8> {
    (0..(p.key_len() + p.salt_len()) as u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect()
}

#[test]
fn gstreamer_srtpenc_to_our_unprotect() {
    for (profile, cipher, auth, rtcp_auth) in SUITES {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let port = sock.local_addr().unwrap().port();
        let ks = key_salt(profile);
        let pipeline = format!(
            "audiotestsrc is-live=true wave=silence num-buffers=40 samplesperbuffer=160 \
             ! audio/x-raw,rate=8000,channels=1 ! mulawenc \
             ! rtppcmupay pt=0 ssrc={SSRC} seqnum-offset=65520 timestamp-offset=0 \
             ! srtpenc key={} rtp-cipher={cipher} rtp-auth={auth} rtcp-cipher={cipher} rtcp-auth={rtcp_auth} \
             ! udpsink host=127.0.0.1 port={port}",
            hex(&ks)
        );
        let child = Command::new(gst_path())
            .arg("-q")
            .args(pipeline.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _reap = Reap(child);
        let mut rx = SrtpContext::new(SrtpConfig::from_key_salt(profile, &ks).unwrap()).unwrap();
        let (mut ok, mut failed) = (0, 0);
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 2048];
        while ok + failed < 40 && Instant::now() < deadline {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            match rx.unprotect_rtp(&mut buf[..n]) {
                Ok(u) => {
                    ok += 1;
                    assert_eq!(u.len, 172, "{profile:?}: 12-byte header + 160 bytes PCMU");
                    // Silence is 0xFF in PCMU: the payload really was decrypted.
                    assert!(
                        buf[12..172].iter().all(|b| *b == 0xff),
                        "{profile:?}: payload not decrypted: {:02x?}",
                        &buf[12..172]
                    );
                    assert_eq!(buf[1] & 0x7f, 0);
                    seqs.push(u16::from_be_bytes([buf[2], buf[3]]));
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{profile:?}: {e}");
                }
            }
        }
        assert_eq!((ok, failed), (40, 0), "{profile:?}");
        assert!(
            seqs.contains(&65535) && seqs.contains(&0),
            "{profile:?} crossed the wrap"
        );
        assert_eq!(rx.roc(SSRC), Some(1), "{profile:?}");
    }
}

#[test]
fn our_protect_to_gstreamer_srtpdec() {
    for (profile, cipher, auth, rtcp_auth) in SUITES {
        let ks = key_salt(profile);
        let mut tx = SrtpContext::new(SrtpConfig::from_key_salt(profile, &ks).unwrap()).unwrap();
        let packets: Vec<Vec<u8>> = (0..30u32)
            .map(|i| {
                let seq = (65_520 + i) as u16;
                let mut buf = [0u8; 256];
                buf[0] = 0x80;
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                buf[4..8].copy_from_slice(&(i * 160).to_be_bytes());
                buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
                buf[12..172].fill(0xff);
                let n = tx.protect_rtp(&mut buf, 172).unwrap();
                buf[..n].to_vec()
            })
            .collect();
        let n = gst::srtpdec_accepts(SSRC, &ks, cipher, auth, rtcp_auth, &packets);
        assert_eq!(n, 30, "{profile:?}: srtpdec accepted {n} of 30");
    }
}
