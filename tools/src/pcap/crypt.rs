//! `rtp-pcap decrypt` / `encrypt`: rewrite a capture with SRTP/SRTCP replaced by
//! plaintext RTP/RTCP, or the reverse, and count per stream what authenticated.
//!
//! Keys: a default (profile + base64 key||salt), keys per SSRC or per UDP port, and
//! keys from SDP `a=crypto` lines (bound to the port of the `m=` line above them,
//! for packets sent *from* that port, see [`keys_from_sdp`]). One SRTP context per
//! (source, destination, SSRC), so every stream keeps its own rollover counter and
//! replay window.
//!
//! Which datagrams are touched: only UDP payloads that parse as RTP/RTCP (for
//! `encrypt`, a whole valid RTP packet or RTCP compound; for `decrypt`, a valid
//! SRTP/SRTCP header), from or to one of [`KeyRing::ports`] when that is not empty,
//! and never a datagram from or to a port below 1024 (DNS, NTP, ...) unless a
//! `--port` or a port key names that port. Every frame left unchanged is counted
//! with its reason ([`Skipped`], [`Failures`]).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rtp_core::demux::{classify, PacketKind};
use rtp_core::rtcp::RtcpHeader;
use rtp_core::rtp::RtpPacket;
use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpError, SrtpProfile};
use serde::Serialize;

use super::capture::{CaptureError, CaptureFormat, CaptureReader, CaptureWriter};
use super::net::NetError;

/// Which way to transform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// SRTP/SRTCP -> RTP/RTCP.
    Decrypt,
    /// RTP/RTCP -> SRTP/SRTCP.
    Encrypt,
}

/// A key: profile, master key||salt and the MKI its packets carry, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The profile.
    pub profile: SrtpProfile,
    /// Master key followed by master salt.
    pub key_salt: Vec<u8>,
    /// Master key identifier (1 to 4 bytes) written after each packet / expected in
    /// each packet (RFC 3711 3.1), as in an SDES `inline:...|VALUE:LENGTH`.
    pub mki: Option<Vec<u8>>,
}

impl Key {
    /// The SRTP configuration of this key.
    ///
    /// Repeats are allowed on the sending side: a capture may hold the same packet
    /// twice (a retransmission, or the same datagram seen on two interfaces), and
    /// encrypting it again gives the same bytes as the original sender did.
    pub fn config(&self) -> Result<SrtpConfig, SrtpError> {
        let cfg =
            SrtpConfig::from_key_salt(self.profile, &self.key_salt)?.with_allow_repeat_tx(true);
        match &self.mki {
            Some(m) => cfg.with_mki(m),
            None => Ok(cfg),
        }
    }
}

/// Where keys come from, and which datagrams may be touched.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    /// Used when no SSRC or port key matches.
    pub default: Option<Key>,
    /// Keys by SSRC.
    pub by_ssrc: HashMap<u32, Key>,
    /// Keys by UDP port (`--key-for`): the source port is tried first, then the
    /// destination port.
    pub by_port: HashMap<u16, Key>,
    /// Keys by the UDP port a packet is sent *from* (SDP `m=` ports). An RTCP
    /// packet from port P also takes the key of port P-1 (RTCP on the RTP port + 1).
    pub by_src_port: HashMap<u16, Key>,
    /// Only datagrams from or to one of these ports are touched (all when empty).
    pub ports: Vec<u16>,
}

impl KeyRing {
    /// The key for a packet: by SSRC, by source port (`--key-for`, then SDP), by
    /// destination port (`--key-for`), else the default.
    pub fn select(&self, ssrc: u32, rtcp: bool, src: u16, dst: u16) -> Option<&Key> {
        self.by_ssrc
            .get(&ssrc)
            .or_else(|| self.by_port.get(&src))
            .or_else(|| self.by_src_port.get(&src))
            .or_else(|| {
                src.checked_sub(1)
                    .filter(|_| rtcp)
                    .and_then(|p| self.by_src_port.get(&p))
            })
            .or_else(|| self.by_port.get(&dst))
            .or(self.default.as_ref())
    }

    /// Whether `port` was named by `--port` or a port key.
    fn names_port(&self, port: u16) -> bool {
        self.ports.contains(&port)
            || self.by_port.contains_key(&port)
            || self.by_src_port.contains_key(&port)
    }
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
    Ok(Key {
        profile,
        key_salt,
        mki: None,
    })
}

