//! ICE-lite (RFC 8445 section 2.5, RFC 7675 consent) for legs that face a full
//! ICE agent (browsers, WebRTC stacks): the engine answers the peer's STUN
//! connectivity checks on the leg's ports with its short-term credentials and
//! sends media to the candidate the peer nominates. A lite agent gathers only
//! host candidates (the leg's own address and ports) and never sends checks.
//!
//! [`IceLite`] is the sans-IO responder of one leg: fed each STUN datagram that
//! arrives on the leg's RTP port (component 1) or RTCP port (component 2), it
//! hands back the answer to send to the datagram's source and, when a valid
//! check from the controlling peer carried USE-CANDIDATE, the nominated
//! address. The engine wires it in
//! (`LegConfig::ice`, `Engine::set_ice`, `EngineEvent::IceNominated`).
//!
//! What a check must be, and what happens otherwise (RFC 8489 sections 6.3 and
//! 9.1.3, RFC 8445 section 7.3):
//!
//! * Not a STUN message, or no valid FINGERPRINT (RFC 8445 requires it on
//!   checks, and on a port shared with media a message without it is not taken
//!   for STUN): dropped and counted, no answer.
//! * Not a Binding request: responses (a lite agent sends no request) and other
//!   methods are dropped and counted; Binding indications (keepalives) are
//!   counted and ignored.
//! * No USERNAME or no MESSAGE-INTEGRITY: dropped and counted, no answer
//!   (RFC 8489 would answer 400, but an unauthenticated answer to a request
//!   of 28 bytes would be larger than it, at a source that may be forged).
//! * A USERNAME other than `local-ufrag:remote-ufrag` (while the peer's ufrag
//!   is unknown, any `local-ufrag:` prefix), or a MESSAGE-INTEGRITY that does
//!   not verify with the local password: 401 Unauthorized, carrying no
//!   MESSAGE-INTEGRITY (RFC 8489 section 9.1.3: the credentials are wrong),
//!   changing no state, and only when it is no larger than the request (it
//!   goes to a source that proved nothing); otherwise dropped. Answering
//!   rather than dropping tells a peer with stale credentials to stop. The
//!   engine sends these unauthenticated answers within an [`AnswerBudget`] (a
//!   flood of bad checks must not fill a worker's command ring, which carries
//!   other calls' keys and removals); beyond it they are counted drops.
//! * ICE restart (new local credentials, [`IceLite::set_params`]): the
//!   previous credentials stay valid as well, each check answered and signed
//!   with the password it verified with, until the first valid check with the
//!   new ones; then the old ones are forgotten. A peer that never got the
//!   restarting offer goes on with its consent checks on the old pair instead
//!   of meeting 401s until its consent expires.
//! * An unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES;
//!   no PRIORITY (RFC 8445 section 7.3.1), or a malformed PRIORITY /
//!   ICE-CONTROLLING / ICE-CONTROLLED: 400; both signed (the request
//!   authenticated).
//! * Role conflict (RFC 8445 section 7.3.1.1): a lite agent is always
//!   controlled (section 6.1.1: a full agent facing a lite one takes the
//!   controlling role; browsers do). A check claiming ICE-CONTROLLED is
//!   answered with 487 Role Conflict, whatever its tie-breaker, so that the
//!   peer switches to controlling; we never switch, and such a check nominates
//!   nothing. ICE-CONTROLLING, or no role attribute, is accepted; only a
//!   check with ICE-CONTROLLING nominates (the controlling agent nominates).
//! * Otherwise: a success response with XOR-MAPPED-ADDRESS = the source,
//!   signed with the local password, plus FINGERPRINT. With USE-CANDIDATE and
//!   ICE-CONTROLLING, the source becomes the component's nominated address; a
//!   later nomination of another address replaces it (the peer's network
//!   changed). A source that cannot be a peer's candidate (port 0, an
//!   unspecified, multicast or broadcast address, or one the caller names as
//!   its own, [`IceLite::on_datagram_guarded`]: another call's media port) is
//!   never nominated (counted); the first three are not answered either.
//!
//! Not done: sending checks or consent-freshness requests (a lite agent sends
//! none; the peer's consent checks are answered like any check, and a peer
//! that stops is seen by the media timeout), TURN or server-reflexive
//! candidates (host candidates only), peer-reflexive candidate bookkeeping,
//! more than one stream per leg, and aggressive- versus regular-nomination
//! distinctions (every nominating check counts).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use rtp_core::stun::{self, Class, IceRole, StunMessage, BINDING};

/// ICE short-term credentials (`a=ice-ufrag` / `a=ice-pwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// Username fragment (4 to 256 ice-chars).
    pub ufrag: String,
    /// Password (22 to 256 ice-chars).
    pub pwd: String,
}

