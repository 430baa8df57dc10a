//! The ng control protocol (the one Kamailio's and OpenSIPS's `rtpengine` modules
//! speak): `COOKIE <bencoded dictionary>` requests, answered with the same cookie
//! and a bencoded dictionary whose `result` is `ok`, `pong` or `error` (with
//! `error-reason`). Commands: ping, offer, answer, delete, query, list,
//! statistics. Retransmitted requests (same cookie) are answered from a cache.
//!
//! RTCP: `"RTCP terminate"` in an offer's `flags` (or `rtcp-mode: terminate`) makes
//! the gateway terminate the call's RTCP and send its own reports; `"RTCP XR"` adds
//! XR VoIP metrics and statistics summary blocks. `query` and `delete` replies carry
//! an `RTCP` dictionary per stream and rtpengine's per-`SSRC` MOS entries.
//!
//! Offers and answers are all or nothing: a call is changed (or created) only
//! when every media section is set up; a failed offer deletes the engine calls
//! it created. An offer has at most [`MAX_MEDIA`] media sections. Media section
//! `i` is always slot `i` of its call, also after another stream closed.
//!
//! ICE: the gateway is an ICE-lite agent (RFC 8445 section 2.5): towards a
//! side that does ICE with it, the SDP has `a=ice-lite`, our `a=ice-ufrag` /
//! `a=ice-pwd` and host candidates on the leg's ports only, and the engine
//! answers that side's checks (see [`Ice`] for the `ICE` key). A side's own
//! candidates are never passed on to the other side. Where ICE will not run
//! with a side after all (it is lite too, or the SDP back to it has no ICE),
//! its leg takes its `c=`/`m=` addresses and learns from the media again,
//! until an SDP of that side brings full ICE. A re-offer may add ICE to a
//! stream that had none (see [`Ice`]).
//!
//! BUNDLE: each media section has its own engine call and transport, so the
//! SDP the gateway sends bundles nothing (`a=bundle-only` removed, a BUNDLE
//! group cut down to its first section), with a `warning` when the incoming
//! SDP bundled sections.
//!
//! Options: `replace: origin` rewrites the `o=` address; the session-level `c=` line is
//! always rewritten (as rtpengine 10 does; `session-connection` is accepted).
//! The gateway has one interface, `default`: another name in `direction`, an
//! unknown `ICE` value and other `replace` flags are ignored with a `warning`
//! (rtpengine ignores them with a log line).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtp_control::dataplane::{LatchMode, LegSrtp, LegUpdate, SessionSnapshot};
use rtp_control::dtls::{Fingerprint, Role};
use rtp_control::rtcp::{Avpf, IntervalConfig, XrConfig};
use rtp_control::{
    CallId, CallInfo, DtlsLegParams, Engine, EngineError, IceCredentials, IceLegParams, LegConfig,
    LegRtcpStats, RtcpConfig, RtcpMode,
};
use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::{SrtpConfig, SrtpProfile};

use super::bencode::Value;
use super::sdp::{is_dtls_proto, Sdp};

/// One media section of a call, relayed by one engine call (leg 0 faces the side
/// that sent the first offer, leg 1 the other side).
#[derive(Debug, Clone)]
struct NgMedia {
    kind: String,
    call: CallInfo,
    /// Protocol on each side.
    proto: [String; 2],
    /// Our SDES key towards each side (what we encrypt with), if that side is secure.
    ours: [Option<CryptoAttribute>; 2],
    /// The keys we offered to a side (one per suite); its answer picks one by tag.
    offered: [Vec<CryptoAttribute>; 2],
    /// The side's rtcp-mux.
    mux: [bool; 2],
    /// The side's media address from its SDP.
    remote: [Option<SocketAddr>; 2],
    /// The side's RTCP address from its SDP (`None` with rtcp-mux).
    remote_rtcp: [Option<SocketAddr>; 2],
    /// Our `a=setup` towards a DTLS-SRTP side (`actpass` until its answer
    /// decides); `None` for SDES and plain sides.
    setup: [Option<&'static str>; 2],
    /// ICE-lite towards a side: our credentials and its own once known. A
    /// leg without ICE becomes an ICE leg when a re-offer brings ICE from or
    /// towards its side; an ICE leg stays one (without ICE from the side, it
    /// falls back to its SDP addresses, `ice_fallback`).
    ice: [Option<IceLegParams>; 2],
    /// ICE may run with the side: its last SDP had credentials and not
    /// `a=ice-lite` (two lite agents never check each other), and its leg
    /// has not fallen back to its SDP addresses since (`ice_fallback`; its
    /// next SDP with full ICE puts the leg back on nominations).
    ice_peer: [bool; 2],
    /// Our last SDP to the side had our ICE attributes.
    ice_sent: [bool; 2],
    /// We added `a=mid` to the offer (JSEP peers need one; SIP offers seldom
    /// have it): the answer back to the offerer goes without it.
    mid_added: bool,
    /// The offerer's own `a=mid`: a JSEP offerer refuses an answer section
    /// without it, and SIP answerers seldom echo it.
    offer_mid: Option<String>,
}

#[derive(Debug, Clone)]
struct NgCall {
    created: u64,
    last_signal: u64,
    tags: [String; 2],
    /// One slot per `m=` line: slot `i` is always media section `i`; a stream
    /// the engine closed (media timeout) leaves `None` in its place.
    media: Vec<Option<NgMedia>>,
    /// Deleted, or every stream closed: no longer in the call map (a command
    /// that waited for this call's lock finds it gone).
    gone: bool,
}

impl NgCall {
    fn new(from: &str) -> Self {
        NgCall {
            created: now_unix(),
            last_signal: now_unix(),
            tags: [from.to_string(), String::new()],
            media: Vec::new(),
            gone: false,
        }
    }

    /// The engine calls of the live streams.
    fn engine_calls(&self) -> impl Iterator<Item = (usize, &NgMedia)> {
        self.media
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().map(|m| (i, m)))
    }
}

/// A call, locked on its own: commands on one call are serialised, commands on
/// different calls are not, and no engine round trip holds the map's lock.
type CallRef = Arc<Mutex<NgCall>>;

/// Most media sections one offer may have (each is one engine call, and one
/// round trip to the engine's control thread).
pub const MAX_MEDIA: usize = 16;

/// How long a command waits for another thread that is answering the same
/// cookie before giving up without a reply (the client retransmits).
const IN_FLIGHT_WAIT: Duration = Duration::from_secs(5);

/// A cached reply, or a command being processed for that cookie.
#[derive(Debug)]
enum Cached {
    InFlight,
    Done(Instant, Vec<u8>),
}

/// Replies by cookie, and cookies oldest first (for eviction).
#[derive(Debug, Default)]
struct ReplyCache {
    map: HashMap<Vec<u8>, Cached>,
    order: VecDeque<(Instant, Vec<u8>)>,
}

impl ReplyCache {
    /// Drops replies older than `ttl`, then the oldest ones while more than
    /// `max` are kept (commands in flight stay).
    fn evict(&mut self, ttl: Duration, max: usize) {
        while let Some((t, _)) = self.order.front() {
            if t.elapsed() < ttl && self.map.len() < max {
                break;
            }
            let Some((t, k)) = self.order.pop_front() else {
                break;
            };
            // A cookie re-used after it expired has a newer entry: keep that.
            if matches!(self.map.get(&k), Some(Cached::Done(at, _)) if *at == t) {
                self.map.remove(&k);
            }
        }
    }
}

/// Settings of the ng layer.
#[derive(Debug, Clone)]
pub struct NgOptions {
    /// How long a reply stays in the retransmission cache.
    pub cookie_ttl: Duration,
    /// Most cached replies.
    pub cookie_cache: usize,
}

impl Default for NgOptions {
    fn default() -> Self {
        NgOptions {
            cookie_ttl: Duration::from_secs(30),
            cookie_cache: 20_000,
        }
    }
}

