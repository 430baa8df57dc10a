//! `rtp-pcap`: RTP stream analysis of captures, and SRTP decryption/encryption of
//! captures (each is one variant of [`Command`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use rtp_core::srtp::SrtpProfile;
use rtp_tools::pcap::analysis::{analyze, render_text, AnalysisOptions};
use rtp_tools::pcap::capture::CaptureReader;
use rtp_tools::pcap::crypt::{
    keys_from_sdp, parse_key, parse_target, render, run, KeyRing, KeyTarget, Mode,
};

#[derive(Parser, Debug)]
#[command(
    name = "rtp-pcap",
    version,
    about = "RTP/RTCP capture analysis and SRTP (de)cryption"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per-SSRC RTP stream analysis and RTCP flows of a pcap or pcapng file.
    Stats(StatsArgs),
    /// Replace SRTP/SRTCP in a capture by plaintext RTP/RTCP (for Wireshark) and
    /// count per stream what authenticated, failed or was replayed.
    Decrypt(CryptArgs),
    /// Replace RTP/RTCP in a capture by SRTP/SRTCP.
    Encrypt(CryptArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "\
Which key a packet takes: a --key-for SSRC key; else a --key-for port key for its
source port, else an SDP key for its source port (an RTCP packet from port P also
takes the key of P-1); else a --key-for port key for its destination port; else
--key. A packet no key selects is counted as no_key and copied unchanged.

Which datagrams are touched: UDP payloads that parse as RTP/RTCP (encrypt: a whole
valid RTP packet or RTCP compound; decrypt: a valid SRTP/SRTCP header), from or to
a --port when any is given, and never from or to a port below 1024 (DNS, NTP, ...)
unless --port, --key-for port or an SDP m= line names it. With only --key, any
datagram that parses as RTP/RTCP on other ports is transformed: give --port to
narrow it. Every other frame is copied unchanged and counted with its reason.

Output: pcap for a pcap input; pcapng (one interface per link type) for pcapng.
Exit status 1 when the capture has frames but none is IP/UDP (e.g. an unsupported
link type), none is RTP/RTCP, or no packet could be transformed.")]
struct CryptArgs {
    /// Input capture (pcap or pcapng).
    input: PathBuf,
    /// Output capture (pcap for a pcap input, pcapng for a pcapng input).
    output: PathBuf,
    /// SRTP profile of --key and --key-for, e.g. AES_CM_128_HMAC_SHA1_80,
    /// AEAD_AES_128_GCM (SDES names).
    #[arg(long, value_parser = parse_profile, default_value = "AES_CM_128_HMAC_SHA1_80")]
    profile: SrtpProfile,
    /// Default master key||salt, base64 (as in SDES inline:).
    #[arg(long)]
    key: Option<String>,
    /// A key for one stream: TARGET=BASE64 where TARGET is ssrc:N, port:N, 0xSSRC,
    /// a port (decimal below 65536) or an SSRC (larger decimal). A port key applies
    /// to packets from that port, and to packets to it that no source-port key
    /// claims. Repeatable.
    #[arg(long = "key-for", value_name = "TARGET=B64")]
    key_for: Vec<String>,
    /// SDP (or a file of a=crypto lines; an offer and its answer may share it):
    /// each key applies to packets sent FROM the port of the m= line above it
    /// (RFC 4568: the key its author sends with), with the line's MKI. A key with
    /// no m= port (or port 0 or 9) is the default.
    #[arg(long)]
    sdp: Option<PathBuf>,
    /// Only touch datagrams from or to this UDP port (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Print the per-stream report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_profile(s: &str) -> Result<SrtpProfile, String> {
    SrtpProfile::from_sdes_name(s).ok_or_else(|| {
        let names: Vec<_> = SrtpProfile::ALL.iter().map(|p| p.sdes_name()).collect();
        format!("unknown profile {s:?}; one of {}", names.join(", "))
    })
}

fn crypt(args: CryptArgs, mode: Mode) -> Result<(), String> {
    let mut ring = KeyRing {
        ports: args.ports,
        ..KeyRing::default()
    };
    if let Some(k) = &args.key {
        ring.default = Some(parse_key(args.profile, k)?);
    }
    for kf in &args.key_for {
        let (t, k) = kf
            .split_once('=')
            .ok_or_else(|| format!("--key-for {kf:?}: expected TARGET=BASE64"))?;
        let key = parse_key(args.profile, k)?;
        match parse_target(t)? {
            KeyTarget::Ssrc(s) => ring.by_ssrc.insert(s, key),
            KeyTarget::Port(p) => ring.by_port.insert(p, key),
        };
    }
    if let Some(p) = &args.sdp {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        keys_from_sdp(&text, &mut ring).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if ring.default.is_none()
        && ring.by_port.is_empty()
        && ring.by_ssrc.is_empty()
        && ring.by_src_port.is_empty()
    {
        return Err("no key: give --key, --key-for or --sdp".into());
    }
    let reader =
        CaptureReader::open(&args.input).map_err(|e| format!("{}: {e}", args.input.display()))?;
    let report = run(reader, &args.output, &ring, mode)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let text = if args.json {
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())? + "\n"
    } else {
        render(&report)
    };
    print!("{text}");
    report
        .verdict()
        .map_err(|e| format!("{}: {e}", args.input.display()))
}

#[derive(Args, Debug)]
struct StatsArgs {
    /// A pcap or pcapng file (link types Ethernet, Linux SLL/SLL2, raw IPv4/IPv6,
    /// loopback/null).
    file: PathBuf,
    /// Only analyse UDP datagrams from or to this port (repeatable). Without it, every
    /// UDP datagram is classified heuristically.
    #[arg(long = "port", value_name = "PORT")]
    ports: Vec<u16>,
    /// Clock rate of a payload type, e.g. `--clock-rate 96=90000` (repeatable).
    /// Defaults: RFC 3551 static types; dynamic types are estimated from the timestamp
    /// advance over capture time (snapped to 8000/16000/24000/32000/44100/48000/90000),
    /// 8000 when the stream is too short to estimate.
    #[arg(long = "clock-rate", value_name = "PT=HZ", value_parser = parse_clock_rate)]
    clock_rates: Vec<(u8, u32)>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_clock_rate(s: &str) -> Result<(u8, u32), String> {
    let (pt, hz) = s
        .split_once('=')
        .ok_or_else(|| format!("expected PT=HZ, got {s:?}"))?;
    let pt: u8 = pt
        .trim()
        .parse()
        .map_err(|_| format!("bad payload type {pt:?}"))?;
    if pt > 127 {
        return Err(format!("payload type {pt} is above 127"));
    }
    let hz: u32 = hz
        .trim()
        .parse()
        .map_err(|_| format!("bad clock rate {hz:?}"))?;
    if hz == 0 {
        return Err("clock rate must be positive".into());
    }
    Ok((pt, hz))
}

fn stats(args: StatsArgs) -> Result<(), String> {
    let reader =
        CaptureReader::open(&args.file).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let opts = AnalysisOptions {
        ports: args.ports,
        clock_rates: args.clock_rates.into_iter().collect::<BTreeMap<_, _>>(),
    };
    let report = analyze(reader, &opts).map_err(|e| format!("{}: {e}", args.file.display()))?;
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        s.push('\n');
        s
    } else {
        render_text(&report)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.to_string()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Stats(a) => stats(a),
        Command::Decrypt(a) => crypt(a, Mode::Decrypt),
        Command::Encrypt(a) => crypt(a, Mode::Encrypt),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp-pcap: {e}");
            ExitCode::FAILURE
        }
    }
}
