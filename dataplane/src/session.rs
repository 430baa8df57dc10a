//! Sessions and legs: what the control plane asks a worker to relay, and the
//! per-leg state (addresses, latching, SRTP, rewriting, counters, statistics).

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpError};
use rtp_core::stats::{BurstGapCounts, BurstGapTracker, ReceiverStats};

/// A session as the control plane names it.
pub type SessionId = u64;

/// Which of a session's two legs.
pub type LegIndex = usize;

/// Where a leg receives and sends.
#[derive(Debug)]
pub enum LocalBinding {
    /// Sockets of its own (a port pair from the allocator, as SIP gateways
    /// advertise one port per stream). `rtcp` is `None` for rtcp-mux.
    PerSession {
        /// RTP (and muxed RTCP) socket.
        rtp: UdpSocket,
        /// Separate RTCP socket, usually the next port.
        rtcp: Option<UdpSocket>,
    },
    /// A shared port of the worker (SO_REUSEPORT, one socket per worker); flows are
    /// told apart by the remote address and, before it is known, by `ssrc`.
    Shared {
        /// Index into the configured shared addresses.
        index: usize,
        /// The SSRC the remote sends with, when signalled (a=ssrc).
        ssrc: Option<u32>,
    },
}

/// How the remote address of a leg is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatchMode {
    /// The remote address is the signalled one; packets from any other source are
    /// dropped (counted as `wrong_source`).
    Fixed,
    /// Symmetric RTP: the remote is learned from the first valid packet (after
    /// authentication on an SRTP leg). A signalled address counts only until
    /// then: the first valid RTP packet from anywhere replaces it (a phone
    /// behind NAT sends from another address than its SDP says). Once latched, a
    /// source change is accepted for an SRTP leg when its packet authenticates
    /// and is not a replay; for a plain leg only when the packet carries the
    /// latched SSRC and, for the RTP address, the current source has been silent
    /// for `relatch_after`. RTCP alone never moves the RTP address of a plain
    /// leg. Everything else is dropped as `wrong_source`.
    Learn {
        /// Silence of the current source after which a plain leg may move.
        relatch_after: Duration,
    },
    /// ICE: the remote addresses are only what the control plane sets (the
    /// signalled ones, and the candidates the peer nominates, sent as
    /// [`LegUpdate::remote`] / [`LegUpdate::remote_rtcp`]). Nothing is learned
    /// from packets: RTP and RTCP from any other source, or arriving before a
    /// remote is set, are dropped as `wrong_source`. A separate RTCP port
    /// accepts only `remote_rtcp` (the nominated component 2); muxed RTCP,
    /// only `remote`. An update to [`LatchMode::Learn`] turns learning on (a
    /// peer that turned out not to do ICE); one back to `Nominated` turns it
    /// off again, keeping the remote addresses learning left (a peer that
    /// does ICE after all).
    Nominated,
}

impl Default for LatchMode {
    fn default() -> Self {
        LatchMode::Learn {
            relatch_after: Duration::from_secs(2),
        }
    }
}

/// SRTP of a leg: `inbound` protects what the remote sends to us, `outbound` what
/// we send to it.
#[derive(Clone, Debug)]
pub struct LegSrtp {
    /// Keys of packets received on this leg.
    pub inbound: SrtpConfig,
    /// Keys of packets sent on this leg.
    pub outbound: SrtpConfig,
}

/// Header rewriting applied to packets sent on a leg.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// Replace the SSRC (RTP) and the sender SSRC (RTCP) with this.
    pub ssrc: Option<u32>,
    /// Added (wrapping) to every RTP sequence number.
    pub seq_offset: u16,
    /// Payload type mapping (from, to), up to 8 entries.
    pub pt_map: Vec<(u8, u8)>,
}

impl Rewrite {
    /// Whether the rewrite changes anything.
    pub fn is_identity(&self) -> bool {
        self.ssrc.is_none() && self.seq_offset == 0 && self.pt_map.is_empty()
    }
}

