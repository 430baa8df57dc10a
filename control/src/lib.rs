//! # rtp-control
//!
//! The control-plane thread: DTLS handshakes, STUN/ICE-lite, RTCP reporting,
//! configuration, and `Engine`, the API an embedding program uses.
#![forbid(unsafe_code)]
