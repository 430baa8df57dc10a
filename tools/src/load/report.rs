//! The report of a run: a table on stdout, `report.json` with every figure,
//! HdrHistogram percentile distributions (`.hgrm`) and SVG plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::{GatewaySummary, LoadResult, Second};

/// Latency figures (µs).
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Minimum.
    pub min_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Maximum.
    pub max_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summary of a histogram of nanoseconds, `None` when it is empty (no
    /// sample is not a latency of 0).
    pub fn of_samples(h: &Histogram<u64>) -> Option<Self> {
        (!h.is_empty()).then(|| Self::of(h))
    }

    /// Summary of a histogram of nanoseconds (all zeros when it is empty; see
    /// [`LatencySummary::of_samples`]).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        LatencySummary {
            count: h.len(),
            min_us: us(h.min()),
            p50_us: us(h.value_at_quantile(0.5)),
            p90_us: us(h.value_at_quantile(0.9)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1e3,
        }
    }
}

/// Figures of one stream class (or of everything).
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// Class name ("total" for everything).
    pub name: String,
    /// Streams.
    pub streams: usize,
    /// Packets sent.
    pub sent: u64,
    /// Distinct packets received.
    pub received: u64,
    /// Lost.
    pub lost: u64,
    /// Loss in percent.
    pub loss_percent: f64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reordered.
    pub reordered: u64,
    /// Mean interarrival jitter over streams (ms).
    pub jitter_mean_ms: f64,
    /// Largest interarrival jitter of a stream (ms).
    pub jitter_max_ms: f64,
    /// Latency (null when nothing arrived).
    pub latency: Option<LatencySummary>,
}

/// Figures of one stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    /// SSRC.
    pub ssrc: u32,
    /// Class name.
    pub class: String,
    /// Packets sent.
    pub sent: u64,
    /// Distinct packets received.
    pub received: u64,
    /// Lost.
    pub lost: u64,
    /// Loss in percent.
    pub loss_percent: f64,
    /// Duplicates.
    pub duplicates: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// Interarrival jitter at the end (ms).
    pub jitter_ms: f64,
}

/// Everything a run measured, as written to `report.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What was measured.
    pub target: String,
    /// SRTP profile or "none".
    pub srtp: String,
    /// Configured duration (s).
    pub duration_s: f64,
    /// Actual sending time (s).
    pub elapsed_s: f64,
    /// Offered rate (packets/s, all streams talking).
    pub offered_rate: f64,
    /// Achieved send rate (packets/s).
    pub send_rate: f64,
    /// Achieved receive rate (packets/s).
    pub receive_rate: f64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Received datagrams rejected (SRTP failures, not ours).
    pub rx_rejected: u64,
    /// How late packets left against the schedule (µs; null when none left).
    pub send_lateness: Option<LatencySummary>,
    /// Per class.
    pub classes: Vec<ClassReport>,
    /// All streams.
    pub total: ClassReport,
    /// Per stream, by global index.
    pub streams: Vec<StreamReport>,
    /// Per-second series.
    pub seconds: Vec<Second>,
    /// Gateway counters (embedded target).
    pub gateway: Option<GatewaySummary>,
    /// Files written (relative to the output folder).
    pub files: Vec<String>,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole > 0 {
        100.0 * part as f64 / whole as f64
    } else {
        0.0
    }
}

fn class_report(
    name: &str,
    r: &LoadResult,
    streams: std::ops::Range<usize>,
    h: &Histogram<u64>,
) -> ClassReport {
    let s = &r.streams[streams.clone()];
    let sent: u64 = s.iter().map(|x| x.sent).sum();
    let received: u64 = s.iter().map(|x| x.received).sum();
    let lost: u64 = s.iter().map(|x| x.lost()).sum();
    let n = s.len().max(1) as f64;
    ClassReport {
        name: name.to_string(),
        streams: s.len(),
        sent,
        received,
        lost,
        loss_percent: percent(lost, sent),
        duplicates: s.iter().map(|x| x.duplicates).sum(),
        reordered: s.iter().map(|x| x.reordered).sum(),
        jitter_mean_ms: s.iter().map(|x| x.jitter_ms).sum::<f64>() / n,
        jitter_max_ms: s.iter().map(|x| x.jitter_ms).fold(0.0, f64::max),
        latency: LatencySummary::of_samples(h),
    }
}