/// The ng command processor over an [`Engine`].
#[derive(Debug)]
pub struct NgServer {
    engine: Engine,
    opts: NgOptions,
    /// Committed calls only: an offer builds a new call aside and inserts it
    /// when every media section is set up. Lock order: a call's own lock, then
    /// this map, then `owners`; never a call's lock while holding the map.
    calls: Mutex<HashMap<String, CallRef>>,
    /// The ng call-id each engine call belongs to, so that an engine event finds
    /// its call without a scan of every call (taken last, held briefly).
    owners: Mutex<HashMap<CallId, String>>,
    cache: Mutex<ReplyCache>,
    /// Signalled when a command in flight stores its reply.
    cache_done: Condvar,
    advertise: IpAddr,
    offers: std::sync::atomic::AtomicU64,
    answers: std::sync::atomic::AtomicU64,
    deletes: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An ng error reply: `result: error` with `error-reason`.
pub fn error(reason: impl Into<String>) -> Value {
    let mut d = Value::dict();
    d.set("result", Value::str("error"))
        .set("error-reason", Value::Bytes(reason.into().into_bytes()));
    d
}

fn ok() -> Value {
    let mut d = Value::dict();
    d.set("result", Value::str("ok"));
    d
}

fn int(v: u64) -> Value {
    Value::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Suites offered towards a secure side, strongest first.
const OFFER_SUITES: [SrtpProfile; 6] = [
    SrtpProfile::AeadAes256Gcm,
    SrtpProfile::AeadAes128Gcm,
    SrtpProfile::AesCm256HmacSha1_80,
    SrtpProfile::AesCm256HmacSha1_32,
    SrtpProfile::AesCm128HmacSha1_80,
    SrtpProfile::AesCm128HmacSha1_32,
];

/// A fresh SDES key of `profile` with `tag`.
fn new_crypto(profile: SrtpProfile, tag: u32) -> CryptoAttribute {
    use rand::RngCore;
    let mut ks = vec![0u8; profile.key_len() + profile.salt_len()];
    rand::thread_rng().fill_bytes(&mut ks);
    let (k, s) = ks.split_at(profile.key_len());
    CryptoAttribute {
        tag,
        profile,
        key: k.to_vec(),
        salt: s.to_vec(),
        lifetime: None,
        mki: None,
    }
}

fn config(c: &CryptoAttribute) -> Result<SrtpConfig, String> {
    c.to_config().map_err(|e| format!("bad SDES key: {e}"))
}

/// The first `a=crypto` line of a section whose suite we support.
fn offered_crypto(m: &super::sdp::Media) -> Option<CryptoAttribute> {
    m.attrs("crypto")
        .into_iter()
        .find_map(|v| CryptoAttribute::parse(v).ok().filter(|c| c.mki.is_none()))
}

fn media_addr(sdp: &Sdp, i: usize) -> Option<SocketAddr> {
    let ip = sdp.media_ip(i)?;
    let port = sdp.media[i].port;
    (port != 0 && !ip.is_unspecified()).then(|| SocketAddr::new(ip, port))
}

fn rtcp_addr(sdp: &Sdp, i: usize) -> Option<SocketAddr> {
    let m = &sdp.media[i];
    let ip = sdp.media_ip(i)?;
    if m.rtcp_mux() || ip.is_unspecified() || m.port == 0 {
        return None;
    }
    Some(SocketAddr::new(
        ip,
        m.rtcp_port().unwrap_or(m.port.wrapping_add(1)),
    ))
}

/// What one rewritten media section says to the side that receives it.
struct MediaOut<'a> {
    /// The stream is open: `false` keeps port 0 (a rejected or disabled
    /// stream).
    open: bool,
    /// Our leg towards that side.
    leg: rtp_control::LegInfo,
    /// Its protocol.
    proto: &'a str,
    /// Our SDES keys (`a=crypto`).
    keys: &'a [CryptoAttribute],
    /// `a=rtcp-mux`.
    mux: bool,
    /// `a=rtcp` with our RTCP port, when the leg has one.
    rtcp_line: bool,
    /// DTLS-SRTP: our `a=setup` and `a=fingerprint`.
    dtls: Option<(&'a str, &'a Fingerprint)>,
    /// ICE-lite towards that side: our credentials (with host candidates on
    /// the leg's ports).
    ice: Option<&'a IceCredentials>,
}

/// Rewrites one media section for the side that receives it: our advertised
/// port on its leg, its protocol with SDES keys or DTLS setup and fingerprint,
/// RTCP attributes; the sender's ICE attributes are removed, and ours put in
/// when that side does ICE with us.
fn rewrite_media(om: &mut super::sdp::Media, o: MediaOut<'_>) {
    let MediaOut {
        open,
        leg,
        proto,
        keys,
        mux,
        rtcp_line,
        dtls,
        ice,
    } = o;
    om.port = if open { leg.advertised.port() } else { 0 };
    // No BUNDLE: each section has its own transport (see `bundle_warning`).
    om.remove("bundle-only");
    om.proto = proto.to_string();
    om.remove("crypto");
    for c in keys {
        om.lines.push(c.to_string());
    }
    for a in ["fingerprint", "setup", "tls-id"] {
        om.remove(a);
    }
    if let Some((setup, fp)) = dtls {
        om.add("fingerprint", Some(&fp.to_string()));
        om.add("setup", Some(setup));
    }
    om.remove("rtcp");
    om.remove("rtcp-mux");
    if let Some(r) = leg.local_rtcp.filter(|_| rtcp_line) {
        om.add("rtcp", Some(&r.port().to_string()));
    }
    if mux {
        om.add("rtcp-mux", None);
    }
    om.remove_ice();
    if let Some(c) = ice.filter(|_| om.port != 0) {
        // Component 2 where RTCP has a port of its own (the a=rtcp line).
        let rtcp = leg
            .local_rtcp
            .filter(|_| rtcp_line)
            .map(|r| SocketAddr::new(leg.advertised.ip(), r.port()));
        om.add_ice_lite(&c.ufrag, &c.pwd, leg.advertised, rtcp);
    }
}

/// The `ice-char` set of RFC 8839 (letters, digits, `+`, `/`).
fn is_ice_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// A side's ICE credentials for media section `i` (media level, else session
/// level): `None` when it has none; an error when only one is there or they
/// are not what RFC 8839 allows (4 to 256 ice-chars for the ufrag, 22 to 256
/// for the password), since checks could never be answered with them.
fn ice_credentials(sdp: &Sdp, i: usize) -> Result<Option<IceCredentials>, String> {
    let n = i + 1;
    match sdp.ice_ufrag_pwd(i) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(format!("media {n}: a=ice-ufrag without a=ice-pwd")),
        (None, Some(_)) => Err(format!("media {n}: a=ice-pwd without a=ice-ufrag")),
        (Some(u), Some(p)) => {
            if !(4..=256).contains(&u.len()) || !is_ice_chars(u) {
                return Err(format!(
                    "media {n}: bad a=ice-ufrag {u:?} (4 to 256 letters, digits, '+' or '/')"
                ));
            }
            if !(22..=256).contains(&p.len()) || !is_ice_chars(p) {
                return Err(format!(
                    "media {n}: bad a=ice-pwd (22 to 256 letters, digits, '+' or '/')"
                ));
            }
            Ok(Some(IceCredentials {
                ufrag: u.to_string(),
                pwd: p.to_string(),
            }))
        }
    }
}

/// A DTLS-SRTP side's `a=fingerprint` and `a=setup` (media level, else session
/// level; an absent `a=setup` means `active`, RFC 4145): the leg's parameters
/// and our own `a=setup` in reply (`actpass` and `passive` make us the client).
fn dtls_params(sdp: &Sdp, i: usize) -> Result<(DtlsLegParams, &'static str), String> {
    let fp = sdp
        .media_or_session_attr(i, "fingerprint")
        .ok_or_else(|| format!("media {}: UDP/TLS/RTP/SAVP without a=fingerprint", i + 1))?;
    let fp: Fingerprint = fp
        .trim()
        .parse()
        .map_err(|e| format!("media {}: bad a=fingerprint: {e}", i + 1))?;
    let (role, ours) = match sdp.media_or_session_attr(i, "setup").map(str::trim) {
        Some("actpass") | Some("passive") => (Role::Client, "active"),
        Some("active") | None => (Role::Server, "passive"),
        Some(other) => {
            return Err(format!(
                "media {}: a=setup:{other} is not supported (actpass, active or passive)",
                i + 1
            ))
        }
    };
    Ok((
        DtlsLegParams {
            role: Some(role),
            fingerprint: Some(fp),
        },
        ours,
    ))
}

/// What `ICE` asks for the SDP this command produces, i.e. towards the side
/// that receives it (rtpengine's semantics, as far as they fit a lite agent).
/// The sender's own candidates are always removed (they would route media
/// around the relay), and the relay is the receiving side's only candidate.
///
/// The side that sent an offer with `a=ice-ufrag` / `a=ice-pwd` gets an
/// ICE-lite leg whatever this key says (as rtpengine keeps the offerer's ICE
/// agent; `reject ICE` in `flags` refuses it): the answer's `ICE` key then
/// decides whether the SDP back to it has our ICE attributes.
///
/// A re-offer may bring ICE to a stream that had none (a SIP side upgraded
/// to WebRTC, a re-INVITE that adds ICE): the sender's leg, and the
/// receiving side's when this key asks for ICE towards it, become ICE-lite
/// legs with fresh credentials of ours; each keeps its current address until
/// its side nominates. A side whose leg fell back to its SDP addresses (it
/// was lite, or answered without ICE) is back on nominations when its SDP
/// brings full ICE again.
///
/// Deviations from rtpengine, which is a full ICE agent: the gateway is lite
/// (it sends no checks; two lite agents use the `c=`/`m=` addresses, said in
/// a `warning`), `optional` does not keep the sender's candidates (a
/// `warning`), and `force-relay` (the sender's candidates kept, the relay
/// added as a relay candidate) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ice {
    /// Not given, or `default`: ICE towards the receiving side when the
    /// incoming SDP has ICE attributes (as `force`), none otherwise.
    Default,
    /// `remove`: no ICE attributes towards the receiving side.
    Remove,
    /// `force`: ICE-lite towards the receiving side, the relay its only
    /// candidate.
    Force,
    /// `optional`: as `force` (rtpengine would also keep the sender's
    /// candidates when it had some, which would route media around the relay).
    Optional,
}

/// Flags of an offer or answer.
struct Flags {
    transport: Option<String>,
    ice: Ice,
    /// `reject ICE` in `flags`: no ICE with the offerer, even if it offered it.
    reject_ice: bool,
    replace_origin: bool,
    mux_offer: bool,
    mux_demux: bool,
    mux_require: bool,
    /// `RTCP terminate` in `flags`, or `rtcp-mode: terminate`.
    rtcp_terminate: bool,
    /// `RTCP XR` in `flags`: VoIP metrics and statistics summary blocks in our
    /// reports.
    rtcp_xr: bool,
    /// What the reply's `warning` says (options ignored, as rtpengine ignores
    /// unknown ones, but said rather than only logged).
    warnings: Vec<String>,
}

/// The `warning` when the peer that does ICE with us is a lite agent too.
const LITE_PEER: &str = "the peer is ICE-lite, as this relay: no connectivity checks (RFC 8445 \
                         section 6.1.1), media goes to its c=/m= address";

/// Whether media section `m` is open: a port, or `a=bundle-only` (RFC 9143:
/// port 0 there means "bundled", not "rejected"; without BUNDLE the section
/// gets a port of its own like any other).
fn is_open(m: &super::sdp::Media) -> bool {
    m.port != 0 || m.has("bundle-only")
}

/// The `warning` about BUNDLE in an incoming SDP, if it bundles more than one
/// media section or has `a=bundle-only` ones. The gateway relays each media
/// section with its own engine call, ports and ICE credentials, so the SDP it
/// sends bundles nothing (no `a=bundle-only`, each `a=group:BUNDLE` cut down
/// to its first section, [`Sdp::unbundle`]): a peer that saw the group echoed
/// would send every stream over the first section's transport, into that
/// section's call.
fn bundle_warning(sdp: &Sdp) -> Option<String> {
    let bundled = sdp.bundle_groups().iter().any(|g| g.len() > 1);
    let only: Vec<String> = (0..sdp.media.len())
        .filter(|&i| sdp.media[i].has("bundle-only"))
        .map(|i| (i + 1).to_string())
        .collect();
    if !bundled && only.is_empty() {
        return None;
    }
    let mut w = "BUNDLE not supported: each media section gets its own transport".to_string();
    if !only.is_empty() {
        w.push_str(&format!(
            " (a=bundle-only media {} too: a port of its own)",
            only.join(", ")
        ));
    }
    Some(w)
}

/// The name of the gateway's one interface in `direction` (rtpengine's name of
/// an unnamed interface).
const INTERFACE: &str = "default";

impl Flags {
    /// The flags of a request; an option the gateway cannot honour is an error.
    fn of(req: &Value) -> Result<Self, String> {
        let list = |k: &str| req.get(k).map(|v| v.str_list()).unwrap_or_default();
        let rcm = list("rtcp-mux");
        let flags = list("flags");
        let has = |names: &[&str]| {
            flags
                .iter()
                .any(|f| names.iter().any(|n| f.eq_ignore_ascii_case(n)))
        };
        let mut warnings = Vec::new();
        let ice =
            match req.get_str("ICE") {
                None | Some("default") => Ice::Default,
                Some("remove") => Ice::Remove,
                Some("force") => Ice::Force,
                Some("optional") => Ice::Optional,
                Some("force-relay") => return Err(
                    "ICE=force-relay is not supported: this ICE-lite relay is the only candidate \
                     (ICE=force), it does not keep the peer's own candidates"
                        .into(),
                ),
                Some(other) => {
                    warnings.push(format!(
                        "Unknown 'ICE' flag '{other}' ignored (ICE=default)"
                    ));
                    Ice::Default
                }
            };
        let mut replace_origin = false;
        for r in list("replace") {
            match r {
                "origin" => replace_origin = true,
                // The session-level c= line is rewritten anyway (as rtpengine
                // 10 does with or without this flag).
                "session-connection" | "session connection" => {}
                other => warnings.push(format!("Unsupported 'replace' flag '{other}' ignored")),
            }
        }
        // Interfaces: the gateway has one; another name falls back to it, as in
        // rtpengine ("not found, using default").
        if let Some(d) = req.get("direction") {
            let names = d.str_list();
            if !matches!(d, Value::List(l) if l.len() <= 2 && l.len() == names.len()) {
                warnings.push("'direction' is not a list of two interface names: ignored".into());
            }
            for n in names {
                if n != INTERFACE {
                    warnings.push(format!("Interface '{n}' not found, using {INTERFACE}"));
                }
            }
        }
        Ok(Flags {
            transport: req.get_str("transport-protocol").map(str::to_string),
            ice,
            reject_ice: has(&["reject ICE", "reject-ICE"]),
            replace_origin,
            mux_offer: rcm.contains(&"offer"),
            mux_demux: rcm.contains(&"demux"),
            mux_require: rcm.contains(&"require"),
            rtcp_terminate: has(&["RTCP terminate", "rtcp-terminate"])
                || req
                    .get_str("rtcp-mode")
                    .is_some_and(|m| m.eq_ignore_ascii_case("terminate")),
            rtcp_xr: has(&["RTCP XR", "rtcp-xr"]),
            warnings,
        })
    }

