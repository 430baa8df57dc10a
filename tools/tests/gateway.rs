//! rtp-gateway over the ng protocol, and the same scenarios against real
//! rtpengine (Debian's rtpengine-daemon, userspace mode) to prove the replies have
//! the same shape: offer/answer for plain RTP, RTP <-> SRTP (SDES), SRTP <-> SRTP,
//! rtcp-mux demux; media both ways; query counts; delete; a re-offer that moves
//! the offerer; bad input; retransmitted commands.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::SrtpContext;
use rtp_tools::gateway::bencode::Value;
use rtp_tools::gateway::sdp::Sdp;
use rtp_tools::gateway::{Gateway, GatewayConfig};

use std::sync::Arc;

use rtp_control::dtls::{Certificate, DtlsConfig, DtlsEndpoint, Fingerprint};
use rtp_tools::dtls_tool::{drive_handshake, Handshake};

// ------------------------------------------------------------------ harness

use rtp_tools::interop::{free_port_range as free_range, Rtpengine};

fn ours(max_calls: usize) -> Gateway {
    let (lo, hi) = free_range(200);
    Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        max_calls,
        ..GatewayConfig::default()
    })
    .unwrap()
}

/// Real rtpengine in userspace mode, or None (a skip) when it is not installed
/// outside CI. In CI it must be there (.ci/install.sh installs it).
fn rtpengine() -> Option<Rtpengine> {
    if !Rtpengine::installed() {
        assert!(
            std::env::var("CI").is_err(),
            "rtpengine must be installed in CI (.ci/install.sh)"
        );
        eprintln!("rtpengine not installed: skipping the comparison (sudo bash .ci/install.sh)");
        return None;
    }
    Some(Rtpengine::start(None, 50).expect("rtpengine starts"))
}

fn dict(kv: &[(&str, &str)]) -> Value {
    let mut d = Value::dict();
    for (k, v) in kv {
        d.set(k, Value::str(v));
    }
    d
}

fn ng_try(ng: SocketAddr, req: &Value, wait: Duration) -> Option<Value> {
    static COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let c = COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let mut msg = format!("t{c}-{} ", std::process::id()).into_bytes();
    let cookie_len = msg.len() - 1;
    req.encode_into(&mut msg);
    s.send_to(&msg, ng).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).ok()?;
    assert_eq!(
        &buf[..cookie_len + 1],
        &msg[..cookie_len + 1],
        "reply carries the cookie"
    );
    Some(Value::decode(&buf[cookie_len + 1..n]).expect("reply is bencode"))
}

fn ng(addr: SocketAddr, req: &Value) -> Value {
    ng_try(addr, req, Duration::from_secs(3)).expect("ng reply")
}

fn ok(r: &Value) -> &Value {
    assert_eq!(r.get_str("result"), Some("ok"), "{r:?}");
    r
}

fn sdp(port: u16, proto: &str, extra: &[String]) -> String {
    let mut s = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\n"
    );
    for l in extra {
        s.push_str(l);
        s.push_str("\r\n");
    }
    s.push_str("a=sendrecv\r\n");
    s
}

fn offer(ng_addr: SocketAddr, call: &str, sdp_text: &str, extra: &[(&str, Value)]) -> Sdp {
    let mut d = dict(&[
        ("command", "offer"),
        ("call-id", call),
        ("from-tag", "caller"),
        ("sdp", sdp_text),
    ]);
    for (k, v) in extra {
        d.set(k, v.clone());
    }
    let r = ng(ng_addr, &d);
    Sdp::parse(ok(&r).get_str("sdp").expect("offer reply has sdp")).unwrap()
}

