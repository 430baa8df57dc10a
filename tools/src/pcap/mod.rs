//! `rtp-pcap`: capture reading and writing, RTP/RTCP stream analysis.
//!
//! - [`net`]: link-layer, IPv4/IPv6 and UDP parsing by hand, payload replacement.
//! - [`capture`]: pcap/pcapng frame reader and pcap writer.
//! - [`analysis`]: RTP/RTCP flow discovery and per-SSRC statistics (`rtp-pcap stats`).

pub mod analysis;
pub mod capture;
pub mod crypt;
pub mod net;
