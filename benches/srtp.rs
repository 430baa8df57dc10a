//! SRTP/SRTCP cost per packet of this implementation: protect and unprotect of RTP
//! with 160- and 1200-byte payloads and of a 52-byte SRTCP compound, for
//! AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM.
//!
//! Run: `cargo bench -p rtp-core --bench srtp`. Criterion prints the time per
//! iteration, which is one packet. Unprotect needs a fresh index each time (the
//! replay window rejects repeats), so each iteration protects a copy and then
//! unprotects it; `protect` alone is measured separately, and the difference is
//! the unprotect cost. (The side-by-side comparison with libsrtp is future work,
//! see perf/RESULTS.md.)

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

fn ctx(p: SrtpProfile) -> SrtpContext {
    ctx_keys(p, false)
}

fn ctx_keys(p: SrtpProfile, compact: bool) -> SrtpContext {
    let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
    let cfg = SrtpConfig::from_key_salt(p, &ks)
        .unwrap()
        .with_compact_keys(compact);
    SrtpContext::new(cfg).unwrap()
}

fn rtp(buf: &mut [u8], seq: u16, payload: usize) -> usize {
    buf[0] = 0x80;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
    12 + payload
}

fn benches(c: &mut Criterion) {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let mut g = c.benchmark_group(format!("srtp/{}", p.sdes_name()));
        g.throughput(Throughput::Elements(1));
        for payload in [160usize, 1200] {
            let mut tx = ctx(p);
            let mut buf = [0u8; 1500];
            let mut seq = 0u16;
            g.bench_function(BenchmarkId::new("protect_rtp", payload), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    let n = rtp(&mut buf, seq, payload);
                    black_box(tx.protect_rtp(&mut buf, n).unwrap())
                })
            });
            let mut tx = ctx(p);
            let mut rx = ctx(p);
            g.bench_function(BenchmarkId::new("protect+unprotect_rtp", payload), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    let n = rtp(&mut buf, seq, payload);
                    let m = tx.protect_rtp(&mut buf, n).unwrap();
                    black_box(rx.unprotect_rtp(&mut buf[..m]).unwrap().len)
                })
            });
        }
        let mut tx = ctx(p);
        let mut rx = ctx(p);
        let mut buf = [0u8; 256];
        g.bench_function("protect+unprotect_rtcp_52", |b| {
            b.iter(|| {
                buf[..4].copy_from_slice(&[0x81, 201, 0, 12]);
                buf[4..8].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
                let m = tx.protect_rtcp(&mut buf, 52).unwrap();
                black_box(rx.unprotect_rtcp(&mut buf[..m]).unwrap().len)
            })
        });
        g.finish();
    }
}

/// What compact session keys (`SrtpConfig::with_compact_keys`: the AES schedule
/// expanded per packet) cost per packet, next to expanded keys in the same run:
/// `cargo bench -p rtp-core --bench srtp -- compact`.
fn compact(c: &mut Criterion) {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let mut g = c.benchmark_group(format!("compact/{}", p.sdes_name()));
        g.throughput(Throughput::Elements(1));
        for compact in [false, true] {
            let name = if compact { "compact" } else { "expanded" };
            let (mut tx, mut rx) = (ctx_keys(p, compact), ctx_keys(p, compact));
            let mut buf = [0u8; 1500];
            let mut seq = 0u16;
            g.bench_function(BenchmarkId::new("protect+unprotect_rtp_160", name), |b| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    let n = rtp(&mut buf, seq, 160);
                    let m = tx.protect_rtp(&mut buf, n).unwrap();
                    black_box(rx.unprotect_rtp(&mut buf[..m]).unwrap().len)
                })
            });
        }
        g.finish();
    }
}

criterion_group!(srtp, benches, compact);
criterion_main!(srtp);
