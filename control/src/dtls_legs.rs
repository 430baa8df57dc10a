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
//! stateless HelloVerifyRequest), so spoofed datagrams allocate nothing and
//! cannot disturb an attempt in progress. A few attempts run at once, one per
//! source that passed the cookie check (behind a NAT the real peer's address is
//! not the signalled one); the first to connect wins and the others end. When
//! all slots are taken, a new verified source replaces the attempt heard from
//! least recently, so a source that passes the check and goes quiet cannot
//! hold the leg. A client leg sends only to the signalled remote and never
//! learns it from a datagram.
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
    /// Server handshake attempts dropped to make room for a new source that
    /// passed the cookie check while every attempt slot of the leg was taken.
    pub replaced: u64,
}

/// The most handshake attempts a server leg runs at once, one per source
/// address that passed the cookie check. More than one, so that a source that
/// passes the check and then goes quiet cannot hold the leg; few, so that the
/// state a leg can be made to hold stays small.
const MAX_ATTEMPTS: usize = 4;

/// One handshake with one address.
#[derive(Debug)]
struct Attempt {
    peer: SocketAddr,
    ep: DtlsEndpoint,
    /// When a datagram from `peer` last reached this attempt (the least
    /// recently heard attempt makes room for a new source).
    heard: Instant,
}

#[derive(Debug)]
struct Leg {
    worker: usize,
    params: DtlsLegParams,
    /// Remote RTP address from signalling (where a client sends its hello).
    remote: Option<SocketAddr>,
    /// Handshakes in progress, one per address: a client leg has at most one
    /// (with `remote`), a server leg up to [`MAX_ATTEMPTS`]. The first to
    /// connect wins and the others are dropped, so a connected leg keeps only
    /// its own.
    attempts: Vec<Attempt>,
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
    /// may be there too): one push per change of the endpoints' next timeout
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
                attempts: Vec::new(),
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
            l.attempts.clear();
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
            if l.params.role == Some(Role::Client)
                && !l.connected
                && l.attempts.iter().any(|a| Some(a.peer) != remote)
            {
                l.attempts.clear();
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
        let Some(role) = l.params.role.filter(|_| !l.given_up) else {
            self.counters.ignored += 1;
            return;
        };
        let idx = match l.attempts.iter().position(|a| a.peer == src) {
            Some(i) => i,
            // A client never learns where to send from a datagram; a connected
            // leg whose peer moved re-keys through signalling.
            None if role == Role::Client || (l.connected && !l.attempts.is_empty()) => {
                self.counters.ignored += 1;
                return;
            }
            None => {
                // The stateless front door: a hello without a valid cookie for
                // its source address gets a HelloVerifyRequest and allocates
                // nothing, so spoofed or garbage datagrams cannot take the leg
                // nor disturb the attempts running with other addresses.
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
                if l.attempts.len() >= MAX_ATTEMPTS {
                    // Every slot is taken by a source that answered a cookie:
                    // the one heard from least recently makes room.
                    if let Some(i) = (0..l.attempts.len()).min_by_key(|&i| l.attempts[i].heard) {
                        l.attempts.remove(i);
                        self.counters.replaced += 1;
                    }
                }
                if l.attempts.is_empty() {
                    // A new handshake after the last one closed.
                    l.connected = false;
                }
                l.attempts.push(Attempt {
                    peer: src,
                    ep: DtlsEndpoint::server(
                        self.config.clone(),
                        self.cert.clone(),
                        l.params.fingerprint.clone(),
                        now,
                    ),
                    heard: now,
                });
                self.counters.started += 1;
                l.attempts.len() - 1
            }
        };
        let a = &mut l.attempts[idx];
        a.heard = now;
        a.ep.handle_datagram(data, now);
        self.flush(call, leg, src, now, out);
    }