/// The MKI bytes of an SDES `VALUE:LENGTH` (big-endian `VALUE` in `LENGTH` bytes).
fn mki_bytes(value: u32, len: u8) -> Result<Vec<u8>, String> {
    if !(1..=4).contains(&len) {
        return Err(format!("MKI length {len} is not supported (1 to 4 bytes)"));
    }
    if len < 4 && value >> (8 * u32::from(len)) != 0 {
        return Err(format!("MKI value {value} does not fit in {len} bytes"));
    }
    Ok(value.to_be_bytes()[4 - usize::from(len)..].to_vec())
}

/// Reads `a=crypto` lines from SDP (or a file of bare lines) into `ring`.
///
/// RFC 4568: an SDP's `a=crypto` key is the one its author encrypts the media it
/// *sends* with, and with symmetric RTP that media leaves from the author's `m=`
/// port. So each key is bound to the source port of the `m=` line above it (the
/// first key of a port wins; an offer and its answer can share one file). A key
/// with no `m=` line above it, or under port 0 or 9 (the ICE placeholder), becomes
/// the default if there is none yet. The MKI of the line (`|VALUE:LENGTH`) is kept.
pub fn keys_from_sdp(text: &str, ring: &mut KeyRing) -> Result<usize, String> {
    let mut port: Option<u16> = None;
    let mut n = 0;
    for line in text.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            port = m
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split('/').next())
                .and_then(|p| p.parse().ok())
                .filter(|p| *p != 0 && *p != 9);
        } else if line.starts_with("a=crypto:") {
            let a = CryptoAttribute::parse(line).map_err(|e| format!("{line:?}: {e}"))?;
            let mut key_salt = a.key.clone();
            key_salt.extend_from_slice(&a.salt);
            let mki = match a.mki {
                Some((v, l)) => Some(mki_bytes(v, l).map_err(|e| format!("{line:?}: {e}"))?),
                None => None,
            };
            let key = Key {
                profile: a.profile,
                key_salt,
                mki,
            };
            match port {
                Some(p) => {
                    ring.by_src_port.entry(p).or_insert(key);
                }
                None => {
                    if ring.default.is_none() {
                        ring.default = Some(key);
                    }
                }
            }
            n += 1;
        }
    }
    if n == 0 {
        return Err("no a=crypto line found".into());
    }
    Ok(n)
}

/// Why packets of a stream were left unchanged: one count per SRTP error kind,
/// and `no_key`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Failures {
    /// Authentication failures.
    pub auth_failed: u64,
    /// Index seen before.
    pub replayed: u64,
    /// Index older than the replay window.
    pub too_old: u64,
    /// Shorter than header plus tag.
    pub truncated: u64,
    /// Lengths that do not add up, bad version, too long.
    pub malformed: u64,
    /// The packet's MKI is not the key's.
    pub mki_mismatch: u64,
    /// SSRC unknown to a strict context.
    pub unknown_ssrc: u64,
    /// SRTP/SRTCP index exhausted.
    pub index_exhausted: u64,
    /// An index already sent (encrypt; not counted while repeats are allowed).
    pub index_reused: u64,
    /// No room for the tag (a datagram near the UDP size limit).
    pub buffer_too_small: u64,
    /// Cryptex could not handle the header extension.
    pub cryptex_unsupported: u64,
    /// The key's configuration was refused (length, MKI).
    pub bad_config: u64,
    /// No key matched the packet's SSRC or ports, and there is no default key.
    pub no_key: u64,
}

impl Failures {
    /// Counts one packet that failed with `e`.
    pub fn count(&mut self, e: SrtpError) {
        let c = match e {
            SrtpError::AuthFailed => &mut self.auth_failed,
            SrtpError::Replayed => &mut self.replayed,
            SrtpError::TooOld => &mut self.too_old,
            SrtpError::Truncated => &mut self.truncated,
            SrtpError::Malformed => &mut self.malformed,
            SrtpError::MkiMismatch => &mut self.mki_mismatch,
            SrtpError::UnknownSsrc => &mut self.unknown_ssrc,
            SrtpError::IndexExhausted => &mut self.index_exhausted,
            SrtpError::IndexReused => &mut self.index_reused,
            SrtpError::BufferTooSmall => &mut self.buffer_too_small,
            SrtpError::CryptexUnsupported => &mut self.cryptex_unsupported,
            SrtpError::BadKeyLength | SrtpError::BadConfig | SrtpError::BadMki => {
                &mut self.bad_config
            }
        };
        *c += 1;
    }

