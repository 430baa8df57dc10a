//! Handshake message bodies (RFC 5246 7.4, RFC 6347 4.2, RFC 8422, RFC 5764,
//! RFC 7627, RFC 5746): parsing and encoding.

use super::codec::{put_u16, put_u24, put_vec, Reader};
use super::DtlsError;

pub(crate) const HT_CLIENT_HELLO: u8 = 1;
pub(crate) const HT_SERVER_HELLO: u8 = 2;
pub(crate) const HT_HELLO_VERIFY_REQUEST: u8 = 3;
pub(crate) const HT_CERTIFICATE: u8 = 11;
pub(crate) const HT_SERVER_KEY_EXCHANGE: u8 = 12;
pub(crate) const HT_CERTIFICATE_REQUEST: u8 = 13;
pub(crate) const HT_SERVER_HELLO_DONE: u8 = 14;
pub(crate) const HT_CERTIFICATE_VERIFY: u8 = 15;
pub(crate) const HT_CLIENT_KEY_EXCHANGE: u8 = 16;
pub(crate) const HT_FINISHED: u8 = 20;

pub(crate) const EXT_SUPPORTED_GROUPS: u16 = 10;
pub(crate) const EXT_EC_POINT_FORMATS: u16 = 11;
pub(crate) const EXT_SIGNATURE_ALGORITHMS: u16 = 13;
pub(crate) const EXT_USE_SRTP: u16 = 14;
pub(crate) const EXT_EXTENDED_MASTER_SECRET: u16 = 23;
pub(crate) const EXT_RENEGOTIATION_INFO: u16 = 0xFF01;
/// TLS_EMPTY_RENEGOTIATION_INFO_SCSV.
pub(crate) const SCSV_RENEGOTIATION: u16 = 0x00FF;

/// Handshake message header length in DTLS.
pub(crate) const HS_HEADER_LEN: usize = 12;

/// One handshake fragment, borrowed from a record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fragment<'a> {
    pub(crate) msg_type: u8,
    pub(crate) length: usize,
    pub(crate) message_seq: u16,
    pub(crate) offset: usize,
    pub(crate) body: &'a [u8],
}

/// Walks the handshake fragments of a record body.
pub(crate) fn parse_fragments(body: &[u8]) -> Result<Vec<Fragment<'_>>, DtlsError> {
    let mut r = Reader::new(body, "handshake fragment");
    let mut out = Vec::new();
    while !r.is_empty() {
        let msg_type = r.u8()?;
        let length = r.u24()?;
        let message_seq = r.u16()?;
        let offset = r.u24()?;
        let flen = r.u24()?;
        let body = r.take(flen)?;
        if offset + flen > length {
            return Err(DtlsError::Decode("fragment beyond message length".into()));
        }
        out.push(Fragment {
            msg_type,
            length,
            message_seq,
            offset,
            body,
        });
    }
    Ok(out)
}

/// Writes a handshake header.
pub(crate) fn put_hs_header(
    out: &mut Vec<u8>,
    msg_type: u8,
    length: usize,
    seq: u16,
    offset: usize,
    flen: usize,
) {
    out.push(msg_type);
    put_u24(out, length);
    put_u16(out, seq);
    put_u24(out, offset);
    put_u24(out, flen);
}

/// A whole handshake message as it enters the transcript (unfragmented header).
pub(crate) fn full_message(msg_type: u8, seq: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HS_HEADER_LEN + body.len());
    put_hs_header(&mut out, msg_type, body.len(), seq, 0, body.len());
    out.extend_from_slice(body);
    out
}

/// Parsed ClientHello.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientHello {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cookie: Vec<u8>,
    pub(crate) cipher_suites: Vec<u16>,
    pub(crate) compression: Vec<u8>,
    pub(crate) groups: Option<Vec<u16>>,
    pub(crate) point_formats: Option<Vec<u8>>,
    pub(crate) sig_algs: Option<Vec<u16>>,
    pub(crate) srtp_profiles: Option<Vec<u16>>,
    pub(crate) ems: bool,
    pub(crate) renegotiation_info: Option<Vec<u8>>,
}

