//! The DTLS 1.2 client/server state machine with flights and retransmission
//! (RFC 6347 4.2.4).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::{OsRng, RngCore};
use rtp_core::srtp::SrtpProfile;
use subtle::ConstantTimeEq;

use super::cert::{PeerKey, ECDSA_P256_SHA256, SIG_ALGS};
use super::crypto::{self, RecordCipher};
use super::ecdhe::EphemeralKey;
use super::flight::{OutMsg, RecordWriter};
use super::fragment::{Message, PushResult, Reassembler};
use super::messages::*;
use super::record::{
    parse_records, write_record, ReplayWindow, CT_ALERT, CT_APPLICATION_DATA,
    CT_CHANGE_CIPHER_SPEC, CT_HANDSHAKE, DTLS12, HEADER_LEN,
};
mod client;
mod server;

use super::{
    Certificate, CipherSuite, DtlsConfig, DtlsError, DtlsEvent, DtlsKeys, Fingerprint,
    FingerprintAlgorithm, NamedGroup, Role,
};

/// Alert descriptions we send.
mod alert {
    pub(super) const CLOSE_NOTIFY: u8 = 0;
    pub(super) const UNEXPECTED_MESSAGE: u8 = 10;
    pub(super) const HANDSHAKE_FAILURE: u8 = 40;
    pub(super) const BAD_CERTIFICATE: u8 = 42;
    pub(super) const ILLEGAL_PARAMETER: u8 = 47;
    pub(super) const DECODE_ERROR: u8 = 50;
    pub(super) const DECRYPT_ERROR: u8 = 51;
    pub(super) const PROTOCOL_VERSION: u8 = 70;
    pub(super) const INTERNAL_ERROR: u8 = 80;
    pub(super) const NO_RENEGOTIATION: u8 = 100;
    pub(super) const UNSUPPORTED_EXTENSION: u8 = 110;
}

/// The most datagrams queued for transmission; older ones are dropped beyond it.
const MAX_QUEUED_DATAGRAMS: usize = 128;
/// The most undelivered events (application data beyond it is dropped).
const MAX_QUEUED_EVENTS: usize = 256;
/// Epoch-1 records kept while waiting for the peer's ChangeCipherSpec.
const MAX_EARLY_RECORDS: usize = 8;
/// Largest early record kept (a Finished, or application data, is small).
const MAX_EARLY_RECORD_LEN: usize = 2048;
/// The most HelloVerifyRequests a client follows.
const MAX_HELLO_VERIFY: u8 = 4;
/// Smallest usable MTU (we clamp below it).
const MIN_MTU: usize = 64;

/// Where the handshake stands: the next message we expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientWaitServerHello,
    ClientWaitCertificate,
    ClientWaitKeyExchange,
    ClientWaitHelloDone,
    ClientWaitCcs,
    ClientWaitFinished,
    ServerWaitClientHello,
    ServerWaitCertificate,
    ServerWaitKeyExchange,
    ServerWaitCertificateVerify,
    ServerWaitCcs,
    ServerWaitFinished,
    Connected,
    Closed,
    Failed,
}

/// Per-handshake secrets and negotiation results, dropped once done.
#[derive(Debug, Default)]
struct Handshake {
    transcript: Vec<u8>,
    client_random: [u8; 32],
    server_random: [u8; 32],
    suite: Option<CipherSuite>,
    group: Option<NamedGroup>,
    profile: Option<SrtpProfile>,
    ems: bool,
    client_hello: Option<ClientHello>,
    hello_verify_count: u8,
    peer_cert: Option<Vec<u8>>,
    peer_key: Option<PeerKey>,
    cert_requested: bool,
    ecdhe: Option<EphemeralKey>,
    server_public: Vec<u8>,
    master: Vec<u8>,
    pending_read: Option<RecordCipher>,
}

type Fail = (u8, DtlsError);

/// `now + d`, saturating at about a century for absurd configured durations.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now)
}

