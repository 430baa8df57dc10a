//! `rtp-pcap decrypt` / `encrypt`: rewrite a capture with SRTP/SRTCP replaced by
//! plaintext RTP/RTCP, or the reverse, and count per stream what authenticated.
//!
//! Keys: a default (profile + base64 key||salt), keys per SSRC or per UDP port, and
//! keys from SDP `a=crypto` lines (associated with the port of the `m=` line above
//! them). One SRTP context per (source, destination, SSRC), so every stream keeps
//! its own rollover counter and replay window.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rtp_core::demux::{classify, PacketKind};
use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpError, SrtpProfile};
use serde::Serialize;

use super::capture::{CaptureReader, CaptureWriter};

/// Which way to transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SRTP/SRTCP -> RTP/RTCP.
    Decrypt,
    /// RTP/RTCP -> SRTP/SRTCP.
    Encrypt,
}

/// A key: profile and master key||salt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The profile.
    pub profile: SrtpProfile,
    /// Master key followed by master salt.
    pub key_salt: Vec<u8>,
}

/// Where keys come from.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// Used when no SSRC or port key matches.
    pub default: Option<Key>,
    /// Keys by SSRC.
    pub by_ssrc: HashMap<u32, Key>,
    /// Keys by UDP port (source or destination).
    pub by_port: HashMap<u16, Key>,
}

/// What `--key-for` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTarget {
    /// An SSRC.
    Ssrc(u32),
    /// A UDP port.
    Port(u16),
}

/// Parses `--key-for` targets: `ssrc:N`, `port:N`, `0xHEX` (an SSRC), a decimal
/// below 65536 (a port) or a larger decimal (an SSRC).
pub fn parse_target(s: &str) -> Result<KeyTarget, String> {
    let bad = || format!("bad key target {s:?} (use ssrc:N, port:N, 0xSSRC or a port)");
    let num = |t: &str| -> Result<u64, String> {
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            u64::from_str_radix(h, 16).map_err(|_| bad())
        } else {
            t.parse::<u64>().map_err(|_| bad())
        }
    };
    if let Some(v) = s.strip_prefix("ssrc:") {
        return u32::try_from(num(v)?)
            .map(KeyTarget::Ssrc)
            .map_err(|_| bad());
    }
    if let Some(v) = s.strip_prefix("port:") {
        return u16::try_from(num(v)?)
            .map(KeyTarget::Port)
            .map_err(|_| bad());
    }
    let v = num(s)?;
    if s.starts_with("0x") || s.starts_with("0X") || v > 65535 {
        u32::try_from(v).map(KeyTarget::Ssrc).map_err(|_| bad())
    } else {
        Ok(KeyTarget::Port(v as u16))
    }
}

/// Decodes base64 key||salt and checks its length for `profile`.
pub fn parse_key(profile: SrtpProfile, b64: &str) -> Result<Key, String> {
    let key_salt = STANDARD
        .decode(b64.trim())
        .map_err(|e| format!("key is not valid base64: {e}"))?;
    let want = profile.key_len() + profile.salt_len();
    if key_salt.len() != want {
        return Err(format!(
            "{} needs {want} bytes of key||salt, got {}",
            profile.sdes_name(),
            key_salt.len()
        ));
    }
    Ok(Key { profile, key_salt })
}

/// Reads `a=crypto` lines from SDP (or a file of bare lines) into `ring`: each key
/// goes to the port of the preceding `m=` line, and the first one also becomes the
/// default if there is none yet.
pub fn keys_from_sdp(text: &str, ring: &mut KeyRing) -> Result<usize, String> {
    let mut port: Option<u16> = None;
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            port = m.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        } else if line.starts_with("a=crypto:") {
            let a = CryptoAttribute::parse(line).map_err(|e| format!("{line:?}: {e}"))?;
            let mut key_salt = a.key.clone();
            key_salt.extend_from_slice(&a.salt);
            let key = Key {
                profile: a.profile,
                key_salt,
            };
            if let Some(p) = port.filter(|p| *p != 0) {
                ring.by_port.entry(p).or_insert_with(|| key.clone());
            }
            if ring.default.is_none() {
                ring.default = Some(key);
            }
            n += 1;
        }
    }
    if n == 0 {
        return Err("no a=crypto line found".into());
    }
    Ok(n)
}

