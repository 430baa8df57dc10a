//! Minimal safe bindings to the system libsrtp 2 (Debian's 2.5, built against NSS),
//! used only by interop tests. The declarations live in `session.rs`, which
//! `perf/srtp-bench` shares to benchmark the OpenSSL build of libsrtp.

mod session;
pub use session::*;
