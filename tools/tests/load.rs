//! rtp-load: loss, duplicate, reordering and latency accounting against a
//! reflector that impairs on purpose; pacing against a simulated clock and exact
//! counts; the embedded gateway at a modest rate; report files written and
//! parseable; the binary end to end.

use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use rtp_core::srtp::SrtpProfile;
use rtp_tools::load::reflect::{ReflectConfig, Reflector};
use rtp_tools::load::{
    default_worker_cores, drain_time, local_ip_towards, packet_index, report, run, Arrival,
    Arrivals, GatewayOptions, LoadConfig, LoadResult, Release, Second, StreamClass, StreamResult,
    Target, ARRIVAL_WINDOW, MAX_ADAPTIVE_DRAIN,
};

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
    // Every packet was held 2 ms: no latency below that, and (a margin for a
    // loaded 2-core machine) not much above. SRTP rejects the copies as replays
    // before their latency is read.
    let (min, p50, max) = (
        r.latency.min(),
        r.latency.value_at_quantile(0.5),
        r.latency.max(),
    );
    assert!(
        min >= r.latency.lowest_equivalent(2_000_000),
        "min latency {min} ns"
    );
    assert!(p50 < 2_000_000 + 20_000_000, "p50 latency {p50} ns");
    assert!(max < 2_000_000 + 250_000_000, "max latency {max} ns");
    assert_eq!(r.latency.len(), 500 - st.dropped);

    // Reordering within streams (held back past the stream's next packet). The
    // 500th datagram is held too, and nothing comes after it: it must still go
    // back (after the reflector's idle hold), not count as lost.
    let refl = Reflector::spawn(ReflectConfig {
        reorder_every: 25,
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
    assert!(st.reordered >= 15, "{st:?}");
    assert_eq!(
        reordered, st.reordered,
        "every held-back packet arrives late in its stream"
    );
    assert_eq!(lost, 0);
}

#[test]
fn plain_rtp_duplicates_and_long_round_trips_are_waited_for() {
    // Plain RTP: copies reach the receiver (no SRTP replay check). The run must
    // not stop when arrivals including copies reach the sent count, and a
    // round trip longer than the minimum drain must not count as loss.
    let refl = Reflector::spawn(ReflectConfig {
        duplicate_every: 7,
        delay: Duration::from_millis(600),
        ..ReflectConfig::default()
    })
    .unwrap();
    // (Sending for 1 s: the round trip is known before the last send.)
    let mut cfg = config(
        vec![class(5, 10)],
        1.0,
        None,
        Target::Reflector(refl.addr()),
    );
    cfg.drain = Duration::from_millis(200);
    let r = run(cfg).unwrap();
    let st = refl.stop().unwrap();
    assert_eq!(r.sent(), 500);
    assert_eq!(st.received, 500);
    assert_eq!(r.lost(), 0, "{:?}", r.streams);
    let dups: u64 = r.streams.iter().map(|s| s.duplicates).sum();
    assert_eq!(dups, st.duplicated);
    assert_eq!(r.latency.len(), 500, "one latency per distinct packet");
    assert!(
        r.latency.min() >= r.latency.lowest_equivalent(600_000_000),
        "min {} ns, {:?}",
        r.latency.min(),
        r.seconds
    );
}

#[test]
fn drain_waits_four_round_trips_within_bounds() {
    let ms = Duration::from_millis;
    assert_eq!(drain_time(ms(500), ms(2)), ms(500));
    assert_eq!(drain_time(ms(500), ms(700)), ms(2800));
    assert_eq!(
        drain_time(ms(500), Duration::from_secs(60)),
        MAX_ADAPTIVE_DRAIN
    );
    assert_eq!(drain_time(ms(50_000), ms(1)), ms(50_000));
}

#[test]
fn pacing_releases_packets_at_their_due_time_and_a_late_loop_does_not_drift() {
    // The load loop's decisions against a simulated clock: it releases what is
    // due (64 at most per batch), then sleeps until the next due time and wakes
    // OVERSHOOT late; once it stalls for STALL.
    const OVERSHOOT: u64 = 50_000;
    const STALL_AT: u64 = 300_000_000;
    const STALL: u64 = 40_000_000;
    const TOLERANCE: u64 = OVERSHOOT;
    let classes = vec![class(7, 20), class(3, 30)];
    let mut rel = Release::new(&classes, Duration::from_secs(1));
    let (mut now, mut stalled, mut n) = (0u64, false, 0u64);
    let mut per_class = [Vec::new(), Vec::new()];
    while rel.sending() {
        let mut batch = 0;
        while batch < 64 {
            let Some(d) = rel.pop_due(now) else { break };
            assert!(d.at_ns <= now, "released {} ns early", d.at_ns - now);
            let late = now - d.at_ns;
            if d.at_ns < STALL_AT || d.at_ns >= STALL_AT + STALL + TOLERANCE {
                assert!(
                    late <= TOLERANCE,
                    "packet due {} left {late} ns late",
                    d.at_ns
                );
            } else {
                // Due during the stall: sent as soon as the loop runs again.
                assert!(late <= STALL + TOLERANCE, "backlog left {late} ns late");
            }
            per_class[d.class].push(d.at_ns);
            batch += 1;
            n += 1;
        }
        let wait = rel.wait_ns(now).unwrap_or(0);
        if wait > 0 {
            now += wait + OVERSHOOT;
        }
        if !stalled && now >= STALL_AT {
            stalled = true;
            now += STALL;
        }
    }
    assert!(stalled);
    // The exact count, and due times from the schedule (no drift after the
    // stall): class 0 every 20/7 ms, class 1 every 10 ms.
    assert_eq!(n, 350 + 100);
    for (j, &at) in per_class[0].iter().enumerate() {
        assert_eq!(at, j as u64 * 20_000_000 / 7);
    }
    for (j, &at) in per_class[1].iter().enumerate() {
        assert_eq!(at, j as u64 * 10_000_000);
    }
    assert_eq!(rel.wait_ns(now), None);
    assert_eq!(rel.pop_due(u64::MAX), None, "nothing after the end");
}

#[test]
fn arrivals_count_distinct_packets_by_their_number() {
    // The packet number from its low 16 bits and how many were sent.
    assert_eq!(packet_index(4, 5), Some(4));
    assert_eq!(packet_index(5, 5), None, "not sent yet");
    assert_eq!(packet_index(0, 0), None);
    assert_eq!(packet_index(10, 70_000), Some(65_546));
    assert_eq!(packet_index(65_535, 70_000), Some(65_535));
    assert_eq!(packet_index((69_999 % 65_536) as u16, 70_000), Some(69_999));

    let mut a = Arrivals::default();
    assert_eq!(a.on_packet(0), Arrival::New);
    assert_eq!(a.on_packet(0), Arrival::Duplicate);
    // A gap of 5000 (RFC 3550's tracker restarts at 3000 and would lose count).
    assert_eq!(a.on_packet(5000), Arrival::New);
    assert_eq!(a.on_packet(4999), Arrival::Late);
    assert_eq!(a.on_packet(4999), Arrival::Duplicate);
    assert_eq!(a.on_packet(5000), Arrival::Duplicate);
    assert_eq!(a.on_packet(5001), Arrival::New);
    // The window moved past 0's slot: a far-late arrival is distinct.
    assert_eq!(a.on_packet(5001 - ARRIVAL_WINDOW), Arrival::Late);
    assert_eq!(a.on_packet(5001 + ARRIVAL_WINDOW), Arrival::New);
    assert_eq!(a.on_packet(5002), Arrival::Late, "its slot was cleared");
    assert_eq!((a.distinct, a.duplicates, a.late), (7, 3, 3));
}

#[test]
fn workers_get_distinct_cores() {
    assert_eq!(default_worker_cores(1, 2), Ok(vec![1]));
    assert_eq!(default_worker_cores(3, 8), Ok(vec![5, 6, 7]));
    let e = default_worker_cores(2, 2).unwrap_err();
    assert!(e.contains("--cores"), "{e}");
    assert!(default_worker_cores(0, 4).is_err());
}

#[test]
fn classes_reject_values_out_of_range() {
    for bad in ["a:1:20:160:300", "a:1:20:160:0:4294967296"] {
        let e = StreamClass::parse(bad).unwrap_err();
        assert!(e.contains("out of range"), "{bad}: {e}");
    }
    assert_eq!(StreamClass::parse("a:1:20:160:127").unwrap().pt, 127);
}

#[test]
fn sockets_bind_the_address_towards_the_target() {
    let lo: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(local_ip_towards(lo).unwrap(), lo.ip());
    if let Ok(ip) = local_ip_towards("[::1]:9".parse().unwrap()) {
        assert!(ip.is_loopback(), "{ip}");
    }
    // A documentation address (connecting sends nothing): the interface the
    // kernel would use, not loopback. Machines without a route skip this.
    let Ok(ip) = local_ip_towards("192.0.2.1:9".parse().unwrap()) else {
        return;
    };
    assert!(!ip.is_loopback(), "{ip}");
    // A reflector on that (non-loopback, local) address: no loss, and its
    // replies reach us.
    let refl = Reflector::spawn(ReflectConfig {
        listen: Some(SocketAddr::new(ip, 0)),
        ..ReflectConfig::default()
    })
    .unwrap();
    assert_eq!(refl.addr().ip(), ip);
    let r = run(config(
        vec![class(2, 20)],
        0.2,
        Some(SrtpProfile::AesCm128HmacSha1_80),
        Target::Reflector(refl.addr()),
    ))
    .unwrap();
    let st = refl.stop().unwrap();
    assert_eq!((r.sent(), st.received, r.lost()), (20, 20, 0));
    assert_eq!((r.send_errors, r.rx_rejected), (0, 0));
    assert!(
        r.target_desc.contains(&format!("from {ip};")),
        "{}",
        r.target_desc
    );
}

#[test]
fn report_of_a_silent_run_has_null_latency_and_per_stream_figures() {
    let h = || Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let cfg = config(
        vec![class(2, 20)],
        1.0,
        None,
        Target::Reflector("127.0.0.1:9".parse().unwrap()),
    );
    let r = LoadResult {
        config: cfg,
        streams: vec![
            StreamResult {
                sent: 50,
                received: 40,
                duplicates: 2,
                reordered: 1,
                jitter_ms: 0.5,
            },
            StreamResult {
                sent: 50,
                ..StreamResult::default()
            },
        ],
        class_latency: vec![h()],
        latency: h(),
        seconds: vec![Second {
            t: 1,
            sent: 100,
            received: 0,
            p50_us: None,
            p99_us: None,
            max_us: None,
        }],
        send_lateness: h(),
        send_errors: 0,
        rx_rejected: 0,
        elapsed: Duration::from_secs(1),
        target_desc: "test".into(),
        gateway: None,
    };
    let json = serde_json::to_value(report::Report::new(&r)).unwrap();
    assert!(json["total"]["latency"].is_null(), "{json}");
    assert!(json["send_lateness"].is_null());
    assert!(json["seconds"][0]["p50_us"].is_null());
    let s = &json["streams"];
    assert_eq!(s.as_array().unwrap().len(), 2);
    assert_eq!(s[0]["ssrc"], 0x4000);
    assert_eq!(s[0]["lost"], 10);
    assert_eq!(s[0]["loss_percent"], 20.0);
    assert_eq!(s[0]["duplicates"], 2);
    assert_eq!(s[0]["reordered"], 1);
    assert_eq!(s[0]["jitter_ms"], 0.5);
    assert_eq!(
        (s[1]["ssrc"].clone(), s[1]["lost"].clone()),
        (0x4001.into(), 50.into())
    );
    // Plots and the table with no latency at all still render.
    let dir = std::env::temp_dir().join(format!("rtp-load-silent-{}", std::process::id()));
    let rep = report::write_all(&r, &dir).unwrap();
    let total = rep
        .table()
        .lines()
        .find(|l| l.starts_with("total"))
        .unwrap()
        .to_string();
    assert!(total.ends_with(" -"), "{total}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hgrm_keeps_microsecond_precision() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    h.record(12_345).unwrap(); // 12.345 us
    let text = report::hgrm(&h);
    let first: f64 = text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.contains("Value") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    // Within the histogram's 3 significant digits (0.012 ms would be 3% off).
    let ns = first * 1e6;
    assert!(
        (ns - 12_345.0).abs() / 12_345.0 < 0.002,
        "{first} ms\n{text}"
    );
    assert_eq!(report::sub_buckets(&h), 2048);
    assert!(text.contains("SubBuckets     =         2048"), "{text}");
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
    // Every packet's lateness is measured, and the sending took at least until
    // the last due time (a packet sent early would shorten it). The upper bound
    // only catches a hang, not slowness.
    assert_eq!(r.send_lateness.len(), r.sent());
    assert!(r.elapsed >= Duration::from_millis(980), "{:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(10), "{:?}", r.elapsed);
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
    assert_eq!(json["streams"].as_array().unwrap().len(), 50);
    assert_eq!(json["streams"][49]["lost"], 0);
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
    let json_path = dir.join("copy.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
        .args(["--streams", "20", "--duration", "1", "--quiet", "--ports"])
        .arg(format!("{lo}-{}", lo + 99))
        .arg("--out")
        .arg(&dir)
        .arg("--json")
        .arg(&json_path)
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
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_path).unwrap()).unwrap();
    assert_eq!(json["total"]["sent"], 1000);
    assert_eq!(json["streams"].as_array().unwrap().len(), 20);
    std::fs::remove_dir_all(&dir).unwrap();
    // Bad arguments are errors that say what to change, never panics.
    for (args, says) in [
        (
            &["--srtp", "AES_999", "--duration", "1"][..],
            "unknown profile",
        ),
        (
            &["--class", "a:1:20:160:300", "--duration", "1"],
            "out of range",
        ),
        (&["--drain", "inf", "--duration", "1"], "--drain"),
        (&["--duration", "inf"], "--duration"),
        (&["reflect", "--delay-ms", "inf"], "--delay-ms"),
        (&["reflect", "--delay-ms", "1e300"], "--delay-ms"),
        (&["reflect", "--duration", "inf"], "--duration"),
        (&["reflect", "--duration=-1"], "--duration"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The reflector stops by itself.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtp-load"))
        .args(["reflect", "--listen", "127.0.0.1:0", "--duration", "0.2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("reflecting on 127.0.0.1:"));
}