/// Per-stream counts.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StreamCounts {
    /// SSRC (sender SSRC for RTCP).
    pub ssrc: u32,
    /// Source address.
    pub src: String,
    /// Destination address.
    pub dst: String,
    /// RTCP rather than RTP.
    pub rtcp: bool,
    /// Packets transformed successfully (authenticated, for decrypt).
    pub ok: u64,
    /// Authentication failures.
    pub auth_failed: u64,
    /// Replayed or too old.
    pub replayed: u64,
    /// Other errors (truncated, malformed, no key).
    pub other: u64,
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CryptReport {
    /// Frames read.
    pub frames: u64,
    /// Frames copied unchanged (not RTP/RTCP, or failed).
    pub unchanged: u64,
    /// Per stream.
    pub streams: Vec<StreamCounts>,
}

type FlowKey = (SocketAddr, SocketAddr, u32, bool);

/// Transforms `reader` into `out_path`.
pub fn run<R: Read>(
    mut reader: CaptureReader<R>,
    out_path: &Path,
    ring: &KeyRing,
    mode: Mode,
) -> Result<CryptReport, String> {
    let mut writer: Option<CaptureWriter<_>> = None;
    let mut contexts: HashMap<FlowKey, SrtpContext> = HashMap::new();
    let mut counts: BTreeMap<FlowKey, StreamCounts> = BTreeMap::new();
    let mut report = CryptReport::default();
    let mut buf = vec![0u8; 70_000];
    while let Some(frame) = reader.next_frame() {
        let frame = frame.map_err(|e| e.to_string())?;
        report.frames += 1;
        if writer.is_none() {
            writer = Some(
                CaptureWriter::create(out_path, frame.linktype)
                    .map_err(|e| format!("{}: {e}", out_path.display()))?,
            );
        }
        let w = writer.as_mut().expect("created above");
        let Some((udp, payload)) = frame.udp_payload() else {
            w.write_frame(&frame).map_err(|e| e.to_string())?;
            report.unchanged += 1;
            continue;
        };
        let rtcp = match classify(payload) {
            PacketKind::Rtp if payload.len() >= 12 => false,
            PacketKind::Rtcp if payload.len() >= 8 => true,
            _ => {
                w.write_frame(&frame).map_err(|e| e.to_string())?;
                report.unchanged += 1;
                continue;
            }
        };
        let at = if rtcp { 4 } else { 8 };
        let ssrc = u32::from_be_bytes([
            payload[at],
            payload[at + 1],
            payload[at + 2],
            payload[at + 3],
        ]);
        let fk: FlowKey = (udp.src, udp.dst, ssrc, rtcp);
        let c = counts.entry(fk).or_insert_with(|| StreamCounts {
            ssrc,
            src: udp.src.to_string(),
            dst: udp.dst.to_string(),
            rtcp,
            ..Default::default()
        });
        let key = ring
            .by_ssrc
            .get(&ssrc)
            .or_else(|| ring.by_port.get(&udp.dst.port()))
            .or_else(|| ring.by_port.get(&udp.src.port()))
            .or(ring.default.as_ref());
        let Some(key) = key else {
            c.other += 1;
            w.write_frame(&frame).map_err(|e| e.to_string())?;
            report.unchanged += 1;
            continue;
        };
        let ctx = match contexts.entry(fk) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let cfg = SrtpConfig::from_key_salt(key.profile, &key.key_salt)
                    .map_err(|e| e.to_string())?;
                v.insert(SrtpContext::new(cfg).map_err(|e| e.to_string())?)
            }
        };
        let len = payload.len();
        if len + 64 > buf.len() {
            buf.resize(len + 64, 0);
        }
        buf[..len].copy_from_slice(payload);
        let result = match (mode, rtcp) {
            (Mode::Decrypt, false) => ctx.unprotect_rtp(&mut buf[..len]).map(|u| u.len),
            (Mode::Decrypt, true) => ctx.unprotect_rtcp(&mut buf[..len]).map(|u| u.len),
            (Mode::Encrypt, false) => ctx.protect_rtp(&mut buf, len),
            (Mode::Encrypt, true) => ctx.protect_rtcp(&mut buf, len),
        };
        match result {
            Ok(n) => {
                c.ok += 1;
                w.write_with_payload(&frame, &udp, &buf[..n])
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => {
                match e {
                    SrtpError::AuthFailed => c.auth_failed += 1,
                    SrtpError::Replayed | SrtpError::TooOld => c.replayed += 1,
                    _ => c.other += 1,
                }
                w.write_frame(&frame).map_err(|e| e.to_string())?;
                report.unchanged += 1;
            }
        }
    }
    if let Some(w) = writer {
        w.finish().map_err(|e| e.to_string())?;
    } else {
        // An empty capture still yields a valid (empty) output file.
        CaptureWriter::create(out_path, super::net::linktype::ETHERNET)
            .and_then(CaptureWriter::finish)
            .map(drop)
            .map_err(|e| e.to_string())?;
    }
    report.streams = counts.into_values().collect();
    Ok(report)
}

