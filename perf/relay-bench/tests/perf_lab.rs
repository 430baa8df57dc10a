//! The perf lab end to end on a tiny matrix (every relay, plain and SRTP): each
//! run writes its report and histogram (both parse), the summary lists every
//! run with its offered rate and no loss; `ptime_ms` sets the rate when `rates`
//! is absent, and a scenario setting both is an error.

use std::path::Path;
use std::process::Command;

fn lab(scenario: &Path, root: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_perf-lab"))
        .arg(scenario)
        .arg(root)
        .output()
        .unwrap()
}

/// The summary's rows of one relay, split into cells.
fn rows<'a>(summary: &'a str, relay: &str) -> Vec<Vec<&'a str>> {
    summary
        .lines()
        .filter(|l| l.starts_with(&format!("| {relay} |")))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect()
}

#[test]
fn a_tiny_matrix_runs_every_relay_and_writes_results() {
    let dir = std::env::temp_dir().join(format!("perf-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sc = dir.join("tiny.toml");
    std::fs::write(
        &sc,
        "name = \"tiny\"\nduration = 0.3\nstreams = [10]\nrates = [1000]\n\
         relays = [\"minimal\", \"gateway\", \"rtp-gateway\", \"rtpengine\"]\n\
         srtp = [\"none\", \"AEAD_AES_128_GCM\"]\n",
    )
    .unwrap();
    let out = lab(&sc, &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(dir.join("tiny/summary.md")).unwrap();
    for relay in ["minimal", "gateway", "rtp-gateway"] {
        let rows = rows(&summary, relay);
        assert_eq!(rows.len(), 2, "{relay}: plain and SRTP\n{summary}");
        for r in rows {
            // relay, backend, srtp, streams, offered, sent, received, loss %, ...
            assert_eq!(r.len(), 12, "{r:?}");
            assert_eq!(r[4], "1000", "offered rate: {r:?}");
            let loss: f64 = r[7].parse().unwrap();
            assert_eq!(loss, 0.0, "{r:?}");
            let run = dir.join(format!("tiny/{relay}-io_uring-{}-10x1000", r[2]));
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("report.json")).unwrap())
                    .unwrap();
            let sent = json["total"]["sent"].as_u64().unwrap();
            assert!(sent >= 290, "{relay}: sent {sent}");
            assert_eq!(json["total"]["lost"], 0, "{relay}");
            assert_eq!(json["total"]["loss_percent"], 0.0, "{relay}");
            assert_eq!(json["streams"].as_array().unwrap().len(), 10);
            assert!(json["total"]["latency"]["p50_us"].as_f64().unwrap() > 0.0);
            let hgrm = std::fs::read_to_string(run.join("latency.hgrm")).unwrap();
            let last: Vec<f64> = hgrm
                .lines()
                .rev()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.contains("Value"))
                .map(|l| {
                    l.split_whitespace()
                        .map(|v| v.parse::<f64>().unwrap())
                        .collect()
                })
                .next()
                .unwrap();
            assert_eq!((last[1], last[2]), (1.0, sent as f64), "{relay}");
        }
    }
    if std::env::var("CI").is_ok() {
        assert!(
            summary.contains("| rtpengine | io_uring |"),
            "rtpengine ran in CI: {stdout}"
        );
    }

    // Without rates, the packet time sets the rate: 10 streams every 10 ms.
    std::fs::write(
        &sc,
        "name = \"ptime\"\nduration = 0.2\nstreams = [10]\nptime_ms = 10\n\
         relays = [\"minimal\"]\n",
    )
    .unwrap();
    let out = lab(&sc, &dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(dir.join("ptime/summary.md")).unwrap();
    let rows = rows(&summary, "minimal");
    assert_eq!(rows.len(), 1, "{summary}");
    assert_eq!(rows[0][4], "1000", "{summary}");
    // Both is ambiguous: an error, before any run.
    std::fs::write(
        &sc,
        "name = \"both\"\nstreams = [10]\nrates = [500]\nptime_ms = 10\nrelays = [\"minimal\"]\n",
    )
    .unwrap();
    let out = lab(&sc, &dir);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
    std::fs::remove_dir_all(&dir).unwrap();
}
