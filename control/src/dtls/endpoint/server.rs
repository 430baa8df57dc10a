//! The server's side of the handshake: negotiation on the ClientHello (our
//! preference among what the client offers), our flight, and the client's key
//! exchange.

use super::*;

impl DtlsEndpoint {
    /// ClientHello: negotiate by our preference and send our flight (ServerHello ..
    /// ServerHelloDone).
    pub(super) fn server_on_client_hello(&mut self, m: &Message, now: Instant) -> Result<(), Fail> {
        let ch = ClientHello::parse(&m.body).map_err(decode)?;
        // DTLS versions count down: 0xFEFD is 1.2, 0xFEFF is 1.0. A 1.3 client
        // still says 0xFEFD here (and offers 1.3 in supported_versions, ignored).
        if ch.version > DTLS12 {
            return Err((alert::PROTOCOL_VERSION, DtlsError::ProtocolVersion));
        }
        if !ch.compression.contains(&0) {
            return Err((
                alert::ILLEGAL_PARAMETER,
                DtlsError::HandshakeFailure("client does not offer null compression".into()),
            ));
        }
        let cfg = self.config.clone();
        // Our certificate is ECDSA, so only ECDSA suites are possible.
        let suite = cfg
            .cipher_suites
            .iter()
            .copied()
            .find(|s| s.is_ecdsa() && ch.cipher_suites.contains(&s.id()))
            .ok_or((alert::HANDSHAKE_FAILURE, DtlsError::NoSharedCipherSuite))?;
        let client_groups = ch.groups.clone().unwrap_or_else(|| vec![23]);
        let group = cfg
            .groups
            .iter()
            .copied()
            .find(|g| client_groups.contains(&g.id()))
            .ok_or((alert::HANDSHAKE_FAILURE, DtlsError::NoSharedGroup))?;
        if let Some(pf) = &ch.point_formats {
            if !pf.contains(&0) {
                return Err((
                    alert::ILLEGAL_PARAMETER,
                    DtlsError::HandshakeFailure(
                        "client does not accept uncompressed points".into(),
                    ),
                ));
            }
        }
        if let Some(algs) = &ch.sig_algs {
            if !algs.contains(&ECDSA_P256_SHA256) {
                return Err((
                    alert::HANDSHAKE_FAILURE,
                    DtlsError::HandshakeFailure(
                        "client does not accept ecdsa_secp256r1_sha256".into(),
                    ),
                ));
            }
        }
        let offered = ch
            .srtp_profiles
            .as_ref()
            .ok_or((alert::HANDSHAKE_FAILURE, DtlsError::NoSharedSrtpProfile))?;
        let profile = cfg
            .srtp_profiles
            .iter()
            .copied()
            .find(|p| p.dtls_id().is_some_and(|id| offered.contains(&id)))
            .ok_or((alert::HANDSHAKE_FAILURE, DtlsError::NoSharedSrtpProfile))?;
        let secure_reneg =
            ch.renegotiation_info.is_some() || ch.cipher_suites.contains(&SCSV_RENEGOTIATION);
        check_initial_renegotiation_info(ch.renegotiation_info.as_ref())?;

        self.peer_flight_first = Some(m.seq);
        // Our message_seq continues from the client's (1 after a cookie exchange).
        self.send_seq = m.seq;
        // RFC 6347 4.2.1: continue from the ClientHello's record sequence number
        // (a client that saw a HelloVerifyRequest with that number accepts ours).
        self.writer.skip_epoch0_to(self.current_record_seq);
        let mut server_random = [0u8; 32];
        OsRng.fill_bytes(&mut server_random);
        {
            let hs = self.hs_mut()?;
            hs.client_random = ch.random;
            hs.server_random = server_random;
            hs.suite = Some(suite);
            hs.group = Some(group);
            hs.profile = Some(profile);
            hs.ems = ch.ems;
            hs.transcript.clear();
        }
        self.add_transcript(m);

        let sh = ServerHello {
            version: DTLS12,
            random: server_random,
            session_id: Vec::new(),
            cipher_suite: suite.id(),
            compression: 0,
            srtp_profile: profile.dtls_id(),
            ems: ch.ems,
            renegotiation_info: secure_reneg.then(Vec::new),
            point_formats: ch.point_formats.as_ref().map(|_| vec![0]),
            extension_types: Vec::new(),
        };
        let mut flight = vec![self.hs_message(HT_SERVER_HELLO, 0, sh.encode())];
        let cert_der = self.cert.der().to_vec();
        flight.push(self.hs_message(HT_CERTIFICATE, 0, encode_certificate(&[&cert_der])));
        let eph = EphemeralKey::generate(group);
        let mut signed = ch.random.to_vec();
        signed.extend_from_slice(&server_random);
        signed.extend_from_slice(&ServerKeyExchange::params(group.id(), eph.public()));
        let ske = ServerKeyExchange {
            group: group.id(),
            public: eph.public().to_vec(),
            scheme: ECDSA_P256_SHA256,
            signature: self.cert.sign(&signed),
        };
        flight.push(self.hs_message(HT_SERVER_KEY_EXCHANGE, 0, ske.encode()));
        if cfg.require_client_certificate {
            flight.push(self.hs_message(
                HT_CERTIFICATE_REQUEST,
                0,
                encode_certificate_request(&SIG_ALGS),
            ));
        }
        flight.push(self.hs_message(HT_SERVER_HELLO_DONE, 0, Vec::new()));
        self.hs_mut()?.ecdhe = Some(eph);
        self.state = if cfg.require_client_certificate {
            State::ServerWaitCertificate
        } else {
            State::ServerWaitKeyExchange
        };
        self.send_flight(flight, true, now);
        Ok(())
    }

    /// ClientKeyExchange: the pre-master secret, master secret and keys.
    pub(super) fn server_on_client_key_exchange(&mut self, m: &Message) -> Result<(), Fail> {
        let public = parse_client_key_exchange(&m.body).map_err(decode)?;
        let suite = self.suite()?;
        let eph = self.hs_mut()?.ecdhe.take().ok_or((
            alert::INTERNAL_ERROR,
            DtlsError::HandshakeFailure("no ECDHE key".into()),
        ))?;
        let pms = eph
            .agree(&public)
            .map_err(|e| (alert::ILLEGAL_PARAMETER, e))?;
        self.add_transcript(m);
        self.derive_keys(suite, &pms)?;
        if self.hs_ref()?.peer_key.is_some() {
            self.state = State::ServerWaitCertificateVerify;
        } else {
            self.wait_for_ccs(State::ServerWaitCcs);
        }
        Ok(())
    }
}
