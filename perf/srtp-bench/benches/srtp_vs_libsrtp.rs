//! Side-by-side SRTP cost: this project vs libsrtp 2 built against OpenSSL (its
//! fastest build), measured in one run on the same machine.
//!
//! For each profile and packet: protect (fresh sequence numbers) and
//! protect+unprotect (unprotect needs fresh indices, so each iteration protects a
//! packet and unprotects it; unprotect = that minus protect). Each figure is the
//! median of 7 runs of 20,000 packets; the table prints the ratio ours / libsrtp.
//!
//! Run: `cargo bench -p srtp-bench --bench srtp_vs_libsrtp`

use std::hint::black_box;
use std::time::Instant;

use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};
use srtp_bench::Session;

const N: u32 = 20_000;
const RUNS: usize = 7;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn fill_rtp(buf: &mut [u8], seq: u16, payload: usize) -> usize {
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
    12 + payload
}

fn fill_rtcp(buf: &mut [u8]) -> usize {
    buf[..4].copy_from_slice(&[0x81, 201, 0, 12]);
    buf[4..8].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
    52
}

/// ns per iteration of `f`, median of RUNS.
fn time(mut f: impl FnMut(u32)) -> f64 {
    let mut seq = 0u32;
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        for _ in 0..N {
            seq = seq.wrapping_add(1);
            f(seq);
        }
        runs.push(t.elapsed().as_nanos() as f64 / f64::from(N));
    }
    median(runs)
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "{:<26} {:<22} {:>10} {:>10} {:>7}",
        "profile", "operation", "ours ns", "libsrtp ns", "ratio"
    );
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
        let cfg = SrtpConfig::from_key_salt(p, &ks).unwrap();
        for (label, payload) in [
            ("rtp 160", Some(160)),
            ("rtp 1200", Some(1200)),
            ("srtcp 52", None),
        ] {
            let mut buf = [0u8; 1600];
            let mut o_tx = SrtpContext::new(cfg.clone()).unwrap();
            let mut l_tx = Session::new(p, &ks, true, 1024).unwrap();
            let (op, ours_p, lib_p) = match payload {
                Some(pl) => (
                    "protect",
                    time(|s| {
                        let n = fill_rtp(&mut buf, s as u16, pl);
                        black_box(o_tx.protect_rtp(&mut buf, n).unwrap());
                    }),
                    time(|s| {
                        let n = fill_rtp(&mut buf, s as u16, pl);
                        black_box(l_tx.protect(&mut buf, n).unwrap());
                    }),
                ),
                None => (
                    "protect",
                    time(|_| {
                        let n = fill_rtcp(&mut buf);
                        black_box(o_tx.protect_rtcp(&mut buf, n).unwrap());
                    }),
                    time(|_| {
                        let n = fill_rtcp(&mut buf);
                        black_box(l_tx.protect_rtcp(&mut buf, n).unwrap());
                    }),
                ),
            };
            println!(
                "{:<26} {:<22} {:>10.0} {:>10.0} {:>7.2}",
                p.sdes_name(),
                format!("{op} {label}"),
                ours_p,
                lib_p,
                ours_p / lib_p
            );
            let mut o_tx = SrtpContext::new(cfg.clone()).unwrap();
            let mut o_rx = SrtpContext::new(cfg.clone()).unwrap();
            let mut l_tx = Session::new(p, &ks, true, 1024).unwrap();
            let mut l_rx = Session::new(p, &ks, false, 1024).unwrap();
            let (ours_pu, lib_pu) = match payload {
                Some(pl) => (
                    time(|s| {
                        let n = fill_rtp(&mut buf, s as u16, pl);
                        let m = o_tx.protect_rtp(&mut buf, n).unwrap();
                        black_box(o_rx.unprotect_rtp(&mut buf[..m]).unwrap());
                    }),
                    time(|s| {
                        let n = fill_rtp(&mut buf, s as u16, pl);
                        let m = l_tx.protect(&mut buf, n).unwrap();
                        black_box(l_rx.unprotect(&mut buf[..m]).unwrap());
                    }),
                ),
                None => (
                    time(|_| {
                        let n = fill_rtcp(&mut buf);
                        let m = o_tx.protect_rtcp(&mut buf, n).unwrap();
                        black_box(o_rx.unprotect_rtcp(&mut buf[..m]).unwrap());
                    }),
                    time(|_| {
                        let n = fill_rtcp(&mut buf);
                        let m = l_tx.protect_rtcp(&mut buf, n).unwrap();
                        black_box(l_rx.unprotect_rtcp(&mut buf[..m]).unwrap());
                    }),
                ),
            };
            let (ou, lu) = (ours_pu - ours_p, lib_pu - lib_p);
            println!(
                "{:<26} {:<22} {:>10.0} {:>10.0} {:>7.2}",
                p.sdes_name(),
                format!("unprotect {label}"),
                ou,
                lu,
                ou / lu
            );
            if quick {
                return;
            }
        }
    }
}
