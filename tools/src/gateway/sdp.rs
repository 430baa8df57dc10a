//! Just enough SDP (RFC 4566) for a media relay: session and media sections kept
//! as lines, with typed access to what a relay rewrites (connection address,
//! media port and protocol, `a=rtcp`, `a=rtcp-mux`, `a=crypto`, direction, ICE).

use std::net::{IpAddr, SocketAddr};

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, ...
    pub kind: String,
    /// Port.
    pub port: u16,
    /// Transport protocol (`RTP/AVP`, `RTP/SAVP`, `RTP/AVPF`, `RTP/SAVPF`, ...).
    pub proto: String,
    /// Formats (payload types).
    pub fmts: Vec<String>,
    /// The other lines of the section (`c=`, `a=`, ...), without line ends.
    pub lines: Vec<String>,
}

/// A session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    /// Lines before the first `m=`.
    pub session: Vec<String>,
    /// Media sections.
    pub media: Vec<Media>,
}

/// Media direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// a=sendrecv (the default).
    SendRecv,
    /// a=sendonly.
    SendOnly,
    /// a=recvonly.
    RecvOnly,
    /// a=inactive.
    Inactive,
}

const DIRECTIONS: [&str; 4] = ["sendrecv", "sendonly", "recvonly", "inactive"];
const ICE_ATTRS: [&str; 8] = [
    "candidate",
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "end-of-candidates",
    "remote-candidates",
];

/// Whether a media protocol is DTLS-SRTP (`UDP/TLS/RTP/SAVP(F)`).
pub fn is_dtls_proto(proto: &str) -> bool {
    proto.starts_with("UDP/TLS/RTP/SAVP")
}

fn attr_name(line: &str) -> Option<(&str, Option<&str>)> {
    let a = line.strip_prefix("a=")?;
    Some(match a.split_once(':') {
        Some((n, v)) => (n, Some(v)),
        None => (a, None),
    })
}

fn connection_ip(line: &str) -> Option<IpAddr> {
    // c=IN IP4 192.0.2.1 (a multicast TTL suffix is ignored)
    let rest = line.strip_prefix("c=")?;
    let mut f = rest.split_whitespace();
    let (_, _, addr) = (f.next()?, f.next()?, f.next()?);
    addr.split('/').next()?.parse().ok()
}

fn c_line(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("c=IN IP4 {a}"),
        IpAddr::V6(a) => format!("c=IN IP6 {a}"),
    }
}

