//! # rtp-control
//!
//! The control plane: [`Engine`], the API an embedding program uses, with the
//! control thread that owns the dataplane workers' rings, port allocation, call
//! bookkeeping, media timeouts, the event stream; DTLS-SRTP legs, whose handshakes
//! the control thread runs with the sans-IO DTLS 1.2 implementation in [`dtls`];
//! and RTCP reporting with call quality ([`reporting`], built on the sans-IO
//! [`rtcp`] module); ICE-lite ([`ice`], with STUN from `rtp_core::stun`) for
//! legs that face browsers: the control thread answers the peer's STUN
//! connectivity checks on the leg's own ports (host candidates only, always the
//! controlled agent, no checks or consent requests of its own, no TURN) and
//! points the leg's media at the
//! address the peer nominates ([`EngineEvent::IceNominated`]).
//!
//! ```no_run
//! use rtp_control::{Engine, LegConfig};
//!
//! let engine = Engine::builder().ports(30000, 39999).start()?;
//! let call = engine.create_call([LegConfig::default(), LegConfig::default()])?;
//! println!("offer {} / answer {}", call.legs[0].advertised, call.legs[1].advertised);
//! // ... media flows; then:
//! let stats = engine.delete_call(call.id)?;
//! println!("{:?}", stats.legs[0].counters);
//! engine.shutdown();
//! # Ok::<(), rtp_control::EngineError>(())
//! ```
#![forbid(unsafe_code)]

pub mod dtls;
mod dtls_legs;
pub mod engine;
pub mod ice;
pub mod reporting;
pub mod rtcp;

pub use dtls_legs::{DtlsCounters, DtlsLegParams};
pub use engine::{
    CallId, CallInfo, CloseReason, ControlPlacement, Engine, EngineBuilder, EngineConfig,
    EngineError, EngineEvent, EngineStats, LegConfig, LegInfo,
};
pub use ice::{
    AnswerBudget, IceCounters, IceCredentials, IceInput, IceLegParams, IceLite, IceOutcome,
};
pub use reporting::{LegRtcpStats, RtcpConfig, RtcpMode, RtcpWorkerStats};
pub use rtp_dataplane as dataplane;
