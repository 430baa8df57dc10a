//! DTLS-SRTP legs: the control thread runs every handshake.
//!
//! A leg whose keys come from DTLS is created in the dataplane with
//! `keys_pending`, so nothing is relayed to or from it in the clear. Its DTLS
//! datagrams arrive here over the event ring ([`Event::Datagram`] with the
//! owning leg); what the endpoint answers goes back out with
//! [`Command::SendOnLeg`]. When the handshake completes, the exported keys are
//! installed into the owning worker with one [`Command::UpdateLeg`]; a failure
//! (fingerprint mismatch, fatal alert, timeout) ends that attempt only: before
//! the handshake is authenticated anyone can send an alert or a bad message, so
//! one failed attempt must not end the call. The leg waits for another attempt
//! (a client retries after the initial retransmission timeout) until its
//! deadline (`handshake_timeout` after its role was known); a leg that has not
//! connected by then fails with the last attempt's error and the call is closed.
//!
//! A server leg allocates an endpoint only for a ClientHello that carries a
//! valid cookie for its source address ([`CookieKeys`]: the first hello gets a
//! stateless HelloVerifyRequest), so spoofed datagrams allocate nothing. One
//! attempt runs at a time; a verified hello from the signalled remote address
//! replaces an attempt with another source that has not connected. A client leg
//! sends only to the signalled remote and never learns it from a datagram.
//!
//! Timers cost O(log n) per due retransmission: a heap of deadlines, checked
//! against each endpoint's current deadline when they come due (stale entries
//! are skipped).
//!
//! [`Event::Datagram`]: rtp_dataplane::Event::Datagram

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rtp_dataplane::{Command, LegSrtp, LegUpdate};

use crate::dtls::{
    Certificate, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent,
    DtlsKeys, Fingerprint, Role,
};
use crate::engine::CallId;

/// How a leg takes part in DTLS-SRTP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DtlsLegParams {
    /// Our role: the DTLS client (`a=setup:active`) sends the ClientHello, the
    /// server (`a=setup:passive`) waits for it. `None` while undecided (we
    /// offered `actpass` and the answer has not come): media stays blocked.
    pub role: Option<Role>,
    /// The peer's certificate fingerprint from its `a=fingerprint`; the
    /// handshake fails without keys when the certificate does not match.
    /// `None` accepts any certificate (only for tests and trusted peers).
    pub fingerprint: Option<Fingerprint>,
}

/// What the control thread must do after feeding the DTLS legs.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Send this command to the worker that owns the call.
    Command(usize, Command),
    /// A handshake completed and its keys were queued for installation.
    Connected {
        call: CallId,
        leg: usize,
        keys: Box<DtlsKeys>,
    },
    /// One handshake attempt failed; the leg waits for another until its
    /// deadline.
    AttemptFailed {
        call: CallId,
        leg: usize,
        from: Option<SocketAddr>,
        error: DtlsError,
    },
    /// The leg did not connect by its deadline; the call should be closed.
    Failed {
        call: CallId,
        leg: usize,
        error: DtlsError,
    },
}

/// Counters of the DTLS side of the control thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DtlsCounters {
    /// Handshakes started (client hellos sent or first client hello received).
    pub started: u64,
    /// Handshakes completed with keys installed.
    pub completed: u64,
    /// Handshake attempts that failed (timeout, mismatch, alert, bad keys).
    pub failed: u64,
    /// Legs that did not connect by their deadline (their calls were closed).
    pub legs_failed: u64,
    /// DTLS datagrams ignored: no DTLS leg, role undecided, not a ClientHello
    /// where one is due, or from a source other than the one the handshake runs
    /// with.
    pub ignored: u64,
}