fn answer(ng_addr: SocketAddr, call: &str, sdp_text: &str) -> Sdp {
    let d = dict(&[
        ("command", "answer"),
        ("call-id", call),
        ("from-tag", "caller"),
        ("to-tag", "callee"),
        ("sdp", sdp_text),
    ]);
    let r = ng(ng_addr, &d);
    Sdp::parse(ok(&r).get_str("sdp").expect("answer reply has sdp")).unwrap()
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn port(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    let mut v = vec![0x80, 0x00];
    v.extend(seq.to_be_bytes());
    v.extend((u32::from(seq) * 160).to_be_bytes());
    v.extend(ssrc.to_be_bytes());
    v.extend([seq as u8; 160]);
    v
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    loop {
        match s.recv(&mut buf) {
            Ok(n) => return buf[..n].to_vec(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("media not relayed: {e}"),
        }
    }
}

/// The offered key of `suite`: its tag and a context to decrypt with.
fn pick(m: &rtp_tools::gateway::sdp::Media, suite: &str) -> (u32, SrtpContext) {
    let c = m
        .attrs("crypto")
        .into_iter()
        .filter_map(|l| CryptoAttribute::parse(l).ok())
        .find(|c| c.profile.sdes_name() == suite)
        .unwrap_or_else(|| panic!("{suite} offered"));
    (c.tag, SrtpContext::new(c.to_config().unwrap()).unwrap())
}

fn ctx_of(m: &rtp_tools::gateway::sdp::Media) -> SrtpContext {
    let line = m
        .attrs("crypto")
        .into_iter()
        .next()
        .expect("a=crypto in the SDP");
    SrtpContext::new(CryptoAttribute::parse(line).unwrap().to_config().unwrap()).unwrap()
}

/// Sends `n` packets from `from` to `to`, protected with `tx`, and checks that
/// `at` receives them (decrypted with `rx`) intact.
fn media(
    from: &UdpSocket,
    to: SocketAddr,
    mut tx: Option<&mut SrtpContext>,
    at: &UdpSocket,
    mut rx: Option<&mut SrtpContext>,
    ssrc: u32,
    n: u16,
) {
    for seq in 0..n {
        let plain = rtp(ssrc, seq);
        let mut p = plain.clone();
        if let Some(c) = tx.as_deref_mut() {
            p.resize(plain.len() + 32, 0);
            let len = c.protect_rtp(&mut p, plain.len()).unwrap();
            p.truncate(len);
        }
        from.send_to(&p, to).unwrap();
        let mut got = recv(at);
        if let Some(c) = rx.as_deref_mut() {
            let u = c
                .unprotect_rtp(&mut got)
                .expect("SRTP from the relay authenticates");
            got.truncate(u.len);
        }
        assert_eq!(got, plain, "packet {seq}");
    }
}

fn addr(s: &Sdp) -> SocketAddr {
    SocketAddr::new(s.media_ip(0).unwrap(), s.media[0].port)
}

/// delete, immediately (rtpengine keeps a deleted call for 30 s by default).
fn delete(g: SocketAddr, call: &str) -> Value {
    let mut d = dict(&[
        ("command", "delete"),
        ("call-id", call),
        ("from-tag", "caller"),
    ]);
    d.set("delete-delay", Value::Int(0));
    ng(g, &d)
}

fn totals_rtp(r: &Value) -> i64 {
    r.get("totals")
        .and_then(|t| t.get("RTP"))
        .and_then(|t| t.get("packets"))
        .and_then(Value::as_int)
        .unwrap()
}

// ------------------------------------------------------------------ scenarios

fn plain_call(g: SocketAddr) {
    let (a, b) = (peer(), peer());
    let call = format!("plain-{}", port(&a));
    let to_b = offer(g, &call, &sdp(port(&a), "RTP/AVP", &[]), &[]);
    assert_eq!(to_b.media[0].proto, "RTP/AVP");
    assert_ne!(
        to_b.media[0].port,
        port(&a),
        "the offer is rewritten to the relay's port"
    );
    let to_a = answer(g, &call, &sdp(port(&b), "RTP/AVP", &[]));
    media(&a, addr(&to_a), None, &b, None, 0xA, 20);
    media(&b, addr(&to_b), None, &a, None, 0xB, 10);
    let q = ng(g, &dict(&[("command", "query"), ("call-id", &call)]));
    assert_eq!(totals_rtp(ok(&q)), 30, "{q:?}");
    let tags = q.get("tags").unwrap();
    let caller = tags.get("caller").expect("caller tag in query");
    let medias = caller.get("medias").unwrap();
    let Value::List(ms) = medias else { panic!() };
    assert_eq!(ms[0].get_str("type"), Some("audio"));
    assert!(matches!(ms[0].get("streams"), Some(Value::List(_))));
    let list = ng(g, &dict(&[("command", "list")]));
    assert!(ok(&list)
        .get("calls")
        .unwrap()
        .str_list()
        .contains(&call.as_str()));
    ok(&delete(g, &call));
    let q = ng(g, &dict(&[("command", "query"), ("call-id", &call)]));
    assert_eq!(q.get_str("result"), Some("error"), "a deleted call is gone");
}

fn rtp_to_srtp(g: SocketAddr) {
    let (a, b) = (peer(), peer());
    let call = format!("sdes-{}", port(&a));
    let to_b = offer(
        g,
        &call,
        &sdp(port(&a), "RTP/AVP", &[]),
        &[("transport-protocol", Value::str("RTP/SAVP"))],
    );
    assert_eq!(to_b.media[0].proto, "RTP/SAVP");
    // B picks AES_CM_128_HMAC_SHA1_80 among the offered suites.
    let (tag, mut b_rx) = pick(&to_b.media[0], "AES_CM_128_HMAC_SHA1_80");
    let b_key = format!(
        "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
    );
    let mut b_tx =
        SrtpContext::new(CryptoAttribute::parse(&b_key).unwrap().to_config().unwrap()).unwrap();
    let to_a = answer(
        g,
        &call,
        &sdp(port(&b), "RTP/SAVP", std::slice::from_ref(&b_key)),
    );
    assert_eq!(to_a.media[0].proto, "RTP/AVP");
    assert!(to_a.media[0].attrs("crypto").is_empty());
    media(&a, addr(&to_a), None, &b, Some(&mut b_rx), 0xA, 20);
    media(&b, addr(&to_b), Some(&mut b_tx), &a, None, 0xB, 20);
    ok(&delete(g, &call));
}

fn srtp_both(g: SocketAddr) {
    let (a, b) = (peer(), peer());
    let call = format!("srtp-{}", port(&a));
    let a_key =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
            .to_string();
    let b_key =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
            .to_string();
    let to_b = offer(
        g,
        &call,
        &sdp(port(&a), "RTP/SAVP", std::slice::from_ref(&a_key)),
        &[],
    );
    let (tag, mut b_rx) = pick(&to_b.media[0], "AES_CM_128_HMAC_SHA1_80");
    let b_key = b_key.replace("crypto:1 ", &format!("crypto:{tag} "));
    let to_a = answer(
        g,
        &call,
        &sdp(port(&b), "RTP/SAVP", std::slice::from_ref(&b_key)),
    );
    let mut a_rx = ctx_of(&to_a.media[0]);
    let mut a_tx =
        SrtpContext::new(CryptoAttribute::parse(&a_key).unwrap().to_config().unwrap()).unwrap();
    let mut b_tx =
        SrtpContext::new(CryptoAttribute::parse(&b_key).unwrap().to_config().unwrap()).unwrap();
    media(
        &a,
        addr(&to_a),
        Some(&mut a_tx),
        &b,
        Some(&mut b_rx),
        0xA,
        20,
    );
    media(
        &b,
        addr(&to_b),
        Some(&mut b_tx),
        &a,
        Some(&mut a_rx),
        0xB,
        20,
    );
    ok(&delete(g, &call));
}

fn rtcp_demux(g: SocketAddr) {
    let (a, b, b_rtcp) = (peer(), peer(), peer());
    let call = format!("mux-{}", port(&a));
    let to_b = offer(
        g,
        &call,
        &sdp(port(&a), "RTP/AVP", &["a=rtcp-mux".to_string()]),
        &[("rtcp-mux", Value::List(vec![Value::str("demux")]))],
    );
    let m = &to_b.media[0];
    assert!(!m.rtcp_mux(), "demux: no rtcp-mux towards B");
    let rtcp_port = m.rtcp_port().expect("a separate RTCP port towards B");
    let to_a = answer(
        g,
        &call,
        &sdp(port(&b), "RTP/AVP", &[format!("a=rtcp:{}", port(&b_rtcp))]),
    );
    assert!(
        to_a.media[0].rtcp_mux(),
        "the offerer's rtcp-mux is accepted"
    );
    media(&a, addr(&to_a), None, &b, None, 0xA, 5);
    // B's RTCP on the separate port reaches A on its one (muxed) port.
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 0xB];
    b_rtcp
        .send_to(&rr, SocketAddr::new(to_b.media_ip(0).unwrap(), rtcp_port))
        .unwrap();
    assert_eq!(recv(&a), rr.to_vec());
    ok(&delete(g, &call));
}

fn reoffer_moves_the_offerer(g: SocketAddr) {
    let (a, a2, b) = (peer(), peer(), peer());
    let call = format!("re-{}", port(&a));
    let to_b = offer(g, &call, &sdp(port(&a), "RTP/AVP", &[]), &[]);
    let to_a = answer(g, &call, &sdp(port(&b), "RTP/AVP", &[]));
    media(&a, addr(&to_a), None, &b, None, 0xA, 5);
    // Hold (c=0.0.0.0, sendonly) and its answer: the call stays.
    let hold = sdp(port(&a), "RTP/AVP", &[]).replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
    offer(g, &call, &hold.replace("a=sendrecv", "a=sendonly"), &[]);
    answer(
        g,
        &call,
        &sdp(port(&b), "RTP/AVP", &[]).replace("a=sendrecv", "a=recvonly"),
    );
    // The offerer comes back from hold on another port.
    let to_b2 = offer(g, &call, &sdp(port(&a2), "RTP/AVP", &[]), &[]);
    // (rtp-gateway keeps B's relay port; rtpengine may move it: B follows the
    // re-offer's SDP either way.)
    let _ = &to_b;
    let to_a2 = answer(g, &call, &sdp(port(&b), "RTP/AVP", &[]));
    media(&a2, addr(&to_a2), None, &b, None, 0xA, 5);
    media(&b, addr(&to_b2), None, &a2, None, 0xB, 5);
    ok(&delete(g, &call));
}

/// `rtcp-mux: offer` and `require`: rtcp-mux offered to the callee although
/// the caller did not offer it (with `require`, no separate RTCP port towards
/// the callee); the callee's RTCP on its one port reaches the caller's separate
/// RTCP port (a=rtcp).
fn rtcp_mux_offered(g: SocketAddr) {
    for how in ["offer", "require"] {
        let (a, a_rtcp, b) = (peer(), peer(), peer());
        let call = format!("mux-{how}-{}", port(&a));
        let to_b = offer(
            g,
            &call,
            &sdp(port(&a), "RTP/AVP", &[format!("a=rtcp:{}", port(&a_rtcp))]),
            &[("rtcp-mux", Value::List(vec![Value::str(how)]))],
        );
        let m = &to_b.media[0];
        assert!(m.rtcp_mux(), "{how}: rtcp-mux offered to B");
        if how == "require" {
            assert!(
                m.rtcp_port().is_none_or(|p| p == m.port),
                "require: no separate RTCP port towards B: {m:?}"
            );
        }
        let to_a = answer(
            g,
            &call,
            &sdp(port(&b), "RTP/AVP", &["a=rtcp-mux".to_string()]),
        );
        assert!(!to_a.media[0].rtcp_mux(), "A did not offer rtcp-mux");
        media(&a, addr(&to_a), None, &b, None, 0xA, 5);
        media(&b, addr(&to_b), None, &a, None, 0xB, 5);
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 0xB];
        b.send_to(&rr, addr(&to_b)).unwrap();
        assert_eq!(recv(&a_rtcp), rr.to_vec(), "{how}");
        ok(&delete(g, &call));
    }
}

