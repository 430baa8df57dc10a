//! `rtp-load reflect`: sends every datagram back to its source, optionally with
//! deliberate impairments (drop, delay, reorder, duplicate) so that the loss and
//! latency accounting of `rtp-load` can be checked against known faults.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Reflector settings.
#[derive(Debug, Clone, Default)]
pub struct ReflectConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// Drop every Nth datagram (0: none).
    pub drop_every: u64,
    /// Hold every datagram this long before sending it back.
    pub delay: Duration,
    /// Hold back every Nth datagram (0: none) ...
    pub reorder_every: u64,
    /// ... until this many later datagrams have been sent (at least 1), or
    /// once no datagram has come for [`MAX_HOLD`] (then it is sent as is, and
    /// not counted as reordered).
    pub reorder_depth: u64,
    /// Send every Nth datagram twice (0: none).
    pub duplicate_every: u64,
    /// Stop after this long (`None`: until stopped).
    pub duration: Option<Duration>,
    /// Pin the reflecting thread to this core.
    pub core: Option<usize>,
}

/// What the reflector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReflectStats {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams sent back (duplicates included).
    pub sent: u64,
    /// Dropped on purpose.
    pub dropped: u64,
    /// Reordered on purpose: held back and overtaken by `reorder_depth` later
    /// datagrams.
    pub reordered: u64,
    /// Duplicated on purpose.
    pub duplicated: u64,
}

/// How long the reflector waits without any datagram before it sends a
/// held-back one that nothing overtook (the end of a run): it goes, not lost.
pub const MAX_HOLD: Duration = Duration::from_millis(50);

/// A running reflector thread.
#[derive(Debug)]
pub struct Reflector {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<ReflectStats>>>,
}

impl Reflector {
    /// Binds (port 0 picks one) and starts reflecting on a thread.
    pub fn spawn(cfg: ReflectConfig) -> io::Result<Self> {
        let listen = cfg
            .listen
            .unwrap_or_else(|| "127.0.0.1:0".parse().expect("literal"));
        let sock = rtp_control::dataplane::ports::udp_socket(listen, false, Some(8 << 20))?;
        sock.set_nonblocking(false)?;
        sock.set_read_timeout(Some(Duration::from_millis(1)))?;
        let addr = sock.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rtp-load-reflect".into())
            .spawn(move || {
                if let Some(c) = cfg.core {
                    core_affinity::set_for_current(core_affinity::CoreId { id: c });
                }
                reflect_loop(&sock, &cfg, &s)
            })?;
        Ok(Reflector {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether it stopped by itself (duration elapsed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops and returns what it did.
    pub fn stop(mut self) -> io::Result<ReflectStats> {
        self.stop.store(true, Ordering::Release);
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("reflector panicked"))?,
            None => Ok(ReflectStats::default()),
        }
    }
}

impl Drop for Reflector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reflect_loop(
    sock: &UdpSocket,
    cfg: &ReflectConfig,
    stop: &AtomicBool,
) -> io::Result<ReflectStats> {
    let start = Instant::now();
    let mut st = ReflectStats::default();
    let mut queue: VecDeque<(Instant, SocketAddr, Vec<u8>)> = VecDeque::new();
    // Held back: destination, datagram, later ones still to pass it, since when.
    let mut held: Option<(SocketAddr, Vec<u8>, u64)> = None;
    let mut last_rx = start;
    let mut passed = 0u64;
    let mut buf = vec![0u8; 65536];
    let send = |st: &mut ReflectStats, to: SocketAddr, data: &[u8]| {
        if sock.send_to(data, to).is_ok() {
            st.sent += 1;
        }
    };
    while !stop.load(Ordering::Acquire) && cfg.duration.is_none_or(|d| start.elapsed() < d) {
        let mut idle = false;
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                last_rx = Instant::now();
                st.received += 1;
                let i = st.received;
                if cfg.drop_every > 0 && i % cfg.drop_every == 0 {
                    st.dropped += 1;
                } else {
                    let copies = if cfg.duplicate_every > 0 && i % cfg.duplicate_every == 0 {
                        st.duplicated += 1;
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        queue.push_back((Instant::now() + cfg.delay, from, buf[..n].to_vec()));
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                idle = true;
            }
            Err(e) => return Err(e),
        }
        let now = Instant::now();
        while queue.front().is_some_and(|(t, _, _)| *t <= now) {
            let (_, to, data) = queue.pop_front().expect("checked");
            passed += 1;
            if cfg.reorder_every > 0 && held.is_none() && passed.is_multiple_of(cfg.reorder_every) {
                // Hold this one back until `reorder_depth` later ones have gone.
                held = Some((to, data, cfg.reorder_depth.max(1)));
                continue;
            }
            send(&mut st, to, &data);
            if let Some((_, _, left)) = held.as_mut() {
                *left -= 1;
                if *left == 0 {
                    let (hto, hdata, _) = held.take().expect("checked");
                    st.reordered += 1;
                    send(&mut st, hto, &hdata);
                }
            }
        }
        // Nothing came to overtake it (and nothing is queued to): let it go.
        if idle
            && held.is_some()
            && queue.is_empty()
            && now.saturating_duration_since(last_rx) >= MAX_HOLD
        {
            let (hto, hdata, _) = held.take().expect("checked");
            send(&mut st, hto, &hdata);
        }
    }
    for (_, to, data) in queue.drain(..) {
        send(&mut st, to, &data);
    }
    if let Some((to, data, _)) = held {
        send(&mut st, to, &data);
    }
    Ok(st)
}