    /// Runs the retransmission and handshake timers that are due.
    pub fn timers(&mut self, now: Instant, out: &mut Vec<Outcome>) {
        self.cookies.rotate_if_due(now);
        while let Some(&Reverse((at, call, leg))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(l) = self.legs.get_mut(&(call, leg)) else {
                continue;
            };
            if l.armed == Some(at) {
                l.armed = None;
            }
            if !l.connected && !l.given_up && l.deadline.is_some_and(|d| d <= now) {
                l.given_up = true;
                l.attempts.clear();
                self.counters.legs_failed += 1;
                let error = l.last_error.take().unwrap_or(DtlsError::Timeout);
                out.push(Outcome::Failed { call, leg, error });
                continue;
            }
            if l.attempts.is_empty() && l.retry_at.is_some_and(|r| r <= now) {
                l.retry_at = None;
                self.maybe_start_client(call, leg, now, out);
                continue;
            }
            let mut due = [None; MAX_ATTEMPTS];
            for (slot, a) in due.iter_mut().zip(&l.attempts) {
                if a.ep.poll_timeout().is_some_and(|t| t <= now) {
                    *slot = Some(a.peer);
                }
            }
            for peer in due.into_iter().flatten() {
                if let Some(a) = self
                    .legs
                    .get_mut(&(call, leg))
                    .and_then(|l| l.attempts.iter_mut().find(|a| a.peer == peer))
                {
                    a.ep.handle_timeout(now);
                    self.flush(call, leg, peer, now, out);
                }
            }
            // The endpoints' timers may have moved since this entry was pushed.
            self.rearm(call, leg);
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
            || !l.attempts.is_empty()
            || l.given_up
            || l.retry_at.is_some_and(|r| r > now)
        {
            return;
        }
        let Some(remote) = l.remote else { return };
        l.connected = false;
        l.attempts.push(Attempt {
            peer: remote,
            ep: DtlsEndpoint::client(
                self.config.clone(),
                self.cert.clone(),
                l.params.fingerprint.clone(),
                now,
            ),
            heard: now,
        });
        self.counters.started += 1;
        self.flush(call, leg, remote, now, out);
    }

    /// Sends what the attempt with `peer` wants sent, handles its events and
    /// arms the leg's timer.
    fn flush(
        &mut self,
        call: CallId,
        leg: usize,
        peer: SocketAddr,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        let Some(l) = self.legs.get_mut(&(call, leg)) else {
            return;
        };
        let worker = l.worker;
        let Some(idx) = l.attempts.iter().position(|a| a.peer == peer) else {
            return;
        };
        let ep = &mut l.attempts[idx].ep;
        let mut failed = None;
        let mut won = false;
        while let Some(e) = ep.poll_event() {
            match e {
                DtlsEvent::Connected(keys) if !l.connected => match keys.srtp_configs() {
                    Ok((outbound, inbound)) => {
                        l.connected = true;
                        won = true;
                        self.counters.completed += 1;
                        out.push(Outcome::Command(
                            worker,
                            Command::UpdateLeg {
                                session: call,
                                leg,
                                update: Box::new(LegUpdate {
                                    srtp: Some(Some(LegSrtp { inbound, outbound })),
                                    // Media flows with the address the handshake ran with.
                                    remote: Some(Some(peer)),
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
            l.attempts.remove(idx);
            l.last_error = Some(error.clone());
            if l.params.role == Some(Role::Client) && !l.connected {
                let r = now + self.config.initial_timeout;
                l.retry_at = Some(r);
                self.timers.push(Reverse((r, call, leg)));
            }
            out.push(Outcome::AttemptFailed {
                call,
                leg,
                from: Some(peer),
                error,
            });
            self.rearm(call, leg);
            return;
        }
        // Transmit after the keys are queued: the peer cannot see our final
        // flight before the worker has the keys that go with it.
        transmit(ep, worker, call, leg, peer, out);
        if ep.is_closed() {
            l.attempts.remove(idx);
        } else if won {
            // The first attempt to connect wins; the others end here.
            let a = l.attempts.swap_remove(idx);
            l.attempts.clear();
            l.attempts.push(a);
        }
        self.rearm(call, leg);
    }

    /// Makes sure a heap entry fires no later than the leg's earliest endpoint
    /// timeout.
    fn rearm(&mut self, call: CallId, leg: usize) {
        if let Some(l) = self.legs.get_mut(&(call, leg)) {
            let next = l.attempts.iter().filter_map(|a| a.ep.poll_timeout()).min();
            arm(&mut self.timers, l, next, call, leg);
        }
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
    peer: SocketAddr,
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
                to: Some(peer),
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const CALL: CallId = 7;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn server_legs(remote: SocketAddr, now: Instant) -> DtlsLegs {
        let mut legs = DtlsLegs::new(DtlsConfig::default(), Certificate::generate().unwrap());
        let params = DtlsLegParams {
            role: Some(Role::Server),
            fingerprint: None,
        };
        legs.add(CALL, 0, 0, params, Some(remote), now, &mut Vec::new());
        legs
    }

    fn client(now: Instant) -> DtlsEndpoint {
        let cert = Arc::new(Certificate::generate().unwrap());
        DtlsEndpoint::client(Arc::new(DtlsConfig::default()), cert, None, now)
    }

    /// `rounds` times: the client's datagrams from `src` into the leg, the
    /// leg's answers to `src` back. True once the leg reported Connected.
    fn exchange(
        legs: &mut DtlsLegs,
        client: &mut DtlsEndpoint,
        src: SocketAddr,
        now: Instant,
        rounds: usize,
    ) -> bool {
        let mut connected = false;
        for _ in 0..rounds {
            let mut out = Vec::new();
            while let Some(d) = client.poll_transmit() {
                legs.datagram(CALL, 0, src, &d, now, &mut out);
            }
            for o in out {
                match o {
                    Outcome::Command(_, Command::SendOnLeg { data, to, .. }) if to == Some(src) => {
                        client.handle_datagram(&data, now)
                    }
                    Outcome::Connected { .. } => connected = true,
                    _ => {}
                }
            }
        }
        connected
    }

    fn sends(out: &[Outcome]) -> usize {
        out.iter()
            .filter(|o| matches!(o, Outcome::Command(_, Command::SendOnLeg { .. })))
            .count()
    }

    #[test]
    fn spoofed_datagrams_from_the_signalled_address_leave_a_handshake_alone() {
        let now = Instant::now();
        let (sdp, nat) = (addr("192.0.2.1:5000"), addr("198.51.100.9:40000"));
        let mut legs = server_legs(sdp, now);
        let mut real = client(now);
        // Cookie exchange and the server's flight, with the NAT address.
        assert!(!exchange(&mut legs, &mut real, nat, now, 2));
        // An off-path attacker spoofs the signalled address: a cookie-less
        // hello gets a HelloVerifyRequest, garbage is ignored.
        let mut out = Vec::new();
        let hello = client(now).poll_transmit().unwrap();
        legs.datagram(CALL, 0, sdp, &hello, now, &mut out);
        assert_eq!(sends(&out), 1, "stateless HelloVerifyRequest");
        let garbage = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0];
        legs.datagram(CALL, 0, sdp, &garbage, now, &mut out);
        assert_eq!(legs.counters.ignored, 1);
        assert!(
            exchange(&mut legs, &mut real, nat, now, 2),
            "the handshake with the NAT address survives: {:?}",
            legs.counters
        );
        assert_eq!((legs.counters.started, legs.counters.completed), (1, 1));
        assert_eq!(legs.counters.replaced, 0);
    }

    #[test]
    fn silent_sources_that_pass_the_cookie_check_cannot_hold_a_server_leg() {
        let t0 = Instant::now();
        let mut legs = server_legs(addr("192.0.2.1:5000"), t0);
        // More impostors than slots: each answers the cookie, gets our flight
        // and goes quiet.
        for i in 0..=MAX_ATTEMPTS {
            let now = t0 + Duration::from_millis(i as u64);
            let src = SocketAddr::from(([203, 0, 113, i as u8], 6000));
            assert!(!exchange(&mut legs, &mut client(now), src, now, 2));
        }
        assert_eq!(
            legs.counters.replaced, 1,
            "the least recently heard made room"
        );
        let now = t0 + Duration::from_millis(50);
        let real = addr("198.51.100.9:40000");
        assert!(exchange(&mut legs, &mut client(now), real, now, 3));
        assert_eq!(legs.counters.replaced, 2);
        // The winner keeps the leg; the others' attempts are gone.
        let l = &legs.legs[&(CALL, 0)];
        assert_eq!(l.attempts.len(), 1);
        assert_eq!(l.attempts[0].peer, real);
        let mut out = Vec::new();
        let other = SocketAddr::from(([203, 0, 113, 4], 6000));
        legs.datagram(
            CALL,
            0,
            other,
            &client(now).poll_transmit().unwrap(),
            now,
            &mut out,
        );
        assert_eq!(sends(&out), 0, "a connected leg ignores other sources");
    }

    #[test]
    fn client_retry_is_timed_from_the_given_now() {
        // Virtual time far from the wall clock.
        let t = Instant::now() + Duration::from_secs(1000);
        let remote = addr("192.0.2.1:5000");
        let mut legs = DtlsLegs::new(DtlsConfig::default(), Certificate::generate().unwrap());
        let params = DtlsLegParams {
            role: Some(Role::Client),
            fingerprint: None,
        };
        let mut out = Vec::new();
        legs.add(CALL, 0, 0, params, Some(remote), t, &mut out);
        assert_eq!(sends(&out), 1, "ClientHello");
        // A fatal alert ends the attempt.
        let alert = [21, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 40];
        out.clear();
        legs.datagram(CALL, 0, remote, &alert, t, &mut out);
        assert!(out
            .iter()
            .any(|o| matches!(o, Outcome::AttemptFailed { .. })));
        out.clear();
        legs.timers(t + Duration::from_millis(500), &mut out);
        assert_eq!(sends(&out), 0, "no retry before initial_timeout");
        legs.timers(t + Duration::from_secs(1), &mut out);
        assert_eq!(sends(&out), 1, "retry after initial_timeout");
        assert_eq!(legs.counters.started, 2);
    }
}
