//! Relay benchmark support (the benchmarks are under `benches/`, the perf lab is
//! `src/bin/perf-lab.rs`): the minimal relay that every figure is compared with.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rtp_dataplane::ports::udp_socket;
use rtp_dataplane::sys::{MmsgBatch, RecvSlot, SendMsg};

/// The minimal relay as a reflector: a thread pinned to `core` busy-polls
/// recvmmsg on one socket and sends every datagram back to its source with
/// sendmmsg, doing nothing else. What this kernel's loopback UDP allows.
#[derive(Debug)]
pub struct MinimalRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MinimalRelay {
    /// Binds a loopback port and starts.
    pub fn start(core: usize) -> Self {
        let sock = udp_socket(
            "127.0.0.1:0".parse().expect("literal"),
            false,
            Some(8 << 20),
        )
        .expect("bind");
        let addr = sock.local_addr().expect("bound");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            let mut bufs = vec![[0u8; 2048]; 32];
            let (mut rx, mut tx) = (MmsgBatch::new(32), MmsgBatch::new(32));
            let (mut got, mut msgs) = (Vec::with_capacity(32), Vec::with_capacity(32));
            while !s.load(Ordering::Relaxed) {
                let slots: [RecvSlot; 32] = std::array::from_fn(|i| RecvSlot {
                    ptr: bufs[i].as_mut_ptr(),
                    cap: 2048,
                });
                got.clear();
                let n = rx.recv(sock.as_raw_fd(), &slots, &mut got).unwrap_or(0);
                msgs.clear();
                for (i, r) in got.iter().enumerate().take(n) {
                    if let Some(src) = r.src {
                        tx.set_iov(msgs.len(), bufs[i].as_ptr(), r.len);
                        msgs.push(SendMsg {
                            dst: src,
                            first_iov: msgs.len(),
                            iov_count: 1,
                            segment: 0,
                        });
                    }
                }
                let mut done = 0;
                while done < msgs.len() {
                    match tx.send(sock.as_raw_fd(), &msgs[done..]) {
                        Ok(k) if k > 0 => done += k,
                        _ => break,
                    }
                }
            }
        });
        MinimalRelay {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MinimalRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The median of `v` (the upper one for an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `streams` PCMU-like streams (160-byte payloads, PT 0, 8 kHz) whose packet time
/// makes them offer `rate` packets/s together.
pub fn audio_class(streams: usize, rate: f64) -> rtp_tools::load::StreamClass {
    rtp_tools::load::StreamClass {
        name: "audio".into(),
        streams,
        ptime: std::time::Duration::from_nanos((streams as f64 / rate * 1e9) as u64),
        payload: 160,
        pt: 0,
        clock_rate: 8000,
        talk_spurt: None,
    }
}