/// RFC 5746 on a first handshake: renegotiation_info, when present, must be empty.
fn check_initial_renegotiation_info(r: Option<&Vec<u8>>) -> Result<(), Fail> {
    if r.is_some_and(|r| !r.is_empty()) {
        return Err((
            alert::HANDSHAKE_FAILURE,
            DtlsError::HandshakeFailure("non-empty renegotiation_info".into()),
        ));
    }
    Ok(())
}

fn decode(e: DtlsError) -> Fail {
    (alert::DECODE_ERROR, e)
}

/// A DTLS 1.2 client or server. See the module documentation.
pub struct DtlsEndpoint {
    role: Role,
    config: Arc<DtlsConfig>,
    cert: Arc<Certificate>,
    expected_peer: Option<Fingerprint>,
    state: State,
    hs: Option<Box<Handshake>>,
    send_seq: u16,
    writer: RecordWriter,
    read_epoch: u16,
    read_cipher: Option<RecordCipher>,
    replay: [ReplayWindow; 2],
    reasm: Reassembler,
    flight: Vec<OutMsg>,
    /// message_seq of the first message of the peer's last flight: seeing it
    /// again means the peer lost our answer.
    peer_flight_first: Option<u16>,
    /// A server saw its first ClientHello fragment (its message_seq is fixed).
    hello_seq_fixed: bool,
    retransmit_at: Option<Instant>,
    /// When the current flight was last (re)transmitted.
    flight_sent_at: Option<Instant>,
    rto: Duration,
    deadline: Instant,
    out: VecDeque<Vec<u8>>,
    events: VecDeque<DtlsEvent>,
    /// Sequence number of the record being processed.
    current_record_seq: u64,
    /// The peer's ChangeCipherSpec arrived before the messages it follows.
    early_ccs: bool,
    /// Epoch-1 records that arrived before the switch (bounded), replayed after it.
    early_records: Vec<(u8, u64, Vec<u8>)>,
    /// Set when the read epoch switched and `early_records` should be replayed.
    replay_early: bool,
    dropped_records: u64,
    retransmissions: u64,
}

impl fmt::Debug for DtlsEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsEndpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("write_epoch", &self.writer.epoch)
            .field("read_epoch", &self.read_epoch)
            .field("queued", &self.out.len())
            .field("dropped_records", &self.dropped_records)
            .finish_non_exhaustive()
    }
}

impl DtlsEndpoint {
    fn new(
        role: Role,
        config: Arc<DtlsConfig>,
        cert: Arc<Certificate>,
        expected_peer: Option<Fingerprint>,
        now: Instant,
    ) -> Self {
        let reasm = Reassembler::new(config.max_handshake_message, config.max_buffered_fragments);
        DtlsEndpoint {
            role,
            rto: config.initial_timeout,
            deadline: later(now, config.handshake_timeout),
            config,
            cert,
            expected_peer,
            state: match role {
                Role::Client => State::ClientWaitServerHello,
                Role::Server => State::ServerWaitClientHello,
            },
            hs: Some(Box::default()),
            send_seq: 0,
            writer: RecordWriter::default(),
            read_epoch: 0,
            read_cipher: None,
            replay: Default::default(),
            reasm,
            flight: Vec::new(),
            peer_flight_first: None,
            hello_seq_fixed: false,
            retransmit_at: None,
            flight_sent_at: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            current_record_seq: 0,
            early_ccs: false,
            early_records: Vec::new(),
            replay_early: false,
            dropped_records: 0,
            retransmissions: 0,
        }
    }

