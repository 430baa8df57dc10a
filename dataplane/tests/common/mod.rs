//! Test support: start a dataplane, wait for events, move RTP through it.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rtp_core::rtp::RtpBuilder;
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};
use rtp_dataplane::ports::udp_socket;
use rtp_dataplane::{
    BackendChoice, BackendKind, Command, Dataplane, DataplaneConfig, Event, IdlePolicy, LegSpec,
    LegSrtp, LocalBinding, SessionSnapshot, WorkerHandle,
};

pub const BACKENDS: [BackendKind; 2] = [BackendKind::Mmsg, BackendKind::IoUring];

pub fn config(backend: BackendKind) -> DataplaneConfig {
    DataplaneConfig {
        backend: BackendChoice::Only(backend),
        pool_frames: 1024,
        idle: IdlePolicy::SpinThenPark {
            spin: Duration::from_micros(100),
        },
        ..DataplaneConfig::default()
    }
}

pub fn start(backend: BackendKind) -> Dataplane {
    Dataplane::start(config(backend)).expect("dataplane starts")
}

pub fn wait_event(h: &WorkerHandle, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        while let Some(e) = h.poll_event() {
            if pred(&e) {
                return e;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn add_session(h: &WorkerHandle, spec: rtp_dataplane::SessionSpec) {
    let id = spec.id;
    h.send(Command::AddSession(Box::new(spec)))
        .expect("ring has room");
    match wait_event(h, "session added", |e| {
        matches!(e, Event::SessionAdded(s) if *s == id) || matches!(e, Event::Error { .. })
    }) {
        Event::SessionAdded(_) => {}
        e => panic!("add_session failed: {e:?}"),
    }
}

/// A session of two legs without RTCP copies to the control plane.
pub fn pair(id: u64, a: LegSpec, b: LegSpec) -> rtp_dataplane::SessionSpec {
    rtp_dataplane::SessionSpec {
        id,
        legs: [a, b],
        rtcp_to_control: false,
        rtcp_mode: Default::default(),
    }
}

/// A statistics request for `session` (`u64::MAX`: none) and its answer.
fn stats(h: &WorkerHandle, session: u64) -> Event {
    static TOKEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let token = TOKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    h.send(Command::Snapshot {
        session: Some(session),
        token,
    })
    .unwrap();
    wait_event(
        h,
        "stats",
        |e| matches!(e, Event::Stats { token: t, .. } if *t == token),
    )
}

pub fn snapshot(h: &WorkerHandle, id: u64) -> SessionSnapshot {
    match stats(h, id) {
        Event::Stats { mut sessions, .. } => sessions.pop().expect("session in snapshot"),
        _ => unreachable!(),
    }
}

/// The worker's counters (a statistics request for no session).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn worker_counters(h: &WorkerHandle) -> rtp_dataplane::WorkerCounters {
    match stats(h, u64::MAX) {
        Event::Stats { counters, .. } => *counters,
        _ => unreachable!(),
    }
}

/// A peer socket with a read timeout and a large receive buffer.
pub fn peer(ip: IpAddr) -> UdpSocket {
    let s = udp_socket(SocketAddr::new(ip, 0), false, Some(1 << 20)).unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

/// A per-session leg on a fresh socket (and an RTCP socket when `rtcp_port`).
pub fn per_session_leg(ip: IpAddr, rtcp_port: bool) -> (LegSpec, SocketAddr, Option<SocketAddr>) {
    let rtp = udp_socket(SocketAddr::new(ip, 0), false, Some(1 << 20)).unwrap();
    let addr = rtp.local_addr().unwrap();
    let rtcp = rtcp_port.then(|| udp_socket(SocketAddr::new(ip, 0), false, Some(1 << 20)).unwrap());
    let rtcp_addr = rtcp.as_ref().map(|s| s.local_addr().unwrap());
    let mut spec = LegSpec::new(LocalBinding::PerSession { rtp, rtcp });
    spec.rtcp_mux = !rtcp_port;
    (spec, addr, rtcp_addr)
}

pub fn key(profile: SrtpProfile, seed: u8) -> SrtpConfig {
    let k: Vec<u8> = (0..profile.key_len())
        .map(|i| seed.wrapping_add(i as u8))
        .collect();
    let s: Vec<u8> = (0..profile.salt_len())
        .map(|i| seed.wrapping_mul(3).wrapping_add(i as u8))
        .collect();
    SrtpConfig::new(profile, &k, &s).unwrap()
}

pub fn leg_srtp(profile: SrtpProfile, inbound: u8, outbound: u8) -> LegSrtp {
    LegSrtp {
        inbound: key(profile, inbound),
        outbound: key(profile, outbound),
    }
}

pub fn ctx(profile: SrtpProfile, seed: u8) -> SrtpContext {
    SrtpContext::new(key(profile, seed)).unwrap()
}

/// RTP packet `seq` of `ssrc` with a payload derived from both.
pub fn rtp(ssrc: u32, seq: u16, payload_len: usize) -> Vec<u8> {
    let payload: Vec<u8> = (0..payload_len)
        .map(|i| (seq as usize + i) as u8 ^ ssrc as u8)
        .collect();
    let mut buf = vec![0u8; 12 + payload_len + 64];
    let n = RtpBuilder::new()
        .payload_type(0)
        .sequence_number(seq)
        .timestamp(u32::from(seq) * 160)
        .ssrc(ssrc)
        .payload(&payload)
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

/// Encrypts `pkt` (RTP or RTCP) with `ctx` if given.
pub fn protect(ctx: Option<&mut SrtpContext>, mut pkt: Vec<u8>, rtcp: bool) -> Vec<u8> {
    let Some(c) = ctx else { return pkt };
    let len = pkt.len();
    pkt.resize(len + 64, 0);
    let n = if rtcp {
        c.protect_rtcp(&mut pkt, len).unwrap()
    } else {
        c.protect_rtp(&mut pkt, len).unwrap()
    };
    pkt.truncate(n);
    pkt
}

/// Decrypts a received packet with `ctx` if given; panics when it does not
/// authenticate.
pub fn unprotect(ctx: Option<&mut SrtpContext>, mut pkt: Vec<u8>, rtcp: bool) -> Vec<u8> {
    let Some(c) = ctx else { return pkt };
    let u = if rtcp {
        c.unprotect_rtcp(&mut pkt)
            .expect("SRTCP from the dataplane authenticates")
    } else {
        c.unprotect_rtp(&mut pkt)
            .expect("SRTP from the dataplane authenticates")
    };
    pkt.truncate(u.len);
    pkt
}

pub fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
            // A signal (or task work of a ring without COOP_TASKRUN) interrupts.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Sends `n` RTP packets of `ssrc` from `from` to `to` in bursts of 16, each burst
/// read back at `at`; returns the plaintexts received (after `rx_ctx`).
#[allow(clippy::too_many_arguments)] // a test helper; a struct would only rename them
pub fn flow(
    from: &UdpSocket,
    to: SocketAddr,
    mut tx_ctx: Option<&mut SrtpContext>,
    at: &UdpSocket,
    mut rx_ctx: Option<&mut SrtpContext>,
    ssrc: u32,
    first_seq: u16,
    n: usize,
) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut sent = 0;
    while sent < n {
        let burst = (n - sent).min(16);
        for i in 0..burst {
            let seq = first_seq.wrapping_add((sent + i) as u16);
            let p = protect(tx_ctx.as_deref_mut(), rtp(ssrc, seq, 160), false);
            from.send_to(&p, to).unwrap();
        }
        sent += burst;
        for _ in 0..burst {
            match recv(at) {
                Some((p, _)) => got.push(unprotect(rx_ctx.as_deref_mut(), p, false)),
                None => break,
            }
        }
    }
    got
}

/// Asserts that `got` holds exactly packets first_seq.. of `ssrc`, intact.
pub fn assert_intact(got: &[Vec<u8>], ssrc: u32, first_seq: u16, n: usize) {
    assert_eq!(got.len(), n, "packets received");
    for (i, p) in got.iter().enumerate() {
        let seq = first_seq.wrapping_add(i as u16);
        assert_eq!(p, &rtp(ssrc, seq, 160), "packet {i} differs");
    }
}