/// A session refresh (re-offer, same keys) and then new SSRCs both ways: SRTP
/// media keeps flowing.
fn ssrc_change_after_a_reoffer(g: SocketAddr) {
    let (a, b) = (peer(), peer());
    let call = format!("ssrc-{}", port(&a));
    let a_key =
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNk"
            .to_string();
    let key = |line: &str| {
        SrtpContext::new(CryptoAttribute::parse(line).unwrap().to_config().unwrap()).unwrap()
    };
    let a_sdp = sdp(port(&a), "RTP/SAVP", std::slice::from_ref(&a_key));
    for (version, ssrc_a, ssrc_b) in [("1", 0xA, 0xB), ("2", 0xA2, 0xB2)] {
        let to_b = offer(
            g,
            &call,
            &a_sdp.replace("o=- 1 1", &format!("o=- 1 {version}")),
            &[],
        );
        let (tag, mut b_rx) = pick(&to_b.media[0], "AES_CM_128_HMAC_SHA1_80");
        let b_key = format!(
            "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
        );
        let to_a = answer(
            g,
            &call,
            &sdp(port(&b), "RTP/SAVP", std::slice::from_ref(&b_key)),
        );
        let mut a_rx = ctx_of(&to_a.media[0]);
        let (mut a_tx, mut b_tx) = (key(&a_key), key(&b_key));
        media(
            &a,
            addr(&to_a),
            Some(&mut a_tx),
            &b,
            Some(&mut b_rx),
            ssrc_a,
            10,
        );
        media(
            &b,
            addr(&to_b),
            Some(&mut b_tx),
            &a,
            Some(&mut a_rx),
            ssrc_b,
            10,
        );
    }
    ok(&delete(g, &call));
}

/// `ICE: remove` and `replace: origin`; without them the origin stays and the
/// caller's own candidates never reach the callee (the relay removes them, or
/// puts its own in their place).
fn ice_and_origin(g: SocketAddr) {
    let a = peer();
    let ice = [
        format!(
            "a=candidate:1 1 udp 2130706431 192.0.2.9 {} typ host",
            port(&a)
        ),
        "a=ice-ufrag:abcd".to_string(),
        "a=ice-pwd:abcdefghijklmnopqrstuvwx".to_string(),
    ];
    let base = sdp(port(&a), "RTP/AVP", &ice)
        .replace("o=- 1 1 IN IP4 127.0.0.1", "o=- 1 1 IN IP4 192.0.2.9");
    let origin = |s: &Sdp| {
        s.session
            .iter()
            .find(|l| l.starts_with("o="))
            .cloned()
            .unwrap()
    };
    let call = format!("ice-{}", port(&a));
    let to_b = offer(
        g,
        &call,
        &base,
        &[
            ("ICE", Value::str("remove")),
            ("replace", Value::List(vec![Value::str("origin")])),
        ],
    );
    let m = &to_b.media[0];
    for attr in ["candidate", "ice-ufrag", "ice-pwd"] {
        assert!(m.attrs(attr).is_empty(), "{attr} removed: {m:?}");
    }
    assert!(origin(&to_b).ends_with("IN IP4 127.0.0.1"), "{to_b:?}");
    ok(&delete(g, &call));
    let call = format!("ice2-{}", port(&a));
    let to_b = offer(g, &call, &base, &[]);
    assert!(origin(&to_b).ends_with("IN IP4 192.0.2.9"), "{to_b:?}");
    assert!(
        !to_b.media[0]
            .attrs("candidate")
            .iter()
            .any(|c| c.contains("192.0.2.9")),
        "{to_b:?}"
    );
    ok(&delete(g, &call));
}

fn bad_input_gets_error_replies(g: SocketAddr) {
    let err = |r: Value| {
        assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
        assert!(r.get_str("error-reason").is_some(), "{r:?}");
    };
    err(ng(g, &dict(&[("command", "no-such-command")])));
    err(ng(
        g,
        &dict(&[
            ("command", "offer"),
            ("from-tag", "x"),
            ("sdp", &sdp(4000, "RTP/AVP", &[])),
        ]),
    ));
    err(ng(
        g,
        &dict(&[
            ("command", "answer"),
            ("call-id", "never-offered"),
            ("from-tag", "x"),
            ("to-tag", "y"),
            ("sdp", &sdp(4000, "RTP/AVP", &[])),
        ]),
    ));
    // Deleting an unknown call is "ok" with a warning (proxies delete on every
    // final reply).
    let d = delete(g, "never-offered");
    assert_eq!(d.get_str("result"), Some("ok"));
    assert!(d.get_str("warning").is_some(), "{d:?}");
    // Malformed bencode: still an error reply with the cookie.
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.send_to(b"bad1 d7:command", g).unwrap();
    let mut buf = [0u8; 1024];
    let n = s.recv(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"bad1 "));
    err(Value::decode(&buf[5..n]).unwrap());
    // Still serving.
    assert_eq!(
        ng(g, &dict(&[("command", "ping")])).get_str("result"),
        Some("pong")
    );
}

/// The relay's DTLS attributes in an SDP it produced: fingerprint and setup.
fn relay_dtls(s: &Sdp) -> (Fingerprint, String) {
    let fp = s
        .media_or_session_attr(0, "fingerprint")
        .expect("a=fingerprint")
        .parse()
        .expect("fingerprint parses");
    let setup = s.media_or_session_attr(0, "setup").expect("a=setup");
    (fp, setup.to_string())
}

/// SRTP contexts (tx, rx) from a completed handshake.
fn dtls_ctx(hs: &Handshake) -> (SrtpContext, SrtpContext) {
    let (out, inb) = hs.keys.srtp_configs().unwrap();
    (
        SrtpContext::new(out).unwrap(),
        SrtpContext::new(inb).unwrap(),
    )
}

/// A plain caller, a DTLS-SRTP callee (transport-protocol UDP/TLS/RTP/SAVPF): the
/// relay offers actpass, the callee answers active and connects.
fn dtls_towards_the_answerer(g: SocketAddr) {
    let (a, b) = (peer(), peer());
    let call = format!("dtls-b-{}", port(&a));
    let to_b = offer(
        g,
        &call,
        &sdp(port(&a), "RTP/AVP", &[]),
        &[("transport-protocol", Value::str("UDP/TLS/RTP/SAVPF"))],
    );
    assert_eq!(to_b.media[0].proto, "UDP/TLS/RTP/SAVPF");
    // (rtpengine also offers SDES keys on a DTLS offer unless told SDES-off.)
    let (relay_fp, setup) = relay_dtls(&to_b);
    assert_eq!(setup, "actpass");
    let cert = Certificate::generate().unwrap();
    let b_sdp = sdp(
        port(&b),
        "UDP/TLS/RTP/SAVPF",
        &[
            format!("a=fingerprint:{}", cert.fingerprint()),
            "a=setup:active".into(),
            "a=rtcp-mux".into(),
        ],
    );
    let to_a = answer(g, &call, &b_sdp);
    assert_eq!(to_a.media[0].proto, "RTP/AVP");
    assert!(to_a.media[0].attrs("fingerprint").is_empty());
    let ep = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        Arc::new(cert),
        Some(relay_fp),
        Instant::now(),
    );
    let hs = drive_handshake(
        &b,
        ep,
        Some(addr(&to_b)),
        Instant::now() + Duration::from_secs(10),
    )
    .expect("the callee's handshake with the relay completes");
    b.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (mut b_tx, mut b_rx) = dtls_ctx(&hs);
    media(&a, addr(&to_a), None, &b, Some(&mut b_rx), 0xA, 20);
    media(&b, addr(&to_b), Some(&mut b_tx), &a, None, 0xB, 20);
    ok(&delete(g, &call));
}