/// The report as a text table.
pub fn render(r: &CryptReport) -> String {
    let mut s = format!(
        "{} frames, {} copied unchanged\n{:<10} {:<5} {:<22} {:<22} {:>8} {:>11} {:>8} {:>6}\n",
        r.frames,
        r.unchanged,
        "ssrc",
        "kind",
        "src",
        "dst",
        "ok",
        "auth_failed",
        "replayed",
        "other"
    );
    for c in &r.streams {
        s.push_str(&format!(
            "0x{:08x} {:<5} {:<22} {:<22} {:>8} {:>11} {:>8} {:>6}\n",
            c.ssrc,
            if c.rtcp { "rtcp" } else { "rtp" },
            c.src,
            c.dst,
            c.ok,
            c.auth_failed,
            c.replayed,
            c.other
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("5004"), Ok(KeyTarget::Port(5004)));
        assert_eq!(parse_target("0x1234"), Ok(KeyTarget::Ssrc(0x1234)));
        assert_eq!(parse_target("287454020"), Ok(KeyTarget::Ssrc(287_454_020)));
        assert_eq!(parse_target("ssrc:5"), Ok(KeyTarget::Ssrc(5)));
        assert!(parse_target("port:70000").is_err());
        assert!(parse_target("abc").is_err());
    }

    #[test]
    fn sdp_keys_follow_m_lines() {
        let sdp = "v=0\r\nm=audio 4000 RTP/SAVP 0\r\n\
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR\r\n\
                   m=video 4002 RTP/SAVP 96\r\n\
                   a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\r\n";
        let mut ring = KeyRing::default();
        assert_eq!(keys_from_sdp(sdp, &mut ring), Ok(2));
        assert_eq!(
            ring.by_port[&4000].profile,
            SrtpProfile::AesCm128HmacSha1_80
        );
        assert_eq!(ring.by_port[&4002].profile, SrtpProfile::AeadAes128Gcm);
        assert_eq!(
            ring.default.as_ref().unwrap().profile,
            SrtpProfile::AesCm128HmacSha1_80
        );
        assert!(keys_from_sdp("v=0", &mut KeyRing::default()).is_err());
        assert!(parse_key(SrtpProfile::AeadAes128Gcm, "AAAA").is_err());
    }
}