    /// RTCP settings of a leg whose peer speaks `proto`: AVPF profiles
    /// (RTP/AVPF, RTP/SAVPF, UDP/TLS/RTP/SAVPF) get the RFC 4585 timing (no 5 s
    /// minimum after the first report; trr-int 0).
    fn rtcp(&self, proto: &str) -> RtcpConfig {
        let avpf = proto.contains("AVPF").then_some(Avpf {
            trr_int: Duration::ZERO,
        });
        RtcpConfig {
            interval: IntervalConfig {
                avpf,
                ..IntervalConfig::default()
            },
            mode: if self.rtcp_terminate {
                RtcpMode::Terminate
            } else {
                RtcpMode::Forward
            },
            xr: XrConfig {
                voip_metrics: self.rtcp_xr,
                stats_summary: self.rtcp_xr,
            },
            ..RtcpConfig::default()
        }
    }
}

impl NgServer {
    /// An ng server over `engine`; SDP advertises `advertise`.
    pub fn new(engine: Engine, advertise: IpAddr, opts: NgOptions) -> Self {
        NgServer {
            engine,
            opts,
            calls: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            cache: Mutex::new(ReplyCache::default()),
            cache_done: Condvar::new(),
            advertise,
            offers: 0.into(),
            answers: 0.into(),
            deletes: 0.into(),
            errors: 0.into(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, to shut it down.
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// Handles one datagram (`cookie <bencode>`); returns the reply datagram, or
    /// `None` when there is not even a cookie to answer to.
    pub fn handle(&self, msg: &[u8]) -> Option<Vec<u8>> {
        let sp = msg.iter().position(|&b| b == b' ')?;
        let (cookie, body) = (&msg[..sp], &msg[sp + 1..]);
        if cookie.is_empty() {
            return None;
        }
        // Look the cookie up and claim it in one step, so that a retransmission
        // arriving on another thread (UDP and TCP) waits for this reply instead
        // of running the command twice.
        {
            let mut c = self.cache.lock().ok()?;
            let ttl = self.opts.cookie_ttl;
            let deadline = Instant::now() + IN_FLIGHT_WAIT;
            loop {
                match c.map.get(cookie) {
                    Some(Cached::Done(t, r)) if t.elapsed() < ttl => return Some(r.clone()),
                    Some(Cached::InFlight) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return None;
                        }
                        c = self.cache_done.wait_timeout(c, left).ok()?.0;
                    }
                    _ => break,
                }
            }
            c.evict(ttl, self.opts.cookie_cache);
            c.map.insert(cookie.to_vec(), Cached::InFlight);
        }
        let reply = match Value::decode(body) {
            Ok(req @ Value::Dict(_)) => self.command(&req),
            Ok(_) => error("Invalid NG data format"),
            Err(e) => {
                tracing::warn!(%e, "malformed ng message");
                error("Invalid NG data format")
            }
        };
        if reply.get_str("result") == Some("error") {
            self.errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let mut out = cookie.to_vec();
        out.push(b' ');
        reply.encode_into(&mut out);
        if let Ok(mut c) = self.cache.lock() {
            let now = Instant::now();
            c.map
                .insert(cookie.to_vec(), Cached::Done(now, out.clone()));
            c.order.push_back((now, cookie.to_vec()));
        }
        self.cache_done.notify_all();
        Some(out)
    }

    fn command(&self, req: &Value) -> Value {
        let Some(cmd) = req.get_str("command") else {
            return error("no command");
        };
        // Every log line of this command carries the call-id.
        let _span =
            tracing::info_span!("ng", call_id = req.get_str("call-id").unwrap_or("-")).entered();
        let r = match cmd {
            "ping" => {
                let mut d = Value::dict();
                d.set("result", Value::str("pong"));
                Ok(d)
            }
            "offer" => self.offer(req),
            "answer" => self.answer(req),
            "delete" => self.delete(req),
            "query" => self.query(req),
            "list" => Ok(self.list(req)),
            "statistics" => Ok(self.statistics()),
            other => {
                tracing::warn!(command = other, "unrecognized ng command");
                Err("Unrecognized command".to_string())
            }
        };
        match r {
            Ok(v) => {
                tracing::info!(command = cmd, "ok");
                v
            }
            Err(e) => {
                tracing::info!(command = cmd, error = %e, "error");
                error(e)
            }
        }
    }

    fn required<'a>(req: &'a Value, key: &str) -> Result<&'a str, String> {
        req.get_str(key)
            .ok_or_else(|| format!("No {key} in message"))
    }

    /// The committed call of `call_id`, if any (the map's lock is released
    /// before the caller locks the call).
    fn lookup(&self, call_id: &str) -> Result<Option<CallRef>, String> {
        Ok(self
            .calls
            .lock()
            .map_err(|_| "internal error")?
            .get(call_id)
            .cloned())
    }

    /// Deletes engine calls an offer created before it failed.
    fn rollback(&self, created: &[CallId]) {
        for &id in created {
            if let Err(e) = self.engine.delete_call(id) {
                tracing::warn!(engine_call = id, %e, "rolling back a failed offer");
            }
        }
    }

    fn offer(&self, req: &Value) -> Result<Value, String> {
        let call_id = Self::required(req, "call-id")?;
        let from = Self::required(req, "from-tag")?;
        let sdp_text = Self::required(req, "sdp")?;
        let sdp = Sdp::parse(sdp_text).map_err(|e| format!("Failed to parse SDP: {e}"))?;
        if sdp.media.is_empty() {
            return Err("Failed to parse SDP: no media sections".into());
        }
        if sdp.media.len() > MAX_MEDIA {
            return Err(format!(
                "Too many media sections: {} (at most {MAX_MEDIA})",
                sdp.media.len()
            ));
        }
        let mut flags = Flags::of(req)?;
        self.offers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // A re-offer works on a copy of its call, under the call's own lock; a
        // new call is built aside. Either is committed only when every media
        // section is set up: a failed offer leaves nothing behind, and a failed
        // re-offer leaves the call as it was.
        let existing = self.lookup(call_id)?;
        let mut guard = match &existing {
            Some(c) => Some(c.lock().map_err(|_| "internal error")?),
            None => None,
        };
        if guard.as_ref().is_some_and(|g| g.gone) {
            guard = None; // deleted while we waited: a new call
        }
        let mut call = match guard.as_deref() {
            Some(c) => c.clone(),
            None => NgCall::new(from),
        };
        // Which side is offering: a new call's offerer is side 0; a re-offer may
        // come from either tag (a new from-tag replaces the offerer: forking).
        let side = if guard.is_some() && call.tags[0] != from && call.tags[1] == from {
            1
        } else {
            0
        };
        call.last_signal = now_unix();
        call.tags[side] = from.to_string();
        let mut created = Vec::new();
        let out = match self.offer_into(&mut call, side, &sdp, &mut flags, &mut created) {
            Ok(out) => out,
            Err(e) => {
                self.rollback(&created);
                return Err(e);
            }
        };
        match guard {
            Some(mut g) => {
                *g = call;
                self.own(&created, call_id);
            }
            None => {
                let mut calls = self.calls.lock().map_err(|_| "internal error")?;
                if calls.contains_key(call_id) {
                    drop(calls);
                    self.rollback(&created);
                    return Err("Call-ID offered twice at once: retry".into());
                }
                calls.insert(call_id.to_string(), Arc::new(Mutex::new(call)));
                self.own(&created, call_id);
            }
        }
        let mut r = ok();
        r.set("sdp", Value::Bytes(out.render().into_bytes()));
        Self::warn(&mut r, &flags);
        Ok(r)
    }

    /// Records which ng call the engine calls belong to.
    fn own(&self, ids: &[CallId], call_id: &str) {
        if let Ok(mut o) = self.owners.lock() {
            for &id in ids {
                o.insert(id, call_id.to_string());
            }
        }
    }

    /// A `warning` in the reply when some option was not honoured.
    fn warn(r: &mut Value, flags: &Flags) {
        if !flags.warnings.is_empty() {
            for w in &flags.warnings {
                tracing::warn!("{w}");
            }
            r.set("warning", Value::str(&flags.warnings.join("; ")));
        }
    }