#[derive(Debug)]
struct Leg {
    worker: usize,
    params: DtlsLegParams,
    /// Remote RTP address from signalling (where a client sends its hello).
    remote: Option<SocketAddr>,
    /// The address the handshake runs with.
    peer: Option<SocketAddr>,
    endpoint: Option<DtlsEndpoint>,
    connected: bool,
    /// When the leg must have connected (set once its role is known).
    deadline: Option<Instant>,
    /// A client leg retries after a failed attempt no earlier than this.
    retry_at: Option<Instant>,
    /// Why the last attempt failed.
    last_error: Option<DtlsError>,
    /// The deadline passed: no more attempts.
    given_up: bool,
    /// The endpoint timer entry in the heap that counts (earlier or stale ones
    /// may be there too): one push per change of the endpoint's next timeout
    /// rather than one per datagram.
    armed: Option<Instant>,
}

/// Every DTLS-SRTP leg of the engine.
#[derive(Debug)]
pub(crate) struct DtlsLegs {
    config: Arc<DtlsConfig>,
    cert: Arc<Certificate>,
    fingerprint: Fingerprint,
    legs: HashMap<(CallId, usize), Leg>,
    timers: BinaryHeap<Reverse<(Instant, CallId, usize)>>,
    /// Cookie secrets of server legs (rotated).
    cookies: CookieKeys,
    pub counters: DtlsCounters,
}

impl DtlsLegs {
    pub fn new(config: DtlsConfig, cert: Certificate) -> Self {
        let fingerprint = cert.fingerprint();
        DtlsLegs {
            config: Arc::new(config),
            cert: Arc::new(cert),
            fingerprint,
            legs: HashMap::new(),
            timers: BinaryHeap::new(),
            cookies: CookieKeys::new(Instant::now()),
            counters: DtlsCounters::default(),
        }
    }

