//! rtp-load: loss, duplicate, reordering and latency accounting against a
//! reflector that impairs on purpose; exact pacing counts; the embedded gateway
//! at a modest rate; report files written and parseable; the binary end to end.

use std::time::Duration;

use rtp_core::srtp::SrtpProfile;
use rtp_tools::load::reflect::{ReflectConfig, Reflector};
use rtp_tools::load::{report, run, GatewayOptions, LoadConfig, StreamClass, Target};

fn class(streams: usize, ptime_ms: u64) -> StreamClass {
    StreamClass {
        name: "audio".into(),
        streams,
        ptime: Duration::from_millis(ptime_ms),
        payload: 160,
        pt: 0,
        clock_rate: 8000,
        talk_spurt: None,
    }
}

fn config(
    classes: Vec<StreamClass>,
    secs: f64,
    srtp: Option<SrtpProfile>,
    target: Target,
) -> LoadConfig {
    LoadConfig {
        classes,
        duration: Duration::from_secs_f64(secs),
        srtp,
        ssrc_base: 0x4000,
        seq_start: 65_500, // crosses the sequence wrap
        target,
        progress: false,
        drain: Duration::from_millis(500),
        busy_poll: false,
        load_core: None,
        plain_sender: false,
    }
}

#[test]
fn impairments_of_a_reflector_are_accounted_exactly() {
    // Drops, duplicates and a fixed delay (SRTP: copies are replays).
    let refl = Reflector::spawn(ReflectConfig {
        drop_every: 10,
        duplicate_every: 13,
        delay: Duration::from_millis(2),
        ..ReflectConfig::default()
    })
    .unwrap();
    let r = run(config(
        vec![class(5, 10)],
        1.0,
        Some(SrtpProfile::AeadAes128Gcm),
        Target::Reflector(refl.addr()),
    ))
    .unwrap();
    let st = refl.stop().unwrap();
    let total = |f: fn(&rtp_tools::load::StreamResult) -> u64| r.streams.iter().map(f).sum::<u64>();
    // 5 streams x 100 packets: the schedule gives the exact count.
    assert_eq!(total(|s| s.sent), 500);
    assert_eq!(st.received, 500);
    assert_eq!(
        total(|s| s.lost()),
        st.dropped,
        "lost = dropped by the reflector"
    );
    assert_eq!(total(|s| s.duplicates), st.duplicated, "duplicates counted");
    assert_eq!(total(|s| s.reordered), 0);
    assert_eq!(r.rx_rejected, 0);
    // Every packet was held 2 ms: no latency below that. SRTP rejects the copies
    // as replays before their latency is read.
    assert!(
        r.latency.min() >= 2_000_000,
        "min latency {} ns",
        r.latency.min()
    );
    assert_eq!(r.latency.len(), 500 - st.dropped);

    // Reordering within streams (held back past the stream's next packet).
    let refl = Reflector::spawn(ReflectConfig {
        reorder_every: 17,
        reorder_depth: 6, // more than the 5 streams
        ..ReflectConfig::default()
    })
    .unwrap();
    let r = run(config(
        vec![class(5, 10)],
        1.0,
        None,
        Target::Reflector(refl.addr()),
    ))
    .unwrap();
    let st = refl.stop().unwrap();
    let reordered: u64 = r.streams.iter().map(|s| s.reordered).sum();
    let lost = r.lost();
    assert!(st.reordered >= 25);
    assert_eq!(
        reordered, st.reordered,
        "every held-back packet arrives late in its stream"
    );
    assert_eq!(lost, 0);
}

