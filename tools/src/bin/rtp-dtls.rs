//! `rtp-dtls`: DTLS-SRTP handshake tester. Point it at any endpoint (or let any
//! endpoint connect to it) and compare the `KEY=VALUE` output with the peer's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use rtp_control::dtls::{DtlsConfig, Fingerprint, Role};
use rtp_tools::dtls_tool::{parse_ciphers, parse_profiles, run, DtlsToolOptions};

#[derive(Parser, Debug)]
#[command(name = "rtp-dtls", version, about = "DTLS-SRTP handshake tester")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Wait for one client on --listen, complete the handshake, print the keys.
    Server {
        /// Address to listen on (port 0 picks one; it is printed as LISTEN=).
        #[arg(long)]
        listen: SocketAddr,
        /// Answer a ClientHello without cookie with a HelloVerifyRequest.
        #[arg(long)]
        cookies: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Connect to --connect, complete the handshake, print the keys.
    Client {
        /// The server.
        #[arg(long)]
        connect: SocketAddr,
        /// Local address to bind (default: any, port 0).
        #[arg(long)]
        bind: Option<SocketAddr>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
struct Common {
    /// SRTP profiles in preference order, OpenSSL names separated by ':'
    /// (SRTP_AES128_CM_SHA1_80, SRTP_AES128_CM_SHA1_32, SRTP_AEAD_AES_128_GCM,
    /// SRTP_AEAD_AES_256_GCM).
    #[arg(long)]
    profiles: Option<String>,
    /// Cipher suites in preference order, OpenSSL names separated by ':'
    /// (e.g. ECDHE-ECDSA-AES128-GCM-SHA256).
    #[arg(long)]
    cipher: Option<String>,
    /// Largest datagram to send.
    #[arg(long, default_value_t = 1200)]
    mtu: usize,
    /// Certificate (PEM); generated (ECDSA P-256, self-signed) if absent.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// The peer's certificate fingerprint we require ("sha-256 AB:CD:...").
    #[arg(long)]
    expect_fingerprint: Option<String>,
    /// SRTP packets to echo after the handshake (the client sends them, the
    /// server sends them back under its key; both count what authenticated).
    #[arg(long, default_value_t = 0)]
    echo: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
}

fn options(
    role: Role,
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    cookies: bool,
    c: Common,
) -> Result<DtlsToolOptions, String> {
    let mut config = DtlsConfig {
        mtu: c.mtu,
        ..DtlsConfig::default()
    };
    if let Some(p) = &c.profiles {
        config.srtp_profiles = parse_profiles(p)?;
        if config.srtp_profiles.is_empty() {
            return Err("--profiles names no SRTP profile".into());
        }
    }
    if let Some(s) = &c.cipher {
        config.cipher_suites = parse_ciphers(s)?;
        if config.cipher_suites.is_empty() {
            return Err("--cipher names no cipher suite".into());
        }
    }
    if c.mtu < 64 {
        return Err(format!(
            "--mtu {} is below 64, the smallest datagram a handshake can use",
            c.mtu
        ));
    }
    if role == Role::Server && !config.cipher_suites.iter().any(|s| s.is_ecdsa()) {
        return Err(
            "--cipher: a server needs an ECDHE-ECDSA suite (its certificate is ECDSA P-256); \
             ECDHE-RSA suites work only in the client role"
                .into(),
        );
    }
    config.validate().map_err(|e| e.to_string())?;
    let cert = match (&c.cert, &c.key) {
        (Some(cp), Some(kp)) => Some((
            std::fs::read_to_string(cp).map_err(|e| format!("{}: {e}", cp.display()))?,
            std::fs::read_to_string(kp).map_err(|e| format!("{}: {e}", kp.display()))?,
        )),
        _ => None,
    };
    let expect_fingerprint = match &c.expect_fingerprint {
        Some(f) => Some(
            f.parse::<Fingerprint>()
                .map_err(|e| format!("--expect-fingerprint: {e}"))?,
        ),
        None => None,
    };
    if !(c.timeout > 0.0 && c.timeout.is_finite()) {
        return Err("--timeout must be a positive number of seconds".into());
    }
    Ok(DtlsToolOptions {
        role,
        addr,
        bind,
        config,
        cert,
        expect_fingerprint,
        cookies,
        echo: c.echo,
        timeout: Duration::from_secs_f64(c.timeout),
        announce: true,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = match cli.command {
        Command::Server {
            listen,
            cookies,
            common,
        } => options(Role::Server, listen, None, cookies, common),
        Command::Client {
            connect,
            bind,
            common,
        } => options(Role::Client, connect, bind, false, common),
    };
    let opts = match opts {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rtp-dtls: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(r) => {
            print!("{}", r.render());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("RESULT=failed");
            eprintln!("rtp-dtls: {e}");
            ExitCode::FAILURE
        }
    }
}
