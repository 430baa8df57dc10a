//! Relay benchmark support (the benchmark itself is `benches/relay.rs`).
