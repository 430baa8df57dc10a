//! RTCP reporting, sans-IO: the transmission interval ([`interval`]), a timer
//! wheel for due reports ([`wheel`]), our compound reports ([`report`]), what
//! received RTCP tells us ([`quality`]) and quality alarms ([`events`]). The
//! control thread drives these from `crate::reporting`; nothing here reads a
//! clock or touches a socket.

pub mod events;
pub mod interval;
pub mod quality;
pub mod report;
pub mod wheel;

pub use events::{QualityAlert, QualityMetric, QualityMonitor, QualityThresholds};
pub use interval::{Avpf, Expiry, IntervalConfig, Rand, Schedule};
pub use quality::{
    QualityFigures, RemoteReport, RemoteSr, RtcpReception, RtcpRxCounters, RxSummary,
};
pub use report::{
    ReceptionState, ReportInputs, ReportSummary, Reporter, ReporterConfig, SenderState, XrConfig,
};
pub use wheel::{TimerId, TimerWheel};