impl Sdp {
    /// Parses an SDP body (CRLF or LF line ends). Errors say what is missing.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut session = Vec::new();
        let mut media: Vec<Media> = Vec::new();
        for raw in text.split('\n') {
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            if line.len() < 2 || line.as_bytes()[1] != b'=' {
                return Err(format!("not an SDP line: {line:?}"));
            }
            if let Some(m) = line.strip_prefix("m=") {
                let mut f = m.split_whitespace();
                let kind = f.next().ok_or("m= line without media type")?.to_string();
                let port_s = f.next().ok_or("m= line without port")?;
                let port = port_s
                    .split('/')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(|| format!("m= line with a bad port {port_s:?}"))?;
                let proto = f.next().ok_or("m= line without protocol")?.to_string();
                let fmts: Vec<String> = f.map(str::to_string).collect();
                media.push(Media {
                    kind,
                    port,
                    proto,
                    fmts,
                    lines: Vec::new(),
                });
            } else if let Some(m) = media.last_mut() {
                m.lines.push(line.to_string());
            } else {
                session.push(line.to_string());
            }
        }
        if !session.iter().any(|l| l.starts_with("v=")) {
            return Err("SDP without a v= line".into());
        }
        Ok(Sdp { session, media })
    }

    /// The SDP text with CRLF line ends.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.session {
            s.push_str(l);
            s.push_str("\r\n");
        }
        for m in &self.media {
            s.push_str(&format!("m={} {} {}", m.kind, m.port, m.proto));
            for f in &m.fmts {
                s.push(' ');
                s.push_str(f);
            }
            s.push_str("\r\n");
            for l in &m.lines {
                s.push_str(l);
                s.push_str("\r\n");
            }
        }
        s
    }

    /// The session-level connection address.
    pub fn session_ip(&self) -> Option<IpAddr> {
        self.session.iter().find_map(|l| connection_ip(l))
    }

    /// The connection address of media `i` (its own, else the session's).
    pub fn media_ip(&self, i: usize) -> Option<IpAddr> {
        self.media
            .get(i)
            .and_then(|m| m.lines.iter().find_map(|l| connection_ip(l)))
            .or_else(|| self.session_ip())
    }

    /// Sets the connection address everywhere (session level, and media level
    /// where a section has its own).
    pub fn set_ip(&mut self, ip: IpAddr) {
        let mut had = false;
        for l in self.session.iter_mut().filter(|l| l.starts_with("c=")) {
            *l = c_line(ip);
            had = true;
        }
        if !had {
            // c= goes after s= / i= / u= / e= / p=, before t=.
            let at = self
                .session
                .iter()
                .position(|l| l.starts_with("t="))
                .unwrap_or(self.session.len());
            self.session.insert(at, c_line(ip));
        }
        for m in &mut self.media {
            for l in m.lines.iter_mut().filter(|l| l.starts_with("c=")) {
                *l = c_line(ip);
            }
        }
    }

    /// `a=name` of media section `i`, or of the session when the section has none
    /// (`a=fingerprint` and `a=setup` may be given for the whole session).
    pub fn media_or_session_attr(&self, i: usize, name: &str) -> Option<&str> {
        if let Some(v) = self.media.get(i)?.attrs(name).first() {
            return Some(v);
        }
        self.session
            .iter()
            .filter_map(|l| attr_name(l))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or(""))
    }

    /// Removes session-level `a=name` lines.
    pub fn remove_session_attr(&mut self, name: &str) {
        self.session
            .retain(|l| attr_name(l).is_none_or(|(n, _)| n != name));
    }

    /// Whether the session or a media section has ICE attributes.
    pub fn has_ice(&self) -> bool {
        let ice = |l: &String| attr_name(l).is_some_and(|(n, _)| ICE_ATTRS.contains(&n));
        self.session.iter().any(ice) || self.media.iter().any(|m| m.lines.iter().any(ice))
    }

    /// Whether the session says `a=ice-lite` (the peer is a lite agent: it
    /// sends no connectivity checks).
    pub fn is_ice_lite(&self) -> bool {
        self.session
            .iter()
            .any(|l| attr_name(l).is_some_and(|(n, _)| n == "ice-lite"))
    }

    /// `a=ice-ufrag` and `a=ice-pwd` of media section `i` (media level, else
    /// session level), values trimmed.
    pub fn ice_ufrag_pwd(&self, i: usize) -> (Option<&str>, Option<&str>) {
        (
            self.media_or_session_attr(i, "ice-ufrag").map(str::trim),
            self.media_or_session_attr(i, "ice-pwd").map(str::trim),
        )
    }

    /// Appends a session-level attribute (after the other session lines).
    pub fn add_session_attr(&mut self, name: &str, value: Option<&str>) {
        self.session.push(match value {
            Some(v) => format!("a={name}:{v}"),
            None => format!("a={name}"),
        });
    }

    /// Removes session-level ICE attributes (`a=ice-lite`, `a=ice-ufrag`, ...).
    pub fn remove_session_ice(&mut self) {
        for a in ICE_ATTRS {
            self.remove_session_attr(a);
        }
    }

    /// The media sections each `a=group:BUNDLE` line puts together (RFC 9143),
    /// by index: the sections whose `a=mid` the group names.
    pub fn bundle_groups(&self) -> Vec<Vec<usize>> {
        self.session
            .iter()
            .filter_map(|l| attr_name(l))
            .filter(|(n, _)| *n == "group")
            .filter_map(|(_, v)| {
                let mut f = v?.split_whitespace();
                f.next()
                    .is_some_and(|s| s.eq_ignore_ascii_case("BUNDLE"))
                    .then(|| {
                        let mids: Vec<&str> = f.collect();
                        (0..self.media.len())
                            .filter(|&i| {
                                self.media[i]
                                    .attrs("mid")
                                    .iter()
                                    .any(|m| mids.contains(&m.trim()))
                            })
                            .collect()
                    })
            })
            .collect()
    }

    /// Takes BUNDLE (RFC 9143) out: every section's `a=bundle-only` goes,
    /// and each `a=group:BUNDLE` keeps only its first section with a port (the
    /// others moved out of the group, RFC 9143 section 7.3.2: each has a
    /// transport of its own); a group left without a section goes. A group of
    /// one section multiplexes nothing, and a WebRTC peer with the
    /// `max-bundle` policy refuses a description without any BUNDLE group.
    /// Other groups stay.
    pub fn unbundle(&mut self) {
        let groups = self.bundle_groups();
        let mut g = groups.iter();
        let media = &self.media;
        self.session.retain_mut(|l| {
            let is_bundle = attr_name(l).is_some_and(|(n, v)| {
                n == "group"
                    && v.and_then(|v| v.split_whitespace().next())
                        .is_some_and(|s| s.eq_ignore_ascii_case("BUNDLE"))
            });
            if !is_bundle {
                return true;
            }
            // `bundle_groups` has one entry per BUNDLE line, in order.
            let first = g
                .next()
                .and_then(|s| s.iter().find(|&&i| media[i].port != 0))
                .and_then(|&i| media[i].attrs("mid").first().map(|m| m.trim().to_string()));
            match first {
                Some(mid) => {
                    *l = format!("a=group:BUNDLE {mid}");
                    true
                }
                None => false,
            }
        });
        for m in &mut self.media {
            m.remove("bundle-only");
        }
    }

    /// Rewrites the origin's address (`replace: origin`).
    pub fn set_origin_ip(&mut self, ip: IpAddr) {
        for l in self.session.iter_mut().filter(|l| l.starts_with("o=")) {
            let f: Vec<&str> = l[2..].split_whitespace().collect();
            if f.len() == 6 {
                let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
                *l = format!("o={} {} {} {} {fam} {ip}", f[0], f[1], f[2], f[3]);
            }
        }
    }
}

