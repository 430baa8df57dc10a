//! RTP view and writer costs, per packet:
//! - parse (check) a packet with two RFC 8285 extensions and find one by id;
//! - classify a datagram (RFC 7983);
//! - write a packet with two extensions into a caller buffer;
//! - add an extension in place (and remove it again, to keep the buffer steady).
//!
//! Run: `cargo bench -p rtp-core --bench rtp`. Criterion prints the time per
//! iteration, which is one packet.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use rtp_core::demux::classify;
use rtp_core::rtp::{remove_extension, set_extension, RtpBuilder, RtpPacket};

/// abs-send-time (3 bytes) and transport-wide CC seq (2 bytes), like a WebRTC
/// video packet, with a 1,000-byte payload.
fn sample(buf: &mut [u8]) -> usize {
    let exts: [(u8, &[u8]); 2] = [(3, &[0x12, 0x34, 0x56]), (5, &[0x00, 0x2a])];
    RtpBuilder::new()
        .payload_type(96)
        .marker(true)
        .sequence_number(4242)
        .timestamp(90_000)
        .ssrc(0x1234_5678)
        .extensions(&exts)
        .payload(&[0x77; 1000])
        .emit(buf)
        .expect("sample packet")
}

fn benches(c: &mut Criterion) {
    let mut buf = [0u8; 1500];
    let n = sample(&mut buf);
    let pkt = buf[..n].to_vec();

    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));

    g.bench_function("parse_2ext_find_by_id", |b| {
        b.iter(|| {
            let p = RtpPacket::new_checked(black_box(&pkt[..])).unwrap();
            let e = p.extension(black_box(5)).unwrap();
            (p.sequence_number(), e[1], p.payload().len())
        })
    });

    g.bench_function("classify", |b| b.iter(|| classify(black_box(&pkt[..]))));

    let payload = [0x77u8; 1000];
    g.bench_function("write_2ext_1000B", |b| {
        let mut out = [0u8; 1500];
        let exts: [(u8, &[u8]); 2] = [(3, &[0x12, 0x34, 0x56]), (5, &[0x00, 0x2a])];
        b.iter(|| {
            RtpBuilder::new()
                .payload_type(96)
                .sequence_number(black_box(4242))
                .timestamp(90_000)
                .ssrc(0x1234_5678)
                .extensions(black_box(&exts))
                .payload(&payload)
                .emit(&mut out)
                .unwrap()
        })
    });

    g.bench_function("add_then_remove_ext_in_place_1000B", |b| {
        let mut frame = [0u8; 1500];
        frame[..n].copy_from_slice(&pkt);
        b.iter(|| {
            let m = set_extension(&mut frame, n, black_box(7), &[1, 2, 3, 4]).unwrap();
            remove_extension(&mut frame, m, 7).unwrap()
        })
    });

    g.bench_function("replace_ext_same_size_in_place", |b| {
        let mut frame = [0u8; 1500];
        frame[..n].copy_from_slice(&pkt);
        b.iter(|| {
            let mut p = RtpPacket::new_checked(&mut frame[..n]).unwrap();
            p.extension_mut(black_box(5))
                .unwrap()
                .copy_from_slice(&[0, 43]);
        })
    });
    g.finish();
}

criterion_group!(rtp, benches);
criterion_main!(rtp);