/// A DTLS-SRTP caller (actpass), a plain (`RTP/AVP`) or SDES (`RTP/SAVP`)
/// callee: the relay answers active and connects to the caller's address from
/// its SDP. `ice_lite`: the caller has ICE credentials but is a lite agent,
/// as the relay (no checks ever come: its SDP address is used all the same).
fn dtls_from_the_offerer(g: SocketAddr, callee: &str, ice_lite: bool) {
    let (a, b) = (peer(), peer());
    let call = format!("dtls-a-{}", port(&a));
    let cert = Certificate::generate().unwrap();
    let mut a_lines = vec![
        format!("a=fingerprint:{}", cert.fingerprint()),
        "a=setup:actpass".into(),
        "a=rtcp-mux".into(),
    ];
    if ice_lite {
        a_lines.push("a=ice-ufrag:Lite".into());
        a_lines.push("a=ice-pwd:LiteLiteLiteLiteLiteLite".into());
    }
    let mut a_sdp = sdp(port(&a), "UDP/TLS/RTP/SAVPF", &a_lines);
    if ice_lite {
        a_sdp = a_sdp.replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n");
    }
    let to_b = offer(
        g,
        &call,
        &a_sdp,
        &[("transport-protocol", Value::str(callee))],
    );
    assert_eq!(to_b.media[0].proto, callee);
    if callee == "RTP/AVP" {
        // (Towards an RTP/SAVP callee rtpengine also offers its fingerprint.)
        assert!(to_b.media_or_session_attr(0, "fingerprint").is_none());
    }
    // An SDES callee picks AES_CM_128_HMAC_SHA1_80 and answers with its own key.
    let mut sdes = None;
    let mut b_lines = Vec::new();
    if callee == "RTP/SAVP" {
        let (tag, b_rx) = pick(&to_b.media[0], "AES_CM_128_HMAC_SHA1_80");
        let b_key = format!(
            "a=crypto:{tag} AES_CM_128_HMAC_SHA1_80 inline:MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkw"
        );
        let b_tx =
            SrtpContext::new(CryptoAttribute::parse(&b_key).unwrap().to_config().unwrap()).unwrap();
        b_lines.push(b_key);
        sdes = Some((b_tx, b_rx));
    }
    let to_a = answer(g, &call, &sdp(port(&b), callee, &b_lines));
    assert_eq!(to_a.media[0].proto, "UDP/TLS/RTP/SAVPF");
    let (relay_fp, setup) = relay_dtls(&to_a);
    assert_eq!(setup, "active", "the relay connects to an actpass offerer");
    let ep = DtlsEndpoint::server(
        Arc::new(DtlsConfig::default()),
        Arc::new(cert),
        Some(relay_fp),
        Instant::now(),
    );
    let hs = drive_handshake(&a, ep, None, Instant::now() + Duration::from_secs(10))
        .expect("the relay's handshake with the caller completes");
    assert_eq!(hs.peer, addr(&to_a));
    a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    // The relay installs its keys when our Finished reaches it.
    std::thread::sleep(Duration::from_millis(200));
    let (mut a_tx, mut a_rx) = dtls_ctx(&hs);
    let (mut b_tx, mut b_rx) = match sdes {
        Some((t, r)) => (Some(t), Some(r)),
        None => (None, None),
    };
    media(&a, addr(&to_a), Some(&mut a_tx), &b, b_rx.as_mut(), 0xA, 20);
    media(&b, addr(&to_b), b_tx.as_mut(), &a, Some(&mut a_rx), 0xB, 20);
    ok(&delete(g, &call));
}

fn all_scenarios(g: SocketAddr) {
    assert_eq!(
        ng(g, &dict(&[("command", "ping")])).get_str("result"),
        Some("pong")
    );
    plain_call(g);
    rtp_to_srtp(g);
    srtp_both(g);
    rtcp_demux(g);
    rtcp_mux_offered(g);
    reoffer_moves_the_offerer(g);
    ssrc_change_after_a_reoffer(g);
    ice_and_origin(g);
    dtls_towards_the_answerer(g);
    dtls_from_the_offerer(g, "RTP/AVP", false);
    dtls_from_the_offerer(g, "RTP/SAVP", false);
    bad_input_gets_error_replies(g);
    let st = ng(g, &dict(&[("command", "statistics")]));
    let cur = ok(&st)
        .get("statistics")
        .and_then(|s| s.get("currentstatistics"))
        .expect("statistics shape");
    assert_eq!(
        cur.get("sessionsown").and_then(Value::as_int),
        Some(0),
        "every call deleted"
    );
}

// ------------------------------------------------------------------ tests

#[test]
fn rtp_gateway_passes_every_scenario() {
    let gw = ours(100);
    all_scenarios(gw.ng_addr());
    // Nothing leaked: no calls, no ports.
    let s = gw.ng().engine().stats().unwrap();
    assert_eq!((s.calls, s.ports_in_use), (0, 0));
    gw.shutdown();
}

/// An ICE-lite DTLS-SRTP caller (rtpengine, a full agent, would check it
/// first): the relay's ClientHello goes to its SDP address.
#[test]
fn an_ice_lite_dtls_caller_is_connected_at_its_sdp_address() {
    let gw = ours(4);
    dtls_from_the_offerer(gw.ng_addr(), "RTP/AVP", true);
    gw.shutdown();
}

#[test]
fn real_rtpengine_passes_the_same_scenarios() {
    let Some(r) = rtpengine() else { return };
    all_scenarios(r.ng());
}

// ------------------------------------------------------------------ ICE added later
//
// Ours only (rtpengine, a full ICE agent, would run its own checks towards
// the peers, which these scenarios do not answer).

/// An ng command from `from` (its tag) and its reply, which must be ok.
fn signal(g: SocketAddr, cmd: &str, call: &str, tags: (&str, &str), sdp_text: &str) -> Value {
    let mut d = dict(&[
        ("command", cmd),
        ("call-id", call),
        ("from-tag", tags.0),
        ("sdp", sdp_text),
    ]);
    if cmd == "answer" {
        d.set("to-tag", Value::str(tags.1));
    }
    ok(&ng(g, &d)).clone()
}

fn sdp_in(r: &Value) -> Sdp {
    Sdp::parse(r.get_str("sdp").expect("sdp in the reply")).unwrap()
}

/// The `warning` of a reply ("" when none).
fn warning(r: &Value) -> String {
    r.get_str("warning").unwrap_or_default().to_string()
}

/// A peer's ICE attributes (a full agent: no `a=ice-lite`) and host candidate.
fn ice_lines(ufrag: &str, pwd: &str, at: &UdpSocket) -> Vec<String> {
    vec![
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{pwd}"),
        format!(
            "a=candidate:1 1 udp 2130706431 127.0.0.1 {} typ host",
            port(at)
        ),
    ]
}

/// The relay's ICE-lite credentials in an SDP it sent, checked to come with
/// `a=ice-lite` and a host candidate on the section's own port.
fn relay_ice(s: &Sdp) -> (String, String) {
    assert!(s.is_ice_lite(), "{}", s.render());
    let (u, p) = s.ice_ufrag_pwd(0);
    let ours = rtp_tools::gateway::sdp::host_candidate(1, addr(s));
    assert!(
        s.media[0].attrs("candidate").contains(&ours.as_str()),
        "{}",
        s.render()
    );
    (
        u.expect("a=ice-ufrag").to_string(),
        p.expect("a=ice-pwd").to_string(),
    )
}