impl Media {
    /// Values of `a=name:value` lines.
    pub fn attrs(&self, name: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter_map(|l| attr_name(l))
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.unwrap_or(""))
            .collect()
    }

    /// Whether `a=name` (with or without value) is present.
    pub fn has(&self, name: &str) -> bool {
        self.lines
            .iter()
            .filter_map(|l| attr_name(l))
            .any(|(n, _)| n == name)
    }

    /// Removes every `a=name` line.
    pub fn remove(&mut self, name: &str) {
        self.lines
            .retain(|l| attr_name(l).is_none_or(|(n, _)| n != name));
    }

    /// Appends an `a=` line (`value` None: a flag attribute).
    pub fn add(&mut self, name: &str, value: Option<&str>) {
        self.lines.push(match value {
            Some(v) => format!("a={name}:{v}"),
            None => format!("a={name}"),
        });
    }

    /// `a=rtcp:PORT`, if present.
    pub fn rtcp_port(&self) -> Option<u16> {
        self.attrs("rtcp")
            .first()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Whether the section offers or accepts rtcp-mux.
    pub fn rtcp_mux(&self) -> bool {
        self.has("rtcp-mux")
    }

    /// The direction attribute (sendrecv if none).
    pub fn direction(&self) -> Direction {
        for (i, d) in DIRECTIONS.iter().enumerate() {
            if self.has(d) {
                return [
                    Direction::SendRecv,
                    Direction::SendOnly,
                    Direction::RecvOnly,
                    Direction::Inactive,
                ][i];
            }
        }
        Direction::SendRecv
    }

    /// Whether the protocol is secure (SAVP/SAVPF, SDES or DTLS).
    pub fn is_secure(&self) -> bool {
        self.proto.contains("SAVP")
    }

    /// Whether the protocol is DTLS-SRTP (`UDP/TLS/RTP/SAVP` or `.../SAVPF`).
    pub fn is_dtls(&self) -> bool {
        is_dtls_proto(&self.proto)
    }

    /// Removes the ICE attributes (`ICE: remove`).
    pub fn remove_ice(&mut self) {
        for a in ICE_ATTRS {
            self.remove(a);
        }
    }

    /// Adds what an ICE-lite agent says about itself in one media section
    /// (RFC 8839): its credentials, one host candidate per component (1: RTP
    /// on `rtp`; 2: RTCP on `rtcp`, when RTCP has a port of its own) and
    /// `a=end-of-candidates` (a lite agent has nothing to trickle). The
    /// session-level `a=ice-lite` is the caller's.
    pub fn add_ice_lite(
        &mut self,
        ufrag: &str,
        pwd: &str,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) {
        self.add("ice-ufrag", Some(ufrag));
        self.add("ice-pwd", Some(pwd));
        self.add("candidate", Some(&host_candidate(1, rtp)));
        if let Some(r) = rtcp {
            self.add("candidate", Some(&host_candidate(2, r)));
        }
        self.add("end-of-candidates", None);
    }
}