#[test]
fn talk_spurts_and_classes_are_paced_to_the_exact_count() {
    let refl = Reflector::spawn(ReflectConfig::default()).unwrap();
    let mut video = class(2, 40);
    video.name = "video".into();
    video.payload = 1000;
    let mut talk = class(4, 20);
    talk.talk_spurt = Some((Duration::from_millis(300), Duration::from_millis(200)));
    let r = run(config(
        vec![class(3, 20), video, talk],
        1.0,
        None,
        Target::Reflector(refl.addr()),
    ))
    .unwrap();
    refl.stop().unwrap();
    let sent = |range: std::ops::Range<usize>| r.streams[range].iter().map(|s| s.sent).sum::<u64>();
    assert_eq!(sent(0..3), 150);
    assert_eq!(sent(3..5), 50);
    // Talking 3/5 of the time: about 120 of 200 slots.
    let t = sent(5..9);
    assert!((100..=140).contains(&t), "talk-spurt packets {t}");
    let lost = r.lost();
    assert_eq!(lost, 0);
    assert_eq!(r.class_latency.len(), 3);
    assert_eq!(r.class_latency[1].len(), 50);
}

#[test]
fn embedded_gateway_relays_srtp_without_loss_and_writes_the_report() {
    let cfg = config(
        vec![class(50, 20)],
        1.0,
        Some(SrtpProfile::AesCm128HmacSha1_80),
        Target::Embedded(GatewayOptions {
            ports: (0, 0),
            ..GatewayOptions::default()
        }),
    );
    // Port range: around a port the kernel just handed out.
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = probe.local_addr().unwrap().port();
    drop(probe);
    let lo = if p > 60000 { p - 400 } else { p + 1 };
    let mut cfg = cfg;
    cfg.target = Target::Embedded(GatewayOptions {
        ports: (lo, lo + 299),
        ..GatewayOptions::default()
    });
    let r = run(cfg).unwrap();
    let sent = r.sent();
    let received = r.received();
    assert_eq!(sent, 2500);
    assert_eq!(received, sent, "no loss through the gateway at 2,500 pkt/s");
    let g = r.gateway.unwrap();
    assert_eq!((g.calls, g.rx_packets, g.tx_packets), (50, 2500, 2500));

    let dir = std::env::temp_dir().join(format!("rtp-load-test-{}", std::process::id()));
    let rep = report::write_all(&r, &dir).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["total"]["sent"], 2500);
    assert_eq!(json["total"]["lost"], 0);
    assert!(json["total"]["latency"]["p99_us"].as_f64().unwrap() > 0.0);
    let hgrm = std::fs::read_to_string(dir.join("latency.hgrm")).unwrap();
    // The percentile distribution: rows of value, percentile, count, ending at 100%.
    let rows: Vec<Vec<f64>> = hgrm
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains("Value"))
        .map(|l| l.split_whitespace().map(|v| v.parse().unwrap()).collect())
        .collect();
    assert!(rows.len() > 10);
    assert_eq!(rows.last().unwrap()[1], 1.0);
    assert_eq!(rows.last().unwrap()[2], 2500.0);
    assert!(rows
        .windows(2)
        .all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1]));
    for svg in ["latency.svg", "latency_over_time.svg"] {
        let s = std::fs::read_to_string(dir.join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.contains("polyline"), "{svg}");
    }
    assert!(rep.table().contains("total"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_binary_runs_the_main_job_and_the_reflector() {
    let dir = std::env::temp_dir().join(format!("rtp-load-bin-{}", std::process::id()));
    let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let p = probe.local_addr().unwrap().port();
    drop(probe);
    let lo = if p > 60000 { p - 400 } else { p + 1 };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
        .args(["--streams", "20", "--duration", "1", "--quiet", "--ports"])
        .arg(format!("{lo}-{}", lo + 99))
        .arg("--out")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("embedded gateway") && stdout.contains("p99"),
        "{stdout}"
    );
    assert!(dir.join("report.json").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    // Bad arguments are errors that say what to change.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
        .args(["--srtp", "AES_999", "--duration", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile"));
    // The reflector stops by itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
        .args(["reflect", "--listen", "127.0.0.1:0", "--duration", "0.2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("reflecting on 127.0.0.1:"));
}
