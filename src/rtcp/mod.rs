//! RTCP (RFC 3550 and extensions). Placeholder.