/// A nominating connectivity check from `s` to the relay at `to`, as a
/// controlling full agent sends it with the relay's credentials and the
/// peer's ufrag: the answer must be a success signed with the relay's
/// password, naming `s` in XOR-MAPPED-ADDRESS, from `to`.
fn nominate(s: &UdpSocket, to: SocketAddr, relay: &(String, String), peer_ufrag: &str) {
    use rtp_core::stun::{BindingRequest, Class, IceRole, StunMessage};
    let user = format!("{}:{peer_ufrag}", relay.0);
    let tid = [0x5a; 12];
    let mut b = [0u8; 200];
    let n = BindingRequest {
        username: Some(&user),
        priority: Some(0x6e00_01ff),
        use_candidate: true,
        role: Some(IceRole::Controlling(0x0102_0304_0506_0708)),
    }
    .emit(&mut b, &tid, Some(relay.1.as_bytes()))
    .unwrap();
    s.send_to(&b[..n], to).unwrap();
    let mut buf = [0u8; 2048];
    let (len, from) = s.recv_from(&mut buf).expect("an answer to the check");
    assert_eq!(from, to, "answered from the port the check went to");
    let m = StunMessage::new_checked(&buf[..len]).expect("the answer is STUN");
    assert_eq!((m.class(), m.transaction_id()), (Class::Success, tid));
    m.check_fingerprint().unwrap();
    m.check_integrity(relay.1.as_bytes())
        .expect("signed with the relay's password");
    assert_eq!(m.xor_mapped_address(), Ok(Some(s.local_addr().unwrap())));
}

/// The engine call of a gateway that has one, and the remote of its leg `side`.
fn only_leg_remote(gw: &Gateway, side: usize) -> Option<SocketAddr> {
    let e = gw.ng().engine();
    let calls = e.calls().unwrap();
    assert_eq!(calls.len(), 1);
    e.query(calls[0]).unwrap().legs[side].remote
}