    /// The offer applied to `call` (a copy): checks every section first, then
    /// creates the engine calls of new sections (their ids in `created`, for a
    /// rollback), then updates the existing ones. Returns the SDP for the other
    /// side.
    fn offer_into(
        &self,
        call: &mut NgCall,
        side: usize,
        sdp: &Sdp,
        flags: &mut Flags,
        created: &mut Vec<CallId>,
    ) -> Result<Sdp, String> {
        let other = 1 - side;
        // 1. What each section says, checked before anything changes.
        let mut plan = Vec::with_capacity(sdp.media.len());
        for (i, m) in sdp.media.iter().enumerate() {
            let their_dtls = if m.is_dtls() {
                Some(dtls_params(sdp, i)?)
            } else {
                None
            };
            let their = if m.is_secure() && !m.is_dtls() {
                let c = offered_crypto(m).ok_or_else(|| {
                    format!(
                        "media {}: RTP/SAVP without a supported a=crypto line",
                        i + 1
                    )
                })?;
                config(&c)?;
                Some(c)
            } else {
                None
            };
            if let Some(Some(nm)) = call.media.get(i) {
                // The engine leg is DTLS-SRTP or not for its whole life.
                if their_dtls.is_some() != nm.setup[side].is_some() {
                    return Err(format!(
                        "media {}: a re-offer cannot switch a stream {} DTLS-SRTP",
                        i + 1,
                        if their_dtls.is_some() {
                            "to"
                        } else {
                            "away from"
                        }
                    ));
                }
            }
            let other_proto = flags.transport.clone().unwrap_or_else(|| m.proto.clone());
            // The sender's ICE credentials: an ICE-lite leg towards it.
            let their_ice = if flags.reject_ice {
                None
            } else {
                ice_credentials(sdp, i)?
            };
            plan.push((their_dtls, their, other_proto, their_ice));
        }
        let sender_ice = plan.iter().any(|p| p.3.is_some());
        if sdp.has_ice() && !sender_ice && !flags.reject_ice && flags.ice != Ice::Remove {
            flags.warnings.push(
                "ICE attributes removed: without a=ice-ufrag and a=ice-pwd the sender cannot do \
                 ICE with this relay"
                    .into(),
            );
        }
        if sender_ice && sdp.is_ice_lite() {
            flags.warnings.push(LITE_PEER.into());
        }
        // ICE runs with the sender when it gave credentials and is not lite;
        // the SDP back to it (the answer) must have ours too.
        let peer_ice =
            |their_ice: &Option<IceCredentials>| their_ice.is_some() && !sdp.is_ice_lite();
        flags.warnings.extend(bundle_warning(sdp));
        if flags.ice == Ice::Optional {
            flags.warnings.push(
                "ICE=optional handled as ICE=force: the relay is the only candidate (the \
                 sender's own candidates are not passed on)"
                    .into(),
            );
        }
        // ICE towards the receiving side (see `Ice`).
        let ice_other = match flags.ice {
            Ice::Force | Ice::Optional => true,
            Ice::Default => sdp.has_ice(),
            Ice::Remove => false,
        };
        // 2. New sections (or ones whose stream was closed): one engine call each.
        if call.media.len() < sdp.media.len() {
            call.media.resize(sdp.media.len(), None);
        }
        let mut fresh = vec![false; sdp.media.len()];
        for (i, m) in sdp.media.iter().enumerate() {
            if call.media[i].is_some() {
                continue;
            }
            let (their_dtls, their, other_proto, their_ice) = &plan[i];
            let ice = [their_ice.clone().map(Some), ice_other.then_some(None)];
            let nm = self.new_media(sdp, i, m, side, their_dtls, their, other_proto, ice, flags)?;
            created.push(nm.call.id);
            if nm.ice[side].is_some() && !nm.ice_peer[side] {
                // A lite sender: no checks will ever nominate its address.
                self.ice_fallback(&nm, side)?;
            }
            call.media[i] = Some(nm);
            fresh[i] = true;
        }
        // 3. Existing sections: the offerer's address, keys or protocol may
        // change; ports and the other side stay.
        for (i, m) in sdp.media.iter().enumerate() {
            if fresh[i] {
                continue;
            }
            let Some(nm) = call.media[i].as_mut() else {
                continue;
            };
            let (their_dtls, their, _, their_ice) = &plan[i];
            let open = is_open(m);
            // An ICE restart (new credentials from the sender): new ones of
            // ours too (RFC 8839 section 4.4.1.1.1).
            let restart = match (&nm.ice[side], their_ice) {
                (Some(p), Some(c)) if p.remote.as_ref() != Some(c) => Some(IceLegParams {
                    local: IceCredentials::random(),
                    remote: Some(c.clone()),
                }),
                _ => None,
            };
            // ICE from a sender whose leg had none (a SIP side upgraded to
            // WebRTC, a re-INVITE that adds ICE): its leg becomes an ICE-lite
            // leg with fresh credentials of ours, as a new section's would.
            // The engine keeps the leg's current remote until the sender
            // nominates; a lite sender falls back to its SDP addresses below
            // (`update_side`), as a new section's does.
            if let (None, Some(c), true) = (&nm.ice[side], their_ice, open) {
                let p = IceLegParams {
                    local: IceCredentials::random(),
                    remote: Some(c.clone()),
                };
                self.engine
                    .set_ice(nm.call.id, side, p.clone())
                    .map_err(|e| e.to_string())?;
                nm.ice[side] = Some(p);
            }
            let remote = media_addr(sdp, i);
            // A side doing ICE: its nominations, not its SDP, say where media
            // goes (if the answer back to it has no ICE, it falls back then;
            // a leg that had fallen back takes nominations only again).
            let ice_peer = peer_ice(their_ice);
            let ice_leg = nm.ice[side].is_some();
            let addrs = (!ice_leg || !ice_peer).then(|| (remote, rtcp_addr(sdp, i)));
            nm.remote[side] = remote;
            nm.remote_rtcp[side] = rtcp_addr(sdp, i);
            nm.ice_peer[side] = ice_peer;
            nm.mux[side] = m.rtcp_mux();
            nm.proto[side] = m.proto.clone();
            if let Some((params, ours)) = their_dtls {
                nm.setup[side] = Some(ours);
                nm.ours[side] = None;
                // The DTLS keys stay; unchanged parameters keep the association.
                self.update_side(nm.call.id, side, ice_leg, addrs, None, m.rtcp_mux())?;
                self.engine
                    .set_dtls(nm.call.id, side, params.clone())
                    .map_err(|e| e.to_string())?;
            } else {
                let srtp = match their {
                    Some(c) => {
                        let ours = nm.ours[side]
                            .clone()
                            .filter(|o| o.profile == c.profile)
                            .unwrap_or_else(|| new_crypto(c.profile, c.tag));
                        nm.ours[side] = Some(CryptoAttribute {
                            tag: c.tag,
                            ..ours.clone()
                        });
                        Some(LegSrtp {
                            inbound: config(c)?,
                            outbound: config(&ours)?,
                        })
                    }
                    None => {
                        nm.ours[side] = None;
                        None
                    }
                };
                self.update_side(nm.call.id, side, ice_leg, addrs, Some(srtp), m.rtcp_mux())?;
            }
            if let Some(p) = restart {
                self.engine
                    .set_ice(nm.call.id, side, p.clone())
                    .map_err(|e| e.to_string())?;
                nm.ice[side] = Some(p);
            }
            if ice_other && open && nm.ice[other].is_none() {
                // ICE towards a receiving side whose leg had none: our fresh
                // credentials go in the SDP to it (step 4); its own come with
                // its answer, as for a new section. Until it nominates, its
                // media stays with its current address.
                let p = IceLegParams {
                    local: IceCredentials::random(),
                    remote: None,
                };
                self.engine
                    .set_ice(nm.call.id, other, p.clone())
                    .map_err(|e| e.to_string())?;
                nm.ice[other] = Some(p);
            }
        }
        // 4. The SDP for the other side: our address and port on its leg; its
        // RTCP on a separate port (a=rtcp), rtcp-mux offered when asked.
        let mut out = sdp.clone();
        let fp = self.engine.fingerprint();
        let mut any_ice = false;
        for (i, m) in sdp.media.iter().enumerate() {
            let Some(nm) = call.media[i].as_mut() else {
                continue;
            };
            let open = is_open(m);
            let ice = nm.ice[other]
                .as_ref()
                .filter(|_| flags.ice != Ice::Remove && open)
                .map(|p| &p.local);
            let with_ice = ice.is_some();
            nm.ice_sent[other] = with_ice;
            any_ice |= with_ice;
            let offer_mux =
                !flags.mux_demux && (flags.mux_offer || flags.mux_require || m.rtcp_mux());
            rewrite_media(
                &mut out.media[i],
                MediaOut {
                    open,
                    leg: nm.call.legs[other],
                    proto: &nm.proto[other],
                    keys: &nm.offered[other],
                    mux: offer_mux,
                    rtcp_line: true,
                    dtls: nm.setup[other].map(|s| (s, fp)),
                    ice,
                },
            );
            // A WebRTC (JSEP) peer refuses a section without a=mid.
            nm.mid_added = with_ice && !m.has("mid");
            nm.offer_mid = m.attrs("mid").first().map(|s| s.to_string());
            if nm.mid_added {
                out.media[i].add("mid", Some(&i.to_string()));
            }
        }
        self.finish_sdp(&mut out, flags, any_ice);
        Ok(out)
    }

