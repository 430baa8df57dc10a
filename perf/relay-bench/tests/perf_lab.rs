//! The perf lab end to end on a tiny matrix (every relay, plain and SRTP): each
//! run writes its report and the summary lists it.

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
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perf-lab"))
        .arg(&sc)
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = std::fs::read_to_string(dir.join("tiny/summary.md")).unwrap();
    for relay in ["minimal", "gateway", "rtp-gateway"] {
        assert!(summary.contains(&format!("| {relay} |")), "{summary}");
    }
    if std::env::var("CI").is_ok() {
        assert!(
            summary.contains("| rtpengine | io_uring |"),
            "rtpengine ran in CI: {stdout}"
        );
    }
    assert!(dir
        .join("tiny/gateway-io_uring-AEAD_AES_128_GCM-10x1000/report.json")
        .exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