impl Report {
    /// Builds the report of a result.
    pub fn new(r: &LoadResult) -> Self {
        let mut classes = Vec::new();
        let mut streams = Vec::with_capacity(r.streams.len());
        let mut first = 0;
        for (i, c) in r.config.classes.iter().enumerate() {
            for (j, s) in r.streams[first..first + c.streams].iter().enumerate() {
                streams.push(StreamReport {
                    ssrc: r.config.ssrc_base.wrapping_add((first + j) as u32),
                    class: c.name.clone(),
                    sent: s.sent,
                    received: s.received,
                    lost: s.lost(),
                    loss_percent: percent(s.lost(), s.sent),
                    duplicates: s.duplicates,
                    reordered: s.reordered,
                    jitter_ms: s.jitter_ms,
                });
            }
            classes.push(class_report(
                &c.name,
                r,
                first..first + c.streams,
                &r.class_latency[i],
            ));
            first += c.streams;
        }
        let total = class_report("total", r, 0..r.streams.len(), &r.latency);
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        Report {
            target: r.target_desc.clone(),
            srtp: r
                .config
                .srtp
                .map(|p| p.sdes_name().to_string())
                .unwrap_or_else(|| "none".into()),
            duration_s: r.config.duration.as_secs_f64(),
            elapsed_s: r.elapsed.as_secs_f64(),
            offered_rate: r.config.rate(),
            send_rate: total.sent as f64 / secs,
            receive_rate: total.received as f64 / secs,
            send_errors: r.send_errors,
            rx_rejected: r.rx_rejected,
            send_lateness: LatencySummary::of_samples(&r.send_lateness),
            classes,
            total,
            streams,
            seconds: r.seconds.clone(),
            gateway: r.gateway,
            files: Vec::new(),
        }
    }

    /// The final table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "target: {}", self.target);
        let _ = writeln!(
            s,
            "srtp: {}   sent {:.0} pkt/s (offered {:.0})   received {:.0} pkt/s   send errors {}   rejected {}",
            self.srtp, self.send_rate, self.offered_rate, self.receive_rate, self.send_errors, self.rx_rejected
        );
        let _ = writeln!(
            s,
            "{:<8} {:>7} {:>10} {:>10} {:>8} {:>8} {:>5} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "class",
            "streams",
            "sent",
            "received",
            "lost",
            "loss%",
            "dup",
            "reord",
            "jitter ms",
            "p50 us",
            "p90 us",
            "p99 us",
            "p99.9 us",
            "max us"
        );
        let rows = self.classes.iter().chain(std::iter::once(&self.total));
        for c in rows.filter(|c| self.classes.len() > 1 || c.name == "total") {
            // No arrivals: no latency, shown as "-" rather than 0.
            let us = |f: fn(&LatencySummary) -> f64| {
                c.latency
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |l| format!("{:.1}", f(l)))
            };
            let _ = writeln!(
                s,
                "{:<8} {:>7} {:>10} {:>10} {:>8} {:>8.3} {:>5} {:>6} {:>9.3} {:>9} {:>9} {:>9} {:>9} {:>9}",
                c.name,
                c.streams,
                c.sent,
                c.received,
                c.lost,
                c.loss_percent,
                c.duplicates,
                c.reordered,
                c.jitter_mean_ms,
                us(|l| l.p50_us),
                us(|l| l.p90_us),
                us(|l| l.p99_us),
                us(|l| l.p999_us),
                us(|l| l.max_us)
            );
        }
        if let Some(p) = &self.send_lateness {
            let _ = writeln!(
                s,
                "pacing: packets left p50 {:.1} us / p99 {:.1} us / max {:.1} us after their scheduled time",
                p.p50_us, p.p99_us, p.max_us
            );
        }
        if let Some(g) = &self.gateway {
            let _ = writeln!(
                s,
                "gateway: {} calls, {} backend, received {} sent {} pool-empty {}",
                g.calls, g.backend, g.rx_packets, g.tx_packets, g.pool_empty
            );
        }
        s
    }
}

/// Decimals of the `.hgrm` values: milliseconds of a nanosecond histogram, so
/// six keep every recorded digit.
const HGRM_DECIMALS: usize = 6;

/// HdrHistogram's percentile distribution text (the `.hgrm` format its plotter
/// reads), values in milliseconds with nanosecond decimals (the histogram
/// records nanoseconds; its value unit scaling is 1e6).
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{:>12.d$} {:>2.12} {:>10} {:>14.2}",
                    ms(v.value_iterated_to()),
                    q,
                    total,
                    1.0 / (1.0 - q),
                    d = HGRM_DECIMALS
                );
            } else {
                let _ = writeln!(
                    s,
                    "{:>12.d$} {:>2.12} {:>10}",
                    ms(v.value_iterated_to()),
                    q,
                    total,
                    d = HGRM_DECIMALS
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.d$}, StdDeviation   = {:>12.d$}]",
        h.mean() / 1e6,
        h.stdev() / 1e6,
        d = HGRM_DECIMALS
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.d$}, Total count    = {:>12}]",
        ms(h.max()),
        h.len(),
        d = HGRM_DECIMALS
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets(h)
    );
    s
}