/// Waits until leg `side`'s remote is `want` (a nomination is installed
/// after its answer left).
fn wait_leg_remote(gw: &Gateway, side: usize, want: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while only_leg_remote(gw, side) != Some(want) {
        assert!(
            Instant::now() < deadline,
            "leg {side} never moved to {want}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A SIP call upgraded to WebRTC mid-call: offer and answer without ICE,
/// media flowing; the caller's re-offer now has ICE (from a new address).
/// The SDP sent on to the callee carries the relay's ICE-lite attributes
/// and candidates for the stream, and no warning that ICE cannot be added;
/// media goes on with the old addresses until the peers nominate; the
/// callee's check with the credentials from that reply, and the caller's
/// with those from the answer's reply, are answered and nominate, and the
/// media follows the nominations.
#[test]
fn ice_added_to_a_stream_in_a_re_offer() {
    let gw = ours(4);
    let g = gw.ng_addr();
    let (a, b, a_web) = (peer(), peer(), peer());
    let call = "ice-late";
    let tags = ("caller", "callee");
    let r = signal(g, "offer", call, tags, &sdp(port(&a), "RTP/AVP", &[]));
    let to_b = sdp_in(&r);
    assert!(!to_b.has_ice());
    let r = signal(g, "answer", call, tags, &sdp(port(&b), "RTP/AVP", &[]));
    let to_a = sdp_in(&r);
    media(&a, addr(&to_a), None, &b, None, 0xA, 5);
    media(&b, addr(&to_b), None, &a, None, 0xB, 5);

    // The re-offer brings ICE: towards the callee too (ICE=default).
    let a_ice = ice_lines("Aweb", "AwebAwebAwebAwebAwebAweb", &a_web);
    let r = signal(
        g,
        "offer",
        call,
        tags,
        &sdp(port(&a_web), "RTP/AVP", &a_ice),
    );
    assert!(!warning(&r).contains("ICE cannot be added"), "{r:?}");
    assert_eq!(warning(&r), "", "{r:?}");
    let to_b = sdp_in(&r);
    assert_eq!(to_b.media[0].port, addr(&to_b).port());
    assert!(
        !to_b.render().contains("Aweb"),
        "the caller's own ICE is not passed on"
    );
    let ice_b = relay_ice(&to_b);
    // Until a nomination, media still goes to and comes from the old peers.
    media(&b, addr(&to_b), None, &a, None, 0xB, 5);
    media(&a, addr(&to_a), None, &b, None, 0xA, 5);

    // The callee checks with the credentials it just got (its own ufrag is
    // not known before its answer: any is taken).
    nominate(&b, addr(&to_b), &ice_b, "Bufr");
    wait_leg_remote(&gw, 1, b.local_addr().unwrap());
    let b_ice = ice_lines("Bufr", "BufrBufrBufrBufrBufrBufr", &b);
    let r = signal(g, "answer", call, tags, &sdp(port(&b), "RTP/AVP", &b_ice));
    assert_eq!(warning(&r), "", "{r:?}");
    let to_a = sdp_in(&r);
    let ice_a = relay_ice(&to_a);
    assert_ne!(ice_a, ice_b, "each leg has its own credentials");
    assert_eq!(only_leg_remote(&gw, 0), Some(a.local_addr().unwrap()));
    // The caller, now at its WebRTC address, nominates: the media follows.
    nominate(&a_web, addr(&to_a), &ice_a, "Aweb");
    wait_leg_remote(&gw, 0, a_web.local_addr().unwrap());
    media(&b, addr(&to_b), None, &a_web, None, 0xB, 5);
    media(&a_web, addr(&to_a), None, &b, None, 0xA, 5);
    // The old address no longer sends into the leg.
    a.send_to(&rtp(0xA, 99), addr(&to_a)).unwrap();
    media(&a_web, addr(&to_a), None, &b, None, 0xA, 1);
    ok(&delete(g, call));
    gw.shutdown();
}

/// A full ICE caller answered by a callee that does not do ICE with the
/// relay (no ICE in its answer, or a lite agent): the callee's leg falls
/// back to its SDP address and learns. When the callee's re-offer brings
/// full ICE, its leg takes nominations only again: a stranger's RTP (which
/// a learning leg that has received nothing yet would take) does not
/// redirect the media; the callee's check with the relay's credentials
/// does.
#[test]
fn a_side_that_fell_back_goes_back_to_ice_with_full_ice() {
    for lite in [false, true] {
        let gw = ours(4);
        let g = gw.ng_addr();
        let (a, b, b_web, stranger) = (peer(), peer(), peer(), peer());
        let call = format!("ice-back-{lite}");
        let a_ice = ice_lines("Aufr", "AufrAufrAufrAufrAufrAufr", &a);
        let a_sdp = sdp(port(&a), "RTP/AVP", &a_ice);
        let r = signal(g, "offer", &call, ("caller", "callee"), &a_sdp);
        let to_b = sdp_in(&r);
        relay_ice(&to_b);
        let b_sdp = if lite {
            sdp(
                port(&b),
                "RTP/AVP",
                &ice_lines("Bufr", "BufrBufrBufrBufrBufrBufr", &b),
            )
            .replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n")
        } else {
            sdp(port(&b), "RTP/AVP", &[])
        };
        let r = signal(g, "answer", &call, ("caller", "callee"), &b_sdp);
        let w = warning(&r);
        assert!(
            w.contains(if lite { "ICE-lite" } else { "no a=ice-ufrag" }),
            "{w}"
        );
        let to_a = sdp_in(&r);
        nominate(&a, addr(&to_a), &relay_ice(&to_a), "Aufr");
        wait_leg_remote(&gw, 0, a.local_addr().unwrap());
        // The fallback: the callee's SDP address.
        assert_eq!(only_leg_remote(&gw, 1), Some(b.local_addr().unwrap()));
        media(&a, addr(&to_a), None, &b, None, 0xA, 3);

        // The callee's re-offer with full ICE (its side offers now).
        let b_ice = ice_lines("Bufr", "BufrBufrBufrBufrBufrBufr", &b_web);
        let r = signal(
            g,
            "offer",
            &call,
            ("callee", "caller"),
            &sdp(port(&b_web), "RTP/AVP", &b_ice),
        );
        assert_eq!(warning(&r), "", "{r:?}");
        let to_a = sdp_in(&r);
        relay_ice(&to_a);
        // A stranger's RTP into the callee's leg: dropped, not learned.
        stranger.send_to(&rtp(0xE, 1), addr(&to_b)).unwrap();
        media(&a, addr(&to_a), None, &b, None, 0xA, 3);
        assert_eq!(only_leg_remote(&gw, 1), Some(b.local_addr().unwrap()));
        let r = signal(g, "answer", &call, ("callee", "caller"), &a_sdp);
        assert_eq!(warning(&r), "", "{r:?}");
        let to_b = sdp_in(&r);
        // The callee's check from its new address moves the media there.
        nominate(&b_web, addr(&to_b), &relay_ice(&to_b), "Bufr");
        wait_leg_remote(&gw, 1, b_web.local_addr().unwrap());
        media(&a, addr(&to_a), None, &b_web, None, 0xA, 3);
        media(&b_web, addr(&to_b), None, &a, None, 0xB, 3);
        ok(&delete(g, &call));
        gw.shutdown();
    }
}

/// A raw ng exchange over UDP with a given cookie: the reply's bytes.
fn ng_raw(g: SocketAddr, cookie: &str, req: &Value) -> Vec<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut msg = format!("{cookie} ").into_bytes();
    req.encode_into(&mut msg);
    s.send_to(&msg, g).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).expect("ng reply");
    buf.truncate(n);
    buf
}

fn stat(g: SocketAddr, key: &str) -> i64 {
    let st = ng(g, &dict(&[("command", "statistics")]));
    let s = ok(&st).get("statistics").unwrap();
    if key == "sessionsown" {
        return s
            .get("currentstatistics")
            .and_then(|c| c.get(key))
            .and_then(Value::as_int)
            .unwrap();
    }
    s.get("totalstatistics")
        .and_then(|c| c.get(key))
        .and_then(Value::as_int)
        .unwrap()
}

/// An SDP with `n` audio sections (ports `base`, `base + 2`, ...); section
/// `savp_at` (if any) is RTP/SAVP without a key.
fn multi_sdp(n: usize, base: u16, savp_at: Option<usize>) -> String {
    let mut s =
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n".to_string();
    for i in 0..n {
        let proto = if savp_at == Some(i) {
            "RTP/SAVP"
        } else {
            "RTP/AVP"
        };
        s.push_str(&format!(
            "m=audio {} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
            base + 2 * i as u16
        ));
    }
    s
}

fn offer_req(call: &str, sdp_text: &str) -> Value {
    dict(&[
        ("command", "offer"),
        ("call-id", call),
        ("from-tag", "f"),
        ("sdp", sdp_text),
    ])
}

#[test]
fn limits_retransmissions_and_bad_sdp() {
    let gw = ours(3);
    let g = gw.ng_addr();
    let engine_calls = || gw.ng().engine().stats().unwrap().calls;
    // Absurd or missing media.
    for bad in [
        "v=0\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n".to_string(),
        "v=0\r\nm=audio 99999 RTP/AVP 0\r\n".to_string(),
        "not sdp at all".to_string(),
        sdp(4000, "RTP/SAVP", &[]), // secure without a key
        // The second section is secure without a key: the first one's engine
        // call is rolled back.
        multi_sdp(2, 4000, Some(1)),
        // Past the cap on media sections.
        multi_sdp(17, 4000, None),
    ] {
        let r = ng(g, &offer_req("bad", &bad));
        assert_eq!(r.get_str("result"), Some("error"), "{bad:?}: {r:?}");
        // A failed offer leaves nothing behind: no ng call, no engine call.
        assert_eq!((gw.ng().call_count(), engine_calls()), (0, 0), "{bad:?}");
    }
    let r = ng(g, &offer_req("bad", &multi_sdp(17, 4000, None)));
    assert!(
        r.get_str("error-reason")
            .unwrap()
            .contains("Too many media"),
        "{r:?}"
    );
    // Four sections, three engine calls allowed: the fourth fails and the three
    // created are rolled back.
    let r = ng(g, &offer_req("four", &multi_sdp(4, 4000, None)));
    assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
    assert_eq!((gw.ng().call_count(), engine_calls()), (0, 0));
    // A flood of offers past max_calls: errors, not a crash, and the refused
    // offers leave no call.
    let mut refused = 0;
    for i in 0..10 {
        let r = ng(
            g,
            &offer_req(&format!("flood{i}"), &sdp(4000 + i, "RTP/AVP", &[])),
        );
        if r.get_str("result") == Some("error") {
            refused += 1;
        }
    }
    assert_eq!(refused, 7);
    assert_eq!((gw.ng().call_count(), engine_calls()), (3, 3));
    let list = ng(g, &dict(&[("command", "list")]));
    assert_eq!(
        ok(&list).get("calls").unwrap().str_list(),
        ["flood0", "flood1", "flood2"]
    );
    // A failed re-offer (a new section with no key) leaves the call as it was:
    // one stream, its port, and its engine call.
    // So does one whose new section finds no engine call left (max_calls).
    let before = ng(g, &dict(&[("command", "query"), ("call-id", "flood0")]));
    for two in [multi_sdp(2, 4000, Some(1)), multi_sdp(2, 4000, None)] {
        let r = ng(g, &offer_req("flood0", &two));
        assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
        let after = ng(g, &dict(&[("command", "query"), ("call-id", "flood0")]));
        assert_eq!(
            ok(&before).get("tags"),
            ok(&after).get("tags"),
            "the call is unchanged"
        );
        assert_eq!(engine_calls(), 3);
    }
    for i in 0..3 {
        ok(&ng(
            g,
            &dict(&[("command", "delete"), ("call-id", &format!("flood{i}"))]),
        ));
    }
    let s = gw.ng().engine().stats().unwrap();
    assert_eq!((s.calls, s.ports_in_use, gw.ng().call_count()), (0, 0, 0));
    // The engine's CallClosed events reach the gateway, which forgets the engine
    // calls' owners.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.ng().engine_call_count() != 0 {
        assert!(Instant::now() < deadline, "engine calls still owned");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A retransmitted offer (same cookie, same bytes) is answered from the
    // cache: the same reply (same ports), one offer processed, one call.
    let offers = stat(g, "offers");
    let req = offer_req("retrans", &sdp(4100, "RTP/AVP", &[]));
    let first = ng_raw(g, "same-cookie", &req);
    let again = ng_raw(g, "same-cookie", &req);
    assert_eq!(first, again);
    assert_eq!(stat(g, "offers"), offers + 1);
    assert_eq!((gw.ng().call_count(), engine_calls()), (1, 1));
    ok(&delete(g, "retrans"));
    // The same cookie on several threads at once (UDP and TCP connections):
    // processed once, the same reply to each.
    let offers = stat(g, "offers");
    let mut msg = b"par-cookie ".to_vec();
    offer_req("par", &sdp(4102, "RTP/AVP", &[])).encode_into(&mut msg);
    let replies: Vec<Vec<u8>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| sc.spawn(|| gw.ng().handle(&msg).expect("a reply")))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(replies.iter().all(|r| *r == replies[0]));
    assert_eq!(stat(g, "offers"), offers + 1);
    ok(&delete(g, "par"));
    // Metrics are served over HTTP.
    let text = rtp_tools::gateway::metrics(gw.ng());
    assert!(text.contains("rtp_gateway_calls 0"), "{text}");
    assert!(text.contains("rtp_gateway_dropped_packets_total{worker=\"0\",reason=\"auth\"}"));
    assert!(text.contains("rtp_gateway_events_deferred_total{worker=\"0\"} "));
    assert!(text.contains("rtp_gateway_submit_failures_total{worker=\"0\"} 0"));
    assert!(text.contains("rtp_gateway_gso_fallbacks_total{worker=\"0\"} 0"));
    assert!(text.contains("rtp_gateway_commands_held_total "));
    assert!(text.contains("rtp_gateway_ice_stun_total{outcome=\"refused_nominations\"} 0"));
    assert!(text.contains("rtp_gateway_early_held_total{worker=\"0\"} 0"));
    assert!(text.contains("rtp_gateway_pool_bad_frees_total{worker=\"0\"} 0"));
    gw.shutdown();
}

