//! Cost of the receiver statistics per packet (rtp-core `ReceiverStats::on_rtp`, which
//! the dataplane runs for every packet) and throughput of `rtp-pcap stats` over an
//! in-memory capture. Run: `cargo bench -p rtp-tools --bench stats`.

use std::io::Cursor;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

use rtp_core::seq::SeqTracker;
use rtp_core::stats::ReceiverStats;
use rtp_tools::pcap::analysis::{analyze, AnalysisOptions};
use rtp_tools::pcap::capture::{CaptureReader, CaptureWriter};
use rtp_tools::pcap::net::{build_ip_udp, linktype};

/// Sequence numbers 0..n with every 50th dropped and every 17th pair swapped.
fn pattern(n: u32) -> Vec<u16> {
    let mut v: Vec<u16> = (0..n).filter(|i| i % 50 != 49).map(|i| i as u16).collect();
    let mut i = 3;
    while i + 1 < v.len() {
        v.swap(i, i + 1);
        i += 17;
    }
    v
}

fn receiver_stats(c: &mut Criterion) {
    let seqs = pattern(10_000);
    let mut g = c.benchmark_group("receiver_stats");
    g.throughput(Throughput::Elements(seqs.len() as u64));
    g.bench_function("on_rtp", |b| {
        b.iter(|| {
            let mut s = ReceiverStats::with_tracker(1, 8000, SeqTracker::new());
            for (k, q) in seqs.iter().enumerate() {
                let arrival = Duration::from_micros(20_000 * k as u64 + (k as u64 * 7919) % 900);
                black_box(s.on_rtp(*q, u32::from(*q) * 160, arrival));
            }
            black_box(s.report_block(Duration::from_secs(300)))
        })
    });
    g.finish();
}

fn pcap_analysis(c: &mut Criterion) {
    let seqs = pattern(50_000);
    let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let mut w = CaptureWriter::new(Vec::new(), linktype::RAW).unwrap();
    for (k, q) in seqs.iter().enumerate() {
        let mut rtp = vec![0x80, 0];
        rtp.extend_from_slice(&q.to_be_bytes());
        rtp.extend_from_slice(&(u32::from(*q) * 160).to_be_bytes());
        rtp.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        rtp.extend_from_slice(&[0xff; 160]);
        let t = Duration::from_micros(20_000 * k as u64);
        w.write_raw(t, &build_ip_udp(a, b, &rtp).unwrap()).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut g = c.benchmark_group("rtp_pcap_stats");
    g.throughput(Throughput::Elements(seqs.len() as u64));
    g.sample_size(10);
    g.bench_function("analyze_in_memory", |bch| {
        bch.iter(|| {
            let r = CaptureReader::new(Cursor::new(bytes.as_slice())).unwrap();
            black_box(analyze(r, &AnalysisOptions::default()).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, receiver_stats, pcap_analysis);
criterion_main!(benches);
