//! # rtp-control
//!
//! The control plane: [`Engine`], the API an embedding program uses, with the
//! control thread that owns the dataplane workers' rings, port allocation, call
//! bookkeeping, media timeouts and the event stream. DTLS-SRTP, STUN/ICE-lite and
//! RTCP reporting arrive in later milestones.
#![forbid(unsafe_code)]

pub mod engine;

pub use engine::{
    CallId, CallInfo, CloseReason, Engine, EngineBuilder, EngineConfig, EngineError, EngineEvent,
    EngineStats, LegConfig, LegInfo,
};
pub use rtp_dataplane as dataplane;
