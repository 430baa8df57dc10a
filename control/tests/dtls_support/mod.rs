//! Deterministic simulated network between two DTLS endpoints over virtual time
//! (shared by the dtls_* integration tests).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_control::dtls::{Certificate, DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent, DtlsKeys};

/// Network impairments.
#[derive(Debug, Clone)]
pub struct Netem {
    pub loss: f64,
    pub duplicate: f64,
    /// Base one-way delay.
    pub delay: Duration,
    /// Extra random delay in [0, jitter): reorders datagrams.
    pub jitter: Duration,
}

impl Netem {
    pub fn perfect() -> Self {
        Netem {
            loss: 0.0,
            duplicate: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
        }
    }
    pub fn hostile() -> Self {
        Netem {
            loss: 0.3,
            duplicate: 0.1,
            delay: Duration::from_millis(20),
            jitter: Duration::from_millis(80),
        }
    }
}

/// What happened to one side.
#[derive(Debug, Default)]
pub struct SideLog {
    pub connected: Option<(Duration, Box<DtlsKeys>)>,
    pub failed: Option<(Duration, DtlsError)>,
    pub closed: bool,
    pub app_data: Vec<Vec<u8>>,
    pub sent: Vec<Vec<u8>>,
    pub max_datagram: usize,
}

/// Decides to drop a datagram: (from client?, index of the datagram from that side, bytes).
pub type DropFilter = Box<dyn FnMut(bool, usize, &[u8]) -> bool>;

pub struct Pair {
    pub client: DtlsEndpoint,
    pub server: DtlsEndpoint,
    pub start: Instant,
    pub now: Instant,
    /// Seeds the fate (loss, duplication, delay) of each datagram.
    pub seed: u64,
    pub net: Netem,
    /// (deliver at, to server, datagram)
    pub in_flight: Vec<(Instant, bool, Vec<u8>)>,
    pub c: SideLog,
    pub s: SideLog,
    /// Hook deciding to drop a datagram: (from client?, index of datagram from that side, bytes).
    pub filter: Option<DropFilter>,
}

/// Two fixed certificates (client, server) from `tests/fixtures`: fresh ones
/// differ in size from run to run (their signatures are 70 to 72 bytes), which
/// at a small MTU changes how many datagrams a flight takes.
pub fn certs() -> (Arc<Certificate>, Arc<Certificate>) {
    let load = |pem, key| Arc::new(Certificate::from_pem(pem, key).unwrap());
    (
        load(
            include_str!("../fixtures/dtls_client.pem"),
            include_str!("../fixtures/dtls_client.key"),
        ),
        load(
            include_str!("../fixtures/dtls_server.pem"),
            include_str!("../fixtures/dtls_server.key"),
        ),
    )
}

/// A random generator for one datagram: its fate depends only on the seed,
/// the direction and the datagram's index, not on how many random numbers
/// earlier datagrams drew (the handshake signatures still vary in length from
/// run to run, and with them the number of datagrams of a flight).
fn datagram_rng(seed: u64, from_client: bool, index: usize) -> StdRng {
    let mut x =
        seed ^ ((index as u64) << 1 | from_client as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(x ^ (x >> 31))
}

impl Pair {
    pub fn new(seed: u64, net: Netem, ccfg: DtlsConfig, scfg: DtlsConfig) -> Self {
        let (cc, sc) = certs();
        Self::with_certs(seed, net, ccfg, scfg, cc, sc, true)
    }

    pub fn with_certs(
        seed: u64,
        net: Netem,
        ccfg: DtlsConfig,
        scfg: DtlsConfig,
        cc: Arc<Certificate>,
        sc: Arc<Certificate>,
        check_fingerprints: bool,
    ) -> Self {
        let start = Instant::now();
        let (cfp, sfp) = if check_fingerprints {
            (Some(sc.fingerprint()), Some(cc.fingerprint()))
        } else {
            (None, None)
        };
        Pair {
            client: DtlsEndpoint::client(Arc::new(ccfg), cc, cfp, start),
            server: DtlsEndpoint::server(Arc::new(scfg), sc, sfp, start),
            start,
            now: start,
            seed,
            net,
            in_flight: Vec::new(),
            c: SideLog::default(),
            s: SideLog::default(),
            filter: None,
        }
    }

    fn collect(&mut self) {
        let t = self.now - self.start;
        for client in [true, false] {
            let (ep, log) = if client {
                (&mut self.client, &mut self.c)
            } else {
                (&mut self.server, &mut self.s)
            };
            while let Some(ev) = ep.poll_event() {
                match ev {
                    DtlsEvent::Connected(k) => {
                        assert!(log.connected.is_none(), "Connected twice");
                        log.connected = Some((t, k));
                    }
                    DtlsEvent::Failed(e) => log.failed = Some((t, e)),
                    DtlsEvent::Closed => log.closed = true,
                    DtlsEvent::ApplicationData(d) => log.app_data.push(d),
                }
            }
            while let Some(d) = ep.poll_transmit() {
                log.max_datagram = log.max_datagram.max(d.len());
                let idx = log.sent.len();
                log.sent.push(d.clone());
                if let Some(f) = self.filter.as_mut() {
                    if f(client, idx, &d) {
                        continue;
                    }
                }
                let mut rng = datagram_rng(self.seed, client, idx);
                if rng.gen_bool(self.net.loss) {
                    continue;
                }
                let copies = if rng.gen_bool(self.net.duplicate) {
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let j = if self.net.jitter.is_zero() {
                        Duration::ZERO
                    } else {
                        self.net.jitter.mul_f64(rng.gen::<f64>())
                    };
                    self.in_flight
                        .push((self.now + self.net.delay + j, client, d.clone()));
                }
            }
        }
    }

    /// Advances to the next event; false when nothing is left to do.
    pub fn step(&mut self) -> bool {
        self.collect();
        let mut next: Option<Instant> = self.in_flight.iter().map(|x| x.0).min();
        for t in [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        let Some(next) = next else { return false };
        self.now = self.now.max(next);
        let now = self.now;
        // Deliver due datagrams in delivery-time order.
        self.in_flight.sort_by_key(|x| x.0);
        let due: Vec<_> = {
            let n = self.in_flight.iter().take_while(|x| x.0 <= now).count();
            self.in_flight.drain(..n).collect()
        };
        for (_, to_server, d) in due {
            if to_server {
                self.server.handle_datagram(&d, now);
            } else {
                self.client.handle_datagram(&d, now);
            }
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        self.collect();
        true
    }

    /// Runs until both sides connected or closed, or `limit` of virtual time.
    pub fn run(&mut self, limit: Duration) {
        while self.now - self.start < limit {
            let done = |l: &SideLog| l.connected.is_some() || l.failed.is_some() || l.closed;
            if done(&self.c) && done(&self.s) && self.in_flight.is_empty() {
                break;
            }
            if !self.step() {
                break;
            }
        }
    }

    pub fn keys(&self) -> (&DtlsKeys, &DtlsKeys) {
        let c = &self
            .c
            .connected
            .as_ref()
            .unwrap_or_else(|| panic!("client not connected: {:?}", self.c.failed))
            .1;
        let s = &self
            .s
            .connected
            .as_ref()
            .unwrap_or_else(|| panic!("server not connected: {:?}", self.s.failed))
            .1;
        (c, s)
    }
}