/// What the gateway cannot do is said: ICE=force-relay (an ICE-lite relay is
/// the only candidate) is an error; ICE attributes it cannot use (candidates
/// without credentials) removed with a warning, an unknown interface in
/// `direction` and an unsupported `replace` flag are warnings in the reply (as
/// rtpengine logs them); no call is left by the refused offer.
#[test]
fn ng_options_the_gateway_cannot_honour_are_said() {
    let gw = ours(10);
    let g = gw.ng_addr();
    let with_ice = sdp(
        4000,
        "RTP/AVP",
        &["a=candidate:1 1 udp 2130706431 192.0.2.9 4000 typ host".to_string()],
    );
    let mut req = offer_req("ice-force", &with_ice);
    req.set("ICE", Value::str("force-relay"));
    let r = ng(g, &req);
    assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
    assert!(r.get_str("error-reason").unwrap().contains("ICE"), "{r:?}");
    assert_eq!(gw.ng().call_count(), 0);
    let r = ng(g, &offer_req("ice-default", &with_ice));
    assert!(
        ok(&r)
            .get_str("warning")
            .unwrap()
            .contains("ICE attributes removed"),
        "{r:?}"
    );
    let mut req = offer_req("dir", &sdp(4002, "RTP/AVP", &[]));
    req.set(
        "direction",
        Value::List(vec![Value::str("internal"), Value::str("external")]),
    );
    req.set("replace", Value::List(vec![Value::str("username")]));
    let r = ng(g, &req);
    let w = ok(&r).get_str("warning").unwrap();
    assert!(w.contains("'internal' not found"), "{w}");
    assert!(w.contains("'username'"), "{w}");
    let mut req = offer_req("dir2", &sdp(4004, "RTP/AVP", &[]));
    req.set(
        "direction",
        Value::List(vec![Value::str("default"), Value::str("default")]),
    );
    req.set("ICE", Value::str("remove"));
    let r = ng(g, &req);
    assert!(ok(&r).get("warning").is_none(), "{r:?}");
    for c in ["ice-default", "dir", "dir2"] {
        ok(&delete(g, c));
    }
    gw.shutdown();
}

/// Each media section keeps its slot when another one's stream closes: a
/// re-offer after media 1 closed updates media 2's engine call (same port) and
/// gives media 1 a new one.
#[test]
fn media_sections_keep_their_index_after_a_stream_closes() {
    let gw = ours(10);
    let g = gw.ng_addr();
    let (a1, a2, b1, b2) = (peer(), peer(), peer(), peer());
    let two = |p1: u16, p2: u16| {
        multi_sdp(2, 0, None)
            .replacen("m=audio 0 ", &format!("m=audio {p1} "), 1)
            .replacen("m=audio 2 ", &format!("m=audio {p2} "), 1)
    };
    let to_b = offer(g, "slots", &two(port(&a1), port(&a2)), &[]);
    let call_ids = gw.ng().engine().calls().unwrap();
    assert_eq!(call_ids.len(), 2);
    let to_a = answer(g, "slots", &two(port(&b1), port(&b2)));
    // The engine closes media 1's call (as a media timeout does).
    let first = *call_ids.iter().min().unwrap();
    gw.ng().engine().delete_call(first).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while gw.ng().engine_call_count() != 1 {
        assert!(Instant::now() < deadline, "the close was not seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    let to_b2 = offer(g, "slots", &two(port(&a1), port(&a2)), &[]);
    assert_eq!(
        to_b2.media[1].port, to_b.media[1].port,
        "media 2 keeps its relay port"
    );
    assert_ne!(to_b2.media[0].port, 0, "media 1 gets a new stream");
    let to_a2 = answer(g, "slots", &two(port(&b1), port(&b2)));
    assert_eq!(to_a2.media[1].port, to_a.media[1].port);
    // Media 2 still flows both ways, to and from the right peers.
    let at = |s: &Sdp, i: usize| SocketAddr::new(s.media_ip(i).unwrap(), s.media[i].port);
    media(&a2, at(&to_a2, 1), None, &b2, None, 0xA2, 5);
    media(&b2, at(&to_b2, 1), None, &a2, None, 0xB2, 5);
    media(&a1, at(&to_a2, 0), None, &b1, None, 0xA1, 5);
    ok(&delete(g, "slots"));
    assert_eq!(gw.ng().engine().stats().unwrap().calls, 0);
    gw.shutdown();
}

#[test]
fn the_example_config_parses_and_bad_configs_are_refused() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/rtp-gateway.example.toml"
    ))
    .unwrap();
    let c = GatewayConfig::from_toml(&text).unwrap();
    assert_eq!((c.port_min, c.port_max, c.workers), (30000, 39999, 1));
    let e = GatewayConfig::from_toml("prot_min = 5").unwrap_err();
    assert!(e.contains("prot_min"), "{e}");
    let bad = GatewayConfig {
        port_min: 500,
        port_max: 100,
        ..GatewayConfig::default()
    };
    let e = Gateway::start(&bad).unwrap_err();
    assert!(e.contains("port"), "{e}");
    assert_eq!(c.dtls_mtu, 1200);
    let only_cert = GatewayConfig::from_toml("dtls_cert = \"/nonexistent.crt\"").unwrap();
    let e = Gateway::start(&only_cert).unwrap_err();
    assert!(e.contains("dtls_cert and dtls_key"), "{e}");
    let missing = GatewayConfig::from_toml(
        "dtls_cert = \"/nonexistent.crt\"\ndtls_key = \"/nonexistent.key\"",
    )
    .unwrap();
    let e = Gateway::start(&missing).unwrap_err();
    assert!(e.contains("/nonexistent.crt"), "{e}");
    let nice = GatewayConfig {
        control_nice: Some(40),
        ..GatewayConfig::default()
    };
    let e = Gateway::start(&nice).unwrap_err();
    assert!(e.contains("control_nice"), "{e}");
}

#[test]
fn the_daemon_serves_ng_and_metrics_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let (lo, hi) = free_range(50);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtp-gateway"))
        .args([
            "--listen-ng",
            "127.0.0.1:0",
            "--listen-tcp-ng",
            "127.0.0.1:0",
            "--listen-metrics",
            "127.0.0.1:0",
            "--backend",
            "mmsg",
        ])
        .arg(format!("--port-min={lo}"))
        .arg(format!("--port-max={hi}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut ng_addr, mut metrics, mut tcp) = (None, None, None);
    while ng_addr.is_none() || metrics.is_none() || tcp.is_none() {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the daemon exited early"
        );
        if let Some(a) = line.trim().strip_prefix("NG_ADDR=") {
            ng_addr = Some(a.parse::<SocketAddr>().unwrap());
        }
        if let Some(a) = line.trim().strip_prefix("METRICS_ADDR=") {
            metrics = Some(a.parse::<SocketAddr>().unwrap());
        }
        if let Some(a) = line.trim().strip_prefix("TCP_NG_ADDR=") {
            tcp = Some(a.parse::<SocketAddr>().unwrap());
        }
    }
    // The log (on stdout) from here on, read to the end when the daemon exits.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = out.read_to_string(&mut rest);
        rest
    });
    // An ng TCP connection stays open through SIGTERM, as a proxy's does.
    let mut conn = std::net::TcpStream::connect(tcp.unwrap()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    conn.write_all(b"k1 d7:command4:pinge").unwrap();
    let mut pong = [0u8; 19];
    conn.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"k1 d6:result4:ponge");
    let g = ng_addr.unwrap();
    assert_eq!(
        ng(g, &dict(&[("command", "ping")])).get_str("result"),
        Some("pong")
    );
    plain_call(g);
    let mut s = std::net::TcpStream::connect(metrics.unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("rtp_gateway_rx_packets_total{worker=\"0\"} 30"),
        "{body}"
    );
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("no exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The engine was shut down on the way out (calls closed, workers
    // drained), not dropped on a connection's thread.
    let log = log.join().unwrap();
    assert!(log.contains("engine stopped"), "{log}");
    // Engine events are logged with the ng call-id of their call.
    assert!(
        log.lines()
            .any(|l| l.contains("media call closed") && l.contains("plain-")),
        "{log}"
    );
    // The connection was closed by the daemon.
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).ok(), Some(0));
}