/// One leg of a session, as the control plane describes it.
#[derive(Debug)]
pub struct LegSpec {
    /// Local sockets.
    pub local: LocalBinding,
    /// Remote RTP address if signalled.
    pub remote: Option<SocketAddr>,
    /// Remote RTCP address if signalled separately (`a=rtcp`); otherwise the RTP
    /// address (rtcp-mux) or its port + 1.
    pub remote_rtcp: Option<SocketAddr>,
    /// Whether RTCP to this remote goes on the RTP address.
    pub rtcp_mux: bool,
    /// How the remote address is learned.
    pub latch: LatchMode,
    /// SRTP keys, or `None` for plain RTP (also used to pass SRTP through opaquely).
    pub srtp: Option<LegSrtp>,
    /// The leg is secure but its keys come later (DTLS-SRTP): until `srtp` is set by
    /// an update, media received or to be sent on it is dropped
    /// ([`DropReason::NoKeys`]), never relayed in the clear.
    pub keys_pending: bool,
    /// Rewriting of packets sent on this leg.
    pub rewrite: Rewrite,
    /// RTP clock rate of the media received on this leg (for jitter).
    pub clock_rate: u32,
}

impl LegSpec {
    /// A plain, learning leg on the given binding.
    pub fn new(local: LocalBinding) -> Self {
        LegSpec {
            local,
            remote: None,
            remote_rtcp: None,
            rtcp_mux: true,
            latch: LatchMode::default(),
            srtp: None,
            keys_pending: false,
            rewrite: Rewrite::default(),
            clock_rate: 8000,
        }
    }
}

/// What a worker does with RTCP received on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpMode {
    /// Relay it to the other leg (end to end), rewriting the SSRCs inside report
    /// blocks and feedback when media SSRCs are rewritten.
    #[default]
    Forward,
    /// The control plane terminates RTCP per leg: every received packet is copied
    /// to it ([`Event::Rtcp`](crate::Event::Rtcp)); only feedback (RTPFB/PSFB:
    /// NACK, PLI, FIR, REMB, ...) is relayed to the other leg, with SSRCs
    /// rewritten; SR, RR, SDES, BYE, XR and APP stop here.
    Terminate,
}

/// A session: two legs; what arrives on one is sent on the other.
#[derive(Debug)]
pub struct SessionSpec {
    /// The control plane's id.
    pub id: SessionId,
    /// The legs.
    pub legs: [LegSpec; 2],
    /// Also copy every received RTCP packet (decrypted) to the control plane
    /// (always done in [`RtcpMode::Terminate`]).
    pub rtcp_to_control: bool,
    /// RTCP relaying.
    pub rtcp_mode: RtcpMode,
}

