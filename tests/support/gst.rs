//! GStreamer helpers shared by the SRTP interop tests of several crates (included
//! with `#[path]`): find gst-launch, reap children, and count what `srtpdec`
//! accepts from packets we send it.
#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The gst-launch-1.0 binary, or a panic that says how to install it.
pub fn gst_path() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("gst-launch-1.0"))
                .find(|p| p.exists())
        })
        .expect("gst-launch-1.0 not found; install it with `sudo bash .ci/install.sh`")
}

/// Kills and reaps a child process when dropped.
pub struct Reap(pub Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Starts `udpsrc ! srtpdec ! identity ! fakesink` for PCMU from `ssrc` with the
/// given key||salt and GStreamer cipher/auth names, sends `packets` to it, and
/// returns how many packets srtpdec passed on (decrypted and authenticated).
pub fn srtpdec_accepts(
    ssrc: u32,
    key_salt: &[u8],
    cipher: &str,
    auth: &str,
    rtcp_auth: &str,
    packets: &[Vec<u8>],
) -> usize {
    // A free port for GStreamer: bind, read the port, release it.
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let caps = format!(
        "application/x-srtp,media=(string)audio,clock-rate=(int)8000,encoding-name=(string)PCMU,\
         payload=(int)0,ssrc=(uint){ssrc},srtp-key=(buffer){},srtp-cipher=(string){cipher},\
         srtp-auth=(string){auth},srtcp-cipher=(string){cipher},srtcp-auth=(string){rtcp_auth}",
        hex(key_salt)
    );
    // `timeout` bounds the pipeline's life (and forwards our SIGINT to it).
    let child = Command::new("timeout")
        .args(["-s", "INT", "-k", "3", "30"])
        .arg(gst_path())
        .args(["-v", "-e", "udpsrc", "address=127.0.0.1"])
        .arg(format!("port={port}"))
        .arg(format!("caps={caps}"))
        .args([
            "!",
            "srtpdec",
            "!",
            "identity",
            "silent=false",
            "!",
            "fakesink",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Send once udpsrc has bound its port (datagrams then queue in its socket
    // until the pipeline plays). A fixed sleep was too short for a first run,
    // in which GStreamer builds its plugin registry.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !udp_port_bound(port) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Count srtpdec's output as it comes: a loaded machine can take more than a
    // second to bring the pipeline to PLAYING, and an EOS sent before that ends
    // it with nothing decoded (a fixed wait made this test flaky in CI).
    let mut child = child;
    let stdout = child.stdout.take().expect("piped");
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("last-message = chain") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        })
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in packets {
        sock.send_to(p, ("127.0.0.1", port)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    // Until every packet came out, or 10 s; then stop the pipeline with an EOS
    // (SIGINT, forwarded by `timeout` to gst-launch -e) and reap it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen.load(std::sync::atomic::Ordering::Relaxed) < packets.len()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Output that is still on its way after the last packet: a short grace.
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = reader.join();
    seen.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether some socket is bound to UDP `port` on 127.0.0.1 or any address
/// (from /proc/net/udp).
pub fn udp_port_bound(port: u16) -> bool {
    let Ok(t) = std::fs::read_to_string("/proc/net/udp") else {
        return true;
    };
    let want = [
        format!("0100007F:{port:04X}"),
        format!("00000000:{port:04X}"),
    ];
    t.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| want.iter().any(|w| w == local))
}
