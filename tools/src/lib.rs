//! # rtp-tools
//!
//! The library half of the command-line tools (`rtp-pcap`, later `rtp-gateway` and
//! `rtp-load`), so that their logic is testable without spawning processes.
#![forbid(unsafe_code)]

pub mod dtls_tool;
pub mod gateway;
pub mod interop;
pub mod load;
pub mod pcap;