    /// (name, count) of every reason.
    pub fn reasons(&self) -> [(&'static str, u64); 13] {
        [
            ("auth_failed", self.auth_failed),
            ("replayed", self.replayed),
            ("too_old", self.too_old),
            ("truncated", self.truncated),
            ("malformed", self.malformed),
            ("mki_mismatch", self.mki_mismatch),
            ("unknown_ssrc", self.unknown_ssrc),
            ("index_exhausted", self.index_exhausted),
            ("index_reused", self.index_reused),
            ("buffer_too_small", self.buffer_too_small),
            ("cryptex_unsupported", self.cryptex_unsupported),
            ("bad_config", self.bad_config),
            ("no_key", self.no_key),
        ]
    }

    /// All failed packets.
    pub fn total(&self) -> u64 {
        self.reasons().iter().map(|(_, n)| n).sum()
    }
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
    /// Packets left unchanged, by reason.
    #[serde(flatten)]
    pub failed: Failures,
}

/// Frames that were not RTP/RTCP candidates, by reason.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Skipped {
    /// Frames of a link type this tool cannot parse, by link type.
    pub unsupported_link_type: BTreeMap<u32, u64>,
    /// Frames cut inside a header or before the end of the IP datagram (a snap
    /// length shorter than the packet).
    pub truncated: u64,
    /// Not IPv4/IPv6 (ARP, ...).
    pub not_ip: u64,
    /// Inconsistent IP header.
    pub bad_ip_header: u64,
    /// IP fragments.
    pub fragment: u64,
    /// IP, not UDP.
    pub not_udp: u64,
    /// Bad UDP length field.
    pub bad_udp_length: u64,
    /// UDP from and to ports outside `--port`.
    pub port_filtered: u64,
    /// UDP from or to a port below 1024 that no `--port` or port key names.
    pub service_port: u64,
    /// UDP that does not parse as RTP/RTCP (for decrypt: as an SRTP/SRTCP header).
    pub not_rtp: u64,
}

impl Skipped {
    fn count(&mut self, e: NetError) {
        let c = match e {
            NetError::UnsupportedLinkType(l) => self.unsupported_link_type.entry(l).or_default(),
            NetError::Truncated => &mut self.truncated,
            NetError::NotIp => &mut self.not_ip,
            NetError::BadIpHeader => &mut self.bad_ip_header,
            NetError::Fragment => &mut self.fragment,
            NetError::NotUdp => &mut self.not_udp,
            NetError::BadUdpLength | NetError::PayloadTooLarge => &mut self.bad_udp_length,
        };
        *c += 1;
    }

    /// Human-readable nonzero reasons, e.g. `3 unsupported link type 147, 1 truncated`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .unsupported_link_type
            .iter()
            .map(|(l, n)| format!("{n} unsupported link type {l}"))
            .collect();
        for (name, n) in [
            ("truncated (snap length?)", self.truncated),
            ("not IP", self.not_ip),
            ("bad IP header", self.bad_ip_header),
            ("IP fragment", self.fragment),
            ("not UDP", self.not_udp),
            ("bad UDP length", self.bad_udp_length),
            ("outside --port", self.port_filtered),
            ("service port below 1024", self.service_port),
            ("not RTP/RTCP", self.not_rtp),
        ] {
            if n > 0 {
                parts.push(format!("{n} {name}"));
            }
        }
        parts.join(", ")
    }
}

/// Totals of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CryptReport {
    /// Frames read.
    pub frames: u64,
    /// Frames that parsed as IP/UDP.
    pub udp: u64,
    /// Frames copied unchanged (not RTP/RTCP, or failed).
    pub unchanged: u64,
    /// Frames that could not be written at all (none when the output is pcapng).
    pub dropped: u64,
    /// Frames that were not candidates, by reason.
    pub skipped: Skipped,
    /// Per stream.
    pub streams: Vec<StreamCounts>,
}

impl CryptReport {
    /// Whether the run achieved anything: an error that says why not when no frame
    /// parsed as UDP, no datagram was RTP/RTCP, or no packet could be transformed.
    /// An empty capture is fine.
    pub fn verdict(&self) -> Result<(), String> {
        if self.frames == 0 {
            return Ok(());
        }
        if self.udp == 0 {
            return Err(format!(
                "none of the {} frames is an IP/UDP datagram: {}",
                self.frames,
                self.skipped.describe()
            ));
        }
        let candidates: u64 = self.streams.iter().map(|s| s.ok + s.failed.total()).sum();
        if candidates == 0 {
            return Err(format!(
                "no RTP/RTCP datagram found among {} UDP datagrams: {}",
                self.udp,
                self.skipped.describe()
            ));
        }
        if self.streams.iter().all(|s| s.ok == 0) {
            return Err("no packet could be transformed (wrong key or profile?)".into());
        }
        Ok(())
    }
}