    /// A client; queues the ClientHello.
    pub fn client(
        config: Arc<DtlsConfig>,
        cert: Arc<Certificate>,
        expected_peer: Option<Fingerprint>,
        now: Instant,
    ) -> Self {
        let mut ep = Self::new(Role::Client, config, cert, expected_peer, now);
        let cfg = ep.config.clone();
        let mut random = [0u8; 32];
        OsRng.fill_bytes(&mut random);
        let ch = ClientHello {
            version: DTLS12,
            random,
            session_id: Vec::new(),
            cookie: Vec::new(),
            cipher_suites: cfg.cipher_suites.iter().map(|s| s.id()).collect(),
            compression: vec![0],
            groups: Some(cfg.groups.iter().map(|g| g.id()).collect()),
            point_formats: Some(vec![0]),
            sig_algs: Some(SIG_ALGS.to_vec()),
            srtp_profiles: Some(
                cfg.srtp_profiles
                    .iter()
                    .filter_map(|p| p.dtls_id())
                    .collect(),
            ),
            ems: true,
            renegotiation_info: Some(Vec::new()),
        };
        if let Some(hs) = ep.hs.as_mut() {
            hs.client_random = random;
            hs.client_hello = Some(ch);
        }
        ep.send_client_hello(now);
        ep
    }

    /// A server waiting for a ClientHello (with or without a cookie: the endpoint
    /// never sends HelloVerifyRequest itself, see [`super::CookieKeys`]).
    pub fn server(
        config: Arc<DtlsConfig>,
        cert: Arc<Certificate>,
        expected_peer: Option<Fingerprint>,
        now: Instant,
    ) -> Self {
        Self::new(Role::Server, config, cert, expected_peer, now)
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once the handshake completed (until closed).
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// True when failed or closed: the owner may drop the endpoint.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed | State::Failed)
    }

    /// Records dropped so far (malformed, replayed, undecryptable, early epoch).
    pub fn dropped_records(&self) -> u64 {
        self.dropped_records
    }

    /// Bytes held for handshake reassembly (bounded by `max_buffered_fragments`).
    #[doc(hidden)]
    pub fn buffered_handshake_bytes(&self) -> usize {
        self.reasm.buffered()
    }

    /// Datagrams waiting in the transmit queue (bounded).
    #[doc(hidden)]
    pub fn queued_datagrams(&self) -> usize {
        self.out.len()
    }

