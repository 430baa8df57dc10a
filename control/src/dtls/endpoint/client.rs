//! The client's side of the handshake: ClientHello (and its cookie retry), the
//! server's flight, and our Certificate / ClientKeyExchange / CertificateVerify /
//! Finished flight.

use super::*;

impl DtlsEndpoint {
    /// HelloVerifyRequest: resend the ClientHello with the cookie (message_seq + 1).
    pub(super) fn client_on_hello_verify(&mut self, m: &Message, now: Instant) -> Result<(), Fail> {
        let cookie = parse_hello_verify_request(&m.body).map_err(decode)?;
        let hs = self.hs_mut()?;
        hs.hello_verify_count += 1;
        if hs.hello_verify_count > MAX_HELLO_VERIFY || cookie.len() > 255 {
            return Err((
                alert::HANDSHAKE_FAILURE,
                DtlsError::HandshakeFailure("too many HelloVerifyRequests".into()),
            ));
        }
        if let Some(ch) = hs.client_hello.as_mut() {
            ch.cookie = cookie;
        }
        // The HelloVerifyRequest came from a stateless responder that reused our
        // record sequence number; the server endpoint numbers its records anew.
        self.replay[0] = ReplayWindow::default();
        self.send_client_hello(now);
        Ok(())
    }

    /// ServerHello: check what the server chose against what we offered.
    pub(super) fn client_on_server_hello(&mut self, m: &Message) -> Result<(), Fail> {
        let sh = ServerHello::parse(&m.body).map_err(decode)?;
        if sh.version != DTLS12 {
            return Err((alert::PROTOCOL_VERSION, DtlsError::ProtocolVersion));
        }
        let offered = self.hs_ref()?.client_hello.as_ref();
        if let Some(ty) = sh
            .extension_types
            .iter()
            .find(|&&ty| !offered.is_some_and(|ch| ch.offers_extension(ty)))
        {
            return Err((
                alert::UNSUPPORTED_EXTENSION,
                DtlsError::HandshakeFailure(format!(
                    "server sent extension {ty:#06x} that we did not offer"
                )),
            ));
        }
        let cfg = self.config.clone();
        let suite = CipherSuite::from_id(sh.cipher_suite)
            .filter(|s| cfg.cipher_suites.contains(s))
            .ok_or((
                alert::ILLEGAL_PARAMETER,
                DtlsError::HandshakeFailure(format!(
                    "server chose unoffered suite {:#06x}",
                    sh.cipher_suite
                )),
            ))?;
        if sh.compression != 0 {
            return Err((
                alert::ILLEGAL_PARAMETER,
                DtlsError::HandshakeFailure("server chose compression".into()),
            ));
        }
        let profile = match sh.srtp_profile {
            None => return Err((alert::HANDSHAKE_FAILURE, DtlsError::NoSharedSrtpProfile)),
            Some(id) => SrtpProfile::from_dtls_id(id)
                .filter(|p| cfg.srtp_profiles.contains(p))
                .ok_or((
                    alert::ILLEGAL_PARAMETER,
                    DtlsError::HandshakeFailure(format!(
                        "server chose unoffered SRTP profile {id:#06x}"
                    )),
                ))?,
        };
        check_initial_renegotiation_info(sh.renegotiation_info.as_ref())?;
        self.peer_flight_first = Some(m.seq);
        let hs = self.hs_mut()?;
        hs.server_random = sh.random;
        hs.suite = Some(suite);
        hs.profile = Some(profile);
        hs.ems = sh.ems;
        hs.client_hello = None;
        self.add_transcript(m);
        self.state = State::ClientWaitCertificate;
        Ok(())
    }

