//! `rtp-pcap`: RTP stream analysis of captures (and, later, SRTP decryption and
//! encryption: each is one more variant of [`Command`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use rtp_tools::pcap::analysis::{analyze, render_text, AnalysisOptions};
use rtp_tools::pcap::capture::CaptureReader;

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
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp-pcap: {e}");
            ExitCode::FAILURE
        }
    }
}
