//! # rtp-core
//!
//! The sans-IO protocol core of the rtp-core media dataplane: zero-copy views and
//! writers for RTP (RFC 3550, RFC 8285) and every RTCP packet type, RFC 7983
//! demultiplexing, sequence-number and NTP time arithmetic, receiver statistics,
//! SRTP/SRTCP in place, and STUN messages for ICE connectivity checks.
//!
//! Nothing here knows about threads, sockets, wall clocks or allocation strategies:
//! time comes in as an argument, bytes come in as slices.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(missing_docs))]

pub mod demux;
pub mod error;
pub mod rtcp;
pub mod rtp;
pub mod seq;
pub mod srtp;
pub mod stats;
pub mod stun;
pub mod time;

pub use error::WireError;
pub use rtp::RtpPacket;