    /// ServerKeyExchange: the server's ECDHE share, signed with its certificate key.
    pub(super) fn client_on_server_key_exchange(&mut self, m: &Message) -> Result<(), Fail> {
        let ske = ServerKeyExchange::parse(&m.body).map_err(decode)?;
        let group = NamedGroup::from_id(ske.group)
            .filter(|g| self.config.groups.contains(g))
            .ok_or((
                alert::ILLEGAL_PARAMETER,
                DtlsError::HandshakeFailure(format!("server chose unoffered group {}", ske.group)),
            ))?;
        if !SIG_ALGS.contains(&ske.scheme) {
            return Err((
                alert::ILLEGAL_PARAMETER,
                DtlsError::HandshakeFailure(format!(
                    "ServerKeyExchange with unoffered scheme {:#06x}",
                    ske.scheme
                )),
            ));
        }
        let hs = self.hs_mut()?;
        let mut signed = hs.client_random.to_vec();
        signed.extend_from_slice(&hs.server_random);
        signed.extend_from_slice(&ServerKeyExchange::params(ske.group, &ske.public));
        let key = hs.peer_key.as_ref().ok_or((
            alert::INTERNAL_ERROR,
            DtlsError::HandshakeFailure("no server key".into()),
        ))?;
        key.verify(ske.scheme, &signed, &ske.signature)
            .map_err(|e| (alert::DECRYPT_ERROR, e))?;
        hs.group = Some(group);
        hs.server_public = ske.public;
        self.add_transcript(m);
        self.state = State::ClientWaitHelloDone;
        Ok(())
    }

    /// After ServerHelloDone: our flight (Certificate, ClientKeyExchange,
    /// CertificateVerify, ChangeCipherSpec, Finished).
    pub(super) fn client_send_key_exchange(&mut self, now: Instant) -> Result<(), Fail> {
        let suite = self.suite()?;
        let cert_der = self.cert.der().to_vec();
        let (group, requested, server_public) = {
            let hs = self.hs_ref()?;
            (
                hs.group.ok_or((
                    alert::UNEXPECTED_MESSAGE,
                    DtlsError::UnexpectedMessage("ServerHelloDone before ServerKeyExchange".into()),
                ))?,
                hs.cert_requested,
                hs.server_public.clone(),
            )
        };
        let mut flight = Vec::new();
        if requested {
            flight.push(self.hs_message(HT_CERTIFICATE, 0, encode_certificate(&[&cert_der])));
        }
        let eph = EphemeralKey::generate(group);
        let cke = encode_client_key_exchange(eph.public());
        let pms = eph
            .agree(&server_public)
            .map_err(|e| (alert::ILLEGAL_PARAMETER, e))?;
        flight.push(self.hs_message(HT_CLIENT_KEY_EXCHANGE, 0, cke));
        self.derive_keys(suite, &pms)?;
        if requested {
            let sig = self.cert.sign(&self.hs_ref()?.transcript);
            flight.push(self.hs_message(
                HT_CERTIFICATE_VERIFY,
                0,
                encode_signed(ECDSA_P256_SHA256, &sig),
            ));
        }
        flight.push(OutMsg::ChangeCipherSpec);
        let hs = self.hs_ref()?;
        let vd = crypto::verify_data(suite, &hs.master, true, &hs.transcript);
        flight.push(self.hs_message(HT_FINISHED, 1, vd.to_vec()));
        self.writer.epoch = 1;
        self.state = State::ClientWaitCcs;
        self.send_flight(flight, true, now);
        Ok(())
    }

    /// (Re)starts the handshake with our ClientHello as a one-message flight.
    pub(super) fn send_client_hello(&mut self, now: Instant) {
        let Some(body) = self
            .hs
            .as_ref()
            .and_then(|h| h.client_hello.as_ref())
            .map(|c| c.encode())
        else {
            return;
        };
        if let Some(hs) = self.hs.as_mut() {
            // RFC 6347 4.2.1: the transcript starts at the ClientHello with the cookie.
            hs.transcript.clear();
        }
        let m = self.hs_message(HT_CLIENT_HELLO, 0, body);
        if let OutMsg::Handshake { seq, .. } = &m {
            // The server answers with message_seq equal to our ClientHello's.
            self.reasm.reset_to(*seq);
        }
        self.send_flight(vec![m], true, now);
    }
}
