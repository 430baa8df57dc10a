//! SRTP and SRTCP (RFC 3711). Placeholder.