    /// Flights retransmitted so far (timer or peer retransmission).
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// The next datagram to send (each at most `mtu` bytes).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DtlsEvent> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Closed | State::Failed => None,
            State::Connected => self.retransmit_at,
            _ => Some(match self.retransmit_at {
                Some(t) => t.min(self.deadline),
                None => self.deadline,
            }),
        }
    }

    /// Retransmits the last flight when its timer expired; fails the handshake
    /// after `handshake_timeout`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.state != State::Connected && now >= self.deadline {
            self.fail(None, DtlsError::Timeout);
            return;
        }
        if let Some(t) = self.retransmit_at {
            if now >= t {
                self.transmit_flight();
                self.flight_sent_at = Some(now);
                self.retransmissions += 1;
                self.rto = self.rto.saturating_mul(2).min(self.config.max_timeout);
                self.retransmit_at = Some(later(now, self.rto));
            }
        }
    }

    /// Sends application data (one record; must fit the MTU).
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsError> {
        match self.state {
            State::Connected => {}
            State::Closed | State::Failed => return Err(DtlsError::Closed),
            _ => return Err(DtlsError::NotConnected),
        }
        if HEADER_LEN + self.writer.overhead(1) + data.len() > self.mtu() {
            return Err(DtlsError::TooLarge);
        }
        let mut d = Vec::new();
        self.writer.push(&mut d, CT_APPLICATION_DATA, 1, data);
        self.queue(d);
        Ok(())
    }

    /// Queues close_notify and closes the endpoint.
    pub fn close(&mut self) {
        if self.is_closed() {
            return;
        }
        self.send_alert(1, alert::CLOSE_NOTIFY);
        self.state = State::Closed;
        self.events.push_back(DtlsEvent::Closed);
        self.free();
    }

    fn mtu(&self) -> usize {
        self.config.mtu.max(MIN_MTU)
    }

    fn queue(&mut self, d: Vec<u8>) {
        if self.out.len() >= MAX_QUEUED_DATAGRAMS {
            self.out.pop_front();
        }
        self.out.push_back(d);
    }

    fn send_alert(&mut self, level: u8, desc: u8) {
        let mut d = Vec::new();
        let epoch = self.writer.alert_epoch();
        self.writer.push(&mut d, CT_ALERT, epoch, &[level, desc]);
        self.queue(d);
    }

    fn free(&mut self) {
        self.hs = None;
        self.early_records = Vec::new();
        self.flight = Vec::new();
        self.reasm.clear();
        self.retransmit_at = None;
        self.read_cipher = None;
        self.writer.cipher = None;
    }

    /// Fails the endpoint, sending a fatal alert if `alert` is given.
    fn fail(&mut self, alert: Option<u8>, err: DtlsError) {
        if self.is_closed() {
            return;
        }
        if let Some(a) = alert {
            self.send_alert(2, a);
        }
        self.state = State::Failed;
        self.events.push_back(DtlsEvent::Failed(err));
        self.free();
    }

    // ------------------------------------------------------------ flights

    /// Adds a handshake message to the transcript and returns it for a flight.
    fn hs_message(&mut self, msg_type: u8, epoch: u16, body: Vec<u8>) -> OutMsg {
        let seq = self.send_seq;
        self.send_seq = self.send_seq.wrapping_add(1);
        if let Some(hs) = self.hs.as_mut() {
            hs.transcript
                .extend_from_slice(&full_message(msg_type, seq, &body));
        }
        OutMsg::Handshake {
            msg_type,
            seq,
            epoch,
            body,
        }
    }

    /// Sends a new flight; with `expect_reply` the retransmission timer runs.
    fn send_flight(&mut self, flight: Vec<OutMsg>, expect_reply: bool, now: Instant) {
        self.flight = flight;
        self.rto = self.config.initial_timeout;
        self.retransmit_at = expect_reply.then(|| later(now, self.rto));
        self.flight_sent_at = Some(now);
        self.transmit_flight();
    }

    /// (Re)transmits the current flight with fresh record sequence numbers.
    fn transmit_flight(&mut self) {
        let mtu = self.mtu();
        for d in self.writer.write_flight(&self.flight, mtu) {
            self.queue(d);
        }
    }

    // ------------------------------------------------------------ input

    /// Processes one datagram from the peer. Never panics; malformed or
    /// unauthentic records are counted and dropped, protocol violations fail the
    /// handshake with an alert.
    pub fn handle_datagram(&mut self, datagram: &[u8], now: Instant) {
        if self.is_closed() {
            return;
        }
        let (records, cut) = parse_records(datagram);
        if cut {
            self.dropped_records += 1;
        }
        for rec in records {
            if self.is_closed() {
                return;
            }
            let plain;
            let body: &[u8] = match rec.epoch {
                0 => {
                    if !self.replay[0].check_unauthenticated(rec.seq) {
                        self.dropped_records += 1;
                        continue;
                    }
                    self.replay[0].mark(rec.seq);
                    rec.body
                }
                1 if self.read_epoch == 1 => {
                    let Some(c) = self.read_cipher.as_ref() else {
                        self.dropped_records += 1;
                        continue;
                    };
                    if !self.replay[1].check(rec.seq) {
                        self.dropped_records += 1;
                        continue;
                    }
                    match c.open(rec.epoch_seq(), rec.content_type, rec.body) {
                        Some(p) => plain = p,
                        None => {
                            self.dropped_records += 1;
                            continue;
                        }
                    }
                    self.replay[1].mark(rec.seq);
                    &plain
                }
                1 if self.hs.is_some()
                    && self.early_records.len() < MAX_EARLY_RECORDS
                    && rec.body.len() <= MAX_EARLY_RECORD_LEN =>
                {
                    // Epoch 1 before the peer's ChangeCipherSpec (reordering):
                    // kept, opened after the switch.
                    self.early_records
                        .push((rec.content_type, rec.seq, rec.body.to_vec()));
                    continue;
                }
                _ => {
                    // A future epoch (keys not yet known), too many early
                    // records, or garbage.
                    self.dropped_records += 1;
                    continue;
                }
            };
            self.current_record_seq = rec.seq;
            let result = match rec.content_type {
                CT_CHANGE_CIPHER_SPEC => {
                    self.on_change_cipher_spec(rec.epoch, body);
                    Ok(())
                }
                CT_ALERT => {
                    self.on_alert(rec.epoch, body);
                    Ok(())
                }
                CT_HANDSHAKE => self.on_handshake_record(rec.epoch, body, now),
                CT_APPLICATION_DATA => {
                    if rec.epoch == 1
                        && self.state == State::Connected
                        && self.events.len() < MAX_QUEUED_EVENTS
                    {
                        self.events
                            .push_back(DtlsEvent::ApplicationData(body.to_vec()));
                    } else {
                        self.dropped_records += 1;
                    }
                    Ok(())
                }
                _ => {
                    self.dropped_records += 1;
                    Ok(())
                }
            };
            if let Err((a, e)) = result {
                self.fail(Some(a), e);
            }
        }
        if std::mem::take(&mut self.replay_early) && !self.early_records.is_empty() {
            let mut d = Vec::new();
            for (ct, seq, body) in std::mem::take(&mut self.early_records) {
                write_record(&mut d, ct, DTLS12, 1, seq, &body);
            }
            // read_epoch is 1 now, so nothing is buffered again: one level deep.
            self.handle_datagram(&d, now);
        }
    }

    fn on_change_cipher_spec(&mut self, epoch: u16, body: &[u8]) {
        if epoch != 0 || body != [1] {
            self.dropped_records += 1;
            return;
        }
        match self.state {
            State::ClientWaitCcs | State::ServerWaitCcs => self.switch_read_epoch(),
            // Early: the client's flight is still incomplete (reordering). The
            // switch happens once the messages before it are in.
            State::ServerWaitCertificate
            | State::ServerWaitKeyExchange
            | State::ServerWaitCertificateVerify => self.early_ccs = true,
            // A retransmission: ignored.
            _ => {}
        }
    }

    /// Enters the wait for the peer's ChangeCipherSpec, switching at once if it
    /// already came.
    fn wait_for_ccs(&mut self, state: State) {
        self.state = state;
        if std::mem::take(&mut self.early_ccs) {
            self.switch_read_epoch();
        }
    }

    /// The peer's ChangeCipherSpec: read epoch 1 from now on.
    fn switch_read_epoch(&mut self) {
        let next = match self.state {
            State::ClientWaitCcs => State::ClientWaitFinished,
            State::ServerWaitCcs => State::ServerWaitFinished,
            _ => return,
        };
        if let Some(c) = self.hs.as_mut().and_then(|h| h.pending_read.take()) {
            self.read_cipher = Some(c);
            self.read_epoch = 1;
            self.state = next;
            self.replay_early = true;
        }
    }

    fn on_alert(&mut self, epoch: u16, body: &[u8]) {
        if body.len() != 2 {
            self.dropped_records += 1;
            return;
        }
        if epoch == 0 && self.read_epoch == 1 {
            // Unauthenticated alert after the switch: ignore.
            self.dropped_records += 1;
            return;
        }
        let (level, description) = (body[0], body[1]);
        if description == alert::CLOSE_NOTIFY {
            if self.state == State::Connected {
                self.send_alert(1, alert::CLOSE_NOTIFY);
                self.state = State::Closed;
                self.events.push_back(DtlsEvent::Closed);
                self.free();
            } else {
                self.fail(None, DtlsError::AlertReceived { level, description });
            }
        } else if level == 2 {
            self.fail(None, DtlsError::AlertReceived { level, description });
        }
        // Other warnings (no_renegotiation, ...) are ignored.
    }

    fn on_handshake_record(&mut self, epoch: u16, body: &[u8], now: Instant) -> Result<(), Fail> {
        let frags = match parse_fragments(body) {
            Ok(f) => f,
            Err(_) => {
                self.dropped_records += 1;
                return Ok(());
            }
        };
        let mut retransmit = false;
        for f in &frags {
            if self.state == State::ServerWaitClientHello
                && f.msg_type == HT_CLIENT_HELLO
                && !self.hello_seq_fixed
            {
                // A stateless (cookie) server's endpoint starts at the client's
                // second ClientHello: the first ClientHello fragment it is fed
                // (the one the cookie check accepted) fixes the message_seq.
                // A late fragment of the cookie-less first hello is then old,
                // and a spoofed one cannot move the reassembly.
                self.hello_seq_fixed = true;
                if f.message_seq != self.reasm.next_seq() && f.message_seq < 8 {
                    self.reasm.reset_to(f.message_seq);
                }
            }
            match self.reasm.push(f, epoch) {
                PushResult::Old => {
                    // The peer retransmits: it lost our last flight. Once
                    // connected only an authenticated Finished says so (an
                    // epoch-0 record can come from anyone).
                    retransmit |= if self.state == State::Connected {
                        epoch == 1 && f.msg_type == HT_FINISHED
                    } else {
                        Some(f.message_seq) == self.peer_flight_first && f.offset == 0
                    };
                }
                PushResult::Dropped => self.dropped_records += 1,
                PushResult::Buffered => {}
            }
        }
        // At most one flight per half retransmission timeout: a fresh record
        // sequence number passes the epoch-0 replay window, so spoofed records
        // must not buy a whole flight each (amplification). Half, so that a
        // peer whose timer runs like ours is not refused for a few ms of delay.
        if retransmit
            && !self.flight.is_empty()
            && self
                .flight_sent_at
                .is_none_or(|t| now >= later(t, self.rto / 2))
        {
            self.transmit_flight();
            self.retransmissions += 1;
            self.flight_sent_at = Some(now);
        }
        while let Some(m) = self.reasm.pop() {
            if self.state == State::Connected {
                // Renegotiation is not supported.
                self.send_alert(1, alert::NO_RENEGOTIATION);
                continue;
            }
            self.process(m, now)?;
            if self.is_closed() {
                break;
            }
        }
        Ok(())
    }

    fn process(&mut self, m: Message, now: Instant) -> Result<(), Fail> {
        let expect_epoch = if m.msg_type == HT_FINISHED { 1 } else { 0 };
        if m.epoch != expect_epoch {
            return Err((
                alert::UNEXPECTED_MESSAGE,
                DtlsError::UnexpectedMessage(format!(
                    "handshake message {} in epoch {}",
                    m.msg_type, m.epoch
                )),
            ));
        }
        let unexpected = |s: State| {
            Err((
                alert::UNEXPECTED_MESSAGE,
                DtlsError::UnexpectedMessage(format!(
                    "handshake message type {} while in {s:?}",
                    m.msg_type
                )),
            ))
        };
        match (self.state, m.msg_type) {
            (State::ClientWaitServerHello, HT_HELLO_VERIFY_REQUEST) => {
                self.client_on_hello_verify(&m, now)
            }
            (State::ClientWaitServerHello, HT_SERVER_HELLO) => self.client_on_server_hello(&m),
            (State::ClientWaitCertificate, HT_CERTIFICATE) => {
                self.add_transcript(&m);
                self.on_peer_certificate(&m.body)?;
                self.state = State::ClientWaitKeyExchange;
                Ok(())
            }
            (State::ClientWaitKeyExchange, HT_SERVER_KEY_EXCHANGE) => {
                self.client_on_server_key_exchange(&m)
            }
            (State::ClientWaitHelloDone, HT_CERTIFICATE_REQUEST) => {
                let hs = self.hs_mut()?;
                if hs.cert_requested {
                    return unexpected(State::ClientWaitHelloDone);
                }
                let algs = parse_certificate_request(&m.body).map_err(decode)?;
                if !algs.contains(&ECDSA_P256_SHA256) {
                    return Err((
                        alert::HANDSHAKE_FAILURE,
                        DtlsError::HandshakeFailure(
                            "server does not accept ecdsa_secp256r1_sha256 client signatures"
                                .into(),
                        ),
                    ));
                }
                hs.cert_requested = true;
                self.add_transcript(&m);
                Ok(())
            }
            (State::ClientWaitHelloDone, HT_SERVER_HELLO_DONE) => {
                if !m.body.is_empty() {
                    return Err(decode(DtlsError::Decode(
                        "ServerHelloDone not empty".into(),
                    )));
                }
                self.add_transcript(&m);
                self.client_send_key_exchange(now)
            }
            (State::ClientWaitFinished, HT_FINISHED) => {
                self.verify_peer_finished(&m)?;
                self.add_transcript(&m);
                self.retransmit_at = None;
                self.connected()
            }
            (State::ServerWaitClientHello, HT_CLIENT_HELLO) => self.server_on_client_hello(&m, now),
            (State::ServerWaitCertificate, HT_CERTIFICATE) => {
                self.peer_flight_first = Some(m.seq);
                self.add_transcript(&m);
                self.on_peer_certificate(&m.body)?;
                self.state = State::ServerWaitKeyExchange;
                Ok(())
            }
            (State::ServerWaitKeyExchange, HT_CLIENT_KEY_EXCHANGE) => {
                if !self.config.require_client_certificate {
                    self.peer_flight_first = Some(m.seq);
                }
                self.server_on_client_key_exchange(&m)
            }
            (State::ServerWaitCertificateVerify, HT_CERTIFICATE_VERIFY) => {
                let (scheme, sig) = parse_signed(&m.body).map_err(decode)?;
                if !SIG_ALGS.contains(&scheme) {
                    return Err((
                        alert::ILLEGAL_PARAMETER,
                        DtlsError::HandshakeFailure(format!(
                            "CertificateVerify with unoffered scheme {scheme:#06x}"
                        )),
                    ));
                }
                let hs = self.hs_ref()?;
                let key = hs.peer_key.as_ref().ok_or((
                    alert::INTERNAL_ERROR,
                    DtlsError::HandshakeFailure("no peer key".into()),
                ))?;
                key.verify(scheme, &hs.transcript, &sig)
                    .map_err(|e| (alert::DECRYPT_ERROR, e))?;
                self.add_transcript(&m);
                self.wait_for_ccs(State::ServerWaitCcs);
                Ok(())
            }
            (State::ServerWaitFinished, HT_FINISHED) => {
                self.verify_peer_finished(&m)?;
                self.add_transcript(&m);
                let suite = self.suite()?;
                let hs = self.hs_ref()?;
                let vd = crypto::verify_data(suite, &hs.master, false, &hs.transcript);
                let fin = self.hs_message(HT_FINISHED, 1, vd.to_vec());
                self.writer.epoch = 1;
                self.send_flight(vec![OutMsg::ChangeCipherSpec, fin], false, now);
                self.connected()
            }
            (s, _) => unexpected(s),
        }
    }

    fn hs_mut(&mut self) -> Result<&mut Handshake, Fail> {
        self.hs.as_deref_mut().ok_or((
            alert::INTERNAL_ERROR,
            DtlsError::HandshakeFailure("handshake state gone".into()),
        ))
    }

    fn hs_ref(&self) -> Result<&Handshake, Fail> {
        self.hs.as_deref().ok_or((
            alert::INTERNAL_ERROR,
            DtlsError::HandshakeFailure("handshake state gone".into()),
        ))
    }

    fn suite(&self) -> Result<CipherSuite, Fail> {
        self.hs_ref()?.suite.ok_or((
            alert::INTERNAL_ERROR,
            DtlsError::HandshakeFailure("no cipher suite".into()),
        ))
    }

    fn add_transcript(&mut self, m: &Message) {
        if let Some(hs) = self.hs.as_mut() {
            hs.transcript
                .extend_from_slice(&full_message(m.msg_type, m.seq, &m.body));
        }
    }

    fn on_peer_certificate(&mut self, body: &[u8]) -> Result<(), Fail> {
        let chain = parse_certificate(body).map_err(decode)?;
        let Some(leaf) = chain.into_iter().next() else {
            return Err((alert::HANDSHAKE_FAILURE, DtlsError::NoCertificate));
        };
        if let Some(expected) = &self.expected_peer {
            let got = Fingerprint::of_der(expected.algorithm, &leaf);
            if got != *expected {
                return Err((
                    alert::BAD_CERTIFICATE,
                    DtlsError::FingerprintMismatch {
                        expected: expected.clone(),
                        got,
                    },
                ));
            }
        }
        let key = PeerKey::from_certificate(&leaf).map_err(|e| (alert::BAD_CERTIFICATE, e))?;
        let is_client = self.role == Role::Client;
        let hs = self.hs_mut()?;
        // The server's key must fit the suite; a client may use any key type.
        if let Some(suite) = hs.suite.filter(|_| is_client) {
            if suite.is_ecdsa() != key.is_ecdsa() {
                return Err((
                    alert::BAD_CERTIFICATE,
                    DtlsError::BadCertificate(format!("certificate key type does not fit {suite}")),
                ));
            }
        }
        hs.peer_key = Some(key);
        hs.peer_cert = Some(leaf);
        Ok(())
    }

    fn verify_peer_finished(&mut self, m: &Message) -> Result<(), Fail> {
        let suite = self.suite()?;
        let hs = self.hs_ref()?;
        let peer_is_client = self.role == Role::Server;
        let want = crypto::verify_data(suite, &hs.master, peer_is_client, &hs.transcript);
        if m.body.len() != 12 || !bool::from(want.ct_eq(&m.body[..])) {
            return Err((alert::DECRYPT_ERROR, DtlsError::BadFinished));
        }
        Ok(())
    }

    fn connected(&mut self) -> Result<(), Fail> {
        let role = self.role;
        let hs = self.hs_ref()?;
        let missing = |what: &str| {
            (
                alert::INTERNAL_ERROR,
                DtlsError::HandshakeFailure(format!("missing {what} at completion")),
            )
        };
        let suite = hs.suite.ok_or_else(|| missing("suite"))?;
        let profile = hs.profile.ok_or_else(|| missing("SRTP profile"))?;
        let group = hs.group.ok_or_else(|| missing("group"))?;
        // Empty only when the server did not ask for a client certificate.
        let peer_cert = hs.peer_cert.clone().unwrap_or_default();
        let mut randoms = hs.client_random.to_vec();
        randoms.extend_from_slice(&hs.server_random);
        let mut keys = DtlsKeys {
            role,
            cipher_suite: suite,
            group,
            srtp_profile: profile,
            extended_master_secret: hs.ems,
            keying_material: Vec::new(),
            peer_fingerprint: Fingerprint::of_der(FingerprintAlgorithm::Sha256, &peer_cert),
            peer_certificate: peer_cert,
            master_secret: hs.master.clone(),
            randoms,
        };
        keys.keying_material = keys.export(
            "EXTRACTOR-dtls_srtp",
            2 * (profile.key_len() + profile.salt_len()),
        );
        self.state = State::Connected;
        self.events.push_back(DtlsEvent::Connected(Box::new(keys)));
        // Keep only what retransmissions need: the last flight and the ciphers.
        self.hs = None;
        self.reasm.clear();
        self.early_records = Vec::new();
        Ok(())
    }

    /// Master secret and both directions' ciphers; the write cipher is installed
    /// at once (epoch-1 messages are queued after the CCS), the read cipher on the
    /// peer's CCS.
    fn derive_keys(&mut self, suite: CipherSuite, pms: &[u8]) -> Result<(), Fail> {
        let role = self.role;
        let hs = self.hs_mut()?;
        let session_hash = hs
            .ems
            .then(|| crypto::transcript_hash(suite, &hs.transcript));
        hs.master = crypto::master_secret(
            suite,
            pms,
            &hs.client_random,
            &hs.server_random,
            session_hash.as_deref(),
        );
        let (client, server) =
            crypto::key_block(suite, &hs.master, &hs.client_random, &hs.server_random);
        let (write, read) = match role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        hs.pending_read = Some(read);
        self.writer.cipher = Some(write);
        Ok(())
    }
}
