//! `rtp-pcap`: RTP stream analysis of captures, SRTP decryption and encryption.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// Per-SSRC stream analysis (placeholder until the analysis lands).
    Stats {
        /// A pcap or pcapng file.
        file: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Stats { file } => {
            eprintln!("rtp-pcap stats {}: not implemented yet", file.display());
            ExitCode::FAILURE
        }
    }
}