/// Type preference of host candidates (RFC 8445 section 5.1.2.2).
const HOST_TYPE_PREFERENCE: u32 = 126;
/// Local preference of a candidate of an agent with one address.
const LOCAL_PREFERENCE: u32 = 65535;

/// RFC 8445 section 5.1.2.1: 2^24 * type preference + 2^8 * local preference
/// + (256 - component id).
pub fn host_priority(component: u8) -> u32 {
    (HOST_TYPE_PREFERENCE << 24) | (LOCAL_PREFERENCE << 8) | (256 - u32::from(component))
}

/// The value of an `a=candidate` line for a UDP host candidate: the
/// foundation is the same for every host candidate of one address (RFC 8445
/// section 5.1.1.3: same type, same base address, same transport), derived
/// from the address so that it needs no state (FNV-1a, 8 hex digits).
pub fn host_candidate(component: u8, addr: SocketAddr) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in addr.ip().to_string().bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    format!(
        "{h:08x} {component} UDP {} {} {} typ host",
        host_priority(component),
        addr.ip(),
        addr.port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1545997027 1 IN IP4 198.51.100.1\r\ns=tester\r\nc=IN IP4 198.51.100.1\r\nt=0 0\r\nm=audio 2000 RTP/SAVP 0 8\r\na=rtcp:2001\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\na=candidate:1 1 udp 2130706431 10.0.0.1 2000 typ host\r\na=ice-ufrag:abcd\r\na=sendrecv\r\n";

    #[test]
    fn parses_rewrites_and_renders() {
        let mut s = Sdp::parse(OFFER).unwrap();
        assert_eq!(s.media.len(), 1);
        let m = &s.media[0];
        assert_eq!(
            (m.kind.as_str(), m.port, m.proto.as_str()),
            ("audio", 2000, "RTP/SAVP")
        );
        assert_eq!(m.fmts, vec!["0", "8"]);
        assert_eq!(m.rtcp_port(), Some(2001));
        assert!(!m.rtcp_mux() && m.is_secure());
        assert_eq!(m.attrs("crypto").len(), 1);
        assert_eq!(m.direction(), Direction::SendRecv);
        assert_eq!(s.media_ip(0), Some("198.51.100.1".parse().unwrap()));
        s.set_ip("203.0.113.5".parse().unwrap());
        s.set_origin_ip("203.0.113.5".parse().unwrap());
        let m = &mut s.media[0];
        m.port = 40000;
        m.remove_ice();
        m.remove("crypto");
        m.proto = "RTP/AVP".into();
        let out = s.render();
        assert!(out.contains("c=IN IP4 203.0.113.5\r\n"));
        assert!(out.contains("o=- 1545997027 1 IN IP4 203.0.113.5\r\n"));
        assert!(out.contains("m=audio 40000 RTP/AVP 0 8\r\n"));
        assert!(
            !out.contains("candidate") && !out.contains("crypto") && !out.contains("ice-ufrag")
        );
        assert_eq!(Sdp::parse(&out).unwrap(), s);
    }

    #[test]
    fn ice_lite_attributes_and_candidates() {
        // RFC 8445 5.1.2.1 with type preference 126 and local preference 65535.
        assert_eq!(host_priority(1), 2_130_706_431);
        assert_eq!(host_priority(2), 2_130_706_430);
        let mut s = Sdp::parse(OFFER).unwrap();
        assert_eq!(s.ice_ufrag_pwd(0), (Some("abcd"), None));
        assert!(!s.is_ice_lite());
        let m = &mut s.media[0];
        m.remove_ice();
        let rtp: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let rtcp: SocketAddr = "203.0.113.5:40001".parse().unwrap();
        m.add_ice_lite("ufrag123", "passwordpasswordpassword", rtp, Some(rtcp));
        s.add_session_attr("ice-lite", None);
        let out = s.render();
        let c = s.media[0].attrs("candidate");
        assert_eq!(c.len(), 2, "{out}");
        let f1: Vec<&str> = c[0].split(' ').collect();
        let f2: Vec<&str> = c[1].split(' ').collect();
        assert_eq!(
            f1[1..],
            [
                "1",
                "UDP",
                "2130706431",
                "203.0.113.5",
                "40000",
                "typ",
                "host"
            ]
        );
        assert_eq!(
            f2[1..],
            [
                "2",
                "UDP",
                "2130706430",
                "203.0.113.5",
                "40001",
                "typ",
                "host"
            ]
        );
        // Same base address: same foundation, 1 to 32 ice-chars.
        assert_eq!(f1[0], f2[0]);
        assert!((1..=32).contains(&f1[0].len()));
        assert!(f1[0].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(
            !c.iter().any(|c| c.contains("10.0.0.1")),
            "peer's candidate gone"
        );
        assert!(out.contains("a=ice-ufrag:ufrag123\r\na=ice-pwd:passwordpasswordpassword\r\n"));
        assert!(out.contains("a=end-of-candidates\r\n"));
        let back = Sdp::parse(&out).unwrap();
        assert!(back.is_ice_lite());
        assert_eq!(
            back.ice_ufrag_pwd(0),
            (Some("ufrag123"), Some("passwordpasswordpassword"))
        );
        // Without an RTCP port of its own: component 1 only.
        let mut m = back.media[0].clone();
        m.remove_ice();
        m.add_ice_lite("ufrag123", "passwordpasswordpassword", rtp, None);
        assert_eq!(m.attrs("candidate").len(), 1);
        // Session-level credentials apply to every section without their own.
        let s = Sdp::parse(
            "v=0\r\ns=-\r\na=ice-ufrag:sess\r\na=ice-pwd:sessionpasswordsessionpw \r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(
            s.ice_ufrag_pwd(0),
            (Some("sess"), Some("sessionpasswordsessionpw"))
        );
    }

    #[test]
    fn bundle_groups_are_found_and_removed() {
        let text = "v=0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE a v x\r\na=group:LS a v\r\n\
                    m=audio 9 RTP/AVP 0\r\na=mid:a\r\nm=video 0 RTP/AVP 96\r\na=mid:v\r\n\
                    a=bundle-only\r\nm=text 5 RTP/AVP 98\r\na=mid:t\r\n";
        let mut s = Sdp::parse(text).unwrap();
        assert_eq!(s.bundle_groups(), vec![vec![0, 1]]);
        s.unbundle();
        let out = s.render();
        assert!(!out.contains("bundle-only"), "{out}");
        assert!(out.contains("a=group:BUNDLE a\r\n"), "the first one: {out}");
        assert!(
            out.contains("a=group:LS a v\r\n"),
            "other groups stay: {out}"
        );
        assert_eq!(s.bundle_groups(), vec![vec![0]]);
        // A group whose sections have no port goes.
        s.media[0].port = 0;
        s.unbundle();
        assert!(s.bundle_groups().is_empty(), "{}", s.render());
        // A group line without semantics or mids is no bundle (and no panic).
        let s = Sdp::parse("v=0\r\na=group\r\na=group:\r\na=group:bundle\r\n").unwrap();
        assert_eq!(s.bundle_groups(), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn refuses_what_is_not_sdp() {
        for bad in [
            "",
            "hello",
            "o=- 1 1 IN IP4 1.2.3.4\r\n",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
        ] {
            assert!(Sdp::parse(bad).is_err(), "{bad:?}");
        }
        // Without media it parses (the ng layer refuses it with a clear error).
        assert!(Sdp::parse("v=0\r\ns=-\r\n").unwrap().media.is_empty());
    }
}
