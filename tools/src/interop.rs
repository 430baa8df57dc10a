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