/// The `ice-char` set of RFC 8839: letters, digits, `+` and `/`.
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl IceCredentials {
    /// Fresh random credentials: an 8-character ufrag and a 24-character
    /// password (144 bits), from the operating system's generator.
    pub fn random() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ICE_CHARS[rng.gen_range(0..ICE_CHARS.len())]))
                .collect()
        };
        IceCredentials {
            ufrag: pick(8),
            pwd: pick(24),
        }
    }

    /// Checks the credentials against RFC 8839 (ufrag 4 to 256 ice-chars,
    /// password 22 to 256); the error says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        check_ufrag(&self.ufrag)?;
        if !ice_chars(&self.pwd, 22) {
            return Err(format!(
                "ICE password of {} characters: 22 to 256 characters of A-Z a-z 0-9 + /",
                self.pwd.len()
            ));
        }
        Ok(())
    }
}

/// `s` is `min` to 256 ice-chars.
fn ice_chars(s: &str, min: usize) -> bool {
    (min..=256).contains(&s.len()) && s.bytes().all(|c| ICE_CHARS.contains(&c))
}

fn check_ufrag(ufrag: &str) -> Result<(), String> {
    if ice_chars(ufrag, 4) {
        Ok(())
    } else {
        Err(format!(
            "ICE ufrag {ufrag:?}: 4 to 256 characters of A-Z a-z 0-9 + /"
        ))
    }
}

/// ICE on one leg: our credentials, and the peer's once its SDP gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceLegParams {
    /// Ours, advertised in the SDP sent to the peer.
    pub local: IceCredentials,
    /// The peer's (from its SDP); `None` until known. Checks must then carry a
    /// USERNAME of `local.ufrag:remote.ufrag`.
    pub remote: Option<IceCredentials>,
}

impl IceLegParams {
    /// Checks our credentials, and the peer's ufrag (part of the USERNAME
    /// its checks carry). The peer's password is not checked: a lite agent
    /// sends no checks, so it never uses it.
    pub fn validate(&self) -> Result<(), String> {
        self.local.validate()?;
        if let Some(r) = &self.remote {
            check_ufrag(&r.ufrag).map_err(|e| format!("remote: {e}"))?;
        }
        Ok(())
    }
}

/// What a datagram fed to [`IceLite::on_datagram`] turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceInput {
    /// A valid Binding request: answered with a success response.
    Answered,
    /// A Binding indication (keepalive): ignored.
    Indication,
    /// Not a well-formed STUN message: dropped.
    Malformed,
    /// No FINGERPRINT, or a wrong one: dropped.
    BadFingerprint,
    /// A response, or a method other than Binding: dropped.
    Unexpected,
    /// No USERNAME or no MESSAGE-INTEGRITY: dropped.
    NoCredentials,
    /// No PRIORITY, or a malformed ICE attribute, in an authenticated
    /// request: 400 (signed).
    BadRequest,
    /// USERNAME not ours: 401 (none if larger than the request).
    UnknownUsername,
    /// MESSAGE-INTEGRITY does not verify with the local password: 401 (none
    /// if larger than the request).
    BadIntegrity,
    /// An unknown comprehension-required attribute: 420.
    UnknownAttribute,
    /// The peer claims the controlled role too: 487.
    RoleConflict,
}

/// ICE-lite counters, per reason (per leg in [`IceLite::counters`], for the
/// whole engine in `EngineStats::ice`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IceCounters {
    /// Valid Binding requests answered with success.
    pub answered: u64,
    /// Nominations that set or changed a component's address.
    pub nominations: u64,
    /// Binding indications (keepalives), ignored.
    pub indications: u64,
    /// Not well-formed STUN, dropped.
    pub malformed: u64,
    /// Missing or wrong FINGERPRINT, dropped.
    pub bad_fingerprint: u64,
    /// Responses and non-Binding methods, dropped.
    pub unexpected: u64,
    /// Requests without USERNAME or MESSAGE-INTEGRITY, dropped.
    pub no_credentials: u64,
    /// 400 answers.
    pub bad_request: u64,
    /// 401 answers for a USERNAME that is not ours.
    pub unknown_username: u64,
    /// 401 answers for a MESSAGE-INTEGRITY that does not verify.
    pub bad_integrity: u64,
    /// 420 answers.
    pub unknown_attribute: u64,
    /// 487 answers.
    pub role_conflicts: u64,
    /// Nominations refused: an address that cannot be the peer's candidate
    /// (port 0, unspecified, multicast, broadcast, the engine's own media
    /// ports).
    pub refused_nominations: u64,
    /// STUN on a leg without ICE (not created with it, nor turned on since
    /// by `Engine::set_ice`), dropped (engine only).
    pub not_ice: u64,
    /// STUN from a flow no leg owns, or for a call being deleted, dropped
    /// (engine only).
    pub no_leg: u64,
    /// Answers or nominations lost to a full worker command ring (engine
    /// only; the peer's next check tries again).
    pub ring_full: u64,
    /// Unauthenticated answers (400, 401) not sent: over the engine's
    /// [`AnswerBudget`].
    pub rate_limited: u64,
}