    /// Our certificate's fingerprint, for `a=fingerprint`.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// A new DTLS leg of a call owned by `worker`.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        call: CallId,
        leg: usize,
        worker: usize,
        params: DtlsLegParams,
        remote: Option<SocketAddr>,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        self.legs.insert(
            (call, leg),
            Leg {
                worker,
                params,
                remote,
                peer: None,
                endpoint: None,
                connected: false,
                deadline: None,
                retry_at: None,
                last_error: None,
                given_up: false,
                armed: None,
            },
        );
        self.arm_deadline(call, leg, now);
        self.maybe_start_client(call, leg, now, out);
    }

    /// New role or fingerprint (an answer decided `a=setup`, a re-offer).
    /// Unchanged parameters keep the association; changed ones restart the
    /// handshake (the old keys stay installed until new ones replace them).
    pub fn set(
        &mut self,
        call: CallId,
        leg: usize,
        params: DtlsLegParams,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) -> bool {
        let Some(l) = self.legs.get_mut(&(call, leg)) else {
            return false;
        };
        if l.params != params {
            l.params = params;
            l.endpoint = None;
            l.peer = None;
            l.connected = false;
            l.deadline = None;
            l.retry_at = None;
        }
        self.arm_deadline(call, leg, now);
        self.maybe_start_client(call, leg, now, out);
        true
    }

    /// Starts the leg's deadline once its role is known.
    fn arm_deadline(&mut self, call: CallId, leg: usize, now: Instant) {
        let timeout = self.config.handshake_timeout;
        if let Some(l) = self.legs.get_mut(&(call, leg)) {
            if l.params.role.is_some() && l.deadline.is_none() && !l.connected {
                let d = now + timeout;
                l.deadline = Some(d);
                self.timers.push(Reverse((d, call, leg)));
            }
        }
    }

    /// The signalled remote address changed.
    pub fn remote_changed(
        &mut self,
        call: CallId,
        leg: usize,
        remote: Option<SocketAddr>,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        if let Some(l) = self.legs.get_mut(&(call, leg)) {
            l.remote = remote;
            // A client still handshaking with the old address starts over
            // towards the new one.
            if l.params.role == Some(Role::Client) && !l.connected && l.peer != remote {
                l.endpoint = None;
                l.peer = None;
            }
            self.maybe_start_client(call, leg, now, out);
        }
    }

    /// Forgets every leg of a call.
    pub fn remove_call(&mut self, call: CallId) {
        self.legs.remove(&(call, 0));
        self.legs.remove(&(call, 1));
    }

    /// A DTLS datagram arrived on a leg.
    pub fn datagram(
        &mut self,
        call: CallId,
        leg: usize,
        src: SocketAddr,
        data: &[u8],
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        let Some(l) = self.legs.get_mut(&(call, leg)) else {
            self.counters.ignored += 1;
            return;
        };
        if l.given_up {
            self.counters.ignored += 1;
            return;
        }
        // A verified hello from the signalled remote may replace an attempt with
        // another source that has not connected.
        let takeover = l.params.role == Some(Role::Server)
            && l.endpoint.is_some()
            && !l.connected
            && l.peer != Some(src)
            && l.remote == Some(src);
        if takeover {
            l.endpoint = None;
            l.peer = None;
        }
        match (l.params.role, &mut l.endpoint) {
            (None, _) => {
                self.counters.ignored += 1;
                return;
            }
            (Some(Role::Server), None) => {
                // The stateless front door: a hello without a valid cookie for
                // its source address gets a HelloVerifyRequest and allocates
                // nothing, so spoofed or garbage datagrams cannot take the leg.
                match self.cookies.check(src, data) {
                    CookieVerdict::Accept => {}
                    CookieVerdict::Respond(hvr) => {
                        out.push(Outcome::Command(
                            l.worker,
                            Command::SendOnLeg {
                                session: call,
                                leg,
                                data: hvr,
                                rtcp: false,
                                protect: false,
                                to: Some(src),
                            },
                        ));
                        return;
                    }
                    CookieVerdict::Drop => {
                        self.counters.ignored += 1;
                        return;
                    }
                }
                l.endpoint = Some(DtlsEndpoint::server(
                    self.config.clone(),
                    self.cert.clone(),
                    l.params.fingerprint.clone(),
                    now,
                ));
                l.peer = Some(src);
                l.connected = false;
                self.counters.started += 1;
            }
            (Some(Role::Client), None) => {
                // Between attempts (or before the remote is signalled): a
                // client never learns where to send from a datagram.
                self.counters.ignored += 1;
                return;
            }
            (Some(_), Some(_)) if l.peer != Some(src) => {
                // The handshake runs with one address; a connected leg whose
                // peer moved re-keys through signalling.
                self.counters.ignored += 1;
                return;
            }
            (Some(_), Some(_)) => {}
        }
        if let Some(ep) = self
            .legs
            .get_mut(&(call, leg))
            .and_then(|l| l.endpoint.as_mut())
        {
            ep.handle_datagram(data, now);
        }
        self.flush(call, leg, out);
    }

    /// Runs the retransmission and handshake timers that are due.
    pub fn timers(&mut self, now: Instant, out: &mut Vec<Outcome>) {
        self.cookies.rotate_if_due(now);
        while let Some(&Reverse((at, call, leg))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(l) = self.legs.get_mut(&(call, leg)) {
                if l.armed == Some(at) {
                    l.armed = None;
                }
                if !l.connected && !l.given_up && l.deadline.is_some_and(|d| d <= now) {
                    l.given_up = true;
                    l.endpoint = None;
                    self.counters.legs_failed += 1;
                    let error = l.last_error.take().unwrap_or(DtlsError::Timeout);
                    out.push(Outcome::Failed { call, leg, error });
                    continue;
                }
                if l.endpoint.is_none() && l.retry_at.is_some_and(|r| r <= now) {
                    l.retry_at = None;
                    self.maybe_start_client(call, leg, now, out);
                    continue;
                }
            }
            let due = self
                .legs
                .get(&(call, leg))
                .and_then(|l| l.endpoint.as_ref())
                .and_then(DtlsEndpoint::poll_timeout)
                .is_some_and(|t| t <= now);
            if due {
                if let Some(ep) = self
                    .legs
                    .get_mut(&(call, leg))
                    .and_then(|l| l.endpoint.as_mut())
                {
                    ep.handle_timeout(now);
                }
                self.flush(call, leg, out);
            } else if let Some(l) = self.legs.get_mut(&(call, leg)) {
                // The endpoint's timer moved later since this entry was pushed.
                let next = l.endpoint.as_ref().and_then(DtlsEndpoint::poll_timeout);
                arm(&mut self.timers, l, next, call, leg);
            }
        }
    }

    fn maybe_start_client(
        &mut self,
        call: CallId,
        leg: usize,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        let Some(l) = self.legs.get_mut(&(call, leg)) else {
            return;
        };
        if l.params.role != Some(Role::Client)
            || l.endpoint.is_some()
            || l.given_up
            || l.retry_at.is_some_and(|r| r > now)
        {
            return;
        }
        let Some(remote) = l.remote else { return };
        l.connected = false;
        l.endpoint = Some(DtlsEndpoint::client(
            self.config.clone(),
            self.cert.clone(),
            l.params.fingerprint.clone(),
            now,
        ));
        l.peer = Some(remote);
        self.counters.started += 1;
        self.flush(call, leg, out);
    }

    /// Sends what the endpoint wants sent, handles its events and arms its timer.
    fn flush(&mut self, call: CallId, leg: usize, out: &mut Vec<Outcome>) {
        let Some(l) = self.legs.get_mut(&(call, leg)) else {
            return;
        };
        let worker = l.worker;
        let peer = l.peer;
        let Some(ep) = l.endpoint.as_mut() else {
            return;
        };
        let mut failed = None;
        while let Some(e) = ep.poll_event() {
            match e {
                DtlsEvent::Connected(keys) if !l.connected => match keys.srtp_configs() {
                    Ok((outbound, inbound)) => {
                        l.connected = true;
                        self.counters.completed += 1;
                        out.push(Outcome::Command(
                            worker,
                            Command::UpdateLeg {
                                session: call,
                                leg,
                                update: Box::new(LegUpdate {
                                    srtp: Some(Some(LegSrtp { inbound, outbound })),
                                    // Media flows with the address the handshake ran with.
                                    remote: peer.map(Some),
                                    ..LegUpdate::default()
                                }),
                            },
                        ));
                        out.push(Outcome::Connected { call, leg, keys });
                    }
                    Err(e) => failed = Some(e),
                },
                DtlsEvent::Connected(_) | DtlsEvent::ApplicationData(_) | DtlsEvent::Closed => {}
                DtlsEvent::Failed(e) => failed = Some(e),
            }
        }
        if let Some(error) = failed {
            self.counters.failed += 1;
            // Pending datagrams and the final alert go out before the state is freed.
            transmit(ep, worker, call, leg, peer, out);
            l.endpoint = None;
            l.peer = None;
            l.last_error = Some(error.clone());
            if l.params.role == Some(Role::Client) && !l.connected {
                let r = Instant::now() + self.config.initial_timeout;
                l.retry_at = Some(r);
                self.timers.push(Reverse((r, call, leg)));
            }
            out.push(Outcome::AttemptFailed {
                call,
                leg,
                from: peer,
                error,
            });
            return;
        }
        // Transmit after the keys are queued: the peer cannot see our final
        // flight before the worker has the keys that go with it.
        transmit(ep, worker, call, leg, peer, out);
        if ep.is_closed() {
            l.endpoint = None;
            return;
        }
        let next = ep.poll_timeout();
        arm(&mut self.timers, l, next, call, leg);
    }
}

/// Makes sure a heap entry fires no later than the endpoint's `next` timeout.
fn arm(
    timers: &mut BinaryHeap<Reverse<(Instant, CallId, usize)>>,
    l: &mut Leg,
    next: Option<Instant>,
    call: CallId,
    leg: usize,
) {
    if let Some(t) = next {
        if l.armed.is_none_or(|a| t < a) {
            l.armed = Some(t);
            timers.push(Reverse((t, call, leg)));
        }
    }
}

/// Queues every datagram the endpoint wants sent on the leg.
fn transmit(
    ep: &mut DtlsEndpoint,
    worker: usize,
    call: CallId,
    leg: usize,
    peer: Option<SocketAddr>,
    out: &mut Vec<Outcome>,
) {
    while let Some(data) = ep.poll_transmit() {
        out.push(Outcome::Command(
            worker,
            Command::SendOnLeg {
                session: call,
                leg,
                data,
                rtcp: false,
                protect: false,
                to: peer,
            },
        ));
    }
}