fn u16_list(b: &[u8], what: &'static str) -> Result<Vec<u16>, DtlsError> {
    if !b.len().is_multiple_of(2) {
        return Err(DtlsError::Decode(format!("{what}: odd length")));
    }
    Ok(b.chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// The fixed prefix of a ClientHello up to and including the cookie (all the
/// stateless cookie check needs, present in the first fragment).
#[derive(Debug, Clone)]
pub(crate) struct HelloPrefix<'a> {
    pub(crate) version: u16,
    pub(crate) random: &'a [u8],
    pub(crate) session_id: &'a [u8],
    pub(crate) cookie: &'a [u8],
}

pub(crate) fn parse_hello_prefix<'a>(r: &mut Reader<'a>) -> Result<HelloPrefix<'a>, DtlsError> {
    let version = r.u16()?;
    let random = r.take(32)?;
    let session_id = r.vec8()?;
    if session_id.len() > 32 {
        return Err(DtlsError::Decode("session_id longer than 32".into()));
    }
    let cookie = r.vec8()?;
    Ok(HelloPrefix {
        version,
        random,
        session_id,
        cookie,
    })
}

impl ClientHello {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, DtlsError> {
        let mut r = Reader::new(body, "ClientHello");
        let p = parse_hello_prefix(&mut r)?;
        let mut ch = ClientHello {
            version: p.version,
            session_id: p.session_id.to_vec(),
            cookie: p.cookie.to_vec(),
            ..Default::default()
        };
        ch.random.copy_from_slice(p.random);
        ch.cipher_suites = u16_list(r.vec16()?, "cipher_suites")?;
        ch.compression = r.vec8()?.to_vec();
        if !r.is_empty() {
            let mut ext = Reader::new(r.vec16()?, "ClientHello extensions");
            let mut seen = Vec::new();
            while !ext.is_empty() {
                let ty = ext.u16()?;
                let data = ext.vec16()?;
                if seen.contains(&ty) {
                    return Err(DtlsError::Decode(format!("duplicate extension {ty}")));
                }
                seen.push(ty);
                let mut d = Reader::new(data, "ClientHello extension");
                match ty {
                    EXT_SUPPORTED_GROUPS => {
                        ch.groups = Some(u16_list(d.vec16()?, "supported_groups")?);
                        d.finish()?;
                    }
                    EXT_EC_POINT_FORMATS => {
                        ch.point_formats = Some(d.vec8()?.to_vec());
                        d.finish()?;
                    }
                    EXT_SIGNATURE_ALGORITHMS => {
                        ch.sig_algs = Some(u16_list(d.vec16()?, "signature_algorithms")?);
                        d.finish()?;
                    }
                    EXT_USE_SRTP => {
                        ch.srtp_profiles = Some(u16_list(d.vec16()?, "use_srtp")?);
                        d.vec8()?; // MKI, ignored (we never use one)
                        d.finish()?;
                    }
                    EXT_EXTENDED_MASTER_SECRET => {
                        d.finish()?;
                        ch.ems = true;
                    }
                    EXT_RENEGOTIATION_INFO => {
                        ch.renegotiation_info = Some(d.vec8()?.to_vec());
                        d.finish()?;
                    }
                    _ => {} // unknown (supported_versions, key_share, ...): ignored
                }
            }
            r.finish()?;
        }
        Ok(ch)
    }