type FlowKey = (SocketAddr, SocketAddr, u32, bool);

/// Whether `p` is a whole RTCP compound: version 2 headers whose lengths add up
/// exactly to the datagram.
fn is_rtcp_compound(mut p: &[u8]) -> bool {
    if p.is_empty() {
        return false;
    }
    while !p.is_empty() {
        match RtcpHeader::parse(p) {
            Ok(h) if (192..=223).contains(&h.packet_type) => p = &p[h.len..],
            _ => return false,
        }
    }
    true
}

/// Whether `p` starts with an SRTP header (version 2, CSRCs and extension inside,
/// room left for a payload and tag; padding is encrypted, so not checked).
fn is_srtp_header(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    if b0 >> 6 != 2 {
        return false;
    }
    let mut hlen = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let Some(w) = p.get(hlen + 2..hlen + 4) else {
            return false;
        };
        hlen += 4 + 4 * usize::from(u16::from_be_bytes([w[0], w[1]]));
    }
    p.len() >= hlen
}

/// Whether `p` starts with an SRTCP packet: version 2, an RTCP packet type, and a
/// first packet of at least 8 bytes that ends before the E||index word (the rest,
/// padding included, is encrypted, so nothing else is checked).
fn is_srtcp(p: &[u8]) -> bool {
    let [b0, b1, l0, l1, ..] = *p else {
        return false;
    };
    let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
    b0 >> 6 == 2 && (192..=223).contains(&b1) && len >= 8 && len + 4 <= p.len()
}

fn write_err(e: CaptureError) -> String {
    e.to_string()
}

/// Transforms `reader` into `out_path`: a pcap file for a pcap input, a pcapng file
/// (one interface per link type) for a pcapng input.
pub fn run<R: Read>(
    mut reader: CaptureReader<R>,
    out_path: &Path,
    ring: &KeyRing,
    mode: Mode,
) -> Result<CryptReport, String> {
    let created = match (reader.format(), reader.pcap_linktype()) {
        (CaptureFormat::Pcap, Some(l)) => CaptureWriter::create(out_path, l),
        _ => CaptureWriter::create_pcapng(out_path),
    };
    let mut w = created.map_err(|e| format!("{}: {e}", out_path.display()))?;
    let mut contexts: HashMap<FlowKey, SrtpContext> = HashMap::new();
    let mut counts: BTreeMap<FlowKey, StreamCounts> = BTreeMap::new();
    let mut report = CryptReport::default();
    let mut buf = vec![0u8; 70_000];
    while let Some(frame) = reader.next_frame() {
        let frame = frame.map_err(|e| e.to_string())?;
        report.frames += 1;
        // Copies the frame unchanged; a frame the output cannot hold is counted.
        let copy = |w: &mut CaptureWriter<_>, report: &mut CryptReport| match w.write_frame(&frame)
        {
            Ok(()) => {
                report.unchanged += 1;
                Ok(())
            }
            Err(CaptureError::LinkTypeMismatch { .. }) => {
                report.dropped += 1;
                Ok(())
            }
            Err(e) => Err(write_err(e)),
        };
        let udp = match frame.udp() {
            Ok(u) => u,
            Err(e) => {
                report.skipped.count(e);
                copy(&mut w, &mut report)?;
                continue;
            }
        };
        let Some(payload) = frame.data.get(udp.payload_range()) else {
            report.skipped.count(NetError::Truncated);
            copy(&mut w, &mut report)?;
            continue;
        };
        report.udp += 1;
        let (sport, dport) = (udp.src.port(), udp.dst.port());
        if (sport < 1024 && !ring.names_port(sport)) || (dport < 1024 && !ring.names_port(dport)) {
            report.skipped.service_port += 1;
            copy(&mut w, &mut report)?;
            continue;
        }
        if !ring.ports.is_empty() && !ring.ports.contains(&sport) && !ring.ports.contains(&dport) {
            report.skipped.port_filtered += 1;
            copy(&mut w, &mut report)?;
            continue;
        }
        let rtcp = match (classify(payload), mode) {
            (PacketKind::Rtp, Mode::Encrypt) if RtpPacket::new_checked(payload).is_ok() => false,
            (PacketKind::Rtp, Mode::Decrypt) if is_srtp_header(payload) => false,
            (PacketKind::Rtcp, Mode::Encrypt) if is_rtcp_compound(payload) => true,
            (PacketKind::Rtcp, Mode::Decrypt) if is_srtcp(payload) => true,
            _ => {
                report.skipped.not_rtp += 1;
                copy(&mut w, &mut report)?;
                continue;
            }
        };
        // Both parses guarantee 12 (RTP) or 8 (RTCP) bytes.
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
        let Some(key) = ring.select(ssrc, rtcp, sport, dport) else {
            c.failed.no_key += 1;
            copy(&mut w, &mut report)?;
            continue;
        };
        let ctx = match contexts.entry(fk) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match key.config().and_then(SrtpContext::new) {
                    Ok(ctx) => v.insert(ctx),
                    Err(e) => {
                        c.failed.count(e);
                        copy(&mut w, &mut report)?;
                        continue;
                    }
                }
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
            Ok(n) => match w.write_with_payload(&frame, &udp, &buf[..n]) {
                Ok(()) => c.ok += 1,
                Err(CaptureError::LinkTypeMismatch { .. }) => report.dropped += 1,
                Err(CaptureError::Net(NetError::PayloadTooLarge)) => {
                    c.failed.buffer_too_small += 1;
                    copy(&mut w, &mut report)?;
                }
                Err(e) => return Err(write_err(e)),
            },
            Err(e) => {
                c.failed.count(e);
                copy(&mut w, &mut report)?;
            }
        }
    }
    w.finish().map_err(write_err)?;
    report.streams = counts.into_values().collect();
    Ok(report)
}