/// rtp-load sets its streams up over ng: through this gateway and through
/// rtpengine, SRTP end to end, no loss at a modest rate.
#[test]
fn rtp_load_over_ng_through_both_relays() {
    use rtp_core::srtp::SrtpProfile;
    use rtp_tools::load::{run, LoadConfig, StreamClass, Target};
    let cfg = |target| LoadConfig {
        classes: vec![StreamClass {
            name: "audio".into(),
            streams: 20,
            ptime: Duration::from_millis(20),
            payload: 160,
            pt: 0,
            clock_rate: 8000,
            talk_spurt: None,
        }],
        duration: Duration::from_secs(1),
        srtp: Some(SrtpProfile::AesCm128HmacSha1_80),
        ssrc_base: 0x7000,
        seq_start: 1,
        target,
        progress: false,
        drain: Duration::from_millis(500),
        busy_poll: false,
        load_core: None,
        plain_sender: false,
    };
    let gw = ours(100);
    let mut relays = vec![("rtp-gateway", gw.ng_addr())];
    let rtpe = rtpengine();
    if let Some(r) = &rtpe {
        relays.push(("rtpengine", r.ng()));
    }
    for (name, addr) in relays {
        let r = run(cfg(Target::Ng(addr))).unwrap_or_else(|e| panic!("{name}: {e}"));
        let sent = r.sent();
        let lost = r.lost();
        assert_eq!(sent, 1000, "{name}");
        assert_eq!(lost, 0, "{name}");
        assert_eq!(r.rx_rejected, 0, "{name}: every packet authenticated");
    }
    // The calls were deleted afterwards.
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(gw.ng().call_count(), 0);
    gw.shutdown();
}

#[test]
fn ng_over_tcp_answers_back_to_back_messages() {
    use std::io::{Read, Write};
    let (lo, hi) = free_range(20);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        listen_tcp_ng: Some("127.0.0.1:0".parse().unwrap()),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        ..GatewayConfig::default()
    })
    .unwrap();
    let mut s = std::net::TcpStream::connect(gw.tcp_addr().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // Two messages in one write, the second split across writes.
    s.write_all(b"t1 d7:command4:pingee2 d7:comm").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"and4:liste").unwrap();
    let want_a = b"t1 d6:result4:ponge".to_vec();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + Duration::from_secs(3);
    while got.len() < want_a.len() + 20 && Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    assert!(
        got.starts_with(&want_a),
        "{}",
        String::from_utf8_lossy(&got)
    );
    let rest = &got[want_a.len()..];
    assert!(
        rest.starts_with(b"e2 "),
        "{}",
        String::from_utf8_lossy(rest)
    );
    let list = Value::decode(&rest[3..]).unwrap();
    assert_eq!(list.get_str("result"), Some("ok"));
    drop(s);
    gw.shutdown();
}

/// ng over TCP: a message split into single bytes is framed; bytes that can
/// never be a message get an error reply with the cookie and the connection is
/// closed (no wait for more); other connections are not disturbed.
#[test]
fn ng_over_tcp_refuses_what_is_not_a_message() {
    use std::io::{Read, Write};
    let (lo, hi) = free_range(20);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        listen_tcp_ng: Some("127.0.0.1:0".parse().unwrap()),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        ..GatewayConfig::default()
    })
    .unwrap();
    let connect = || {
        let s = std::net::TcpStream::connect(gw.tcp_addr().unwrap()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s
    };
    let mut good = connect();
    for b in b"p1 d7:command4:pinge" {
        good.write_all(&[*b]).unwrap();
    }
    let mut pong = [0u8; 19];
    good.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"p1 d6:result4:ponge");
    for bad in [
        &b"b1 d7:command4:pingx"[..],
        b"b2 d7:commandi12x",
        b"b3 e",
        b"b4 d99999999999:",
    ] {
        let mut s = connect();
        s.write_all(bad).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("the connection is closed");
        let cookie = &bad[..3];
        assert!(got.starts_with(cookie), "{}", String::from_utf8_lossy(&got));
        let r = Value::decode(&got[3..]).unwrap();
        assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
    }
    // No cookie at all: closed without a reply.
    let mut s = connect();
    s.write_all(&[b'x'; 300]).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("the connection is closed");
    assert!(got.is_empty());
    // The first connection still works.
    good.write_all(b"p2 d7:command4:pinge").unwrap();
    good.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"p2 d6:result4:ponge");
    drop(good);
    gw.shutdown();
}

#[test]
fn the_gateway_uses_the_configured_dtls_certificate() {
    use rtp_tools::interop::{have_openssl, openssl_cert, openssl_fingerprint, require};
    if !require(have_openssl(), "openssl") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("gw-dtls-cert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = openssl_cert(&dir, "gw", false).unwrap();
    let (lo, hi) = free_range(20);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        dtls_cert: Some(cert.clone()),
        dtls_key: Some(key),
        control_nice: Some(5),
        control_sched_idle: true,
        ..GatewayConfig::default()
    })
    .unwrap();
    // Lowering the control thread's priority is always allowed: nothing refused.
    assert_eq!(gw.ng().engine().control_notes(), &[] as &[String]);
    assert_eq!(
        gw.ng().engine().fingerprint().to_string(),
        openssl_fingerprint(&cert).unwrap()
    );
    gw.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}

/// (name, nice, scheduling policy) of this process's threads.
fn threads() -> Vec<(String, i64, i64)> {
    let mut v = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        // Fields after the name start at field 3 (state); nice is field 19 and
        // the policy field 41.
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse().ok()).unwrap_or(-1);
        v.push((name, num(16), num(38)));
    }
    v
}

#[test]
fn the_gateways_control_plane_threads_follow_the_control_placement() {
    const SCHED_IDLE: i64 = 5;
    let (lo, hi) = free_range(20);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        listen_metrics: Some("127.0.0.1:0".parse().unwrap()),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        control_nice: Some(7),
        control_sched_idle: true,
        ..GatewayConfig::default()
    })
    .unwrap();
    // The engine's control thread and the gateway's listeners and event consumer
    // (each applies the placement as it starts): nice 7, SCHED_IDLE; the workers
    // keep the default.
    let want = [
        "rtp-control",
        "rtp-gateway-ng-",
        "rtp-gateway-met",
        "rtp-gateway-eve",
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = threads();
        let placed = want.iter().all(|w| {
            t.iter()
                .any(|(n, nice, pol)| n.starts_with(w) && *nice == 7 && *pol == SCHED_IDLE)
        });
        let workers_default = t
            .iter()
            .filter(|(n, ..)| n.starts_with("rtp-worker"))
            .all(|(_, nice, pol)| *nice == 0 && *pol == 0);
        assert!(
            workers_default,
            "a worker took the control placement: {t:?}"
        );
        if placed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "control-plane threads not placed: {t:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.shutdown();
}
