//! Test support shared by the Engine tests: a free port range, an engine builder
//! with test settings, RTP packets, and waiting for an engine event.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rtp_control::dataplane::{BackendChoice, BackendKind};
use rtp_control::{Engine, EngineBuilder, EngineEvent};
use rtp_core::rtp::RtpBuilder;

/// A port range other programs are unlikely to hold: around a port the kernel
/// just handed out.
pub fn free_range(len: u16) -> (u16, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = s.local_addr().unwrap().port();
    let first = if p > 60000 { p - 2 * len } else { p + 2 };
    (first, first + len - 1)
}

/// An engine builder for tests: `ports` free ports, the mmsg backend, a small
/// pool, statistics every 50 ms.
pub fn builder(ports: u16) -> EngineBuilder {
    let (lo, hi) = free_range(ports);
    Engine::builder()
        .ports(lo, hi)
        .backend(BackendChoice::Only(BackendKind::Mmsg))
        .pool_frames(1024)
        .check_interval(Duration::from_millis(50))
}

/// An RTP packet with a 160-byte payload of `fill`, timestamp `seq * 160`.
pub fn rtp_packet(pt: u8, ssrc: u32, seq: u16, fill: u8) -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let n = RtpBuilder::new()
        .payload_type(pt)
        .sequence_number(seq)
        .timestamp(u32::from(seq) * 160)
        .ssrc(ssrc)
        .payload(&[fill; 160])
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

/// The first event `pred` accepts, within 5 s.
pub fn wait_event(e: &Engine, pred: impl FnMut(&EngineEvent) -> bool) -> EngineEvent {
    wait_event_for(e, "", Duration::from_secs(5), pred)
}

/// The first event `pred` accepts, within `within`; `what` names it if it
/// never comes.
pub fn wait_event_for(
    e: &Engine,
    what: &str,
    within: Duration,
    mut pred: impl FnMut(&EngineEvent) -> bool,
) -> EngineEvent {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(ev) = e.next_event(Duration::from_millis(20)) {
            if pred(&ev) {
                return ev;
            }
        }
    }
    panic!("event not seen: {what}");
}
