//! # rtp-dataplane
//!
//! Pinned per-core workers that move RTP between sockets with in-place SRTP, no locks
//! and no allocation per packet. All syscalls and `unsafe` live under `sys/`.
