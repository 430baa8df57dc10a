//! Harness for tests and benchmarks that drive real peers: a free port range, and
//! Debian's rtpengine started in userspace mode on loopback (stopped on drop).

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::gateway::bencode::Value;
use crate::gateway::client::NgClient;

/// `n` (at most 30,000) consecutive ports next to one the kernel just handed out
/// (other programs on a shared machine hold many ports; allocators skip the ones
/// in use).
pub fn free_port_range(n: u16) -> (u16, u16) {
    let n = n.min(30_000);
    let s = UdpSocket::bind("127.0.0.1:0").expect("loopback bind");
    let p = s.local_addr().expect("bound").port();
    if p > 65535 - n - 10 {
        (p - n - 10, p - 11)
    } else {
        (p + 1, p + n)
    }
}

/// A running rtpengine (userspace: `--table=-1`), killed and reaped on drop.
#[derive(Debug)]
pub struct Rtpengine {
    child: Child,
    ng: SocketAddr,
}

impl Rtpengine {
    /// Whether the `rtpengine` binary is installed.
    pub fn installed() -> bool {
        Command::new("rtpengine").arg("--version").output().is_ok()
    }

    /// Starts rtpengine with its ng socket on a free loopback port and media ports
    /// for `streams` calls, on `core` (with one media thread) when given; waits
    /// until it answers ping.
    pub fn start(core: Option<usize>, streams: usize) -> Result<Self, String> {
        let probe = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let ng = probe.local_addr().map_err(|e| e.to_string())?;
        drop(probe);

        let (lo, hi) = free_port_range((4 * streams).min(20_000) as u16 + 200);
        let mut cmd = match core {
            Some(c) => {
                let mut cmd = Command::new("taskset");
                cmd.args(["-c", &c.to_string(), "rtpengine", "--num-threads=1"]);
                cmd
            }
            None => Command::new("rtpengine"),
        };
        // No config file: the packaged one listens on fixed ports (CLI 2224,
        // HTTP 2225) that a second instance could not bind.
        let child = cmd
            .args([
                "--config-file=none",
                "--table=-1",
                "--foreground",
                "--interface=127.0.0.1",
                "--no-fallback",
            ])
            .args(["--log-level=3", "--log-stderr", "--delete-delay=0"])
            .arg(format!("--listen-ng={ng}"))
            .arg(format!("--port-min={lo}"))
            .arg(format!("--port-max={hi}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("rtpengine: {e}"))?;
        let r = Rtpengine { child, ng };
        let mut c = NgClient::new(ng).map_err(|e| e.to_string())?;
        let mut ping = Value::dict();
        ping.set("command", Value::str("ping"));
        // Start-up loads many libraries: allow for a busy machine.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if c.request(&ping).is_ok() {
                return Ok(r);
            }
        }
        Err("rtpengine did not answer ping".into())
    }

    /// Its ng address.
    pub fn ng(&self) -> SocketAddr {
        self.ng
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an external tool a test needs is there: `Ok` => true; otherwise, under
/// CI (where `.ci/install.sh` installs everything) a panic, elsewhere a note and
/// false (the caller skips).
pub fn require(present: bool, what: &str) -> bool {
    if !present {
        assert!(
            std::env::var("CI").is_err(),
            "{what} must be installed in CI (.ci/install.sh)"
        );
        eprintln!("{what} not installed: skipping (sudo bash .ci/install.sh)");
    }
    present
}

/// Whether `openssl` runs.
pub fn have_openssl() -> bool {
    Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A self-signed certificate made by OpenSSL in `dir` (ECDSA P-256, or RSA 2048):
/// the certificate and key paths.
pub fn openssl_cert(
    dir: &std::path::Path,
    name: &str,
    rsa: bool,
) -> Result<(std::path::PathBuf, std::path::PathBuf), String> {
    let (c, k) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=peer"]);
    if rsa {
        cmd.args(["-newkey", "rsa:2048"]);
    } else {
        cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]);
    }
    let st = cmd
        .arg("-keyout")
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("openssl: {e}"))?;
    if !st.success() {
        return Err("openssl req failed".into());
    }
    Ok((c, k))
}

/// The SDP form (`sha-256 AB:CD:..`) of a PEM certificate's SHA-256 fingerprint,
/// as OpenSSL computes it.
pub fn openssl_fingerprint(cert: &std::path::Path) -> Result<String, String> {
    let o = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    let s = String::from_utf8_lossy(&o.stdout);
    let hex = s.trim().rsplit('=').next().unwrap_or("");
    if hex.is_empty() {
        return Err(format!(
            "no fingerprint from openssl x509 for {}",
            cert.display()
        ));
    }
    Ok(format!("sha-256 {hex}"))
}