    /// Whether this hello carries extension `ty` (a ServerHello may only
    /// answer those, RFC 5246 7.4.1.4).
    pub(crate) fn offers_extension(&self, ty: u16) -> bool {
        match ty {
            EXT_SUPPORTED_GROUPS => self.groups.is_some(),
            EXT_EC_POINT_FORMATS => self.point_formats.is_some(),
            EXT_SIGNATURE_ALGORITHMS => self.sig_algs.is_some(),
            EXT_USE_SRTP => self.srtp_profiles.is_some(),
            EXT_EXTENDED_MASTER_SECRET => self.ems,
            EXT_RENEGOTIATION_INFO => self.renegotiation_info.is_some(),
            _ => false,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(256);
        put_u16(&mut o, self.version);
        o.extend_from_slice(&self.random);
        put_vec(&mut o, 1, &self.session_id);
        put_vec(&mut o, 1, &self.cookie);
        let suites: Vec<u8> = self
            .cipher_suites
            .iter()
            .flat_map(|s| s.to_be_bytes())
            .collect();
        put_vec(&mut o, 2, &suites);
        put_vec(&mut o, 1, &self.compression);
        let mut ext = Vec::new();
        if let Some(g) = &self.groups {
            let l: Vec<u8> = g.iter().flat_map(|s| s.to_be_bytes()).collect();
            let mut d = Vec::new();
            put_vec(&mut d, 2, &l);
            put_ext(&mut ext, EXT_SUPPORTED_GROUPS, &d);
        }
        if let Some(p) = &self.point_formats {
            let mut d = Vec::new();
            put_vec(&mut d, 1, p);
            put_ext(&mut ext, EXT_EC_POINT_FORMATS, &d);
        }
        if let Some(s) = &self.sig_algs {
            let l: Vec<u8> = s.iter().flat_map(|s| s.to_be_bytes()).collect();
            let mut d = Vec::new();
            put_vec(&mut d, 2, &l);
            put_ext(&mut ext, EXT_SIGNATURE_ALGORITHMS, &d);
        }
        if let Some(s) = &self.srtp_profiles {
            let l: Vec<u8> = s.iter().flat_map(|s| s.to_be_bytes()).collect();
            let mut d = Vec::new();
            put_vec(&mut d, 2, &l);
            d.push(0); // empty MKI
            put_ext(&mut ext, EXT_USE_SRTP, &d);
        }
        if self.ems {
            put_ext(&mut ext, EXT_EXTENDED_MASTER_SECRET, &[]);
        }
        if let Some(ri) = &self.renegotiation_info {
            let mut d = Vec::new();
            put_vec(&mut d, 1, ri);
            put_ext(&mut ext, EXT_RENEGOTIATION_INFO, &d);
        }
        put_vec(&mut o, 2, &ext);
        o
    }
}

fn put_ext(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    put_u16(out, ty);
    put_vec(out, 2, data);
}

/// Parsed ServerHello.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerHello {
    pub(crate) version: u16,
    pub(crate) random: [u8; 32],
    pub(crate) session_id: Vec<u8>,
    pub(crate) cipher_suite: u16,
    pub(crate) compression: u8,
    pub(crate) srtp_profile: Option<u16>,
    pub(crate) ems: bool,
    pub(crate) renegotiation_info: Option<Vec<u8>>,
    pub(crate) point_formats: Option<Vec<u8>>,
    /// Extension types present (to reject ones we did not offer).
    pub(crate) extension_types: Vec<u16>,
}

impl ServerHello {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, DtlsError> {
        let mut r = Reader::new(body, "ServerHello");
        let mut sh = ServerHello {
            version: r.u16()?,
            ..Default::default()
        };
        sh.random.copy_from_slice(r.take(32)?);
        sh.session_id = r.vec8()?.to_vec();
        sh.cipher_suite = r.u16()?;
        sh.compression = r.u8()?;
        if !r.is_empty() {
            let mut ext = Reader::new(r.vec16()?, "ServerHello extensions");
            while !ext.is_empty() {
                let ty = ext.u16()?;
                let data = ext.vec16()?;
                if sh.extension_types.contains(&ty) {
                    return Err(DtlsError::Decode(format!("duplicate extension {ty}")));
                }
                sh.extension_types.push(ty);
                let mut d = Reader::new(data, "ServerHello extension");
                match ty {
                    EXT_USE_SRTP => {
                        let l = u16_list(d.vec16()?, "use_srtp")?;
                        if l.len() != 1 {
                            return Err(DtlsError::Decode(
                                "use_srtp in ServerHello must name one profile".into(),
                            ));
                        }
                        sh.srtp_profile = Some(l[0]);
                        if !d.vec8()?.is_empty() {
                            return Err(DtlsError::HandshakeFailure(
                                "server chose an SRTP MKI we did not offer".into(),
                            ));
                        }
                        d.finish()?;
                    }
                    EXT_EXTENDED_MASTER_SECRET => {
                        d.finish()?;
                        sh.ems = true;
                    }
                    EXT_RENEGOTIATION_INFO => {
                        sh.renegotiation_info = Some(d.vec8()?.to_vec());
                        d.finish()?;
                    }
                    EXT_EC_POINT_FORMATS => {
                        sh.point_formats = Some(d.vec8()?.to_vec());
                        d.finish()?;
                    }
                    _ => {}
                }
            }
            r.finish()?;
        }
        Ok(sh)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(128);
        put_u16(&mut o, self.version);
        o.extend_from_slice(&self.random);
        put_vec(&mut o, 1, &self.session_id);
        put_u16(&mut o, self.cipher_suite);
        o.push(self.compression);
        let mut ext = Vec::new();
        if let Some(ri) = &self.renegotiation_info {
            let mut d = Vec::new();
            put_vec(&mut d, 1, ri);
            put_ext(&mut ext, EXT_RENEGOTIATION_INFO, &d);
        }
        if let Some(p) = &self.point_formats {
            let mut d = Vec::new();
            put_vec(&mut d, 1, p);
            put_ext(&mut ext, EXT_EC_POINT_FORMATS, &d);
        }
        if let Some(p) = self.srtp_profile {
            let mut d = Vec::new();
            put_vec(&mut d, 2, &p.to_be_bytes());
            d.push(0);
            put_ext(&mut ext, EXT_USE_SRTP, &d);
        }
        if self.ems {
            put_ext(&mut ext, EXT_EXTENDED_MASTER_SECRET, &[]);
        }
        put_vec(&mut o, 2, &ext);
        o
    }
}