/// The report as a text table.
pub fn render(r: &CryptReport) -> String {
    let mut s = format!(
        "{} frames ({} UDP), {} copied unchanged, {} dropped\n",
        r.frames, r.udp, r.unchanged, r.dropped
    );
    let skipped = r.skipped.describe();
    if !skipped.is_empty() {
        s.push_str(&format!("not RTP/RTCP candidates: {skipped}\n"));
    }
    s.push_str(&format!(
        "{:<10} {:<5} {:<22} {:<22} {:>8} {:>11} {:>8}  other failures\n",
        "ssrc", "kind", "src", "dst", "ok", "auth_failed", "replayed"
    ));
    for c in &r.streams {
        let other: Vec<String> = c
            .failed
            .reasons()
            .iter()
            .skip(2)
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        s.push_str(&format!(
            "0x{:08x} {:<5} {:<22} {:<22} {:>8} {:>11} {:>8}  {}\n",
            c.ssrc,
            if c.rtcp { "rtcp" } else { "rtp" },
            c.src,
            c.dst,
            c.ok,
            c.failed.auth_failed,
            c.failed.replayed,
            if other.is_empty() {
                "-".to_string()
            } else {
                other.join(" ")
            }
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
                   a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|7:2\r\n\
                   m=video 4002/2 RTP/SAVP 96\r\n\
                   a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\r\n\
                   a=crypto:2 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==|1:4\r\n";
        let mut ring = KeyRing::default();
        assert_eq!(keys_from_sdp(sdp, &mut ring), Ok(3));
        let k = &ring.by_src_port[&4000];
        assert_eq!(k.profile, SrtpProfile::AesCm128HmacSha1_80);
        assert_eq!(k.mki.as_deref(), Some(&[0, 7][..]));
        // The first key of a port wins; SDP keys are no default.
        assert_eq!(ring.by_src_port[&4002].profile, SrtpProfile::AeadAes128Gcm);
        assert_eq!(ring.by_src_port[&4002].mki, None);
        assert!(ring.default.is_none() && ring.by_port.is_empty());
        // Bare lines (and port 9) give the default.
        let mut ring = KeyRing::default();
        let bare = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                    a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==\n";
        assert_eq!(keys_from_sdp(bare, &mut ring), Ok(1));
        assert!(ring.default.is_some() && ring.by_src_port.is_empty());
        assert!(keys_from_sdp("v=0", &mut KeyRing::default()).is_err());
        assert!(parse_key(SrtpProfile::AeadAes128Gcm, "AAAA").is_err());
        // An MKI this implementation cannot carry is an error, not a silent drop.
        let long =
            "a=crypto:1 AEAD_AES_128_GCM inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGw==|1:5";
        assert!(keys_from_sdp(long, &mut KeyRing::default())
            .unwrap_err()
            .contains("MKI length 5"));
    }

    #[test]
    fn mki_bytes_are_big_endian_in_their_length() {
        assert_eq!(mki_bytes(1, 4), Ok(vec![0, 0, 0, 1]));
        assert_eq!(mki_bytes(0x0102, 2), Ok(vec![1, 2]));
        assert_eq!(mki_bytes(0xffff_ffff, 4), Ok(vec![0xff; 4]));
        assert!(mki_bytes(256, 1).is_err());
        assert!(mki_bytes(1, 0).is_err());
    }

    #[test]
    fn key_selection_order() {
        let k = |b: u8| Key {
            profile: SrtpProfile::AesCm128HmacSha1_80,
            key_salt: vec![b; 30],
            mki: None,
        };
        let mut ring = KeyRing {
            default: Some(k(0)),
            ..Default::default()
        };
        ring.by_src_port.insert(4000, k(1));
        ring.by_src_port.insert(5000, k(2));
        ring.by_port.insert(6000, k(3));
        ring.by_ssrc.insert(99, k(4));
        let pick = |ssrc, rtcp, s, d| ring.select(ssrc, rtcp, s, d).unwrap().key_salt[0];
        // SDP keys go by the source port only: the sender's key.
        assert_eq!(pick(1, false, 4000, 5000), 1);
        assert_eq!(pick(1, false, 5000, 4000), 2);
        assert_eq!(pick(1, false, 7000, 4000), 0);
        // RTCP on the RTP port + 1.
        assert_eq!(pick(1, true, 4001, 5001), 1);
        assert_eq!(pick(1, false, 4001, 5001), 0);
        // --key-for ports: source, then destination; SSRC first of all.
        assert_eq!(pick(1, false, 6000, 4000), 3);
        assert_eq!(pick(1, false, 4000, 6000), 1);
        assert_eq!(pick(1, false, 7000, 6000), 3);
        assert_eq!(pick(99, false, 4000, 6000), 4);
        ring.default = None;
        assert!(ring.select(1, false, 7000, 7001).is_none());
    }

    #[test]
    fn rtp_and_rtcp_shapes() {
        // RR with no blocks, then SDES of 2 words: exact compound.
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
        let mut comp = rr.to_vec();
        comp.extend_from_slice(&[0x81, 202, 0, 2, 0, 0, 0, 1, 1, 1, b'x', 0]);
        assert!(is_rtcp_compound(&rr) && is_rtcp_compound(&comp));
        assert!(!is_rtcp_compound(&comp[..comp.len() - 1]));
        assert!(!is_rtcp_compound(&[]));
        let mut srtcp = rr.to_vec();
        srtcp.extend_from_slice(&[0x80, 0, 0, 1]);
        assert!(is_srtcp(&srtcp) && !is_srtcp(&rr[..6]));
        let mut rtp = vec![0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0, 1];
        assert!(!is_srtp_header(&rtp));
        rtp.extend_from_slice(&[0; 4]);
        assert!(is_srtp_header(&rtp));
        assert!(!is_srtp_header(&[0x40; 20]));
    }

    #[test]
    fn verdicts() {
        let mut r = CryptReport::default();
        assert_eq!(r.verdict(), Ok(()));
        r.frames = 3;
        r.skipped.count(NetError::UnsupportedLinkType(147));
        r.skipped.count(NetError::UnsupportedLinkType(147));
        r.skipped.count(NetError::Truncated);
        let e = r.verdict().unwrap_err();
        assert!(
            e.contains("2 unsupported link type 147") && e.contains("1 truncated"),
            "{e}"
        );
        r.udp = 1;
        r.skipped.not_rtp = 1;
        assert!(r.verdict().unwrap_err().contains("no RTP/RTCP"));
        let mut s = StreamCounts::default();
        s.failed.count(SrtpError::MkiMismatch);
        s.failed.no_key += 1;
        assert_eq!(s.failed.total(), 2);
        r.streams.push(s);
        assert!(r
            .verdict()
            .unwrap_err()
            .contains("no packet could be transformed"));
        r.streams[0].ok = 1;
        assert_eq!(r.verdict(), Ok(()));
        // Every reason has its own JSON field, flat in the stream.
        let j = serde_json::to_value(&r.streams[0]).unwrap();
        assert_eq!(
            (j["mki_mismatch"].as_u64(), j["no_key"].as_u64()),
            (Some(1), Some(1))
        );
        assert_eq!(j["auth_failed"].as_u64(), Some(0));
    }
}