/// A change to a leg.
#[derive(Debug, Default)]
pub struct LegUpdate {
    /// New remote RTP address (`Some(None)` forgets it and learns again).
    pub remote: Option<Option<SocketAddr>>,
    /// New remote RTCP address.
    pub remote_rtcp: Option<Option<SocketAddr>>,
    /// New latch mode.
    pub latch: Option<LatchMode>,
    /// New SRTP keys (`Some(None)` turns SRTP off). Installing keys ends
    /// [`LegSpec::keys_pending`].
    pub srtp: Option<Option<LegSrtp>>,
    /// Marks the leg as waiting for keys again (a DTLS re-handshake) or not.
    pub keys_pending: Option<bool>,
    /// New rewrite rules.
    pub rewrite: Option<Rewrite>,
    /// Whether RTCP to the remote goes on the RTP address (an answer accepted
    /// rtcp-mux); a leg without an RTCP socket always muxes.
    pub rtcp_mux: Option<bool>,
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum DropReason {
    /// SRTP/SRTCP authentication failed (wrong key, tampering).
    Auth,
    /// SRTP/SRTCP replay or too old for the window.
    Replay,
    /// Not RTP/RTCP or malformed.
    Malformed,
    /// From a source other than the latched or signalled remote.
    WrongSource,
    /// The other leg has no remote address yet.
    NoRemote,
    /// No free frame.
    PoolEmpty,
    /// The event ring to the control plane was full.
    RingFull,
    /// The kernel refused the send (or its buffer was full).
    SendError,
    /// Protecting for the other leg failed (no tailroom, index exhausted or reused).
    Protect,
    /// The leg is secure but its keys are not installed yet (DTLS-SRTP before the
    /// handshake completed): nothing is relayed in the clear.
    NoKeys,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Auth,
        DropReason::Replay,
        DropReason::Malformed,
        DropReason::WrongSource,
        DropReason::NoRemote,
        DropReason::PoolEmpty,
        DropReason::RingFull,
        DropReason::SendError,
        DropReason::Protect,
        DropReason::NoKeys,
    ];

    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Auth => "auth",
            DropReason::Replay => "replay",
            DropReason::Malformed => "malformed",
            DropReason::WrongSource => "wrong_source",
            DropReason::NoRemote => "no_remote",
            DropReason::PoolEmpty => "pool_empty",
            DropReason::RingFull => "ring_full",
            DropReason::SendError => "send_error",
            DropReason::Protect => "protect",
            DropReason::NoKeys => "no_keys",
        }
    }

    pub(crate) fn of_srtp(e: SrtpError) -> DropReason {
        match e {
            SrtpError::AuthFailed | SrtpError::MkiMismatch => DropReason::Auth,
            SrtpError::Replayed | SrtpError::TooOld => DropReason::Replay,
            _ => DropReason::Malformed,
        }
    }
}

/// Packet and byte counters of one leg.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets received and accepted.
    pub rx_rtp: u64,
    /// RTCP packets received and accepted.
    pub rx_rtcp: u64,
    /// Bytes of accepted packets as received.
    pub rx_bytes: u64,
    /// RTP packets sent on this leg.
    pub tx_rtp: u64,
    /// RTCP packets sent on this leg.
    pub tx_rtcp: u64,
    /// Bytes sent on this leg.
    pub tx_bytes: u64,
    /// Drops of packets received on this leg (or, for `SendError`, `NoRemote`,
    /// `Protect`, of packets to be sent on it), by [`DropReason`].
    pub drops: [u64; DropReason::ALL.len()],
}

impl LegCounters {
    /// Drops for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }
}

impl fmt::Debug for LegCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("LegCounters");
        d.field("rx_rtp", &self.rx_rtp)
            .field("rx_rtcp", &self.rx_rtcp)
            .field("rx_bytes", &self.rx_bytes)
            .field("tx_rtp", &self.tx_rtp)
            .field("tx_rtcp", &self.tx_rtcp)
            .field("tx_bytes", &self.tx_bytes);
        for r in DropReason::ALL {
            if self.dropped(r) > 0 {
                d.field(r.name(), &self.dropped(r));
            }
        }
        d.finish()
    }
}

/// Receive statistics of a leg's current source.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegQuality {
    /// SSRC of the source.
    pub ssrc: u32,
    /// Packets expected from the sequence numbers.
    pub expected: u64,
    /// Packets lost (expected - received; negative with duplicates).
    pub lost: i64,
    /// Interarrival jitter in seconds.
    pub jitter: f64,
    /// Extended highest sequence number.
    pub ext_highest_seq: u64,
    /// Burst/gap counts (RFC 3611 4.7.2, Gmin 16) of this source.
    pub burst: BurstGapCounts,
}

/// What a leg sent: the numbers a sender report needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegSender {
    /// SSRC of the last RTP packet sent (after rewriting).
    pub ssrc: u32,
    /// RTP packets sent.
    pub packets: u64,
    /// RTP payload octets sent (headers, extensions and padding excluded).
    pub payload_octets: u64,
    /// RTP timestamp of the last packet sent.
    pub last_rtp_ts: u32,
    /// How long before the snapshot that packet was sent (`None`: nothing sent).
    pub last_sent_ago: Option<Duration>,
}

