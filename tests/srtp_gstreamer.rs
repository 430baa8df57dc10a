//! Interop with a real SRTP peer: GStreamer's `srtpenc`/`srtpdec` (libsrtp 2 inside),
//! both directions, across a sequence-number wrap (ROC 0 -> 1), for every suite both
//! support. Needs `gst-launch-1.0` with the bad plugins (installed by
//! `.ci/install.sh`); fails, not skips, without it. Recipes: shared/interop, 2a/2b.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

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

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Kills and reaps a child when dropped.
struct Reap(Child);
impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gst() -> Command {
    let c = Command::new("gst-launch-1.0");
    if which("gst-launch-1.0").is_none() {
        panic!("gst-launch-1.0 not found; install it with `sudo bash .ci/install.sh`");
    }
    c
}

fn which(bin: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(bin))
        .find(|p| p.exists())
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
            "audiotestsrc is-live=true num-buffers=40 samplesperbuffer=160 \
             ! audio/x-raw,rate=8000,channels=1 ! mulawenc \
             ! rtppcmupay pt=0 ssrc={SSRC} seqnum-offset=65520 timestamp-offset=0 \
             ! srtpenc key={} rtp-cipher={cipher} rtp-auth={auth} rtcp-cipher={cipher} rtcp-auth={rtcp_auth} \
             ! udpsink host=127.0.0.1 port={port}",
            hex(&ks)
        );
        let child = gst()
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
        // A free port for GStreamer: bind, read the port, release it.
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ks = key_salt(profile);
        let caps = format!(
            "application/x-srtp,media=(string)audio,clock-rate=(int)8000,encoding-name=(string)PCMU,\
             payload=(int)0,ssrc=(uint){SSRC},srtp-key=(buffer){},srtp-cipher=(string){cipher},\
             srtp-auth=(string){auth},srtcp-cipher=(string){cipher},srtcp-auth=(string){rtcp_auth}",
            hex(&ks)
        );
        let child = Command::new("timeout")
            .args(["-s", "INT", "-k", "3", "5"])
            .arg(which("gst-launch-1.0").expect("gst-launch-1.0 not found; run .ci/install.sh"))
            .args(["-v", "-e", "udpsrc", "address=127.0.0.1"])
            .arg(format!("port={port}"))
            .arg(format!("caps={caps}"))
            .args([
                "!",
                "srtpdec",
                "!",
                "identity",
                "silent=false",
                "!",
                "fakesink",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Give the pipeline time to reach PLAYING.
        std::thread::sleep(Duration::from_millis(1500));
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut tx = SrtpContext::new(SrtpConfig::from_key_salt(profile, &ks).unwrap()).unwrap();
        for i in 0..30u32 {
            let seq = (65_520 + i) as u16;
            let mut buf = [0u8; 256];
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&(i * 160).to_be_bytes());
            buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
            buf[12..172].fill(0xff);
            let n = tx.protect_rtp(&mut buf, 172).unwrap();
            sock.send_to(&buf[..n], ("127.0.0.1", port)).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let chains = text
            .lines()
            .filter(|l| l.contains("last-message = chain"))
            .count();
        assert_eq!(chains, 30, "{profile:?}: srtpdec accepted {chains} of 30");
    }
}