impl IceCounters {
    /// Counts one datagram.
    pub fn count(&mut self, input: IceInput) {
        let c = match input {
            IceInput::Answered => &mut self.answered,
            IceInput::Indication => &mut self.indications,
            IceInput::Malformed => &mut self.malformed,
            IceInput::BadFingerprint => &mut self.bad_fingerprint,
            IceInput::Unexpected => &mut self.unexpected,
            IceInput::NoCredentials => &mut self.no_credentials,
            IceInput::BadRequest => &mut self.bad_request,
            IceInput::UnknownUsername => &mut self.unknown_username,
            IceInput::BadIntegrity => &mut self.bad_integrity,
            IceInput::UnknownAttribute => &mut self.unknown_attribute,
            IceInput::RoleConflict => &mut self.role_conflicts,
        };
        *c += 1;
    }
}

impl IceInput {
    /// Whether the answer to it goes to a sender that did not prove it holds
    /// the credentials (401): such answers are what a flood of forged checks
    /// would make us send.
    pub fn is_unauthenticated_answer(self) -> bool {
        matches!(self, IceInput::UnknownUsername | IceInput::BadIntegrity)
    }
}

/// A token bucket: at most `burst` at once and `per_sec` on average. The
/// engine spends one token per unauthenticated answer (401).
#[derive(Debug, Clone)]
pub struct AnswerBudget {
    tokens: u32,
    burst: u32,
    per_sec: u32,
    last: Instant,
}