/// A leg's numbers in a snapshot.
#[derive(Debug, Clone, Default)]
pub struct LegSnapshot {
    /// Counters.
    pub counters: LegCounters,
    /// Statistics of the current inbound source, once one was seen.
    pub quality: Option<LegQuality>,
    /// Current remote RTP address.
    pub remote: Option<SocketAddr>,
    /// Current remote RTCP address.
    pub remote_rtcp: Option<SocketAddr>,
    /// Local RTP address.
    pub local: Option<SocketAddr>,
    /// What the leg sent (for sender reports).
    pub sender: LegSender,
}

/// A session's numbers.
#[derive(Debug, Clone)]
pub struct SessionSnapshot {
    /// Session id.
    pub id: SessionId,
    /// Both legs.
    pub legs: [LegSnapshot; 2],
}

/// A leg's counters as its worker keeps them: the drops by reason (rare on most
/// legs) in a box that the leg's first drop allocates, so that a leg without
/// drops costs one pointer for them instead of 80 bytes.
#[derive(Default)]
pub(crate) struct LegCounts {
    pub rx_rtp: u64,
    pub rx_rtcp: u64,
    pub rx_bytes: u64,
    pub tx_rtp: u64,
    pub tx_rtcp: u64,
    pub tx_bytes: u64,
    drops: Option<Box<[u64; DropReason::ALL.len()]>>,
}

impl LegCounts {
    /// Counts a drop on this leg and in the worker's `totals`.
    #[inline]
    pub(crate) fn drop(&mut self, r: DropReason, totals: &mut [u64; DropReason::ALL.len()]) {
        self.drops.get_or_insert_with(Box::default)[r as usize] += 1;
        totals[r as usize] += 1;
    }

    pub(crate) fn drops(&self) -> [u64; DropReason::ALL.len()] {
        self.drops.as_deref().copied().unwrap_or_default()
    }

    pub(crate) fn snapshot(&self) -> LegCounters {
        LegCounters {
            rx_rtp: self.rx_rtp,
            rx_rtcp: self.rx_rtcp,
            rx_bytes: self.rx_bytes,
            tx_rtp: self.tx_rtp,
            tx_rtcp: self.tx_rtcp,
            tx_bytes: self.tx_bytes,
            drops: self.drops(),
        }
    }
}

/// Receive statistics of a leg's current source.
pub(crate) struct RxStats {
    pub stats: ReceiverStats,
    pub burst: BurstGapTracker,
}

/// Runtime state of one leg inside a worker. Kept small: two per session, and a
/// gateway holds 100,000 sessions per worker.
pub(crate) struct Leg {
    pub rtp_sock: u32,
    pub rtcp_sock: Option<u32>,
    /// The RTP socket is a shared one (flows demultiplexed by address and SSRC).
    pub shared: bool,
    /// The SSRC signalled for demultiplexing on a shared socket.
    pub shared_ssrc: Option<u32>,
    pub remote: Option<SocketAddr>,
    pub remote_rtcp: Option<SocketAddr>,
    pub rtcp_mux: bool,
    pub latch: LatchMode,
    pub latched_ssrc: Option<u32>,
    pub last_rx_ns: u64,
    pub srtp_in: Option<Box<SrtpContext>>,
    pub srtp_out: Option<Box<SrtpContext>>,
    pub keys_pending: bool,
    /// `None` when the rewrite is the identity (most legs).
    pub rewrite: Option<Box<Rewrite>>,
    pub clock_rate: u32,
    pub counters: LegCounts,
    /// Receive statistics, created by the first RTP packet (a leg that only sends
    /// has none).
    pub rx: Option<Box<RxStats>>,
    /// Sent RTP: SSRC, timestamp and worker time of the last packet, payload octets.
    pub tx_ssrc: u32,
    pub tx_rtp_ts: u32,
    pub tx_last_ns: u64,
    pub tx_payload: u64,
}

