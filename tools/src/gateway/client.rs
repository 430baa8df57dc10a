//! A small ng client (what a SIP proxy's rtpengine module does): numbered
//! cookies, retransmission on timeout, and the offer/answer/delete exchange that
//! sets up one relayed stream.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use rtp_core::srtp::sdes::CryptoAttribute;

use super::bencode::Value;
use super::sdp::Sdp;

/// A client of one ng server.
#[derive(Debug)]
pub struct NgClient {
    sock: UdpSocket,
    server: SocketAddr,
    next: u64,
    tag: u64,
}

impl NgClient {
    /// A client talking to `server` from an ephemeral loopback/any port.
    pub fn new(server: SocketAddr) -> io::Result<Self> {
        let bind: SocketAddr = if server.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(Duration::from_millis(1000)))?;
        // Cookies must never repeat while a server may still cache a reply to
        // an earlier one (30 s for rtpengine and rtp-gateway): a random tag.
        let tag = rand::random::<u64>();
        Ok(NgClient {
            sock,
            server,
            next: 1,
            tag,
        })
    }

    /// Sends a request and waits for its reply (three tries, one second each).
    pub fn request(&mut self, req: &Value) -> Result<Value, String> {
        let cookie = format!("{:x}_{}", self.tag, self.next);
        self.next += 1;
        let mut msg = cookie.clone().into_bytes();
        msg.push(b' ');
        req.encode_into(&mut msg);
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            self.sock
                .send_to(&msg, self.server)
                .map_err(|e| format!("ng send: {e}"))?;
            loop {
                match self.sock.recv(&mut buf) {
                    Ok(n) => {
                        let r = &buf[..n];
                        if r.len() > cookie.len()
                            && r.starts_with(cookie.as_bytes())
                            && r[cookie.len()] == b' '
                        {
                            return Value::decode(&r[cookie.len() + 1..])
                                .map_err(|e| e.to_string());
                        }
                        // A late reply to an earlier request: keep waiting.
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break, // timeout: retransmit
                }
            }
        }
        Err(format!("no ng reply from {}", self.server))
    }

    fn checked(&mut self, req: &Value) -> Result<Value, String> {
        let r = self.request(req)?;
        match r.get_str("result") {
            Some("ok") | Some("pong") => Ok(r),
            _ => Err(format!(
                "ng {}: {}",
                req.get_str("command").unwrap_or("?"),
                r.get_str("error-reason").unwrap_or("error")
            )),
        }
    }

    /// Sets up a one-way stream from `a` to `b` through the relay: an offer from
    /// `a` and an answer from `b`. A side is RTP/SAVP when it has a key (`key`
    /// for A, `b_key` for B, each side's own sending key), RTP/AVP otherwise, so
    /// RTP -> SRTP is `(None, Some(..))`. Returns where A must send, and the
    /// relay's key towards B (to decrypt at B).
    pub fn stream(
        &mut self,
        call_id: &str,
        a: SocketAddr,
        b: SocketAddr,
        pt: u8,
        key: Option<&CryptoAttribute>,
        b_key: Option<&CryptoAttribute>,
    ) -> Result<(SocketAddr, Option<CryptoAttribute>), String> {
        let a_proto = if key.is_some() { "RTP/SAVP" } else { "RTP/AVP" };
        let b_proto = if b_key.is_some() {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        let body = |addr: SocketAddr, proto: &str, crypto: Option<String>| {
            let fam = if addr.is_ipv4() { "IP4" } else { "IP6" };
            let mut s = format!(
                "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=rtp-load\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} {proto} {pt}\r\n",
                ip = addr.ip(),
                port = addr.port()
            );
            if let Some(c) = crypto {
                s.push_str(&c);
                s.push_str("\r\n");
            }
            s.push_str("a=sendrecv\r\n");
            s
        };
        let mut offer = Value::dict();
        offer
            .set("command", Value::str("offer"))
            .set("call-id", Value::str(call_id))
            .set("from-tag", Value::str("a"))
            .set("transport-protocol", Value::str(b_proto))
            .set(
                "sdp",
                Value::str(&body(a, a_proto, key.map(|k| k.to_string()))),
            );
        let r = self.checked(&offer)?;
        let to_b = Sdp::parse(r.get_str("sdp").ok_or("offer reply without sdp")?)?;
        let m = to_b.media.first().ok_or("offer reply without media")?;
        // B accepts the relay's key of our suite (the relay may offer several).
        let relay_key = match b_key {
            Some(k) => Some(
                m.attrs("crypto")
                    .into_iter()
                    .filter_map(|l| CryptoAttribute::parse(l).ok())
                    .find(|c| c.profile == k.profile)
                    .ok_or("the relay offered no key of our suite")?,
            ),
            None => None,
        };
        let answer_crypto = match (&relay_key, b_key) {
            (Some(rk), Some(bk)) => Some(
                CryptoAttribute {
                    tag: rk.tag,
                    ..bk.clone()
                }
                .to_string(),
            ),
            _ => None,
        };
        let mut answer = Value::dict();
        answer
            .set("command", Value::str("answer"))
            .set("call-id", Value::str(call_id))
            .set("from-tag", Value::str("a"))
            .set("to-tag", Value::str("b"))
            .set("sdp", Value::str(&body(b, b_proto, answer_crypto)));
        let r = self.checked(&answer)?;
        let to_a = Sdp::parse(r.get_str("sdp").ok_or("answer reply without sdp")?)?;
        let ip = to_a.media_ip(0).ok_or("answer reply without address")?;
        let port = to_a.media.first().ok_or("answer reply without media")?.port;
        Ok((SocketAddr::new(ip, port), relay_key))
    }

    /// Deletes a call at once.
    pub fn delete(&mut self, call_id: &str) -> Result<(), String> {
        let mut d = Value::dict();
        d.set("command", Value::str("delete"))
            .set("call-id", Value::str(call_id))
            .set("from-tag", Value::str("a"))
            .set("delete-delay", Value::Int(0));
        self.checked(&d).map(|_| ())
    }
}
