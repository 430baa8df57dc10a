//! libsrtp 2 (2.3.0, built from source against OpenSSL by `srtp2-sys`) behind the
//! same safe `Session` wrapper the interop tests use, for the side-by-side
//! benchmark in `benches/srtp_vs_libsrtp.rs`.

// Links the static OpenSSL-built libsrtp2; its generated bindings are not used.
use srtp2_sys as _;

#[path = "../../../tests/libsrtp/src/session.rs"]
mod session;
pub use session::*;
