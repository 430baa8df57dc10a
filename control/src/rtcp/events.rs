//! Quality alarms with hysteresis: raised when a figure crosses its threshold,
//! cleared only when it is back past a margin, so a value hovering around the
//! threshold does not flood the event stream.

use super::quality::QualityFigures;

/// Thresholds of the quality alarms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityThresholds {
    /// Loss fraction (0..=1) above which a loss alarm is raised.
    pub loss: f64,
    /// Jitter (ms) above which a jitter alarm is raised.
    pub jitter_ms: f64,
    /// MOS below which a MOS alarm is raised.
    pub mos: f64,
    /// Hysteresis `h`: a loss or jitter alarm clears below `threshold * (1 - h)`,
    /// a MOS alarm above `threshold + h`.
    pub hysteresis: f64,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        QualityThresholds {
            loss: 0.05,
            jitter_ms: 50.0,
            mos: 3.5,
            hysteresis: 0.2,
        }
    }
}

/// Which figure an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QualityMetric {
    /// Receive loss.
    Loss,
    /// Receive jitter.
    Jitter,
    /// MOS.
    Mos,
}

/// An alarm raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QualityAlert {
    /// The figure.
    pub metric: QualityMetric,
    /// Raised (true) or cleared (false).
    pub raised: bool,
    /// The figure's value.
    pub value: f64,
    /// The threshold.
    pub threshold: f64,
}

/// Alarm state of one leg.
#[derive(Debug, Clone, Copy, Default)]
pub struct QualityMonitor {
    loss: bool,
    jitter: bool,
    mos: bool,
}

impl QualityMonitor {
    /// Checks new figures; appends alerts (raise or clear) to `out`.
    pub fn check(
        &mut self,
        f: &QualityFigures,
        t: &QualityThresholds,
        out: &mut Vec<QualityAlert>,
    ) {
        let h = t.hysteresis.clamp(0.0, 0.9);
        let loss = step(&mut self.loss, f.loss > t.loss, f.loss < t.loss * (1.0 - h));
        push(out, loss, QualityMetric::Loss, f.loss, t.loss);
        let j = f.jitter_ms;
        let jit = step(
            &mut self.jitter,
            j > t.jitter_ms,
            j < t.jitter_ms * (1.0 - h),
        );
        push(out, jit, QualityMetric::Jitter, j, t.jitter_ms);
        if let Some(m) = f.mos.filter(|m| m.is_finite()) {
            let mos = step(&mut self.mos, m < t.mos, m > t.mos + h);
            push(out, mos, QualityMetric::Mos, m, t.mos);
        }
    }

    /// Whether any alarm is raised.
    pub fn any_raised(&self) -> bool {
        self.loss || self.jitter || self.mos
    }
}

/// One alarm's state change: `Some(true)` raised, `Some(false)` cleared.
fn step(state: &mut bool, bad: bool, good: bool) -> Option<bool> {
    if !*state && bad {
        *state = true;
        Some(true)
    } else if *state && good {
        *state = false;
        Some(false)
    } else {
        None
    }
}

fn push(
    out: &mut Vec<QualityAlert>,
    change: Option<bool>,
    metric: QualityMetric,
    value: f64,
    threshold: f64,
) {
    if let Some(raised) = change {
        out.push(QualityAlert {
            metric,
            raised,
            value,
            threshold,
        });
    }
}