/// Sub-buckets per bucket: the power of two that gives unit resolution up to
/// 2 x 10^sigfig (HdrHistogram's `subBucketCount`, the footer's `SubBuckets`).
pub fn sub_buckets(h: &Histogram<u64>) -> u64 {
    (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
}

fn plot_percentiles(path: &Path, series: &[(String, &Histogram<u64>)]) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    // x = log10(1 / (1 - q)): 0 = p0, 1 = p90, 2 = p99, 3 = p99.9, ...
    let ymax = series
        .iter()
        .map(|(_, h)| h.max() as f64 / 1e3)
        .fold(1.0, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency by percentile", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..5f64, 0f64..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (us)")
        .x_label_formatter(&|x| format!("{:.3}%", 100.0 * (1.0 - 10f64.powf(-x))))
        .draw()
        .map_err(|e| e.to_string())?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &CYAN, &BLACK];
    for (i, (name, h)) in series.iter().enumerate() {
        if h.is_empty() {
            continue;
        }
        let pts: Vec<(f64, f64)> = h
            .iter_quantiles(5)
            .filter(|v| v.quantile_iterated_to() < 0.99999)
            .map(|v| {
                (
                    (1.0 / (1.0 - v.quantile_iterated_to())).log10(),
                    v.value_iterated_to() as f64 / 1e3,
                )
            })
            .collect();
        let c = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(pts, c))
            .map_err(|e| e.to_string())?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn plot_over_time(path: &Path, secs: &[Second]) -> Result<(), String> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let tmax = secs.iter().map(|s| s.t).max().unwrap_or(1) as f64;
    let ymax = secs.iter().filter_map(|s| s.max_us).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption("latency over time (per second)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax + 1.0, 0f64..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("latency (us)")
        .draw()
        .map_err(|e| e.to_string())?;
    type Pick = fn(&Second) -> Option<f64>;
    let lines: [(&str, Pick, &RGBColor); 3] = [
        ("p50", |s| s.p50_us, &BLUE),
        ("p99", |s| s.p99_us, &RED),
        ("max", |s| s.max_us, &BLACK),
    ];
    for (name, f, c) in lines {
        // Seconds without arrivals have no latency: the line breaks there.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for s in secs {
            match f(s) {
                Some(v) => runs.last_mut().expect("one run").push((s.t as f64, v)),
                None if runs.last().is_some_and(|r| !r.is_empty()) => runs.push(Vec::new()),
                None => {}
            }
        }
        for (i, run) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
            let series = chart
                .draw_series(LineSeries::new(run, c))
                .map_err(|e| e.to_string())?;
            if i == 0 {
                series
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
            }
        }
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Writes `report.json`, `latency.hgrm` (and one per class), `latency.svg` and
/// `latency_over_time.svg` into `dir`; returns the report with the file list.
pub fn write_all(r: &LoadResult, dir: &Path) -> Result<Report, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut rep = Report::new(r);
    let write = |name: &str, data: &str| -> Result<String, String> {
        let p: PathBuf = dir.join(name);
        std::fs::write(&p, data).map_err(|e| format!("{}: {e}", p.display()))?;
        Ok(name.to_string())
    };
    let mut files = vec![write("latency.hgrm", &hgrm(&r.latency))?];
    if r.config.classes.len() > 1 {
        for (c, h) in r.config.classes.iter().zip(&r.class_latency) {
            files.push(write(&format!("latency_{}.hgrm", c.name), &hgrm(h))?);
        }
    }
    let mut series = vec![("total".to_string(), &r.latency)];
    if r.config.classes.len() > 1 {
        for (c, h) in r.config.classes.iter().zip(&r.class_latency) {
            series.push((c.name.clone(), h));
        }
    }
    plot_percentiles(&dir.join("latency.svg"), &series)?;
    files.push("latency.svg".into());
    plot_over_time(&dir.join("latency_over_time.svg"), &r.seconds)?;
    files.push("latency_over_time.svg".into());
    files.push("report.json".into());
    rep.files = files;
    let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
    write("report.json", &json)?;
    Ok(rep)
}