    /// A new media section of an offer from `side`: its engine call.
    #[allow(clippy::too_many_arguments)]
    fn new_media(
        &self,
        sdp: &Sdp,
        i: usize,
        m: &super::sdp::Media,
        side: usize,
        their_dtls: &Option<(DtlsLegParams, &'static str)>,
        their: &Option<CryptoAttribute>,
        other_proto: &str,
        ice: [Option<Option<IceCredentials>>; 2],
        flags: &Flags,
    ) -> Result<NgMedia, String> {
        // Each side's ICE-lite leg: fresh credentials of ours, and the side's
        // own when its SDP gave them.
        let ice = ice.map(|i| {
            i.map(|remote| IceLegParams {
                local: IceCredentials::random(),
                remote,
            })
        });
        let other = 1 - side;
        // An ICE leg gets no signalled remote: its nominations say where
        // media goes (or, when ICE will not run, `ice_fallback` the SDP).
        let ice_leg = ice[side].is_some();
        let (remote, remote_rtcp) = (media_addr(sdp, i), rtcp_addr(sdp, i));
        let other_dtls = is_dtls_proto(other_proto);
        let other_secure = other_proto.contains("SAVP") && !other_dtls;
        let suite = their
            .as_ref()
            .map(|c| c.profile)
            .unwrap_or(SrtpProfile::AesCm128HmacSha1_80);
        let ours_side = their.as_ref().map(|c| new_crypto(c.profile, c.tag));
        // Towards a secure other side, one key per suite we support (strongest
        // first, as rtpengine does); its answer picks one.
        let offered_other: Vec<CryptoAttribute> = if other_secure {
            OFFER_SUITES
                .iter()
                .enumerate()
                .map(|(i, &p)| new_crypto(p, i as u32 + 1))
                .collect()
        } else {
            Vec::new()
        };
        let ours_other = offered_other.first().cloned();
        let mut legs = [LegConfig::default(), LegConfig::default()];
        legs[side] = LegConfig {
            remote: remote.filter(|_| !ice_leg),
            remote_rtcp: remote_rtcp.filter(|_| !ice_leg),
            rtcp_mux: m.rtcp_mux(),
            srtp: match (their, &ours_side) {
                (Some(t), Some(o)) => Some(LegSrtp {
                    inbound: config(t)?,
                    outbound: config(o)?,
                }),
                _ => None,
            },
            dtls: their_dtls.as_ref().map(|(p, _)| p.clone()),
            rtcp: flags.rtcp(&m.proto),
            ice: ice[side].clone(),
            ..LegConfig::default()
        };
        // Towards the other side: its keys arrive with the answer; until then
        // its inbound key is one nobody has, so nothing it sends is accepted
        // and nothing goes to it in clear.
        legs[other] = LegConfig {
            rtcp_mux: flags.mux_require,
            // DTLS towards the other side: its answer decides the roles.
            dtls: other_dtls.then(DtlsLegParams::default),
            srtp: match &ours_other {
                Some(o) => Some(LegSrtp {
                    inbound: config(&new_crypto(suite, 1))?,
                    outbound: config(o)?,
                }),
                None => None,
            },
            rtcp: flags.rtcp(other_proto),
            ice: ice[other].clone(),
            ..LegConfig::default()
        };
        let info = self.engine.create_call(legs).map_err(|e| match e {
            EngineError::Limit(s) => format!("Ran out of resources: {s}"),
            e => e.to_string(),
        })?;
        let mut proto = [String::new(), String::new()];
        proto[side] = m.proto.clone();
        proto[other] = other_proto.to_string();
        let mut ours = [None, None];
        ours[side] = ours_side;
        ours[other] = ours_other;
        let mut offered = [Vec::new(), Vec::new()];
        offered[other] = offered_other;
        let mut mux = [false, false];
        mux[side] = m.rtcp_mux();
        let mut rem = [None, None];
        rem[side] = remote;
        let mut rem_rtcp = [None, None];
        rem_rtcp[side] = remote_rtcp;
        let mut ice_peer = [false, false];
        ice_peer[side] = ice_leg && !sdp.is_ice_lite();
        let mut setup = [None, None];
        setup[side] = their_dtls.as_ref().map(|(_, ours)| *ours);
        setup[other] = other_dtls.then_some("actpass");
        Ok(NgMedia {
            kind: m.kind.clone(),
            call: info,
            proto,
            ours,
            offered,
            mux,
            remote: rem,
            remote_rtcp: rem_rtcp,
            setup,
            ice,
            ice_peer,
            ice_sent: [false, false],
            mid_added: false,
            offer_mid: None,
        })
    }

    /// Applies what one side's SDP says (RTP and RTCP addresses, keys,
    /// rtcp-mux) to its leg of an engine call. `addrs` is `None` for a side
    /// that does ICE with us: its checks nominate the addresses (an SDP
    /// address must not replace a nomination), and its ICE leg takes only
    /// nominations (again, if it had fallen back: the side does ICE after
    /// all). Given to an ICE leg (`ice_leg`), they mean ICE will not run
    /// with that side: the leg learns addresses again (see
    /// [`Self::ice_fallback`]).
    fn update_side(
        &self,
        call: CallId,
        side: usize,
        ice_leg: bool,
        addrs: Option<(Option<SocketAddr>, Option<SocketAddr>)>,
        srtp: Option<Option<LegSrtp>>,
        rtcp_mux: bool,
    ) -> Result<(), String> {
        self.engine
            .update_leg(
                call,
                side,
                LegUpdate {
                    remote: addrs.map(|a| a.0),
                    remote_rtcp: addrs.map(|a| a.1),
                    latch: ice_leg.then(|| match addrs {
                        Some(_) => LatchMode::default(),
                        None => LatchMode::Nominated,
                    }),
                    srtp,
                    rtcp_mux: Some(rtcp_mux),
                    ..LegUpdate::default()
                },
            )
            .map_err(|e| e.to_string())
    }

    /// An ICE leg towards a side ICE will not run with (a lite agent, as we
    /// are, or the SDP we sent it had no ICE attributes): no nomination will
    /// ever come, so the leg takes that side's `c=`/`m=` and `a=rtcp`
    /// addresses and learns from the media again, as a leg without ICE (a
    /// DTLS client leg starts its handshake then). The only place, with
    /// [`Self::update_side`], that sets the latch of an ICE leg (but for the
    /// engine's `set_ice`, which puts a leg that gets ICE in a re-offer on
    /// nominations).
    fn ice_fallback(&self, nm: &NgMedia, side: usize) -> Result<(), String> {
        self.engine
            .update_leg(
                nm.call.id,
                side,
                LegUpdate {
                    remote: Some(nm.remote[side]),
                    remote_rtcp: Some(nm.remote_rtcp[side]),
                    latch: Some(LatchMode::default()),
                    ..LegUpdate::default()
                },
            )
            .map_err(|e| e.to_string())
    }

    /// Session-level rewriting of an SDP we send; `ice_lite`: some media
    /// section has our ICE attributes.
    fn finish_sdp(&self, out: &mut Sdp, flags: &Flags, ice_lite: bool) {
        // The session-level c= line too (as rtpengine 10 does, with or without
        // `replace: session-connection`).
        out.set_ip(self.advertise);
        // DTLS attributes are per media section in what we send.
        for a in ["fingerprint", "setup", "tls-id"] {
            out.remove_session_attr(a);
        }
        // The sender's session-level ICE attributes go too (see `Ice`); ours
        // are per media section, but for `a=ice-lite`.
        out.remove_session_ice();
        // No BUNDLE: each media section has its own transport (a group of
        // one section stays, see `Sdp::unbundle`).
        out.unbundle();
        if ice_lite {
            out.add_session_attr("ice-lite", None);
        }
        if flags.replace_origin {
            out.set_origin_ip(self.advertise);
        }
    }

    fn answer(&self, req: &Value) -> Result<Value, String> {
        let call_id = Self::required(req, "call-id")?;
        let from = Self::required(req, "from-tag")?;
        let to = Self::required(req, "to-tag")?;
        let sdp_text = Self::required(req, "sdp")?;
        let sdp = Sdp::parse(sdp_text).map_err(|e| format!("Failed to parse SDP: {e}"))?;
        let mut flags = Flags::of(req)?;
        self.answers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let c = self.lookup(call_id)?.ok_or("Unknown call-id")?;
        let mut guard = c.lock().map_err(|_| "internal error")?;
        if guard.gone {
            return Err("Unknown call-id".into());
        }
        // Applied to a copy, committed when every section is set up.
        let mut call = guard.clone();
        // The answerer is the side that did not offer.
        let side = if call.tags[0] == from {
            1
        } else if call.tags[1] == from {
            0
        } else {
            return Err("Unknown from-tag".into());
        };
        call.tags[side] = to.to_string();
        call.last_signal = now_unix();
        if sdp.media.len() > call.media.len() {
            return Err("answer has more media sections than the offer".into());
        }
        // 1. What each section says (keys, DTLS roles, ICE), checked first.
        let mut plan = Vec::with_capacity(sdp.media.len());
        for (i, m) in sdp.media.iter().enumerate() {
            let Some(nm) = call.media[i].as_mut() else {
                plan.push(None);
                continue;
            };
            let mut dtls = None;
            let srtp = if nm.setup[side].is_some() {
                // We offered DTLS-SRTP: the answer's a=setup decides the roles.
                if !m.is_dtls() && m.port != 0 {
                    return Err(format!(
                        "media {}: we offered UDP/TLS/RTP/SAVP and the answer has {}",
                        i + 1,
                        m.proto
                    ));
                }
                if m.port != 0 {
                    let (params, ours) = dtls_params(&sdp, i)?;
                    nm.setup[side] = Some(ours);
                    dtls = Some(params);
                }
                None
            } else if nm.offered[side].is_empty() {
                Some(None)
            } else {
                let their = offered_crypto(m).ok_or_else(|| {
                    format!(
                        "media {}: the answer has no a=crypto line for our offer",
                        i + 1
                    )
                })?;
                let ours = nm.offered[side]
                    .iter()
                    .find(|o| o.tag == their.tag && o.profile == their.profile)
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "media {}: the answer picked a crypto suite we did not offer",
                            i + 1
                        )
                    })?;
                let s = LegSrtp {
                    inbound: config(&their)?,
                    outbound: config(&ours)?,
                };
                nm.ours[side] = Some(ours);
                Some(Some(s))
            };
            // ICE towards the answerer: its credentials, new ones (an ICE
            // restart from its side) again. ICE runs with it when our offer
            // had ICE too and it is not lite as we are.
            let (mut ice, mut ice_peer) = (None, false);
            let sent = nm.ice_sent[side];
            let runs = sent && !sdp.is_ice_lite();
            if let Some(p) = nm.ice[side].as_mut().filter(|_| m.port != 0) {
                match ice_credentials(&sdp, i)? {
                    Some(c) if p.remote.as_ref() != Some(&c) => {
                        p.remote = Some(c);
                        ice = Some(p.clone());
                        ice_peer = runs;
                    }
                    Some(_) => ice_peer = runs,
                    None if !sent => {}
                    None => flags.warnings.push(format!(
                        "media {}: the answer has no a=ice-ufrag/a=ice-pwd: no ICE with the \
                         answerer, media goes to its c=/m= address",
                        i + 1
                    )),
                }
            }
            nm.remote[side] = media_addr(&sdp, i);
            nm.remote_rtcp[side] = rtcp_addr(&sdp, i);
            nm.ice_peer[side] = ice_peer;
            nm.mux[side] = m.rtcp_mux();
            plan.push(Some((srtp, dtls, ice, ice_peer)));
        }
        let answerer_ice = call.media.iter().flatten().any(|m| m.ice[side].is_some());
        if sdp.has_ice() && !answerer_ice && flags.ice != Ice::Remove {
            flags
                .warnings
                .push("ICE attributes removed: no ICE was offered to the answerer".into());
        }
        if answerer_ice && sdp.is_ice_lite() {
            flags.warnings.push(LITE_PEER.into());
        }
        flags.warnings.extend(bundle_warning(&sdp));
        // 2. The engine legs towards the answerer, and the SDP for the offerer:
        // our address and port on its leg; rtcp-mux when it offered it, else
        // its RTCP port.
        let mut out = sdp.clone();
        let offerer = 1 - side;
        let fp = self.engine.fingerprint();
        let mut any_ice = false;
        if flags.ice == Ice::Force
            && !call
                .media
                .iter()
                .flatten()
                .any(|m| m.ice[offerer].is_some())
        {
            flags.warnings.push(
                "ICE=force ignored: the offer had no ICE, so the answer to it cannot have it \
                 (RFC 8839)"
                    .into(),
            );
        }
        for (i, m) in sdp.media.iter().enumerate() {
            let (Some(nm), Some((srtp, dtls, ice, ice_peer))) =
                (call.media[i].as_mut(), plan[i].take())
            else {
                // A stream that was closed: rejected towards the offerer.
                out.media[i].port = 0;
                out.media[i].remove_ice();
                continue;
            };
            // The answerer doing ICE may have nominated already (its checks
            // start with our offer): its SDP address must not replace that.
            let addrs = (!ice_peer).then(|| (nm.remote[side], nm.remote_rtcp[side]));
            let ice_leg = nm.ice[side].is_some();
            self.update_side(nm.call.id, side, ice_leg, addrs, srtp, m.rtcp_mux())?;
            if let Some(params) = dtls {
                self.engine
                    .set_dtls(nm.call.id, side, params)
                    .map_err(|e| e.to_string())?;
            }
            if let Some(params) = ice {
                self.engine
                    .set_ice(nm.call.id, side, params)
                    .map_err(|e| e.to_string())?;
            }
            let our_ice = nm.ice[offerer]
                .as_ref()
                .filter(|_| flags.ice != Ice::Remove && m.port != 0)
                .map(|p| &p.local);
            let sent = our_ice.is_some();
            any_ice |= sent;
            rewrite_media(
                &mut out.media[i],
                MediaOut {
                    open: m.port != 0,
                    leg: nm.call.legs[offerer],
                    proto: &nm.proto[offerer],
                    keys: nm.ours[offerer].as_slice(),
                    mux: nm.mux[offerer],
                    rtcp_line: !nm.mux[offerer],
                    dtls: nm.setup[offerer].map(|s| (s, fp)),
                    ice: our_ice,
                },
            );
            if nm.mid_added {
                out.media[i].remove("mid");
            } else if let Some(mid) = nm.offer_mid.as_deref().filter(|_| our_ice.is_some()) {
                // Back to an ICE (JSEP) offerer: its mid, also when the
                // answerer left it out.
                out.media[i].remove("mid");
                out.media[i].add("mid", Some(mid));
            }
            nm.ice_sent[offerer] = sent;
            if nm.ice[offerer].is_some() && nm.ice_peer[offerer] && m.port != 0 && !sent {
                // The offerer offered ICE, and this answer says no: it will
                // not check us.
                self.ice_fallback(nm, offerer)?;
                nm.ice_peer[offerer] = false;
            }
        }
        self.finish_sdp(&mut out, &flags, any_ice);
        *guard = call;
        let mut r = ok();
        r.set("sdp", Value::Bytes(out.render().into_bytes()));
        Self::warn(&mut r, &flags);
        Ok(r)
    }

    fn totals(stats: &[(usize, SessionSnapshot)]) -> Value {
        let (mut rp, mut rb, mut re, mut cp, mut cb) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for (_, s) in stats {
            for l in &s.legs {
                rp += l.counters.rx_rtp;
                cp += l.counters.rx_rtcp;
                rb += l.counters.rx_bytes;
                re += l.counters.dropped_total();
            }
        }
        let _ = &mut cb;
        let mut rtp = Value::dict();
        rtp.set("packets", int(rp))
            .set("bytes", int(rb))
            .set("errors", int(re));
        let mut rtcp = Value::dict();
        rtcp.set("packets", int(cp))
            .set("bytes", int(cb))
            .set("errors", int(0));
        let mut t = Value::dict();
        t.set("RTP", rtp).set("RTCP", rtcp);
        t
    }

    /// RTCP figures of a leg as an ng dictionary (integers: percent, ms, us,
    /// MOS x 10, bits per second).
    fn rtcp_dict(r: &LegRtcpStats) -> Value {
        let q = &r.quality;
        let pct = |x: f64| int((x * 100.0).round().max(0.0) as u64);
        let mut d = Value::dict();
        d.set(
            "mode",
            Value::str(match r.mode {
                RtcpMode::Terminate => "terminate",
                RtcpMode::Forward => "pass-through",
            }),
        )
        .set("reports sent", int(r.reports_sent))
        .set("reports received", int(r.received.compounds))
        .set("malformed", int(r.received.malformed))
        .set("packet loss", pct(q.loss))
        .set("total packet loss", pct(q.loss_total))
        .set("jitter", int(q.jitter_ms.round().max(0.0) as u64))
        .set("bitrate", int(q.rx_bitrate.round().max(0.0) as u64));
        if let Some(rtt) = q.rtt_ms {
            d.set(
                "round-trip time",
                int((rtt * 1000.0).round().max(0.0) as u64),
            );
        }
        if let Some(m) = q.mos {
            d.set("MOS", int((m * 10.0).round() as u64));
        }
        if let Some(l) = q.remote_loss {
            d.set("remote packet loss", pct(l));
        }
        if let Some(sr) = r.remote_sr {
            d.set("remote SSRC", int(u64::from(sr.ssrc)))
                .set("remote packets", int(u64::from(sr.packets)))
                .set("remote octets", int(u64::from(sr.octets)))
                .set("remote NTP", Value::str(&format!("{:016x}", sr.ntp)));
        }
        d
    }

    /// rtpengine's per-SSRC `average MOS` / `lowest MOS` entries.
    fn ssrc_dict(r: &LegRtcpStats) -> Option<Value> {
        let q = &r.quality;
        let entry = |mos: f64| {
            let mut e = Value::dict();
            e.set("MOS", int((mos * 10.0).round() as u64))
                .set(
                    "round-trip time",
                    int((q.rtt_ms.unwrap_or(0.0) * 1000.0).round().max(0.0) as u64),
                )
                .set("jitter", int(q.jitter_ms.round().max(0.0) as u64))
                .set("packet loss", int((q.loss * 100.0).round().max(0.0) as u64));
            e
        };
        let avg = r.mos_average?;
        let mut d = Value::dict();
        d.set("average MOS", entry(avg));
        if let Some(low) = r.mos_lowest {
            d.set("lowest MOS", entry(low));
        }
        Some(d)
    }

    /// The query reply shape: created, last signal, tags (with medias and
    /// streams, each with its RTCP figures), per-SSRC MOS, totals.
    fn describe(
        call_id: &str,
        call: &NgCall,
        stats: &[(usize, SessionSnapshot)],
        rtcp: &[(usize, [LegRtcpStats; 2])],
    ) -> Value {
        let mut r = ok();
        r.set("created", int(call.created))
            .set("last signal", int(call.last_signal))
            .set("call-id", Value::str(call_id));
        let mut tags = Value::dict();
        let mut ssrcs = Value::dict();
        for side in 0..2 {
            if call.tags[side].is_empty() {
                continue;
            }
            let mut medias = Vec::new();
            for (i, m) in call.engine_calls() {
                let leg = stats
                    .iter()
                    .find(|(k, _)| *k == i)
                    .map(|(_, s)| &s.legs[side]);
                let mut st = Value::dict();
                st.set("packets", int(leg.map(|l| l.counters.rx_rtp).unwrap_or(0)))
                    .set("bytes", int(leg.map(|l| l.counters.rx_bytes).unwrap_or(0)))
                    .set(
                        "errors",
                        int(leg.map(|l| l.counters.dropped_total()).unwrap_or(0)),
                    );
                let mut stream = Value::dict();
                stream.set("local port", int(u64::from(m.call.legs[side].local.port())));
                if let Some(q) = leg.and_then(|l| l.quality) {
                    stream.set("SSRC", int(u64::from(q.ssrc)));
                }
                if let Some((_, r)) = rtcp.iter().find(|(k, _)| *k == i) {
                    stream.set("RTCP", Self::rtcp_dict(&r[side]));
                    if let (Some(q), Some(d)) =
                        (leg.and_then(|l| l.quality), Self::ssrc_dict(&r[side]))
                    {
                        ssrcs.set(&q.ssrc.to_string(), d);
                    }
                }
                let mut ep = Value::dict();
                if let Some(a) = leg.and_then(|l| l.remote).or(m.remote[side]) {
                    ep.set(
                        "family",
                        Value::str(if a.is_ipv4() { "IPv4" } else { "IPv6" }),
                    )
                    .set("address", Value::str(&a.ip().to_string()))
                    .set("port", int(u64::from(a.port())));
                }
                stream.set("endpoint", ep).set("stats", st);
                let mut md = Value::dict();
                md.set("index", int(i as u64 + 1))
                    .set("type", Value::str(&m.kind))
                    .set("protocol", Value::str(&m.proto[side]))
                    .set("streams", Value::List(vec![stream]));
                medias.push(md);
            }
            let mut t = Value::dict();
            t.set("tag", Value::str(&call.tags[side]))
                .set("created", int(call.created))
                .set("medias", Value::List(medias));
            tags.set(&call.tags[side], t);
        }
        r.set("tags", tags)
            .set("SSRC", ssrcs)
            .set("totals", Self::totals(stats));
        r
    }

    fn rtcp_stats(&self, call: &NgCall) -> Vec<(usize, [LegRtcpStats; 2])> {
        call.engine_calls()
            .filter_map(|(i, m)| self.engine.rtcp_stats(m.call.id).ok().map(|s| (i, s)))
            .collect()
    }

    fn snapshots(&self, call: &NgCall) -> Vec<(usize, SessionSnapshot)> {
        call.engine_calls()
            .filter_map(|(i, m)| self.engine.query(m.call.id).ok().map(|s| (i, s)))
            .collect()
    }

    fn query(&self, req: &Value) -> Result<Value, String> {
        let call_id = Self::required(req, "call-id")?;
        let call = {
            let c = self.lookup(call_id)?.ok_or("Unknown call-id")?;
            let call = c.lock().map_err(|_| "internal error")?;
            if call.gone {
                return Err("Unknown call-id".into());
            }
            call.clone()
        };
        let stats = self.snapshots(&call);
        let rtcp = self.rtcp_stats(&call);
        Ok(Self::describe(call_id, &call, &stats, &rtcp))
    }

    /// Removes `c` from the map if it is still the call of `call_id` (and marks
    /// it gone for commands waiting on its lock).
    fn forget(&self, call_id: &str, c: &CallRef, call: &mut NgCall) {
        call.gone = true;
        if let Ok(mut calls) = self.calls.lock() {
            if calls.get(call_id).is_some_and(|x| Arc::ptr_eq(x, c)) {
                calls.remove(call_id);
            }
        }
    }

    fn delete(&self, req: &Value) -> Result<Value, String> {
        let call_id = Self::required(req, "call-id")?;
        let not_found = || {
            // As rtpengine: deleting what is not there is not an error (proxies
            // delete on every final reply), but it is flagged.
            let mut r = ok();
            r.set(
                "warning",
                Value::str("Call-ID not found or tags didn't match"),
            );
            Ok(r)
        };
        let Some(c) = self.lookup(call_id)? else {
            return not_found();
        };
        let mut call = c.lock().map_err(|_| "internal error")?;
        if call.gone {
            return not_found();
        }
        let before = call.clone();
        let rtcp = self.rtcp_stats(&call);
        let mut stats = Vec::new();
        let mut failed = None;
        // Each engine call is deleted, or the call is kept with those that
        // could not be (a retried delete finishes the job): no engine call is
        // ever left without its ng call.
        for (i, slot) in call.media.iter_mut().enumerate() {
            let Some(m) = slot else { continue };
            match self.engine.delete_call(m.call.id) {
                Ok(s) => stats.push((i, s)),
                Err(EngineError::NoSuchCall(_)) => {}
                Err(e) => {
                    failed = Some(e);
                    continue;
                }
            }
            // (Its owner is forgotten when the engine reports it closed, so
            // that the close is logged with the call-id.)
            *slot = None;
        }
        if let Some(e) = failed {
            return Err(format!("Failed to delete the call's media ({e}): retry"));
        }
        self.forget(call_id, &c, &mut call);
        self.deletes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Self::describe(call_id, &before, &stats, &rtcp))
    }

    fn list(&self, req: &Value) -> Value {
        let limit = req
            .get("limit")
            .and_then(Value::as_int)
            .unwrap_or(32)
            .max(0) as usize;
        let calls = self.calls.lock().map(|c| {
            let mut v: Vec<String> = c.keys().cloned().collect();
            v.sort();
            v
        });
        let mut r = ok();
        r.set(
            "calls",
            Value::List(
                calls
                    .unwrap_or_default()
                    .iter()
                    .take(limit)
                    .map(|c| Value::str(c))
                    .collect(),
            ),
        );
        r
    }

    fn statistics(&self) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.calls.lock().map(|c| c.len()).unwrap_or(0) as u64;
        let mut cur = Value::dict();
        cur.set("sessionsown", int(n))
            .set("sessionsforeign", int(0))
            .set("sessionstotal", int(n));
        let mut total = Value::dict();
        total
            .set("offers", int(self.offers.load(Relaxed)))
            .set("answers", int(self.answers.load(Relaxed)))
            .set("deletes", int(self.deletes.load(Relaxed)))
            .set("errors", int(self.errors.load(Relaxed)));
        let mut s = Value::dict();
        s.set("currentstatistics", cur)
            .set("totalstatistics", total);
        let mut r = ok();
        r.set("statistics", s);
        r
    }

    /// Forgets the media of an engine call that the engine closed (media
    /// timeout); its slot stays, empty, so later sections keep their indices. A
    /// call with no media left is forgotten.
    pub fn engine_call_closed(&self, id: CallId) {
        let Some(owner) = self.owners.lock().ok().and_then(|mut o| o.remove(&id)) else {
            return;
        };
        let Ok(Some(c)) = self.lookup(&owner) else {
            return;
        };
        let Ok(mut call) = c.lock() else {
            return;
        };
        for slot in call.media.iter_mut() {
            if slot.as_ref().is_some_and(|m| m.call.id == id) {
                *slot = None;
            }
        }
        if !call.gone && call.media.iter().all(Option::is_none) {
            self.forget(&owner, &c, &mut call);
        }
    }

    /// The ng call-id an engine call belongs to (for log lines).
    pub fn call_id_of(&self, id: CallId) -> Option<String> {
        self.owners.lock().ok()?.get(&id).cloned()
    }

    /// Engine calls the ng calls refer to (each closed engine call is forgotten
    /// when the engine reports it closed).
    pub fn engine_call_count(&self) -> usize {
        self.owners.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// Calls now (for metrics).
    pub fn call_count(&self) -> usize {
        self.calls.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{Gateway, GatewayConfig};

    fn gateway() -> Gateway {
        let (lo, hi) = crate::interop::free_port_range(40);
        Gateway::start(&GatewayConfig {
            listen_ng: "127.0.0.1:0".parse().unwrap(),
            port_min: lo,
            port_max: hi,
            backend: "mmsg".into(),
            max_calls: 10,
            ..GatewayConfig::default()
        })
        .unwrap()
    }

    /// One ng command straight into the server (a fresh cookie each time).
    fn cmd(gw: &Gateway, kv: &[(&str, &str)], list: &[(&str, &[&str])]) -> Value {
        static COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let c = COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut d = Value::dict();
        for (k, v) in kv {
            d.set(k, Value::str(v));
        }
        for (k, v) in list {
            d.set(k, Value::List(v.iter().map(|s| Value::str(s)).collect()));
        }
        let mut msg = format!("u{c} ").into_bytes();
        d.encode_into(&mut msg);
        let r = gw.ng().handle(&msg).expect("a reply");
        let sp = r.iter().position(|&b| b == b' ').unwrap();
        Value::decode(&r[sp + 1..]).unwrap()
    }

    fn sdp_of(r: &Value) -> Sdp {
        assert_eq!(r.get_str("result"), Some("ok"), "{r:?}");
        Sdp::parse(r.get_str("sdp").unwrap()).unwrap()
    }

    fn plain(port: u16, extra: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n{extra}a=sendrecv\r\n"
        )
    }

    const UFRAG_A: &str = "a=ice-ufrag:Aufr\r\na=ice-pwd:AAAAAAAAAAAAAAAAAAAAAAAA\r\n";
    const UFRAG_B: &str = "a=ice-ufrag:Bufr\r\na=ice-pwd:BBBBBBBBBBBBBBBBBBBBBBBB\r\n";
    const CAND: &str = "a=candidate:9 1 udp 2130706431 192.0.2.9 5000 typ host\r\n";

    /// What a side that does ICE with us gets: `a=ice-lite`, our credentials
    /// (fresh ones, not the peer's), our host candidates only (component 2 on
    /// the `a=rtcp` port unless rtcp-mux), `a=end-of-candidates`.
    fn assert_ice_lite(s: &Sdp, not_ufrag: &str) -> (String, String) {
        assert!(s.is_ice_lite(), "{}", s.render());
        let m = &s.media[0];
        let (u, p) = s.ice_ufrag_pwd(0);
        let (u, p) = (u.unwrap().to_string(), p.unwrap().to_string());
        assert_ne!(u, not_ufrag);
        assert!(u.len() >= 4 && p.len() >= 22);
        let cands = m.attrs("candidate");
        let ip = s.media_ip(0).unwrap();
        let mut want = vec![sdp::host_candidate(1, SocketAddr::new(ip, m.port))];
        if !m.rtcp_mux() {
            let rtcp = m.rtcp_port().expect("a=rtcp without rtcp-mux");
            want.push(sdp::host_candidate(2, SocketAddr::new(ip, rtcp)));
        }
        assert_eq!(cands, want, "{}", s.render());
        assert!(m.has("end-of-candidates"));
        (u, p)
    }

    fn assert_no_ice(s: &Sdp) {
        assert!(!s.has_ice(), "{}", s.render());
    }

    use super::super::sdp;

    /// The engine leg's remote RTP address.
    fn leg_remote(gw: &Gateway, call_id: &str, side: usize) -> Option<SocketAddr> {
        leg_remotes(gw, call_id, side).0
    }

    /// The engine leg's remote RTP and RTCP addresses (media section 0).
    fn leg_remotes(
        gw: &Gateway,
        call_id: &str,
        side: usize,
    ) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let c = gw.ng().lookup(call_id).unwrap().unwrap();
        let id = c.lock().unwrap().media[0].as_ref().unwrap().call.id;
        let leg = &gw.ng().engine().query(id).unwrap().legs[side];
        (leg.remote, leg.remote_rtcp)
    }

    /// The RTP and RTCP addresses of `plain(port, ..)` without rtcp-mux.
    fn sdp_addrs(port: u16) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let a = |p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        (a(port), a(port + 1))
    }

    /// `plain(port, extra)` from a lite agent.
    fn lite(port: u16, extra: &str) -> String {
        plain(port, extra).replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n")
    }

    /// A lite peer never checks us (two lite agents do not): its leg takes
    /// its SDP addresses, the offerer's at the offer, the answerer's at the
    /// answer, whatever our SDP to it says.
    #[test]
    fn a_lite_peer_gets_its_sdp_addresses() {
        let gw = gateway();
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "lite"),
                ("from-tag", "a"),
                ("sdp", &lite(4000, UFRAG_A)),
            ],
            &[],
        );
        assert!(
            off.get_str("warning").unwrap().contains("ICE-lite"),
            "{off:?}"
        );
        assert_ice_lite(&sdp_of(&off), "Aufr");
        assert_eq!(leg_remotes(&gw, "lite", 0), sdp_addrs(4000));
        assert_eq!(leg_remotes(&gw, "lite", 1), (None, None));
        let ans = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "lite"),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &lite(4100, UFRAG_B)),
            ],
            &[],
        );
        assert!(
            ans.get_str("warning").unwrap().contains("ICE-lite"),
            "{ans:?}"
        );
        assert_ice_lite(&sdp_of(&ans), "Bufr");
        assert_eq!(leg_remotes(&gw, "lite", 0), sdp_addrs(4000));
        assert_eq!(leg_remotes(&gw, "lite", 1), sdp_addrs(4100));
        // A re-offer from a lite agent: its new address, too.
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "lite"),
                ("from-tag", "a"),
                ("sdp", &lite(4200, UFRAG_A)),
            ],
            &[],
        );
        sdp_of(&off);
        assert_eq!(leg_remotes(&gw, "lite", 0), sdp_addrs(4200));
        gw.shutdown();
    }

    /// A lite sender that adds ICE in a re-offer gets an ICE leg, but no
    /// checks will come from it: its leg takes its new SDP addresses, as a
    /// lite offerer's does in a new call; the receiver gets ICE-lite.
    #[test]
    fn a_lite_sender_adding_ice_in_a_re_offer_falls_back() {
        let gw = gateway();
        let offer = |sdp: &str| {
            cmd(
                &gw,
                &[
                    ("command", "offer"),
                    ("call-id", "late-lite"),
                    ("from-tag", "a"),
                    ("sdp", sdp),
                ],
                &[],
            )
        };
        assert_no_ice(&sdp_of(&offer(&plain(4000, ""))));
        let r = offer(&lite(4200, UFRAG_A));
        assert!(r.get_str("warning").unwrap().contains("ICE-lite"), "{r:?}");
        assert_ice_lite(&sdp_of(&r), "Aufr");
        assert_eq!(leg_remotes(&gw, "late-lite", 0), sdp_addrs(4200));
        let c = gw.ng().lookup("late-lite").unwrap().unwrap();
        let nm = c.lock().unwrap().media[0].clone().unwrap();
        assert_eq!(nm.ice[0].clone().unwrap().remote.unwrap().ufrag, "Aufr");
        assert!(!nm.ice_peer[0]);
        assert!(nm.ice[1].as_ref().is_some_and(|p| p.remote.is_none()));
        gw.shutdown();
    }

    /// BUNDLE is never passed on (each section has its own engine call,
    /// ports and credentials), and said; a `bundle-only` section with port 0
    /// gets a port of its own.
    #[test]
    fn bundle_is_taken_out_and_said() {
        let gw = gateway();
        let offer = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             a=group:BUNDLE 0 1\r\n{UFRAG_A}\
             m=audio 4000 RTP/AVP 0\r\na=mid:0\r\na=rtcp-mux\r\n{CAND}\
             m=video 0 RTP/AVP 96\r\na=mid:1\r\na=bundle-only\r\na=rtcp-mux\r\n"
        );
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "bundle"),
                ("from-tag", "a"),
                ("sdp", &offer),
            ],
            &[],
        );
        let w = off.get_str("warning").unwrap_or_default();
        assert!(w.contains("BUNDLE not supported"), "{off:?}");
        assert!(w.contains("bundle-only media 2"), "{off:?}");
        let to_b = sdp_of(&off);
        let text = to_b.render();
        assert!(!text.contains("bundle-only"), "{text}");
        assert_eq!(to_b.bundle_groups(), vec![vec![0]], "{text}");
        let (p0, p1) = (to_b.media[0].port, to_b.media[1].port);
        assert!(p0 != 0 && p1 != 0 && p0 != p1, "{text}");
        for i in 0..2 {
            assert!(to_b.ice_ufrag_pwd(i).0.is_some(), "{text}");
        }
        // The answerer echoes the group: cut down in the answer, said.
        let answer = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      a=group:BUNDLE 0 1\r\nm=audio 4100 RTP/AVP 0\r\na=mid:0\r\na=rtcp-mux\r\n\
                      m=video 4100 RTP/AVP 96\r\na=mid:1\r\na=rtcp-mux\r\n";
        let ans = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "bundle"),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", answer),
            ],
            &[],
        );
        assert!(
            ans.get_str("warning")
                .unwrap_or_default()
                .contains("BUNDLE not supported"),
            "{ans:?}"
        );
        let to_a = sdp_of(&ans);
        let text = to_a.render();
        assert_eq!(to_a.bundle_groups(), vec![vec![0]], "{text}");
        let (p0, p1) = (to_a.media[0].port, to_a.media[1].port);
        assert!(p0 != 0 && p1 != 0 && p0 != p1, "{text}");
        // One section: nothing bundled, nothing said, the group kept (a
        // max-bundle browser needs one).
        let one = plain(4000, "").replace("t=0 0\r\n", "t=0 0\r\na=group:BUNDLE 0\r\n");
        let r = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "one"),
                ("from-tag", "a"),
                ("sdp", &one.replace("a=sendrecv", "a=mid:0\r\na=sendrecv")),
            ],
            &[],
        );
        assert!(r.get("warning").is_none(), "{r:?}");
        assert_eq!(sdp_of(&r).bundle_groups(), vec![vec![0]]);
        gw.shutdown();
    }

    /// The WebRTC bridge: a plain SIP offer with ICE=force and DTLS-SRTP
    /// towards the receiver gives it ICE-lite (one candidate: rtcp-mux
    /// required); its answer's credentials are taken, its candidates never
    /// reach the SIP side.
    #[test]
    fn ice_force_gives_the_receiver_ice_lite() {
        let gw = gateway();
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "force"),
                ("from-tag", "sip"),
                ("sdp", &plain(4000, "")),
                ("ICE", "force"),
                ("transport-protocol", "UDP/TLS/RTP/SAVPF"),
            ],
            &[("rtcp-mux", &["require"])],
        );
        assert!(off.get("warning").is_none(), "{off:?}");
        let to_web = sdp_of(&off);
        assert_eq!(to_web.media[0].attrs("mid"), ["0"], "JSEP needs a=mid");
        assert!(to_web.media[0].rtcp_mux());
        assert_eq!(to_web.media[0].attrs("candidate").len(), 1);
        let (ufrag, _) = assert_ice_lite(&to_web, "");
        let fp = to_web.media[0].attrs("fingerprint")[0].to_string();
        let web = format!(
            "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n{UFRAG_B}{CAND}\
             a=fingerprint:{fp}\r\na=setup:active\r\na=rtcp-mux\r\na=sendrecv\r\n"
        );
        let ans = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "force"),
                ("from-tag", "sip"),
                ("to-tag", "web"),
                ("sdp", &web),
                ("ICE", "remove"),
                ("transport-protocol", "RTP/AVP"),
            ],
            &[],
        );
        assert!(ans.get("warning").is_none(), "{ans:?}");
        let to_sip = sdp_of(&ans);
        assert_no_ice(&to_sip);
        assert!(!to_sip.media[0].has("mid"), "the offer had no a=mid");
        assert!(!to_sip.render().contains("192.0.2.9"));
        let nm = gw.ng().lookup("force").unwrap().unwrap();
        let nm = nm.lock().unwrap().media[0].clone().unwrap();
        assert!(nm.ice[0].is_none());
        let ice = nm.ice[1].clone().unwrap();
        assert_eq!(ice.local.ufrag, ufrag);
        assert_eq!(ice.remote.unwrap().ufrag, "Bufr");
        // Bad credentials in an answer: a clear error, the call stays.
        let bad = web.replace("a=ice-ufrag:Bufr", "a=ice-ufrag:B:x");
        let r = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "force"),
                ("from-tag", "sip"),
                ("to-tag", "web"),
                ("sdp", &bad),
            ],
            &[],
        );
        assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
        assert!(r.get_str("error-reason").unwrap().contains("ice-ufrag"));
        assert_eq!(gw.ng().call_count(), 1);
        gw.shutdown();
    }

    /// ICE=default: an offer with ICE gets ICE-lite on both sides (the
    /// offerer in the answer, the receiver in the offer), RTCP on its own
    /// port as component 2; an answer without ICE is warned about.
    #[test]
    fn ice_default_follows_the_offer() {
        let gw = gateway();
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "dflt"),
                ("from-tag", "a"),
                ("sdp", &plain(4000, &format!("{UFRAG_A}{CAND}a=mid:a0\r\n"))),
            ],
            &[],
        );
        assert!(off.get("warning").is_none(), "{off:?}");
        let to_b = sdp_of(&off);
        assert!(!to_b.media[0].rtcp_mux());
        assert_eq!(to_b.media[0].attrs("candidate").len(), 2);
        let (ub, _) = assert_ice_lite(&to_b, "Aufr");
        let ans = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "dflt"),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &plain(4100, UFRAG_B)),
            ],
            &[],
        );
        assert!(ans.get("warning").is_none(), "{ans:?}");
        let to_a = sdp_of(&ans);
        let (ua, _) = assert_ice_lite(&to_a, "Bufr");
        assert_ne!(ua, ub, "each leg has its own credentials");
        assert_eq!(
            to_a.media[0].attrs("mid"),
            ["a0"],
            "the offerer's mid, kept"
        );
        // Sides doing ICE: their checks, not their SDP, say where media goes.
        assert_eq!(leg_remote(&gw, "dflt", 0), None);
        assert_eq!(leg_remote(&gw, "dflt", 1), None);
        assert_ne!(to_a.media[0].port, to_b.media[0].port);
        // The same answer without ICE: said, not refused.
        let ans = cmd(
            &gw,
            &[
                ("command", "answer"),
                ("call-id", "dflt"),
                ("from-tag", "a"),
                ("to-tag", "b"),
                ("sdp", &plain(4100, "")),
            ],
            &[],
        );
        assert!(
            ans.get_str("warning").unwrap().contains("no a=ice-ufrag"),
            "{ans:?}"
        );
        // No ICE from the answerer after all: its SDP address is used.
        assert_eq!(
            leg_remote(&gw, "dflt", 1),
            Some("127.0.0.1:4100".parse().unwrap())
        );
        // Without ICE in the offer, none is added.
        let off = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "none"),
                ("from-tag", "a"),
                ("sdp", &plain(4200, "")),
            ],
            &[],
        );
        assert_no_ice(&sdp_of(&off));
        gw.shutdown();
    }

    /// ICE=remove in the offer keeps the receiver free of ICE but not the
    /// offerer (its answer has ICE-lite unless that answer says remove too, or
    /// the offer said `reject ICE`).
    #[test]
    fn ice_remove_and_reject_ice() {
        let gw = gateway();
        let offer = |call: &str, flags: &[&str]| {
            sdp_of(&cmd(
                &gw,
                &[
                    ("command", "offer"),
                    ("call-id", call),
                    ("from-tag", "a"),
                    ("sdp", &plain(4000, &format!("{UFRAG_A}{CAND}"))),
                    ("ICE", "remove"),
                ],
                &[("flags", flags)],
            ))
        };
        let answer = |call: &str, ice: &str| {
            sdp_of(&cmd(
                &gw,
                &[
                    ("command", "answer"),
                    ("call-id", call),
                    ("from-tag", "a"),
                    ("to-tag", "b"),
                    ("sdp", &plain(4100, "")),
                    ("ICE", ice),
                ],
                &[],
            ))
        };
        assert_no_ice(&offer("rm1", &[]));
        assert_ice_lite(&answer("rm1", "force"), "Aufr");
        // The offerer's checks, not its SDP, say where its media goes.
        assert_eq!(leg_remotes(&gw, "rm1", 0), (None, None));
        assert_no_ice(&offer("rm2", &[]));
        assert_no_ice(&answer("rm2", "remove"));
        // No ICE back to the offerer: it will never check us, its SDP
        // addresses are used.
        assert_eq!(leg_remotes(&gw, "rm2", 0), sdp_addrs(4000));
        assert_no_ice(&offer("rm3", &["reject ICE"]));
        assert_no_ice(&answer("rm3", "force"));
        assert_eq!(
            leg_remote(&gw, "rm3", 0),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        // ICE with both sides, then a re-offer without ICE towards the
        // answerer: its answer without ICE is no surprise (no warning), and
        // its SDP addresses are used.
        let ans = |ice: &str| {
            cmd(
                &gw,
                &[
                    ("command", "answer"),
                    ("call-id", "rm4"),
                    ("from-tag", "a"),
                    ("to-tag", "b"),
                    ("sdp", &plain(4100, ice)),
                ],
                &[],
            )
        };
        let off = |ice: &str| {
            cmd(
                &gw,
                &[
                    ("command", "offer"),
                    ("call-id", "rm4"),
                    ("from-tag", "a"),
                    ("sdp", &plain(4000, UFRAG_A)),
                    ("ICE", ice),
                ],
                &[],
            )
        };
        assert_ice_lite(&sdp_of(&off("default")), "Aufr");
        assert_ice_lite(&sdp_of(&ans(UFRAG_B)), "Bufr");
        assert_eq!(leg_remotes(&gw, "rm4", 1), (None, None));
        assert_no_ice(&sdp_of(&off("remove")));
        let r = ans("");
        assert!(r.get("warning").is_none(), "{r:?}");
        assert_ice_lite(&sdp_of(&r), "Bufr");
        assert_eq!(leg_remotes(&gw, "rm4", 0), (None, None));
        assert_eq!(leg_remotes(&gw, "rm4", 1), sdp_addrs(4100));
        gw.shutdown();
    }

    /// New credentials in a re-offer are an ICE restart: ours change too;
    /// the same ones keep ours.
    #[test]
    fn ice_restart_in_a_re_offer() {
        let gw = gateway();
        let round = |a_ice: &str| {
            let off = cmd(
                &gw,
                &[
                    ("command", "offer"),
                    ("call-id", "restart"),
                    ("from-tag", "a"),
                    ("sdp", &plain(4000, a_ice)),
                ],
                &[],
            );
            let (ub, _) = assert_ice_lite(&sdp_of(&off), "");
            let ans = cmd(
                &gw,
                &[
                    ("command", "answer"),
                    ("call-id", "restart"),
                    ("from-tag", "a"),
                    ("to-tag", "b"),
                    ("sdp", &plain(4100, UFRAG_B)),
                ],
                &[],
            );
            let (ua, _) = assert_ice_lite(&sdp_of(&ans), "");
            (ua, ub)
        };
        let first = round(UFRAG_A);
        assert_eq!(round(UFRAG_A), first, "same credentials: no restart");
        let restarted = round(&UFRAG_A.replace("Aufr", "Anew"));
        assert_ne!(restarted.0, first.0, "the offerer's leg restarted");
        assert_eq!(restarted.1, first.1, "the other leg did not");
        let nm = gw.ng().lookup("restart").unwrap().unwrap();
        let nm = nm.lock().unwrap().media[0].clone().unwrap();
        assert_eq!(nm.ice[0].clone().unwrap().remote.unwrap().ufrag, "Anew");
        gw.shutdown();
    }

    /// Bad ICE attributes are clear errors that leave no call; what the relay
    /// cannot do is said.
    #[test]
    fn bad_ice_attributes_and_options() {
        let gw = gateway();
        let offer = |call: &str, extra: &str, ice: &str| {
            cmd(
                &gw,
                &[
                    ("command", "offer"),
                    ("call-id", call),
                    ("from-tag", "a"),
                    ("sdp", &plain(4000, extra)),
                    ("ICE", ice),
                ],
                &[],
            )
        };
        for (extra, why) in [
            ("a=ice-ufrag:abcd\r\n", "without a=ice-pwd"),
            (
                "a=ice-pwd:AAAAAAAAAAAAAAAAAAAAAAAA\r\n",
                "without a=ice-ufrag",
            ),
            (
                "a=ice-ufrag:ab\r\na=ice-pwd:AAAAAAAAAAAAAAAAAAAAAAAA\r\n",
                "bad a=ice-ufrag",
            ),
            ("a=ice-ufrag:abcd\r\na=ice-pwd:short\r\n", "bad a=ice-pwd"),
            (
                "a=ice-ufrag:ab cd\r\na=ice-pwd:AAAAAAAAAAAAAAAAAAAAAAAA\r\n",
                "bad a=ice-ufrag",
            ),
        ] {
            let r = offer("bad", extra, "default");
            assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
            assert!(r.get_str("error-reason").unwrap().contains(why), "{r:?}");
        }
        assert_eq!(gw.ng().call_count(), 0);
        assert_eq!(gw.ng().engine_call_count(), 0);
        let r = offer("relay", UFRAG_A, "force-relay");
        assert_eq!(r.get_str("result"), Some("error"), "{r:?}");
        let r = offer("opt", UFRAG_A, "optional");
        assert!(r.get_str("warning").unwrap().contains("optional"), "{r:?}");
        assert_ice_lite(&sdp_of(&r), "Aufr");
        let r = offer("lite", UFRAG_A, "default");
        assert!(r.get("warning").is_none(), "{r:?}");
        let lite = plain(4000, UFRAG_A).replace("t=0 0\r\n", "t=0 0\r\na=ice-lite\r\n");
        let r = cmd(
            &gw,
            &[
                ("command", "offer"),
                ("call-id", "lite2"),
                ("from-tag", "a"),
                ("sdp", &lite),
            ],
            &[],
        );
        assert!(r.get_str("warning").unwrap().contains("ICE-lite"), "{r:?}");
        // A re-offer adds ICE to a stream that had none, towards the
        // receiver too, without a warning.
        let r = offer("late", "", "default");
        assert_no_ice(&sdp_of(&r));
        let r = offer("late", UFRAG_A, "default");
        assert!(r.get("warning").is_none(), "{r:?}");
        assert_ice_lite(&sdp_of(&r), "Aufr");
        gw.shutdown();
    }

    /// Old replies go first, then the oldest ones past the bound; a command in
    /// flight stays.
    #[test]
    fn the_reply_cache_evicts_oldest_first() {
        let mut c = ReplyCache::default();
        c.map.insert(b"busy".to_vec(), Cached::InFlight);
        for i in 0..5u8 {
            let now = Instant::now();
            c.map.insert(vec![i], Cached::Done(now, vec![i]));
            c.order.push_back((now, vec![i]));
        }
        c.evict(Duration::from_secs(30), 4);
        let mut kept: Vec<_> = c.map.keys().cloned().collect();
        kept.sort();
        assert_eq!(kept, vec![vec![3], vec![4], b"busy".to_vec()]);
        c.evict(Duration::ZERO, 100);
        assert_eq!(c.map.len(), 1, "expired replies go");
        assert!(matches!(c.map.get(&b"busy"[..]), Some(Cached::InFlight)));
    }
}