/// HelloVerifyRequest body: server_version (DTLS 1.0 per RFC 6347 4.2.1) + cookie.
pub(crate) fn encode_hello_verify_request(cookie: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(3 + cookie.len());
    put_u16(&mut o, super::record::DTLS10);
    put_vec(&mut o, 1, cookie);
    o
}

pub(crate) fn parse_hello_verify_request(body: &[u8]) -> Result<Vec<u8>, DtlsError> {
    let mut r = Reader::new(body, "HelloVerifyRequest");
    let _version = r.u16()?;
    let cookie = r.vec8()?.to_vec();
    r.finish()?;
    Ok(cookie)
}

/// Certificate: a chain of DER certificates.
pub(crate) fn encode_certificate(chain: &[&[u8]]) -> Vec<u8> {
    let mut inner = Vec::new();
    for c in chain {
        put_vec(&mut inner, 3, c);
    }
    let mut o = Vec::with_capacity(inner.len() + 3);
    put_vec(&mut o, 3, &inner);
    o
}

pub(crate) fn parse_certificate(body: &[u8]) -> Result<Vec<Vec<u8>>, DtlsError> {
    let mut r = Reader::new(body, "Certificate");
    let mut list = Reader::new(r.vec24()?, "Certificate list");
    r.finish()?;
    let mut out = Vec::new();
    while !list.is_empty() {
        let c = list.vec24()?;
        if c.is_empty() {
            return Err(DtlsError::Decode("empty certificate in chain".into()));
        }
        out.push(c.to_vec());
    }
    Ok(out)
}

/// ECDHE ServerKeyExchange.
#[derive(Debug, Clone)]
pub(crate) struct ServerKeyExchange {
    pub(crate) group: u16,
    pub(crate) public: Vec<u8>,
    pub(crate) scheme: u16,
    pub(crate) signature: Vec<u8>,
}

impl ServerKeyExchange {
    /// The ServerECDHParams bytes that are signed.
    pub(crate) fn params(group: u16, public: &[u8]) -> Vec<u8> {
        let mut o = vec![3u8]; // named_curve
        put_u16(&mut o, group);
        put_vec(&mut o, 1, public);
        o
    }

    pub(crate) fn parse(body: &[u8]) -> Result<Self, DtlsError> {
        let mut r = Reader::new(body, "ServerKeyExchange");
        if r.u8()? != 3 {
            return Err(DtlsError::HandshakeFailure(
                "ServerKeyExchange: only named curves are supported".into(),
            ));
        }
        let group = r.u16()?;
        let public = r.vec8()?.to_vec();
        let scheme = r.u16()?;
        let signature = r.vec16()?.to_vec();
        r.finish()?;
        Ok(ServerKeyExchange {
            group,
            public,
            scheme,
            signature,
        })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut o = Self::params(self.group, &self.public);
        put_u16(&mut o, self.scheme);
        put_vec(&mut o, 2, &self.signature);
        o
    }
}

/// CertificateRequest (TLS 1.2): certificate types, signature algorithms, no CAs.
pub(crate) fn encode_certificate_request(sig_algs: &[u16]) -> Vec<u8> {
    let mut o = Vec::new();
    put_vec(&mut o, 1, &[64, 1]); // ecdsa_sign, rsa_sign
    let l: Vec<u8> = sig_algs.iter().flat_map(|s| s.to_be_bytes()).collect();
    put_vec(&mut o, 2, &l);
    put_vec(&mut o, 2, &[]);
    o
}

/// Returns the signature algorithms of a CertificateRequest.
pub(crate) fn parse_certificate_request(body: &[u8]) -> Result<Vec<u16>, DtlsError> {
    let mut r = Reader::new(body, "CertificateRequest");
    let _types = r.vec8()?;
    let algs = u16_list(r.vec16()?, "CertificateRequest signature algorithms")?;
    let _cas = r.vec16()?;
    r.finish()?;
    Ok(algs)
}