impl AnswerBudget {
    /// A full bucket (`per_sec` at least 1).
    pub fn new(burst: u32, per_sec: u32, now: Instant) -> Self {
        AnswerBudget {
            tokens: burst,
            burst,
            per_sec: per_sec.max(1),
            last: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        let per_sec = u128::from(self.per_sec);
        let add = elapsed.as_micros() * per_sec / 1_000_000;
        if add > 0 {
            let room = u128::from(self.burst - self.tokens);
            if add >= room {
                self.tokens = self.burst;
                self.last = now;
            } else {
                self.tokens += add as u32;
                // Keep the fraction of a token earned since.
                let spent = add * 1_000_000 / per_sec;
                self.last += Duration::from_micros(spent as u64);
            }
        }
        if self.tokens > 0 {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// What [`IceLite::on_datagram`] asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceOutcome {
    /// What the datagram was.
    pub input: IceInput,
    /// The answer to send, unprotected, to the datagram's source from the port
    /// it arrived on.
    pub reply: Option<Vec<u8>>,
    /// The component's nominated address, when this datagram set or changed it.
    pub nominated: Option<SocketAddr>,
    /// The datagram would have nominated its source, but that cannot be the
    /// peer's candidate: nothing changed.
    pub refused_nomination: bool,
}

/// Room for any answer: a success response with an IPv6 XOR-MAPPED-ADDRESS is
/// 76 bytes, a 420 with four unknown attributes 104.
const REPLY_MAX: usize = 128;
/// Unknown attributes listed in a 420 answer.
const MAX_UNKNOWN: usize = 4;

/// The ICE-lite responder of one leg (always in the controlled role).
#[derive(Debug, Clone)]
pub struct IceLite {
    params: IceLegParams,
    /// The credentials before an ICE restart, still accepted until the first
    /// valid check with the new ones.
    previous: Option<IceLegParams>,
    /// A check with the current credentials was answered with success.
    confirmed: bool,
    /// Nominated address of component 1 (RTP) and 2 (RTCP).
    nominated: [Option<SocketAddr>; 2],
    last_check: Option<Instant>,
    counters: IceCounters,
}

impl IceLite {
    /// A responder with these credentials and nothing nominated.
    pub fn new(params: IceLegParams) -> Self {
        IceLite {
            params,
            previous: None,
            confirmed: false,
            nominated: [None; 2],
            last_check: None,
            counters: IceCounters::default(),
        }
    }

    /// The credentials in use.
    pub fn params(&self) -> &IceLegParams {
        &self.params
    }

    /// Replaces the credentials. New local ones are an ICE restart (RFC 8445
    /// section 9): the nominations are forgotten, so the peer's checks must
    /// nominate again (media keeps going to the old addresses until then).
    /// The credentials before the restart stay valid as well until the first
    /// valid check with the new ones (the peer may never get the offer that
    /// restarts); after restarts that saw no such check, the last credentials
    /// a check confirmed are the ones kept. Returns whether it was a restart.
    pub fn set_params(&mut self, params: IceLegParams) -> bool {
        let restart = params.local != self.params.local;
        if !restart {
            self.params = params;
            return false;
        }
        self.nominated = [None; 2];
        let old = std::mem::replace(&mut self.params, params);
        if self.confirmed || self.previous.is_none() {
            self.previous = Some(old);
        }
        self.confirmed = false;
        true
    }

    /// The credentials before the last restart, while still accepted.
    pub fn previous_params(&self) -> Option<&IceLegParams> {
        self.previous.as_ref()
    }

    /// The nominated address of `component` (1: RTP, 2: RTCP).
    pub fn nominated(&self, component: u8) -> Option<SocketAddr> {
        self.nominated[slot(component)]
    }

    /// Forgets a component's nomination (its installation failed: the peer's
    /// next nominating check sets it again).
    pub fn forget_nomination(&mut self, component: u8) {
        self.nominated[slot(component)] = None;
    }

    /// When the last valid check arrived.
    pub fn last_valid_check(&self) -> Option<Instant> {
        self.last_check
    }

    /// This leg's counters.
    pub fn counters(&self) -> &IceCounters {
        &self.counters
    }

    /// A STUN datagram from `from` on `component` (1: the RTP port, 2: the
    /// RTCP port; anything else counts as 1). Never panics, whatever the bytes.
    pub fn on_datagram(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        component: u8,
        now: Instant,
    ) -> IceOutcome {
        self.on_datagram_guarded(data, from, component, now, |_| false)
    }

    /// [`on_datagram`](Self::on_datagram), never nominating an address for
    /// which `own` holds (the caller's own media ports: a peer that can forge
    /// its source must not point this leg's media at another call's leg).
    pub fn on_datagram_guarded(
        &mut self,
        data: &[u8],
        from: SocketAddr,
        component: u8,
        now: Instant,
        own: impl FnOnce(SocketAddr) -> bool,
    ) -> IceOutcome {
        let mut buf = [0u8; REPLY_MAX];
        let (input, mut len, nominate, current) = self.handle(data, from, &mut buf);
        self.counters.count(input);
        if input == IceInput::Answered {
            self.last_check = Some(now);
            if current {
                // The peer has the new credentials: the old ones go.
                self.confirmed = true;
                self.previous = None;
            }
        }
        let bogus = !candidate_like(from);
        if bogus || (input.is_unauthenticated_answer() && len > Some(data.len())) {
            len = None;
        }
        let mut nominated = None;
        let mut refused_nomination = false;
        if nominate {
            let s = &mut self.nominated[slot(component)];
            if *s == Some(from) {
                // Already nominated: nothing new.
            } else if bogus || own(from) {
                refused_nomination = true;
                self.counters.refused_nominations += 1;
            } else {
                *s = Some(from);
                self.counters.nominations += 1;
                nominated = Some(from);
            }
        }
        let reply = len.map(|n| buf[..n].to_vec());
        IceOutcome {
            input,
            reply,
            nominated,
            refused_nomination,
        }
    }

    /// Judges a datagram; returns what it was, the length of the answer
    /// written into `out`, whether it nominates its source, and whether it
    /// authenticated with the current credentials (not the previous ones).
    fn handle(
        &self,
        data: &[u8],
        from: SocketAddr,
        out: &mut [u8],
    ) -> (IceInput, Option<usize>, bool, bool) {
        let drop = |input| (input, None, false, false);
        let Ok(msg) = StunMessage::new_checked(data) else {
            return drop(IceInput::Malformed);
        };
        if msg.check_fingerprint().is_err() {
            return drop(IceInput::BadFingerprint);
        }
        if msg.method() != BINDING {
            return drop(IceInput::Unexpected);
        }
        match msg.class() {
            Class::Request => {}
            Class::Indication => return drop(IceInput::Indication),
            Class::Success | Class::Error => return drop(IceInput::Unexpected),
        }
        let tid = msg.transaction_id();
        let error = |out: &mut [u8], input, code, unknown: &[u16], key| {
            (
                input,
                stun::binding_error(out, &tid, code, unknown, key).ok(),
                false,
                false,
            )
        };
        let has_mi = msg.attribute(stun::attr::MESSAGE_INTEGRITY).is_some();
        let Some(user) = msg.username().filter(|_| has_mi) else {
            return drop(IceInput::NoCredentials);
        };
        // The current credentials, then those before a restart.
        let mut known = false;
        let mut key = None;
        for (current, p) in [(true, Some(&self.params)), (false, self.previous.as_ref())] {
            let Some(p) = p.filter(|p| username_ok(p, user)) else {
                continue;
            };
            known = true;
            let pwd = p.local.pwd.as_bytes();
            if msg.check_integrity(pwd).is_ok() {
                key = Some((current, pwd));
                break;
            }
        }
        let Some((current, pwd)) = key else {
            return if known {
                error(out, IceInput::BadIntegrity, 401, &[], None)
            } else {
                error(out, IceInput::UnknownUsername, 401, &[], None)
            };
        };
        let (unknown, n) = msg.unknown_required::<MAX_UNKNOWN>();
        if n > 0 {
            let listed = &unknown[..n.min(MAX_UNKNOWN)];
            return error(out, IceInput::UnknownAttribute, 420, listed, Some(pwd));
        }
        let role = match (msg.priority(), msg.ice_role()) {
            (Ok(Some(_)), Ok(role)) => role,
            _ => return error(out, IceInput::BadRequest, 400, &[], Some(pwd)),
        };
        if let Some(IceRole::Controlled(_)) = role {
            return error(out, IceInput::RoleConflict, 487, &[], Some(pwd));
        }
        let nominate = msg.use_candidate() && matches!(role, Some(IceRole::Controlling(_)));
        match stun::binding_success(out, &tid, from, pwd) {
            Ok(n) => (IceInput::Answered, Some(n), nominate, current),
            // Cannot happen (the buffer holds any success response); dropping
            // is still better than a panic.
            Err(_) => (IceInput::Answered, None, false, current),
        }
    }
}

/// USERNAME is `local-ufrag:remote-ufrag`, or `local-ufrag:` and anything
/// while the peer's ufrag is unknown.
fn username_ok(p: &IceLegParams, user: &[u8]) -> bool {
    let local = p.local.ufrag.as_bytes();
    let Some(rest) = user.strip_prefix(local).and_then(|r| r.strip_prefix(b":")) else {
        return false;
    };
    match &p.remote {
        Some(r) => rest == r.ufrag.as_bytes(),
        None => !rest.is_empty(),
    }
}

/// Whether `a` can be a peer's host candidate at all: not port 0, not an
/// unspecified, multicast or (IPv4) broadcast address.
fn candidate_like(a: SocketAddr) -> bool {
    let ip = a.ip().to_canonical();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    a.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

fn slot(component: u8) -> usize {
    usize::from(component == 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtp_core::stun::{BindingRequest, MessageWriter, StunError};

    fn creds(ufrag: &str, pwd: &str) -> IceCredentials {
        IceCredentials {
            ufrag: ufrag.into(),
            pwd: pwd.into(),
        }
    }

    fn lite(remote: bool) -> IceLite {
        IceLite::new(IceLegParams {
            local: creds("LoCa", "localpasswordlocalpassw"),
            remote: remote.then(|| creds("ReMo", "remotepasswordremotepas")),
        })
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const TID: [u8; 12] = [9; 12];

    fn check(user: &str, key: &[u8], use_candidate: bool, role: Option<IceRole>) -> Vec<u8> {
        let mut b = [0u8; 200];
        let n = BindingRequest {
            username: Some(user),
            priority: Some(1),
            use_candidate,
            role,
        }
        .emit(&mut b, &TID, Some(key))
        .unwrap();
        b[..n].to_vec()
    }

    fn error_code(reply: &[u8]) -> Option<u16> {
        let m = StunMessage::new_checked(reply).unwrap();
        m.check_fingerprint().unwrap();
        m.error_code().unwrap().map(|(c, _)| c)
    }

    const PWD: &[u8] = b"localpasswordlocalpassw";
    const CTL: Option<IceRole> = Some(IceRole::Controlling(7));

    #[test]
    fn a_valid_check_is_answered_with_the_source_signed() {
        let mut l = lite(true);
        let from = addr("192.0.2.7:4000");
        let o = l.on_datagram(
            &check("LoCa:ReMo", PWD, false, CTL),
            from,
            1,
            Instant::now(),
        );
        assert_eq!((o.input, o.nominated), (IceInput::Answered, None));
        let r = o.reply.unwrap();
        let m = StunMessage::new_checked(&r[..]).unwrap();
        assert_eq!((m.class(), m.transaction_id()), (Class::Success, TID));
        m.check_integrity(PWD).unwrap();
        m.check_fingerprint().unwrap();
        assert_eq!(m.xor_mapped_address(), Ok(Some(from)));
        assert!(l.last_valid_check().is_some());
        assert_eq!(l.counters().answered, 1);
    }

    #[test]
    fn bad_credentials_get_an_unsigned_401_or_nothing_and_change_nothing() {
        let mut l = lite(true);
        let from = addr("192.0.2.7:4000");
        let now = Instant::now();
        for (b, want, input) in [
            (
                check("LoCa:ReMo", b"wrong", true, CTL),
                401,
                IceInput::BadIntegrity,
            ),
            (
                check("LoCa:Other", PWD, true, CTL),
                401,
                IceInput::UnknownUsername,
            ),
            (
                check("Other:ReMo", PWD, true, CTL),
                401,
                IceInput::UnknownUsername,
            ),
            (
                check("LoCaX:ReMo", PWD, true, CTL),
                401,
                IceInput::UnknownUsername,
            ),
        ] {
            let o = l.on_datagram(&b, from, 1, now);
            assert_eq!((o.input, o.nominated), (input, None));
            let r = o.reply.unwrap();
            assert_eq!(error_code(&r), Some(want));
            let m = StunMessage::new_checked(&r[..]).unwrap();
            assert_eq!(m.check_integrity(PWD), Err(StunError::NoIntegrity));
        }
        // No MESSAGE-INTEGRITY, or nothing but the header and FINGERPRINT
        // (28 bytes, where a 400 would be 48 to a maybe forged source): no
        // answer at all.
        let mut b = [0u8; 100];
        let n = BindingRequest {
            username: Some("LoCa:ReMo"),
            use_candidate: true,
            ..Default::default()
        }
        .emit(&mut b, &TID, None)
        .unwrap();
        let no_mi = b[..n].to_vec();
        let n = BindingRequest::default().emit(&mut b, &TID, None).unwrap();
        assert_eq!(n, 28);
        for d in [&no_mi[..], &b[..n]] {
            let o = l.on_datagram(d, from, 1, now);
            assert_eq!((o.input, o.reply), (IceInput::NoCredentials, None));
        }
        assert_eq!(l.nominated(1), None);
        assert_eq!(l.last_valid_check(), None);
        let c = l.counters();
        assert_eq!(
            (
                c.bad_integrity,
                c.unknown_username,
                c.no_credentials,
                c.bad_request
            ),
            (1, 3, 2, 0)
        );
    }

    #[test]
    fn while_the_remote_ufrag_is_unknown_any_suffix_is_accepted() {
        let mut l = lite(false);
        let from = addr("[2001:db8::1]:5000");
        let o = l.on_datagram(
            &check("LoCa:whoever", PWD, false, CTL),
            from,
            1,
            Instant::now(),
        );
        assert_eq!(o.input, IceInput::Answered);
        let r = o.reply.unwrap();
        let m = StunMessage::new_checked(&r[..]).unwrap();
        assert_eq!(m.xor_mapped_address(), Ok(Some(from)));
        let o = l.on_datagram(&check("LoCa:", PWD, false, CTL), from, 1, Instant::now());
        assert_eq!(o.input, IceInput::UnknownUsername);
    }

    #[test]
    fn use_candidate_nominates_per_component_and_a_new_address_replaces_it() {
        let mut l = lite(true);
        let (a, b) = (addr("192.0.2.7:4000"), addr("198.51.100.9:4001"));
        let now = Instant::now();
        let nominate = check("LoCa:ReMo", PWD, true, CTL);
        assert_eq!(l.on_datagram(&nominate, a, 1, now).nominated, Some(a));
        // Again from the same address: nothing new.
        assert_eq!(l.on_datagram(&nominate, a, 1, now).nominated, None);
        assert_eq!(l.on_datagram(&nominate, b, 2, now).nominated, Some(b));
        assert_eq!((l.nominated(1), l.nominated(2)), (Some(a), Some(b)));
        // Network change: another address for component 1.
        assert_eq!(l.on_datagram(&nominate, b, 1, now).nominated, Some(b));
        assert_eq!(l.counters().nominations, 3);
        // A check without USE-CANDIDATE moves nothing, nor one with it but
        // without ICE-CONTROLLING (only the controlling agent nominates).
        for uc in [false, true] {
            let o = l.on_datagram(&check("LoCa:ReMo", PWD, uc, None), a, 1, now);
            assert_eq!((o.input, o.nominated), (IceInput::Answered, None));
        }
        assert_eq!(l.nominated(1), Some(b));
        // New remote credentials only: not a restart.
        let mut p = l.params().clone();
        p.remote = Some(creds("ReM2", "remotepasswordremotepa2"));
        assert!(!l.set_params(p.clone()));
        assert_eq!(l.nominated(1), Some(b));
        // New local credentials: a restart, the nominations forgotten.
        p.local = creds("LoC2", "localpasswordlocalpass2");
        assert!(l.set_params(p));
        assert_eq!((l.nominated(1), l.nominated(2)), (None, None));
        let o = l.on_datagram(
            &check("LoC2:ReM2", b"localpasswordlocalpass2", true, CTL),
            a,
            1,
            now,
        );
        assert_eq!(o.nominated, Some(a));
    }

    /// The answer's MESSAGE-INTEGRITY verifies with `pwd` (and not another).
    fn signed_with(o: &IceOutcome, pwd: &[u8]) {
        let r = o.reply.as_ref().expect("an answer");
        let m = StunMessage::new_checked(&r[..]).unwrap();
        assert_eq!(
            (m.class(), m.check_integrity(pwd)),
            (Class::Success, Ok(()))
        );
    }

    #[test]
    fn a_restart_keeps_the_old_credentials_until_the_new_ones_are_used() {
        let mut l = lite(true);
        let from = addr("192.0.2.7:4000");
        let now = Instant::now();
        let old = check("LoCa:ReMo", PWD, false, CTL);
        signed_with(&l.on_datagram(&old, from, 1, now), PWD);
        // A restart whose offer the peer may not get: its consent checks
        // with the old credentials are still answered, signed with the old
        // password; the new ones work too, signed with theirs.
        let (p2, p3) = (b"localpasswordlocalpass2", b"localpasswordlocalpass3");
        let mut p = l.params().clone();
        p.local = creds("LoC2", "localpasswordlocalpass2");
        assert!(l.set_params(p.clone()));
        signed_with(&l.on_datagram(&old, from, 1, now), PWD);
        signed_with(&l.on_datagram(&old, from, 1, now), PWD);
        // A second restart before any check with the first one's: the
        // credentials the peer was last seen using are those kept.
        p.local = creds("LoC3", "localpasswordlocalpass3");
        assert!(l.set_params(p));
        let o = l.on_datagram(&check("LoC2:ReMo", p2, false, CTL), from, 1, now);
        assert_eq!(o.input, IceInput::UnknownUsername);
        signed_with(&l.on_datagram(&old, from, 1, now), PWD);
        // The old ufrag with a wrong password is still a bad integrity.
        let o = l.on_datagram(&check("LoCa:ReMo", p3, false, CTL), from, 1, now);
        assert_eq!(o.input, IceInput::BadIntegrity);
        assert!(l.previous_params().is_some());
        // The peer got the offer: its first check with the new credentials
        // ends the old ones.
        let new = check("LoC3:ReMo", p3, false, CTL);
        signed_with(&l.on_datagram(&new, from, 1, now), p3);
        assert!(l.previous_params().is_none());
        let o = l.on_datagram(&old, from, 1, now);
        assert_eq!((o.input, o.nominated), (IceInput::UnknownUsername, None));
        signed_with(&l.on_datagram(&new, from, 1, now), p3);
    }

    #[test]
    fn a_check_without_priority_gets_a_signed_400() {
        let mut l = lite(true);
        let mut b = [0u8; 200];
        let n = BindingRequest {
            username: Some("LoCa:ReMo"),
            priority: None,
            use_candidate: true,
            role: CTL,
        }
        .emit(&mut b, &TID, Some(PWD))
        .unwrap();
        let o = l.on_datagram(&b[..n], addr("192.0.2.7:4000"), 1, Instant::now());
        assert_eq!((o.input, o.nominated), (IceInput::BadRequest, None));
        let r = o.reply.unwrap();
        assert_eq!(error_code(&r), Some(400));
        let m = StunMessage::new_checked(&r[..]).unwrap();
        m.check_integrity(PWD).unwrap();
        assert_eq!(l.counters().bad_request, 1);
    }

    #[test]
    fn sources_that_cannot_be_candidates_are_never_nominated() {
        let mut l = lite(true);
        let now = Instant::now();
        let nominate = check("LoCa:ReMo", PWD, true, CTL);
        let good = addr("192.0.2.7:4000");
        assert_eq!(l.on_datagram(&nominate, good, 1, now).nominated, Some(good));
        for bad in [
            "192.0.2.7:0",
            "0.0.0.0:4000",
            "[::]:4000",
            "224.0.0.1:4000",
            "[ff02::1]:4000",
            "255.255.255.255:4000",
            "[::ffff:255.255.255.255]:4000",
        ] {
            let o = l.on_datagram(&nominate, addr(bad), 1, now);
            assert_eq!(
                (o.input, o.reply, o.nominated, o.refused_nomination),
                (IceInput::Answered, None, None, true),
                "{bad}"
            );
        }
        // The caller's own media port (another call's leg): answered, not
        // nominated.
        let own = addr("192.0.2.1:30002");
        let o = l.on_datagram_guarded(&nominate, own, 1, now, |a| a == own);
        assert!(o.reply.is_some() && o.refused_nomination && o.nominated.is_none());
        assert_eq!(l.nominated(1), Some(good));
        let c = l.counters();
        assert_eq!((c.nominations, c.refused_nominations), (1, 8));
    }

    #[test]
    fn a_peer_claiming_controlled_gets_487_and_nominates_nothing() {
        let mut l = lite(true);
        let from = addr("192.0.2.7:4000");
        let b = check("LoCa:ReMo", PWD, true, Some(IceRole::Controlled(u64::MAX)));
        let o = l.on_datagram(&b, from, 1, Instant::now());
        assert_eq!((o.input, o.nominated), (IceInput::RoleConflict, None));
        let r = o.reply.unwrap();
        assert_eq!(error_code(&r), Some(487));
        StunMessage::new_checked(&r[..])
            .unwrap()
            .check_integrity(PWD)
            .unwrap();
        assert_eq!(l.nominated(1), None);
    }

    #[test]
    fn unknown_required_attributes_get_420_and_others_are_dropped() {
        let mut l = lite(true);
        let from = addr("192.0.2.7:4000");
        let now = Instant::now();
        let mut b = [0u8; 200];
        let mut w = MessageWriter::new(&mut b, Class::Request, BINDING, &TID).unwrap();
        w.username("LoCa:ReMo").unwrap();
        w.attribute(0x7f01, b"x").unwrap();
        w.attribute(0xc057, b"optional").unwrap();
        w.message_integrity(PWD).unwrap().fingerprint().unwrap();
        let n = w.finish();
        let o = l.on_datagram(&b[..n], from, 1, now);
        assert_eq!(o.input, IceInput::UnknownAttribute);
        let r = o.reply.unwrap();
        assert_eq!(error_code(&r), Some(420));
        let m = StunMessage::new_checked(&r[..]).unwrap();
        assert_eq!(
            m.attribute(stun::attr::UNKNOWN_ATTRIBUTES),
            Some(&[0x7f, 0x01][..])
        );

        // An indication, a response, garbage, no fingerprint: no answer.
        let n = stun::binding_indication(&mut b, &TID).unwrap();
        let ind = b[..n].to_vec();
        let n = stun::binding_success(&mut b, &TID, from, PWD).unwrap();
        let resp = b[..n].to_vec();
        let mut w = MessageWriter::new(&mut b, Class::Request, BINDING, &TID).unwrap();
        w.username("LoCa:ReMo")
            .unwrap()
            .message_integrity(PWD)
            .unwrap();
        let n = w.finish();
        let no_fp = b[..n].to_vec();
        let mut bad_fp = check("LoCa:ReMo", PWD, true, CTL);
        let last = bad_fp.len() - 1;
        bad_fp[last] ^= 1;
        for (d, want) in [
            (&ind[..], IceInput::Indication),
            (&resp[..], IceInput::Unexpected),
            (&[0u8, 1, 0, 0][..], IceInput::Malformed),
            (&[1u8; 40][..], IceInput::Malformed),
            (&no_fp[..], IceInput::BadFingerprint),
            (&bad_fp[..], IceInput::BadFingerprint),
        ] {
            let o = l.on_datagram(d, from, 1, now);
            assert_eq!((o.input, o.reply, o.nominated), (want, None, None));
        }
        let c = l.counters();
        assert_eq!(
            (c.indications, c.unexpected, c.malformed, c.bad_fingerprint),
            (1, 1, 2, 2)
        );
    }

    #[test]
    fn the_answer_budget_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = AnswerBudget::new(3, 10, t0);
        assert_eq!((0..5).filter(|_| b.take(t0)).count(), 3);
        // 10 per second: one token per 100 ms, the fractions kept.
        let ms = |n| t0 + Duration::from_millis(n);
        assert!(!b.take(ms(99)));
        assert!(b.take(ms(100)));
        assert!(!b.take(ms(150)));
        assert!(b.take(ms(200)));
        // A long pause fills the bucket, no more.
        assert_eq!((0..5).filter(|_| b.take(ms(60_000))).count(), 3);
        assert!(IceInput::BadIntegrity.is_unauthenticated_answer());
        assert!(!IceInput::RoleConflict.is_unauthenticated_answer());
        assert!(!IceInput::BadRequest.is_unauthenticated_answer());
    }

    #[test]
    fn random_credentials_use_ice_chars_and_differ() {
        let a = IceCredentials::random();
        let b = IceCredentials::random();
        assert_eq!((a.ufrag.len(), a.pwd.len()), (8, 24));
        assert!(a
            .ufrag
            .bytes()
            .chain(a.pwd.bytes())
            .all(|c| ICE_CHARS.contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn credentials_are_validated() {
        assert!(IceCredentials::random().validate().is_ok());
        assert!(creds("abc", "localpasswordlocalpassw").validate().is_err());
        assert!(creds("ab:c", "localpasswordlocalpassw").validate().is_err());
        assert!(creds("abcd", "short").validate().is_err());
        let mut p = IceLegParams {
            local: IceCredentials::random(),
            remote: Some(creds("a", "b")),
        };
        assert!(p.validate().unwrap_err().starts_with("remote"));
        // The peer's password is never used: not checked.
        p.remote = Some(creds("abcd", "b"));
        assert!(p.validate().is_ok());
    }
}