impl Leg {
    pub(crate) fn set_srtp(&mut self, s: Option<&LegSrtp>, compact: bool) -> Result<(), SrtpError> {
        match s {
            Some(s) => {
                // The dataplane's setting turns compact keys on; a configuration
                // that asks for them keeps them either way.
                let ctx = |c: &SrtpConfig| {
                    let c = if compact {
                        c.clone().with_compact_keys(true)
                    } else {
                        c.clone()
                    };
                    SrtpContext::new(c).map(Box::new)
                };
                self.srtp_in = Some(ctx(&s.inbound)?);
                self.srtp_out = Some(ctx(&s.outbound)?);
                self.keys_pending = false;
            }
            None => {
                self.srtp_in = None;
                self.srtp_out = None;
            }
        }
        Ok(())
    }

    /// Where RTCP to this leg's remote goes, and from which socket.
    pub(crate) fn rtcp_target(&self) -> Option<(u32, SocketAddr)> {
        match self.rtcp_sock {
            Some(s) if !self.rtcp_mux => {
                let dst = self.remote_rtcp.or_else(|| {
                    self.remote
                        .map(|r| SocketAddr::new(r.ip(), r.port().wrapping_add(1)))
                })?;
                Some((s, dst))
            }
            _ => Some((
                self.rtp_sock,
                self.remote_rtcp
                    .filter(|_| !self.rtcp_mux)
                    .or(self.remote)?,
            )),
        }
    }

    pub(crate) fn snapshot(&self, local: Option<SocketAddr>, now_ns: u64) -> LegSnapshot {
        LegSnapshot {
            counters: self.counters.snapshot(),
            quality: self.rx.as_ref().map(|rx| {
                let s = &rx.stats;
                let seq = s.seq();
                LegQuality {
                    ssrc: s.ssrc(),
                    expected: seq.expected(),
                    lost: seq.lost(),
                    jitter: s.jitter().jitter() / f64::from(s.clock_rate().max(1)),
                    ext_highest_seq: seq.ext_highest_seq().unwrap_or(0),
                    burst: rx.burst.counts(),
                }
            }),
            remote: self.remote,
            remote_rtcp: self.remote_rtcp,
            local,
            sender: LegSender {
                ssrc: self.tx_ssrc,
                packets: self.counters.tx_rtp,
                payload_octets: self.tx_payload,
                last_rtp_ts: self.tx_rtp_ts,
                last_sent_ago: (self.counters.tx_rtp > 0)
                    .then(|| Duration::from_nanos(now_ns.saturating_sub(self.tx_last_ns))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_session_state_stays_small() {
        // Two legs per session and 100,000 sessions per worker: what a leg holds
        // inline is paid for every call, so growth here should be a decision.
        assert!(
            std::mem::size_of::<Leg>() <= 256,
            "{}",
            std::mem::size_of::<Leg>()
        );
        // 152 bytes: malloc's chunk of 160 (168 would take 176).
        assert!(std::mem::size_of::<RxStats>() <= 152);
    }

    #[test]
    fn drop_counters_are_allocated_by_the_first_drop() {
        let mut c = LegCounts::default();
        let mut totals = [0; DropReason::ALL.len()];
        assert!(c.drops.is_none());
        assert_eq!(c.snapshot().dropped_total(), 0);
        c.drop(DropReason::Replay, &mut totals);
        c.drop(DropReason::Replay, &mut totals);
        c.drop(DropReason::Auth, &mut totals);
        let s = c.snapshot();
        assert_eq!(s.dropped(DropReason::Replay), 2);
        assert_eq!(s.dropped(DropReason::Auth), 1);
        assert_eq!(s.dropped_total(), 3);
        assert_eq!(totals[DropReason::Replay as usize], 2);
        assert_eq!(totals.iter().sum::<u64>(), 3);
    }
}