/// ClientKeyExchange (ECDHE): the client's public value.
pub(crate) fn encode_client_key_exchange(public: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(1 + public.len());
    put_vec(&mut o, 1, public);
    o
}

pub(crate) fn parse_client_key_exchange(body: &[u8]) -> Result<Vec<u8>, DtlsError> {
    let mut r = Reader::new(body, "ClientKeyExchange");
    let p = r.vec8()?.to_vec();
    r.finish()?;
    Ok(p)
}

/// A `digitally-signed` value: scheme + signature (CertificateVerify body).
pub(crate) fn encode_signed(scheme: u16, sig: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(4 + sig.len());
    put_u16(&mut o, scheme);
    put_vec(&mut o, 2, sig);
    o
}

pub(crate) fn parse_signed(body: &[u8]) -> Result<(u16, Vec<u8>), DtlsError> {
    let mut r = Reader::new(body, "CertificateVerify");
    let scheme = r.u16()?;
    let sig = r.vec16()?.to_vec();
    r.finish()?;
    Ok((scheme, sig))
}

/// Parses a handshake message body of any known type (fuzzing entry point).
#[doc(hidden)]
pub fn fuzz_parse_handshake(msg_type: u8, body: &[u8]) -> bool {
    match msg_type {
        HT_CLIENT_HELLO => ClientHello::parse(body).is_ok(),
        HT_SERVER_HELLO => ServerHello::parse(body).is_ok(),
        HT_HELLO_VERIFY_REQUEST => parse_hello_verify_request(body).is_ok(),
        HT_CERTIFICATE => parse_certificate(body).is_ok(),
        HT_SERVER_KEY_EXCHANGE => ServerKeyExchange::parse(body).is_ok(),
        HT_CERTIFICATE_REQUEST => parse_certificate_request(body).is_ok(),
        HT_CLIENT_KEY_EXCHANGE => parse_client_key_exchange(body).is_ok(),
        HT_CERTIFICATE_VERIFY => parse_signed(body).is_ok(),
        _ => parse_fragments(body).is_ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_hello_round_trip() {
        let ch = ClientHello {
            version: 0xFEFD,
            random: [9; 32],
            cookie: vec![1, 2, 3],
            cipher_suites: vec![0xC02B, 0xCCA9],
            compression: vec![0],
            groups: Some(vec![29, 23]),
            point_formats: Some(vec![0]),
            sig_algs: Some(vec![0x0403]),
            srtp_profiles: Some(vec![1, 7]),
            ems: true,
            renegotiation_info: Some(vec![]),
            ..Default::default()
        };
        let b = ch.encode();
        let p = ClientHello::parse(&b).unwrap();
        assert_eq!(p.encode(), b);
        assert_eq!(p.srtp_profiles, Some(vec![1, 7]));
        assert!(p.ems);
        for n in 0..b.len() {
            let _ = ClientHello::parse(&b[..n]);
        }
    }

    proptest::proptest! {
        #[test]
        fn client_hello_parse_encode_round_trip(
            random: [u8; 32],
            cookie in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..=255),
            suites in proptest::collection::vec(proptest::prelude::any::<u16>(), 1..50),
            groups in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u16>(), 0..10)),
            srtp in proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u16>(), 0..10)),
            ems: bool,
        ) {
            let ch = ClientHello {
                version: 0xFEFD,
                random,
                cookie,
                cipher_suites: suites,
                compression: vec![0],
                groups,
                srtp_profiles: srtp,
                ems,
                ..Default::default()
            };
            let b = ch.encode();
            let p = ClientHello::parse(&b).unwrap();
            proptest::prop_assert_eq!(p.encode(), b);
            proptest::prop_assert_eq!(p.srtp_profiles, ch.srtp_profiles);
            proptest::prop_assert_eq!(p.groups, ch.groups);
        }

        #[test]
        fn parsers_never_panic(ty: u8, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = fuzz_parse_handshake(ty, &body);
            let _ = parse_fragments(&body);
        }
    }

    #[test]
    fn server_hello_round_trip() {
        let sh = ServerHello {
            version: 0xFEFD,
            random: [3; 32],
            cipher_suite: 0xC02B,
            srtp_profile: Some(1),
            ems: true,
            renegotiation_info: Some(vec![]),
            point_formats: Some(vec![0]),
            ..Default::default()
        };
        let b = sh.encode();
        let p = ServerHello::parse(&b).unwrap();
        assert_eq!(p.encode(), b);
    }
}
